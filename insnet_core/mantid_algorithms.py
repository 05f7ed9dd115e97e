"""What insnet's Mantid algorithms share: property checks, request arguments, outputs.

``plugins/algorithms/PredictINSFromCIF.py`` declares its properties and runs
numbered steps; everything else lives here, so that other algorithms declaring
the same properties (e.g. a phonon-subtraction algorithm) reuse it unchanged.
The functions take the algorithm itself (anything with ``getProperty`` and
``getPropertyValue``) and read the properties by their declared names.

Mantid is imported inside the functions that need it, so this module imports
without Mantid.
"""
from __future__ import annotations

from insnet_core import InputError
from insnet_core.binning import energy_edges_from_params, rebin_edges
from insnet_core.mantid_adapter import binning_from_workspace, spectrum_to_workspace

__all__ = ["INSTRUMENTS", "METHODS", "default_method", "chosen_method", "result_warnings", "CONTRIBUTIONS", "ENERGY_UNITS",
           "chopper_packages", "potentials", "log_as_float", "prediction_arguments", "property_problems", "output_parts",
           "store_outputs"]

INSTRUMENTS = ["VISION", "SEQUOIA", "Ideal2D"]
METHODS = ["ML", "Physics", "uMLIP"]
CONTRIBUTIONS = ["Total", "ByElement", "ByOrder"]
ENERGY_UNITS = ["Default", "meV", "cm-1"]
#: insnet_core.predict input -> property reporting its problem (binning depends on the source)
_PROBLEM_PROPERTY = {
    "structure_file": "InputFile", "method": "Method", "model": "Model",
    "force_constants": "ForceConstantsFile", "instrument": "Instrument",
    "ei": "IncidentEnergy", "chopper_package": "ChopperPackage",
    "chopper_frequency": "ChopperFrequency", "temperature": "Temperature",
    "final_energy": "FinalEnergy", "bank_angles": "BankAngles",
    "resolution_poly": "ResolutionPolynomial",
    "orders": "Temperature", "display_energy_unit": "EnergyUnit", "potential": "Potential",
    "map_route": "MapRoute", "vision_route": "VisionRoute",
}
#: MapRoute property values: Default (the better route measured), then the routes.
MAP_ROUTE_CHOICES = ("Default", "Partials", "AE")
#: VisionRoute property values: Default (the model card's choice), then the routes.
VISION_ROUTE_CHOICES = ("Default", "Neighbours", "Head", "Partials")


def default_method():
    """'ML' when a trained model ships in models/, else 'Physics'."""
    from insnet_core.predict import default_model
    return "ML" if default_model() else "Physics"


def chosen_method(alg):
    """The Method property, except that a ForceConstantsFile given while Method has its
    default value means Physics: the force constants say what the user wants.

    (Compared by value, as Mantid's ``isDefault`` does: Method set explicitly to the
    default cannot be told apart from Method left alone.)
    """
    method = alg.getPropertyValue("Method")
    if method == default_method() and alg.getPropertyValue("ForceConstantsFile"):
        return "Physics"
    return method


def result_warnings(result):
    """What a user must be told about a result: instabilities, out-of-training warnings."""
    out = []
    if result.stability.get("has_imaginary"):
        out.append(str(result.total.metadata.get("stability")))
    out += [w for w in str(result.total.metadata.get("warnings", "")).split(" | ") if w]
    return out


def potentials():
    """Names of the universal potentials (the Potential choices) and the default."""
    from insnet_core.umlip import DEFAULT_POTENTIAL, POTENTIALS
    return list(POTENTIALS), DEFAULT_POTENTIAL


def chopper_packages():
    """Names of SEQUOIA's Fermi chopper packages (the ChopperPackage choices)."""
    from insnet_core.instruments import Sequoia
    return Sequoia.chopper_packages()


def log_as_float(ws, name):
    """A sample log of ``ws`` as one number, or None when the workspace has no such log.

    Uses ``Run.getPropertyAsSingleValue``: a single value as it is, a time-series
    log (live data, most instrument logs) as the mean of its values. Reading
    ``getProperty(name).value`` instead gives an array for a time series.

    Raises
    ------
    InputError
        The log exists but is not a number (e.g. a text log that is not numeric).
    """
    run = ws.getRun()
    if not run.hasProperty(name):
        return None
    try:
        return float(run.getPropertyAsSingleValue(name))
    except (ValueError, RuntimeError) as exc:
        raise InputError(f"sample log '{name}' is not a number: {exc}") from None


def _binning(alg):
    """(energy_edges_meV, q_edges, display_unit, template, problems)."""
    problems = {}
    template = alg.getProperty("BinningWorkspace").value
    if template is not None:
        try:
            energy, q, unit = binning_from_workspace(template)
            return energy, q, unit, template, problems
        except InputError as exc:
            problems["BinningWorkspace"] = str(exc)
            return None, None, None, None, problems
    unit = alg.getPropertyValue("EnergyUnit")
    unit = None if unit == "Default" else unit
    energy = q = None
    text = alg.getPropertyValue("EnergyBinning").strip()
    if text:
        if unit is None:
            unit = "cm-1" if alg.getPropertyValue("Instrument") == "VISION" else "meV"
        try:
            energy = energy_edges_from_params(text, unit, "EnergyBinning")
        except InputError as exc:
            problems["EnergyBinning"] = str(exc)
    text = alg.getPropertyValue("QBinning").strip()
    if text:
        try:
            q = rebin_edges(text, "QBinning")
        except InputError as exc:
            problems["QBinning"] = str(exc)
    return energy, q, unit, None, problems


def _incident_energy(alg, template, problems):
    ei = float(alg.getProperty("IncidentEnergy").value)
    if ei == 0.0 and template is not None:
        try:
            ei = log_as_float(template, "Ei") or 0.0
        except InputError as exc:
            problems["BinningWorkspace"] = str(exc)
            return None
    if ei <= 0.0:
        problems["IncidentEnergy"] = (
            "SEQUOIA needs an incident energy > 0 meV (set IncidentEnergy, or give a "
            "BinningWorkspace with an 'Ei' log)" if ei == 0.0 else
            f"IncidentEnergy must be > 0 meV, got {ei:g}")
    return ei


def prediction_arguments(alg):
    """Keyword arguments of :func:`insnet_core.predict.plan` from the algorithm's properties.

    Returns
    -------
    kwargs : dict
    template : MatrixWorkspace or None
        The BinningWorkspace, when given.
    problems : dict
        Property name -> message for inputs already found wrong.
    """
    energy, q, unit, template, problems = _binning(alg)
    instrument = alg.getPropertyValue("Instrument")
    ei = frequency = package = None
    if instrument == "SEQUOIA":
        ei = _incident_energy(alg, template, problems)
        package = alg.getPropertyValue("ChopperPackage")
        frequency = int(alg.getProperty("ChopperFrequency").value) or None
    method = chosen_method(alg)
    kwargs = dict(structure_file=alg.getPropertyValue("InputFile"),
                  method=method,
                  potential=alg.getPropertyValue("Potential") if method == "uMLIP" else None,
                  force_constants=alg.getPropertyValue("ForceConstantsFile") or None,
                  model=alg.getPropertyValue("Model") or None,
                  map_route=_map_route(alg),
                  vision_route=_vision_route(alg),
                  instrument=instrument,
                  temperature=float(alg.getProperty("Temperature").value),
                  energy_edges=energy, q_edges=q, display_energy_unit=unit,
                  ei=ei, chopper_package=package, chopper_frequency=frequency)
    if instrument == "VISION":   # empty / 0: the instrument's documented values
        kwargs.update(
            final_energy=float(alg.getProperty("FinalEnergy").value) or None,
            bank_angles=alg.getPropertyValue("BankAngles").strip() or None,
            resolution_poly=alg.getPropertyValue("ResolutionPolynomial").strip() or None)
    return kwargs, template, problems


def _vision_route(alg):
    """The VisionRoute property as predict's vision_route (None: the model card's default;
    a route set for another instrument or method is reported by the checks)."""
    value = alg.getPropertyValue("VisionRoute")
    return None if value in ("", "Default") else value.lower()


def _map_route(alg):
    """The MapRoute property as predict's map_route (None: the default route)."""
    value = alg.getPropertyValue("MapRoute")
    return None if value in ("", "Default") else value.lower()


def property_problems(alg):
    """Every input problem, keyed by the property to blame (for ``validateInputs``).

    Returns
    -------
    problems : dict
    kwargs : dict
        As :func:`prediction_arguments`.
    template : MatrixWorkspace or None
    """
    from insnet_core.predict import find_problems
    kwargs, template, problems = prediction_arguments(alg)
    source = "BinningWorkspace" if template is not None else None
    for key, message in find_problems(**kwargs).items():
        if key in ("energy_binning", "q_binning"):
            prop = source or ("EnergyBinning" if key == "energy_binning" else "QBinning")
        else:
            prop = _PROBLEM_PROPERTY.get(key, "InputFile")
        if prop not in problems:  # a property already reported keeps its first message
            problems[prop] = message
    return problems, kwargs, template


def output_parts(result, contributions, template=None):
    """[(part name, workspace)]: the total, then one per element or order as asked.

    ``contributions`` is 'Total', 'ByElement' or 'ByOrder'; the workspaces copy
    the axes of ``template`` when given.
    """
    if contributions not in CONTRIBUTIONS:
        raise InputError(f"Contributions must be one of {CONTRIBUTIONS}, got {contributions!r}")
    if contributions != "Total" and not (result.by_element or result.by_order):
        raise InputError(f"Contributions {contributions}: this result has the total only (the "
                         "AE map route); choose MapRoute 'partials' for contributions")
    parts = [("total", result.total)]
    if contributions == "ByElement":
        parts += list(result.by_element.items())
    elif contributions == "ByOrder":
        parts += [(f"order{n}", spec) for n, spec in result.by_order.items()]
    return [(key, spectrum_to_workspace(spec, like=template)) for key, spec in parts]


def store_outputs(out_name, parts, as_group):
    """The output: the first part's workspace, or a WorkspaceGroup of ``<out_name>_<part>``.

    With ``as_group``, the members are added to the AnalysisDataService under
    their names; if anything fails, the members already added are removed again.
    """
    from mantid.api import AnalysisDataService, WorkspaceGroup
    if not as_group:
        return parts[0][1]
    group = WorkspaceGroup()
    stored = []
    try:
        for key, ws in parts:
            AnalysisDataService.addOrReplace(f"{out_name}_{key}", ws)
            stored.append(f"{out_name}_{key}")
            group.addWorkspace(ws)
    except Exception:
        for name in stored:
            if AnalysisDataService.doesExist(name):
                AnalysisDataService.remove(name)
        raise
    return group
