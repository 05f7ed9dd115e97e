"""SEQUOIA (SNS, beamline BL-17): direct-geometry Fermi-chopper spectrometer.

Kinematics
----------
The Fermi chopper selects the incident energy E_i; the detectors cover
scattering angles 2theta between about 2 and 62 deg (``data/sequoia.json``).
A point (|Q|, E) of a powder map is measurable when E < E_i and

    Q(E, 2theta_min) <= |Q| <= Q(E, 2theta_max),
    Q^2 = k_i^2 + k_f^2 - 2 k_i k_f cos(2theta),

with k_i = sqrt(E_i / 2.0721) and k_f = sqrt((E_i - E) / 2.0721) in 1/A
(|Q| grows with 2theta at fixed E, so the two angles bound the region).

Resolution
----------
The energy resolution comes from the PyChop model of SEQUOIA in the resins
package (version 0.1.0, model ``PyChop_fit`` = ``PyChop_fit_v2``): for the
chosen E_i, chopper package and chopper frequency resins evaluates PyChop's
time-width contributions (moderator, Fermi chopper, aperture, sample,
detector) on 40 energy transfers in [0, E_i) and fits a 4th-order polynomial
to the Gaussian sigma. We return 2 sqrt(2 ln 2) sigma. For energy gain
(E < 0) the polynomial is extrapolated; down to E = -E_i/2 it agrees with
PyChop's direct formula to about 1 %. Energies are clipped to [-E_i, E_i]
before evaluation so the width stays finite everywhere (bins outside the
measurable region are masked by the engine anyway).

Chopper settings
----------------
* ``chopper_package``: one of resins' options for SEQUOIA (see
  :meth:`Sequoia.chopper_packages`); default ``"High-Resolution"``, SEQUOIA's
  fine-resolution Fermi chopper.
* ``chopper_frequency`` (Hz): 60, 120, ..., 600. Default: the allowed
  frequency closest to the one at which the rotating slit package transmits
  best, f = v_i / (4 pi rho) (the slit curvature rho matches the neutron
  trajectory in the rotating frame, 2 omega / v_i = 1 / rho). For
  High-Resolution at E_i = 160 meV this is 760 Hz, so 600 Hz is used.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from insnet_core import InputError
from insnet_core.instruments.base import (Instrument, _finite_float, load_instrument_data,
                                          momentum_transfer, neutron_speed)

__all__ = ["Sequoia"]

_SIGMA_TO_FWHM = 2.0 * np.sqrt(2.0 * np.log(2.0))


def _resins_instrument(data):
    """resins' (immutable) Instrument object for SEQUOIA, read once per process."""
    return _resins_instrument_by_name(data["resins_instrument"])


@lru_cache(maxsize=None)
def _resins_instrument_by_name(name):
    from resins import Instrument as ResinsInstrument
    return ResinsInstrument.from_default(name)


class Sequoia(Instrument):
    """The SEQUOIA direct-geometry spectrometer (S(|Q|, E) powder maps).

    Parameters
    ----------
    ei : float
        Incident energy E_i in meV (finite, > 0, and within the range of
        resins' PyChop model, 4-6000 meV).
    chopper_package : str, optional
        Fermi chopper package (case-insensitive); default ``"High-Resolution"``.
    chopper_frequency : int, optional
        Fermi chopper frequency in Hz (a multiple of 60 up to 600); default
        chosen for best transmission at ``ei`` (see module docstring).

    Raises
    ------
    InputError
        For any invalid setting; the message names the setting, its value and
        the valid choices.
    """

    name = "SEQUOIA"
    is_map = True
    display_energy_unit = "meV"
    settings = ("ei", "chopper_package", "chopper_frequency")

    def __init__(self, ei, chopper_package=None, chopper_frequency=None):
        data = load_instrument_data("sequoia")
        self._data = data
        self._resins = _resins_instrument(data)
        self._model_name = data["resins_model"]

        ei = _finite_float(ei, "SEQUOIA incident energy ei (meV)")
        if ei <= 0.0:
            raise InputError(f"SEQUOIA incident energy ei must be positive, got {ei:g} meV")
        low, high = self._resins.get_model_data(self._model_name).restrictions["e_init"]
        if not low <= ei <= high:
            raise InputError(
                f"SEQUOIA incident energy ei = {ei:g} meV is outside the range "
                f"{low:g}-{high:g} meV covered by the resolution model")
        self.ei = ei

        self.chopper_package = self._check_package(chopper_package)
        self._package_data = self._resins.get_model_data(
            self._model_name, chopper_package=self.chopper_package)
        if chopper_frequency is None:
            self.chopper_frequency = self._default_frequency()
            self._frequency_origin = "default (best transmission at ei)"
        else:
            self.chopper_frequency = self._check_frequency(chopper_frequency)
            self._frequency_origin = "user"
        self._resolution = self._make_resolution()

        self.angle_min = float(data["scattering_angle_min_deg"])
        self.angle_max = float(data["scattering_angle_max_deg"])

    # ---------------------------------------------------------- settings
    @classmethod
    def chopper_packages(cls):
        """Names of the Fermi chopper packages resins 0.1.0 offers for SEQUOIA."""
        data = load_instrument_data("sequoia")
        return list(_resins_instrument(data).possible_options_for_model_and_configuration(
            data["resins_model"], "chopper_package"))

    @classmethod
    def chopper_frequencies(cls):
        """Allowed Fermi chopper frequencies in Hz (ascending list of int)."""
        data = load_instrument_data("sequoia")
        restriction = _resins_instrument(data).get_model_data(
            data["resins_model"]).restrictions["chopper_frequency"]
        return list(range(*restriction))

    def _check_package(self, package):
        valid = self.chopper_packages()
        if package is None:
            return self._data["default_chopper_package"]
        for option in valid:
            if str(package).strip().lower() == option.lower():
                return option
        raise InputError(
            f"SEQUOIA chopper_package {package!r} is unknown; valid packages are: "
            + ", ".join(valid))

    def _check_frequency(self, frequency):
        valid = self.chopper_frequencies()
        message = (f"SEQUOIA chopper_frequency {frequency!r} Hz is not allowed; valid "
                   f"frequencies are: {', '.join(str(f) for f in valid)} Hz")
        try:
            value = float(frequency)
        except (TypeError, ValueError):
            raise InputError(message) from None
        if not np.isfinite(value) or value != round(value) or int(round(value)) not in valid:
            raise InputError(message)
        return int(round(value))

    def _default_frequency(self):
        """Allowed frequency nearest to v_i / (4 pi rho) (ties go to the higher one)."""
        speed = float(neutron_speed(self.ei))  # m/s
        best = speed / (4.0 * np.pi * self._package_data.rho)
        valid = self.chopper_frequencies()
        return min(valid, key=lambda f: (abs(f - best), -f))

    def _make_resolution(self):
        from resins.models.model_base import InvalidInputError
        from resins.models.pychop import NoTransmissionError
        try:
            return self._resins.get_resolution_function(
                self._model_name, chopper_package=self.chopper_package,
                e_init=self.ei, chopper_frequency=self.chopper_frequency)
        except NoTransmissionError:
            raise InputError(
                f"SEQUOIA chopper_frequency = {self.chopper_frequency} Hz transmits no "
                f"neutrons at ei = {self.ei:g} meV with the {self.chopper_package} package; "
                "choose another frequency or package") from None
        except InvalidInputError as exc:
            raise InputError(f"SEQUOIA settings rejected by the resolution model: {exc}") from None

    # --------------------------------------------------------------- grids
    def _energy_step(self):
        """0.005 E_i rounded to two significant figures (meV)."""
        fractions = self._data["default_energy_grid_fraction_of_ei"]
        return float(f"{fractions['step'] * self.ei:.2g}")

    def default_energy_edges(self):
        """Energy-transfer edges from -0.5 E_i to 0.95 E_i in steps of about 0.005 E_i.

        The step is 0.005 E_i rounded to two significant figures; the edges
        are the multiples of the step between -0.5 E_i and 0.95 E_i (both
        inclusive when they fall on a multiple). For E_i = 160 meV: -80 to 152
        meV in 0.8 meV steps (290 bins).

        Returns
        -------
        ndarray, shape (n_e+1,)
            Ascending edges in meV, all below E_i.
        """
        fractions = self._data["default_energy_grid_fraction_of_ei"]
        step = self._energy_step()
        first = int(np.ceil(fractions["start"] * self.ei / step - 1e-9))
        last = int(np.floor(fractions["stop"] * self.ei / step + 1e-9))
        return np.round(np.arange(first, last + 1) * step, 10)

    def default_q_edges(self):
        """|Q| edges from 0 to Q_max(E = 0, 2theta_max) in 0.05 1/A steps.

        The last edge is the first multiple of 0.05 at or above
        2 k_i sin(2theta_max / 2), the largest |Q| reachable at the elastic line.

        Returns
        -------
        ndarray, shape (n_q+1,)
            Ascending edges in 1/angstrom.
        """
        step = float(self._data["default_q_step_inv_angstrom"])
        q_max = float(momentum_transfer(self.ei, self.ei, self.angle_max))
        n_bins = int(np.ceil(q_max / step - 1e-9))
        return np.round(np.arange(n_bins + 1) * step, 10)

    # ---------------------------------------------------------- kinematics
    def q_limits(self, energy):
        """Smallest and largest measurable |Q| (1/A) at energy transfer(s) ``energy`` (meV).

        Returns
        -------
        (ndarray, ndarray)
            |Q| at 2theta_min and 2theta_max, same shape as ``energy``; NaN
            where E >= E_i.
        """
        energy = np.asarray(energy, dtype=float)
        e_f = np.where(energy < self.ei, self.ei - energy, np.nan)
        return (momentum_transfer(self.ei, e_f, self.angle_min),
                momentum_transfer(self.ei, e_f, self.angle_max))

    def measurable(self, q, energy):
        """True where (|Q|, E) is kinematically reachable on SEQUOIA.

        Parameters
        ----------
        q : array_like
            |Q| in 1/angstrom.
        energy : array_like
            Energy transfer in meV; broadcast against ``q``.

        Returns
        -------
        ndarray of bool
            Broadcast shape of ``q`` and ``energy``.
        """
        q, energy = np.broadcast_arrays(np.asarray(q, dtype=float),
                                        np.asarray(energy, dtype=float))
        q_low, q_high = self.q_limits(energy)
        with np.errstate(invalid="ignore"):
            return (energy < self.ei) & (q >= q_low) & (q <= q_high)

    # ---------------------------------------------------------- resolution
    def resolution_fwhm(self, energy):
        """Gaussian FWHM (meV) from resins' PyChop model of SEQUOIA.

        Parameters
        ----------
        energy : array_like
            Energy transfer(s) in meV, any shape; clipped to [-E_i, E_i].

        Returns
        -------
        ndarray
            FWHM in meV, same shape as ``energy``; largest in energy gain,
            decreasing towards E -> E_i.
        """
        energy = np.asarray(energy, dtype=float)
        points = np.clip(energy, -self.ei, self.ei).reshape(-1, 1)
        sigma = self._resolution.get_characteristics(points)["sigma"]
        return (_SIGMA_TO_FWHM * np.asarray(sigma, dtype=float)).reshape(energy.shape)

    # ------------------------------------------------------------- checks
    def validate(self, energy_edges, q_edges=None):
        """Raise InputError when requested energies reach E_i (or edges are malformed)."""
        super().validate(energy_edges, q_edges)
        top = float(np.asarray(energy_edges, dtype=float)[-1])
        if top >= self.ei:
            raise InputError(
                f"SEQUOIA energy bin edges extend to {top:g} meV, at or beyond the incident "
                f"energy ei = {self.ei:g} meV; energy transfers must stay below ei")

    def describe(self):
        """Settings for output metadata: name, E_i, chopper package and frequency, model."""
        return {
            "name": self.name,
            "geometry": self._data["geometry"],
            "ei_meV": self.ei,
            "chopper_package": self.chopper_package,
            "chopper_frequency_hz": self.chopper_frequency,
            "chopper_frequency_origin": self._frequency_origin,
            "scattering_angle_range_deg": [self.angle_min, self.angle_max],
            "resolution_model": f"resins 0.1.0 SEQUOIA {self._model_name} (PyChop)",
        }
