"""A small stand-in for the parts of Mantid's Python API that insnet uses.

It is put on ``sys.path`` by ``tests/conftest.py`` only when ``import mantid``
fails, so the test suite can exercise the insnet Mantid algorithm and adapter
without a Mantid installation. With a real Mantid, this package is never seen.

Rules it follows:

* Only what insnet uses is modelled, with the names and signatures of Mantid's
  Python API (``mantid.kernel``, ``mantid.api``, ``mantid.simpleapi``).
* Anything not modelled fails loudly (AttributeError / NotImplementedError
  naming the missing piece), so code that passes here cannot silently rely
  on behaviour this stand-in invents.

Mantid behaviour modelled, and the Mantid source it follows (paths in the
mantidproject/mantid repository):

* Property names are case-insensitive, for algorithm properties and sample
  logs alike; the declared spelling is kept as ``name``
  (``Framework/Kernel/src/PropertyManager.cpp``, ``createKey`` lower-cases).
* ``setProperty`` with a ``str`` parses it, and a value that does not parse or
  that the validator refuses raises ``ValueError``; any other value must already
  have the property's type, otherwise ``TypeError``
  (``Framework/PythonInterface/mantid/kernel/src/Exports/IPropertyManager.cpp``
  and the type registry behind it; Mantid's ``std::invalid_argument`` surfaces
  as ``ValueError``).
* ``FileProperty`` takes a ``str`` only; a ``pathlib.Path`` raises ``TypeError``
  (``Framework/API/src/FileProperty.cpp``: ``setValue(const std::string &)``).
* ``Run.addProperty(name, value[, units], replace)`` takes a Property object
  (here only ``FloatTimeSeriesProperty``) or exactly a Python float, int, bool,
  str or list (``Framework/PythonInterface/mantid/api/src/Exports/Run.cpp`` and
  ``.../kernel/src/Registry/PropertyWithValueFactory.cpp``); numpy scalars and
  arrays, None, dicts and tuples raise ``TypeError``.
* ``Run.getPropertyAsSingleValue(name)``: a number as is, a time series as the
  mean of its values, a numeric string parsed, anything else ``ValueError``
  (``Framework/API/src/LogManager.cpp``). ``getProperty(name).value`` of a time
  series is an array.
* How LoadLiveData runs a post-processing script (wrapped in a method body by
  ``RunPythonScript``, ``input``/``output`` passed as locals) is reproduced by
  ``tests/mantid_helpers.run_python_script``
  (``Framework/PythonInterface/mantid/api/src/Algorithms/RunPythonScript.cpp``).

Deliberately stricter than Mantid (so nothing passes here that might not pass
there): a bool is refused for int and float properties; ``np.float64`` (a
``float`` subclass) is refused as a log value; list logs must be non-empty lists
of Python numbers; ``FloatTimeSeriesProperty.addValue`` takes the time as an
ISO-8601 string only; ``getPropertyAsSingleValue`` models only the default
statistic (Mean) and no time filtering.
"""
__version__ = "0.0.0-insnet-standin"
#: Marker telling tests that this is the stand-in, not a real Mantid.
__insnet_standin__ = True

from mantid import kernel, api  # noqa: E402,F401  (real Mantid also imports both)


def __getattr__(name):
    raise AttributeError(
        f"mantid stand-in: 'mantid.{name}' is not modelled (see tests/mantid_standin); "
        "use a real Mantid or extend the stand-in faithfully")
