"""The PredictINSFromCIF Mantid algorithm, called like a user calls it (simpleapi).

Runs against a real Mantid when importable, otherwise against tests/mantid_standin.
"""
import numpy as np
import pytest

from mantid_helpers import algorithm_function, axis_values, load_plugin, make_workspace, x_of

CRYSTAL = "mp-1818-20180417"


@pytest.fixture(scope="module")
def predict_ins():
    return algorithm_function()


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
            "conf": str(folder / "phonopy.conf"),
            "other_fc": str(example_dir / "mp-2667-20180417" / "FORCE_SETS")}


def _run(predict_ins, files, **kwargs):
    args = dict(InputFile=files["structure"], ForceConstantsFile=files["fc"],
                OutputWorkspace="out")
    args.update(kwargs)
    return predict_ins(**args)


def _log(ws, name):
    return ws.getRun().getProperty(name).value


# --------------------------------------------------------------------------- identity
def test_algorithm_identity():
    cls = load_plugin().PredictINSFromCIF
    alg = cls()
    assert alg.name() == "PredictINSFromCIF"
    assert alg.category() == "Inelastic\\Simulation"
    assert "inelastic neutron scattering" in alg.summary()
    assert "SofQW" in alg.seeAlso()


def test_properties_declared_with_validators():
    alg = load_plugin().PredictINSFromCIF()
    alg.initialize()
    names = [p.name for p in alg.getProperties()]
    for expected in ("InputFile", "Instrument", "IncidentEnergy", "ChopperPackage",
                     "ChopperFrequency", "Temperature", "BinningWorkspace", "EnergyBinning",
                     "QBinning", "Method", "ForceConstantsFile", "Model", "Contributions",
                     "OutputWorkspace"):
        assert expected in names
    assert sorted(alg.getProperty("Instrument").allowedValues) == ["Ideal2D", "SEQUOIA",
                                                                   "VISION"]
    assert sorted(alg.getProperty("Method").allowedValues) == ["ML", "Physics", "uMLIP"]
    assert sorted(alg.getProperty("Potential").allowedValues) == ["7net-0", "chgnet"]
    from insnet_core.mantid_algorithms import default_method
    from insnet_core.predict import default_model
    assert alg.getProperty("Method").value == default_method()
    assert default_method() == ("ML" if default_model() else "Physics")
    with pytest.raises(ValueError):
        alg.setProperty("Temperature", -1.0)
    with pytest.raises(ValueError):
        alg.setProperty("Instrument", "MARI")


# --------------------------------------------------------------------------- SEQUOIA maps
def test_sequoia_map_copies_binning_workspace_edges(predict_ins, files):
    x = np.round(np.arange(-80.0, 152.0 + 1e-9, 0.8), 10)
    q = np.round(np.arange(0.0, 9.0 + 1e-9, 0.1), 10)
    template = make_workspace(x, q.size - 1, vertical=q, name="sqw",
                              logs={"Ei": 160.0})
    ws = _run(predict_ins, files, Instrument="SEQUOIA", BinningWorkspace="sqw",
              Temperature=5.0)
    assert ws.getNumberHistograms() == q.size - 1 and ws.blocksize() == x.size - 1
    assert ws.isHistogramData()
    for i in (0, 40, q.size - 2):
        assert np.array_equal(np.asarray(ws.readX(i)), x_of(template))
    assert np.array_equal(axis_values(ws, 1), axis_values(template, 1))
    assert ws.getAxis(0).getUnit().unitID() == "DeltaE"
    assert ws.getAxis(1).getUnit().unitID() == "MomentumTransfer"
    assert ws.isDistribution()
    assert ws.YUnitLabel() == "S(Q,E) (barn/sr/meV per cell)"
    y = np.array([ws.readY(i) for i in range(ws.getNumberHistograms())])
    e = np.array([ws.readE(i) for i in range(ws.getNumberHistograms())])
    assert e.shape == y.shape
    assert 0.3 < np.isfinite(y).mean() < 0.95       # unmeasurable bins: NaN, like SofQW
    assert np.nanmax(y) > 0
    assert np.all(e[np.isfinite(y)] == 0)            # a calculation: no statistical error
    assert np.all(np.isnan(e[np.isnan(y)]))         # unmeasurable: NaN error, like SofQW
    assert _log(ws, "Ei") == 160.0                  # taken from the BinningWorkspace log
    assert _log(ws, "model") == "physics"
    assert "insnet" in _log(ws, "model_version")
    assert _log(ws, "formula") == "SiF4"
    assert _log(ws, "temperature_K") == 5.0
    assert _log(ws, "prediction_method") == "physics"
    assert _log(ws, "instrument") == "SEQUOIA"
    assert _log(ws, "unstable") == 0
    from mantid.api import AnalysisDataService
    assert AnalysisDataService.doesExist("out")


def _ei_log(kind):
    if kind == "single value":
        return 60.0
    from mantid.kernel import FloatTimeSeriesProperty
    log = FloatTimeSeriesProperty("Ei")        # as live data and most instrument logs
    for i, value in enumerate([59.5, 60.0, 60.5]):
        log.addValue(f"2024-01-01T00:00:{i:02d}", value)
    return log


@pytest.mark.parametrize("kind", ["single value", "time series"])
def test_sequoia_ei_from_single_value_or_time_series_log(predict_ins, files, kind):
    x = np.arange(-20.0, 50.0 + 1e-9, 1.0)
    q = np.linspace(0.0, 6.0, 31)
    make_workspace(x, q.size - 1, vertical=q, name="sqw_ei", logs={"Ei": _ei_log(kind)})
    ws = _run(predict_ins, files, Instrument="SEQUOIA", BinningWorkspace="sqw_ei")
    assert _log(ws, "Ei") == pytest.approx(60.0, rel=1e-12)


def test_sequoia_ei_log_that_is_not_a_number_is_named(predict_ins, files):
    make_workspace(np.arange(-20.0, 50.0 + 1e-9, 1.0), 30, vertical=np.linspace(0, 6, 31),
                   name="sqw_text_ei", logs={"Ei": "sixty"})
    with pytest.raises((RuntimeError, ValueError), match="Ei"):
        _run(predict_ins, files, Instrument="SEQUOIA", BinningWorkspace="sqw_text_ei")


def test_sequoia_q_centres_and_point_energies_copied_exactly(predict_ins, files):
    x_centres = np.linspace(-40.0, 90.0, 131)           # point data
    q_centres = np.linspace(0.525, 6.975, 130)          # one value per row
    make_workspace(x_centres, q_centres.size, values=np.ones((q_centres.size, x_centres.size)),
                   vertical=q_centres, name="points")
    ws = _run(predict_ins, files, Instrument="SEQUOIA", IncidentEnergy=120.0,
              BinningWorkspace="points", Temperature=0.0)
    assert not ws.isHistogramData()
    assert np.array_equal(x_of(ws), x_centres)
    assert np.array_equal(axis_values(ws, 1), q_centres)
    assert _log(ws, "Ei") == 120.0


def test_explicit_rebin_strings_and_default_ideal2d(predict_ins, files):
    ws = _run(predict_ins, files, Instrument="Ideal2D", EnergyBinning="0,1,100",
              QBinning="0,0.5,10")
    assert np.allclose(x_of(ws), np.arange(0, 101.0))
    assert np.allclose(axis_values(ws, 1), np.arange(0, 10.01, 0.5))
    assert ws.getAxis(0).getUnit().unitID() == "DeltaE"


# --------------------------------------------------------------------------- VISION 1D
def test_vision_default_is_wavenumber_with_bank_labels(predict_ins, files):
    ws = _run(predict_ins, files)
    assert ws.getAxis(0).getUnit().unitID() == "DeltaE_inWavenumber"
    axis = ws.getAxis(1)
    assert axis.isText()
    assert [axis.label(i) for i in range(3)] == ["backward", "forward", "average"]
    assert np.allclose(x_of(ws), np.arange(10, 1201, 10.0))
    assert "cm^-1" in ws.YUnitLabel()
    assert ws.isDistribution()
    assert _log(ws, "instrument") == "VISION"


def test_vision_reduced_wavenumber_workspace_binning_copied(predict_ins, files):
    x = np.geomspace(20.0, 3500.0, 400)          # logarithmic, cm^-1
    make_workspace(x, 1, x_unit="DeltaE_inWavenumber", name="vision_reduced")
    ws = _run(predict_ins, files, BinningWorkspace="vision_reduced",
              ForceConstantsFile=files["conf"])
    assert ws.getAxis(0).getUnit().unitID() == "DeltaE_inWavenumber"
    assert np.array_equal(x_of(ws), x)
    assert ws.getNumberHistograms() == 3


def test_vision_reduced_mev_workspace(predict_ins, files):
    x = np.arange(2.0, 400.0, 0.5)
    make_workspace(x, 2, x_unit="DeltaE", name="vision_mev")
    ws = _run(predict_ins, files, BinningWorkspace="vision_mev")
    assert ws.getAxis(0).getUnit().unitID() == "DeltaE"
    assert np.array_equal(x_of(ws), x)


# --------------------------------------------------------------------------- groups
@pytest.mark.parametrize("mode, members", [
    ("ByElement", ["out_total", "out_F", "out_Si"]),
    ("ByOrder", ["out_total", "out_order1", "out_order2", "out_order3", "out_order4"]),
])
def test_contributions_make_a_group(predict_ins, files, mode, members):
    from mantid.api import AnalysisDataService, WorkspaceGroup
    group = _run(predict_ins, files, Contributions=mode, EnergyBinning="100,20,1000")
    assert isinstance(group, WorkspaceGroup)
    assert list(group.getNames()) == members
    total = np.array(group.getItem(0).readY(2))
    parts = sum(np.array(group.getItem(i).readY(2)) for i in range(1, group.getNumberOfEntries()))
    assert np.allclose(parts, total, rtol=1e-10, atol=1e-14)
    for name in members:
        assert AnalysisDataService.doesExist(name)
        ws = AnalysisDataService.retrieve(name)
        assert ws.getAxis(0).getUnit().unitID() == "DeltaE_inWavenumber"


# --------------------------------------------------------------------------- progress
@pytest.mark.skipif("not __import__('mantid_helpers').using_standin()",
                    reason="inspects the stand-in's record of progress reports")
def test_progress_is_reported(files):
    alg = load_plugin().PredictINSFromCIF()
    alg.initialize()
    alg.setProperty("InputFile", files["structure"])
    alg.setProperty("ForceConstantsFile", files["fc"])
    alg.setProperty("EnergyBinning", "100,50,1000")
    alg.setProperty("OutputWorkspace", "progress_test")
    alg.execute()
    messages = [m for _, m in alg._progress_reports]
    assert messages[0] == "checking inputs" and "storing output" in messages
    assert any("phonon" in m for m in messages)
    fractions = [f for f, _ in alg._progress_reports]
    assert fractions == sorted(fractions)


# --------------------------------------------------------------------------- invalid input
def _bad_cif(tmp_path):
    path = tmp_path / "broken.cif"
    path.write_text("data_x\n_cell_length_a 4.0\n_cell_length_b 4.0\n_cell_length_c\n"
                    "loop_\n_atom_site_label\n_atom_site_fract_x\nSi1 0.0 0.1\n")
    return str(path)


def _tof_workspace():
    return make_workspace(np.linspace(1000, 20000, 101), 3, x_unit="TOF", name="tof")


def _map_template(first=-20.0):
    return make_workspace(np.arange(first, 60.0, 1.0), 20, vertical=np.linspace(0, 5, 21),
                          name="sqw_high")


INVALID = [
    # (case id, arguments, words the message must contain)
    ("missing file", lambda t: dict(InputFile=str(t / "nope.cif")), ["nope.cif", "not found"]),
    ("bad cif", lambda t: dict(InputFile=_bad_cif(t)), ["InputFile", "broken.cif"]),
    ("ei negative", lambda t: dict(Instrument="SEQUOIA", IncidentEnergy=-5.0),
     ["IncidentEnergy", "> 0"]),
    ("ei missing", lambda t: dict(Instrument="SEQUOIA"), ["IncidentEnergy", "Ei"]),
    ("binning workspace in TOF", lambda t: dict(BinningWorkspace=_tof_workspace()),
     ["BinningWorkspace", "TOF", "DeltaE"]),
    ("energy above Ei (rebin string)",
     lambda t: dict(Instrument="SEQUOIA", IncidentEnergy=50.0, EnergyBinning="-10,1,60"),
     ["EnergyBinning", "incident energy"]),
    ("energy above Ei (workspace)",
     lambda t: dict(Instrument="SEQUOIA", IncidentEnergy=40.0, BinningWorkspace=_map_template()),
     ["BinningWorkspace", "incident energy"]),
    ("map template for VISION", lambda t: dict(BinningWorkspace=_map_template(5.0)),
     ["BinningWorkspace", "1D"]),
    ("physics without force constants", lambda t: dict(ForceConstantsFile=""),
     ["ForceConstantsFile", "Physics"]),
    ("force constants of another crystal", lambda t: dict(ForceConstantsFile="OTHER"),
     ["ForceConstantsFile", "SiF4", "CsAu"]),
    ("ML without a shipped model", lambda t: dict(Method="ML"), ["Method", "no trained model"]),
    ("bad rebin string", lambda t: dict(EnergyBinning="1,2"), ["EnergyBinning"]),
    ("uMLIP with force constants", lambda t: dict(Method="uMLIP"),
     ["ForceConstantsFile", "uMLIP", "computes the force constants"]),
    ("bad chopper frequency", lambda t: dict(Instrument="SEQUOIA", IncidentEnergy=100.0,
                                             ChopperFrequency=70),
     ["ChopperFrequency", "60"]),
]


@pytest.mark.parametrize("case, make_args, words", INVALID, ids=[c[0] for c in INVALID])
def test_invalid_input_fails_clearly_and_leaves_nothing(predict_ins, files, tmp_path, case,
                                                        make_args, words, monkeypatch):
    from mantid.api import AnalysisDataService

    import insnet_core.predict
    monkeypatch.setattr(insnet_core.predict, "_MODELS_DIR", tmp_path / "no-models")
    args = make_args(tmp_path)
    if args.get("ForceConstantsFile") == "OTHER":
        args["ForceConstantsFile"] = files["other_fc"]
    before = set(AnalysisDataService.getObjectNames())
    with pytest.raises((RuntimeError, ValueError)) as info:
        _run(predict_ins, files, **args)
    message = str(info.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    assert not AnalysisDataService.doesExist("out")
    assert set(AnalysisDataService.getObjectNames()) == before


def test_validate_inputs_returns_messages_per_property(files, tmp_path):
    alg = load_plugin().PredictINSFromCIF()
    alg.initialize()
    alg.setProperty("InputFile", _bad_cif(tmp_path))
    alg.setProperty("Instrument", "SEQUOIA")
    alg.setProperty("IncidentEnergy", -1.0)
    alg.setProperty("OutputWorkspace", "x")
    issues = alg.validateInputs()
    assert set(issues) >= {"InputFile", "IncidentEnergy"}
    alg.setProperty("Method", "Physics")
    issues = alg.validateInputs()
    assert set(issues) >= {"InputFile", "IncidentEnergy", "ForceConstantsFile"}
    assert all(isinstance(v, str) and v for v in issues.values())


def test_group_failure_leaves_no_members(predict_ins, files):
    from mantid.api import AnalysisDataService
    with pytest.raises((RuntimeError, ValueError)):
        _run(predict_ins, files, Contributions="ByElement", Method="Physics",
             ForceConstantsFile=files["other_fc"])
    assert AnalysisDataService.getObjectNames() == []


# --------------------------------------------------------------------------- plugin shape
def test_plugin_is_thin_and_its_helpers_live_in_insnet_core():
    from mantid_helpers import PLUGIN

    from insnet_core import mantid_algorithms
    import ast
    lines = PLUGIN.read_text().splitlines()
    # thin: only Mantid's interface methods; the declarations grow with the properties,
    # the execution stays a few numbered steps calling insnet_core
    cls = next(n for n in ast.parse(PLUGIN.read_text()).body if isinstance(n, ast.ClassDef))
    methods = {n.name: n for n in cls.body if isinstance(n, ast.FunctionDef)}
    assert set(methods) <= {"category", "summary", "seeAlso", "PyInit", "validateInputs",
                            "PyExec"}
    exec_lines = methods["PyExec"].end_lineno - methods["PyExec"].lineno + 1
    assert exec_lines <= 40, f"PyExec has {exec_lines} lines"
    for name in ("prediction_arguments", "property_problems", "output_parts", "store_outputs",
                 "log_as_float"):
        assert callable(getattr(mantid_algorithms, name))
    source = "\n".join(lines)
    assert "def _binning" not in source and "def _arguments" not in source


def test_force_constants_with_the_default_method_mean_physics(files):
    from insnet_core.mantid_algorithms import chosen_method
    alg = load_plugin().PredictINSFromCIF()
    alg.initialize()
    alg.setProperty("ForceConstantsFile", files["fc"])
    assert chosen_method(alg) == "Physics"
    alg.setProperty("Method", "Physics")
    assert chosen_method(alg) == "Physics"
    alg.setProperty("ForceConstantsFile", "")
    alg.setProperty("Method", "ML")
    assert chosen_method(alg) == "ML"




def test_umlip_method_computes_force_constants(predict_ins, tmp_path, monkeypatch):
    from structures import NACL_CIF
    pytest.importorskip("chgnet")
    monkeypatch.setenv("INSNET_CACHE_DIR", str(tmp_path / "cache"))
    cif = tmp_path / "NaCl.cif"
    cif.write_text(NACL_CIF.format(a=5.64))
    ws = predict_ins(InputFile=str(cif), Method="uMLIP", Potential="chgnet",
                     Instrument="VISION", OutputWorkspace="out")
    assert _log(ws, "prediction_method") == "uMLIP"
    assert _log(ws, "potential") == "chgnet"
    assert _log(ws, "spacegroup_after") == "Fm-3m (225)"
    assert _log(ws, "force_constants").endswith("phonopy_params.yaml")
    y = np.array([ws.readY(i) for i in range(ws.getNumberHistograms())])
    assert np.all(np.isfinite(y)) and y.max() > 0
    # the force constants it made are kept and reusable as ForceConstantsFile
    again = predict_ins(InputFile=str(cif), Method="Physics",
                        ForceConstantsFile=_log(ws, "force_constants"), Instrument="VISION",
                        OutputWorkspace="again")
    np.testing.assert_allclose(again.readY(2), ws.readY(2), rtol=1e-10)
