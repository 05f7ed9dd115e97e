"""Stand-in for ``mantid.kernel``: Direction, properties, validators, logger."""
from __future__ import annotations

import numbers

from mantid._strict import Strict, not_modelled

__all__ = ["Direction", "Property", "StringListValidator", "FloatBoundedValidator",
           "IntBoundedValidator", "FloatTimeSeriesProperty", "logger"]


class Direction:
    """Property directions (values as in Mantid)."""

    Input = 0
    Output = 1
    InOut = 2
    # 'None' is a keyword in Python; Mantid exposes it as Direction.None_ in places.


class IValidator(Strict):
    """A validator: ``isValid(value)`` returns '' when valid, else the reason."""

    def isValid(self, value):
        raise NotImplementedError


class StringListValidator(IValidator):
    """Value must be one of ``allowed`` (exact, case-sensitive, as in Mantid)."""

    def __init__(self, allowed=None):
        self._allowed = [str(a) for a in (allowed or [])]

    def allowedValues(self):
        return list(self._allowed)

    def isValid(self, value):
        if str(value) in self._allowed:
            return ""
        return (f'The value "{value}" is not in the list of allowed values')


class _BoundedValidator(IValidator):
    _kind = float

    def __init__(self, lower=None, upper=None, exclusive=False):
        self._lower = lower
        self._upper = upper
        self._exclusive = bool(exclusive)

    def hasLower(self):
        return self._lower is not None

    def hasUpper(self):
        return self._upper is not None

    def lower(self):
        return self._lower

    def upper(self):
        return self._upper

    def isValid(self, value):
        if self._lower is not None:
            if value < self._lower or (self._exclusive and value == self._lower):
                return f"Selected value {value} is < the lower bound of {self._lower}"
        if self._upper is not None:
            if value > self._upper or (self._exclusive and value == self._upper):
                return f"Selected value {value} is > the upper bound of {self._upper}"
        return ""


class FloatBoundedValidator(_BoundedValidator):
    """Lower and/or upper bound on a float property."""


class IntBoundedValidator(_BoundedValidator):
    """Lower and/or upper bound on an int property."""

    _kind = int


class Property(Strict):
    """A named, typed algorithm property (the common part of Mantid's PropertyWithValue)."""

    def __init__(self, name, default, validator=None, direction=Direction.Input, doc=""):
        self.name = str(name)
        self.direction = direction
        self.documentation = doc
        self._validator = validator
        self._type = type(default) if default is not None else str
        if isinstance(default, bool):
            self._type = bool
        self._default = default
        self._value = default
        self.isDefault = True

    # -- conversion -------------------------------------------------------
    def _wrong_type(self, value, expected):
        return TypeError(f"Could not set property {self.name}: expected {expected}, got "
                         f"{type(value).__name__}")

    def _convert(self, value):
        """Mantid's rules: a str is parsed (failure: ValueError); any other value must
        already be of the property's type (otherwise TypeError)."""
        if self._type is bool:
            if isinstance(value, str):
                low = value.strip().lower()
                if low in ("1", "true"):
                    return True
                if low in ("0", "false"):
                    return False
                raise ValueError(f'Could not set property {self.name}. Can not convert '
                                 f'"{value}" to bool')
            if not isinstance(value, (bool, numbers.Integral)):
                raise self._wrong_type(value, "a bool")
            return bool(value)
        if self._type is float:
            if isinstance(value, str):
                try:
                    return float(value)
                except ValueError:
                    raise ValueError(f'Could not set property {self.name}. Can not convert '
                                     f'"{value}" to double') from None
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise self._wrong_type(value, "a float")
            return float(value)
        if self._type is int:
            if isinstance(value, str):
                try:
                    return int(value)
                except ValueError:
                    raise ValueError(f'Could not set property {self.name}. Can not convert '
                                     f'"{value}" to int') from None
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise self._wrong_type(value, "an int")
            return int(value)
        if self._type is str:
            if not isinstance(value, str):
                raise self._wrong_type(value, "a string")
            return value
        raise NotImplementedError(f"mantid stand-in: properties of type {self._type.__name__} "
                                  "are not modelled")

    def setValue(self, value):
        """Convert and validate ``value``: TypeError for a value of the wrong type,
        ValueError (Mantid's wording) when a string does not parse or the validator refuses."""
        converted = self._convert(value)
        if self._validator is not None:
            problem = self._validator.isValid(converted)
            if problem:
                raise ValueError(problem)
        self._value = converted
        self.isDefault = False

    def isValid(self):
        """'' when the current value is acceptable, else the reason."""
        if self._validator is None:
            return ""
        return self._validator.isValid(self._value)

    @property
    def value(self):
        return self._value

    @property
    def valueAsStr(self):
        v = self._value
        return "" if v is None else str(v)

    @property
    def allowedValues(self):
        if isinstance(self._validator, StringListValidator):
            return self._validator.allowedValues()
        return []


class FloatTimeSeriesProperty(Strict):
    """A time-series log of floats (as made by live data and most instrument logs).

    ``addValue(time, value)`` appends one entry (time: an ISO-8601 string);
    ``value`` is the array of values (a numpy array, as in Mantid: ``float()`` of
    it fails for more than one entry); ``size()`` the number of entries.
    """

    def __init__(self, name):
        self.name = str(name)
        self.units = ""
        self._times = []
        self._values = []

    def addValue(self, time, value):
        if not isinstance(time, str):
            raise NotImplementedError("mantid stand-in: FloatTimeSeriesProperty.addValue takes "
                                      "the time as an ISO-8601 string only")
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"addValue: expected a float value, got {type(value).__name__}")
        self._times.append(time)
        self._values.append(float(value))

    def size(self):
        return len(self._values)

    @property
    def value(self):
        import numpy as np
        return np.array(self._values, dtype=float)

    def _mean(self):
        if not self._values:
            raise ValueError(f"time series '{self.name}' has no entries")
        return sum(self._values) / len(self._values)


class _Logger(Strict):
    """Stand-in for ``mantid.kernel.logger``: messages are kept in ``records``."""

    def __init__(self):
        self.records = []

    def _log(self, level, message):
        self.records.append((level, str(message)))

    def debug(self, message):
        self._log("debug", message)

    def information(self, message):
        self._log("information", message)

    def notice(self, message):
        self._log("notice", message)

    def warning(self, message):
        self._log("warning", message)

    def error(self, message):
        self._log("error", message)


logger = _Logger()


def __getattr__(name):
    not_modelled("mantid.kernel", name)
