"""The SubtractPredictedPhonons Mantid algorithm, called like a user calls it (simpleapi),
and ``insnet subtract`` on the same data.

Runs against a real Mantid when importable, otherwise against tests/mantid_standin.
"""
import numpy as np
import pytest

from mantid_helpers import algorithm_function, load_plugin, make_workspace

CRYSTAL = "mp-1818-20180417"
E_EDGES = np.arange(-20.0, 140.0 + 1e-9, 2.0)
Q_EDGES = np.arange(0.0, 10.0 + 1e-9, 0.25)
LOG_NAMES = ("subtraction_scale", "subtraction_scale_error", "subtraction_background",
             "subtraction_background_error", "subtraction_chi2_dof", "subtraction_fit_bins",
             "subtraction_zero_error_bins", "subtraction_scale_method", "subtraction_weighting",
             "subtraction_fit_region", "prediction_method", "prediction_model",
             "prediction_model_version")


@pytest.fixture(scope="module")
def subtract_phonons():
    return algorithm_function("SubtractPredictedPhonons")


@pytest.fixture(autouse=True)
def clean_ads():
    from mantid.api import AnalysisDataService
    AnalysisDataService.clear()
    yield
    AnalysisDataService.clear()


@pytest.fixture(scope="module")
def files(example_dir):
    folder = example_dir / CRYSTAL
    return {"structure": str(folder / "POSCAR-unitcell"), "fc": str(folder / "FORCE_SETS"),
            "folder": str(folder)}


@pytest.fixture(scope="module")
def predicted(files):
    """The physics-route prediction on the test binning (what PredictINSFromCIF gives)."""
    from insnet_core.predict import predict
    return predict(files["structure"], force_constants=files["fc"], instrument="SEQUOIA",
                   ei=160.0, temperature=5.0, energy_edges=E_EDGES, q_edges=Q_EDGES).total


def _measured(predicted, scale=2.0, counts=20000.0, seed=5):
    from insnet_core.subtraction import poisson_measurement
    k = counts / (scale * np.nanmax(predicted.values))
    data = poisson_measurement(predicted.scaled(scale), k, np.random.default_rng(seed))
    data.metadata = {"Ei": 160.0}
    return data


def _workspace(spectrum, name):
    from insnet_core.mantid_adapter import spectrum_to_workspace
    return spectrum_to_workspace(spectrum, name=name)


def _arrays(ws):
    return np.array(ws.extractY()), np.array(ws.extractE()), np.array(ws.extractX())


def _log(ws, name):
    return ws.getRun().getProperty(name).value


def test_identity_and_properties():
    alg = load_plugin("SubtractPredictedPhonons").SubtractPredictedPhonons()
    alg.initialize()
    names = [p.name for p in alg.getProperties()]
    for expected in ("InputWorkspace", "PredictedWorkspace", "InputFile", "ForceConstantsFile",
                     "Instrument", "IncidentEnergy", "Temperature", "Method", "ScaleMethod",
                     "ScaleFactor", "ScaleFactorError", "FitBackground", "Weighting",
                     "FitQRange", "FitEnergyRange", "FitRegionWorkspace", "MagneticQRange",
                     "OutputWorkspace", "OutputMagneticIntensity", "OutputScaleFactor",
                     "OutputScaleFactorError", "OutputChiSquared"):
        assert expected in names
    assert alg.category() == "Inelastic\\Simulation"
    assert sorted(alg.getProperty("ScaleMethod").allowedValues) == ["FitHighQ", "Fixed"]


def test_with_predicted_workspace(subtract_phonons, predicted):
    data_ws = _workspace(_measured(predicted), "data")
    before = _arrays(data_ws)
    _workspace(predicted, "pred")
    out = subtract_phonons(InputWorkspace="data", PredictedWorkspace="pred",
                           FitBackground=True, OutputWorkspace="residual",
                           OutputMagneticIntensity="magnetic")
    assert out.OutputScaleFactor == pytest.approx(2.0, abs=4 * out.OutputScaleFactorError)
    # below 1: many fit bins (energy gain at 5 K) expect far less than one count
    assert 0.6 < out.OutputChiSquared < 1.2
    res = out.OutputWorkspace
    for name in LOG_NAMES:
        assert res.getRun().hasProperty(name), name
    assert _log(res, "subtraction_scale") == pytest.approx(out.OutputScaleFactor)
    assert _log(res, "prediction_method") == "physics"
    y, e, x = _arrays(res)
    assert np.array_equal(x[0], data_ws.readX(0))
    assert np.array_equal(np.isnan(y), np.isnan(before[0]))
    finite = np.isfinite(y)
    assert abs(np.mean(y[finite] / e[finite])) < 0.1          # phonons gone
    assert out.OutputMagneticIntensity.getNumberHistograms() == 1
    after = _arrays(data_ws)                                   # the input is only read
    for a, b in zip(before, after):
        assert np.array_equal(a, b, equal_nan=True)


def test_physics_route_on_the_inputs_own_binning(subtract_phonons, predicted, files):
    _workspace(_measured(predicted, scale=3.0), "data")
    out = subtract_phonons(InputWorkspace="data", InputFile=files["structure"],
                           ForceConstantsFile=files["fc"], OutputWorkspace="residual")
    assert out.OutputScaleFactor == pytest.approx(3.0, abs=4 * out.OutputScaleFactorError)
    assert _log(out.OutputWorkspace, "Ei") == 160.0


def test_fixed_scale_and_fit_region_workspace(subtract_phonons, predicted):
    data = _measured(predicted)
    _workspace(data, "data")
    _workspace(predicted, "pred")
    out = subtract_phonons(InputWorkspace="data", PredictedWorkspace="pred",
                           ScaleMethod="Fixed", ScaleFactor=2.0, ScaleFactorError=0.01,
                           OutputWorkspace="residual")
    assert out.OutputScaleFactor == 2.0 and out.OutputScaleFactorError == 0.01
    mask = np.zeros(data.shape)
    mask[:, 40:] = 1.0
    from insnet_core.spectrum import Spectrum
    _workspace(Spectrum(data.energy_edges, mask, q_edges=data.q_edges), "region")
    out = subtract_phonons(InputWorkspace="data", PredictedWorkspace="pred",
                           FitRegionWorkspace="region", OutputWorkspace="residual")
    assert _log(out.OutputWorkspace, "subtraction_fit_region").startswith("mask of")
    assert out.OutputScaleFactor == pytest.approx(2.0, abs=4 * out.OutputScaleFactorError)


def _bad_case(case, predicted):
    """(kwargs for the algorithm, property named in the message)."""
    from insnet_core.spectrum import Spectrum
    data = _measured(predicted)
    args = {}
    if case == "units_mismatch":
        make_workspace(np.arange(0.0, 1000.0, 10.0), 4, x_unit="TOF", name="data")
        _workspace(predicted, "pred")
        return args, "InputWorkspace"
    if case == "prediction_1d":
        _workspace(data, "data")
        _workspace(Spectrum(predicted.energy_edges, np.ones((3, predicted.shape[1])),
                            labels=["backward", "forward", "average"]), "pred")
        return args, "PredictedWorkspace"
    if case == "all_nan":
        data = data.replace(values=np.full(data.shape, np.nan))
    elif case == "zero_errors":
        data = data.replace(errors=np.zeros(data.shape))
    elif case == "empty_fit_region":
        args["FitQRange"] = "20,30"
    _workspace(data, "data")
    if case == "negative_ei":
        return {"InputFile": "", "IncidentEnergy": -5.0}, "IncidentEnergy"
    _workspace(predicted, "pred")
    return args, {"all_nan": "InputWorkspace", "zero_errors": "InputWorkspace",
                  "empty_fit_region": "FitQRange"}[case]


@pytest.mark.parametrize("case", ["units_mismatch", "prediction_1d", "all_nan", "zero_errors",
                                  "empty_fit_region", "negative_ei"])
def test_bad_inputs_fail_clearly_and_change_nothing(subtract_phonons, predicted, files, case):
    from mantid.api import AnalysisDataService
    args, prop = _bad_case(case, predicted)
    kwargs = dict(InputWorkspace="data", OutputWorkspace="residual")
    if "InputFile" in args:
        args = dict(args, InputFile=files["structure"], ForceConstantsFile=files["fc"])
    else:
        kwargs["PredictedWorkspace"] = "pred"
    kwargs.update(args)
    names = set(AnalysisDataService.getObjectNames())
    before = {n: _arrays(AnalysisDataService.retrieve(n)) for n in names}
    with pytest.raises((RuntimeError, ValueError)) as info:
        subtract_phonons(**kwargs)
    message = str(info.value)
    assert prop in message
    print(case, message.strip().splitlines()[-1])
    assert set(AnalysisDataService.getObjectNames()) == names       # no output added
    for n, arrays in before.items():
        for a, b in zip(arrays, _arrays(AnalysisDataService.retrieve(n))):
            assert np.array_equal(a, b, equal_nan=True)


REAL_MAPS = ["sqe2d_SEQUOIA_sim_mcvine_iqe_LabelAxes.nxs",
             "sqe2d_ARCS_DPDF_slices_QE_Qx_DeltaEcentres.nxs",
             "sqw2d_IRIS_irs53664_SofQW_DeltaE_x_Qedges.nxs"]


@pytest.mark.parametrize("name", REAL_MAPS, ids=[n.split("_")[1] for n in REAL_MAPS])
def test_real_mantid_maps_algorithm_and_cli(subtract_phonons, files, test_data, tmp_path,
                                           name):
    """Mantid-written maps (as workspaces, read by insnet's reader), a prediction on their
    binning through the physics route, the algorithm and ``insnet subtract``; the residual
    file reads back with the data's bins and the fit logs."""
    from insnet_core.cli import main
    from insnet_core.io import load_nexus_processed
    source = test_data / "mantid_files" / name
    data = load_nexus_processed(source)
    _workspace(data, "data")
    fit = ["--scale-method", "Fixed", "--scale", "1e3"] if "IRIS" in name else []
    alg_fit = ({"ScaleMethod": "Fixed", "ScaleFactor": 1e3} if "IRIS" in name
               else {"FitQRange": "4,"})
    out = subtract_phonons(InputWorkspace="data", InputFile=files["structure"],
                           ForceConstantsFile=files["fc"], Instrument="Ideal2D",
                           OutputWorkspace="residual", **alg_fit)
    y, _, _ = _arrays(out.OutputWorkspace)
    assert y.shape == data.shape and np.isfinite(y).any()
    assert np.isfinite(out.OutputScaleFactor)
    residual = tmp_path / "residual.nxs"
    rc = main(["subtract", str(source), "--cif", files["structure"], "--force-constants",
               files["folder"], "--instrument", "ideal2d", *fit, "-o", str(residual),
               "--plot", str(tmp_path / "residual.png")])
    assert rc == 0
    back = load_nexus_processed(residual)
    assert np.array_equal(back.energy_edges, data.energy_edges)
    assert np.array_equal(back.q_edges, data.q_edges)
    assert back.metadata["subtraction_scale"] == pytest.approx(out.OutputScaleFactor,
                                                               rel=1e-9)
    assert np.allclose(back.values, y, equal_nan=True, rtol=1e-9, atol=0)
    assert (tmp_path / "residual_magnetic.nxs").is_file()
    assert (tmp_path / "residual.png").stat().st_size > 10000


def test_cli_with_predicted_file_and_errors(predicted, tmp_path, capsys):
    from insnet_core.cli import main
    from insnet_core.io import load_nexus_processed
    from insnet_core.io.nexus import save_nexus_processed
    save_nexus_processed(_measured(predicted), tmp_path / "data.nxs")
    save_nexus_processed(predicted, tmp_path / "pred.nxs")
    rc = main(["subtract", str(tmp_path / "data.nxs"), "--predicted", str(tmp_path / "pred.nxs"),
               "--fit-background", "-o", str(tmp_path / "res.csv")])
    assert rc == 0 and capsys.readouterr().out.startswith("scale 1.99")
    rc = main(["subtract", str(tmp_path / "data.nxs"), "--predicted", str(tmp_path / "pred.nxs"),
               "--fit-q-range", "20,30", "-o", str(tmp_path / "bad.nxs")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("insnet: error:") and "fit region" in err
    assert not (tmp_path / "bad.nxs").exists()
    assert load_nexus_processed(tmp_path / "data.nxs").shape == predicted.shape
