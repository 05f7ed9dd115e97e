"""Bin edges from Mantid Rebin-style parameter strings.

``"start,step,end"`` gives linear bins; a negative step gives logarithmic
bins (each edge ``(1 + |step|)`` times the previous one), as Mantid's Rebin
does. Several ranges may be chained: ``"x0,dx0,x1,dx1,x2"``. When the last
bin of a range would be narrower than 25 % of the step it is merged into the
previous bin (Mantid's behaviour without FullBinsOnly).
"""
from __future__ import annotations

import numpy as np

from insnet_core import InputError
from insnet_core.units import energy_to_meV

__all__ = ["rebin_edges", "parse_rebin_params", "energy_edges_from_params"]


def parse_rebin_params(text, name="binning"):
    """Split ``"a,b,c"`` (commas or spaces) into floats, naming ``name`` on error."""
    if isinstance(text, (list, tuple, np.ndarray)):
        parts = list(text)
    else:
        parts = [p for p in str(text).replace(",", " ").split() if p]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise InputError(f"{name}: expected numbers 'start,step,end', got {text!r}") from None
    if len(values) < 3 or len(values) % 2 == 0:
        raise InputError(f"{name}: expected 'start,step,end' (or start,step,mid,step,end), "
                         f"got {len(values)} numbers in {text!r}")
    if not all(np.isfinite(values)):
        raise InputError(f"{name}: numbers must be finite, got {text!r}")
    return values


def rebin_edges(params, name="binning"):
    """Bin edges from Rebin parameters.

    Parameters
    ----------
    params : str or sequence of float
        ``start, step, end[, step, end ...]``; negative step = logarithmic.
    name : str
        Used in error messages (e.g. ``"--ebins"``).

    Returns
    -------
    ndarray
        Strictly ascending bin edges.
    """
    values = parse_rebin_params(params, name)
    edges = [values[0]]
    for i in range(1, len(values) - 1, 2):
        step, end = values[i], values[i + 1]
        start = edges[-1]
        if end <= start:
            raise InputError(f"{name}: range end {end:g} must be above its start {start:g}")
        if step == 0:
            raise InputError(f"{name}: step must not be zero")
        if step < 0 and start <= 0:
            raise InputError(f"{name}: logarithmic bins (negative step) need a start > 0, "
                             f"got {start:g}")
        nominal = abs(step) if step > 0 else None
        x = start
        count = 0
        while True:
            nxt = x + step if step > 0 else x * (1.0 + abs(step))
            width = nxt - x
            if nxt >= end - 1e-9 * width:
                # last bin: merge when narrower than 25 % of a full step
                last_width = end - x
                if last_width < 0.25 * (nominal or width) and len(edges) > 1 and count > 0:
                    edges[-1] = end
                else:
                    edges.append(end)
                break
            edges.append(nxt)
            x = nxt
            count += 1
            if count > 10_000_000:
                raise InputError(f"{name}: more than 10 million bins requested")
    arr = np.array(edges)
    if np.any(np.diff(arr) <= 0):
        raise InputError(f"{name}: bins are not ascending: {params!r}")
    return arr


def energy_edges_from_params(params, unit="meV", name="energy binning"):
    """Rebin-style energy parameters in ``unit`` ('meV' or 'cm-1') -> edges in meV."""
    return energy_to_meV(rebin_edges(params, name), unit)
