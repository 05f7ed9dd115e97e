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
"""
__version__ = "0.0.0-insnet-standin"
#: Marker telling tests that this is the stand-in, not a real Mantid.
__insnet_standin__ = True

from mantid import kernel, api  # noqa: E402,F401  (real Mantid also imports both)


def __getattr__(name):
    raise AttributeError(
        f"mantid stand-in: 'mantid.{name}' is not modelled (see tests/mantid_standin); "
        "use a real Mantid or extend the stand-in faithfully")
