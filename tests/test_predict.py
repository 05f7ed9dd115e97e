"""insnet_core.predict: the request checks, exact output bins, provenance, rebinning."""
import shutil

import numpy as np
import pytest

from insnet_core import InputError
from insnet_core.predict import (find_problems, force_constants_formula, plan, predict,
                                 rebin_result, resolve_force_constants)

SIF4 = "mp-1818-20180417"


@pytest.fixture(scope="module")
def sif4(example_dir):
    return example_dir / SIF4


@pytest.fixture(scope="module")
def sequoia_result(sif4):
    e = np.round(np.arange(-40.0, 95.0 + 1e-9, 0.5), 10)
    q = np.round(np.arange(0.0, 7.0 + 1e-9, 0.05), 10)
    return e, q, predict(sif4 / "POSCAR-unitcell", force_constants=sif4 / "FORCE_SETS",
                         instrument="SEQUOIA", ei=100.0, temperature=5.0, energy_edges=e,
                         q_edges=q)


def test_output_has_exactly_the_requested_edges_and_provenance(sequoia_result):
    e, q, result = sequoia_result
    for spec in [result.total, *result.by_element.values(), *result.by_order.values()]:
        assert np.array_equal(spec.energy_edges, e)
        assert np.array_equal(spec.q_edges, q)
    meta = result.total.metadata
    assert meta["model"] == "physics" and meta["prediction_method"] == "physics"
    assert "insnet" in meta["model_version"]
    assert meta["formula"] == meta["structure_formula"] == "SiF4"
    assert meta["temperature_K"] == 5.0 and meta["ei_meV"] == 100.0
    assert meta["instrument"] == "SEQUOIA" and meta["unstable"] == 0
    assert len(meta["structure_hash"]) == 64


def test_rebin_result_conserves_the_integral(sequoia_result):
    e, q, result = sequoia_result
    coarse = rebin_result(result, e[::5], q[::5])
    finite_before = np.nan_to_num(result.total.values)
    assert coarse.total.values.shape == ((q.size - 1) // 5, (e.size - 1) // 5)
    assert set(coarse.by_element) == {"Si", "F"}
    # with NaN (unmeasurable) bins dropped the integral can only shrink; without them it is kept
    full = result.total.replace(values=finite_before)
    assert full.rebin(e[::5], q[::5]).integral() == pytest.approx(full.integral(), rel=1e-12)


@pytest.mark.parametrize("given", ["folder", "phonopy.conf", "FORCE_SETS", "BORN"])
def test_force_constants_given_as_folder_or_one_of_its_files(sif4, given):
    path = sif4 if given == "folder" else sif4 / given
    assert resolve_force_constants(path) == sif4
    assert force_constants_formula(path) == "SiF4"


def test_phonopy_yaml_formula(tmp_path, sif4):
    yaml_file = tmp_path / "phonopy.yaml"
    yaml_file.write_text("unit_cell:\n  points:\n  - symbol: Cs\n  - symbol: Au\n")
    assert force_constants_formula(yaml_file) == "CsAu"
    with pytest.raises(InputError, match="CsAu"):
        plan(sif4 / "POSCAR-unitcell", force_constants=yaml_file)


def test_unknown_force_constants_file(tmp_path):
    odd = tmp_path / "forces.txt"
    odd.write_text("x")
    with pytest.raises(InputError, match="forces.txt"):
        resolve_force_constants(odd)
    with pytest.raises(InputError, match="no such file"):
        resolve_force_constants(tmp_path / "missing")


def test_every_problem_is_reported_under_its_input(tmp_path, example_dir, sif4):
    bad = tmp_path / "bad.cif"
    bad.write_text("data_x\nloop_\n_atom_site_label\n")
    problems = find_problems(bad, instrument="SEQUOIA", ei=0.0, temperature=-2,
                             force_constants=None)
    assert set(problems) == {"structure_file", "force_constants", "ei", "temperature"}
    assert "bad.cif" in problems["structure_file"]
    problems = find_problems(sif4 / "POSCAR-unitcell",
                             force_constants=example_dir / "mp-661-20180417",
                             instrument="SEQUOIA", ei=50.0, energy_edges=[0.0, 25.0, 55.0])
    assert "AlN" in problems["force_constants"] and "SiF4" in problems["force_constants"]
    assert "incident energy" in problems["energy_binning"]
    import insnet_core.predict
    saved = insnet_core.predict._MODELS_DIR
    insnet_core.predict._MODELS_DIR = sif4 / "no-models"   # as before any model shipped
    try:
        assert set(find_problems(sif4 / "POSCAR-unitcell", method="ML")) == {"method"}
        assert "no trained model" in find_problems(sif4 / "POSCAR-unitcell",
                                                   method="ML")["method"]
    finally:
        insnet_core.predict._MODELS_DIR = saved
    assert set(find_problems(sif4 / "POSCAR-unitcell", method="Magic")) >= {"method"}
    assert "model" in find_problems(sif4 / "POSCAR-unitcell", force_constants=sif4,
                                    model="x")
    assert "q_binning" in find_problems(sif4 / "POSCAR-unitcell", force_constants=sif4,
                                        q_edges=[0, 1, 2])
    assert find_problems(sif4 / "POSCAR-unitcell", force_constants=sif4) == {}


def test_ml_method_stops_with_a_clear_message(sif4, monkeypatch, tmp_path):
    import insnet_core.predict
    monkeypatch.setattr(insnet_core.predict, "_MODELS_DIR", tmp_path / "no-models")
    with pytest.raises(InputError, match="no trained model is shipped"):
        predict(sif4 / "POSCAR-unitcell", method="ML")


def test_default_model_is_the_flagged_one_with_the_dos_head(monkeypatch, tmp_path):
    import json

    import insnet_core.predict
    from insnet_core.predict import available_models, default_model
    monkeypatch.setattr(insnet_core.predict, "_MODELS_DIR", tmp_path)
    for name, heads, flag in (("a", ["vision"], True), ("b", ["vision", "dos"], False),
                              ("c", ["vision", "dos"], True)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "card.json").write_text(json.dumps(
            {"model": {"heads": heads}, "default": flag}))
    (tmp_path / "run-in-progress").mkdir()
    (tmp_path / "run-in-progress" / "checkpoint.json").write_text("{}")
    assert available_models() == ["a", "b", "c"]
    assert default_model() == "c"          # flagged and usable for every instrument
    (tmp_path / "c" / "card.json").unlink()
    assert default_model() == "b"          # the only usable one


def test_cif_structure_with_phonondb_force_constants(tmp_path, sif4):
    from insnet_core.structure import read_structure
    cif = tmp_path / "SiF4.cif"
    read_structure(sif4 / "POSCAR-unitcell").to_pymatgen().to(filename=str(cif))
    copy = tmp_path / "fc"
    shutil.copytree(sif4, copy)
    result = predict(cif, force_constants=copy / "phonopy.conf", instrument="VISION",
                     energy_edges=np.linspace(5.0, 150.0, 30))
    assert result.total.metadata["structure_file"] == str(cif)
    assert result.total.labels == ["backward", "forward", "average"]
    assert result.total.display_energy_unit == "cm-1"


def test_unstable_crystal_is_flagged(example_dir):
    tl = example_dir / "mp-39-20180417"
    result = predict(tl / "POSCAR-unitcell", force_constants=tl, instrument="VISION",
                     energy_edges=np.linspace(2.0, 30.0, 15))
    assert result.total.metadata["unstable"] == 1
    assert result.stability["has_imaginary"]


def test_umlip_method_checks(sif4, monkeypatch):
    structure = str(sif4 / "POSCAR-unitcell")
    found = find_problems(structure, method="uMLIP", potential="mace")
    assert set(found) == {"potential"} and "unknown 'mace'" in found["potential"]
    found = find_problems(structure, method="uMLIP", force_constants=str(sif4), model="x")
    assert "computes the force constants" in found["force_constants"]
    assert "Model applies to Method 'ML' only" in found["model"]
    found = find_problems(structure, method="Physics", force_constants=str(sif4),
                          potential="chgnet")
    assert set(found) == {"potential"} and "'uMLIP' only" in found["potential"]
    request = plan(structure, method="umlip", potential="CHGNet")
    assert request.method == "uMLIP" and request.potential == "chgnet"
    assert request.cache_key_parts()["potential"] == "chgnet"
    # without the optional packages: how to install them, under 'potential'
    import insnet_core.umlip as umlip

    def missing(name):
        raise umlip.importlib_metadata.PackageNotFoundError(name)
    monkeypatch.setattr(umlip.importlib_metadata, "version", missing)
    found = find_problems(structure, method="uMLIP")
    assert "pip install 'insnet[umlip]'" in found["potential"]
