"""From the ideal 0 K map to an instrument: what the autoencoder route's map needs.

The autoencoder route (:mod:`insnet_core.nn.map_route`) gives, like the reference work, the
*ideal* powder map: S(|Q|, E) on the Ideal2D grid (0-15 1/A x 0-150 meV, 0.05 1/A x
0.5 meV bins) at T = 0 K with a constant 1.5 meV FWHM Gaussian energy resolution. A
measured map differs in three ways, applied here in this order:

1. **Temperature.** A 0 K map cannot know its own temperature dependence: the Bose factor
   alone misses the growth of the multiphonon terms and the fall of the Debye-Waller
   factor, which at 300 K change the intensity by factors of 2 (measured on the shipped
   CsAu and SiF4 examples: Bose factor alone 2.5x, with the Debye-Waller factor 0.5x the
   engine's intensity). So the change from 0 K to T comes from the engine run on the
   predicted per-element DOS, a *thermal difference* map dS = S_T - S_0 on the ideal
   grid extended to energy gain (-150..150 meV), and the output is S_ideal + dS (clipped
   at 0). Exact when the ideal map is the engine's own 0 K map; otherwise the thermal
   change is as good as the predicted DOS.
2. **Resolution.** Each ideal bin is spread by a Gaussian of FWHM
   sqrt(F_inst(E)^2 - F_ideal^2) (F_inst the instrument's FWHM at the bin's energy) and
   integrated over the output energy bins exactly (a box convolved with a Gaussian, so a
   width of zero is a flux-conserving rebin). Where the instrument is sharper than the
   ideal map, nothing can be taken away: the ideal 1.5 meV stays, and the metadata says so.
   |Q| resolution is not modelled (flux-conserving rebin in |Q|).
3. **Kinematics and the grid's edges.** Bins the instrument cannot reach are NaN (as in
   Mantid's SofQW, and as the engine's SEQUOIA maps); bins reaching beyond the ideal grid
   (|E| > 150 meV or |Q| > 15 1/A) are NaN too, never zeros, and the metadata counts them.

Everything here is numpy; units meV, 1/angstrom, K.
"""
from __future__ import annotations

import numpy as np
from scipy.special import erf

from insnet_core import InputError
from insnet_core.spectrum import Spectrum, rebin_1d_matrix

__all__ = ["box_gaussian_matrix", "two_sided_edges", "thermal_difference", "ideal_to_instrument"]

_FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


def _ramp_integral(t, sigma):
    """Antiderivative in t of the Gaussian CDF Phi(t / sigma); max(t, 0) where sigma = 0.

    ``t`` (n, m), ``sigma`` (n, 1).
    """
    sharp = sigma <= 0
    s = np.where(sharp, 1.0, sigma)
    u = t / s
    out = s * (u * (0.5 + 0.5 * erf(u * np.sqrt(0.5))) + np.exp(-0.5 * u * u) / np.sqrt(2 * np.pi))
    if np.any(sharp):
        out = np.where(sharp, np.maximum(t, 0.0), out)
    return out


def box_gaussian_matrix(in_edges, sigma, out_edges):
    """Fraction of each input bin's intensity that lands in each output bin.

    Each input bin [a, b) holds a uniform density; it is convolved with a Gaussian of
    standard deviation ``sigma[i]`` and integrated over every output bin. With
    ``sigma = 0`` this is the overlap fraction of a flux-conserving rebin.

    Parameters
    ----------
    in_edges : ndarray, shape (n_in + 1,)
        Ascending input edges (meV).
    sigma : ndarray, shape (n_in,)
        Gaussian standard deviation for each input bin (meV, >= 0).
    out_edges : ndarray, shape (n_out + 1,)
        Ascending output edges (meV).

    Returns
    -------
    ndarray, shape (n_in, n_out)
        Fractions; rows sum to 1 where the output range covers the spread bin.
    """
    edges_in = np.asarray(in_edges, dtype=float)
    a, b = edges_in[:-1, None], edges_in[1:, None]
    s = np.asarray(sigma, dtype=float)[:, None]
    out = np.asarray(out_edges, dtype=float)[None, :]
    # the integral of the spread bin below each output edge, times (b - a)
    below = _ramp_integral(out - a, s) - _ramp_integral(out - b, s)
    return np.clip(np.diff(below, axis=1) / (b - a), 0.0, None)


def two_sided_edges(ideal_energy_edges):
    """Energy edges -E_max..E_max mirroring ideal edges that start at 0 (the thermal grid)."""
    e = np.asarray(ideal_energy_edges, dtype=float)
    if e[0] != 0:
        raise InputError("the ideal map's energy edges must start at exactly 0 meV")
    return np.concatenate([-e[::-1], e[1:]])


def thermal_difference(ingredients, temperature, orders, q_edges=None, energy_edges=None):
    """S_T - S_0 of the engine on the Ideal2D grid extended to energy gain.

    Parameters
    ----------
    ingredients : insnet_core.incoherent.IncoherentIngredients
        E.g. from the predictor's per-element DOS.
    temperature : float
        K (> 0).
    orders : int or 'auto'
        Phonon orders, as for the engine.
    q_edges, energy_edges : ndarray, optional
        The ideal map's edges (Ideal2D's defaults when None; energies from 0).

    Returns
    -------
    Spectrum
        On ``q_edges`` x :func:`two_sided_edges` (energy_edges), at the Ideal2D resolution.
    """
    from insnet_core.instruments import get_instrument
    from insnet_core.simulate import Settings, simulate_ingredients

    ideal = get_instrument("Ideal2D")
    q = ideal.default_q_edges() if q_edges is None else np.asarray(q_edges, float)
    e = two_sided_edges(ideal.default_energy_edges() if energy_edges is None else energy_edges)
    hot, cold = (simulate_ingredients(ingredients, Settings.check(
        ideal, t, orders, e, q)).total for t in (temperature, 0.0))
    return hot.replace(values=hot.values - cold.values, errors=np.zeros_like(hot.values),
                       metadata={"contribution": f"S({temperature:g} K) - S(0 K)"})


def ideal_to_instrument(ideal, settings, thermal=None):
    """The ideal 0 K map on an instrument's bins, at its temperature and resolution.

    Parameters
    ----------
    ideal : Spectrum
        Map on the Ideal2D grid (energies from 0) at 0 K with the Ideal2D resolution;
        values are densities per meV, errors optional.
    settings : insnet_core.simulate.Settings
        A map instrument (SEQUOIA or Ideal2D), temperature and output edges.
    thermal : Spectrum, optional
        S_T - S_0 on the ideal |Q| grid and :func:`two_sided_edges` of the ideal energy
        edges, at the ideal resolution (step 1 of the module docstring). Required when
        ``settings.temperature`` > 0.

    Returns
    -------
    Spectrum
        On ``settings``' edges; NaN outside the instrument's reach and beyond the ideal
        grid. The metadata records each approximation.
    """
    from insnet_core.instruments import get_instrument

    inst = settings.instrument
    if not ideal.is_map:
        raise InputError("ideal_to_instrument needs a |Q|-E map")
    if not inst.is_map:
        raise InputError(f"{inst.name} gives 1D spectra; the ideal map goes to map "
                         "instruments (SEQUOIA, Ideal2D) only")
    e_in, q_in = np.asarray(ideal.energy_edges, float), np.asarray(ideal.q_edges, float)
    two_edges = two_sided_edges(e_in)
    t = float(settings.temperature)
    values = np.where(np.isnan(ideal.values), 0.0, ideal.values)
    errors = np.zeros_like(values) if ideal.errors is None else np.nan_to_num(ideal.errors)
    # 1. energy gain side (empty at 0 K), then the thermal change from the engine
    two = np.concatenate([np.zeros_like(values), values], axis=1)
    two_err = np.concatenate([np.zeros_like(errors), errors], axis=1)
    meta = {}
    if t > 0:
        if thermal is None:
            raise InputError(f"the ideal map is at 0 K; {t:g} K needs the thermal difference "
                             "map from the predicted DOS")
        if not (thermal.is_map and thermal.values.shape == (q_in.size - 1, two_edges.size - 1)
                and np.allclose(thermal.energy_edges, two_edges)
                and np.allclose(thermal.q_edges, q_in)):
            raise InputError("the thermal difference map is not on the ideal |Q| grid and "
                             "the two-sided ideal energy grid")
        two = np.clip(two + np.nan_to_num(thermal.values), 0.0, None)
        meta["temperature_route"] = ("0 K map + (S_T - S_0) of the engine on the predicted "
                                     "per-element DOS (Bose, Debye-Waller, multiphonon)")
    # 2. energy resolution, exactly integrated over the output bins
    ideal_fwhm = float(get_instrument("Ideal2D").fwhm)
    two_centres = 0.5 * (two_edges[1:] + two_edges[:-1])
    inst_fwhm = np.asarray(inst.resolution_fwhm(two_centres), float)
    extra2 = inst_fwhm ** 2 - ideal_fwhm ** 2
    if np.any(extra2 < -1e-9):
        meta["resolution_note"] = (f"the instrument is sharper than the ideal map's "
                                   f"{ideal_fwhm:g} meV at some energies; kept at {ideal_fwhm:g}")
    sigma = np.sqrt(np.clip(extra2, 0.0, None)) * _FWHM_TO_SIGMA
    e_out = np.asarray(settings.energy_edges, float)
    q_out = np.asarray(settings.q_edges, float)
    frac = box_gaussian_matrix(two_edges, sigma, e_out)
    width_in, width_out = np.diff(two_edges), np.diff(e_out)
    dens = (two * width_in) @ frac / width_out
    dens_err = np.sqrt(((two_err * width_in) ** 2) @ (frac ** 2)) / width_out
    # |Q|: flux-conserving rebin (no |Q| resolution)
    qmat = rebin_1d_matrix(q_in, q_out).T
    dens = qmat @ dens
    dens_err = np.sqrt((qmat ** 2) @ (dens_err ** 2))
    # 3. NaN beyond the ideal grid and outside the instrument's reach
    beyond = ((e_out[1:] > e_in[-1] + 1e-9) | (e_out[:-1] < -e_in[-1] - 1e-9))[None, :] \
        | (q_out[1:] > q_in[-1] + 1e-9)[:, None]
    qcent, ecent = 0.5 * (q_out[1:] + q_out[:-1]), 0.5 * (e_out[1:] + e_out[:-1])
    unreachable = ~np.asarray(inst.measurable(qcent[:, None], ecent[None, :]), dtype=bool)
    mask = beyond | unreachable
    n_beyond = int((beyond & ~unreachable).sum())
    meta["bins_beyond_ideal_grid"] = n_beyond
    if n_beyond:
        meta["beyond_ideal_grid"] = (f"{n_beyond} measurable bins lie beyond the ideal grid "
                                     f"(|E| > {e_in[-1]:g} meV or |Q| > {q_in[-1]:g} 1/A): NaN")
    dens = np.where(mask, np.nan, dens)
    dens_err = np.where(mask, np.nan, dens_err)
    described = dict(inst.describe())
    meta["instrument"] = described.pop("name", inst.name)
    meta.update(described)
    meta["temperature_K"] = t
    return Spectrum(energy_edges=e_out, values=dens, errors=dens_err, q_edges=q_out,
                    y_label=ideal.y_label, display_energy_unit=inst.display_energy_unit,
                    metadata={**ideal.metadata, **meta})
