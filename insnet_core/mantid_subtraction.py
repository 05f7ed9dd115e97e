"""What the SubtractPredictedPhonons algorithm needs besides :mod:`insnet_core.subtraction`.

``plugins/algorithms/SubtractPredictedPhonons.py`` declares its properties and
runs numbered steps; the property checks, the prediction on the data's own
binning (reusing PredictINSFromCIF's checks through
:mod:`insnet_core.mantid_algorithms`) and the fit region live here. Mantid
itself is never imported by this module.
"""
from __future__ import annotations

import numpy as np

from insnet_core import InputError
from insnet_core.mantid_adapter import workspace_to_spectrum
from insnet_core.subtraction import (DEFAULT_FIT_Q_MIN, FitRegion, _data_arrays, parse_range,
                                     prediction_on_data)

__all__ = ["SCALE_METHODS", "WEIGHTING_CHOICES", "PREDICTION_PROPERTIES", "PredictionView",
           "subtraction_problems", "read_data", "read_prediction", "fit_region",
           "magnetic_range"]

SCALE_METHODS = ["FitHighQ", "Fixed"]
WEIGHTING_CHOICES = ["Auto", "Data", "Poisson"]
#: Properties shared with PredictINSFromCIF (used when no PredictedWorkspace is given).
PREDICTION_PROPERTIES = ("InputFile", "Instrument", "IncidentEnergy", "ChopperPackage",
                         "ChopperFrequency", "Temperature", "Method", "ForceConstantsFile",
                         "Model", "Potential")


class _Value:
    def __init__(self, value):
        self.value = value


class PredictionView:
    """The subtraction algorithm seen as PredictINSFromCIF by the shared checks.

    ``BinningWorkspace`` is the InputWorkspace (the prediction is made on the
    data's own bins); ``EnergyBinning``/``QBinning`` are empty and
    ``EnergyUnit`` is 'Default', ``MapRoute`` and ``VisionRoute`` 'Default' (the
    measured better routes);
    every other property is the algorithm's.
    """

    _FIXED = {"energybinning": "", "qbinning": "", "energyunit": "Default",
              "contributions": "Total", "maproute": "Default", "visionroute": "Default",
              # VISION predictions use the instrument's documented settings
              "finalenergy": 0.0, "bankangles": "", "resolutionpolynomial": ""}

    def __init__(self, alg):
        self._alg = alg

    def getProperty(self, name):
        if name.lower() == "binningworkspace":
            return _Value(self._alg.getProperty("InputWorkspace").value)
        if name.lower() in self._FIXED:
            return _Value(self._FIXED[name.lower()])
        return self._alg.getProperty(name)

    def getPropertyValue(self, name):
        if name.lower() in self._FIXED:
            return self._FIXED[name.lower()]
        if name.lower() == "binningworkspace":
            return self._alg.getPropertyValue("InputWorkspace")
        return self._alg.getPropertyValue(name)


def read_data(alg):
    """The InputWorkspace as a Spectrum (read only); InputError when unusable."""
    ws = alg.getProperty("InputWorkspace").value
    if ws is None:
        raise InputError("no InputWorkspace")
    data = workspace_to_spectrum(ws)
    _data_arrays(data)  # all-NaN data, zero errors everywhere, negative errors
    ei = data.metadata.get("Ei")
    if ei is not None and not ei > 0:
        raise InputError(f"its 'Ei' log is {ei:g} meV; an incident energy must be > 0")
    return data


def fit_region(alg, data):
    """FitRegion from FitQRange/FitEnergyRange, or from FitRegionWorkspace (non-zero bins)."""
    mask_ws = alg.getProperty("FitRegionWorkspace").value
    if mask_ws is not None:
        values = np.array(mask_ws.extractY(), dtype=float)
        if values.shape != data.shape:
            raise InputError(f"FitRegionWorkspace has shape {values.shape}, the "
                             f"InputWorkspace {data.shape}; give one value per data bin")
        return FitRegion(mask=np.isfinite(values) & (values != 0))
    return FitRegion(q_range=parse_range(alg.getPropertyValue("FitQRange"), "FitQRange",
                                         (DEFAULT_FIT_Q_MIN, np.inf)),
                     energy_range=parse_range(alg.getPropertyValue("FitEnergyRange"),
                                              "FitEnergyRange"))


def magnetic_range(alg):
    """(lo, hi) of MagneticQRange in 1/angstrom."""
    return parse_range(alg.getPropertyValue("MagneticQRange"), "MagneticQRange", (0.0, 2.0))


def read_prediction(alg, data):
    """The PredictedWorkspace as a Spectrum, or None when a prediction must be computed."""
    ws = alg.getProperty("PredictedWorkspace").value
    if ws is None:
        return None
    pred = workspace_to_spectrum(ws)
    prediction_on_data(data, pred)   # raises on incompatible axes
    return pred


def subtraction_problems(alg):
    """Every input problem keyed by property (for ``validateInputs``).

    Returns
    -------
    problems : dict
    kwargs : dict or None
        Arguments of :func:`insnet_core.predict.plan` when the prediction has to
        be computed (no PredictedWorkspace), else None.
    """
    from insnet_core.mantid_algorithms import property_problems
    problems = {}
    data = None
    try:
        data = read_data(alg)
    except InputError as exc:
        problems["InputWorkspace"] = str(exc)
    kwargs = None
    if alg.getProperty("PredictedWorkspace").value is not None:
        if data is not None:
            try:
                read_prediction(alg, data)
            except InputError as exc:
                problems["PredictedWorkspace"] = str(exc)
    elif data is not None:
        found, kwargs, _ = property_problems(PredictionView(alg))
        for key, message in found.items():
            problems.setdefault("InputWorkspace" if key == "BinningWorkspace" else key,
                                message)
    method = alg.getPropertyValue("ScaleMethod")
    if method == "FitHighQ" and data is not None:
        try:
            region = fit_region(alg, data)
            if not region.bins(data).any():
                problems["FitQRange"] = (f"the fit region ({region.describe(data)}) holds no "
                                         "bin of the data; widen it")
        except InputError as exc:
            key = "FitRegionWorkspace" if "FitRegionWorkspace" in str(exc) else (
                "FitEnergyRange" if "FitEnergyRange" in str(exc) else "FitQRange")
            problems[key] = str(exc)
    if method == "Fixed" and float(alg.getProperty("ScaleFactorError").value) < 0:
        problems["ScaleFactorError"] = "must be >= 0"
    if alg.getPropertyValue("OutputMagneticIntensity"):
        try:
            magnetic_range(alg)
        except InputError as exc:
            problems["MagneticQRange"] = str(exc)
        if data is not None and not data.is_map:
            problems["OutputMagneticIntensity"] = ("the magnetic intensity integrates over "
                                                   "|Q|; the InputWorkspace has no |Q| axis")
    return problems, kwargs
