"""Neutron cross sections and masses of the elements, from :mod:`periodictable`.

Nothing here is hand-typed: values are natural-abundance bound-atom cross
sections (barn) and standard atomic masses (amu) as maintained by the
periodictable package (Sears, Neutron News 3 (1992) for cross sections).
"""
from __future__ import annotations

from functools import lru_cache

from insnet_core import InputError

__all__ = ["element_data", "total_cross_section", "atomic_mass"]


@lru_cache(maxsize=None)
def element_data(symbol):
    """Return ``(mass_amu, total_xs_barn, coherent_xs_barn, incoherent_xs_barn)``.

    Raises
    ------
    InputError
        When the symbol is not a known element or has no tabulated neutron
        cross section (e.g. Po, At, Rn, Fr, Ra, Ac).
    """
    import periodictable

    try:
        el = periodictable.elements.symbol(str(symbol))
    except ValueError:
        raise InputError(f"unknown element {symbol!r}") from None
    if el.number == 0:
        raise InputError(f"element {symbol!r} is not a real element")
    n = el.neutron
    if n is None or n.total is None:
        raise InputError(f"element {symbol}: no tabulated neutron scattering cross section, "
                         "cannot compute its INS intensity")
    return float(el.mass), float(n.total), float(n.coherent or 0.0), float(n.incoherent or 0.0)


def total_cross_section(symbol):
    """Total bound scattering cross section (coherent + incoherent), barn."""
    return element_data(symbol)[1]


def atomic_mass(symbol):
    """Standard atomic mass, amu."""
    return element_data(symbol)[0]
