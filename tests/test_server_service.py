"""The server's work without the web layer: form checks, predictions, downloads, bounds."""
from pathlib import Path

import numpy as np
import pytest

from insnet_core import InputError
from insnet_core.server.service import (FormSettings, Limits, PredictionService, ResultStore,
                                        ServiceResult, parse_form, safe_display_name)
from server_helpers import EUO, NACL_PARTIAL, REPO_CIF, server_temp_dirs

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def service():
    svc = PredictionService(Limits(max_atoms=200))
    svc.warm_up()
    return svc


@pytest.fixture(scope="module")
def cif_bytes():
    return (REPO / REPO_CIF).read_bytes()


@pytest.fixture(scope="module")
def sequoia_result(service, cif_bytes):
    return service.run(cif_bytes, "Ba3ZnRu2O9.cif",
                       parse_form({"instrument": "SEQUOIA", "ei": "160", "temperature": "5"}))


def test_parse_form_defaults_and_errors():
    s = parse_form({})
    assert (s.instrument, s.temperature, s.ei, s.map_instrument()) == ("VISION", 5.0, None,
                                                                      "Ideal2D")
    s = parse_form({"instrument": "sequoia", "ei": "160", "chopper_frequency": "600.0",
                    "temperature": " 300 ", "model": ""})
    assert (s.instrument, s.ei, s.chopper_frequency, s.temperature, s.model) == \
        ("SEQUOIA", 160.0, 600, 300.0, None)
    with pytest.raises(InputError) as err:
        parse_form({"instrument": "MARI", "temperature": "warm", "ei": "nan",
                    "vision_route": "both"})
    text = str(err.value)
    for key in ("instrument:", "temperature:", "ei:", "vision_route:"):
        assert key in text
    with pytest.raises(InputError, match="ei: SEQUOIA needs an incident energy"):
        parse_form({"instrument": "SEQUOIA"})


@pytest.mark.parametrize("name, shown", [
    ("../../etc/passwd", "passwd"), ("C:\\Users\\x\\evil.cif", "evil.cif"),
    ("..", "structure.cif"), ("a b;rm -rf.cif", "a_b_rm_-rf.cif"), ("", "structure.cif"),
    (".hidden.cif", "hidden.cif")])
def test_display_names_are_never_paths(name, shown):
    assert safe_display_name(name) == shown
    assert "/" not in safe_display_name(name) and "\\" not in safe_display_name(name)


def test_limits_refuse_nonsense():
    with pytest.raises(InputError, match="max_upload_bytes"):
        Limits(max_upload_bytes=50 * 1024 * 1024)  # would spill uploads to disk
    with pytest.raises(InputError, match="workers"):
        Limits(workers=0)


def test_prediction_spectra_and_summary(sequoia_result):
    r = sequoia_result
    s = r.summary
    assert (s["formula"], s["atoms"], s["spacegroup"]) == ("Ba3ZnRu2O9", 30, "P6_3/m (176)")
    assert s["map_instrument"] == "SEQUOIA" and s["ei_meV"] == 160.0
    assert s["chopper_package"] and s["chopper_frequency_Hz"] in range(60, 601, 60)
    vision = r.vision.total
    assert vision.values.shape[-1] == 119 and vision.display_energy_unit == "cm-1"
    assert np.all(np.isfinite(vision.values)) and vision.values.max() > 0
    m = r.map.total
    assert m.is_map and m.metadata["instrument"] == "SEQUOIA"
    # outside SEQUOIA's kinematic range the map is NaN (as SofQW), never zeros
    nan = np.isnan(m.values)
    assert 0.05 < nan.mean() < 0.95
    assert np.all(np.isfinite(m.values[~nan])) and np.nanmax(m.values) > 0
    # the element contributions add up to the total (the partials route)
    parts = sum(v.values for v in r.map.by_element.values())
    np.testing.assert_allclose(np.nan_to_num(parts), np.nan_to_num(m.values), rtol=1e-6,
                               atol=1e-12 * np.nanmax(m.values))
    assert r.vision.total.metadata["structure_file"] == "Ba3ZnRu2O9.cif"


def test_result_json_is_plain_and_nan_free(service, sequoia_result):
    import json
    j = service.result_json(sequoia_result)
    text = json.dumps(j, allow_nan=False)  # NaN outside the kinematic range became null
    assert '"z"' in text
    z = np.array(j["map"]["z"], dtype=float)  # None -> nan
    np.testing.assert_allclose(z, sequoia_result.map.total.values, rtol=1e-5, equal_nan=True)
    rows = j["vision"]["total"]["rows"]
    assert set(rows) == set(sequoia_result.vision.total.labels)
    assert set(j["vision"]["elements"]) == {"Ba", "Zn", "Ru", "O"}
    assert j["map"]["contributions"][0] == "total"
    assert "element:O" in j["map"]["contributions"] and "order:1" in j["map"]["contributions"]
    assert j["downloads"]["map_nxs"].endswith(f"/{sequoia_result.id}/map.nxs")


def test_downloads_read_back(service, sequoia_result, tmp_path):
    from insnet_core.io.nexus import load_nexus_processed
    from insnet_core.io.text import load_csv
    data, name = service.download(sequoia_result, "map", "nxs")
    assert name == "Ba3ZnRu2O9_SEQUOIA.nxs"
    path = tmp_path / name
    path.write_bytes(data)
    back = load_nexus_processed(path)
    np.testing.assert_allclose(back.values, sequoia_result.map.total.values, rtol=1e-6,
                               equal_nan=True)
    data, name = service.download(sequoia_result, "vision", "csv", "element:O")
    assert name == "Ba3ZnRu2O9_VISION_element_O.csv"
    (tmp_path / name).write_bytes(data)
    back = load_csv(tmp_path / name)
    np.testing.assert_allclose(back.values, sequoia_result.vision.by_element["O"].values,
                               rtol=1e-6)
    data, name = service.download(sequoia_result, "vision", "png")
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(KeyError):
        service.download(sequoia_result, "map", "exe")
    with pytest.raises(KeyError):
        sequoia_result.part("map", "element:Xx")


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"   \n\n", "empty"),
    (b"\x00\x01binary junk", "not a text file"),
    (b"hello, this is not a crystal\n", "CIF syntax error"),
    (NACL_PARTIAL.encode(), "occupanc"),
    (EUO.encode(), "Eu"),
])
def test_bad_structures_are_clear_errors(service, data, message):
    before = server_temp_dirs()
    with pytest.raises(InputError, match=message) as err:
        service.run(data, "../../upload.cif", FormSettings())
    assert "insnet-serve-" not in str(err.value)  # the temporary path is never shown
    assert server_temp_dirs() == before            # and nothing is left behind


def test_atom_limit(service):
    from insnet_core.structure import read_structure
    s = read_structure(REPO / REPO_CIF)
    lines = ["POSCAR", "1.0"] + [" ".join(f"{4 * x:.6f}" for x in row) for row in s.lattice]
    lines += [" ".join(sorted(set(s.species))), " ".join("64" for _ in sorted(set(s.species)))]
    # a 4x4x4 supercell's worth of atoms on a grid: above the 200-atom limit of the fixture
    n = 64 * len(set(s.species))
    grid = np.random.default_rng(0).random((n, 3))
    lines += ["Direct"] + [" ".join(f"{v:.6f}" for v in row) for row in grid]
    with pytest.raises(InputError, match="atoms"):
        service.run(("\n".join(lines) + "\n").encode(), "POSCAR", FormSettings())


def test_result_store_is_bounded_in_count_and_age():
    store = ResultStore(keep=2, ttl_s=1000)
    items = [ServiceResult(id=str(i), name="x", summary={}, settings=FormSettings(),
                           vision=None, map=None, seconds=0.0) for i in range(3)]
    for item in items:
        store.add(item)
    assert len(store) == 2 and store.get("0") is None and store.get("2") is items[2]
    old = ResultStore(keep=5, ttl_s=10)
    items[0].created -= 100
    old.add(items[0])
    assert old.get("0") is None
