"""From predicted per-element DOS to the engine's ingredients (numpy only).

The DOS head predicts, per element, the one-phonon DOS along the three
principal axes of the Debye-Waller tensor on bins of ``width`` meV from 0.
The engine wants weights on a point grid ``j * fine`` meV (0.1 meV in the
database). Each coarse bin's weight is spread evenly over its fine points,
except the first bin (0 to ``width``), where the weight goes as E^2 (the
acoustic, Debye-like start of every DOS) so that the 1/E moments that set the
Debye-Waller factor stay finite and physical.
"""
from __future__ import annotations

import numpy as np

from insnet_core.cross_sections import atomic_mass, total_cross_section

__all__ = ["expand_dos", "ingredients_from_partials"]


def expand_dos(dos, width=1.0, fine=0.1):
    """Spread coarse-bin DOS weights onto the engine's fine point grid.

    Parameters
    ----------
    dos : ndarray, shape (..., n_bins)
        Weights of bins ``[k*width, (k+1)*width)`` meV.
    width, fine : float
        Coarse bin width and fine grid spacing, meV; ``width/fine`` an integer.

    Returns
    -------
    ndarray, shape (..., n_bins * width/fine)
        Weights at points ``j * fine``; the sum over the last axis is unchanged.
    """
    factor = int(round(width / fine))
    if factor < 1 or abs(factor * fine - width) > 1e-9 * width:
        raise ValueError(f"DOS bin width {width} meV is not a multiple of {fine} meV")
    dos = np.asarray(dos, dtype=np.float64)
    out = np.repeat(dos / factor, factor, axis=-1)
    j = np.arange(factor, dtype=np.float64)
    first = j ** 2 / (j ** 2).sum()
    out[..., :factor] = dos[..., :1] * first
    return out


def ingredients_from_partials(species, elements, dos_axes, width=1.0, fine=0.1):
    """The engine's ingredients of a crystal from per-element principal-axis DOS.

    Parameters
    ----------
    species : sequence of str
        Element of every atom of the cell (for the atom counts).
    elements : list of str, length n_el
        Element of each DOS row.
    dos_axes : ndarray, shape (n_el, 3, n_bins)
        Per-atom DOS of each element along its three principal axes (each row
        sums to one), bins of ``width`` meV from 0.
    width, fine : float
        meV.

    Returns
    -------
    insnet_core.incoherent.IncoherentIngredients
    """
    from insnet_core.incoherent import IncoherentIngredients

    species = [str(s) for s in species]
    fine_dos = expand_dos(dos_axes, width, fine)
    return IncoherentIngredients(
        group_labels=list(elements), elements=list(elements),
        n_atoms=np.array([species.count(e) for e in elements], dtype=float),
        masses=np.array([atomic_mass(e) for e in elements], dtype=float),
        cross_sections=np.array([total_cross_section(e) for e in elements], dtype=float),
        bin_width=float(fine), dos=fine_dos.mean(axis=1), dos_axes=fine_dos)
