"""The uMLIP route: relaxation with a universal potential -> force constants -> engine.

Small cells (conventional NaCl, 8 atoms; 2x2x2 supercells), seconds per test once a
potential is loaded.
"""
import json

import numpy as np
import pytest

from insnet_core import InputError
from insnet_core import umlip
from insnet_core.structure import Structure, read_structure
from insnet_core.umlip import (RouteSettings, UmlipError, check_settings, run_route,
                               simulate_with_potential, supercell_for_length)
from structures import NACL_CIF

pytest.importorskip("chgnet")


FAST = RouteSettings(potential="chgnet", relax="cell", supercell_length=8.0)


def nacl(tmp_path, a=5.64):
    path = tmp_path / f"NaCl_{a}.cif"
    path.write_text(NACL_CIF.format(a=a))
    return path


@pytest.fixture(scope="module")
def route(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("umlip")
    structure = read_structure(nacl(tmp))
    return structure, tmp / "cache", run_route(structure, FAST, cache_dir=tmp / "cache")


def test_relaxation_keeps_the_cubic_space_group(route):
    structure, _, result = route
    assert structure.n_atoms == 8
    relax = result.report["relaxation"]
    assert relax["spacegroup_before"] == relax["spacegroup_after"] == "Fm-3m (225)"
    assert relax["converged"] and relax["residual_force"] <= FAST.fmax
    lat = np.array(relax["lattice"])
    lengths = np.linalg.norm(lat, axis=1)
    np.testing.assert_allclose(lengths, lengths[0], rtol=1e-8)
    np.testing.assert_allclose(lat @ lat.T, np.diag(lengths ** 2), atol=1e-8 * lengths[0] ** 2)
    assert abs(relax["volume_change_percent"]) < 15  # potentials expand cells by a few %
    assert result.report["supercell"] == [2, 2, 2] and result.report["displacements"] == 2


def test_sites_rounded_off_special_positions_are_symmetrised_not_refused(tmp_path):
    # Cl 0.003 A off its site (0.006 A from its mirror image): lower symmetry at 1e-3 A,
    # Fm-3m within FixSymmetry's 1e-2 A
    path = tmp_path / "NaCl_rounded.cif"
    path.write_text(NACL_CIF.format(a=5.64).replace("Cl1 Cl 0.5 0.5 0.5",
                                                    "Cl1 Cl 0.5005 0.5 0.5"))
    structure = read_structure(path)
    result = run_route(structure, FAST, cache_dir=tmp_path / "cache")
    relax = result.report["relaxation"]
    assert relax["spacegroup_before"] != "Fm-3m (225)"
    assert relax["spacegroup_after"] == "Fm-3m (225)"
    assert not relax["symmetry_lost"]
    assert any("symmetrised from" in w for w in result.report["warnings"])


@pytest.mark.parametrize("name", ["chgnet", "7net-0"])
def test_forces_on_a_displaced_supercell(name):
    pytest.importorskip({"chgnet": "chgnet", "7net-0": "sevenn"}[name])
    from ase.build import bulk
    atoms = bulk("NaCl", "rocksalt", a=5.64).repeat((2, 2, 2))
    atoms.positions[0, 0] += 0.03
    atoms.calc = umlip._calculator(name)
    forces = atoms.get_forces()
    assert np.all(np.isfinite(forces)) and forces.shape == (16, 3)
    assert np.abs(forces.sum(axis=0)).max() < 1e-3  # Newton's third law (total force ~ 0)
    assert forces[0, 0] < -0.01  # the displaced atom is pulled back


def test_force_constants_obey_the_acoustic_sum_rule(route):
    from insnet_core.phonons import load_phonopy
    _, _, result = route
    phonon = load_phonopy(result.params_file)
    fc = phonon.force_constants
    # translational invariance: the force constants of each atom sum to zero
    assert np.abs(fc.sum(axis=1)).max() < 1e-6 * np.abs(fc).max()
    freqs = np.sort(umlip.gamma_frequencies(phonon))
    np.testing.assert_allclose(freqs[:3], 0.0, atol=0.01)  # THz
    assert freqs[3] > 0.5  # NaCl's optical modes at Gamma are real
    assert result.report["imaginary_at_gamma"] is False


def test_a_cached_result_is_reused(route, monkeypatch):
    structure, cache, first = route
    monkeypatch.setattr(umlip, "_calculator", lambda name: pytest.fail("recomputed"))
    again = run_route(structure, FAST, cache_dir=cache)
    assert again.cached and again.params_file == first.params_file
    assert again.report == json.loads(json.dumps(first.report))
    # a setting that changes the force constants is another key; allow_* flags are not
    version = first.report["potential_version"]
    key = umlip._cache_key(structure, FAST, version)
    assert key != umlip._cache_key(structure, RouteSettings(potential="chgnet",
                                                            displacement=0.02), version)
    assert key == umlip._cache_key(structure, RouteSettings(
        potential="chgnet", relax="cell", supercell_length=8.0, allow_unconverged=True),
        version)


def test_unconverged_relaxation_is_a_clear_error(tmp_path):
    strained = read_structure(nacl(tmp_path, a=6.4))
    settings = RouteSettings(potential="chgnet", relax="cell", max_steps=1, supercell_length=4.0)
    with pytest.raises(UmlipError, match=r"did not converge in 1 steps .* raise max_steps"):
        run_route(strained, settings, cache_dir=tmp_path / "cache")
    allowed = run_route(strained, RouteSettings(potential="chgnet", relax="cell", max_steps=1,
                                                supercell_length=4.0, allow_unconverged=True),
                        cache_dir=tmp_path / "cache")
    assert not allowed.report["relaxation"]["converged"]
    assert "did not converge" in allowed.report["warnings"][0]
    assert allowed.metadata()["relaxation_converged"] == 0
    # the cached unconverged result obeys the next run's settings too
    with pytest.raises(UmlipError, match="cached relaxation"):
        run_route(strained, settings, cache_dir=tmp_path / "cache")


def test_too_large_a_supercell_is_refused_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr(umlip, "_calculator", lambda name: pytest.fail("potential loaded"))
    structure = read_structure(nacl(tmp_path))  # 8 atoms: 2x2x2 for 8 A = 64 atoms
    with pytest.raises(UmlipError, match=r"2x2x2 cells = 64 atoms, more than "
                                         r"max_supercell_atoms \(50\)"):
        run_route(structure, RouteSettings(potential="chgnet", supercell_length=8.0,
                                           max_supercell_atoms=50), cache_dir=tmp_path)


def test_without_the_extra_it_says_how_to_install(monkeypatch, tmp_path):
    def missing(name):
        raise umlip.importlib_metadata.PackageNotFoundError(name)
    monkeypatch.setattr(umlip.importlib_metadata, "version", missing)
    structure = read_structure(nacl(tmp_path))
    with pytest.raises(InputError, match=r"needs the umlip extra .*pip install 'insnet\[umlip\]'"):
        run_route(structure, FAST, cache_dir=tmp_path)


@pytest.mark.parametrize("changes, words", [
    ({"potential": "mace"}, "potential: unknown 'mace'"),
    ({"relax": "all"}, "relax: unknown 'all'"),
    ({"fmax": -1}, "fmax"),
    ({"max_steps": 2.5}, "max_steps"),
    ({"supercell_length": 0}, "supercell_length"),
    ({"displacement": 0.5}, "displacement"),
    ({"frequency_scale": 3}, "frequency_scale"),
    ({"max_supercell_atoms": 0}, "max_supercell_atoms"),
])
def test_bad_settings_are_named(changes, words):
    with pytest.raises(InputError, match=words):
        check_settings(RouteSettings(), **changes)


def test_potential_names_are_case_insensitive():
    assert check_settings(RouteSettings(potential="CHGNet")).potential == "chgnet"


def test_supercell_for_length():
    # Ba3ZnRu2O9-like hexagonal cell: widths a sin(60) = 5.0 A and c = 14.2 A
    hexagonal = np.array([[5.7749, 0, 0], [-5.7749 / 2, 5.7749 * np.sqrt(3) / 2, 0],
                          [0, 0, 14.1823]])
    assert supercell_for_length(hexagonal, 10.0) == (2, 2, 1)
    assert supercell_for_length(np.eye(3) * 3.0, 10.0) == (4, 4, 4)
    assert supercell_for_length(np.eye(3) * 2.5, 10.0) == (4, 4, 4)  # exactly 10 A is enough
    # an oblique cell: vector lengths 4 A but the width between faces is smaller
    a = 4.0
    fcc = np.array([[0, a, a], [a, 0, a], [a, a, 0]]) / np.sqrt(2)
    dims = supercell_for_length(fcc, 10.0)
    widths = abs(np.linalg.det(fcc)) / np.linalg.norm(np.cross(fcc[1], fcc[2]))
    assert dims == (4, 4, 4) and widths * 3 < 10.0 <= widths * 4


def test_route_end_to_end_with_its_logs(route, tmp_path):
    structure, cache, _ = route
    path = nacl(tmp_path)
    result, used = simulate_with_potential(path, FAST, cache_dir=cache, instrument="VISION")
    assert used.cached
    meta = result.total.metadata
    assert meta["prediction_method"] == "uMLIP" and meta["potential"] == "chgnet"
    assert meta["spacegroup_after"] == "Fm-3m (225)" and meta["supercell"] == "2 2 2"
    assert meta["force_constants_file"].endswith("phonopy_params.yaml")
    values = result.total.values
    assert np.all(np.isfinite(values)) and values.max() > 0
    for part in result.by_element.values():
        assert part.metadata["potential"] == "chgnet"
    # bad engine settings fail before the route runs
    with pytest.raises(InputError, match="temperature"):
        simulate_with_potential(path, FAST, cache_dir=tmp_path / "none", temperature=-3)
    assert not (tmp_path / "none").exists()


def test_cli_phonons_then_simulate(route, tmp_path, capsys):
    from insnet_core.cli import main
    from insnet_core.io.nexus import load_nexus_processed
    _, cache, _ = route
    path = nacl(tmp_path)
    assert main(["phonons", str(path), "--potential", "chgnet", "--supercell-length", "8",
                 "--relax", "cell",
                 "--cache-dir", str(cache), "-o", str(tmp_path / "nacl.yaml"), "--quiet"]) == 0
    assert "[cached]" in capsys.readouterr().err
    assert main(["simulate", str(tmp_path / "nacl.yaml"), "-o", str(tmp_path / "a.nxs"),
                 "--quiet"]) == 0
    assert main(["simulate", str(path), "--potential", "chgnet", "--supercell-length", "8",
                 "--relax", "cell", "--cache-dir", str(cache), "-o", str(tmp_path / "b.nxs"),
                 "--quiet"]) == 0
    a = load_nexus_processed(tmp_path / "a.nxs")
    b = load_nexus_processed(tmp_path / "b.nxs")
    np.testing.assert_allclose(a.values, b.values, rtol=1e-10)
    assert b.metadata["potential"] == "chgnet"
    capsys.readouterr()
    assert main(["simulate", str(path), "-o", str(tmp_path / "c.nxs")]) == 2
    assert "add --potential" in capsys.readouterr().err
    assert main(["phonons", str(path), "--potential", "chgnet", "-o",
                 str(tmp_path / "x.txt")]) == 2
    assert ".yaml" in capsys.readouterr().err


def test_frequency_scale_multiplies_every_frequency(route):
    # force constants times s^2: every frequency times s (masses unchanged)
    from insnet_core.phonons import load_phonopy
    structure, cache, scaled = route
    assert scaled.report["frequency_scale"] == pytest.approx(
        umlip.POTENTIALS["chgnet"].frequency_scale("cell"))
    plain = run_route(structure, RouteSettings(potential="chgnet", relax="cell",
                                               supercell_length=8.0, frequency_scale=1.0),
                      cache_dir=cache)
    f_scaled = np.sort(umlip.gamma_frequencies(load_phonopy(scaled.params_file)))[3:]
    f_plain = np.sort(umlip.gamma_frequencies(load_phonopy(plain.params_file)))[3:]
    np.testing.assert_allclose(f_scaled / f_plain, scaled.report["frequency_scale"], rtol=1e-6)


def test_default_scale_applies_to_hydrogen_too_with_a_note():
    from insnet_core.umlip import POTENTIALS, default_frequency_scale
    lih = Structure.from_arrays(np.eye(3) * 4.0, ["Li", "H"], [[0, 0, 0], [0.5, 0.5, 0.5]],
                                source="LiH")
    nacl = Structure.from_arrays(np.eye(3) * 5.6, ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]],
                                 source="NaCl")
    for name in ("7net-0", "chgnet"):
        pot = POTENTIALS[name]
        for relax in ("atoms", "cell"):
            settings = RouteSettings(potential=name, relax=relax)
            assert default_frequency_scale(pot, settings, nacl) == (pot.frequency_scale(relax),
                                                                    "")
            scale, note = default_frequency_scale(pot, settings, lih)
            assert scale == pot.frequency_scale(relax) != 1.0
            assert "hydrogen" in note and "LiH" in note
    assert default_frequency_scale(POTENTIALS["7net-0"], RouteSettings(frequency_scale=1.1),
                                   lih) == (1.1, "")