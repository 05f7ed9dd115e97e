"""Physical constants and the few unit conversions insnet needs.

Internal units: meV, 1/angstrom, K, amu, angstrom. Every constant is derived
from CODATA values in :mod:`scipy.constants`, never hand-typed.
"""
from scipy import constants as _c

#: 1 cm^-1 expressed in meV (h c / e * 100 / 1e-3).
MEV_PER_CM1 = _c.h * _c.c * 100.0 / _c.e * 1e3
#: 1 meV expressed in cm^-1.
CM1_PER_MEV = 1.0 / MEV_PER_CM1
#: 1 THz expressed in meV.
MEV_PER_THZ = _c.h * 1e12 / _c.e * 1e3
#: Boltzmann constant in meV/K.
KB_MEV_PER_K = _c.k / _c.e * 1e3
#: hbar^2 / (2 * 1 amu) in meV * angstrom^2 (recoil energy of a 1 amu mass at Q = 1/A).
HBAR2_OVER_2AMU = _c.hbar ** 2 / (2.0 * _c.atomic_mass) / _c.e * 1e3 * 1e20
#: hbar^2 / (2 m_neutron) in meV * angstrom^2  (E = 2.0721 k^2).
HBAR2_OVER_2MN = _c.hbar ** 2 / (2.0 * _c.m_n) / _c.e * 1e3 * 1e20


def energy_to_meV(values, unit):
    """Convert energies in ``unit`` ('meV', 'cm-1', 'THz') to meV."""
    unit = normalise_energy_unit(unit)
    factor = {"meV": 1.0, "cm-1": MEV_PER_CM1, "THz": MEV_PER_THZ}[unit]
    return values * factor


def energy_from_meV(values, unit):
    """Convert energies in meV to ``unit`` ('meV', 'cm-1', 'THz')."""
    unit = normalise_energy_unit(unit)
    factor = {"meV": 1.0, "cm-1": MEV_PER_CM1, "THz": MEV_PER_THZ}[unit]
    return values / factor


_ALIASES = {
    "mev": "meV", "deltae": "meV",
    "cm-1": "cm-1", "cm^-1": "cm-1", "1/cm": "cm-1", "wavenumber": "cm-1",
    "deltae_inwavenumber": "cm-1", "cm1": "cm-1",
    "thz": "THz",
}


def normalise_energy_unit(unit):
    """Return the canonical name ('meV', 'cm-1' or 'THz') of an energy unit string."""
    key = str(unit).strip().lower()
    if key not in _ALIASES:
        from insnet_core import InputError
        raise InputError(f"unknown energy unit {unit!r}; use meV, cm-1 or THz")
    return _ALIASES[key]
