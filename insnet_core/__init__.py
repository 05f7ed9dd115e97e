"""insnet_core: the open INS physics engine and prediction library behind insnet.

Internal units everywhere: energy in meV, momentum transfer in 1/angstrom,
temperature in K, mass in amu, lengths in angstrom. Conversions happen only
at the edges (file readers/writers, CLI options).

This package never imports Mantid, torch or a GPU runtime at import time.
"""

__version__ = "0.1.0"


class InsnetError(Exception):
    """Base class for every error insnet reports to a user.

    The message always names the offending thing (file, line, site, element,
    property) so it can be shown as-is without a traceback.
    """


class InputError(InsnetError, ValueError):
    """A user-supplied input (file, setting) is invalid."""


__all__ = ["__version__", "InsnetError", "InputError"]
