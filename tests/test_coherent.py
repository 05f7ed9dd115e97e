r"""Coherent one-phonon mode (euphonic) checked against independent calculations.

Normalisation conventions used below
------------------------------------
* Independent numpy reference, per primitive cell, in barn/sr, for mode nu at Q:

  .. math::

     S_\nu(\mathbf{Q}) = \frac{\hbar^2}{2 E_\nu}
       \Big| \sum_\kappa \frac{b_\kappa}{\sqrt{M_\kappa}} e^{-W_\kappa(\mathbf{Q})}
       (\mathbf{Q}\cdot\mathbf{e}^{*}_{\kappa\nu}(\mathbf{Q})) \Big|^2,
     \qquad W_\kappa(\mathbf{Q}) = \tfrac12\,\mathbf{Q}\cdot U_\kappa\cdot\mathbf{Q}

  with ``e`` phonopy's eigenvectors evaluated at the *unreduced* Q (phonopy's
  dynamical matrix carries the atomic positions in its phases, so the factor
  ``exp(iQ.r_kappa)`` of the textbook formula is already inside ``e``), ``b``
  in fm (1 fm^2 = 0.01 barn), M in amu, ``hbar^2/2`` from
  :data:`insnet_core.units.HBAR2_OVER_2AMU`, and ``U_kappa`` phonopy's thermal
  displacement matrix <u u^T> on the same mesh. The same quantity with the
  reduced ``q = Q - G`` (G = nearest reciprocal-lattice vector) needs the
  explicit phase ``exp(iG.r_kappa)``.
* Both forms agree exactly without the dipole (NAC) correction, which checks
  the phase convention. With NAC, phonopy's Ewald sum is not periodic in G
  for q outside the first zone, so the reference uses the reduced q, as
  euphonic does (``reduce_qpts``).
* euphonic's ``StructureFactor.structure_factors`` is the same expression
  divided by the number of atoms in the cell (per atom), so it is multiplied by
  ``n_atoms`` before comparing.
* Degenerate modes have arbitrary eigenvectors inside their subspace, so
  intensities are compared summed over each degenerate set.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.special import erf

from insnet_core import InputError
from insnet_core.incoherent import DEFAULT_MIN_ENERGY
from insnet_core.phonons import load_phonopy, run_mesh
from insnet_core.units import HBAR2_OVER_2AMU, KB_MEV_PER_K, MEV_PER_THZ

euphonic = pytest.importorskip("euphonic")
pytestmark = pytest.mark.filterwarnings("ignore:More than one OpenMP library")
from euphonic import ureg  # noqa: E402
from euphonic.powder import sample_sphere_structure_factor  # noqa: E402

from insnet_core.coherent import (coherent_powder_map, coherent_scattering_lengths,  # noqa: E402
                                  euphonic_force_constants)

DATA = Path(__file__).resolve().parents[1] / "examples" / "data" / "phonondb"
CSAU = DATA / "mp-2667-20180417"
SIF4 = DATA / "mp-1818-20180417"

#: generic Q points in primitive reciprocal-lattice units (no symmetry, not near G)
Q_FRAC = np.array([[0.37, 1.21, -0.64], [2.13, -0.58, 0.91], [-1.44, 0.27, 1.83]])
TEMPERATURE = 300.0


def _crystal_data(path):
    phonon = load_phonopy(path)
    return phonon, euphonic_force_constants(phonon)


@pytest.fixture(scope="module")
def csau():
    return _crystal_data(CSAU)


@pytest.fixture(scope="module", params=[CSAU, SIF4], ids=["CsAu", "SiF4"])
def crystal(request, csau):
    return csau if request.param == CSAU else _crystal_data(request.param)


def _gamma_mesh(mesh):
    grid = np.indices(mesh).reshape(3, -1).T
    return grid / np.array(mesh, dtype=float)


def _euphonic_dw(fc, temperature, mesh):
    """Debye-Waller object straight from euphonic, on a Gamma-centred mesh."""
    modes = fc.calculate_qpoint_phonon_modes(_gamma_mesh(mesh), asr=None,
                                             dipole=fc.born is not None)
    return modes.calculate_debye_waller(temperature * ureg("K"),
                                        frequency_min=DEFAULT_MIN_ENERGY * ureg("meV"))


def _b_fm(symbols):
    import periodictable
    return np.array([periodictable.elements.symbol(s).neutron.b_c for s in symbols])


def _numpy_structure_factor(phonon, q_frac, displacement, reduced=False):
    """Independent S_nu(Q) (barn/sr per cell, no Bose factor) from phonopy's eigenvectors.

    Returns energies (n_q, n_modes) in meV and S (n_q, n_modes).
    """
    prim = phonon.primitive
    lattice = np.array(prim.cell, dtype=float)
    recip = 2 * np.pi * np.linalg.inv(lattice).T
    masses = np.array(prim.masses, dtype=float)
    b = _b_fm(prim.symbols)
    positions = np.array(prim.scaled_positions, dtype=float)
    n_atoms = len(masses)
    g = np.rint(q_frac) if reduced else np.zeros_like(q_frac)
    phonon.run_qpoints(q_frac - g, with_eigenvectors=True)
    freqs = np.asarray(phonon.qpoints.frequencies) * MEV_PER_THZ
    eigvecs = np.asarray(phonon.qpoints.eigenvectors)          # (n_q, 3n, 3n) [comp, mode]
    out = np.zeros_like(freqs)
    for iq, qf in enumerate(q_frac):
        q_cart = qf @ recip
        w = 0.5 * np.einsum("a,kab,b->k", q_cart, displacement, q_cart)
        phase = np.exp(2j * np.pi * positions @ g[iq])          # 1 for the unreduced Q
        e = eigvecs[iq].reshape(n_atoms, 3, -1)                  # (atom, xyz, mode)
        amp = np.einsum("k,kxn,x->n", b / np.sqrt(masses) * np.exp(-w) * phase,
                        np.conj(e), q_cart)
        out[iq] = 0.01 * HBAR2_OVER_2AMU * np.abs(amp) ** 2 / freqs[iq]
    return freqs, out


def _degenerate_sums(energies, values, tol=1e-3):
    """Sum ``values`` over sets of modes whose energies agree within ``tol`` meV."""
    order = np.argsort(energies)
    e, v = energies[order], values[order]
    starts = np.r_[0, np.nonzero(np.diff(e) > tol)[0] + 1]
    return np.add.reduceat(v, starts), e[starts]


def _phonopy_displacement_matrices(phonon, mesh, temperature):
    phonon.run_mesh(list(mesh), is_mesh_symmetry=False, with_eigenvectors=True,
                    is_gamma_center=True)
    phonon.run_thermal_displacement_matrices(temperatures=[temperature],
                                             freq_min=DEFAULT_MIN_ENERGY / MEV_PER_THZ)
    return np.asarray(phonon.thermal_displacement_matrices.thermal_displacement_matrices)[0].real


# ---------------------------------------------------------------- (e) mode by mode
def test_structure_factor_matches_independent_numpy(crystal):
    phonon, fc = crystal
    mesh = run_mesh(phonon, spacing=0.1).mesh  # full-mesh comparison: keep it small
    n_atoms = len(phonon.primitive.symbols)
    disp = _phonopy_displacement_matrices(phonon, mesh, TEMPERATURE)   # (n_atoms, 3, 3) A^2

    dw = _euphonic_dw(fc, TEMPERATURE, mesh)
    # euphonic's exponent matrix is W = <u u^T> / 2
    w_euph = dw.debye_waller.to("angstrom**2").magnitude
    assert np.allclose(2 * w_euph, disp, rtol=1e-4, atol=1e-8)

    e_np, s_np = _numpy_structure_factor(phonon, Q_FRAC, disp, reduced=True)

    modes = fc.calculate_qpoint_phonon_modes(Q_FRAC, asr=None, dipole=fc.born is not None)
    sf = modes.calculate_structure_factor(
        scattering_lengths=coherent_scattering_lengths(phonon.primitive.symbols), dw=dw)
    e_eu = sf.frequencies.to("meV").magnitude
    s_eu = sf.structure_factors.to("barn").magnitude * n_atoms       # per atom -> per cell
    assert np.abs(np.sort(e_eu, axis=1) - np.sort(e_np, axis=1)).max() < 2e-3  # meV

    worst = 0.0
    for iq in range(len(Q_FRAC)):
        ref, ref_e = _degenerate_sums(e_np[iq], s_np[iq])
        got, got_e = _degenerate_sums(e_eu[iq], s_eu[iq])
        assert ref.shape == got.shape and np.allclose(ref_e, got_e, atol=2e-3)
        scale = ref.max()
        # relative per set; sets carrying < 1e-4 of the strongest are compared absolutely
        rel = np.abs(got - ref) / np.maximum(ref, 1e-4 * scale)
        worst = max(worst, rel.max())
    assert worst < 2e-4, f"worst relative difference {worst:.2e}"


@pytest.mark.parametrize("path", [CSAU, SIF4], ids=["CsAu", "SiF4"])
def test_phase_convention_reduced_equals_unreduced_without_nac(path):
    """Without NAC, S_nu from phonopy at Q and at q = Q - G (with exp(iG.r)) coincide."""
    phonon = load_phonopy(path, born=False)
    disp = np.zeros((len(phonon.primitive.symbols), 3, 3))
    e_full, s_full = _numpy_structure_factor(phonon, Q_FRAC, disp)
    e_red, s_red = _numpy_structure_factor(phonon, Q_FRAC, disp, reduced=True)
    assert np.allclose(e_full, e_red, atol=1e-6)
    for iq in range(len(Q_FRAC)):
        full, _ = _degenerate_sums(e_full[iq], s_full[iq])
        red, _ = _degenerate_sums(e_red[iq], s_red[iq])
        assert np.allclose(full, red, rtol=1e-6, atol=1e-9 * full.max())


def test_bose_populated_intensities_match(csau):
    """euphonic's binned, Bose-populated S(Q,E) at explicit Q equals (n+1) S_nu and n S_nu."""
    phonon, fc = csau
    mesh = (8, 8, 8)
    disp = _phonopy_displacement_matrices(phonon, mesh, TEMPERATURE)
    e_np, s_np = _numpy_structure_factor(phonon, Q_FRAC, disp, reduced=True)
    dw = _euphonic_dw(fc, TEMPERATURE, mesh)
    modes = fc.calculate_qpoint_phonon_modes(Q_FRAC, asr=None, dipole=True)
    sf = modes.calculate_structure_factor(
        scattering_lengths=coherent_scattering_lengths(phonon.primitive.symbols), dw=dw)
    edges = np.linspace(-15.0, 15.0, 3001)
    sqw = sf.calculate_sqw_map(edges * ureg("meV"), calc_bose=True)
    z = sqw.z_data.to("barn/meV").magnitude * len(phonon.primitive.symbols)  # (n_q, n_e)
    centres = 0.5 * (edges[1:] + edges[:-1])
    n = 1.0 / np.expm1(e_np / (KB_MEV_PER_K * TEMPERATURE))
    loss = (z * np.diff(edges))[:, centres > 0].sum(axis=1)
    gain = (z * np.diff(edges))[:, centres < 0].sum(axis=1)
    assert np.allclose(loss, (s_np * (n + 1)).sum(axis=1), rtol=1e-4)
    assert np.allclose(gain, (s_np * n).sum(axis=1), rtol=1e-4)


# ------------------------------------------------------ the map against euphonic
def _gaussian_rebin(centres, weights, edges, fwhm):
    """Sticks (centres, weights) -> Gaussian densities integrated over ``edges``."""
    sigma = fwhm / (2 * np.sqrt(2 * np.log(2)))
    cdf = 0.5 * erf((edges[None, :] - centres[:, None]) / (np.sqrt(2) * sigma))
    return (weights @ np.diff(cdf, axis=1)) / np.diff(edges)


def test_map_equals_direct_euphonic_powder_average(csau):
    phonon, fc = csau
    q_edges = np.array([0.5, 1.5, 2.5, 3.5])
    e_edges = np.arange(-12.0, 14.01, 0.5)
    fwhm, npts, mesh = 1.5, 200, (8, 8, 8)
    spec = coherent_powder_map(fc, q_edges, e_edges, temperature=TEMPERATURE, fwhm=fwhm,
                               npts_per_shell=npts, seed=None, dw_grid=mesh)
    assert spec.is_map and spec.values.shape == (3, e_edges.size - 1)
    assert spec.y_label == "S(Q,E) (barn/sr/meV/cell)"
    assert spec.metadata["method"] == "coherent one-phonon (euphonic)"
    assert np.allclose(spec.q_edges, q_edges) and np.allclose(spec.energy_edges, e_edges)

    dw = _euphonic_dw(fc, TEMPERATURE, mesh)
    fine = np.arange(-2000, 2001) * 0.01                     # meV, edges at +-0.5 exactly
    centres = 0.5 * (fine[1:] + fine[:-1])
    lengths = coherent_scattering_lengths(phonon.primitive.symbols)
    worst = 0.0
    for row, q in enumerate(0.5 * (q_edges[1:] + q_edges[:-1])):
        s1d = sample_sphere_structure_factor(
            fc, q * ureg("1/angstrom"), dw=dw, temperature=TEMPERATURE * ureg("K"),
            sampling="golden", npts=npts, jitter=False, energy_bins=fine * ureg("meV"),
            scattering_lengths=lengths, asr=None, dipole=True)
        dens = s1d.y_data.to("barn/meV").magnitude * len(phonon.primitive.symbols)
        weights = dens * np.diff(fine)
        weights[np.abs(centres) < DEFAULT_MIN_ENERGY] = 0.0   # the map leaves these modes out
        ref = _gaussian_rebin(centres, weights, e_edges, fwhm)
        diff = np.abs(spec.values[row] - ref).max() / ref.max()
        worst = max(worst, diff)
    assert worst < 2e-3, f"map differs from euphonic by {100 * worst:.3f} % of the peak"


# --------------------------------------------------------------- physical sanity
def test_zero_beyond_the_phonon_band(csau):
    phonon, fc = csau
    e_max = run_mesh(phonon, spacing=0.1).max_energy
    fwhm = 1.5
    e_edges = np.arange(-25.0, 25.01, 0.25)
    spec = coherent_powder_map(fc, [1.0, 2.0, 3.0], e_edges, temperature=TEMPERATURE,
                               fwhm=fwhm, npts_per_shell=100, dw_grid=(6, 6, 6))
    peak = spec.values.max()
    assert peak > 0 and np.all(spec.values >= 0)
    far = (spec.energy_edges[:-1] > 1.05 * e_max + 4 * fwhm) | \
          (spec.energy_edges[1:] < -(1.05 * e_max + 4 * fwhm))
    assert far.any()
    assert spec.values[:, far].max() < 1e-9 * peak
    # at 0 K there is no energy gain at all
    cold = coherent_powder_map(fc, [1.0, 2.0], e_edges, temperature=0.0, fwhm=fwhm,
                               npts_per_shell=100, dw_grid=(6, 6, 6))
    gain = cold.energy_edges[1:] < -4 * fwhm
    assert cold.values[:, gain].max() < 1e-9 * cold.values.max()


@pytest.mark.parametrize("temperature", [0.0, TEMPERATURE])
def test_first_moment_sum_rule_grows_as_q_squared(csau, temperature):
    r"""\int E S(Q,E) dE = sum_k b_k^2 hbar^2 Q^2 / (2 M_k) exp(-Q^2 <u_k^2>) per cell.

    Completeness of the eigenvectors makes the one-phonon first moment (loss
    minus gain, the Bose factors cancel) independent of the dispersion: at small
    Q it grows exactly as Q^2 (the acoustic region), with the free-atom
    prefactor. CsAu is cubic, so the Debye-Waller exponent is isotropic.
    """
    phonon, fc = csau
    mesh = (8, 8, 8)
    q_edges = np.array([0.35, 0.45, 0.55, 0.65, 0.75])
    e_edges = np.arange(-25.0, 25.01, 0.1)
    spec = coherent_powder_map(fc, q_edges, e_edges, temperature=temperature, fwhm=1.5,
                               npts_per_shell=300, dw_grid=mesh)
    moment = (spec.values * spec.energy_centres * spec.energy_widths).sum(axis=1)
    prim = phonon.primitive
    b2_over_m = 0.01 * _b_fm(prim.symbols) ** 2 / np.array(prim.masses, dtype=float)
    u2 = np.trace(_phonopy_displacement_matrices(phonon, mesh, temperature), axis1=1, axis2=2) / 3
    q = spec.q_centres
    expected = HBAR2_OVER_2AMU * q ** 2 * (b2_over_m[None, :] * np.exp(-np.outer(q ** 2, u2))).sum(1)
    # (no mode of these shells falls below DEFAULT_MIN_ENERGY, so nothing is left out)
    assert np.allclose(moment, expected, rtol=1e-4), moment / expected - 1
    # and the low-Q intensity sits in the acoustic branches, moving up with Q
    mean_energy = (spec.values * spec.energy_centres).sum(1) / spec.values.sum(1)
    assert np.all(np.diff(mean_energy) > 0)


# ------------------------------------------------------------- API behaviour
def test_seed_is_reproducible_and_converges(csau):
    _, fc = csau
    kwargs = dict(q_edges=[1.0, 2.0, 3.0], energy_edges=np.arange(0.0, 12.01, 0.5),
                  temperature=0.0, npts_per_shell=150, dw_grid=(6, 6, 6))
    a = coherent_powder_map(fc, seed=3, **kwargs)
    b = coherent_powder_map(fc, seed=3, **kwargs)
    c = coherent_powder_map(fc, seed=None, **kwargs)
    assert np.array_equal(a.values, b.values)
    # different directions, same powder average to sampling accuracy
    ratio = a.values.sum(1) / c.values.sum(1)
    assert np.all(np.abs(ratio - 1) < 0.1)


def test_accepts_phonopy_object_and_callable_fwhm(csau):
    phonon, fc = csau
    kwargs = dict(q_edges=[2.0, 3.0], energy_edges=np.arange(0.0, 12.01, 0.5),
                  temperature=10.0, npts_per_shell=50, dw_grid=(4, 4, 4), seed=1)
    from_fc = coherent_powder_map(fc, fwhm=1.0, **kwargs)
    from_phonopy = coherent_powder_map(phonon, fwhm=lambda e: np.full(np.shape(e), 1.0), **kwargs)
    assert np.allclose(from_fc.values, from_phonopy.values, rtol=1e-6,
                       atol=1e-9 * from_fc.values.max())


@pytest.mark.parametrize("kwargs, words", [
    (dict(q_edges=[-1.0, 1.0]), ">= 0"),
    (dict(q_edges=[2.0, 1.0]), "ascending"),
    (dict(temperature=-5), "temperature"),
    (dict(fwhm=0.0), "FWHM"),
    (dict(fwhm="wide"), "FWHM"),
    (dict(npts_per_shell=0), "npts_per_shell"),
    (dict(npts_per_shell=2.5), "npts_per_shell"),
    (dict(dw_grid=(4, 4)), "mesh"),
])
def test_bad_arguments(csau, kwargs, words):
    _, fc = csau
    args = dict(q_edges=[1.0, 2.0], energy_edges=[0.0, 5.0, 10.0], npts_per_shell=10,
                dw_grid=(2, 2, 2))
    args.update(kwargs)
    with pytest.raises(InputError, match=words):
        coherent_powder_map(fc, **args)


def test_missing_euphonic_is_a_clear_error(monkeypatch):
    for name in [m for m in sys.modules if m == "euphonic" or m.startswith("euphonic.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "euphonic", None)      # makes `import euphonic` fail
    with pytest.raises(InputError, match=r"pip install insnet\[coherent\]"):
        coherent_powder_map(object(), [1.0, 2.0], [0.0, 1.0])
