"""Prediction from a crystal structure file: the one entry point for Mantid and scripts.

:func:`predict` takes a structure file (CIF or POSCAR), a method and the
instrument settings, and returns a :class:`~insnet_core.simulate.SimulationResult`
on the requested bins. Two methods exist:

* ``'Physics'`` (what works today): the spectrum is computed from phonopy force
  constants given next to the structure. The structure file is read and
  validated, and its reduced formula must match the force constants' cell; the
  phonons themselves come from the force constants' own cell. The engine
  integrates the resolution-broadened spectrum over each requested bin, so the
  requested edges are used as they are.
* ``'ML'``: machine-learned prediction straight from the structure: a model
  folder of ``models/`` (:mod:`insnet_core.nn`) predicts each element's
  partial DOS, and the engine computes the instrument spectrum from it, with
  the ensemble's spread as errors. Elements the model never saw are refused.
* ``'uMLIP'``: force constants from a universal ML potential
  (:mod:`insnet_core.umlip`: relaxation with the space group kept, phonopy
  supercell forces), then the engine as for ``'Physics'``.

:func:`find_problems` runs every cheap check (files, settings, bins) without
computing anything and returns one message per faulty input, which is what
Mantid's ``validateInputs`` needs. :func:`rebin_result` moves a whole result
onto other bins with :meth:`Spectrum.rebin` (flux conserving); the live-data
overlay uses it to follow the binning of incoming data.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from insnet_core import InputError, __version__
from insnet_core.defaults import DEFAULT_ORDERS, DEFAULT_TEMPERATURE_K, VISION_ROUTES

__all__ = ["METHODS", "DEFAULT_METHOD", "MAP_ROUTES", "default_map_route", "load_map_route",
           "PredictionRequest", "plan", "find_problems",
           "predict", "rebin_result", "resolve_force_constants", "force_constants_formula",
           "check_consistency", "available_models", "default_model", "resolve_model",
           "load_predictor"]

#: Prediction methods, as users name them.
METHODS = ("Physics", "ML", "uMLIP")
#: Used until trained models ship.
DEFAULT_METHOD = "Physics"
#: Map routes of Method 'ML' (see :func:`predict`).
MAP_ROUTES = ("partials", "ae")

_MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
_FC_FILE_NAMES = ("phonopy.conf", "FORCE_SETS", "FORCE_CONSTANTS", "POSCAR-unitcell", "BORN")
_YAML_NAMES = ("phonopy_params.yaml", "phonopy.yaml", "phonopy_disp.yaml")


# ----------------------------------------------------------------------------
# force constants
# ----------------------------------------------------------------------------
def resolve_force_constants(path):
    """The phonopy source (folder or yaml file) that ``path`` points to.

    Parameters
    ----------
    path : str or Path
        A phonondb folder, a ``phonopy*.yaml`` file, or one file inside a
        phonondb folder (``phonopy.conf``, ``FORCE_SETS``, ``FORCE_CONSTANTS``,
        ``POSCAR-unitcell``, ``BORN``), which stands for its folder. This is how
        a folder is given through a file dialog.

    Returns
    -------
    Path
        What :func:`insnet_core.phonons.load_phonopy` accepts.

    Raises
    ------
    InputError
        Missing path, or a file that is none of the above.
    """
    p = Path(os.fspath(path))
    if not p.exists():
        raise InputError(f"force constants {p}: no such file or folder")
    if p.is_dir():
        if not ((p / "POSCAR-unitcell").is_file()
                or any((p / n).is_file() for n in _YAML_NAMES)):
            raise InputError(f"force constants {p}: the folder holds neither POSCAR-unitcell + "
                             "phonopy.conf + FORCE_SETS (phonondb layout) nor a phonopy.yaml")
        return p
    if p.suffix.lower() in (".yaml", ".yml"):
        return p
    if p.name in _FC_FILE_NAMES:
        return p.parent
    raise InputError(f"force constants {p}: expected a phonopy.yaml, a phonondb folder or one "
                     f"of its files ({', '.join(_FC_FILE_NAMES)})")


def _yaml_symbols(path):
    import yaml
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.load(fh, Loader=loader)
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"force constants {path}: cannot be read as YAML ({exc})") from None
    for key in ("unit_cell", "primitive_cell", "supercell"):
        cell = (data or {}).get(key) if isinstance(data, dict) else None
        if isinstance(cell, dict) and isinstance(cell.get("points"), list):
            symbols = [pt.get("symbol") for pt in cell["points"] if isinstance(pt, dict)]
            if symbols and all(isinstance(s, str) for s in symbols):
                return symbols
    raise InputError(f"force constants {path}: no unit_cell with atom symbols found")


def force_constants_formula(source):
    """Reduced formula of the cell the force constants belong to (no phonopy run).

    Parameters
    ----------
    source : str or Path
        Anything :func:`resolve_force_constants` accepts.
    """
    from pymatgen.core import Composition
    from insnet_core.structure import read_structure

    src = resolve_force_constants(source)
    if src.is_dir() and (src / "POSCAR-unitcell").is_file():
        return read_structure(src / "POSCAR-unitcell", max_atoms=None).formula
    yaml_file = src if src.is_file() else next(src / n for n in _YAML_NAMES
                                               if (src / n).is_file())
    symbols = _yaml_symbols(yaml_file)
    counts = {}
    for s in symbols:
        counts[s] = counts.get(s, 0) + 1
    return Composition(counts).reduced_formula


def check_consistency(structure, force_constants):
    """Raise InputError when the structure and the force constants are different compounds.

    Parameters
    ----------
    structure : insnet_core.structure.Structure
    force_constants : str or Path

    Returns
    -------
    str
        The common reduced formula.
    """
    fc_formula = force_constants_formula(force_constants)
    if fc_formula != structure.formula:
        raise InputError(
            f"structure {structure.source or '(given)'} is {structure.formula} but the force "
            f"constants {force_constants} are for {fc_formula}; give the force constants of "
            "the same crystal")
    return fc_formula


# ----------------------------------------------------------------------------
# ML models
# ----------------------------------------------------------------------------
def available_models():
    """Names of the finished models in ``models/`` (folders with a ``card.json``)."""
    if not _MODELS_DIR.is_dir():
        return []
    return sorted(p.name for p in _MODELS_DIR.iterdir()
                  if p.is_dir() and (p / "card.json").is_file())


def default_model():
    """The model Method 'ML' uses when none is named, or None when none is shipped.

    The finished model with the DOS head (it gives any instrument) whose card
    says ``"default": true``; otherwise the only finished model with that head.
    """
    import json
    usable, chosen = [], None
    for name in available_models():
        try:
            card = json.loads((_MODELS_DIR / name / "card.json").read_text())
        except (OSError, ValueError):
            continue
        if "dos" not in card.get("model", {}).get("heads", []):
            continue
        usable.append(name)
        if card.get("default"):
            chosen = chosen or name
    return chosen or (usable[0] if len(usable) == 1 else None)


def resolve_model(model):
    """The folder of a model given by name (in ``models/``) or by path."""
    if model in (None, ""):
        name = default_model()
        if name is None:
            shipped = available_models()
            if not shipped:
                raise InputError("Method 'ML': no trained model is shipped with this insnet "
                                 "yet; use Method 'Physics' with a ForceConstantsFile")
            raise InputError(f"Method 'ML': name a model; shipped: {', '.join(shipped)}")
        return _MODELS_DIR / name
    p = Path(os.fspath(model))
    if p.is_dir():
        return p
    if (_MODELS_DIR / str(model)).is_dir() and (_MODELS_DIR / str(model) / "card.json").is_file():
        return _MODELS_DIR / str(model)
    shipped = available_models()
    raise InputError(f"model {model!r} not found; shipped models: "
                     f"{', '.join(shipped) if shipped else 'none'}")


def _check_ml(structure, model, problems):
    """(model folder, model name) of an ML request, (None, None) when unusable; problems
    filed under 'model' / 'structure_file'."""
    from insnet_core.nn.card import read_card, unseen_elements
    try:
        folder = resolve_model(model)
        card = read_card(folder)
    except InputError as exc:
        problems["model" if model else "method"] = str(exc)
        return None, None
    name = card.get("name", folder.name)
    if structure is not None:
        problem = unseen_elements(structure, card, name)
        if problem:
            problems["structure_file"] = problem
        if "dos" not in card["model"].get("heads", []):
            problems["model"] = (f"model {name!r} has no DOS head: it cannot give instrument "
                                 "spectra")
    return folder, name


_PREDICTORS = {}


def load_predictor(folder):
    """The :class:`~insnet_core.nn.predictor.Predictor` of a model folder, loaded once."""
    key = str(Path(folder).resolve())
    if key not in _PREDICTORS:
        try:
            from insnet_core.nn.predictor import Predictor
        except ImportError as exc:
            raise InputError(f"Method 'ML' needs the ML extra (pip install 'insnet[ml]'): "
                             f"{exc}") from None
        _PREDICTORS[key] = Predictor(folder)
    return _PREDICTORS[key]


def _route_cards():
    """{folder: card} of the AE route folders shipped in ``models/maps`` (no torch)."""
    import json
    out = {}
    folder = _MODELS_DIR / "maps"
    for p in sorted(folder.iterdir()) if folder.is_dir() else []:
        try:
            card = json.loads((p / "card.json").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(card, dict) and card.get("kind") == "ae-route":
            out[p] = card
    return out


def default_map_route():
    """'ae' when a shipped AE route's card says it is the better map route, else 'partials'."""
    return ("ae" if any(c.get("default_map_route") == "ae" for c in _route_cards().values())
            else "partials")


def _check_map_route(map_route, method, inst, model_name, problems):
    """(route, AE route folder or None) of a request; problems filed under 'map_route'."""
    explicit = map_route not in (None, "")
    route = str(map_route).strip().lower() if explicit else None
    if explicit and route not in MAP_ROUTES:
        problems["map_route"] = (f"map route must be one of {', '.join(MAP_ROUTES)}, got "
                                 f"{str(map_route)[:40]!r}")
        return None, None
    if method != "ML" or inst is None or not inst.is_map:
        if explicit and route == "ae":
            problems["map_route"] = ("the AE route gives |Q|-E maps with Method 'ML' "
                                     "(SEQUOIA, Ideal2D) only")
        return None, None
    route = route or default_map_route()
    if route != "ae":
        return route, None
    if model_name is None:
        return route, None   # the model's own problem is reported
    cards = _route_cards()
    matching = [f for f, c in cards.items() if c.get("predictor") == model_name]
    if not matching:
        shipped = ", ".join(f"{f.name} (for {c.get('predictor')})" for f, c in cards.items())
        problems["map_route"] = (f"no AE route model is shipped for model {model_name!r}"
                                 + (f"; shipped: {shipped}" if shipped else "")
                                 + "; use map route 'partials'")
        return route, None
    return route, str(matching[0])


def _check_vision_route(vision_route, method, inst, model_folder, problems):
    """A request's VISION route (None: the model card's default); problems filed under
    'vision_route'. The route applies to Method 'ML' on VISION; 'partials' and the map
    routes are the only ones elsewhere, so a route given for another method or instrument
    is named as a problem rather than silently dropped."""
    if vision_route in (None, ""):
        return None
    route = str(vision_route).strip().lower()
    if route not in VISION_ROUTES:
        problems["vision_route"] = (f"VISION route must be one of {', '.join(VISION_ROUTES)}, "
                                    f"got {str(vision_route)[:40]!r}")
        return None
    if method != "ML" or (inst is not None and inst.name != "VISION"):
        problems["vision_route"] = ("the VISION route applies to Method 'ML' on VISION only "
                                    "(maps: the map route)")
        return None
    if route == "neighbours" and model_folder is not None:
        from insnet_core.nn.card import read_card
        if "neighbours" not in read_card(model_folder):
            problems["vision_route"] = (f"model {Path(model_folder).name!r} has no "
                                        "nearest-crystal data (neighbours.npz); use 'head' or "
                                        "'partials'")
    return route


_MAP_ROUTES = {}


def load_map_route(folder):
    """The :class:`~insnet_core.nn.map_route.MapRoute` of a route folder, loaded once."""
    key = str(Path(folder).resolve())
    if key not in _MAP_ROUTES:
        from insnet_core.nn.map_route import MapRoute
        _MAP_ROUTES[key] = MapRoute(folder)
    return _MAP_ROUTES[key]


# ----------------------------------------------------------------------------
# request checking
# ----------------------------------------------------------------------------
def _normalise_method(method):
    for known in METHODS:
        if str(method).strip().lower() == known.lower():
            return known
    raise InputError(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}")


@dataclass
class PredictionRequest:
    """A fully checked prediction request (see :func:`plan`)."""

    structure: object
    method: str
    force_constants: Path | None
    model: str | None
    settings: object
    display_energy_unit: str
    vision_route: str | None = None
    potential: str | None = None
    #: largest cell accepted (None: the defaults of the structure reader and the model)
    max_atoms: int | None = None
    #: Method 'ML' on a map instrument: 'partials' (engine on the predicted DOS) or 'ae'
    map_route: str | None = None
    #: the AE route's folder (``models/maps/<name>``) when map_route is 'ae'
    map_route_model: str | None = None

    def model_max_atoms(self):
        """The atom limit handed to the model (its own default unless raised)."""
        from insnet_core.nn.predictor import MAX_ATOMS
        return self.max_atoms or MAX_ATOMS

    def cache_key_parts(self):
        """The things a prediction depends on, as strings (used by the live cache)."""
        from insnet_core.live import files_hash
        inst = self.settings.instrument
        return {
            "structure": self.structure.hash(),
            "force_constants": files_hash(self.force_constants) if self.force_constants else "",
            "method": self.method, "model": self.model or "",
            "potential": self.potential or "",
            "instrument": repr(sorted((k, repr(v)) for k, v in inst.describe().items())),
            "temperature": repr(float(self.settings.temperature)),
            "orders": repr(self.settings.orders),
            "map_route": self.map_route or "",
        }


def _instrument(instrument, ei, chopper_package, chopper_frequency, problems,
                vision_settings=None):
    """Build the instrument, filing each bad setting under its own key."""
    from insnet_core.instruments import get_instrument
    name = str(instrument).strip().lower()
    given = {k: v for k, v in (vision_settings or {}).items() if v is not None}
    if name == "vision":
        for key, value in given.items():  # each VISION setting checked on its own
            try:
                get_instrument("VISION", **{key: value})
            except InputError as exc:
                problems[key] = str(exc)
        if any(key in problems for key in given):
            return None
        try:
            return get_instrument("VISION", **given)
        except InputError as exc:
            problems["instrument"] = str(exc)
            return None
    for key in given:
        problems[key] = f"{key} is a VISION setting; it does not apply to {instrument}"
    if name != "sequoia":
        try:  # the SEQUOIA settings do not apply to the other instruments
            return get_instrument(instrument)
        except InputError as exc:
            problems["instrument"] = str(exc)
            return None
    if ei is None:
        problems["ei"] = "SEQUOIA needs an incident energy (meV)"
        return None
    try:
        if not float(ei) > 0:
            problems["ei"] = f"SEQUOIA incident energy must be > 0 meV, got {float(ei):g}"
            return None
    except (TypeError, ValueError):
        problems["ei"] = f"SEQUOIA incident energy must be a number of meV, got {ei!r}"
        return None
    steps = (("ei", {"ei": ei}),
             ("chopper_package", {"ei": ei, "chopper_package": chopper_package}),
             ("chopper_frequency", {"ei": ei, "chopper_package": chopper_package,
                                    "chopper_frequency": chopper_frequency}))
    inst = None
    for key, kwargs in steps:
        if key != "ei" and kwargs.get(key) is None:
            continue
        try:
            inst = get_instrument("SEQUOIA", **kwargs)
        except InputError as exc:
            problems[key] = str(exc)
            return None
    return inst


def _check_umlip(force_constants, model, potential, problems):
    """Method 'uMLIP': a known potential whose package is installed; no FC, no model."""
    from insnet_core.umlip import DEFAULT_POTENTIAL, POTENTIALS, check_settings, _require
    if force_constants not in (None, ""):
        problems["force_constants"] = ("ForceConstantsFile applies to Method 'Physics' only; "
                                       "Method 'uMLIP' computes the force constants")
    if model:
        problems["model"] = "Model applies to Method 'ML' only; leave it empty for 'uMLIP'"
    try:
        name = check_settings(potential=potential or DEFAULT_POTENTIAL).potential
        _require(POTENTIALS[name])
        return name
    except InputError as exc:
        problems["potential"] = str(exc)
        return None


def _check_all(structure_file, method, force_constants, model, instrument, temperature,
               energy_edges, q_edges, display_energy_unit, orders, ei, chopper_package,
               chopper_frequency, final_energy=None, bank_angles=None, resolution_poly=None,
               potential=None, max_atoms=None, map_route=None, vision_route=None):
    """Return (problems dict, PredictionRequest or None)."""
    from insnet_core.defaults import check_orders_setting as check_orders
    from insnet_core.incoherent import check_temperature
    from insnet_core.simulate import Settings
    from insnet_core.spectrum import check_edges
    from insnet_core.structure import DEFAULT_MAX_ATOMS, read_structure
    from insnet_core.units import normalise_energy_unit

    problems = {}
    structure = None
    try:
        structure = read_structure(structure_file, max_atoms=max_atoms or DEFAULT_MAX_ATOMS)
    except InputError as exc:
        problems["structure_file"] = str(exc)
    try:
        method = _normalise_method(method)
    except InputError as exc:
        problems["method"] = str(exc)
        method = None
    fc = None
    model_folder = model_name = None
    if potential not in (None, "") and method in ("ML", "Physics"):
        problems["potential"] = f"Potential applies to Method 'uMLIP' only, not '{method}'"
    if method == "uMLIP":
        potential = _check_umlip(force_constants, model, potential, problems)
    elif method == "ML":
        if force_constants not in (None, ""):
            problems["force_constants"] = ("ForceConstantsFile applies to Method 'Physics' "
                                           "only; leave it empty for Method 'ML'")
        model_folder, model_name = _check_ml(structure, model, problems)
    elif method == "Physics":
        if model:
            problems["model"] = ("Model applies to Method 'ML' only; leave it empty for "
                                 "Method 'Physics'")
        if force_constants in (None, ""):
            problems["force_constants"] = (
                "Method 'Physics' needs force constants: a phonopy.yaml, or a phonondb "
                "folder (given as the folder or as its phonopy.conf / FORCE_SETS file)")
        else:
            try:
                fc = resolve_force_constants(force_constants)
                if structure is not None:
                    check_consistency(structure, fc)
            except InputError as exc:
                problems["force_constants"] = str(exc)
    inst = _instrument(instrument, ei, chopper_package, chopper_frequency, problems,
                       dict(final_energy=final_energy, bank_angles=bank_angles,
                            resolution_poly=resolution_poly))
    try:
        temperature = check_temperature(temperature)
    except InputError as exc:
        problems["temperature"] = str(exc)
    try:
        orders = check_orders(orders)
    except InputError as exc:
        problems["orders"] = str(exc)
    settings = None
    if inst is not None:
        e_edges = inst.default_energy_edges() if energy_edges is None else energy_edges
        try:
            e_edges = check_edges(e_edges, "energy bin edges")
            inst.validate(e_edges, None)
        except InputError as exc:
            problems["energy_binning"] = str(exc)
        else:
            try:
                if q_edges is not None and not inst.is_map:
                    raise InputError(f"{inst.name} gives 1D spectra along fixed trajectories; "
                                     "|Q| bins apply to SEQUOIA and Ideal2D only")
                settings = Settings.check(
                    inst, temperature if "temperature" not in problems else DEFAULT_TEMPERATURE_K,
                    orders if "orders" not in problems else DEFAULT_ORDERS, e_edges, q_edges)
            except InputError as exc:
                problems["q_binning"] = str(exc)
    unit = display_energy_unit
    if unit is None and inst is not None:
        unit = inst.display_energy_unit
    try:
        unit = normalise_energy_unit(unit or "meV")
        if unit not in ("meV", "cm-1"):
            raise InputError("display energy unit must be meV or cm-1")
    except InputError as exc:
        problems["display_energy_unit"] = str(exc)
    route, route_folder = _check_map_route(map_route, method, inst, model_name, problems)
    vision_route = _check_vision_route(vision_route, method, inst, model_folder, problems)
    if problems:
        return problems, None
    return {}, PredictionRequest(structure=structure, method=method, force_constants=fc,
                                 model=str(model_folder) if model_folder else None,
                                 settings=settings, display_energy_unit=unit,
                                 potential=potential if method == "uMLIP" else None,
                                 max_atoms=max_atoms, map_route=route,
                                 map_route_model=route_folder, vision_route=vision_route)


def find_problems(structure_file, method=DEFAULT_METHOD, force_constants=None, model=None,
                  instrument="VISION", temperature=DEFAULT_TEMPERATURE_K, energy_edges=None,
                  q_edges=None, display_energy_unit=None, orders=DEFAULT_ORDERS, ei=None,
                  chopper_package=None, chopper_frequency=None, final_energy=None,
                  bank_angles=None, resolution_poly=None, potential=None, map_route=None,
                  vision_route=None):
    """Every problem with a prediction request, computing nothing expensive.

    Parameters are those of :func:`predict`.

    Returns
    -------
    dict
        ``{input: message}`` with inputs among ``structure_file``, ``method``,
        ``model``, ``force_constants``, ``instrument``, ``ei``,
        ``chopper_package``, ``chopper_frequency``, ``final_energy``,
        ``bank_angles``, ``resolution_poly``, ``temperature``, ``orders``,
        ``energy_binning``, ``q_binning``, ``display_energy_unit``, ``map_route``,
        ``vision_route``; empty when the request is valid.
    """
    problems, _ = _check_all(structure_file, method, force_constants, model, instrument,
                             temperature, energy_edges, q_edges, display_energy_unit, orders,
                             ei, chopper_package, chopper_frequency, final_energy, bank_angles,
                             resolution_poly, potential, map_route=map_route,
                             vision_route=vision_route)
    return problems


def plan(structure_file, method=DEFAULT_METHOD, force_constants=None, model=None,
         instrument="VISION", temperature=DEFAULT_TEMPERATURE_K, energy_edges=None,
         q_edges=None, display_energy_unit=None, orders=DEFAULT_ORDERS, ei=None,
         chopper_package=None, chopper_frequency=None, final_energy=None, bank_angles=None,
         resolution_poly=None, potential=None, max_atoms=None, map_route=None,
         vision_route=None):
    """Check a request and return a :class:`PredictionRequest`; InputError lists all problems."""
    problems, request = _check_all(structure_file, method, force_constants, model, instrument,
                                   temperature, energy_edges, q_edges, display_energy_unit,
                                   orders, ei, chopper_package, chopper_frequency, final_energy,
                                   bank_angles, resolution_poly, potential, max_atoms, map_route,
                                   vision_route)
    if problems:
        raise InputError("; ".join(f"{k}: {v}" for k, v in problems.items()))
    return request


# ----------------------------------------------------------------------------
# running
# ----------------------------------------------------------------------------
def rebin_result(result, energy_edges=None, q_edges=None):
    """A copy of ``result`` with every spectrum rebinned (flux conserving) onto new edges.

    Parameters
    ----------
    result : SimulationResult
    energy_edges : array_like, optional
        New energy edges in meV; unchanged when None.
    q_edges : array_like, optional
        New |Q| edges in 1/angstrom (maps only); unchanged when None.
    """
    from insnet_core.simulate import SimulationResult

    def move(spec):
        return spec.rebin(energy_edges=energy_edges, q_edges=q_edges if spec.is_map else None)

    return SimulationResult(total=move(result.total),
                            by_element={k: move(v) for k, v in result.by_element.items()},
                            by_order={k: move(v) for k, v in result.by_order.items()},
                            stability=dict(result.stability))


def _annotate(result, extra, display_energy_unit):
    def fix(spec):
        spec.metadata.update(extra)
        spec.display_energy_unit = display_energy_unit
        return spec
    fix(result.total)
    for part in list(result.by_element.values()) + list(result.by_order.values()):
        fix(part)
    return result


def run_request(request, progress=None, raw_entry=None):
    """Compute a checked :class:`PredictionRequest`; returns a SimulationResult.

    ``raw_entry`` (Method 'ML'): the network's outputs for this structure when they were
    computed already, in a batch (:meth:`~insnet_core.nn.predictor.Predictor.raw`).
    """
    from insnet_core.simulate import simulate
    report = progress or (lambda fraction, message: None)
    if request.method == "ML":
        return _run_ml(request, report, raw_entry)
    s = request.settings
    engine = dict(instrument=s.instrument, temperature=s.temperature, orders=s.orders,
                  energy_edges=s.energy_edges, q_edges=s.q_edges,
                  include_elastic=s.include_elastic)
    route, source = None, request.force_constants
    if request.method == "uMLIP":  # force constants first (0-80 %), then the engine
        from insnet_core.umlip import RouteSettings, simulate_structure
        result, route = simulate_structure(
            request.structure, RouteSettings(potential=request.potential), progress=report,
            **engine)
        source = route.params_file
    else:
        result = simulate(source, progress=report, **engine)
    # The engine integrates over the requested bins; this only guarantees that the
    # output edges are the requested arrays, value for value.
    if not (np.array_equal(result.total.energy_edges, s.energy_edges)
            and (s.q_edges is None or np.array_equal(result.total.q_edges, s.q_edges))):
        result = rebin_result(result, s.energy_edges, s.q_edges)
    extra = {"prediction_method": "physics", "model": "physics",
             "model_version": f"insnet {__version__} physics engine",
             "structure_file": str(request.structure.source),
             "structure_formula": request.structure.formula,
             "structure_hash": request.structure.hash(),
             "force_constants": str(source),
             "temperature_K": float(s.temperature)}
    if route is not None:
        extra.update(route.metadata())  # (method uMLIP, potential, relaxation...) over physics
        extra.update(model=f"uMLIP {request.potential}", model_version=(
            f"insnet {__version__} physics engine on {request.potential} "
            f"{route.report['potential_version']} force constants"))
        if route.report["warnings"]:
            extra["warnings"] = " | ".join(route.report["warnings"])
    ei = getattr(s.instrument, "ei", None)
    if ei is not None:
        extra["Ei"] = float(ei)  # Mantid's usual sample-log name for the incident energy
    return _annotate(result, extra, request.display_energy_unit)


def _run_ml(request, report, raw=None):
    """Method 'ML': the model's per-element DOS through the engine (errors: ensemble σ)."""
    s = request.settings
    report(0.05, "loading model")
    predictor = load_predictor(request.model)
    report(0.2, "network")
    use_ae = request.map_route == "ae"
    if raw is None or (use_ae and raw.get("features") is None):
        raw = predictor.raw([request.structure], max_atoms=request.model_max_atoms(),
                            features=use_ae)[0]
    report(0.4, "engine")
    if use_ae:
        result = load_map_route(request.map_route_model).simulate(request.structure, s,
                                                                  predictor, raw)
    else:
        result = predictor.simulate(request.structure, s, raw, vision_route=request.vision_route)
    if not (np.array_equal(result.total.energy_edges, s.energy_edges)
            and (s.q_edges is None or np.array_equal(result.total.q_edges, s.q_edges))):
        result = rebin_result(result, s.energy_edges, s.q_edges)
    extra = {"prediction_method": "ML", "model": predictor.name,
             "model_version": f"insnet {__version__} model {predictor.name} "
                              f"(card format {predictor.card.get('format_version')})",
             "structure_file": str(request.structure.source),
             "structure_formula": request.structure.formula,
             "structure_hash": request.structure.hash(),
             "temperature_K": float(s.temperature),
             "stability": "not known (ML prediction: no phonon calculation)"}
    if request.map_route:
        extra["map_route"] = request.map_route
    ei = getattr(s.instrument, "ei", None)
    if ei is not None:
        extra["Ei"] = float(ei)
    for w in raw["warnings"]:
        logging.getLogger("insnet").warning(w)
    report(1.0, "done")
    return _annotate(result, extra, request.display_energy_unit)


def predict(structure_file, method=DEFAULT_METHOD, force_constants=None, model=None,
            instrument="VISION", temperature=DEFAULT_TEMPERATURE_K, energy_edges=None,
            q_edges=None, display_energy_unit=None, orders=DEFAULT_ORDERS, ei=None,
            chopper_package=None, chopper_frequency=None, final_energy=None,
            bank_angles=None, resolution_poly=None, vision_route=None, progress=None,
            potential=None, max_atoms=None, map_route=None):
    """Predict the INS spectrum of the crystal in ``structure_file``.

    Parameters
    ----------
    structure_file : str or Path
        CIF or POSCAR file (read and validated by
        :func:`insnet_core.structure.read_structure`).
    method : {'Physics', 'ML', 'uMLIP'}
        'Physics' needs ``force_constants``; 'ML' uses a trained model;
        'uMLIP' computes force constants with ``potential``.
    force_constants : str or Path, optional
        See :func:`resolve_force_constants`. Its reduced formula must match
        the structure's.
    model : str, optional
        ML model name (Method 'ML' only).
    instrument : {'VISION', 'SEQUOIA', 'Ideal2D'}
    temperature : float
        Sample temperature, K (default 5, :mod:`insnet_core.defaults`).
    energy_edges, q_edges : array_like, optional
        Output bin edges in meV and 1/angstrom (maps only); the instrument's
        default bins otherwise. The output has exactly these edges.
    display_energy_unit : {'meV', 'cm-1'}, optional
        How the energy axis is shown (default: the instrument's).
    orders : int or 'auto'
        Highest phonon order, or 'auto' (default; see
        :func:`insnet_core.simulate.choose_orders`).
    ei, chopper_package, chopper_frequency :
        SEQUOIA settings (meV, name, Hz).
    final_energy, bank_angles, resolution_poly :
        VISION settings (meV; degrees; FWHM = a + b E + c E^2 coefficients in
        cm^-1); None for the instrument's defaults.
    vision_route : {'partials', 'head', 'neighbours'}, optional
        Method 'ML', VISION only: the engine on the predicted partial DOS, the
        network's VISION head, or the head blended with the nearest training
        crystals' spectra (default: the model card's choice).
    progress : callable, optional
        ``progress(fraction, message)``.
    potential : str, optional
        Method 'uMLIP': a name of :data:`insnet_core.umlip.POTENTIALS` (default
        :data:`insnet_core.umlip.DEFAULT_POTENTIAL`).
    max_atoms : int, optional
        Largest cell accepted (default: 500 atoms for the structure reader, the model's
        limit of 1000 for Method 'ML'); large amorphous cells need it raised.
    map_route : {'partials', 'ae'}, optional
        Method 'ML', maps only: the engine on the predicted partial DOS, or the
        autoencoder route (latent heads + ONNX decoder, :mod:`insnet_core.nn.map_route`;
        total only). Default: :func:`default_map_route`.

    Returns
    -------
    SimulationResult
        Every spectrum's metadata holds the method, model ('physics') and
        version, formula, structure hash, temperature, instrument settings
        and the ``unstable`` flag.

    Raises
    ------
    InputError
        Listing every problem found by :func:`find_problems`.
    """
    request = plan(structure_file, method, force_constants, model, instrument, temperature,
                   energy_edges, q_edges, display_energy_unit, orders, ei, chopper_package,
                   chopper_frequency, final_energy, bank_angles, resolution_poly, potential,
                   max_atoms, map_route, vision_route)
    return run_request(request, progress=progress)
