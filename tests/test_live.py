"""insnet_core.live: cache keys, hits and misses, exact chunk bins, the post-processing script."""
import shutil
from pathlib import Path

import numpy as np
import pytest

from insnet_core import InputError
from insnet_core.live import LiveOverlay, PredictionCache, files_hash
from mantid_helpers import axis_values, make_workspace, run_python_script, x_of

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "live" / "insnet_live_postprocess.py"


@pytest.fixture(scope="module")
def sif4(example_dir):
    return example_dir / "mp-1818-20180417"


@pytest.fixture(scope="module")
def overlay(sif4):
    return LiveOverlay(sif4 / "POSCAR-unitcell", force_constants=sif4, instrument="SEQUOIA",
                       ei=100.0, temperature=5.0, cache=PredictionCache())


def test_files_hash_follows_file_content(tmp_path, sif4):
    copy = tmp_path / "fc"
    shutil.copytree(sif4, copy)
    before = files_hash(copy)
    assert before == files_hash(copy / "FORCE_SETS") == files_hash(sif4)
    with open(copy / "BORN", "a") as fh:
        fh.write("\n")
    assert files_hash(copy) != before


def test_first_call_misses_then_hits_with_exact_chunk_edges(overlay):
    e = np.linspace(-20.0, 80.0, 301)
    q = np.linspace(0.0, 6.0, 301)
    first = overlay.overlay_for((e, q, "meV"))
    assert overlay.last_was_hit is False
    again = overlay.overlay_for((e, q, "meV"))
    assert overlay.last_was_hit is True
    assert np.array_equal(again.energy_edges, e) and np.array_equal(again.q_edges, q)
    assert np.array_equal(first.values, again.values, equal_nan=True)
    # the fast path gives what Spectrum.rebin gives
    fine = overlay.fine_prediction(e, q)
    ref = fine.rebin(energy_edges=e, q_edges=q)
    assert np.allclose(again.values, ref.values, rtol=1e-12, atol=0, equal_nan=True)
    assert np.array_equal(np.isnan(again.values), np.isnan(ref.values))
    # another binning inside the cached range: still a hit
    coarse = overlay.overlay_for((np.linspace(0.0, 60.0, 31), np.linspace(1.0, 5.0, 9), "meV"))
    assert overlay.last_was_hit is True and coarse.shape == (8, 30)


def test_integral_conserved_on_a_fully_measurable_region(overlay):
    fine = overlay.fine_prediction(np.array([0.0, 1.0]), np.array([0.0, 1.0]))
    # a region SEQUOIA sees completely at Ei = 100 meV
    e = np.linspace(10.0, 40.0, 31)
    q = np.linspace(4.0, 6.0, 11)
    chunk = overlay.overlay_for((e, q, "meV"))
    assert np.all(np.isfinite(chunk.values))
    sub = fine.rebin(energy_edges=e, q_edges=q)
    assert chunk.integral() == pytest.approx(sub.integral(), rel=1e-12)


def test_chunk_outside_cached_range_recomputes(overlay):
    overlay.overlay_for((np.linspace(0.0, 50.0, 11), np.linspace(0.0, 5.0, 11), "meV"))
    overlay.overlay_for((np.linspace(0.0, 50.0, 11), np.linspace(0.0, 12.0, 11), "meV"))
    assert overlay.last_was_hit is False
    with pytest.raises(InputError, match="incident energy"):
        overlay.overlay_for((np.linspace(0.0, 100.0, 11), None, "meV"))


def test_1d_chunk_from_a_map_is_q_averaged(overlay):
    spec = overlay.overlay_for((np.linspace(0.0, 50.0, 26), None, "meV"))
    assert not spec.is_map and spec.labels == ["|Q|-averaged"]


def test_cache_key_depends_on_settings_and_lru_evicts(sif4):
    cache = PredictionCache(max_entries=1)
    a = LiveOverlay(sif4 / "POSCAR-unitcell", force_constants=sif4, instrument="Ideal2D",
                    temperature=5.0, cache=cache)
    b = LiveOverlay(sif4 / "POSCAR-unitcell", force_constants=sif4, instrument="Ideal2D",
                    temperature=300.0, cache=cache)
    chunk = (np.linspace(0.0, 100.0, 51), np.linspace(0.0, 10.0, 21), "meV")
    hot, cold = b.overlay_for(chunk), a.overlay_for(chunk)
    assert not np.allclose(hot.values, cold.values)
    assert len(cache) == 1 and cache.misses == 2
    a2 = LiveOverlay(sif4 / "POSCAR-unitcell", force_constants=sif4, instrument="Ideal2D",
                     temperature=5.0, cache=cache)
    a2.overlay_for(chunk)
    assert a2.last_was_hit is True          # same settings, another overlay object: shared


def test_bad_settings_fail_at_once(sif4):
    with pytest.raises(InputError, match="ei"):
        LiveOverlay(sif4 / "POSCAR-unitcell", force_constants=sif4, instrument="SEQUOIA")


def _time_series_ei(values):
    from mantid.kernel import FloatTimeSeriesProperty
    log = FloatTimeSeriesProperty("Ei")
    for i, value in enumerate(values):
        log.addValue(f"2024-01-01T00:00:{i:02d}", value)
    return log


@pytest.mark.parametrize("ei_log", ["single value", "time series"])
def test_postprocessing_script_in_runpythonscript_wrapping(sif4, monkeypatch, ei_log):
    """The script as LoadLiveData runs it: wrapped by RunPythonScript, input/output as locals."""
    from mantid.api import AnalysisDataService
    AnalysisDataService.clear()
    monkeypatch.setenv("INSNET_LIVE_STRUCTURE", str(sif4 / "POSCAR-unitcell"))
    monkeypatch.setenv("INSNET_LIVE_FORCE_CONSTANTS", str(sif4 / "FORCE_SETS"))
    monkeypatch.setenv("INSNET_LIVE_INSTRUMENT", "SEQUOIA")
    monkeypatch.setenv("INSNET_LIVE_SCALE", "integral")
    monkeypatch.delenv("INSNET_LIVE_EI", raising=False)
    x = np.arange(-30.0, 70.5, 0.5)
    q = np.arange(0.0, 6.05, 0.05)
    # another Ei for each case, so that each starts with an empty prediction cache
    expected = 80.0 if ei_log == "single value" else 90.0
    ei = 80.0 if ei_log == "single value" else _time_series_ei([89.0, 90.5, 90.5])
    data = make_workspace(x, q.size - 1, vertical=q, name="live_acc", logs={"Ei": ei})
    code = SCRIPT.read_text()
    try:
        for update in range(2):
            out = run_python_script(code, input=data, output="live")
            assert out is AnalysisDataService.retrieve("live")
            pred = AnalysisDataService.retrieve("live_insnet")
            assert np.array_equal(x_of(pred), x) and np.array_equal(axis_values(pred, 1), q)
            assert pred.getRun().getProperty("insnet_cache_hit").value == update
            assert pred.getRun().getProperty("Ei").value == expected
            assert pred.getRun().getProperty("insnet_scale_factor").value > 0
        assert np.array_equal(np.array(out.readY(10)), np.array(data.readY(10)))
    finally:
        AnalysisDataService.clear()


def test_postprocessing_script_without_input_says_so():
    with pytest.raises(ValueError, match="no input workspace"):
        run_python_script(SCRIPT.read_text(), input=None, output="live")


def test_runpythonscript_wrapping_hides_globals_from_the_script():
    """The helper reproduces the wrapping: a globals() test never sees input/output."""
    code = "if 'input' in globals():\n    raise AssertionError('seen as global')\n" \
           "output = None if input != 'in' else 'not there'\n"
    with pytest.raises(KeyError, match="not there"):
        run_python_script(code, input="in", output="x")
