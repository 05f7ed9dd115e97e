"""`insnet simulate --match reduced.nxs`: the output takes the file's bins, value for value."""
import h5py
import numpy as np
import pytest

from insnet_core.cli import main
from insnet_core.io import load_nexus_processed, read_binning

AXES = "mantid_workspace_1/workspace"


def _axis(path, name):
    with h5py.File(path, "r") as f:
        return np.asarray(f[f"{AXES}/{name}"][()], dtype=float)


def _simulate(crystal, out, *args):
    rc = main(["simulate", str(crystal), *args, "-o", str(out), "--quiet"])
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def sif4(example_dir):
    return example_dir / "mp-1818-20180417"


def test_own_vision_file_round_trip(sif4, tmp_path):
    first = _simulate(sif4, tmp_path / "a.nxs", "--instrument", "VISION", "--bins",
                      "20,-0.02,2000")
    second = _simulate(sif4, tmp_path / "b.nxs", "--instrument", "VISION", "--match", str(first))
    assert np.array_equal(_axis(first, "axis1"), _axis(second, "axis1"))   # cm^-1 as written
    e1, q1, u1 = read_binning(first)
    e2, q2, u2 = read_binning(second)
    assert np.array_equal(e1, e2) and q1 is None and q2 is None and u1 == u2 == "cm-1"


def test_own_sequoia_map_round_trip(sif4, tmp_path):
    first = _simulate(sif4, tmp_path / "a.nxs", "--instrument", "SEQUOIA", "--ei", "100",
                      "--bins=-30,1.3,90", "--qbins", "0.1,0.17,7", "--orders", "2")
    second = _simulate(sif4, tmp_path / "b.nxs", "--instrument", "SEQUOIA", "--ei", "100",
                       "--orders", "2", "--match", str(first))
    for axis in ("axis1", "axis2"):
        assert np.array_equal(_axis(first, axis), _axis(second, axis))
    a, b = load_nexus_processed(first), load_nexus_processed(second)
    assert np.array_equal(a.values, b.values, equal_nan=True)
    assert b.metadata["binning_matched_to"] == str(first)


REAL = [
    # file, instrument arguments, has |Q| edges
    ("spec_TOSCA_TSC15352_reduction_3spectra_DeltaE.nxs", ["--instrument", "VISION"], False),
    ("sqw2d_IRIS_irs53664_SofQW_DeltaE_x_Qedges.nxs", ["--instrument", "ideal2d"], True),
    ("sqw2d_OSIRIS_osi97935_SofQW_DeltaE_x_Qedges.nxs", ["--instrument", "ideal2d"], True),
    ("spec1d_MERLIN_mer46207_ei18_cut_mantid6.7.nxs", ["--instrument", "SEQUOIA", "--ei", "18"],
     False),
]


@pytest.mark.parametrize("name, args, is_map", REAL, ids=[r[0].split("_")[1] for r in REAL])
def test_match_real_mantid_files(test_data, sif4, tmp_path, name, args, is_map):
    source = test_data / "mantid_files" / name
    out = _simulate(sif4, tmp_path / "m.nxs", *args, "--orders", "1", "--match", str(source))
    source_x = _axis(source, "axis1")
    source_x = source_x[0] if source_x.ndim == 2 else source_x
    assert np.array_equal(_axis(out, "axis1"), source_x)           # to the last digit
    src_e, src_q, _ = read_binning(source)
    e, q, unit = read_binning(out)
    assert np.array_equal(e, src_e) and unit == "meV"
    if is_map:
        assert np.array_equal(_axis(out, "axis2"), _axis(source, "axis2"))
        assert np.array_equal(q, src_q)
    spec = load_nexus_processed(out)
    assert np.nanmax(spec.values) > 0


def test_match_excludes_bins_and_checks_dimensionality(test_data, sif4, tmp_path, capsys):
    sqw = test_data / "mantid_files" / "sqw2d_IRIS_irs53664_SofQW_DeltaE_x_Qedges.nxs"
    rc = main(["simulate", str(sif4), "--match", str(sqw), "--bins", "1,1,10",
               "-o", str(tmp_path / "x.nxs"), "--quiet"])
    assert rc == 2 and "--match" in capsys.readouterr().err
    rc = main(["simulate", str(sif4), "--instrument", "VISION", "--match", str(sqw),
               "-o", str(tmp_path / "x.nxs"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "map" in err and "VISION" in err
    assert not (tmp_path / "x.nxs").exists()
    rc = main(["simulate", str(sif4), "--match", str(tmp_path / "missing.nxs"),
               "-o", str(tmp_path / "x.nxs"), "--quiet"])
    assert rc == 2 and "missing.nxs" in capsys.readouterr().err
