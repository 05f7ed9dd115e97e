r"""Incoherent INS in the isotropic harmonic approximation, powder averaged.

Physics
-------
For an atom (or group of equivalent atoms) g of mass M and total bound
cross section sigma, with one-phonon density of states per direction
rho_g(E) (normalised to 1), the powder-averaged incoherent scattering
function in the isotropic approximation is

.. math::

   S_g(Q, E) = e^{-Q^2 a_g} \sum_{n=0}^{\infty} \frac{Q^{2n}}{n!} T_g^{*n}(E)

with the one-phonon function (energy loss E > 0, gain E < 0)

.. math::

   T_g(E) = \frac{\hbar^2}{2M} \frac{\rho_g(|E|)}{|E|}
            \begin{cases} n(E) + 1 & E > 0 \\ n(|E|) & E < 0 \end{cases}

where n is the Bose occupation, ``T^{*n}`` the n-fold self-convolution
(``T^{*0} = delta(E)``, the elastic line) and ``a_g = \int T_g dE``
the mean-square displacement along Q, so ``2W = Q^2 a_g`` is the
Debye-Waller exponent. Order n = 1 is the fundamental, n >= 2 the
overtones and combinations. The total is normalised (sum over all orders
integrates to 1) and its first moment is the free-atom recoil
hbar^2 Q^2 / 2M (the sum rule tested in tests/test_incoherent.py).

The spectrum of the crystal is ``sum_g (sigma_g / 4 pi) * n_g * S_g`` in
barn / sr / meV per primitive cell. No k_f/k_i factor is applied (S(Q,E),
as OCLIMAX and Abins report it).

Numerics
--------
Mode energies are deposited on a uniform grid of spacing ``bin_width`` with
a linear split between the two nearest points, which conserves the number
of modes and their first moment exactly; self-convolutions on that grid are
exact discrete convolutions, so the sum rules hold to rounding. Resolution
broadening integrates a Gaussian of the instrument's FWHM(E) over each output
bin, so any bins (logarithmic included) receive exactly the weight they cover.
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from math import factorial

import numpy as np
from scipy.special import erf

from insnet_core import InputError
from insnet_core.cross_sections import element_data
from insnet_core.units import HBAR2_OVER_2AMU, KB_MEV_PER_K

__all__ = ["IncoherentIngredients", "build_ingredients", "one_phonon_function",
           "phonon_orders", "mean_square_displacement", "broadening_matrix",
           "compute_map", "compute_trajectory", "check_temperature", "check_orders",
           "principal_mean_square_displacements",
           "MAX_ORDER", "DEFAULT_BIN_WIDTH", "DEFAULT_MIN_ENERGY"]

#: Highest multiphonon order the engine computes.
MAX_ORDER = 10
#: Default grid spacing for mode energies, meV.
DEFAULT_BIN_WIDTH = 0.1
#: Modes below this energy (meV) are left out (acoustic modes at Gamma, imaginary modes).
DEFAULT_MIN_ENERGY = 0.5


@dataclass
class IncoherentIngredients:
    """Everything the incoherent engine needs; independent of T, Q, E grid, instrument.

    Attributes
    ----------
    group_labels : list of str, length n_groups
        E.g. ``"Si"`` (element grouping) or ``"F (site 1)"`` (site grouping).
    elements : list of str, length n_groups
    n_atoms : ndarray, shape (n_groups,)
        Atoms per primitive cell in each group.
    masses : ndarray, shape (n_groups,)
        amu.
    cross_sections : ndarray, shape (n_groups,)
        Total bound scattering cross section per atom, barn.
    bin_width : float
        Grid spacing in meV; grid point j is at energy ``j * bin_width``.
    dos : ndarray, shape (n_groups, n_grid)
        One-phonon DOS per atom and direction as weights on the grid
        (each row sums to the fraction of modes kept, 1 minus excluded modes).
    dos_axes : ndarray, shape (n_groups, 3, n_grid), optional
        The same DOS projected on the three principal axes of the group's
        Debye-Waller tensor (ascending principal mean-square displacement,
        axes fixed at the temperature the ingredients were built for);
        ``dos = dos_axes.mean(axis=1)``. Present: the fundamentals use the
        exact anisotropic powder average (:mod:`insnet_core.debye_waller`);
        None: every order is isotropic.
    """

    group_labels: list
    elements: list
    n_atoms: np.ndarray
    masses: np.ndarray
    cross_sections: np.ndarray
    bin_width: float
    dos: np.ndarray
    dos_axes: np.ndarray | None = None

    @property
    def anisotropic(self):
        """True when the fundamentals use the anisotropic Debye-Waller factor."""
        return self.dos_axes is not None

    @property
    def grid(self):
        """Grid energies, meV, shape (n_grid,)."""
        return np.arange(self.dos.shape[1]) * self.bin_width

    @property
    def n_groups(self):
        return len(self.group_labels)

    @property
    def max_energy(self):
        """Highest grid energy carrying DOS weight, meV."""
        nz = np.nonzero(self.dos.any(axis=0))[0]
        return float(nz[-1] * self.bin_width) if nz.size else 0.0

    def by_element(self):
        """Merge groups of the same element (DOS averaged with atom-count weights)."""
        elements = sorted(set(self.elements), key=self.elements.index)
        idx = [[i for i, e in enumerate(self.elements) if e == el] for el in elements]
        n = np.array([self.n_atoms[i].sum() for i in idx], dtype=float)
        def merge(per_group):
            w = self.n_atoms.reshape((-1,) + (1,) * (per_group.ndim - 1))
            return np.array([(w[i] * per_group[i]).sum(0) / self.n_atoms[i].sum() for i in idx])

        return IncoherentIngredients(
            group_labels=list(elements), elements=list(elements), n_atoms=n,
            masses=np.array([self.masses[i[0]] for i in idx]),
            cross_sections=np.array([self.cross_sections[i[0]] for i in idx]),
            bin_width=self.bin_width, dos=merge(self.dos),
            dos_axes=None if self.dos_axes is None else merge(self.dos_axes))


def check_temperature(temperature):
    """Return the temperature as float after checking it is finite and >= 0 K."""
    try:
        t = float(temperature)
    except (TypeError, ValueError):
        raise InputError(f"temperature must be a number in K, got {temperature!r}") from None
    if not np.isfinite(t) or t < 0:
        raise InputError(f"temperature must be >= 0 K, got {temperature!r}")
    return t


def check_orders(orders):
    """Return the maximum phonon order as int after checking 1 <= orders <= MAX_ORDER."""
    try:
        n = int(orders)
    except (TypeError, ValueError):
        raise InputError(f"phonon orders must be an integer 1..{MAX_ORDER}, got {orders!r}") from None
    if n != orders or not 1 <= n <= MAX_ORDER:
        raise InputError(f"phonon orders must be an integer 1..{MAX_ORDER}, got {orders!r}")
    return n


def build_ingredients(modes, grouping="site", bin_width=DEFAULT_BIN_WIDTH,
                      min_energy=DEFAULT_MIN_ENERGY, isotropic=False, temperature=0.0):
    """Histogram the mode projections into per-group one-phonon DOS.

    Parameters
    ----------
    modes : insnet_core.phonons.PhononModes
    grouping : {'site', 'element'}
        'site': one group per set of symmetry-equivalent atoms (exact in the
        isotropic approximation); 'element': one group per element (the
        Debye-Waller factor is then the element average; compact storage).
    bin_width : float
        Grid spacing, meV.
    min_energy : float
        Modes below this energy (meV) are excluded, including all imaginary
        modes (negative energies).
    isotropic : bool
        Leave out the principal-axis DOS, so every order (the fundamentals
        included) uses the isotropic Debye-Waller factor. Always the case for
        modes without displacement tensors.
    temperature : float
        K; the principal axes are those of the Debye-Waller tensor at this
        temperature (they depend on it only for sites of monoclinic or
        triclinic symmetry). Use the temperature of the spectrum.

    Returns
    -------
    IncoherentIngredients
    """
    if grouping not in ("site", "element"):
        raise InputError(f"grouping must be 'site' or 'element', got {grouping!r}")
    if not bin_width > 0:
        raise InputError(f"bin width must be > 0 meV, got {bin_width!r}")
    min_energy = max(float(min_energy), bin_width)
    energies = modes.energies
    keep = energies >= min_energy
    n_grid = int(np.floor(max(modes.max_energy, min_energy) / bin_width)) + 3
    x = np.where(keep, energies, 0.0) / bin_width
    lo = np.floor(x).astype(int)
    frac = x - lo
    # weight of (q, mode) on atom k, per direction: projections / 3
    w = (modes.q_weights[:, None, None] * modes.projections / 3.0) * keep[:, :, None]
    reps = list(dict.fromkeys(int(o) for o in modes.orbits))
    dos_atoms = np.zeros((len(reps), n_grid))
    anisotropic = not isotropic and modes.displacement_tensors is not None
    dos_axes = np.zeros((len(reps), 3, n_grid)) if anisotropic else None
    if anisotropic:
        from insnet_core.debye_waller import debye_waller_tensors, principal_axes
        msd_values, axes = principal_axes(
            debye_waller_tensors(modes, check_temperature(temperature), min_energy))

    def deposit(row, weights):
        row += np.bincount(lo.ravel(), (weights * (1 - frac)).ravel(), minlength=n_grid)[:n_grid]
        row += np.bincount(lo.ravel() + 1, (weights * frac).ravel(), minlength=n_grid)[:n_grid]

    labels, elements, counts = [], [], []
    for gi, rep in enumerate(reps):
        members = np.nonzero(modes.orbits == rep)[0]
        wk = w[:, :, rep]  # equivalent atoms carry identical (orbit-averaged) projections
        deposit(dos_atoms[gi], wk)
        if anisotropic:
            split = _axis_split(modes, members, axes, msd_values[rep])  # (n_q, n_modes, 3)
            for i in range(3):
                deposit(dos_axes[gi, i], 3.0 * wk * split[..., i])
        el = modes.species[rep]
        elements.append(el)
        counts.append(len(members))
        site_no = sum(1 for r in reps[:gi + 1] if modes.species[r] == el)
        labels.append(f"{el} (site {site_no})")
    masses = np.array([modes.masses[r] for r in reps])
    xs = np.array([element_data(modes.species[r])[1] for r in reps])
    ing = IncoherentIngredients(group_labels=labels, elements=elements,
                                n_atoms=np.array(counts, dtype=float), masses=masses,
                                cross_sections=xs, bin_width=float(bin_width), dos=dos_atoms,
                                dos_axes=dos_axes)
    return ing.by_element() if grouping == "element" else ing


def _axis_split(modes, members, axes, principal, degenerate=1e-6):
    """Fraction of each mode's weight on a site along its three principal axes.

    Each member atom's displacement tensor is projected on that atom's own
    principal axes and the fractions are averaged over the orbit (exact for
    wedge sampling, see :mod:`insnet_core.debye_waller`). Axes with equal
    principal values share their weight equally, so the split does not depend
    on the arbitrary choice of axes inside a degenerate plane.

    Returns
    -------
    ndarray, shape (n_q, n_modes, 3); sums to 1 over the last axis (or 0 where
    the mode does not move the site).
    """
    from insnet_core.debye_waller import axis_projection_coefficients

    tens = modes.displacement_tensors
    proj = sum(tens[:, :, k, :] @ axis_projection_coefficients(axes[k]).astype(tens.dtype)
               for k in members).astype(float) / len(members)
    proj = np.clip(proj, 0.0, None)
    scale = np.max(np.abs(principal)) or 1.0
    clusters = [[0]]                       # principal values are ascending
    for i in (1, 2):
        if principal[i] - principal[i - 1] <= degenerate * scale:
            clusters[-1].append(i)
        else:
            clusters.append([i])
    for cluster in clusters:
        proj[..., cluster] = proj[..., cluster].mean(axis=-1, keepdims=True)
    total = proj.sum(axis=-1, keepdims=True)
    return np.divide(proj, total, out=np.zeros_like(proj), where=total > 0)


def _bose(energy, temperature):
    """Bose occupation n(E) for E > 0 (meV) at T (K); zeros at T = 0."""
    if temperature == 0:
        return np.zeros_like(energy)
    with np.errstate(over="ignore"):
        return 1.0 / np.expm1(energy / (KB_MEV_PER_K * temperature))


def one_phonon_function(ingredients, temperature, half_width):
    """Two-sided one-phonon function T_g(E) on the grid, shape (n_groups, 2*half_width+1).

    Index ``half_width + j`` holds energy ``j * bin_width`` (j from -half_width to
    +half_width). Values are weights in angstrom^2 (multiply by Q^2 for the
    dimensionless order-1 weight).
    """
    return _one_phonon(ingredients.dos, ingredients.masses, ingredients.bin_width,
                       temperature, half_width)


def _one_phonon(dos, masses, bin_width, temperature, half_width):
    """One-phonon function of DOS rows (..., n_grid) with masses (n_groups,): (..., 2J+1)."""
    n_dos = dos.shape[-1]
    j = np.arange(1, min(n_dos, half_width + 1))
    e = j * bin_width
    n = _bose(e, temperature)
    mass = np.reshape(masses, (-1,) + (1,) * (dos.ndim - 1))
    base = (HBAR2_OVER_2AMU / mass) * dos[..., j] / e
    out = np.zeros(dos.shape[:-1] + (2 * half_width + 1,))
    out[..., half_width + j] = base * (n + 1)
    out[..., half_width - j] = base * n
    if n_dos - 1 > half_width and dos[..., half_width + 1:].any():
        raise ValueError("energy window narrower than the phonon DOS; widen half_width")
    return out


def principal_mean_square_displacements(ingredients, temperature):
    """Principal values of each group's Debye-Waller tensor, angstrom^2, shape (n_groups, 3).

    ``a_i = hbar^2/(2M) * sum_j rho_ij coth(E_j / 2kT) / E_j`` from the DOS
    along principal axis i; their mean is :func:`mean_square_displacement`.
    Requires anisotropic ingredients.
    """
    t = check_temperature(temperature)
    if ingredients.dos_axes is None:
        raise ValueError("isotropic ingredients have no principal-axis DOS")
    half = ingredients.dos.shape[1] - 1
    return _one_phonon(ingredients.dos_axes, ingredients.masses, ingredients.bin_width,
                       t, half).sum(axis=-1)


def mean_square_displacement(ingredients, temperature):
    """Isotropic mean-square displacement per direction <u_Q^2>, angstrom^2, shape (n_groups,).

    ``a_g = hbar^2/(2M) * sum_j rho_j coth(E_j / 2kT) / E_j``; 2W = Q^2 a_g.
    """
    t = check_temperature(temperature)
    half = ingredients.dos.shape[1] - 1
    return one_phonon_function(ingredients, t, half).sum(axis=1)


def phonon_orders(t1, orders):
    """Self-convolutions T^{*n} for n = 1..orders, each shaped like ``t1`` (n_groups, 2J+1).

    Arrays are centred: index J is E = 0. Each order is the exact discrete
    convolution of the previous one with ``t1`` (by FFT, zero-padded so there
    is no wrap-around), truncated to the same window of -J..J bins; only weight
    beyond the window is lost.
    """
    width = t1.shape[1]
    half = (width - 1) // 2
    from scipy import fft
    # any length >= 2W - 1 gives the exact linear convolution; a 2-3-5-smooth one is
    # 1.6x faster than the next power of two for the usual W ~ 10^4 (20,000 vs 32,768),
    # and scipy's transforms 3x faster than numpy's at that length
    size = fft.next_fast_len(2 * width - 1, real=True)
    f1 = fft.rfft(t1, n=size, axis=1)
    out = [t1]
    for _ in range(2, orders + 1):
        full = fft.irfft(fft.rfft(out[-1], n=size, axis=1) * f1, n=size, axis=1)
        # full index m holds energy index m - 2J; keep -J..J
        out.append(np.clip(full[:, half:half + width], 0.0, None))
    return out


def broadening_matrix(grid_energies, fwhm, edges, cutoff=8.0):
    """Gaussian resolution as a sparse (n_grid, n_bins) matrix of densities per meV.

    Row i is a unit-weight Gaussian centred on ``grid_energies[i]`` with FWHM
    ``fwhm[i]``, integrated over each output bin and divided by its width.
    Only bins within ``cutoff`` standard deviations of the centre are filled
    (the weight beyond 8 sigma is below 1e-15).

    Returns
    -------
    scipy.sparse.csr_matrix
    """
    from scipy import sparse

    grid_energies = np.asarray(grid_energies, dtype=float)
    sigma = np.maximum(np.asarray(fwhm, dtype=float), 1e-9) / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    n_edges = edges.size
    lo = np.clip(np.searchsorted(edges, grid_energies - cutoff * sigma) - 1, 0, n_edges - 1)
    hi = np.clip(np.searchsorted(edges, grid_energies + cutoff * sigma), 0, n_edges - 1)
    counts = hi - lo + 1                                   # edges touched by each row
    starts = np.cumsum(counts) - counts
    row = np.repeat(np.arange(grid_energies.size), counts)
    edge = np.repeat(lo, counts) + (np.arange(counts.sum()) - np.repeat(starts, counts))
    cdf = 0.5 * erf((edges[edge] - grid_energies[row]) / (np.sqrt(2.0) * sigma[row]))
    same_row = row[1:] == row[:-1]
    cols = edge[:-1][same_row]
    data = np.diff(cdf)[same_row] / np.diff(edges)[cols]
    return sparse.csr_matrix((data, (row[:-1][same_row], cols)),
                             shape=(grid_energies.size, n_edges - 1))


def _times(values, kernel_t):
    """``values @ kernel`` for dense 1D/2D ``values``, given the sparse kernel transposed
    (``kernel_t``: (n_bins, n_rows) CSR, :func:`_kernel`), as a dense array."""
    return np.asarray((kernel_t @ np.asarray(values).T).T)


#: Resolution kernels kept (transposed) for reuse: an instrument's bins and resolution
#: are the same for every crystal and ensemble member, the grid for every crystal with
#: the same window.
KERNEL_CACHE = 16
_kernels = OrderedDict()
_kernels_lock = threading.Lock()


def _kernel(grid, fwhm, edges):
    """:func:`broadening_matrix` transposed, (n_bins, n_grid) CSR, from a small cache
    keyed by the exact bytes of its three inputs."""
    key = hashlib.blake2b(b"".join(np.ascontiguousarray(a, dtype=float).tobytes() + b"|"
                                   for a in (grid, fwhm, edges)), digest_size=16).digest()
    with _kernels_lock:
        found = _kernels.get(key)
        if found is not None:
            _kernels.move_to_end(key)
            return found
    kernel_t = broadening_matrix(grid, fwhm, edges).T.tocsr()
    with _kernels_lock:
        _kernels[key] = kernel_t
        while len(_kernels) > KERNEL_CACHE:
            _kernels.popitem(last=False)
    return kernel_t


def _window_half_width(ingredients, edges, fwhm_max, temperature):
    """Grid half-width (bins) the orders need to cover the output energies.

    At T = 0 every order lives at E > 0, so orders are exact up to the output's
    reach however far the DOS extends; at T > 0 the window also covers the DOS
    so energy-gain and loss terms combine correctly.
    """
    reach = max(abs(edges[0]), abs(edges[-1])) + 6.0 * fwhm_max + 2 * ingredients.bin_width
    half = int(np.ceil(reach / ingredients.bin_width))
    if temperature > 0:
        half = max(half, ingredients.dos.shape[1] - 1)
    return half


def _gauss_legendre_q(q_edges, points=3):
    """Nodes (n_bins, points) and weights (points,) for averaging over each |Q| bin."""
    x, w = np.polynomial.legendre.leggauss(points)
    centres = 0.5 * (q_edges[1:] + q_edges[:-1])
    half = 0.5 * np.diff(q_edges)
    return centres[:, None] + half[:, None] * x[None, :], w / 2.0


@dataclass
class _Fundamentals:
    """Anisotropic order 1: one-phonon functions along principal axes and their values."""

    t1_axes: np.ndarray     # (n_groups, 3, 2J+1) on the window
    principal: np.ndarray   # (n_groups, 3) principal mean-square displacements, A^2

    def q_factors(self, q2):
        """Per-axis factor Q^2 M_i(Q): shape (n_groups,) + q2.shape + (3,).

        Order 1 is ``sum_i T_i(E) Q^2 M_i(Q)`` with T_i the one-phonon function
        of the DOS along axis i; isotropic: ``M_i = exp(-Q^2 a) / 3``.
        """
        from insnet_core.debye_waller import powder_factors
        return powder_factors(self.principal, q2) * (q2[None, ..., None] / 3.0)


def _stick_orders(ingredients, temperature, orders, half, include_elastic):
    full = max(half, ingredients.dos.shape[1] - 1)
    t1 = one_phonon_function(ingredients, temperature, full)
    msd = t1.sum(axis=1)  # Debye-Waller exponent from the whole DOS
    window = slice(full - half, full + half + 1)
    fundamentals = None
    if ingredients.dos_axes is not None:
        t1_axes = _one_phonon(ingredients.dos_axes, ingredients.masses, ingredients.bin_width,
                              temperature, full)
        fundamentals = _Fundamentals(t1_axes[..., window], t1_axes.sum(axis=-1))
    t1 = t1[:, window]    # T = 0: nothing below zero, orders only needed up to the window
    stack = phonon_orders(t1, orders)
    if include_elastic:
        elastic = np.zeros_like(t1)
        elastic[:, half] = 1.0
        stack = [elastic] + stack
    first = 0 if include_elastic else 1
    return stack, msd, first, fundamentals


def _prepare(ing, energy_edges, fwhm_func, temperature, orders, include_elastic,
             orders_cache=None):
    """Orders on the grid and the resolution kernel onto the output bins.

    Returns ``(stack, msd, first_order, fundamentals, grid, rows, kernel_t)``:
    only grid points ``grid[rows]`` within 6 FWHM of the output range enter
    ``kernel_t`` (transposed, :func:`_kernel`); ``fundamentals`` is None for isotropic
    ingredients. ``orders_cache``
    (a dict, for calls on the same ingredients) keeps the orders of each grid window:
    an instrument's banks share them when their windows agree (at T > 0 the window
    is the DOS's, whatever the bank's resolution).
    """
    t = check_temperature(temperature)
    orders = check_orders(orders)
    probe = np.linspace(energy_edges[0], energy_edges[-1], 64)
    half = _window_half_width(ing, energy_edges, float(np.max(fwhm_func(probe))), t)
    key = (t, orders, half, include_elastic)
    if orders_cache is not None and key in orders_cache:
        stack, msd, first, fundamentals = orders_cache[key]
    else:
        stack, msd, first, fundamentals = _stick_orders(ing, t, orders, half, include_elastic)
        if orders_cache is not None:
            orders_cache[key] = (stack, msd, first, fundamentals)
    grid = (np.arange(2 * half + 1) - half) * ing.bin_width
    fwhm = np.asarray(fwhm_func(grid), dtype=float)
    reach = 6.0 * fwhm
    rows = np.nonzero((grid + reach >= energy_edges[0]) & (grid - reach <= energy_edges[-1]))[0]
    return stack, msd, first, fundamentals, grid, rows, _kernel(grid[rows], fwhm[rows],
                                                                energy_edges)


def _partition(ingredients, by):
    """Keys and group indices of the requested split: per group or per element."""
    if by == "group":
        return [(g, [g]) for g in range(ingredients.n_groups)]
    if by == "element":
        elements = list(dict.fromkeys(ingredients.elements))
        return [(el, [g for g, e in enumerate(ingredients.elements) if e == el])
                for el in elements]
    raise ValueError(f"by must be 'group' or 'element', got {by!r}")


def compute_map(ingredients, q_edges, energy_edges, fwhm_func, temperature=0.0, orders=4,
                include_elastic=False, by="group"):
    """Powder map S(|Q|, E) split by group and order.

    Parameters
    ----------
    ingredients : IncoherentIngredients
    q_edges : ndarray (n_q+1,)
        |Q| bin edges, 1/angstrom; the value of a bin is its average over |Q|.
    energy_edges : ndarray (n_e+1,)
        Energy-transfer bin edges, meV.
    fwhm_func : callable
        ``fwhm_func(E) -> FWHM`` in meV for energy transfers E (array).
    temperature : float
        K.
    orders : int
        Highest phonon order (1..MAX_ORDER).
    include_elastic : bool
        Add the order-0 elastic line (resolution-broadened delta at E = 0).
    by : {'group', 'element'}
        Split of the result: per group (keys ``(group_index, order)``) or per
        element (keys ``(element, order)``, summed with one matrix product).

    Returns
    -------
    dict
        ``{(group_index or element, order): ndarray (n_q, n_e)}`` in barn/sr/meV per cell.
    """
    ing = ingredients
    stack, msd, first, fund, grid, rows, kern = _prepare(ing, energy_edges, fwhm_func,
                                                         temperature, orders, include_elastic)
    nodes, weights = _gauss_legendre_q(q_edges)
    q2 = nodes ** 2
    pref = ing.cross_sections * ing.n_atoms / (4 * np.pi)
    parts = _partition(ing, by)
    # Debye-Waller factor at the quadrature nodes, per group: (n_groups, n_q, points)
    dw = np.exp(-q2[None, :, :] * msd[:, None, None])
    out = {}
    for k, arr in enumerate(stack):
        n = k + first
        if n == 1 and fund is not None:                              # anisotropic fundamentals
            g = ing.n_groups
            broadened = pref[:, None, None] * _times(
                fund.t1_axes[:, :, rows].reshape(3 * g, -1), kern).reshape(g, 3, -1)
            qfac = np.einsum("gqpi,p->gqi", fund.q_factors(q2), weights)   # (n_groups, n_q, 3)
            for key, members in parts:
                out[(key, n)] = np.einsum("gqi,gie->qe", qfac[members], broadened[members])
            continue
        broadened = pref[:, None] * _times(arr[:, rows], kern)       # (n_groups, n_e)
        qfac = (dw * q2[None] ** n) @ weights / factorial(n)         # (n_groups, n_q)
        for key, members in parts:
            out[(key, n)] = qfac[members].T @ broadened[members]    # (n_q, n_e)
    return out


def compute_trajectory(ingredients, q_of_energy, energy_edges, fwhm_func, temperature=0.0,
                       orders=4, include_elastic=False, by="group", orders_cache=None):
    """1D spectrum S(Q(E), E) along an instrument trajectory, split by group and order.

    Parameters
    ----------
    q_of_energy : callable
        ``q_of_energy(E) -> |Q|`` (1/angstrom) for energy transfers E (meV);
        NaN where the trajectory does not exist.
    orders_cache : dict, optional
        Shared by calls on the same ``ingredients`` (the banks of one instrument):
        phonon orders computed on an equal grid window are reused, not recomputed.
    Other parameters as :func:`compute_map`.

    Returns
    -------
    dict
        ``{(group_index or element, order): ndarray (n_e,)}`` in barn/sr/meV per cell.
    """
    ing = ingredients
    stack, msd, first, fund, grid, rows, kern = _prepare(ing, energy_edges, fwhm_func,
                                                         temperature, orders, include_elastic,
                                                         orders_cache)
    q = np.asarray(q_of_energy(grid[rows]), dtype=float)
    valid = np.isfinite(q)
    q2 = np.where(valid, q, 0.0) ** 2
    pref = ing.cross_sections * ing.n_atoms / (4 * np.pi)
    parts = _partition(ing, by)
    dw = np.exp(-q2[None, :] * msd[:, None]) * valid[None, :]     # (n_groups, n_rows)
    keys, rows_out = [], []
    for k, arr in enumerate(stack):
        n = k + first
        if n == 1 and fund is not None:                              # anisotropic fundamentals
            per_axis = fund.q_factors(q2) * valid[None, :, None]      # (n_groups, n_rows, 3)
            sticks = pref[:, None] * np.einsum("gir,gri->gr", fund.t1_axes[:, :, rows], per_axis)
        else:
            sticks = pref[:, None] * arr[:, rows] * dw * (q2 ** n / factorial(n))[None, :]
        for key, members in parts:
            keys.append((key, n))
            rows_out.append(sticks[members].sum(axis=0))
    broadened = _times(np.stack(rows_out), kern)      # every (part, order) in one product
    return {key: broadened[i] for i, key in enumerate(keys)}
