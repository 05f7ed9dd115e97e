"""Fidelity settings: converged default mesh, cell units, VISION settings, shared defaults.

The numbers behind the tolerances are in docs/engine.md ("Mesh") and were measured
with the same calls.
"""
import inspect
from pathlib import Path

import numpy as np
import pytest

from insnet_core import InputError
from insnet_core.defaults import DEFAULT_ORDERS, DEFAULT_TEMPERATURE_K, MAX_ORDER
from insnet_core.incoherent import build_ingredients
from insnet_core.instruments import get_instrument
from insnet_core.phonons import (default_mesh, load_phonopy, mesh_for_spacing,
                                 primitive_lattice_angstrom, run_mesh)
from insnet_core.simulate import Settings, choose_orders, simulate_ingredients
from insnet_core.units import MEV_PER_CM1

DATA = Path(__file__).resolve().parent / "data"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "data" / "phonondb"
BN = DATA / "mp-984-20180417"           # hexagonal BN, 4 atoms: the graphite analogue
QE_CSAU = DATA / "csau_qe_bohr" / "phonopy.yaml"


def _cosine(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def sif4_ing(sif4_modes):
    return build_ingredients(sif4_modes)


# ------------------------------------------------------------------------- mesh rule
def test_default_mesh_rule_by_hand():
    # 3 x 3 x 3 A cubic cell: |b| = 2.0944 1/A, spacing rule 0.1 -> 21 points per axis
    lattice = np.diag([3.0, 3.0, 3.0])
    assert default_mesh(lattice, 200) == mesh_for_spacing(lattice, 0.1) == (21, 21, 21)
    # 2 atoms: >= 4e6 / 8 = 5e5 points -> spacing (V* 8 / 4e6)^(1/3)
    mesh = default_mesh(lattice, 2)
    assert np.prod(mesh) >= 5e5
    assert np.prod(np.array(mesh) - 1) < 5e5          # and not more than needed
    assert default_mesh(lattice, 2, work=0) == (21, 21, 21)


@pytest.fixture(scope="module")
def bn_spectra():
    """VISION average spectra of h-BN on the old, the default and a 2x denser mesh."""
    phonon = load_phonopy(BN)
    settings = Settings.check("VISION", temperature=5.0, orders=1)
    lattice = primitive_lattice_angstrom(phonon)

    def spectrum(mesh):
        modes = run_mesh(phonon, mesh=mesh)
        return simulate_ingredients(build_ingredients(modes), settings).total.values[-1]

    new = default_mesh(lattice, 4)
    old = mesh_for_spacing(lattice, 0.1)
    return {"old": spectrum(old), "new": spectrum(new),
            "new2": spectrum(tuple(2 * m for m in new)),
            "old2": spectrum(tuple(2 * m for m in old)), "mesh": new}


def test_default_mesh_converged_on_small_cell(bn_spectra):
    # measured: 1 - cos = 1.3e-3 (default mesh 62x62x20) vs 1.6e-2 (0.1 1/A mesh 29x29x10)
    new = 1 - _cosine(bn_spectra["new"], bn_spectra["new2"])
    old = 1 - _cosine(bn_spectra["old"], bn_spectra["old2"])
    assert bn_spectra["mesh"] == (62, 62, 20)
    assert new < 3e-3
    assert old > 5 * new


def test_run_mesh_spacing_alone_is_the_reference_mesh():
    phonon = load_phonopy(BN)
    assert run_mesh(phonon, spacing=0.1).mesh == (29, 29, 10)


@pytest.mark.parametrize("bad", [0, -0.1, float("nan"), "x"])
def test_bad_mesh_spacing(bad):
    with pytest.raises(InputError, match="mesh spacing"):
        mesh_for_spacing(np.eye(3) * 3, bad)


@pytest.mark.parametrize("bad", [(0, 1, 1), (2, 2), (2.5, 2, 2), "abc"])
def test_bad_mesh(bad):
    from insnet_core.simulate import simulate
    with pytest.raises(InputError, match="mesh"):
        simulate(EXAMPLES / "mp-2667-20180417", mesh=bad)


# ------------------------------------------------------------------------- cell units
def test_bohr_unit_phonopy_yaml_gives_the_angstrom_mesh_and_frequencies():
    ref = load_phonopy(EXAMPLES / "mp-2667-20180417", born=False)
    qe = load_phonopy(QE_CSAU)
    assert qe.calculator == "qe"
    raw = np.array(qe.primitive.cell)                     # bohr, as phonopy keeps it
    assert np.allclose(raw * 0.529177210903, ref.primitive.cell, rtol=1e-6)
    assert np.allclose(primitive_lattice_angstrom(qe), primitive_lattice_angstrom(ref))
    # the bug: sizing the mesh from the bohr cell gives a 1.89x coarser mesh
    assert mesh_for_spacing(raw, 0.1) != mesh_for_spacing(np.array(ref.primitive.cell), 0.1)
    m_ref, m_qe = run_mesh(ref, spacing=0.1), run_mesh(qe, spacing=0.1)
    assert m_qe.mesh == m_ref.mesh == (16, 16, 16)
    assert run_mesh(qe).mesh == run_mesh(ref).mesh
    assert np.allclose(m_qe.lattice, m_ref.lattice)
    np.testing.assert_allclose(m_qe.energies, m_ref.energies, rtol=1e-6, atol=1e-6)


# -------------------------------------------------------------------- VISION settings
def test_vision_resolution_polynomial_in_wavenumbers():
    vision = get_instrument("VISION", resolution_poly="2.5,0.005,1e-7")
    e = np.array([0.0, 1000.0, 3000.0]) * MEV_PER_CM1
    expected = np.array([2.5, 2.5 + 5 + 0.1, 2.5 + 15 + 0.9]) * MEV_PER_CM1
    np.testing.assert_allclose(vision.resolution_fwhm(e), expected, rtol=1e-12)
    np.testing.assert_allclose(vision.bank_resolution_fwhm(e, "forward"), expected)
    assert "user polynomial" in vision.describe()["resolution_model"]
    # measured (docs/engine.md): the propagated model is narrower than OCLIMAX's
    # polynomial below about 310 cm-1 and broader above (1.4 vs 3.0, 12.0 vs 7.6 cm-1)
    default = get_instrument("VISION").resolution_fwhm(np.array([100.0, 1000.0]) * MEV_PER_CM1)
    oclimax = vision.resolution_fwhm(np.array([100.0, 1000.0]) * MEV_PER_CM1)
    assert default[0] < 0.5 * oclimax[0] and default[1] > 1.5 * oclimax[1]


def test_vision_bank_angles_and_final_energy():
    vision = get_instrument("VISION", bank_angles=[120.0, 60.0, 150.0], final_energy=3.97)
    assert [b.name for b in vision.banks] == ["backward1", "forward", "backward2"]
    assert [b.angle_deg for b in vision.banks] == [120.0, 60.0, 150.0]
    # |Q|^2 = ki^2 + kf^2 - 2 ki kf cos(2theta); at E = 0, ki = kf
    kf2 = 3.97 / 2.0721
    q = vision.q_of_energy(0.0, "forward")
    assert q == pytest.approx(np.sqrt(2 * kf2 * (1 - np.cos(np.deg2rad(60.0)))), rel=1e-3)


@pytest.mark.parametrize("setting, value", [
    ("bank_angles", "135,190"), ("bank_angles", "abc"), ("bank_angles", []),
    ("resolution_poly", "0,0.005"), ("resolution_poly", "1,2,3,4"),
    ("resolution_poly", "2.5,-1"), ("resolution_poly", "a,b"), ("final_energy", -1.0)])
def test_vision_bad_settings_name_the_setting(setting, value):
    with pytest.raises(InputError, match=setting):
        get_instrument("VISION", **{setting: value})


def test_predict_files_vision_settings_under_their_own_key(example_dir):
    from insnet_core.predict import find_problems
    folder = example_dir / "mp-1818-20180417"
    problems = find_problems(folder / "POSCAR-unitcell", force_constants=folder,
                             resolution_poly="0,1", bank_angles="200")
    assert set(problems) == {"resolution_poly", "bank_angles"}
    problems = find_problems(folder / "POSCAR-unitcell", force_constants=folder,
                             instrument="Ideal2D", final_energy=3.9)
    assert "final_energy" in problems


def test_cli_vision_settings(tmp_path, example_dir, capsys):
    from insnet_core.cli import main
    from insnet_core.io.text import load_csv
    out = tmp_path / "v.csv"
    rc = main(["simulate", str(example_dir / "mp-1818-20180417"), "-o", str(out), "--quiet",
               "--final-energy", "3.97", "--bank-angles", "135", "--resolution-poly",
               "2.5,0.005,1e-7", "--orders", "2", "--mesh-spacing", "0.1"])
    assert rc == 0
    spec = load_csv(out)
    assert spec.labels == ["backward", "average"]
    assert spec.metadata["final_energy_meV"] == 3.97
    assert spec.metadata["phonon_orders"] == 2
    assert spec.metadata["mesh"] == "17 17 17"
    rc = main(["simulate", str(example_dir / "mp-1818-20180417"), "-o", str(out), "--quiet",
               "--resolution-poly", "1,2,3,4"])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "resolution_poly" in err[0]


# ---------------------------------------------------------------------- phonon orders
def test_choose_orders_criterion():
    window = np.ones(4)
    parts = {("H", 1): np.full(4, 1.0), ("H", 2): np.full(4, 0.1),
             ("O", 2): np.full(4, 0.05), ("H", 3): np.full(4, 0.0012),
             ("H", 4): np.full(4, 0.0009), ("H", 5): np.full(4, 0.5)}
    total = 1 + 0.15 + 0.0012 + 0.0009 + 0.5
    kept, n = choose_orders(parts, window)
    # order 3: 0.0012 / 1.6521 = 7.3e-4 < 1e-3 -> keep 1..2
    assert 0.0012 / total < 1e-3 < 0.15 / total
    assert n == 2 and set(kept) == {("H", 1), ("H", 2), ("O", 2)}
    kept, n = choose_orders(parts, window, threshold=1e-4)
    assert n == 5                                  # no order below 1e-4: all kept


def test_auto_orders_match_explicit_orders(sif4_ing):
    auto = simulate_ingredients(sif4_ing, Settings.check("VISION"))
    n = auto.total.metadata["phonon_orders"]
    assert isinstance(n, int) and 1 <= n < MAX_ORDER
    assert sorted(auto.by_order) == list(range(1, n + 1))
    fixed = simulate_ingredients(sif4_ing, Settings.check("VISION", orders=n))
    np.testing.assert_allclose(auto.total.values, fixed.total.values, rtol=1e-12)
    # the criterion, checked against an explicit calculation to MAX_ORDER
    full = simulate_ingredients(sif4_ing, Settings.check("VISION", orders=MAX_ORDER))
    width = np.diff(full.total.energy_edges)
    share = {k: float((s.values * width).sum()) for k, s in full.by_order.items()}
    total = sum(share.values())
    assert share[n + 1] < 1e-3 * total
    assert all(share[k] >= 1e-3 * total for k in range(2, n + 1))


def test_auto_orders_on_a_map(sif4_ing):
    res = simulate_ingredients(sif4_ing, Settings.check("SEQUOIA", ei=160.0))
    assert 1 <= res.total.metadata["phonon_orders"] <= MAX_ORDER
    assert max(res.by_order) == res.total.metadata["phonon_orders"]


@pytest.mark.parametrize("bad", [0, 11, 2.5, "four", True, None])
def test_bad_orders(bad):
    with pytest.raises(InputError, match="phonon orders"):
        Settings.check("VISION", orders=bad)


# ---------------------------------------------------------------------- shared defaults
def test_one_set_of_defaults():
    from insnet_core.cli import build_parser
    from insnet_core.predict import find_problems, plan, predict
    from insnet_core.simulate import simulate
    assert DEFAULT_TEMPERATURE_K == 5.0 and DEFAULT_ORDERS == "auto"
    for func in (simulate, predict, plan, find_problems):
        params = inspect.signature(func).parameters
        assert params["temperature"].default == DEFAULT_TEMPERATURE_K, func
        assert params["orders"].default == DEFAULT_ORDERS, func
    args = build_parser().parse_args(["simulate", "x", "-o", "y.csv"])
    assert args.temperature == DEFAULT_TEMPERATURE_K and args.orders == DEFAULT_ORDERS
    assert args.mesh is None and args.mesh_spacing is None


def test_algorithm_uses_the_shared_defaults():
    from mantid_helpers import load_plugin
    alg = load_plugin().PredictINSFromCIF()
    alg.initialize()
    assert alg.getProperty("Temperature").value == DEFAULT_TEMPERATURE_K
    names = [p.name for p in alg.getProperties()]
    assert {"FinalEnergy", "BankAngles", "ResolutionPolynomial"} <= set(names)
