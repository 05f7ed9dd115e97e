"""The `insnet simulate` command: files it writes (read back with h5py) and its errors."""
import h5py
import numpy as np
import pytest

from insnet_core.cli import main
from insnet_core.io import load_nexus_processed
from insnet_core.units import MEV_PER_CM1

ENTRY = "mantid_workspace_1"


def _text(ds):
    raw = ds[()]
    raw = raw[0] if np.ndim(raw) else raw
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _attr(obj, name):
    value = obj.attrs[name]
    return value.decode().rstrip("\x00") if isinstance(value, bytes) else value


def test_sequoia_map_file_layout(example_dir, tmp_path, capsys):
    out = tmp_path / "seq.nxs"
    png = tmp_path / "seq.png"
    rc = main(["simulate", str(example_dir / "mp-1818-20180417"), "--instrument", "SEQUOIA",
               "--ei", "160", "--temperature", "5", "--qbins", "0,0.1,9", "--bins=-20,1,150",
               "-o", str(out), "--plot", str(png), "--quiet"])
    assert rc == 0
    assert png.stat().st_size > 10_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with h5py.File(out, "r") as f:
        assert _attr(f[ENTRY], "NX_class") == "NXentry"
        assert _text(f[f"{ENTRY}/definition"]) .startswith("Mantid Processed Workspace")
        ws = f[f"{ENTRY}/workspace"]
        assert _attr(ws, "NX_class") == "NXdata"
        values = ws["values"]
        assert values.shape == (90, 170)
        assert values.attrs["signal"] == 1
        assert _attr(values, "axes") == "axis2,axis1"
        axis1, axis2 = ws["axis1"], ws["axis2"]
        assert _attr(axis1, "units") == "DeltaE"
        assert _attr(axis1, "distribution") == "1"
        assert _attr(axis2, "units") == "MomentumTransfer"
        np.testing.assert_array_equal(axis1[()], np.arange(-20.0, 150.5, 1.0))
        np.testing.assert_allclose(axis2[()], np.arange(0, 91) * 0.1, rtol=0, atol=1e-12)
        assert ws["errors"].shape == values.shape
        data = values[()]
        # energy gain side at 5 K is empty (beyond the ~7 meV resolution);
        # unreachable bins are NaN as in SofQW
        assert np.isnan(data).any() and np.nanmax(data) > 0
        assert np.nanmax(data[:, :5]) < 1e-4 * np.nanmax(data)
        logs = f[f"{ENTRY}/logs"]
        assert float(logs["temperature_K"]["value"][0]) == 5.0
        assert float(logs["ei_meV"]["value"][0]) == 160.0
        assert _text(logs["instrument"]["value"]) == "SEQUOIA"
        assert _text(logs["formula"]["value"]) == "SiF4"
    back = load_nexus_processed(out)
    assert back.is_map and back.metadata["instrument"] == "SEQUOIA"


def test_vision_file_in_wavenumbers(example_dir, tmp_path):
    out = tmp_path / "vis.nxs"
    rc = main(["simulate", str(example_dir / "mp-2667-20180417"), "--instrument", "vision",
               "--bins", "10,-0.01,1200", "-o", str(out), "--quiet", "--contributions", "element"])
    assert rc == 0
    with h5py.File(out, "r") as f:
        ws = f[f"{ENTRY}/workspace"]
        assert _attr(ws["axis1"], "units") == "DeltaE_inWavenumber"
        edges = ws["axis1"][()]
        assert edges[0] == pytest.approx(10) and edges[-1] == pytest.approx(1200)
        assert np.allclose(edges[1:-1] / edges[:-2], 1.01)
        assert ws["values"].shape == (3, edges.size - 1)
        assert _attr(ws["axis2"], "units") == "TextAxis"      # the banks, as Mantid writes them
        assert ws["axis2"][0] == b"backward\nforward\naverage\n"
    back = load_nexus_processed(out)
    assert back.labels == ["backward", "forward", "average"]
    assert back.energy_edges[0] == pytest.approx(10 * MEV_PER_CM1)
    parts = {p.name for p in tmp_path.iterdir()}
    assert {"vis_element_Cs.nxs", "vis_element_Au.nxs"} <= parts
    total = back.values
    summed = sum(load_nexus_processed(tmp_path / f"vis_element_{el}.nxs").values
                 for el in ("Cs", "Au"))
    np.testing.assert_allclose(summed, total, rtol=1e-10)


def test_csv_output(example_dir, tmp_path):
    out = tmp_path / "ideal.csv"
    assert main(["simulate", str(example_dir / "mp-2667-20180417"), "--instrument", "ideal2d",
                 "--orders", "2", "-o", str(out), "--quiet"]) == 0
    lines = out.read_text().splitlines()
    assert lines[0].startswith("#")
    assert sum(1 for ln in lines if not ln.startswith("#")) == 300 * 300 + 1  # header row + data


@pytest.mark.parametrize("extra,message", [
    (["--instrument", "SEQUOIA", "--ei", "0"], "ei"),
    (["--instrument", "SEQUOIA", "--ei", "30", "--bins", "0,1,40"], "Ei"),
    (["--instrument", "SEQUOIA", "--ei", "100", "--chopper-package", "Bogus"], "chopper"),
    (["--instrument", "ideal2d", "--temperature", "-4"], "temperature"),
    (["--instrument", "LET"], "instrument"),
    (["--instrument", "ideal2d", "--bins", "0,0,5"], "--bins"),
])
def test_bad_settings_one_line_error_and_no_file(example_dir, tmp_path, capsys, extra, message):
    out = tmp_path / "x.nxs"
    rc = main(["simulate", str(example_dir / "mp-2667-20180417"), *extra, "-o", str(out),
               "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("insnet: error:") and message.lower() in err.lower()
    assert "Traceback" not in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_broken_input_folder(example_dir, tmp_path, capsys):
    import shutil
    src = tmp_path / "crystal"
    shutil.copytree(example_dir / "mp-2667-20180417", src)
    text = (src / "FORCE_SETS").read_text()
    (src / "FORCE_SETS").write_text(text[: len(text) // 2])
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    out = tmp_path / "x.nxs"
    assert main(["simulate", str(src), "-o", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "FORCE_SETS" in err and "truncated" in err
    assert not out.exists()
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before


def test_existing_output_kept_when_run_fails(example_dir, tmp_path):
    out = tmp_path / "keep.nxs"
    out.write_bytes(b"precious")
    assert main(["simulate", str(tmp_path / "missing"), "-o", str(out), "--quiet"]) == 2
    assert out.read_bytes() == b"precious"


def test_unknown_output_extension(example_dir, tmp_path, capsys):
    assert main(["simulate", str(example_dir / "mp-2667-20180417"), "-o",
                 str(tmp_path / "x.dat"), "--quiet"]) == 2
    assert ".nxs" in capsys.readouterr().err
