"""Common interface of the instruments insnet can simulate.

An :class:`Instrument` tells the physics engine three things:

* where the spectrum lives: default energy-transfer bin edges (meV) and, for
  powder-map instruments, default |Q| bin edges (1/angstrom);
* how it is blurred: the Gaussian FWHM (meV) of the energy resolution at any
  energy transfer;
* what can be measured: for a 1D (indirect-geometry) instrument the fixed
  |Q|(E) trajectory of each detector bank, for a map instrument a mask of the
  kinematically reachable (|Q|, E) region.

Instrument numbers live in JSON files in ``insnet_core/instruments/data/``;
each file has a ``"_sources"`` entry saying where every number comes from.

Internal units: energy in meV, momentum transfer in 1/angstrom, lengths in m
inside the instrument data, angles in degrees at the interface.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import constants as _constants

from insnet_core import InputError
from insnet_core.spectrum import check_edges
from insnet_core.units import HBAR2_OVER_2MN

__all__ = ["Bank", "Instrument", "load_instrument_data", "wavevector",
           "neutron_speed", "momentum_transfer", "DATA_DIR"]

#: Folder holding the instrument JSON files.
DATA_DIR = Path(__file__).resolve().parent / "data"


@dataclass(frozen=True)
class Bank:
    """One detector bank of a 1D (indirect-geometry) instrument.

    Parameters
    ----------
    name : str
        Label used for the spectrum row of this bank (e.g. ``"backward"``).
    angle_deg : float
        Scattering angle 2theta of the bank in degrees.
    """

    name: str
    angle_deg: float


@lru_cache(maxsize=None)
def _read_json(name):
    path = DATA_DIR / f"{name}.json"
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise InputError(f"instrument data file {path} is missing") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"instrument data file {path} is not valid JSON: {exc}") from None


def load_instrument_data(name):
    """Return the numbers of one instrument as a fresh dict.

    Parameters
    ----------
    name : str
        Base name of the JSON file in :data:`DATA_DIR` (``"vision"``, ...).

    Returns
    -------
    dict
        The file's content without its ``"_sources"`` entry (a deep copy, so
        callers may modify it).
    """
    data = copy.deepcopy(_read_json(name))
    data.pop("_sources", None)
    return data


def wavevector(energy):
    """Neutron wavevector k (1/angstrom) for kinetic energy ``energy`` (meV).

    Negative energies give NaN (no such neutron).
    """
    energy = np.asarray(energy, dtype=float)
    with np.errstate(invalid="ignore"):
        return np.sqrt(np.where(energy >= 0.0, energy, np.nan) / HBAR2_OVER_2MN)


def neutron_speed(energy):
    """Neutron speed in m/s for kinetic energy ``energy`` in meV (v = hbar k / m_n)."""
    return wavevector(energy) * 1e10 * (_constants.hbar / _constants.m_n)


def momentum_transfer(initial_energy, final_energy, angle_deg):
    """|Q| (1/angstrom) for a neutron scattered through ``angle_deg`` degrees.

    Uses Q^2 = k_i^2 + k_f^2 - 2 k_i k_f cos(2theta). All arguments broadcast;
    energies in meV. NaN where either energy is negative.
    """
    k_i = wavevector(initial_energy)
    k_f = wavevector(final_energy)
    cos_angle = np.cos(np.deg2rad(angle_deg))
    q_squared = k_i ** 2 + k_f ** 2 - 2.0 * k_i * k_f * cos_angle
    return np.sqrt(np.clip(q_squared, 0.0, None))


def _finite_float(value, setting):
    """``value`` as a finite float, or an InputError naming ``setting``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{setting} must be a number, got {value!r}") from None
    if not np.isfinite(number):
        raise InputError(f"{setting} must be a finite number, got {value!r}")
    return number


class Instrument:
    """Base class of every instrument.

    Subclasses set :attr:`name` and :attr:`is_map` and implement
    :meth:`default_energy_edges`, :meth:`resolution_fwhm` and
    :meth:`describe`; 1D instruments also provide :attr:`banks`,
    :meth:`q_of_energy` and :meth:`bank_resolution_fwhm`; map instruments
    provide :meth:`default_q_edges` and :meth:`measurable`.

    Attributes
    ----------
    name : str
        Instrument name as shown to users ('VISION', 'SEQUOIA', 'Ideal2D').
    is_map : bool
        True when the instrument produces S(|Q|, E) powder maps, False when it
        produces 1D spectra S(E), one per detector bank.
    display_energy_unit : str
        Unit ('meV' or 'cm-1') in which this instrument's spectra are usually
        shown; arrays stay in meV.
    """

    name: str = "instrument"
    is_map: bool = False
    display_energy_unit: str = "meV"
    #: Keyword settings accepted by the constructor (used by get_instrument).
    settings: tuple = ()

    # ------------------------------------------------------------ interface
    def default_energy_edges(self):
        """Default energy-transfer bin edges in meV, shape (n_e+1,), ascending."""
        raise NotImplementedError

    def default_q_edges(self):
        """Default |Q| bin edges in 1/angstrom, shape (n_q+1,); None for 1D instruments."""
        return None

    def resolution_fwhm(self, energy):
        """Gaussian FWHM (meV) of the energy resolution.

        Parameters
        ----------
        energy : array_like
            Energy transfer(s) in meV, any shape.

        Returns
        -------
        ndarray
            FWHM in meV, same shape as ``energy``.
        """
        raise NotImplementedError

    def validate(self, energy_edges, q_edges=None):
        """Raise :class:`~insnet_core.InputError` for bins this instrument cannot measure.

        The base implementation checks that the edges are finite and strictly
        ascending, that |Q| edges are not negative, and that 1D instruments
        are given no |Q| edges.

        Parameters
        ----------
        energy_edges : array_like, shape (n_e+1,)
            Requested energy-transfer bin edges in meV.
        q_edges : array_like, shape (n_q+1,), optional
            Requested |Q| bin edges in 1/angstrom (map instruments only).
        """
        check_edges(energy_edges, f"{self.name} energy bin edges")
        if q_edges is None:
            return
        if not self.is_map:
            raise InputError(
                f"{self.name} records 1D spectra along fixed |Q|(E) trajectories; "
                "|Q| bin edges (q_edges) cannot be set for it")
        q = check_edges(q_edges, f"{self.name} |Q| bin edges")
        if q[0] < 0.0:
            raise InputError(
                f"{self.name} |Q| bin edges: |Q| cannot be negative (first edge q_edges[0] = "
                f"{q[0]:g} 1/A)")

    def describe(self):
        """Settings of this instrument for output metadata / sample logs (JSON-friendly dict)."""
        raise NotImplementedError

    def __repr__(self):
        details = ", ".join(f"{key}={value!r}" for key, value in self.describe().items()
                            if key != "name" and not isinstance(value, (list, dict)))
        return f"{type(self).__name__}({details})"
