"""Instruments insnet simulates: VISION (1D), SEQUOIA and Ideal2D (powder maps).

Use :func:`get_instrument` to build one by name::

    from insnet_core.instruments import get_instrument
    vision = get_instrument("vision")
    sequoia = get_instrument("SEQUOIA", ei=160)

See :mod:`insnet_core.instruments.base` for the interface every instrument
provides to the physics engine.
"""
from __future__ import annotations

from insnet_core import InputError
from insnet_core.instruments.base import Bank, Instrument
from insnet_core.instruments.ideal2d import Ideal2D
from insnet_core.instruments.sequoia import Sequoia
from insnet_core.instruments.vision import Vision

__all__ = ["Bank", "Instrument", "Vision", "Sequoia", "Ideal2D", "INSTRUMENTS",
           "get_instrument", "instrument_names"]

#: Instrument classes by their user-facing name.
INSTRUMENTS = {cls.name: cls for cls in (Vision, Sequoia, Ideal2D)}


def instrument_names():
    """User-facing names of every instrument, e.g. ``['VISION', 'SEQUOIA', 'Ideal2D']``."""
    return list(INSTRUMENTS)


def get_instrument(name, **settings):
    """Build an instrument from its name (case-insensitive) and settings.

    Parameters
    ----------
    name : str
        'VISION', 'SEQUOIA' or 'Ideal2D', in any letter case.
    **settings
        Constructor settings of that instrument: ``final_energy``,
        ``bank_angles``, ``resolution_poly`` for VISION;
        ``ei``, ``chopper_package``, ``chopper_frequency`` for SEQUOIA; none
        for Ideal2D. Settings given as None take their defaults.

    Returns
    -------
    Instrument

    Raises
    ------
    InputError
        Unknown name (the message lists the valid names), a setting the
        instrument does not have, a missing required setting, or an invalid
        value.
    """
    key = str(name).strip().lower() if isinstance(name, str) else None
    lookup = {known.lower(): cls for known, cls in INSTRUMENTS.items()}
    if key not in lookup:
        raise InputError(f"unknown instrument {name!r}; valid instruments are: "
                         + ", ".join(INSTRUMENTS))
    cls = lookup[key]
    unknown = sorted(set(settings) - set(cls.settings))
    if unknown:
        allowed = ", ".join(cls.settings) if cls.settings else "none"
        raise InputError(f"{cls.name} has no setting {', '.join(unknown)}; its settings are: "
                         f"{allowed}")
    if cls is Sequoia and settings.get("ei") is None:
        raise InputError("SEQUOIA needs an incident energy: set ei (meV), e.g. ei=160")
    return cls(**settings)
