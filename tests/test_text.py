"""CSV writer/reader."""
import csv

import numpy as np
import pytest

from insnet_core import InputError
from insnet_core.io import load_csv, save_csv
from insnet_core.io import text as text_mod
from insnet_core.spectrum import Spectrum
from insnet_core.units import MEV_PER_CM1


def _one_d(unit="meV"):
    e = np.linspace(0.0, 100.0, 51) + 0.1
    vals = np.vstack([np.sin(e[:-1]) ** 2, np.cos(e[:-1]) ** 2 / 3.0])
    vals[0, 4] = np.nan
    return Spectrum(e, vals, errors=vals * 0.1, labels=["back, 135 deg", "forward [45]"],
                    y_label="S(E) (barn/meV)", display_energy_unit=unit,
                    metadata={"instrument": "TOSCA", "temperature": 10, "notes": "a,b\nc"})


def _map(unit="meV"):
    e = np.geomspace(1.0, 200.0, 31)
    q = np.array([0.2, 0.5, 1.0, 2.0])
    vals = np.arange(90, dtype=float).reshape(3, 30) / 7.0
    vals[2, -3:] = np.nan
    return Spectrum(e, vals, errors=np.sqrt(vals), q_edges=q, display_energy_unit=unit,
                    metadata={"Ei": 250.0, "formula": "H2O"})


def _check(a, b, exact):
    np.testing.assert_array_equal(a.energy_edges, b.energy_edges) if exact else \
        np.testing.assert_allclose(a.energy_edges, b.energy_edges, rtol=1e-14)
    if a.is_map:
        np.testing.assert_array_equal(a.q_edges, b.q_edges)
    else:
        assert a.labels == b.labels
    cmp = np.testing.assert_array_equal if exact else (
        lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-14))
    cmp(a.values, b.values)
    cmp(a.errors, b.errors)
    assert a.metadata == b.metadata
    assert a.y_label == b.y_label
    assert a.display_energy_unit == b.display_energy_unit


@pytest.mark.parametrize("make", [_one_d, _map])
def test_csv_round_trip_mev_exact(tmp_path, make):
    spec = make()
    path = save_csv(spec, tmp_path / "s.csv")
    _check(spec, load_csv(path), exact=True)


@pytest.mark.parametrize("make", [_one_d, _map])
def test_csv_round_trip_cm1(tmp_path, make):
    spec = make("cm-1")
    path = save_csv(spec, tmp_path / "s.csv")
    _check(spec, load_csv(path), exact=False)


def test_csv_1d_columns(tmp_path):
    spec = _one_d()
    path = save_csv(spec, tmp_path / "s.csv")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("#")
    assert any(line.startswith("# metadata:") for line in lines)
    data = [line for line in lines if not line.startswith("#")]
    header = next(csv.reader([data[0]]))
    assert header == ["energy_centre", "energy_low", "energy_high",
                      "value[back, 135 deg]", "error[back, 135 deg]",
                      "value[forward [45]]", "error[forward [45]]"]
    first = [float(x) for x in data[1].split(",")]
    assert first[1] == spec.energy_edges[0] and first[2] == spec.energy_edges[1]
    assert first[0] == pytest.approx(spec.energy_centres[0])
    assert len(data) == 1 + spec.values.shape[1]


def test_csv_cm1_columns_in_wavenumbers(tmp_path):
    spec = _one_d("cm-1")
    lines = save_csv(spec, tmp_path / "s.csv").read_text().splitlines()
    data = [line for line in lines if not line.startswith("#")]
    first = [float(x) for x in data[1].split(",")]
    assert first[1] == pytest.approx(spec.energy_edges[0] / MEV_PER_CM1)
    assert first[5] == pytest.approx(spec.values[1, 0] * MEV_PER_CM1)


def test_csv_map_long_format(tmp_path):
    spec = _map()
    lines = save_csv(spec, tmp_path / "m.csv").read_text().splitlines()
    data = [line for line in lines if not line.startswith("#")]
    assert data[0] == "q_low,q_high,energy_low,energy_high,value,error"
    assert len(data) == 1 + spec.values.size
    assert data[-1].endswith("nan,nan")


def test_csv_failure_keeps_existing_file(tmp_path, monkeypatch):
    dest = tmp_path / "s.csv"
    save_csv(_map(), dest)
    before = dest.read_bytes()

    class Broken:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("simulated failure")

    monkeypatch.setattr(text_mod.csv, "writer", Broken)
    with pytest.raises(RuntimeError):
        save_csv(_one_d(), dest)
    assert dest.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["s.csv"]


def test_load_csv_rejects_other_files(tmp_path):
    other = tmp_path / "x.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="not an insnet CSV"):
        load_csv(other)
