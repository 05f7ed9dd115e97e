"""VISION (SNS, beamline BL-16B): indirect-geometry vibrational spectrometer.

Kinematics
----------
Every detected neutron has the same final energy E_f (about 3.5 meV, set by
pyrolytic-graphite (002) analysers at a 45 deg Bragg angle behind a cooled Be
filter). The incident energy follows from the time of flight, E_i = E + E_f,
so each analyser bank measures along a fixed trajectory in (|Q|, E):

    Q^2 = k_i^2 + k_f^2 - 2 k_i k_f cos(2theta),   k = sqrt(E / 2.0721 meV A^2)

with 2theta = 135 deg for the backward bank and 45 deg for the forward bank.

Resolution
----------
The energy transfer is E = E_i - E_f with E_i = m L1^2 / (2 t1^2), where the
primary time of flight t1 = t - t0 - t2 is what remains of the measured time
once the moderator emission time t0 and the secondary flight time t2 are
taken off. Following the description of Seeger, Daemen & Larese (Nucl.
Instrum. Meth. A 604 (2009) 719), the independent uncertainties are
propagated to first order (standard deviations added in quadrature)::

    sigma_E^2 = (2 E_i)^2 [ (sigma_t / t1)^2                 moderator pulse
                          + (sigma_L1^2 + w_s^2/12) / L1^2    primary path
                          + sigma_Z^2 / z0^2 ]                 secondary path
              + sigma_Ef^2                                     analyser

* **Moderator / time.** The emission time of the decoupled water moderator is
  taken from the mean emission time t0(E_i) that Mantid uses for VISION.
  Treating the pulse as an Ikeda-Carpenter slowing-down pulse
  t^2 exp(-a t) (mean 3/a), its FWHM is ``x_w / a`` with
  ``x_w = 3.39...`` solving x^2 exp(-x) = 2 exp(-2); sigma_t is the
  Gaussian with that FWHM. Because t0 scales roughly like 1/v_i, this term is a
  nearly constant fraction (about 1 %) of E_i.
* **Primary path.** Uncertainty sigma_L1 of the moderator-sample distance
  plus the sample thickness w_s along the beam.
* **Secondary path.** Flat analysers parallel to the detectors make the
  secondary flight time independent of the Bragg angle ("time focusing"):
  t2 = Z / v0 with v0 = v_f sin(theta_B) and Z the summed perpendicular
  distances sample-analyser-detector. Only depth variations of Z remain
  (sample thickness, reflection depth in the analyser (twice), detector
  thickness); an error dZ shifts the inferred t1 by dZ / v0, i.e.
  dE_i / E_i = 2 dZ / z0 with z0 = v0 t1.
* **Analyser / final energy.** With time focusing the spread of final
  energies enters E directly. A shift dx of the reflection point along the
  analyser changes the Bragg angle and gives dE_f / E_f = sin(2 theta_B) dx / z2
  (z2 = sample-analyser distance).

The FWHM is 2 sqrt(2 ln 2) sigma_E. The result is close to VISION's quoted
dE/E of about 1.2 %. All numbers are in ``data/vision.json`` with sources.

resins 0.1.0 also ships a VISION model ("vision_paper"), but its source-pulse
parameter ``d_t`` is null in its data file, so evaluating it raises a
TypeError; it is not used here (see tests/test_instruments.py, which records
its state).
"""
from __future__ import annotations

import numpy as np

from insnet_core import InputError
from insnet_core.instruments.base import (Bank, Instrument, _finite_float,
                                          load_instrument_data, momentum_transfer,
                                          neutron_speed)
from insnet_core.units import MEV_PER_CM1

__all__ = ["Vision"]

#: FWHM = 2 sqrt(2 ln 2) sigma for a Gaussian.
_SIGMA_TO_FWHM = 2.0 * np.sqrt(2.0 * np.log(2.0))


def _slowing_down_fwhm_in_units_of_1_over_a():
    """FWHM of t^2 exp(-a t), in units of 1/a (about 3.39).

    The peak is at a t = 2 with height 4 exp(-2); the half-maximum points
    solve x^2 exp(-x) = 2 exp(-2).
    """
    half = 2.0 * np.exp(-2.0)

    def shape(x):
        return x * x * np.exp(-x) - half

    low = _bisect(shape, 1e-6, 2.0)
    high = _bisect(shape, 2.0, 50.0)
    return high - low


def _bisect(f, a, b, tol=1e-13):
    """A root of ``f`` in [a, b] (a sign change there), by bisection.

    (Here rather than scipy.optimize, whose import costs 0.4 s of every cold start.)
    """
    fa = f(a)
    if fa * f(b) > 0:
        raise ValueError("no sign change in the bracket")
    while b - a > tol * max(1.0, abs(a)):
        m = 0.5 * (a + b)
        fm = f(m)
        if fa * fm <= 0:
            b = m
        else:
            a, fa = m, fm
    return 0.5 * (a + b)


_PULSE_FWHM_FACTOR = _slowing_down_fwhm_in_units_of_1_over_a()


class Vision(Instrument):
    """The VISION indirect-geometry spectrometer (1D spectra per analyser bank).

    Parameters
    ----------
    final_energy : float, optional
        Final neutron energy E_f in meV; default from ``data/vision.json``
        (3.5 meV). OCLIMAX's VISION default is 32 cm^-1 = 3.97 meV.
    bank_angles : sequence of float, optional
        Scattering angles 2theta of the analyser banks, degrees, each in
        (0, 180); default 135 (backward) and 45 (forward). Banks above 90 deg
        are named ``backward``, the others ``forward`` (numbered when several
        share a name).
    resolution_poly : sequence of 1 to 3 float, optional
        User resolution: Gaussian FWHM = a + b|E| + c E^2 with E and the FWHM
        in cm^-1 (a > 0, b, c >= 0), e.g. ``(2.5, 0.005, 1e-7)`` for OCLIMAX's
        VISION default. Default: the propagated time-of-flight model below.

    Attributes
    ----------
    final_energy : float
        E_f in meV.
    banks : list of Bank
        Backward (135 deg) and forward (45 deg) analyser banks.
    """

    name = "VISION"
    is_map = False
    display_energy_unit = "cm-1"
    settings = ("final_energy", "bank_angles", "resolution_poly")

    def __init__(self, final_energy=None, bank_angles=None, resolution_poly=None):
        data = load_instrument_data("vision")
        self._data = data
        if final_energy is None:
            final_energy = data["final_energy_meV"]
        final_energy = _finite_float(final_energy, "VISION final_energy (meV)")
        if final_energy <= 0.0:
            raise InputError(
                f"VISION final_energy must be positive, got {final_energy:g} meV")
        self.final_energy = final_energy
        if bank_angles is None:
            self.banks = [Bank(str(b["name"]), float(b["angle_deg"])) for b in data["banks"]]
        else:
            self.banks = _user_banks(bank_angles)
        self.resolution_poly = (None if resolution_poly is None
                                else _check_resolution_poly(resolution_poly))
        self.display_energy_unit = data.get("display_energy_unit", "cm-1")

        self._l1 = float(data["primary_flight_path_m"])
        self._sigma_l1 = float(data["primary_flight_path_sigma_m"])
        self._var_sample = float(data["sample_thickness_m"]) ** 2 / 12.0
        self._var_detector = float(data["detector_thickness_m"]) ** 2 / 12.0
        analyser = data["analyser"]
        self._bragg = np.deg2rad(float(analyser["bragg_angle_deg"]))
        self._z2 = float(analyser["sample_analyser_distance_m"])
        self._var_depth = float(analyser["depth_variance_m2"])
        self._var_reflection = float(analyser["reflection_point_variance_m2"])
        moderator = data["moderator"]
        self._t0_bounds = np.asarray(moderator["emission_time_upper_bounds_meV"], dtype=float)
        self._t0_coeff = np.asarray(moderator["emission_time_coefficient_us"], dtype=float)
        self._t0_exp = np.asarray(moderator["emission_time_exponent"], dtype=float)
        # Perpendicular component of the final velocity (time focusing), m/s.
        self._v0 = float(neutron_speed(self.final_energy)) * np.sin(self._bragg)

    # --------------------------------------------------------------- grids
    def default_energy_edges(self):
        """Bin edges of the reference work's grid: 10-1200 cm^-1 in 10 cm^-1 steps, in meV.

        Returns
        -------
        ndarray, shape (120,)
            Edges 10, 20, ..., 1200 cm^-1 converted to meV (119 bins).
        """
        grid = self._data["default_energy_grid_cm1"]
        start, stop, step = float(grid["start"]), float(grid["stop"]), float(grid["step"])
        n_bins = int(round((stop - start) / step))
        return (start + step * np.arange(n_bins + 1)) * MEV_PER_CM1

    def default_q_edges(self):
        """None: VISION records 1D spectra."""
        return None

    # ---------------------------------------------------------- kinematics
    def _bank(self, bank):
        if isinstance(bank, Bank):
            return bank
        for candidate in self.banks:
            if str(bank).strip().lower() == candidate.name:
                return candidate
        names = ", ".join(b.name for b in self.banks)
        raise InputError(f"VISION has no bank {bank!r}; banks are: {names}")

    def q_of_energy(self, energy, bank):
        """|Q| along a bank's trajectory.

        Parameters
        ----------
        energy : array_like
            Energy transfer(s) E in meV, any shape.
        bank : Bank or str
            One of :attr:`banks` or its name.

        Returns
        -------
        ndarray
            |Q| in 1/angstrom, same shape as ``energy``; NaN where
            E <= -E_f (no incident neutron can do that).
        """
        bank = self._bank(bank)
        energy = np.asarray(energy, dtype=float)
        e_i = energy + self.final_energy
        return momentum_transfer(np.where(e_i > 0.0, e_i, np.nan), self.final_energy,
                                 bank.angle_deg)

    # ---------------------------------------------------------- resolution
    def emission_time_us(self, incident_energy):
        """Mean moderator emission time t0 (microseconds) at incident energy(ies) in meV."""
        e_i = np.asarray(incident_energy, dtype=float)
        index = np.clip(np.searchsorted(self._t0_bounds, e_i, side="right"),
                        0, self._t0_bounds.size - 1)
        return self._t0_coeff[index] * e_i ** self._t0_exp[index]

    def resolution_terms(self, energy):
        """FWHM (meV) of each resolution contribution, for inspection.

        Parameters
        ----------
        energy : array_like
            Energy transfer(s) in meV.

        Returns
        -------
        dict of str -> ndarray
            ``"moderator"``, ``"primary_path"``, ``"secondary_path"``,
            ``"final_energy"``: FWHM each contribution alone would give,
            same shape as ``energy``. They add in quadrature to
            :meth:`resolution_fwhm`.
        """
        energy = np.asarray(energy, dtype=float)
        # Incident energies at or below zero cannot occur; keep the result finite.
        e_i = np.maximum(energy + self.final_energy, 1e-3)
        v_i = neutron_speed(e_i)
        t1 = self._l1 / v_i                                   # s
        a = 3.0 / (self.emission_time_us(e_i) * 1e-6)         # 1/s, mean = 3/a
        sigma_t = _PULSE_FWHM_FACTOR / a / _SIGMA_TO_FWHM     # s
        z0 = self._v0 * t1                                    # m
        var_z = self._var_sample + 2.0 * self._var_depth + self._var_detector
        sigma = {
            "moderator": 2.0 * e_i * sigma_t / t1,
            "primary_path": 2.0 * e_i * np.sqrt(self._sigma_l1 ** 2 + self._var_sample) / self._l1,
            "secondary_path": 2.0 * e_i * np.sqrt(var_z) / z0,
            "final_energy": np.full_like(e_i, self.final_energy * np.sin(2.0 * self._bragg)
                                         * np.sqrt(self._var_reflection) / self._z2),
        }
        return {key: _SIGMA_TO_FWHM * value for key, value in sigma.items()}

    def resolution_fwhm(self, energy):
        """Gaussian FWHM (meV) of VISION's energy resolution (or the user polynomial).

        Parameters
        ----------
        energy : array_like
            Energy transfer(s) in meV, any shape.

        Returns
        -------
        ndarray
            FWHM in meV, same shape as ``energy`` (about 1.2-1.5 % of E for
            20-500 meV).
        """
        if self.resolution_poly is not None:
            a, b, c = self.resolution_poly
            e_cm = np.abs(np.asarray(energy, dtype=float)) / MEV_PER_CM1
            return (a + b * e_cm + c * e_cm ** 2) * MEV_PER_CM1
        terms = self.resolution_terms(energy)
        return np.sqrt(sum(value ** 2 for value in terms.values()))

    def bank_resolution_fwhm(self, energy, bank):
        """FWHM (meV) for one bank; both banks share the same analyser design, so
        this equals :meth:`resolution_fwhm`."""
        self._bank(bank)
        return self.resolution_fwhm(energy)

    # ------------------------------------------------------------- checks
    def validate(self, energy_edges, q_edges=None):
        """Raise InputError for energy transfers VISION cannot reach.

        Energy transfers must exceed -E_f (the incident energy E + E_f must be
        positive); |Q| edges cannot be given (1D instrument).
        """
        super().validate(energy_edges, q_edges)
        edges = np.asarray(energy_edges, dtype=float)
        if edges[0] <= -self.final_energy:
            raise InputError(
                f"VISION energy bin edges start at {edges[0]:g} meV, but energy transfers "
                f"must be above -final_energy = {-self.final_energy:g} meV")

    def describe(self):
        """Settings for output metadata (name, geometry, E_f, banks, resolution model)."""
        return {
            "name": self.name,
            "geometry": self._data["geometry"],
            "final_energy_meV": self.final_energy,
            "banks": [b.name for b in self.banks],
            "bank_angles_deg": [b.angle_deg for b in self.banks],
            "primary_flight_path_m": self._l1,
            "analyser": self._data["analyser"]["crystal"],
            "resolution_model": (
                "propagated time-of-flight uncertainties after Seeger, Daemen & Larese, "
                "NIM A 604 (2009) 719" if self.resolution_poly is None else
                "user polynomial FWHM = a + b|E| + c E^2 (cm-1), (a, b, c) = "
                + ", ".join(f"{x:g}" for x in self.resolution_poly)),
        }


def _user_banks(bank_angles):
    """Banks from user scattering angles (degrees); InputError naming bank_angles."""
    if isinstance(bank_angles, str):
        bank_angles = [x for x in bank_angles.replace(",", " ").split()]
    try:
        angles = [float(a) for a in np.atleast_1d(np.asarray(bank_angles, dtype=object))]
    except (TypeError, ValueError):
        raise InputError(f"VISION bank_angles must be scattering angles in degrees, "
                         f"got {bank_angles!r}") from None
    if not angles:
        raise InputError("VISION bank_angles: give at least one scattering angle (degrees)")
    for a in angles:
        if not (np.isfinite(a) and 0.0 < a < 180.0):
            raise InputError(f"VISION bank_angles must be between 0 and 180 degrees "
                             f"(exclusive), got {a:g}")
    names = ["backward" if a > 90.0 else "forward" for a in angles]
    counts = {n: names.count(n) for n in names}
    seen = {}
    banks = []
    for name, angle in zip(names, angles):
        if counts[name] > 1:
            seen[name] = seen.get(name, 0) + 1
            name = f"{name}{seen[name]}"
        banks.append(Bank(name, angle))
    return banks


def _check_resolution_poly(coefficients):
    """(a, b, c) of a FWHM polynomial in cm^-1; InputError naming resolution_poly."""
    if isinstance(coefficients, str):
        coefficients = [x for x in coefficients.replace(",", " ").split()]
    try:
        values = [float(x) for x in np.atleast_1d(np.asarray(coefficients, dtype=object))]
    except (TypeError, ValueError):
        raise InputError("VISION resolution_poly must be 1 to 3 numbers a,b,c (FWHM = a + b E "
                         f"+ c E^2 in cm-1), got {coefficients!r}") from None
    if not 1 <= len(values) <= 3 or not all(np.isfinite(values)):
        raise InputError("VISION resolution_poly must be 1 to 3 finite numbers a,b,c (FWHM = "
                         f"a + b E + c E^2 in cm-1), got {coefficients!r}")
    values += [0.0] * (3 - len(values))
    a, b, c = values
    if a <= 0 or b < 0 or c < 0:
        raise InputError("VISION resolution_poly needs a > 0 and b, c >= 0 (FWHM = a + b E + "
                         f"c E^2 in cm-1), got {a:g}, {b:g}, {c:g}")
    return (a, b, c)
