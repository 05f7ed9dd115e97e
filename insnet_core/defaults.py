"""Default settings shared by the CLI, the Python API and the Mantid algorithms.

One place, so ``insnet simulate``, :func:`insnet_core.simulate.simulate`,
:func:`insnet_core.predict.predict` and ``PredictINSFromCIF`` give the same
spectrum for the same crystal when nothing is set.
"""
from __future__ import annotations

from insnet_core import InputError

__all__ = ["DEFAULT_TEMPERATURE_K", "DEFAULT_ORDERS", "AUTO_ORDERS", "AUTO_ORDER_THRESHOLD",
           "MAX_ORDER", "VISION_ROUTES", "check_orders_setting"]

#: Sample temperature, K: the base temperature INS spectra are measured at (and that
#: users compare with); for phonons it differs negligibly from 0 K.
DEFAULT_TEMPERATURE_K = 5.0

#: The highest phonon order is chosen from the spectrum (see AUTO_ORDER_THRESHOLD).
AUTO_ORDERS = "auto"
DEFAULT_ORDERS = AUTO_ORDERS

#: Method ML's VISION routes: the engine on the predicted per-element DOS, the network's
#: VISION head, or the head blended with the nearest database crystals' spectra
#: (insnet_core.nn.predictor); a model card's ``default_vision_route`` picks one.
VISION_ROUTES = ("partials", "head", "neighbours")

#: Highest order computed, also the ceiling of the automatic choice.
MAX_ORDER = 10

#: Automatic orders keep 1..n, n the first order whose successor n + 1 carries less
#: than this fraction of the summed intensity (orders 1..MAX_ORDER) in the output window.
AUTO_ORDER_THRESHOLD = 1e-3


def check_orders_setting(orders):
    """The phonon-order setting as ``'auto'`` or an int 1..MAX_ORDER.

    Parameters
    ----------
    orders : int or str
        An integer (or its text, e.g. from a command line) or ``'auto'``
        (any letter case).

    Raises
    ------
    InputError
        Anything else; the message names the setting.
    """
    if isinstance(orders, str):
        text = orders.strip().lower()
        if text == AUTO_ORDERS:
            return AUTO_ORDERS
        try:
            orders = int(text)
        except ValueError:
            raise InputError(f"phonon orders must be 'auto' or an integer 1..{MAX_ORDER}, "
                             f"got {orders!r}") from None
    if isinstance(orders, bool):
        raise InputError(f"phonon orders must be 'auto' or an integer 1..{MAX_ORDER}, "
                         f"got {orders!r}")
    try:
        n = int(orders)
        ok = n == orders and 1 <= n <= MAX_ORDER
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise InputError(f"phonon orders must be 'auto' or an integer 1..{MAX_ORDER}, "
                         f"got {orders!r}")
    return n
