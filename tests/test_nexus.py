"""Mantid processed-NeXus writer/reader: round trips, layout against real Mantid files,
reading every real Mantid file we keep as a reference, atomic writes."""
from pathlib import Path

import h5py
import numpy as np
import pytest

from insnet_core import InputError
from insnet_core.io import load_nexus_processed, read_binning, save_nexus_processed
from insnet_core.io import nexus as nexus_mod
from insnet_core.spectrum import Spectrum
from insnet_core.units import MEV_PER_CM1

# Real files written by Mantid, kept in the repository (provenance: tests/data/README.md).
MANTID_FILES = Path(__file__).resolve().parent / "data" / "mantid_files"

SOFQW = "sqw2d_IRIS_irs53664_SofQW_DeltaE_x_Qedges.nxs"
MERLIN_1D = "spec1d_MERLIN_mer46207_ei18_cut_mantid6.7.nxs"
IN16B = "qens2d_IN16B_BATS_PureD2O_DeltaE_x_Qcentres_mantid5.1.nxs"
ENTRY = "mantid_workspace_1"


# ---------------------------------------------------------------- fixtures
def _map(unit="meV"):
    rng = np.random.default_rng(3)
    e = np.concatenate([np.linspace(-2.0, 10.0, 13), np.geomspace(11.0, 300.0, 25)])
    q = np.array([0.3, 0.7, 1.1, 1.9, 2.6, 4.0])
    vals = rng.random((q.size - 1, e.size - 1)) * 1e-3
    vals[0, :4] = np.nan
    vals[3, 10] = np.nan
    return Spectrum(e, vals, errors=vals * 0.05, q_edges=q,
                    y_label="S(Q,E) (barn/sr/meV/cell)", display_energy_unit=unit,
                    metadata={"formula": "ZnO", "instrument": "SEQUOIA", "Ei": 160.0,
                              "temperature": 5, "run": "sim/01", "tags": ["a", "b"],
                              "coherent": False, "nan_value": float("nan")})


def _one_d(unit="meV"):
    e = np.linspace(-5.0, 500.0, 102) + 1.0 / 3.0
    rng = np.random.default_rng(5)
    vals = rng.random((3, e.size - 1))
    vals[1, 7] = np.nan
    return Spectrum(e, vals, errors=np.sqrt(vals), labels=["backward", "forward, 45 deg", "sum"],
                    y_label="S(E) (barn/meV/cell)", display_energy_unit=unit,
                    metadata={"instrument": "TOSCA", "formula": "C6H6", "temperature": 10.0})


def _assert_same(a, b, exact=True):
    assert a.is_map == b.is_map
    np.testing.assert_array_equal(a.energy_edges, b.energy_edges)  # to the last digit
    if a.is_map:
        np.testing.assert_array_equal(a.q_edges, b.q_edges)
    else:
        assert a.labels == b.labels
    np.testing.assert_array_equal(np.isnan(a.values), np.isnan(b.values))
    if exact:
        np.testing.assert_array_equal(a.values, b.values)
        np.testing.assert_array_equal(a.errors, b.errors)
    else:
        np.testing.assert_allclose(a.values, b.values, rtol=1e-14)
        np.testing.assert_allclose(a.errors, b.errors, rtol=1e-14)
    assert a.y_label == b.y_label
    assert a.display_energy_unit == b.display_energy_unit
    assert a.metadata.keys() == b.metadata.keys()
    for key, value in a.metadata.items():
        if isinstance(value, float) and np.isnan(value):
            assert np.isnan(b.metadata[key])
        else:
            assert b.metadata[key] == value


# ---------------------------------------------------------------- round trips
@pytest.mark.parametrize("make", [_map, _one_d])
def test_round_trip_mev_is_exact(tmp_path, make):
    spec = make("meV")
    out = save_nexus_processed(spec, tmp_path / "s.nxs", workspace_name="zno")
    assert out == tmp_path / "s.nxs"
    _assert_same(spec, load_nexus_processed(out), exact=True)


@pytest.mark.parametrize("make", [_map, _one_d])
def test_round_trip_cm1(tmp_path, make):
    spec = make("cm-1")
    path = save_nexus_processed(spec, tmp_path / "s.nxs")
    back = load_nexus_processed(path)
    _assert_same(spec, back, exact=False)
    with h5py.File(path, "r") as f:
        ws = f[ENTRY]["workspace"]
        assert ws["axis1"].attrs["units"] == b"DeltaE_inWavenumber"
        np.testing.assert_allclose(ws["axis1"][()], spec.energy_edges / MEV_PER_CM1, rtol=1e-15)
        np.testing.assert_allclose(ws["values"][()], spec.values * MEV_PER_CM1, rtol=1e-15)
        assert b"cm^-1" in ws["values"].attrs["unit_label"]


def test_nan_stored_in_file(tmp_path):
    spec = _map()
    path = save_nexus_processed(spec, tmp_path / "m.nxs")
    with h5py.File(path, "r") as f:
        stored = f[ENTRY]["workspace"]["values"][()]
    np.testing.assert_array_equal(np.isnan(stored), np.isnan(spec.values))


def test_metadata_as_sample_logs(tmp_path):
    spec = _map()
    path = save_nexus_processed(spec, tmp_path / "m.nxs", title="my title")
    with h5py.File(path, "r") as f:
        entry = f[ENTRY]
        assert entry["title"][0] == b"my title"
        logs = entry["logs"]
        assert logs.attrs["NX_class"] == b"NXgroup"
        ei = logs["Ei"]
        assert ei.attrs["NX_class"] == b"NXlog"
        assert ei["value"].dtype == np.float64 and ei["value"].shape == (1,)
        assert ei["value"][0] == 160.0
        assert logs["temperature"]["value"].dtype == np.float64  # ints become float logs
        assert logs["formula"]["value"][0] == b"ZnO"
        assert "run_01" not in logs and "sim_01" not in logs
        assert logs["run"]["value"][0] == b"sim/01"
        assert "coherent" not in logs and "tags" not in logs  # only numbers and strings
        assert entry["sample"].attrs["name"] == b"ZnO"


def test_1d_axes_layout(tmp_path):
    path = save_nexus_processed(_one_d(), tmp_path / "s.nxs")
    with h5py.File(path, "r") as f:
        ws = f[ENTRY]["workspace"]
        assert ws["axis2"].attrs["units"] == b"TextAxis"
        assert ws["axis2"][0] == b"backward\nforward, 45 deg\nsum\n"
        np.testing.assert_array_equal(f[ENTRY]["instrument/detector/spectra"][()], [1, 2, 3])
        assert ws["axis1"].shape == (102,)
        assert ws["values"].shape == (3, 101)


# ---------------------------------------------------------------- layout vs real Mantid files
def _signature(obj, name):
    """Type signature of an attribute: class, fixed/vlen, padding, charset, shape, NUL end."""
    aid = obj.attrs.get_id(name)
    tid = aid.get_type()
    if isinstance(tid, h5py.h5t.TypeStringID):
        assert not tid.is_variable_str(), f"{obj.name}@{name} is variable-length"
        buf = np.empty(aid.shape, dtype=f"S{tid.get_size()}")
        aid.read(buf, mtype=tid)
        raw = buf.tobytes()
        # Mantid stores strlen bytes (a lone NUL for an empty string), except for
        # a few attributes stored with their terminating NUL.
        ending = "empty" if raw == b"\x00" else ("nul" if raw.endswith(b"\x00") else "plain")
        return ("string", tid.get_strpad(), tid.get_cset(), aid.shape, ending)
    return ("number", str(aid.dtype), aid.shape)


def _same_encoding(ours, theirs):
    if ours[:-1] != theirs[:-1]:
        return False
    if ours[0] == "number" or ours[-1] == theirs[-1]:
        return True
    # An empty string in one file and a non-empty one in the other: same rule.
    return {ours[-1], theirs[-1]} == {"empty", "plain"}


def _dataset_signature(ds):
    tid = ds.id.get_type()
    if isinstance(tid, h5py.h5t.TypeStringID):
        raw = ds[()].tobytes()
        return ("string", tid.is_variable_str(), tid.get_strpad(), tid.get_cset(), ds.shape,
                raw.endswith(b"\x00"))
    # Mantid chunks 2D data one spectrum at a time and 1D data as one chunk.
    chunks = None if ds.chunks is None else (ds.chunks[0] == (1 if ds.ndim == 2 else ds.size),
                                             ds.chunks[-1] == ds.shape[-1])
    return ("number", str(ds.dtype), ds.ndim, chunks, ds.compression, ds.compression_opts)


def _compare(ours, theirs, paths, datasets=()):
    for p in paths:
        a, b = ours[p], theirs[p]
        assert sorted(a.attrs) == sorted(b.attrs), p
        for name in b.attrs:
            assert _same_encoding(_signature(a, name), _signature(b, name)), f"{p}@{name}"
    for p in datasets:
        assert _dataset_signature(ours[p]) == _dataset_signature(theirs[p]), p


def test_map_layout_matches_mantid_sofqw(tmp_path):
    path = save_nexus_processed(_map(), tmp_path / "m.nxs")
    ws = f"{ENTRY}/workspace"
    with h5py.File(path, "r") as ours, h5py.File(MANTID_FILES / SOFQW, "r") as theirs:
        _compare(ours, theirs,
                 ["/", ENTRY, f"{ENTRY}/definition", f"{ENTRY}/definition_local",
                  f"{ENTRY}/title", f"{ENTRY}/workspace_name", f"{ENTRY}/process",
                  f"{ENTRY}/logs", f"{ENTRY}/instrument", ws, f"{ws}/values", f"{ws}/errors",
                  f"{ws}/axis1", f"{ws}/axis2"],
                 datasets=[f"{ENTRY}/definition", f"{ENTRY}/definition_local",
                           f"{ENTRY}/title", f"{ENTRY}/workspace_name", f"{ws}/values",
                           f"{ws}/errors", f"{ws}/axis1", f"{ws}/axis2"])
        for key in ("definition", "definition_local"):
            assert ours[ENTRY][key][()].tobytes() == theirs[ENTRY][key][()].tobytes()
            for att in ("URL", "Version"):
                assert ours[ENTRY][key].attrs[att] == theirs[ENTRY][key].attrs[att]
        for key in ("axes", "signal"):
            assert ours[ws]["values"].attrs[key] == theirs[ws]["values"].attrs[key]
        for axis, key in (("axis1", "units"), ("axis1", "distribution"), ("axis2", "units")):
            assert ours[ws][axis].attrs[key] == theirs[ws][axis].attrs[key]
        # Bin edges on both axes, as in SofQW output.
        assert ours[ws]["axis1"].size == ours[ws]["values"].shape[1] + 1
        assert ours[ws]["axis2"].size == ours[ws]["values"].shape[0] + 1


def test_1d_layout_matches_recent_mantid_file(tmp_path):
    spec = _one_d()
    del spec.metadata["formula"]  # no sample name, like the reference file
    path = save_nexus_processed(spec, tmp_path / "s.nxs")
    ws = f"{ENTRY}/workspace"
    with h5py.File(path, "r") as ours, h5py.File(MANTID_FILES / MERLIN_1D, "r") as theirs:
        _compare(ours, theirs,
                 ["/", ENTRY, f"{ENTRY}/sample", f"{ENTRY}/sample/material",
                  f"{ENTRY}/instrument", f"{ENTRY}/instrument/detector",
                  f"{ENTRY}/instrument/instrument_parameter_map",
                  f"{ENTRY}/instrument/instrument_xml", f"{ENTRY}/logs",
                  f"{ENTRY}/logs/goniometer", ws, f"{ws}/values"],
                 datasets=[f"{ws}/values", f"{ws}/errors",
                           f"{ENTRY}/instrument/detector/spectra", f"{ENTRY}/instrument/name",
                           f"{ENTRY}/sample/geom_id", f"{ENTRY}/sample/geom_height",
                           f"{ENTRY}/sample/num_other_samples",
                           f"{ENTRY}/sample/material/packing_fraction",
                           f"{ENTRY}/logs/goniometer/num_axes"])
        # axis2: a TextAxis here (row labels), spectrum numbers in the reference file
        assert ours[ws]["axis2"].attrs["units"] == b"TextAxis"
        assert sorted(ours[f"{ENTRY}/sample"]) == sorted(theirs[f"{ENTRY}/sample"])
        assert sorted(ours[f"{ENTRY}/sample/material"]) == sorted(
            theirs[f"{ENTRY}/sample/material"])


def test_log_encoding_matches_mantid(tmp_path):
    path = save_nexus_processed(_map(), tmp_path / "m.nxs")
    logs = f"{ENTRY}/logs"
    with h5py.File(path, "r") as ours, h5py.File(MANTID_FILES / IN16B, "r") as theirs:
        for mine, real in (("Ei", "Analyser.A1 angle"), ("formula", "Facility")):
            a, b = ours[logs][mine], theirs[logs][real]
            assert sorted(a) == sorted(b) == ["value"]
            assert _signature(a, "NX_class") == _signature(b, "NX_class")
            assert _dataset_signature(a["value"]) == _dataset_signature(b["value"])
            assert a["value"].shape == b["value"].shape == (1,)
            assert sorted(a["value"].attrs) == sorted(b["value"].attrs) == ["units"]
            assert _signature(a["value"], "units") == _signature(b["value"], "units")


# ---------------------------------------------------------------- every real file
# name -> (map?, shape, first/last energy edge (meV), first/last |Q| edge or row label 0,
#          display unit)
EXPECTED = {
    "sqw2d_IRIS_irs53664_SofQW_DeltaE_x_Qedges.nxs":
        (True, (14, 2000), (-0.54005, 0.65147523), (0.4, 1.8), "meV"),
    "sqw2d_OSIRIS_osi97935_SofQW_DeltaE_x_Qedges.nxs":
        (True, (17, 2000), (-0.61041008, 0.68986454), (0.3, 2.0), "meV"),
    # X = |Q| edges, vertical DeltaE centres: transposed, E edges from midpoints (step 1.5).
    "sqe2d_ARCS_DPDF_slices_QE_Qx_DeltaEcentres.nxs":
        (True, (151, 116), (-59.25, 114.75), (0.31041431, 15.49788172), "meV"),
    # Label axes |Q| (edges) x DeltaE (lower boundaries -50..49 of bins -50..50).
    "sqe2d_SEQUOIA_sim_mcvine_iqe_LabelAxes.nxs":
        (True, (120, 100), (-50.0, 50.0), (0.0, 10.0000003), "meV"),
    # |Q| centres -> edges by midpoints.
    "qens2d_IN16B_BATS_PureD2O_DeltaE_x_Qcentres_mantid5.1.nxs":
        (True, (19, 4123), (-0.17945593, 0.23280659),
         (0.19101104 - (0.29272072 - 0.19101104) / 2, 1.8781195 + (1.8781195 - 1.84414597) / 2),
         "meV"),
    "spec_TOSCA_TSC15352_reduction_3spectra_DeltaE.nxs":
        (False, (3, 1532), (-2.5, 1000.0), "spectrum 0", "meV"),
    "spec1d_IRIS_irs26173_resolution_DeltaE.nxs":
        (False, (1, 200), (-0.2, 0.2), "spectrum 0", "meV"),
    "spec1d_MERLIN_mer46207_ei18_cut_mantid6.7.nxs":
        (False, (1, 140), (1.0, 15.0), "spectrum 1", "meV"),
    # cm^-1 point data -> meV edges by midpoints.
    "spec1d_DOS_cm-1_Label_points.nxs":
        (False, (1, 2339), ((-0.051481 - 0.5) * MEV_PER_CM1, (2337.948519 + 0.5) * MEV_PER_CM1),
         "spectrum 1", "cm-1"),
    "nxspe_CNCS_7860_coarse_tiny.nxspe":
        (False, (14, 8), (-2.0, 2.0), "polar 7.66 deg, azimuthal 0.00 deg", "meV"),
}
UNSUPPORTED = {
    "spec1d_D4_Rb_Q_MomentumTransfer_points.nxs": "MomentumTransfer",
}


def test_fixture_list_is_complete():
    present = {p.name for p in MANTID_FILES.iterdir() if p.suffix in (".nxs", ".nxspe")}
    assert present == set(EXPECTED) | set(UNSUPPORTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_mantid_file_loads(name):
    is_map, shape, e_ends, q_or_label, unit = EXPECTED[name]
    spec = load_nexus_processed(MANTID_FILES / name)
    assert spec.is_map == is_map
    assert spec.shape == shape
    np.testing.assert_allclose(spec.energy_edges[[0, -1]], e_ends, rtol=1e-7, atol=1e-9)
    if is_map:
        np.testing.assert_allclose(spec.q_edges[[0, -1]], q_or_label, rtol=1e-7)
    else:
        assert spec.labels[0] == q_or_label
    assert spec.display_energy_unit == unit
    assert spec.metadata["source_file"] == str(MANTID_FILES / name)
    assert spec.metadata["import_notes"]
    assert np.all(np.diff(spec.energy_edges) > 0)


def test_real_file_details():
    cncs = load_nexus_processed(MANTID_FILES / "nxspe_CNCS_7860_coarse_tiny.nxspe")
    assert cncs.metadata["Ei"] == 3.0
    assert cncs.metadata["instrument"] == "CNCS"
    assert cncs.metadata["psi"] == pytest.approx(24.4994)
    tosca = load_nexus_processed(MANTID_FILES / "spec_TOSCA_TSC15352_reduction_3spectra_DeltaE.nxs")
    assert tosca.metadata["run_number"] == "15352"
    assert tosca.metadata["inst_abrv"] == "TSC"
    in16b = load_nexus_processed(MANTID_FILES / IN16B)
    assert "midpoints" in in16b.metadata["import_notes"]
    assert in16b.y_label == "Counts"
    with h5py.File(MANTID_FILES / SOFQW, "r") as f:
        raw = f[ENTRY]["workspace"]["values"][()]
    sofqw = load_nexus_processed(MANTID_FILES / SOFQW)
    np.testing.assert_array_equal(sofqw.values, raw)  # distribution: taken as is
    dos = load_nexus_processed(MANTID_FILES / "spec1d_DOS_cm-1_Label_points.nxs")
    with h5py.File(MANTID_FILES / "spec1d_DOS_cm-1_Label_points.nxs", "r") as f:
        raw = f[ENTRY]["workspace"]["values"][()]
    np.testing.assert_allclose(dos.values, raw / MEV_PER_CM1)  # per cm^-1 -> per meV


@pytest.mark.parametrize("name", sorted(UNSUPPORTED))
def test_real_unsupported_file_says_why(name):
    with pytest.raises(InputError) as err:
        load_nexus_processed(MANTID_FILES / name)
    message = str(err.value)
    assert name in message and "unsupported" in message
    assert UNSUPPORTED[name] in message


def test_read_binning_of_real_and_own_files(tmp_path):
    e, q, unit = read_binning(MANTID_FILES / SOFQW)
    assert e.size == 2001 and q.size == 15 and unit == "meV"
    spec = _map("cm-1")
    e, q, unit = read_binning(save_nexus_processed(spec, tmp_path / "m.nxs"))
    np.testing.assert_array_equal(e, spec.energy_edges)
    np.testing.assert_array_equal(q, spec.q_edges)
    assert unit == "cm-1"
    e, q, unit = read_binning(save_nexus_processed(_one_d(), tmp_path / "s.nxs"))
    assert q is None and unit == "meV"


# ---------------------------------------------------------------- other Mantid layouts
def _strip_own_log(path):
    with h5py.File(path, "r+") as f:
        del f[ENTRY]["logs"][nexus_mod.JSON_LOG_NAME]


def test_text_axis_labels_are_read(tmp_path):
    path = save_nexus_processed(_one_d(), tmp_path / "s.nxs")
    _strip_own_log(path)
    with h5py.File(path, "r+") as f:
        ws = f[ENTRY]["workspace"]
        del ws["axis2"]
        ds = nexus_mod._data_str(ws, "axis2", "left\nright\nall\n", nul=False)
        nexus_mod._attr_str(ds, "units", "TextAxis")
    spec = load_nexus_processed(path)
    assert spec.labels == ["left", "right", "all"]
    assert spec.metadata["instrument"] == "TOSCA"  # from the sample logs


def test_non_distribution_histogram_divided_by_widths(tmp_path):
    orig = _one_d()
    path = save_nexus_processed(orig, tmp_path / "s.nxs")
    _strip_own_log(path)
    with h5py.File(path, "r+") as f:
        nexus_mod._attr_str(f[ENTRY]["workspace"]["axis1"], "distribution", "0", nul=True)
    spec = load_nexus_processed(path)
    np.testing.assert_allclose(spec.values, orig.values / orig.energy_widths)
    assert "bin widths" in spec.metadata["import_notes"]
    assert spec.labels == ["backward", "forward, 45 deg", "sum"]  # from the text axis


def test_multi_workspace_file_is_refused_clearly(tmp_path):
    path = save_nexus_processed(_map(), tmp_path / "group.nxs")
    with h5py.File(path, "r+") as f:
        f.copy(f[ENTRY], "mantid_workspace_2")
    with pytest.raises(InputError, match="2 workspaces"):
        load_nexus_processed(path)
    assert load_nexus_processed(path, entry="mantid_workspace_2").is_map


def test_not_a_nexus_file(tmp_path):
    bad = tmp_path / "bad.nxs"
    bad.write_text("not hdf5")
    with pytest.raises(InputError, match="bad.nxs"):
        load_nexus_processed(bad)
    with pytest.raises(InputError, match="no such file"):
        load_nexus_processed(tmp_path / "missing.nxs")


def test_non_energy_x_axis_names_file_and_unit(tmp_path):
    path = save_nexus_processed(_one_d(), tmp_path / "tof.nxs")
    with h5py.File(path, "r+") as f:
        nexus_mod._attr_str(f[ENTRY]["workspace"]["axis1"], "units", "TOF")
    with pytest.raises(InputError, match=r"tof\.nxs.*'TOF'.*not an energy transfer"):
        load_nexus_processed(path)


# ---------------------------------------------------------------- atomic writes
def _boom(*args, **kwargs):
    raise RuntimeError("disk full (simulated)")


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(nexus_mod, "_write_sample", _boom)
    with pytest.raises(RuntimeError, match="simulated"):
        save_nexus_processed(_map(), tmp_path / "new.nxs")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_existing_file(tmp_path, monkeypatch):
    dest = tmp_path / "old.nxs"
    save_nexus_processed(_one_d(), dest)
    before = dest.read_bytes()
    monkeypatch.setattr(nexus_mod, "_write_sample", _boom)
    with pytest.raises(RuntimeError):
        save_nexus_processed(_map(), dest)
    assert dest.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["old.nxs"]


def test_overwrite_replaces_file(tmp_path):
    dest = tmp_path / "s.nxs"
    save_nexus_processed(_one_d(), dest)
    save_nexus_processed(_map(), dest)
    assert load_nexus_processed(dest).is_map
    assert [p.name for p in tmp_path.iterdir()] == ["s.nxs"]
    with h5py.File(dest, "r") as f:
        assert f.attrs["file_name"] == str(dest).encode()


def test_bad_arguments(tmp_path):
    with pytest.raises(InputError):
        save_nexus_processed(np.zeros(3), tmp_path / "x.nxs")
    with pytest.raises(InputError):
        save_nexus_processed(_map(), tmp_path / "x.nxs", workspace_name="")
    with pytest.raises(InputError, match="does not exist"):
        save_nexus_processed(_map(), tmp_path / "nodir" / "x.nxs")


# ---------------------------------------------------------------- text axis, reserved log names
def test_vision_bank_labels_survive_save_and_load_as_mantid_text_axis(tmp_path):
    e = np.linspace(10.0, 500.0, 50)
    rng = np.random.default_rng(8)
    spec = Spectrum(e, rng.random((3, e.size - 1)), labels=["backward", "forward", "average"],
                    metadata={"instrument": "VISION"})
    path = save_nexus_processed(spec, tmp_path / "vision.nxs")
    with h5py.File(path, "r") as f:
        axis2 = f[ENTRY]["workspace"]["axis2"]
        # NexusFileIO::writeNexusProcessedData2D: NX_CHAR labels, each ended by a newline
        assert axis2.dtype.kind == "S" and axis2.shape == (1,)
        assert axis2[0] == b"backward\nforward\naverage\n"
        assert axis2.attrs["units"] == b"TextAxis"
    assert load_nexus_processed(path).labels == ["backward", "forward", "average"]
    _strip_own_log(path)  # read like a file Mantid wrote: labels from the text axis alone
    assert load_nexus_processed(path).labels == ["backward", "forward", "average"]


def test_label_with_newline_keeps_the_row_count(tmp_path):
    spec = Spectrum(np.linspace(1.0, 5.0, 5), np.ones((2, 4)), labels=["a\nb", ""])
    path = save_nexus_processed(spec, tmp_path / "s.nxs")
    with h5py.File(path, "r") as f:
        assert f[ENTRY]["workspace"]["axis2"][0] == b"a b\n \n"
    assert load_nexus_processed(path).labels == ["a\nb", ""]   # exact, from our own log


RESERVED = ["goniometers", "processed_histogram_bins", "peak_radius", "inner_bkg_radius",
            "outer_bkg_radius", "proton_charge"]


def test_no_sample_log_under_a_name_mantid_reads_specially(tmp_path):
    meta = {name: 1.5 for name in RESERVED}
    meta.update({"Proton_Charge": 2.0, "goniometer": "g", "Ei": 10.0, "ei": 11.0})
    spec = Spectrum(np.linspace(1.0, 5.0, 5), np.ones((1, 4)), metadata=meta)
    path = save_nexus_processed(spec, tmp_path / "s.nxs")
    with h5py.File(path, "r") as f:
        logs = f[ENTRY]["logs"]
        names = [n.lower() for n in logs]
        assert not set(names) & set(RESERVED)
        assert len(names) == len(set(names))          # unique ignoring case, as Mantid sees them
        assert logs["proton_charge_"]["value"][0] == 1.5
        assert logs["goniometer"].attrs["NX_class"] == b"NXpositioner"
    assert load_nexus_processed(path).metadata == meta  # exact, from our own log
