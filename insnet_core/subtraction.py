"""Phonon subtraction: scale a predicted spectrum to measured data, subtract, keep the errors.

The measured spectrum (a |Q|-E map like Mantid's SofQW output, or 1D spectra such
as VISION's banks) and the prediction are both :class:`~insnet_core.spectrum.Spectrum`
objects. The prediction is moved onto the data's bins (never the other way
round), one scale ``s`` (optionally plus a flat background ``b``) is fitted by
weighted least squares over a region where magnetic scattering is negligible,
and the residual ``R = data - (s * pred + b)`` is returned with propagated errors.

Rules
-----
* **Bins without data** (NaN or infinite value or error in the data, bins the
  prediction does not cover or cannot compute, NaN there) are NaN in the
  residual and are never part of a fit.
* **Zero-error bins.** Mantid gives a bin with zero counts a zero error. Such
  bins keep their value but their error is floored at the smallest positive
  error of the data (the error of one count when all bins have the same
  normalisation), for the fit weights and for the residual alike; how many were
  floored is reported (``n_zero_error``). Data whose errors are all zero (or that
  have none) are refused: nothing can be weighted.
* **Weights.** ``weighting='data'``: weights 1/sigma^2 from the data's
  errors, the usual weighted least squares. A fit weighted by errors computed
  from the counts themselves is biased low by about one count per bin (a bin
  that fluctuated down gets more weight); with few counts per bin use
  ``weighting='poisson'``: each bin's variance is taken at the fitted model,
  ``sigma_i^2 * model_i / data_i`` (the data's own variance per unit of
  intensity, times the model), iterated to convergence. That is the Poisson
  maximum-likelihood fit for data whose errors are counting errors
  (sigma^2 proportional to the value in each bin); bins with no counts use the
  median variance per unit intensity of the other bins. ``weighting='auto'``
  (default) takes 'poisson' when no bin of the data is negative (counting data,
  as SofQW gives them) and 'data' otherwise (e.g. after a background
  subtraction, where sigma^2 is no longer proportional to the value). On
  synthetic SEQUOIA maps with 50 counts in the brightest bin 'data' puts the
  scale 11 sigma low and 'poisson' within 1 sigma. A prediction with
  errors (the ML route's per-bin uncertainty) adds ``(s * sigma_pred)^2`` to
  every variance in both schemes.
* **Errors of the residual**:
  ``sigma_R^2 = sigma_data^2 + (s sigma_pred)^2 + pred^2 sigma_s^2
  + 2 pred cov(s, b) + sigma_b^2`` (the last two terms only with a fitted
  background). The scale error is the fit's (covariance of the weighted least
  squares), multiplied by sqrt(chi^2/dof) when chi^2/dof > 1 (the model does
  not describe the data within its errors; ``inflated`` says so). chi^2/dof
  falls below 1 when many fit bins expect far less than one count (energy gain
  at low temperature without background): restrict FitEnergyRange there.

All energies are meV, |Q| in 1/angstrom, values per meV (densities), as in
:class:`~insnet_core.spectrum.Spectrum`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from insnet_core import InputError
from insnet_core.spectrum import Spectrum

__all__ = ["DEFAULT_FIT_Q_MIN", "DEFAULT_MAGNETIC_Q_RANGE", "WEIGHTINGS", "FitRegion",
           "ScaleFit", "SubtractionResult", "parse_range", "prediction_on_data",
           "fit_scale", "fixed_scale", "subtract", "integrate_q", "subtract_prediction",
           "magnetic_form_factor_squared", "poisson_measurement"]

#: Lower |Q| limit (1/angstrom) of the default fit region. The squared magnetic form
#: factor <j0>^2 of Ru+ is 0.014 there (4d ions), of Cu2+ and Mn2+ 0.26 and 0.14
#: (3d ions, whose moments extend further in Q: raise it for them).
DEFAULT_FIT_Q_MIN = 4.0
#: |Q| range (1/angstrom) integrated for the magnetic intensity by default.
DEFAULT_MAGNETIC_Q_RANGE = (0.0, 2.0)
#: Weighting schemes of the scale fit.
WEIGHTINGS = ("auto", "data", "poisson")
_POISSON_ITERATIONS = 50


# ---------------------------------------------------------------------------
# region
# ---------------------------------------------------------------------------
def parse_range(text, name, default=(-math.inf, math.inf)):
    """``'lo,hi'`` -> (lo, hi) floats; an empty side is open (-inf / +inf).

    Parameters
    ----------
    text : str or tuple or None
        ``''`` or None gives ``default``; ``'4,'`` is ``(4, inf)``; ``',2'`` is
        ``(-inf, 2)``.
    name : str
        Named in the error message.
    """
    if text is None or (isinstance(text, str) and not text.strip()):
        return tuple(float(v) for v in default)
    if isinstance(text, str):
        parts = [p.strip() for p in text.split(",")]
        if len(parts) == 1:
            parts.append("")
    else:
        parts = list(text)
    if len(parts) != 2:
        raise InputError(f"{name}: expected 'min,max' (either may be empty), got {text!r}")
    try:
        lo = -math.inf if parts[0] in ("", None) else float(parts[0])
        hi = math.inf if parts[1] in ("", None) else float(parts[1])
    except (TypeError, ValueError):
        raise InputError(f"{name}: expected numbers 'min,max', got {text!r}") from None
    if math.isnan(lo) or math.isnan(hi) or not lo < hi:
        raise InputError(f"{name}: need min < max, got {text!r}")
    return lo, hi


@dataclass
class FitRegion:
    """Where the scale is fitted: bins whose centres lie in both ranges, or a mask.

    Parameters
    ----------
    q_range : (float, float)
        |Q| range in 1/angstrom (maps only; 1D spectra ignore it). Default
        ``(DEFAULT_FIT_Q_MIN, inf)``.
    energy_range : (float, float)
        Energy-transfer range in meV. Default: all.
    mask : ndarray of bool, shape (n_rows, n_e), optional
        When given, exactly these bins (True) form the region and the ranges
        are not used.
    """

    q_range: tuple = (DEFAULT_FIT_Q_MIN, math.inf)
    energy_range: tuple = (-math.inf, math.inf)
    mask: np.ndarray | None = None

    def bins(self, data):
        """Boolean array, shape ``data.shape``: True for bins inside the region."""
        if self.mask is not None:
            mask = np.asarray(self.mask, dtype=bool)
            if mask.shape != data.shape:
                raise InputError(f"fit region mask has shape {mask.shape}, the data "
                                 f"{data.shape}")
            return mask.copy()
        e = data.energy_centres
        inside = (e >= self.energy_range[0]) & (e <= self.energy_range[1])
        out = np.broadcast_to(inside[None, :], data.shape).copy()
        if data.is_map:
            q = data.q_centres
            out &= ((q >= self.q_range[0]) & (q <= self.q_range[1]))[:, None]
        return out

    def describe(self, data=None):
        """One line naming the region (for logs)."""
        if self.mask is not None:
            return f"mask of {int(np.count_nonzero(self.mask))} bins"

        def rng(r, unit):
            lo = "" if math.isinf(r[0]) else f"{r[0]:g}"
            hi = "" if math.isinf(r[1]) else f"{r[1]:g}"
            return f"{lo}..{hi} {unit}" if (lo or hi) else "all"
        text = f"E {rng(self.energy_range, 'meV')}"
        if data is None or data.is_map:
            text = f"|Q| {rng(self.q_range, '1/A')}, " + text
        return text


# ---------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------
@dataclass
class ScaleFit:
    """The scale (and background) applied to the prediction, with errors.

    Attributes
    ----------
    scale, scale_error : float
    background, background_error : float
        Flat background (same units as the data); 0 when not fitted.
    covariance : ndarray, shape (2, 2)
        Covariance of (scale, background), errors already inflated when
        ``inflated``; background row/column zero when not fitted.
    chi2 : float
        Weighted sum of squared residuals over the fit bins (NaN for Fixed).
    dof : int
        Fit bins minus fitted parameters (0 for Fixed).
    n_bins : int
        Bins used in the fit.
    n_zero_error : int
        Bins of the data whose zero error was floored.
    zero_error_floor : float
        The floor (smallest positive error of the data, per meV).
    method : str
        'FitHighQ' or 'Fixed'.
    weighting : str
        'data' or 'poisson' (what 'auto' chose); '' for Fixed.
    fit_background : bool
    inflated : bool
        True when errors were multiplied by sqrt(chi2/dof) > 1.
    region : str
        Description of the fit region.
    """

    scale: float
    scale_error: float
    background: float = 0.0
    background_error: float = 0.0
    covariance: np.ndarray = field(default_factory=lambda: np.zeros((2, 2)))
    chi2: float = math.nan
    dof: int = 0
    n_bins: int = 0
    n_zero_error: int = 0
    zero_error_floor: float = math.nan
    method: str = "FitHighQ"
    weighting: str = "data"
    fit_background: bool = False
    inflated: bool = False
    region: str = ""

    @property
    def chi2_dof(self):
        """chi^2 per degree of freedom (NaN without a fit)."""
        return self.chi2 / self.dof if self.dof > 0 else math.nan

    def logs(self):
        """Sample logs describing the subtraction (names listed in README)."""
        return {"subtraction_scale": float(self.scale),
                "subtraction_scale_error": float(self.scale_error),
                "subtraction_background": float(self.background),
                "subtraction_background_error": float(self.background_error),
                "subtraction_chi2_dof": float(self.chi2_dof),
                "subtraction_fit_bins": int(self.n_bins),
                "subtraction_zero_error_bins": int(self.n_zero_error),
                "subtraction_scale_method": self.method,
                "subtraction_weighting": self.weighting,
                "subtraction_fit_background": int(self.fit_background),
                "subtraction_errors_inflated": int(self.inflated),
                "subtraction_fit_region": self.region}


@dataclass
class SubtractionResult:
    """Everything :func:`subtract_prediction` produces.

    Attributes
    ----------
    residual : Spectrum
        data - (s pred + b) on the data's bins, with errors and provenance.
    fit : ScaleFit
    prediction : Spectrum
        The prediction on the data's bins (unscaled).
    magnetic : Spectrum or None
        The residual integrated over ``magnetic_q_range`` vs E (maps only).
    """

    residual: Spectrum
    fit: ScaleFit
    prediction: Spectrum
    magnetic: Spectrum | None = None


# ---------------------------------------------------------------------------
# checks
# ---------------------------------------------------------------------------
def _uncovered(pred, data):
    """Bins of ``data`` not fully inside the prediction's range, shape data.shape."""
    e = data.energy_edges
    bad = (e[:-1] < pred.energy_edges[0] - 1e-9) | (e[1:] > pred.energy_edges[-1] + 1e-9)
    out = np.broadcast_to(bad[None, :], data.shape).copy()
    if data.is_map:
        q = data.q_edges
        out |= ((q[:-1] < pred.q_edges[0] - 1e-9) | (q[1:] > pred.q_edges[-1] + 1e-9))[:, None]
    return out


def prediction_on_data(data, pred):
    """The prediction on the data's bins (rebinned flux-conserving when they differ).

    Parameters
    ----------
    data, pred : Spectrum
        Both maps, or both 1D. 1D: the same number of rows, or a one-row data
        set with a prediction having an ``'average'`` row (VISION) or one row.

    Returns
    -------
    Spectrum
        Shape ``data.shape``; bins the prediction does not cover are NaN.

    Raises
    ------
    InputError
        Incompatible axes (map vs 1D, no overlap, rows that cannot be paired).
    """
    if not isinstance(data, Spectrum) or not isinstance(pred, Spectrum):
        raise InputError("data and prediction must be Spectrum objects")
    if data.is_map != pred.is_map:
        what = lambda s: "a |Q|-E map" if s.is_map else "1D spectra"  # noqa: E731
        raise InputError(f"the data are {what(data)} but the prediction is {what(pred)}; "
                         "predict for the data's instrument (a map for SEQUOIA/SofQW data, "
                         "1D for VISION)")
    if (pred.energy_edges[-1] <= data.energy_edges[0]
            or pred.energy_edges[0] >= data.energy_edges[-1]):
        raise InputError(
            f"the prediction's energies ({pred.energy_edges[0]:g}..{pred.energy_edges[-1]:g} "
            f"meV) do not overlap the data's ({data.energy_edges[0]:g}.."
            f"{data.energy_edges[-1]:g} meV); check the energy units of both")
    if data.is_map and (pred.q_edges[-1] <= data.q_edges[0]
                        or pred.q_edges[0] >= data.q_edges[-1]):
        raise InputError("the prediction's |Q| range does not overlap the data's")
    if not data.is_map:
        if pred.shape[0] != data.shape[0]:
            if data.shape[0] != 1:
                raise InputError(f"the data have {data.shape[0]} spectra, the prediction "
                                 f"{pred.shape[0]}; give one spectrum per prediction row "
                                 f"({', '.join(pred.labels)}) or a single spectrum")
            index = pred.labels.index("average") if "average" in pred.labels else None
            if index is None:
                raise InputError(f"one data spectrum but the prediction has rows "
                                 f"{pred.labels} and none is 'average'")
            pred = pred.row(index)
        pred = pred.replace(labels=list(data.labels))
    same_e = (pred.energy_edges.size == data.energy_edges.size
              and np.allclose(pred.energy_edges, data.energy_edges, rtol=1e-9, atol=1e-12))
    same_q = (not data.is_map or (pred.q_edges.size == data.q_edges.size and np.allclose(
        pred.q_edges, data.q_edges, rtol=1e-9, atol=1e-12)))
    if same_e and same_q:
        return pred.replace(energy_edges=data.energy_edges, q_edges=data.q_edges)
    moved = pred.rebin(energy_edges=None if same_e else data.energy_edges,
                       q_edges=None if same_q else data.q_edges)
    uncovered = _uncovered(pred, data)
    values, errors = moved.values, moved.errors
    values[uncovered] = np.nan
    errors[uncovered] = np.nan
    return moved.replace(energy_edges=data.energy_edges, q_edges=data.q_edges,
                         values=values, errors=errors)


def _data_arrays(data):
    """(values, floored errors, valid mask, n_zero_error, floor); checks the data."""
    y, e = data.values, data.errors
    valid = np.isfinite(y) & np.isfinite(e)
    if not valid.any():
        raise InputError("the data have no finite bins (all NaN); nothing to subtract from")
    if np.any(e[valid] < 0):
        raise InputError("the data have negative errors")
    positive = e[valid & (e > 0)]
    if positive.size == 0:
        raise InputError("the data have zero error in every bin; errors are needed to "
                         "weight the fit and to propagate (e.g. reduce keeping counting "
                         "errors)")
    floor = float(positive.min())
    zero = valid & (e == 0)
    errors = np.where(zero, floor, e)
    return y, errors, valid, int(np.count_nonzero(zero)), floor


# ---------------------------------------------------------------------------
# fit
# ---------------------------------------------------------------------------
def _solve(y, p, var, background):
    """Weighted least squares y = s p (+ b). Returns (params, covariance, chi2)."""
    w = 1.0 / var
    if background:
        a11, a12, a22 = np.sum(w * p * p), np.sum(w * p), np.sum(w)
        b1, b2 = np.sum(w * p * y), np.sum(w * y)
        normal = np.array([[a11, a12], [a12, a22]])
        det = a11 * a22 - a12 * a12
        if not det > 1e-12 * a11 * a22:
            raise InputError("the scale and the background cannot be told apart in the fit "
                             "region (the prediction is flat or zero there); widen the "
                             "region or fit without a background")
        cov = np.linalg.inv(normal)
        params = cov @ np.array([b1, b2])
    else:
        a11 = np.sum(w * p * p)
        if not a11 > 0:
            raise InputError("the prediction is zero in the whole fit region; choose a region "
                             "where it has intensity")
        cov = np.array([[1.0 / a11, 0.0], [0.0, 0.0]])
        params = np.array([np.sum(w * p * y) / a11, 0.0])
    model = params[0] * p + params[1]
    chi2 = float(np.sum(w * (y - model) ** 2))
    return params, cov, chi2


def fit_scale(data, pred, region=None, background=False, weighting="auto"):
    """Fit ``data ~ s * pred (+ b)`` over a region by weighted least squares.

    Parameters
    ----------
    data : Spectrum
        Measured map or 1D spectra; errors required (see module rules).
    pred : Spectrum
        Prediction, on the data's bins or rebinned onto them here.
    region : FitRegion, optional
        Default ``FitRegion()``: |Q| >= DEFAULT_FIT_Q_MIN, all energies (1D
        data: all bins).
    background : bool
        Also fit a flat background b (data units).
    weighting : {'auto', 'data', 'poisson'}
        See the module rules; the one used is in ``ScaleFit.weighting``.

    Returns
    -------
    ScaleFit

    Raises
    ------
    InputError
        Bad data (see :func:`prediction_on_data`), an empty fit region, a
        prediction without intensity there, or too few bins.
    """
    region = FitRegion() if region is None else region
    weighting = str(weighting).lower()
    if weighting not in WEIGHTINGS:
        raise InputError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    pred = prediction_on_data(data, pred)
    y, err, valid, n_zero, floor = _data_arrays(data)
    use = region.bins(data) & valid & np.isfinite(pred.values)
    perr = np.nan_to_num(pred.errors, nan=0.0)
    n_params = 2 if background else 1
    n = int(np.count_nonzero(use))
    if n == 0:
        raise InputError(f"the fit region ({region.describe(data)}) holds no bin with both "
                         "data and prediction; widen it (FitQRange / FitEnergyRange)")
    if n <= n_params:
        raise InputError(f"the fit region ({region.describe(data)}) holds only {n} usable "
                         f"bins for {n_params} parameters; widen it")
    if weighting == "auto":
        weighting = "data" if np.any(y[valid] < 0) else "poisson"
    yy, pp, ee, pe = y[use], pred.values[use], err[use], perr[use]
    var_data = ee ** 2
    if weighting == "poisson":
        per_unit = np.where(yy > 0, var_data / np.where(yy > 0, yy, 1.0), np.nan)
        known = np.isfinite(per_unit) & (ee > 0)
        fill = float(np.median(per_unit[known])) if known.any() else floor ** 2
        per_unit = np.where(known, per_unit, fill)
    params, cov, chi2 = _solve(yy, pp, var_data, background)
    for _ in range(_POISSON_ITERATIONS if (weighting == "poisson" or pe.any()) else 0):
        if weighting == "poisson":
            model = np.maximum(params[0] * pp + params[1], 0.0)
            var = np.maximum(per_unit * model, per_unit * 1e-3 * max(np.max(model), 1e-300))
        else:
            var = var_data.copy()
        var = var + (params[0] * pe) ** 2
        new, cov, chi2 = _solve(yy, pp, var, background)
        done = np.allclose(new, params, rtol=1e-10, atol=1e-14 * (1 + abs(params).max()))
        params = new
        if done:
            break
    dof = n - n_params
    inflated = chi2 / dof > 1.0
    if inflated:
        cov = cov * (chi2 / dof)
    return ScaleFit(scale=float(params[0]), scale_error=float(math.sqrt(cov[0, 0])),
                    background=float(params[1]),
                    background_error=float(math.sqrt(max(cov[1, 1], 0.0))),
                    covariance=cov, chi2=chi2, dof=dof, n_bins=n, n_zero_error=n_zero,
                    zero_error_floor=floor, method="FitHighQ", weighting=weighting,
                    fit_background=bool(background), inflated=bool(inflated),
                    region=region.describe(data))


def fixed_scale(scale, scale_error=0.0):
    """A :class:`ScaleFit` for a scale given by the user (method 'Fixed').

    Parameters
    ----------
    scale : float
        Finite.
    scale_error : float
        >= 0, propagated into the residual's errors.
    """
    scale, scale_error = float(scale), float(scale_error)
    if not math.isfinite(scale):
        raise InputError(f"ScaleFactor must be a finite number, got {scale}")
    if not (math.isfinite(scale_error) and scale_error >= 0):
        raise InputError(f"ScaleFactorError must be >= 0, got {scale_error}")
    return ScaleFit(scale=scale, scale_error=scale_error,
                    covariance=np.array([[scale_error ** 2, 0.0], [0.0, 0.0]]),
                    method="Fixed", weighting="", region="none (fixed scale)")


# ---------------------------------------------------------------------------
# subtraction and integration
# ---------------------------------------------------------------------------
def _model_and_variance(data, pred, fit):
    """(y, data variance, model s p + b, model variance incl. prediction errors, valid)."""
    y, err, valid, _, _ = _data_arrays(data)
    p = pred.values
    pe = np.nan_to_num(pred.errors, nan=0.0)
    cov = fit.covariance
    model = fit.scale * p + fit.background
    var_model = (fit.scale * pe) ** 2 + p * p * cov[0, 0] + 2 * p * cov[0, 1] + cov[1, 1]
    valid = valid & np.isfinite(p)
    return y, err ** 2, model, var_model, valid


def subtract(data, pred, fit):
    """The residual ``data - (s * pred + b)`` with propagated errors.

    Parameters
    ----------
    data : Spectrum
    pred : Spectrum
        Rebinned onto the data when its bins differ.
    fit : ScaleFit

    Returns
    -------
    Spectrum
        On the data's bins (shape ``data.shape``), NaN where the data or the
        prediction is missing; metadata: the data's, plus :meth:`ScaleFit.logs`
        and the prediction's method/model (``prediction_method``,
        ``prediction_model``, ``prediction_model_version``).
    """
    pred = prediction_on_data(data, pred)
    y, var_data, model, var_model, valid = _model_and_variance(data, pred, fit)
    values = np.where(valid, y - model, np.nan)
    errors = np.where(valid, np.sqrt(var_data + var_model), np.nan)
    meta = dict(data.metadata)
    meta.update(fit.logs())
    pm = pred.metadata
    meta["prediction_method"] = str(pm.get("prediction_method", pm.get("method", "unknown")))
    meta["prediction_model"] = str(pm.get("model", "unknown"))
    meta["prediction_model_version"] = str(pm.get("model_version", pm.get("engine", "")))
    if pm.get("formula"):
        meta["prediction_formula"] = str(pm["formula"])
    meta["contribution"] = "residual (data - scaled prediction)"
    return data.replace(values=values, errors=errors, metadata=meta)


def integrate_q(data, pred, fit, q_range=DEFAULT_MAGNETIC_Q_RANGE):
    """The residual integrated over a |Q| range, as a function of energy transfer.

    Sums ``R * dQ`` over the parts of |Q| bins inside ``q_range``; bins without
    data (NaN) contribute nothing, so near the kinematic limits the integral
    covers only the measured part of the range. The error keeps the correlations
    through the scale: per energy bin
    ``var = sum(w^2 (var_data + (s sigma_pred)^2)) + W^T C W`` with
    ``W = (sum w pred, sum w)`` and C the (scale, background) covariance.

    Parameters
    ----------
    data, pred : Spectrum
        A |Q|-E map and its prediction.
    fit : ScaleFit
    q_range : (float, float)
        1/angstrom.

    Returns
    -------
    Spectrum
        One row, ``'magnetic |Q| lo-hi'``, values per meV (data units x 1/angstrom),
        NaN where no bin in the range has data.
    """
    if not data.is_map:
        raise InputError("the magnetic intensity integrates over |Q|: the data must be a "
                         "|Q|-E map")
    lo, hi = parse_range(q_range, "magnetic |Q| range")
    pred = prediction_on_data(data, pred)
    y, var_data, model, var_model_unused, valid = _model_and_variance(data, pred, fit)
    q = data.q_edges
    width = np.clip(np.minimum(q[1:], hi) - np.maximum(q[:-1], lo), 0.0, None)  # (n_q,)
    if not width.any():
        raise InputError(f"magnetic |Q| range {lo:g}..{hi:g} 1/A lies outside the data's "
                         f"|Q| range {q[0]:g}..{q[-1]:g}")
    w = np.where(valid, width[:, None], 0.0)                                    # (n_q, n_e)
    resid = np.where(valid, y - model, 0.0)
    p = np.where(valid, pred.values, 0.0)
    pe = np.where(valid, np.nan_to_num(pred.errors, nan=0.0), 0.0)
    values = np.sum(w * resid, axis=0)
    independent = np.sum(w * w * (np.where(valid, var_data, 0.0) + (fit.scale * pe) ** 2),
                         axis=0)
    wp, ws = np.sum(w * p, axis=0), np.sum(w, axis=0)
    cov = fit.covariance
    correlated = wp * wp * cov[0, 0] + 2 * wp * ws * cov[0, 1] + ws * ws * cov[1, 1]
    errors = np.sqrt(independent + correlated)
    empty = ws == 0
    values[empty] = np.nan
    errors[empty] = np.nan
    meta = dict(data.metadata)
    meta.update(fit.logs())
    meta["magnetic_q_range"] = f"{max(lo, q[0]):g},{min(hi, q[-1]):g}"
    meta["contribution"] = "residual integrated over |Q|"
    label = f"magnetic |Q| {max(lo, q[0]):g}-{min(hi, q[-1]):g}"
    return Spectrum(energy_edges=data.energy_edges, values=values[None, :],
                    errors=errors[None, :], labels=[label],
                    y_label=f"{data.y_label} x 1/A, integrated over |Q|",
                    display_energy_unit=data.display_energy_unit,
                    metadata=meta)


def subtract_prediction(data, pred, method="FitHighQ", region=None, background=False,
                        weighting="auto", scale=1.0, scale_error=0.0,
                        magnetic_q_range=None):
    """The whole subtraction in one call (what the Mantid algorithm and the CLI run).

    Parameters
    ----------
    data, pred : Spectrum
    method : {'FitHighQ', 'Fixed'}
    region : FitRegion, optional
        FitHighQ only.
    background : bool
        FitHighQ only: also fit a flat background.
    weighting : {'auto', 'data', 'poisson'}
    scale, scale_error : float
        Fixed only.
    magnetic_q_range : (float, float), optional
        When given (maps only), also integrate the residual over this |Q| range.

    Returns
    -------
    SubtractionResult
    """
    on_data = prediction_on_data(data, pred)
    _data_arrays(data)   # data problems first, whatever the method
    if method == "FitHighQ":
        fit = fit_scale(data, on_data, region, background=background, weighting=weighting)
    elif method == "Fixed":
        fit = fixed_scale(scale, scale_error)
    else:
        raise InputError(f"ScaleMethod must be 'FitHighQ' or 'Fixed', got {method!r}")
    residual = subtract(data, on_data, fit)
    magnetic = None
    if magnetic_q_range is not None:
        magnetic = integrate_q(data, on_data, fit, magnetic_q_range)
    return SubtractionResult(residual=residual, fit=fit, prediction=on_data,
                             magnetic=magnetic)


# ---------------------------------------------------------------------------
# synthetic measurements (validation, examples)
# ---------------------------------------------------------------------------
def magnetic_form_factor_squared(ion, q):
    """|<j0>(Q)|^2 of a magnetic ion from periodictable (dipole approximation).

    Parameters
    ----------
    ion : str
        Element and charge, e.g. ``'Ru1+'``, ``'Mn2+'``, ``'Cu2+'``.
    q : array_like
        |Q| in 1/angstrom.
    """
    import re

    import periodictable
    match = re.fullmatch(r"([A-Z][a-z]?)(\d+)\+", str(ion).strip())
    if not match:
        raise InputError(f"magnetic ion {ion!r}: write it as element and charge, e.g. 'Mn2+'")
    element, charge = match.group(1), int(match.group(2))
    try:
        ff = getattr(periodictable, element).ion[charge].magnetic_ff[charge]
    except (AttributeError, KeyError, IndexError):
        raise InputError(f"periodictable has no magnetic form factor for {ion}") from None
    return np.asarray(ff.j0_Q(np.asarray(q, dtype=float)), dtype=float) ** 2


def poisson_measurement(expected, counts_per_unit, rng):
    """A counting measurement of ``expected``: Poisson counts, normalised back.

    Parameters
    ----------
    expected : Spectrum
        Expected intensity (NaN bins stay NaN).
    counts_per_unit : float
        Expected counts in a bin per unit of intensity (the same in every bin).
    rng : numpy.random.Generator

    Returns
    -------
    Spectrum
        values ``n / k`` and errors ``sqrt(n) / k`` (zero for zero counts, as
        Mantid gives them), k = ``counts_per_unit``.
    """
    lam = np.nan_to_num(expected.values, nan=0.0) * counts_per_unit
    if np.any(lam < 0):
        raise InputError("expected intensity must be >= 0 for Poisson counts")
    counts = rng.poisson(lam).astype(float)
    nan = ~np.isfinite(expected.values)
    values = np.where(nan, np.nan, counts / counts_per_unit)
    errors = np.where(nan, np.nan, np.sqrt(counts) / counts_per_unit)
    return expected.replace(values=values, errors=errors)
