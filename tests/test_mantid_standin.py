"""Behaviour of Mantid's Python API that insnet relies on, checked through the stand-in.

Each test states what Mantid itself does (the source it follows is named in
tests/mantid_standin/mantid/__init__.py), so the tests run unchanged against a
real Mantid, and the stand-in cannot let code pass that Mantid would reject.
"""
from pathlib import Path

import numpy as np
import pytest

from mantid_helpers import load_plugin, make_workspace


@pytest.fixture
def alg():
    algorithm = load_plugin().PredictINSFromCIF()
    algorithm.initialize()
    return algorithm


def test_property_names_are_case_insensitive(alg, example_dir):
    structure = str(example_dir / "mp-1818-20180417" / "POSCAR-unitcell")
    alg.setProperty("inputfile", structure)
    assert alg.getProperty("INPUTFILE").value == alg.getPropertyValue("InputFile")
    assert alg.getProperty("inputFile").name == "InputFile"   # the declared spelling
    assert alg.existsProperty("temperature")
    alg.setProperty("TEMPERATURE", 12.0)
    assert alg.getProperty("Temperature").value == 12.0


def test_property_declared_twice_in_another_case_is_refused():
    from mantid.api import PythonAlgorithm

    class Twice(PythonAlgorithm):
        def PyInit(self):
            self.declareProperty("Value", 1.0)
            self.declareProperty("VALUE", 2.0)

    with pytest.raises(RuntimeError, match="already exists"):
        Twice().initialize()


@pytest.mark.parametrize("name, value", [
    ("Temperature", [5.0]),            # a list for a float
    ("Temperature", True),             # a bool for a float
    ("ChopperFrequency", 60.5),        # a float for an int
    ("EnergyBinning", 5.0),            # a number for a string
    ("Instrument", None),
])
def test_value_of_the_wrong_type_raises_type_error(alg, name, value):
    with pytest.raises(TypeError):
        alg.setProperty(name, value)


@pytest.mark.parametrize("name, value", [
    ("Temperature", "warm"),           # a string that does not parse
    ("Temperature", -1.0),             # refused by the validator
    ("Temperature", "-1"),
    ("Instrument", "MARI"),
    ("ChopperFrequency", "sixty"),
])
def test_parse_or_validator_failure_raises_value_error(alg, name, value):
    with pytest.raises(ValueError):
        alg.setProperty(name, value)


def test_string_values_are_parsed(alg):
    alg.setProperty("Temperature", "7.5")
    alg.setProperty("ChopperFrequency", "120")
    assert alg.getProperty("Temperature").value == 7.5
    assert alg.getProperty("ChopperFrequency").value == 120


def test_file_property_takes_str_only(alg, example_dir):
    path = example_dir / "mp-1818-20180417" / "POSCAR-unitcell"
    with pytest.raises(TypeError):
        alg.setProperty("InputFile", Path(path))
    alg.setProperty("InputFile", str(path))
    assert Path(alg.getPropertyValue("InputFile")) == path.resolve()


@pytest.mark.parametrize("value", [1.5, 3, True, "text", [1.0, 2.0]],
                         ids=["float", "int", "bool", "str", "list"])
def test_run_add_property_accepts_python_values(value):
    run = make_workspace(np.linspace(0.0, 10.0, 11), 1).mutableRun()
    run.addProperty("entry", value, True)
    stored = run.getProperty("entry").value
    if isinstance(value, list):
        assert list(stored) == value
    else:
        assert stored == value


@pytest.mark.parametrize("value", [np.float64(1.5), np.int64(3), np.bool_(True),
                                   np.array([1.0, 2.0]), None, {"a": 1}, (1.0, 2.0)],
                         ids=["float64", "int64", "bool_", "ndarray", "None", "dict", "tuple"])
def test_run_add_property_refuses_numpy_and_other_values(value):
    run = make_workspace(np.linspace(0.0, 10.0, 11), 1).mutableRun()
    with pytest.raises(TypeError):
        run.addProperty("entry", value, True)
    assert not run.hasProperty("entry")


def test_log_names_are_case_insensitive():
    run = make_workspace(np.linspace(0.0, 10.0, 11), 1, logs={"Ei": 60.0}).mutableRun()
    assert run.hasProperty("ei") and run.getProperty("EI").value == 60.0
    with pytest.raises(ValueError):
        run.addProperty("EI", 70.0, False)


def test_time_series_log_value_is_an_array_and_single_value_is_its_mean():
    from mantid.kernel import FloatTimeSeriesProperty
    log = FloatTimeSeriesProperty("Ei")
    for i, v in enumerate([59.0, 60.0, 61.0, 60.0]):
        log.addValue(f"2024-01-01T00:00:{i:02d}", v)
    run = make_workspace(np.linspace(0.0, 10.0, 11), 1, logs={"Ei": log}).mutableRun()
    with pytest.raises(TypeError):
        float(run.getProperty("Ei").value)       # numpy 2: only 0-d arrays convert
    assert run.getPropertyAsSingleValue("Ei") == pytest.approx(60.0)
    run.addProperty("label", "not a number", True)
    with pytest.raises(ValueError):
        run.getPropertyAsSingleValue("label")
