"""Stand-in for ``mantid.api``: algorithms, file/workspace properties, workspaces, ADS."""
from __future__ import annotations

import copy
import os

import numpy as np

from mantid._strict import Strict, not_modelled
from mantid.kernel import Direction, FloatTimeSeriesProperty, Property, logger

__all__ = ["PythonAlgorithm", "AlgorithmFactory", "AnalysisDataService", "mtd",
           "FileProperty", "FileAction", "WorkspaceProperty", "MatrixWorkspaceProperty",
           "PropertyMode", "Progress", "Workspace", "MatrixWorkspace", "Workspace2D",
           "WorkspaceGroup", "WorkspaceFactory", "NumericAxis", "BinEdgeAxis", "TextAxis",
           "SpectraAxis"]


# =============================================================================
# units and axes
# =============================================================================
_UNITS = {
    # unitID: (caption, label)
    "DeltaE": ("Energy transfer", "meV"),
    "DeltaE_inWavenumber": ("Energy transfer", "cm^-1"),
    "DeltaE_inFrequency": ("Energy transfer", "GHz"),
    "MomentumTransfer": ("q", "Angstrom^-1"),
    "Energy": ("Energy", "meV"),
    "Energy_inWavenumber": ("Energy", "cm^-1"),
    "TOF": ("Time-of-flight", "microsecond"),
    "Wavelength": ("Wavelength", "Angstrom"),
    "dSpacing": ("d-Spacing", "Angstrom"),
    "Empty": ("", ""),
    "Label": ("", ""),
}


class UnitLabel(Strict):
    def __init__(self, text):
        self._text = text

    def ascii(self):
        return self._text

    def __str__(self):
        return self._text


class Unit(Strict):
    """A Mantid unit: ``unitID()``, ``caption()``, ``label()`` (and ``setLabel`` for 'Label')."""

    def __init__(self, unit_id):
        if unit_id not in _UNITS:
            raise RuntimeError(f"mantid stand-in: unit '{unit_id}' is not modelled; known: "
                               + ", ".join(_UNITS))
        self._id = unit_id
        self._caption, self._label = _UNITS[unit_id]

    def unitID(self):
        return self._id

    def caption(self):
        return self._caption

    def label(self):
        return UnitLabel(self._label)

    def symbol(self):
        return UnitLabel(self._label)

    def setLabel(self, caption, label=""):
        if self._id != "Label":
            raise RuntimeError("setLabel applies to the 'Label' unit only")
        self._caption, self._label = str(caption), str(label)


class Axis(Strict):
    """Common part of Mantid's axes."""

    def __init__(self, length):
        self._length = int(length)
        self._unit = Unit("Empty")

    def length(self):
        return self._length

    def getUnit(self):
        return self._unit

    def setUnit(self, unit_name):
        self._unit = Unit(str(unit_name))
        return self._unit

    def isNumeric(self):
        return False

    def isSpectra(self):
        return False

    def isText(self):
        return False

    def _check(self, index):
        if not 0 <= int(index) < self._length:
            raise IndexError(f"axis index {index} out of range 0..{self._length - 1}")
        return int(index)


class NumericAxis(Axis):
    """Axis of numbers, one per spectrum (point values)."""

    def __init__(self, length):
        super().__init__(length)
        self._values = np.zeros(self._length)

    @classmethod
    def create(cls, length):
        return cls(length)

    def isNumeric(self):
        return True

    def setValue(self, index, value):
        self._values[self._check(index)] = float(value)

    def getValue(self, index):
        return float(self._values[self._check(index)])

    def extractValues(self):
        return self._values.copy()

    def label(self, index):
        return f"{self.getValue(index):g}"


class BinEdgeAxis(NumericAxis):
    """Numeric axis holding bin edges: one more value than spectra."""


class TextAxis(Axis):
    """One text label per spectrum."""

    def __init__(self, length):
        super().__init__(length)
        self._labels = [""] * self._length

    @classmethod
    def create(cls, length):
        return cls(length)

    def isText(self):
        return True

    def setLabel(self, index, label):
        self._labels[self._check(index)] = str(label)

    def label(self, index):
        return self._labels[self._check(index)]

    def extractValues(self):
        return list(self._labels)


class SpectraAxis(Axis):
    """Default vertical axis: spectrum numbers 1..n."""

    def __init__(self, length):
        super().__init__(length)
        self._unit = Unit("Label")
        self._unit.setLabel("Spectrum", "")

    def isSpectra(self):
        return True

    def getValue(self, index):
        return float(self._check(index) + 1)

    def label(self, index):
        return f"sp-{self._check(index) + 1}"

    def extractValues(self):
        return np.arange(1, self._length + 1, dtype=float)


class _XAxis(Axis):
    """Axis 0 of a MatrixWorkspace: its values are spectrum 0's X array."""

    def __init__(self, ws):
        super().__init__(0)
        self._ws = ws

    def length(self):
        return self._ws._x.shape[1]

    def isNumeric(self):
        return True

    def getValue(self, index):
        return float(self._ws._x[0, index])

    def extractValues(self):
        return self._ws._x[0].copy()


# =============================================================================
# workspaces
# =============================================================================
class _LogProperty(Strict):
    def __init__(self, name, value, units):
        self.name = name
        self.value = value
        self.units = units

    @property
    def type(self):
        if isinstance(self.value, str):
            return "string"
        if isinstance(self.value, (bool, int, float)):
            return "number"
        return "array"


#: The exact Python types Run.addProperty turns into a log (Mantid's PropertyWithValueFactory).
_LOG_TYPES = (float, int, bool, str, list)


class Run(Strict):
    """Sample logs of a workspace (names case-insensitive, as in Mantid's PropertyManager)."""

    def __init__(self):
        self._props = {}

    @staticmethod
    def _key(name):
        if not isinstance(name, str):
            raise TypeError(f"log name must be a str, got {type(name).__name__}")
        return name.lower()

    def addProperty(self, name, value, *args):
        """addProperty(name, value, replace) or addProperty(name, value, units, replace)."""
        if len(args) == 1:
            units, replace = "", args[0]
        elif len(args) == 2:
            units, replace = args
        else:
            raise TypeError("addProperty(name, value, replace) or "
                            "addProperty(name, value, units, replace)")
        if not isinstance(replace, bool):
            raise TypeError("addProperty: 'replace' must be a bool")
        if isinstance(value, FloatTimeSeriesProperty):
            value = copy.deepcopy(value)  # Mantid stores a clone
        elif type(value) not in _LOG_TYPES:
            raise TypeError(f"addProperty: log {name!r}: a value of type "
                            f"{type(value).__name__} is not accepted (use a Python float, int, "
                            "bool, str or list; convert numpy values with float()/int()/"
                            ".tolist())")
        elif type(value) is list:
            if not value or not all(type(v) in (float, int) for v in value):
                raise NotImplementedError(f"mantid stand-in: log {name!r}: only non-empty lists "
                                          "of Python numbers are modelled")
            value = np.asarray(value, dtype=float)
        key = self._key(name)
        if key in self._props and not replace:
            raise ValueError(f"Property with name '{name}' already exists")
        if isinstance(value, FloatTimeSeriesProperty):
            value.name = name
            self._props[key] = value
        else:
            self._props[key] = _LogProperty(name, value, str(units))

    def hasProperty(self, name):
        return self._key(name) in self._props

    def getProperty(self, name):
        key = self._key(name)
        if key not in self._props:
            raise RuntimeError(f"Unknown property search object {name}")
        return self._props[key]

    def getLogData(self, name):
        return self.getProperty(name)

    def getPropertyAsSingleValue(self, name, *args, **kwargs):
        """The log as one float: a number as is, a time series as the mean of its values,
        a string parsed as a number; anything else raises ValueError (Mantid's
        std::invalid_argument). Only the default statistic (Mean) is modelled."""
        if args or kwargs:
            raise NotImplementedError("mantid stand-in: getPropertyAsSingleValue is modelled "
                                      "with the default statistic (Mean) only")
        prop = self.getProperty(name)
        if isinstance(prop, FloatTimeSeriesProperty):
            return prop._mean()
        value = prop.value
        if isinstance(value, (bool, int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise ValueError(f'Run::getPropertyAsSingleValue - Property "{name}" cannot '
                                 "be converted to a numeric value.") from None
        raise ValueError(f'Run::getPropertyAsSingleValue - Property "{name}" is not a single '
                         "numeric value or numeric time series.")

    def keys(self):
        return [p.name for p in self._props.values()]

    def getProperties(self):
        return list(self._props.values())


class Workspace(Strict):
    def __init__(self):
        self._name = ""
        self._title = ""

    def name(self):
        return self._name

    def getName(self):
        return self._name

    def getTitle(self):
        return self._title

    def setTitle(self, title):
        self._title = str(title)


class MatrixWorkspace(Workspace):
    """Histogram or point data: X, Y, E per spectrum, two axes, logs."""

    def __init__(self, nvectors, xlength, ylength):
        super().__init__()
        nvectors, xlength, ylength = int(nvectors), int(xlength), int(ylength)
        if nvectors < 1 or ylength < 1 or xlength not in (ylength, ylength + 1):
            raise ValueError(f"invalid workspace size NVectors={nvectors}, XLength={xlength}, "
                             f"YLength={ylength}")
        self._x = np.zeros((nvectors, xlength))
        self._y = np.zeros((nvectors, ylength))
        self._e = np.zeros((nvectors, ylength))
        self._axes = [_XAxis(self), SpectraAxis(nvectors)]
        self._distribution = False
        self._y_unit_label = ""
        self._y_unit = ""
        self._run = Run()

    def id(self):
        return "Workspace2D"

    # -- sizes
    def getNumberHistograms(self):
        return self._y.shape[0]

    def blocksize(self):
        return self._y.shape[1]

    def isHistogramData(self):
        return self._x.shape[1] == self._y.shape[1] + 1

    # -- data
    def _index(self, i):
        if not 0 <= int(i) < self._y.shape[0]:
            raise IndexError(f"workspace index {i} out of range 0..{self._y.shape[0] - 1}")
        return int(i)

    @staticmethod
    def _readonly(arr):
        view = arr.view()
        view.flags.writeable = False
        return view

    def readX(self, i):
        return self._readonly(self._x[self._index(i)])

    def readY(self, i):
        return self._readonly(self._y[self._index(i)])

    def readE(self, i):
        return self._readonly(self._e[self._index(i)])

    def dataX(self, i):
        return self._x[self._index(i)]

    def dataY(self, i):
        return self._y[self._index(i)]

    def dataE(self, i):
        return self._e[self._index(i)]

    def _set(self, arr, i, values, what):
        values = np.asarray(values, dtype=float)
        if values.shape != arr[0].shape:
            raise ValueError(f"set{what}: expected {arr.shape[1]} values, got {values.shape}")
        arr[self._index(i)] = values

    def setX(self, i, values):
        self._set(self._x, i, values, "X")

    def setY(self, i, values):
        self._set(self._y, i, values, "Y")

    def setE(self, i, values):
        self._set(self._e, i, values, "E")

    def extractX(self):
        return self._x.copy()

    def extractY(self):
        return self._y.copy()

    def extractE(self):
        return self._e.copy()

    # -- axes
    def getAxis(self, index):
        if index not in (0, 1):
            raise IndexError(f"axis index {index} out of range (0 or 1)")
        return self._axes[index]

    def replaceAxis(self, index, axis):
        if index != 1:
            raise NotImplementedError("mantid stand-in: only the vertical axis (1) can be "
                                      "replaced")
        n = self.getNumberHistograms()
        expected = n + 1 if isinstance(axis, BinEdgeAxis) else n
        if axis.length() != expected:
            raise ValueError(f"replaceAxis: axis has {axis.length()} values, the workspace "
                             f"needs {expected}")
        self._axes[1] = axis

    # -- flags and labels
    def setDistribution(self, flag):
        self._distribution = bool(flag)

    def isDistribution(self):
        return self._distribution

    def setYUnitLabel(self, label):
        self._y_unit_label = str(label)

    def YUnitLabel(self):
        return self._y_unit_label

    def setYUnit(self, unit):
        self._y_unit = str(unit)

    def YUnit(self):
        return self._y_unit

    # -- logs
    def getRun(self):
        return self._run

    def mutableRun(self):
        return self._run


class Workspace2D(MatrixWorkspace):
    """The only MatrixWorkspace type modelled."""


class WorkspaceGroup(Workspace):
    """An ordered group of workspaces."""

    def __init__(self):
        super().__init__()
        self._items = []

    def id(self):
        return "WorkspaceGroup"

    def addWorkspace(self, ws):
        if not isinstance(ws, Workspace):
            raise TypeError("addWorkspace needs a Workspace")
        self._items.append(ws)

    def getNumberOfEntries(self):
        return len(self._items)

    def size(self):
        return len(self._items)

    def getItem(self, index):
        return self._items[index]

    def getNames(self):
        return [w.name() for w in self._items]

    def __len__(self):
        return len(self._items)

    def __getitem__(self, index):
        return self._items[index]

    def __iter__(self):
        return iter(list(self._items))


class _WorkspaceFactory(Strict):
    def create(self, className, NVectors, XLength, YLength):
        if className != "Workspace2D":
            raise NotImplementedError(f"mantid stand-in: WorkspaceFactory.create of "
                                      f"{className!r} is not modelled (only 'Workspace2D')")
        return Workspace2D(NVectors, XLength, YLength)


WorkspaceFactory = _WorkspaceFactory()


class _AnalysisDataService(Strict):
    """Named workspaces (the ADS)."""

    def __init__(self):
        self._store = {}

    def _put(self, name, ws):
        name = str(name)
        if not name.strip():
            raise ValueError("Workspace name must not be empty")
        if not isinstance(ws, Workspace):
            raise TypeError(f"cannot store a {type(ws).__name__} in the ADS")
        self._store[name] = ws
        ws._name = name
        if isinstance(ws, WorkspaceGroup):
            for i, member in enumerate(ws._items, start=1):
                member_name = member.name() or f"{name}_{i}"
                if self._store.get(member_name) is not member:
                    self._put(member_name, member)

    def add(self, name, ws):
        if name in self._store:
            raise RuntimeError(f"AnalysisDataService: workspace '{name}' already exists")
        self._put(name, ws)

    def addOrReplace(self, name, ws):
        old = self._store.get(name)
        if old is not None and old is not ws:
            old._name = ""
        self._put(name, ws)

    def retrieve(self, name):
        if name not in self._store:
            raise KeyError(f"'{name}' does not exist.")
        return self._store[name]

    def doesExist(self, name):
        return name in self._store

    def remove(self, name):
        ws = self._store.pop(name, None)
        if ws is not None:
            ws._name = ""

    def getObjectNames(self):
        return sorted(self._store)

    def clear(self):
        for ws in self._store.values():
            ws._name = ""
        self._store.clear()

    def __contains__(self, name):
        return name in self._store

    def __getitem__(self, name):
        return self.retrieve(name)

    def __len__(self):
        return len(self._store)


AnalysisDataService = _AnalysisDataService()
mtd = AnalysisDataService


# =============================================================================
# properties
# =============================================================================
class FileAction:
    Save = 0
    OptionalSave = 1
    Load = 2
    OptionalLoad = 3
    Directory = 4
    OptionalDirectory = 5


class PropertyMode:
    Mandatory = 0
    Optional = 1


class FileProperty(Property):
    """A file name property; Load actions require an existing path (stored absolute)."""

    def __init__(self, name, defaultValue, action=FileAction.Load, extensions=None,
                 direction=Direction.Input):
        super().__init__(name, str(defaultValue), None, direction)
        if action not in (FileAction.Load, FileAction.OptionalLoad):
            raise NotImplementedError("mantid stand-in: only FileAction.Load and OptionalLoad "
                                      "are modelled")
        self.action = action
        if isinstance(extensions, str):
            extensions = [extensions]
        self.extensions = list(extensions or [])

    def setValue(self, value):
        if not isinstance(value, str):
            raise TypeError(f"Could not set property {self.name}: expected a string (a file "
                            f"name), got {type(value).__name__}; pass str(path)")
        if value and not os.path.exists(value):
            raise ValueError(f'File "{value}" not found')
        self._value = os.path.abspath(value) if value else ""
        self.isDefault = False

    def isValid(self):
        if self.action == FileAction.Load and not self._value:
            return "No file specified."
        if self._value and not os.path.exists(self._value):
            return f'File "{self._value}" not found'
        return ""


class WorkspaceProperty(Property):
    """A workspace given by name (input: looked up in the ADS; output: stored there)."""

    _kind = Workspace

    def __init__(self, name, defaultValue, direction=Direction.Input,
                 optional=PropertyMode.Mandatory):
        super().__init__(name, str(defaultValue), None, direction)
        self.optional = optional
        self._workspace_name = str(defaultValue)
        self._value = None

    def setValue(self, value):
        if isinstance(value, Workspace):
            if self.direction == Direction.Output:
                self._value = value
            else:
                self._check_kind(value)
                self._value = value
                self._workspace_name = value.name()
            self.isDefault = False
            return
        if not isinstance(value, str):
            raise TypeError(f"{self.name}: expected a workspace or a workspace name, got "
                             f"{type(value).__name__}")
        self._workspace_name = value
        self.isDefault = False
        if self.direction == Direction.Output or not value:
            if self.direction != Direction.Output:
                self._value = None
            return
        if not AnalysisDataService.doesExist(value):
            raise ValueError(f'Workspace "{value}" does not exist')
        ws = AnalysisDataService.retrieve(value)
        self._check_kind(ws)
        self._value = ws

    def _check_kind(self, ws):
        if not isinstance(ws, self._kind):
            raise ValueError(f'Workspace "{ws.name()}" is not a {self._kind.__name__}')

    def isValid(self):
        if self.optional == PropertyMode.Optional:
            return ""
        if not self._workspace_name:
            return "Enter a name for the Output workspace" if self.direction == Direction.Output \
                else "Enter a name for the Input/InOut workspace"
        if self.direction != Direction.Output and self._value is None:
            return f'Workspace "{self._workspace_name}" does not exist'
        return ""

    @property
    def valueAsStr(self):
        return self._workspace_name


class MatrixWorkspaceProperty(WorkspaceProperty):
    _kind = MatrixWorkspace


# =============================================================================
# algorithms
# =============================================================================
class Progress(Strict):
    """Progress(alg, start, end, nreports); report([message]) or report(i, message)."""

    def __init__(self, alg, start, end, nreports):
        self._alg = alg
        self._start, self._end, self._n = float(start), float(end), int(nreports)
        self._count = 0

    def report(self, *args):
        if len(args) == 2:
            self._count = int(args[0])
            message = str(args[1])
        elif len(args) <= 1:
            self._count += 1
            message = str(args[0]) if args else ""
        else:
            raise TypeError("report([message]) or report(i, message)")
        frac = self._start + (self._end - self._start) * min(self._count, self._n) / max(self._n, 1)
        self._alg._progress_reports.append((frac, message))


class PythonAlgorithm(Strict):
    """Base of Python algorithms: property handling, validation, execution."""

    def __init__(self):
        self._props = {}
        self._order = []
        self._initialized = False
        self._executed = False
        self._progress_reports = []

    # -- identity
    def name(self):
        return type(self).__name__

    def version(self):
        return 1

    def category(self):
        return ""

    def summary(self):
        return ""

    def seeAlso(self):
        return []

    def log(self):
        return logger

    # -- properties
    def declareProperty(self, *args, **kwargs):
        """declareProperty(property, doc='') or
        declareProperty(name, defaultValue, validator=None, doc='', direction=Input)."""
        if args and isinstance(args[0], Property):
            prop = args[0]
            doc = kwargs.pop("doc", args[1] if len(args) > 1 else "")
            if kwargs:
                raise TypeError(f"declareProperty: unexpected arguments {sorted(kwargs)}")
            prop.documentation = doc
        else:
            names = ["name", "defaultValue", "validator", "doc", "direction"]
            params = dict(zip(names, args))
            for key, value in kwargs.items():
                if key not in names:
                    raise TypeError(f"declareProperty: unexpected argument {key!r}")
                if key in params:
                    raise TypeError(f"declareProperty: {key!r} given twice")
                params[key] = value
            if isinstance(params.get("validator"), str) and "doc" not in params:
                params["doc"] = params.pop("validator")  # declareProperty(name, default, doc)
            if isinstance(params.get("validator"), int) and "direction" not in params:
                params["direction"] = params.pop("validator")
            if "name" not in params or "defaultValue" not in params:
                raise TypeError("declareProperty needs name and defaultValue")
            default = params["defaultValue"]
            if isinstance(default, (list, tuple, dict)):
                raise NotImplementedError("mantid stand-in: array/dict properties are not "
                                          "modelled")
            prop = Property(params["name"], default, params.get("validator"),
                            params.get("direction", Direction.Input), params.get("doc", ""))
        key = self._key(prop.name)
        if key in self._props:
            raise RuntimeError(f"Property with given name already exists: {prop.name}")
        self._props[key] = prop
        self._order.append(key)

    @staticmethod
    def _key(name):
        """Property names are case-insensitive (Mantid's PropertyManager::createKey)."""
        if not isinstance(name, str):
            raise TypeError(f"property name must be a str, got {type(name).__name__}")
        return name.lower()

    def existsProperty(self, name):
        return self._key(name) in self._props

    def getProperties(self):
        return [self._props[n] for n in self._order]

    def getProperty(self, name):
        key = self._key(name)
        if key not in self._props:
            raise RuntimeError(f"Unknown property search object {name}")
        return self._props[key]

    def getPropertyValue(self, name):
        return self.getProperty(name).valueAsStr

    def setProperty(self, name, value):
        prop = self.getProperty(name)
        prop.setValue(value)

    def setPropertyValue(self, name, value):
        self.setProperty(name, str(value))

    def validateInputs(self):
        return {}

    # -- execution
    def initialize(self):
        if not self._initialized:
            self.PyInit()
            self._initialized = True

    def isInitialized(self):
        return self._initialized

    def isExecuted(self):
        return self._executed

    def execute(self):
        """Validate properties and inputs, run PyExec, store outputs in the ADS."""
        self.initialize()
        problems = {}
        for key in self._order:
            why = self._props[key].isValid()
            if why:
                problems[self._props[key].name] = why
        if not problems:
            issues = self.validateInputs()
            if not isinstance(issues, dict):
                raise RuntimeError("validateInputs must return a dict")
            problems.update({k: v for k, v in issues.items() if v})
        if problems:
            lines = "\n".join(f" {k}: {v}" for k, v in problems.items())
            logger.error(f"Error in execution of algorithm {self.name()}:\n{lines}")
            raise RuntimeError(f"Some invalid Properties found: \n{lines}")
        try:
            self.PyExec()
        except Exception as exc:
            logger.error(f"Error in execution of algorithm {self.name()}:\n{exc}")
            raise RuntimeError(f"{exc}") from exc
        for key in self._order:
            prop = self._props[key]
            if isinstance(prop, WorkspaceProperty) and prop.direction == Direction.Output:
                if prop._value is None:
                    if prop.optional == PropertyMode.Optional:
                        continue
                    raise RuntimeError(f"{self.name()}: output workspace {prop.name} was not "
                                       "set")
                AnalysisDataService.addOrReplace(prop.valueAsStr, prop._value)
        self._executed = True
        return True

    def PyInit(self):
        raise NotImplementedError("PyInit must be implemented")

    def PyExec(self):
        raise NotImplementedError("PyExec must be implemented")


class _AlgorithmFactory(Strict):
    def __init__(self):
        self._registry = {}

    def subscribe(self, cls):
        instance = cls()
        self._registry[instance.name()] = cls

    def exists(self, name, version=-1):
        return name in self._registry

    def getRegisteredAlgorithms(self, include_hidden=False):
        return {name: [1] for name in self._registry}

    def _get(self, name):
        return self._registry.get(name)


AlgorithmFactory = _AlgorithmFactory()


def __getattr__(name):
    not_modelled("mantid.api", name)
