r"""Anisotropic Debye-Waller tensors and the exact powder average of the fundamentals.

Physics
-------
Atom k of mass M_k vibrates with the displacement tensor (Debye-Waller tensor)

.. math::

   A_k = \langle u_k u_k^T \rangle = \frac{\hbar^2}{2 M_k} \frac{1}{N_q}
         \sum_{q,\nu} \frac{\coth(E_{q\nu} / 2 k_B T)}{E_{q\nu}}
         \,\mathrm{Re}\left(e_{k}(q\nu)\, e_{k}(q\nu)^\dagger\right)

(angstrom^2), so the Debye-Waller exponent for momentum transfer Q is
``2W = Q^T A_k Q``. The fundamental (order-1) intensity of mode (q, nu) on
atom k is proportional to ``|Q . e_k|^2 exp(-Q^T A_k Q)``. Its average over
all directions of Q (a powder) is exact when written in the principal frame
of A_k (eigenvalues a_1 <= a_2 <= a_3, axes U_k): the cross terms vanish by
parity, leaving

.. math::

   \langle |\hat Q . e|^2 e^{-Q^2 \hat Q^T A \hat Q} \rangle
   = \sum_i |U_i . e|^2 \, M_i(Q),\qquad
   M_i(Q) = \langle \hat Q_i^2 \, e^{-Q^2 \sum_j a_j \hat Q_j^2} \rangle_{\hat Q}.

So the fundamentals need, per atom, the one-phonon DOS projected on the three
principal axes (``IncoherentIngredients.dos_axes``) and the three functions
M_i(Q), which :func:`powder_factors` computes by quadrature over the sphere.
For an isotropic A (a_1 = a_2 = a_3 = a) ``3 M_i = exp(-Q^2 a)`` and the
isotropic engine is recovered exactly.

Symmetry
--------
Modes are sampled in the irreducible wedge. A tensor summed over the wedge
with the wedge weights, then averaged over the crystal's space-group
operations (``A_{g k} = R_g A_k R_g^T``), equals the full-zone sum.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from insnet_core.units import HBAR2_OVER_2AMU, KB_MEV_PER_K

__all__ = ["tensors_from_components", "debye_waller_tensors", "symmetrize",
           "principal_axes", "axis_projection_coefficients", "powder_factors",
           "SPHERE_POINTS"]

#: Gauss-Legendre points per angle for the sphere average (one octant suffices:
#: the integrand is even in every Cartesian component of the direction).
SPHERE_POINTS = 24

#: Number of |Q|^2 nodes on which :func:`powder_factors` evaluates the sphere
#: average before interpolating log M_i linearly in Q^2 (relative error < 1e-5
#: for the largest anisotropies of phonondb at Q^2 up to 2000 A^-2).
Q2_NODES = 257

_PAIRS = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


def tensors_from_components(components):
    """Symmetric 3x3 tensors from their six components (xx, yy, zz, yz, xz, xy).

    Parameters
    ----------
    components : ndarray, shape (..., 6)

    Returns
    -------
    ndarray, shape (..., 3, 3), float64
    """
    c = np.asarray(components, dtype=float)
    out = np.empty(c.shape[:-1] + (3, 3))
    for n, (a, b) in enumerate(_PAIRS):
        out[..., a, b] = c[..., n]
        out[..., b, a] = c[..., n]
    return out


def _coth_over_energy(energies, temperature):
    """coth(E / 2kT) / E for E > 0 (meV^-1); 1/E at T = 0."""
    if temperature == 0:
        return 1.0 / energies
    x = energies / (2.0 * KB_MEV_PER_K * temperature)
    return 1.0 / (np.tanh(x) * energies)


def debye_waller_tensors(modes, temperature, min_energy):
    """Debye-Waller tensor <u u^T> of every atom of the primitive cell, angstrom^2.

    Parameters
    ----------
    modes : insnet_core.phonons.PhononModes
        With ``displacement_tensors``, ``rotations`` and ``permutations``.
    temperature : float
        K.
    min_energy : float
        Modes below this energy (meV) are left out, as in the spectrum
        (acoustic modes at Gamma, imaginary modes).

    Returns
    -------
    ndarray, shape (n_atoms, 3, 3)
    """
    energies = modes.energies
    keep = energies >= min_energy
    weight = np.zeros_like(energies)
    weight[keep] = _coth_over_energy(energies[keep], temperature)
    weight *= modes.q_weights[:, None]
    # float64 sums in chunks (bounded memory) without BLAS, whose multithreaded reductions
    # change the rounding with the thread count: a record must not depend on the machine
    flat = modes.displacement_tensors.reshape(weight.size, -1)
    w = weight.ravel()
    summed = np.zeros(flat.shape[1])
    step = max(1, (32 << 20) // (8 * flat.shape[1]))
    for s in range(0, w.size, step):
        summed += np.einsum("r,rc->c", w[s:s + step], flat[s:s + step].astype(float))
    summed = summed.reshape(modes.displacement_tensors.shape[2], 6)
    tensors = tensors_from_components(summed) * (HBAR2_OVER_2AMU / modes.masses)[:, None, None]
    return symmetrize(tensors, modes.rotations, modes.permutations)


def symmetrize(tensors, rotations, permutations):
    """Average per-atom tensors over space-group operations.

    Parameters
    ----------
    tensors : ndarray, shape (n_atoms, 3, 3)
    rotations : ndarray, shape (n_ops, 3, 3)
        Cartesian rotations.
    permutations : ndarray of int, shape (n_ops, n_atoms)
        Operation s sends atom k to ``permutations[s, k]``.

    Returns
    -------
    ndarray, shape (n_atoms, 3, 3)
        ``mean_s R_s T_{s^-1 k} R_s^T``: invariant under every operation.
    """
    out = np.zeros_like(tensors)
    for rot, perm in zip(rotations, permutations):
        out[perm] += rot @ tensors @ rot.T
    return out / len(rotations)


def principal_axes(tensors):
    """Eigenvalues (ascending) and axes (columns) of symmetric tensors.

    Returns
    -------
    values : ndarray, shape (..., 3)
    axes : ndarray, shape (..., 3, 3)
        ``axes[..., :, i]`` is the unit vector of eigenvalue i.
    """
    return np.linalg.eigh(tensors)


def axis_projection_coefficients(axes):
    """Coefficients turning six tensor components into projections on three axes.

    ``components @ C`` gives ``u_i^T B u_i`` for the columns u_i of ``axes``.

    Parameters
    ----------
    axes : ndarray, shape (3, 3)

    Returns
    -------
    ndarray, shape (6, 3)
    """
    u = np.asarray(axes, dtype=float)
    c = np.empty((6, 3))
    for n, (a, b) in enumerate(_PAIRS):
        c[n] = u[a] * u[b] * (1.0 if a == b else 2.0)
    return c


@lru_cache(maxsize=4)
def _octant_quadrature(points=SPHERE_POINTS):
    """Unit directions (n, 3) and weights (n,) summing to 1 over one octant of the sphere
    (computed once per ``points``; read-only arrays)."""
    x, w = np.polynomial.legendre.leggauss(points)
    cos_t, w_t = 0.5 * (x + 1.0), 0.5 * w                 # cos(theta) on [0, 1]
    phi, w_p = 0.25 * np.pi * (x + 1.0), 0.5 * w          # phi on [0, pi/2], weights sum 1
    sin_t = np.sqrt(1.0 - cos_t ** 2)
    dirs = np.stack([np.outer(sin_t, np.cos(phi)), np.outer(sin_t, np.sin(phi)),
                     np.outer(cos_t, np.ones_like(phi))], axis=-1).reshape(-1, 3)
    weights = np.outer(w_t, w_p).ravel()
    dirs.setflags(write=False)
    weights.setflags(write=False)
    return dirs, weights


def _sphere_average(principal, q2, dirs, weights, chunk=8):
    """3 M_i(Q) at the given Q^2 values: (n_groups, n_q2, 3), groups in chunks (memory)."""
    d2 = dirs ** 2                                                  # (n_dir, 3)
    proj = principal @ d2.T                                         # (n_groups, n_dir)
    out = np.empty((principal.shape[0], q2.size, 3))
    for s in range(0, principal.shape[0], chunk):
        damp = np.exp(-q2[None, :, None] * proj[s:s + chunk, None, :])  # (chunk, n_q2, n_dir)
        out[s:s + chunk] = 3.0 * (damp * weights) @ d2
    return out


def powder_factors(principal, q2):
    """Powder-averaged Debye-Waller factors of the fundamentals along principal axes.

    Parameters
    ----------
    principal : ndarray, shape (n_groups, 3)
        Principal mean-square displacements a_i (angstrom^2), eigenvalues of
        the Debye-Waller tensor.
    q2 : ndarray, any shape
        |Q|^2 values, angstrom^-2.

    Returns
    -------
    ndarray, shape (n_groups,) + q2.shape + (3,)
        ``3 <Q_i^2 exp(-Q^2 sum_j a_j Q_j^2)>`` over unit directions: the
        factor multiplying the DOS along axis i. Equal to ``exp(-Q^2 a)`` for
        an isotropic tensor. Evaluated exactly on ``Q2_NODES`` values of Q^2
        spanning the input and interpolated linearly in log.
    """
    principal = np.atleast_2d(np.asarray(principal, dtype=float))
    q2 = np.asarray(q2, dtype=float)
    flat = q2.ravel()
    dirs, weights = _octant_quadrature()
    top = float(flat.max()) if flat.size else 0.0
    if flat.size <= Q2_NODES or top == 0.0:
        out = _sphere_average(principal, flat, dirs, weights)
    else:
        nodes = np.linspace(0.0, top, Q2_NODES)
        logs = np.log(np.maximum(_sphere_average(principal, nodes, dirs, weights), 1e-300))  # (g, nodes, 3)
        pos = np.interp(flat, nodes, np.arange(Q2_NODES))
        lo = np.clip(np.floor(pos).astype(int), 0, Q2_NODES - 2)
        frac = (pos - lo)[None, :, None]
        out = np.exp(logs[:, lo] * (1.0 - frac) + logs[:, lo + 1] * frac)
    return out.reshape((principal.shape[0],) + q2.shape + (3,))
