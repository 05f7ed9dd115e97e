"""insnet_core.mantid_adapter: Spectrum <-> Mantid workspace axes, units, values and logs."""
import subprocess
import sys

import numpy as np
import pytest

from insnet_core import InputError
from insnet_core.mantid_adapter import binning_from_workspace, spectrum_to_workspace
from insnet_core.spectrum import Spectrum
from insnet_core.units import MEV_PER_CM1
from mantid_helpers import REPO_ROOT, axis_values, make_workspace, using_standin, x_of


@pytest.fixture(autouse=True)
def clean_ads():
    from mantid.api import AnalysisDataService
    AnalysisDataService.clear()
    yield
    AnalysisDataService.clear()


def _map():
    e = np.linspace(-10.0, 50.0, 61)
    q = np.linspace(0.0, 6.0, 31)
    vals = np.random.default_rng(0).random((30, 60))
    vals[0, :5] = np.nan
    return Spectrum(energy_edges=e, values=vals, errors=0.1 * vals, q_edges=q,
                    metadata={"formula": "SiF4", "instrument": "SEQUOIA", "ei_meV": 60.0,
                              "unstable": False, "angles": [2.0, 62.0], "orders": 4,
                              "nothing": None})


def test_map_to_workspace_axes_units_values_logs():
    spec = _map()
    ws = spectrum_to_workspace(spec, name="m")
    from mantid.api import AnalysisDataService
    assert AnalysisDataService.retrieve("m") is ws or AnalysisDataService.doesExist("m")
    assert ws.getNumberHistograms() == 30 and ws.blocksize() == 60 and ws.isHistogramData()
    assert np.array_equal(x_of(ws), spec.energy_edges)
    assert ws.getAxis(0).getUnit().unitID() == "DeltaE"
    assert ws.getAxis(1).getUnit().unitID() == "MomentumTransfer"
    assert np.array_equal(axis_values(ws, 1), spec.q_edges)
    y = np.array([ws.readY(i) for i in range(30)])
    e = np.array([ws.readE(i) for i in range(30)])
    assert np.array_equal(y, spec.values, equal_nan=True)
    assert np.array_equal(e, spec.errors, equal_nan=True)
    assert ws.isDistribution()
    assert ws.YUnitLabel() == spec.y_label
    run = ws.getRun()
    assert run.getProperty("formula").value == "SiF4"
    assert run.getProperty("ei_meV").value == 60.0
    assert run.getProperty("unstable").value == 0          # booleans as 0/1
    assert run.getProperty("orders").value == 4
    assert run.getProperty("angles").value == "[2.0, 62.0]"  # lists as JSON text
    assert not run.hasProperty("nothing")


def test_1d_wavenumber_workspace_is_per_cm1_density_with_text_axis():
    e = np.linspace(1.0, 100.0, 100)
    spec = Spectrum(energy_edges=e, values=np.ones((2, 99)), labels=["backward", "forward"],
                    display_energy_unit="cm-1", y_label="S(Q,E) (barn/sr/meV per cell)")
    ws = spectrum_to_workspace(spec)
    assert ws.getAxis(0).getUnit().unitID() == "DeltaE_inWavenumber"
    assert np.allclose(x_of(ws), e / MEV_PER_CM1, rtol=1e-14)
    assert ws.getAxis(1).isText()
    assert [ws.getAxis(1).label(i) for i in range(2)] == ["backward", "forward"]
    integral = np.sum(np.array(ws.readY(0)) * np.diff(x_of(ws)))
    assert integral == pytest.approx(spec.integral()[0], rel=1e-12)   # same area in cm^-1
    assert ws.YUnitLabel() == "S(Q,E) (barn/sr/cm^-1 per cell)"


def test_binning_round_trip_map_and_wavenumber():
    spec = _map()
    e, q, unit = binning_from_workspace(spectrum_to_workspace(spec))
    assert np.array_equal(e, spec.energy_edges) and np.array_equal(q, spec.q_edges)
    assert unit == "meV"
    x = np.array([10.0, 20.0, 40.0, 80.0, 160.0])
    e, q, unit = binning_from_workspace(make_workspace(x, 1, x_unit="DeltaE_inWavenumber"))
    assert q is None and unit == "cm-1"
    assert np.array_equal(e, x * MEV_PER_CM1)


def test_binning_centres_become_midpoint_edges():
    ws = make_workspace([1.0, 2.0, 4.0], 3, values=np.ones((3, 3)), vertical=[0.5, 1.5, 2.5])
    e, q, _ = binning_from_workspace(ws)
    assert np.allclose(e, [0.5, 1.5, 3.0, 5.0])
    assert np.allclose(q, [0.0, 1.0, 2.0, 3.0])


def test_like_copies_template_axes_exactly():
    centres = np.linspace(0.33, 5.1, 40)
    x = np.linspace(-3.3, 47.7, 91)
    template = make_workspace(x, 40, vertical=centres)
    e, q, unit = binning_from_workspace(template)
    spec = Spectrum(energy_edges=e, values=np.ones((40, 90)), q_edges=q)
    ws = spectrum_to_workspace(spec, like=template)
    assert np.array_equal(x_of(ws), x)
    assert np.array_equal(axis_values(ws, 1), centres)
    other = Spectrum(energy_edges=e + 1.0, values=np.ones((40, 90)), q_edges=q)
    with pytest.raises(InputError, match="energy bins"):
        spectrum_to_workspace(other, like=template)


@pytest.mark.parametrize("make, words", [
    (lambda: make_workspace(np.linspace(1000, 2000, 11), 2, x_unit="TOF"),
     ["TOF", "Time-of-flight", "DeltaE", "DeltaE_inWavenumber"]),
    (lambda: make_workspace(np.linspace(1, 2, 11), 2, x_unit="Wavelength"), ["Wavelength"]),
    (lambda: make_workspace(np.linspace(0, 5, 11), 3, x_unit="MomentumTransfer",
                            vertical=[1.0, 2.0, 3.0], vertical_unit="DeltaE"),
     ["MomentumTransfer"]),
    (lambda: make_workspace(np.linspace(0, 5, 11), 3, vertical=[1.0, 2.0, 3.0],
                            vertical_unit="TOF"), ["vertical axis", "TOF"]),
    (lambda: make_workspace(np.linspace(5, 0, 11), 1), ["ascending"]),
])
def test_wrong_units_are_named(make, words):
    with pytest.raises(InputError) as info:
        binning_from_workspace(make())
    for word in words:
        assert word in str(info.value)


def test_ragged_x_is_refused():
    ws = make_workspace(np.linspace(0, 10, 11), 2)
    ws.setX(1, np.linspace(0, 20, 11))
    with pytest.raises(InputError, match="Rebin"):
        binning_from_workspace(ws)


def test_insnet_core_imports_without_mantid():
    code = ("import sys; import insnet_core, insnet_core.mantid_adapter, insnet_core.predict, "
            "insnet_core.live; assert 'mantid' not in sys.modules, 'mantid imported'")
    env_path = [p for p in sys.path if "mantid_standin" not in p]
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                            text=True, env={"PYTHONPATH": ":".join(env_path), "PATH": "/usr/bin"})
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif("not __import__('mantid_helpers').using_standin()",
                    reason="checks the stand-in itself")
def test_standin_fails_loudly_on_anything_not_modelled():
    import mantid.api
    import mantid.simpleapi
    ws = make_workspace(np.linspace(0, 10, 11), 1)
    with pytest.raises(AttributeError, match="stand-in"):
        ws.getSpectrum(0)
    with pytest.raises(AttributeError, match="stand-in"):
        mantid.simpleapi.Rebin
    with pytest.raises(AttributeError, match="stand-in"):
        mantid.api.ITableWorkspace
    with pytest.raises(RuntimeError, match="not modelled"):
        ws.getAxis(0).setUnit("Degrees")
    assert using_standin()


def test_no_workspace_log_under_a_name_mantid_reads_specially():
    from insnet_core.spectrum import Spectrum
    meta = {"proton_charge": 3.0, "goniometers": "x", "processed_histogram_bins": 1,
            "peak_radius": 1.0, "inner_bkg_radius": 1.0, "outer_bkg_radius": 1.0,
            "formula": "SiF4", "Ei": 5.0, "EI": 6.0}
    spec = Spectrum(np.linspace(1.0, 5.0, 5), np.ones((1, 4)), metadata=meta)
    run = spectrum_to_workspace(spec).getRun()
    names = [p.name for p in run.getProperties()]
    for reserved in ("proton_charge", "goniometers", "processed_histogram_bins", "peak_radius",
                     "inner_bkg_radius", "outer_bkg_radius"):
        assert reserved not in [n.lower() for n in names]
        assert run.hasProperty(reserved + "_")
    assert run.getProperty("proton_charge_").value == 3.0
    assert run.getProperty("formula").value == "SiF4"
    assert run.getProperty("Ei").value == 5.0 and run.getProperty("EI_").value == 6.0
