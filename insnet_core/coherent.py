r"""Coherent one-phonon powder map through euphonic (optional: ``pip install insnet[coherent]``).

Physics
-------
For one phonon created (energy loss) the coherent cross section of a crystal
with one primitive cell per lattice point is, per primitive cell,

.. math::

   \frac{d^2\sigma}{d\Omega\,dE} = \sum_{\mathbf{q}\nu}
   \frac{\hbar^2}{2\,E_{\mathbf{q}\nu}} \left[n(E_{\mathbf{q}\nu}) + 1\right]
   \left| \sum_\kappa \frac{b_\kappa}{\sqrt{M_\kappa}} e^{-W_\kappa(\mathbf{Q})}
   e^{i\mathbf{Q}\cdot\mathbf{r}_\kappa} (\mathbf{Q}\cdot\mathbf{e}^*_{\kappa\nu}) \right|^2
   \delta(E - E_{\mathbf{q}\nu})

with ``b`` the bound coherent scattering lengths (b^2 is barn/sr),
``W_kappa(Q) = Q.W_kappa.Q`` the anisotropic Debye-Waller exponent, n the
Bose occupation; energy gain has ``n`` instead of ``n + 1`` at ``-E``. No
``k_f/k_i`` factor is applied (S(Q,E) as for the incoherent engine). The
powder average is the mean over points on the sphere ``|Q|`` = const.

Euphonic computes the squared modulus divided by ``2 E`` *per atom*
(``StructureFactor.structure_factors``, area units); multiplying by the number
of atoms in the primitive cell gives the expression above per cell.

Numerics
--------
* Force constants: the phonopy object's own (in memory, written to a
  temporary ``phonopy.yaml`` and read back with
  ``euphonic.ForceConstants.from_phonopy``), Born charges and dielectric
  tensor included when phonopy has them; no acoustic sum rule is imposed
  beyond phonopy's own symmetrisation, so frequencies are phonopy's.
* Debye-Waller: euphonic's 3x3 exponent per atom on a Gamma-centred mesh
  (by default the incoherent engine's mesh, spacing < 0.1 1/A) at the same
  temperature, modes below ``min_energy`` left out as in the incoherent engine.
* Sphere sampling: euphonic's golden-spiral points, ``npts_per_shell`` per
  |Q| shell at each |Q| bin centre; with an integer ``seed`` every shell's set
  is turned by its own random rotation (reproducible) so neighbouring shells
  do not sample the same directions. ``seed=None`` keeps the spiral as it is,
  identical to ``euphonic.powder.sample_sphere_structure_factor`` with
  ``sampling='golden'``.
* Modes below ``min_energy`` (acoustic modes at the zone centres, imaginary
  modes) are left out, as in the incoherent engine.
* Energies are deposited on a fine grid (linear split between the two nearest
  points, which keeps weight and first moment) and broadened by a Gaussian
  integrated over each output bin.
"""
from __future__ import annotations

import io
import os
import tempfile
import warnings
from contextlib import contextmanager, redirect_stdout

import numpy as np

from insnet_core import InputError
from insnet_core.incoherent import (DEFAULT_MIN_ENERGY, broadening_matrix,
                                    check_temperature)
from insnet_core.phonons import DEFAULT_MESH_SPACING, mesh_for_spacing
from insnet_core.spectrum import Spectrum, check_edges
from insnet_core.units import KB_MEV_PER_K

__all__ = ["coherent_powder_map", "euphonic_force_constants", "coherent_scattering_lengths",
           "sphere_points", "debye_waller", "DEFAULT_NPTS_PER_SHELL"]

#: Points on each |Q| sphere by default.
DEFAULT_NPTS_PER_SHELL = 500

_METHOD = "coherent one-phonon (euphonic)"


def _import_euphonic():
    try:
        import euphonic  # noqa: F401
        from euphonic import ForceConstants, ureg  # noqa: F401
    except ImportError:
        raise InputError("the coherent calculation needs euphonic, which is not installed; "
                         "install it with: pip install insnet[coherent]") from None
    return euphonic


@contextmanager
def _quiet_euphonic():
    """Hide euphonic's informational prints and its OpenMP notice."""
    with redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*OpenMP.*")
        yield


def euphonic_force_constants(phonon):
    """euphonic ``ForceConstants`` from a ``phonopy.Phonopy`` with force constants.

    The phonopy object (as returned by :func:`insnet_core.phonons.load_phonopy`)
    is written to a temporary ``phonopy.yaml`` (force constants, masses, Born
    charges and dielectric tensor included) and read back by euphonic's own
    phonopy reader, which handles supercell/primitive-cell bookkeeping and the
    dipole split of the force constants. Nothing is written next to the input.

    Raises
    ------
    InputError
        euphonic missing, or the phonopy object has no force constants.
    """
    _import_euphonic()
    from euphonic import ForceConstants

    if getattr(phonon, "force_constants", None) is None:
        raise InputError("the phonopy object has no force constants; load it with load_phonopy")
    with tempfile.TemporaryDirectory(prefix="insnet-euphonic-") as tmp:
        path = os.path.join(tmp, "phonopy.yaml")
        settings = {"force_constants": True, "force_sets": False, "displacements": False,
                    "born_effective_charge": True,
                    "dielectric_constant": True}
        phonon.save(path, settings=settings)
        with _quiet_euphonic():
            try:
                return ForceConstants.from_phonopy(path=tmp, summary_name="phonopy.yaml")
            except Exception as exc:  # euphonic raises several types for odd inputs
                raise InputError(f"euphonic could not read the force constants "
                                 f"({type(exc).__name__}: {str(exc).strip()[:200]})") from None


def coherent_scattering_lengths(symbols):
    """Bound coherent scattering lengths as euphonic expects them: {symbol: Quantity in fm}.

    Values are the real parts of :mod:`periodictable`'s ``b_c`` (Sears 1992),
    the same source as the cross sections of the incoherent engine.
    """
    _import_euphonic()
    import periodictable
    from euphonic import ureg

    out = {}
    for sym in dict.fromkeys(str(s) for s in symbols):
        try:
            el = periodictable.elements.symbol(sym)
        except ValueError:
            raise InputError(f"unknown element {sym!r}") from None
        b = None if el.neutron is None else el.neutron.b_c
        if b is None:
            raise InputError(f"element {sym}: no tabulated coherent scattering length")
        out[sym] = float(b) * ureg("fm")
    return out


def sphere_points(npts, rng=None):
    """Unit vectors on the sphere: euphonic's golden spiral, optionally turned.

    Parameters
    ----------
    npts : int
    rng : numpy.random.Generator, optional
        When given, the whole set is turned by one uniformly random rotation.

    Returns
    -------
    ndarray, shape (npts, 3)
    """
    from euphonic.sampling import golden_sphere

    pts = np.asarray(list(golden_sphere(int(npts))), dtype=float)
    if rng is not None:
        from scipy.spatial.transform import Rotation
        pts = Rotation.random(random_state=rng).apply(pts)
    return pts


def _gamma_mesh(mesh):
    axes = [np.arange(n) / n for n in mesh]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)


def _check_mesh(mesh):
    try:
        out = tuple(int(n) for n in mesh)
    except (TypeError, ValueError):
        raise InputError(f"Debye-Waller mesh must be 3 positive integers, got {mesh!r}") from None
    if len(out) != 3 or min(out) < 1 or any(float(a) != b for a, b in zip(mesh, out)):
        raise InputError(f"Debye-Waller mesh must be 3 positive integers, got {mesh!r}")
    return out


def _modes_kwargs(fc):
    """Keyword arguments for calculate_qpoint_phonon_modes: no extra ASR, dipole if present."""
    return {"asr": None, "dipole": fc.born is not None}


def debye_waller(fc, temperature, mesh=None, min_energy=DEFAULT_MIN_ENERGY):
    """euphonic ``DebyeWaller`` on a Gamma-centred mesh (all points, no symmetry reduction).

    Parameters
    ----------
    fc : euphonic.ForceConstants
    temperature : float
        K (0 gives the zero-point value).
    mesh : tuple of 3 int, optional
        Default: :func:`insnet_core.phonons.mesh_for_spacing` of the primitive
        cell (the incoherent engine's mesh).
    min_energy : float
        Modes below this energy (meV) are left out.
    """
    _import_euphonic()
    from euphonic import ureg

    t = check_temperature(temperature)
    lattice = fc.crystal.cell_vectors.to("angstrom").magnitude
    mesh = mesh_for_spacing(lattice, DEFAULT_MESH_SPACING) if mesh is None else _check_mesh(mesh)
    with _quiet_euphonic():
        modes = fc.calculate_qpoint_phonon_modes(_gamma_mesh(mesh), **_modes_kwargs(fc))
        return modes.calculate_debye_waller(t * ureg("K"),
                                            frequency_min=float(min_energy) * ureg("meV"))


def _bose(energy, temperature):
    if temperature == 0:
        return np.zeros_like(energy)
    with np.errstate(over="ignore"):
        return 1.0 / np.expm1(energy / (KB_MEV_PER_K * temperature))


def _deposit(grid_weights, start, step, energies, weights):
    """Linear split of sticks onto a uniform grid (keeps weight and first moment)."""
    x = (energies - start) / step
    lo = np.floor(x).astype(int)
    frac = x - lo
    n = grid_weights.size
    ok = (lo >= 0) & (lo + 1 < n)
    np.add.at(grid_weights, lo[ok], weights[ok] * (1 - frac[ok]))
    np.add.at(grid_weights, lo[ok] + 1, weights[ok] * frac[ok])


def coherent_powder_map(phonon, q_edges, energy_edges, temperature=0.0, fwhm=1.5,
                        npts_per_shell=DEFAULT_NPTS_PER_SHELL, seed=0, dw_grid=None,
                        min_energy=DEFAULT_MIN_ENERGY):
    """Coherent one-phonon powder map S(|Q|, E) from the force constants, via euphonic.

    Parameters
    ----------
    phonon : phonopy.Phonopy or euphonic.ForceConstants
        As returned by :func:`insnet_core.phonons.load_phonopy`; an already
        converted :func:`euphonic_force_constants` saves the conversion (a few
        seconds for polar crystals) when several maps are computed.
    q_edges : array_like (n_q+1,)
        Ascending |Q| bin edges, 1/angstrom, >= 0. Each bin gets the powder
        average on the sphere at its centre.
    energy_edges : array_like (n_e+1,)
        Ascending energy-transfer bin edges, meV (negative = energy gain).
    temperature : float
        K: Bose factor and Debye-Waller factor.
    fwhm : float or callable
        Gaussian energy resolution, FWHM in meV; a callable ``fwhm(E)`` gives
        it per energy transfer (array in, array out).
    npts_per_shell : int
        Points on each |Q| sphere.
    seed : int or None
        Seed of the per-shell random rotations of the sampling points; None
        uses the unrotated golden spiral (see module notes).
    dw_grid : tuple of 3 int, optional
        Mesh for the Debye-Waller factor (default: spacing < 0.1 1/A).
    min_energy : float
        Modes below this energy (meV) are left out.

    Returns
    -------
    Spectrum
        Map in barn/sr/meV per primitive cell (density per meV; each |Q| row
        is the value at the bin centre).

    Raises
    ------
    InputError
        euphonic not installed; invalid edges, temperature, FWHM or sampling.
    """
    _import_euphonic()
    from euphonic import ForceConstants, ureg

    t = check_temperature(temperature)
    q_edges = check_edges(q_edges, "|Q| bin edges")
    if q_edges[0] < 0:
        raise InputError(f"|Q| bin edges must be >= 0 1/A, got {q_edges[0]:g}")
    energy_edges = check_edges(energy_edges, "energy bin edges")
    try:
        npts = int(npts_per_shell)
    except (TypeError, ValueError):
        npts = 0
    if npts < 1 or npts != npts_per_shell:
        raise InputError(f"npts_per_shell must be a positive integer, got {npts_per_shell!r}")
    if not min_energy > 0:
        raise InputError(f"min_energy must be > 0 meV, got {min_energy!r}")

    if callable(fwhm):
        fwhm_func = fwhm
        fwhm_label = "energy-dependent"
    else:
        try:
            width = float(fwhm)
        except (TypeError, ValueError):
            raise InputError(f"FWHM must be a number in meV or a function of E, got {fwhm!r}") from None
        if not (np.isfinite(width) and width > 0):
            raise InputError(f"FWHM must be > 0 meV, got {fwhm!r}")
        fwhm_func = lambda e: np.full(np.shape(e), width)  # noqa: E731
        fwhm_label = width
    probe = np.linspace(energy_edges[0], energy_edges[-1], 257)
    probe_fwhm = np.asarray(fwhm_func(probe), dtype=float)
    if probe_fwhm.shape != probe.shape or not np.all(np.isfinite(probe_fwhm) & (probe_fwhm > 0)):
        raise InputError("the FWHM function must return positive finite widths (meV) "
                         "for every energy transfer")

    fc = phonon if isinstance(phonon, ForceConstants) else euphonic_force_constants(phonon)
    n_atoms = fc.crystal.n_atoms
    lengths = coherent_scattering_lengths(fc.crystal.atom_type)
    lattice = fc.crystal.cell_vectors.to("angstrom").magnitude
    recip = 2 * np.pi * np.linalg.inv(lattice).T           # rows: b_i in 1/A
    dw_mesh = mesh_for_spacing(lattice, DEFAULT_MESH_SPACING) if dw_grid is None \
        else _check_mesh(dw_grid)
    dw = debye_waller(fc, t, dw_mesh, min_energy)

    # Fine grid over the output window plus the Gaussian reach; sticks further
    # out contribute nothing (more than 14 standard deviations away).
    fwhm_max, fwhm_min = float(probe_fwhm.max()), float(probe_fwhm.min())
    step = min(0.05, fwhm_min / 10.0)
    reach = 6.0 * fwhm_max
    start = energy_edges[0] - reach
    n_grid = int(np.ceil((energy_edges[-1] + reach - start) / step)) + 2
    grid = start + step * np.arange(n_grid)
    kern = broadening_matrix(grid, np.asarray(fwhm_func(grid), dtype=float), energy_edges)

    rng = None if seed is None else np.random.default_rng(seed)
    shells = 0.5 * (q_edges[1:] + q_edges[:-1])
    values = np.zeros((shells.size, energy_edges.size - 1))
    to_barn_per_cell = n_atoms * (1.0 * ureg("mbarn")).to("barn").magnitude
    for i, q in enumerate(shells):
        pts = sphere_points(npts, rng)
        qpts_frac = np.linalg.solve(recip.T, (pts * q).T).T
        with _quiet_euphonic():
            modes = fc.calculate_qpoint_phonon_modes(qpts_frac, **_modes_kwargs(fc))
            sf = modes.calculate_structure_factor(scattering_lengths=lengths, dw=dw)
        energies = sf.frequencies.to("meV").magnitude.ravel()
        # structure_factors: per atom, area units -> barn/sr per cell
        weight = (sf.structure_factors.to("mbarn").magnitude.ravel()
                  * to_barn_per_cell / npts)
        keep = energies >= min_energy
        energies, weight = energies[keep], weight[keep]
        n = _bose(energies, t)
        sticks = np.zeros(n_grid)
        _deposit(sticks, start, step, energies, weight * (n + 1))
        if t > 0:
            _deposit(sticks, start, step, -energies, weight * n)
        values[i] = kern.T @ sticks

    import euphonic
    metadata = {
        "method": _METHOD,
        "temperature_K": t,
        "fwhm_meV": fwhm_label,
        "npts_per_shell": npts,
        "sampling": "golden spiral" + ("" if seed is None else f", random rotation per shell (seed {seed})"),
        "debye_waller_mesh": list(dw_mesh),
        "min_energy_meV": float(min_energy),
        "scattering_lengths": "periodictable b_c (Sears 1992)",
        "dipole_correction": fc.born is not None,
        "n_atoms_per_cell": int(n_atoms),
        "euphonic_version": getattr(euphonic, "__version__", "unknown"),
    }
    return Spectrum(energy_edges=energy_edges, values=values, q_edges=q_edges,
                    y_label="S(Q,E) (barn/sr/meV/cell)", metadata=metadata)
