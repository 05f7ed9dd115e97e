"""insnet_core.subtraction: scale fit, residual errors, magnetic intensity, input checks.

The validation builds a synthetic SEQUOIA measurement (Ei = 160 meV, 5 K) from the physics
engine for SiF4 (phonondb mp-1818): phonons x known scale + flat background + a magnetic
peak x the squared Ru+ form factor, with Poisson noise at two count levels.
"""
import numpy as np
import pytest

from insnet_core import InputError
from insnet_core.spectrum import Spectrum
from insnet_core.subtraction import (FitRegion, fit_scale, fixed_scale, integrate_q,
                                     magnetic_form_factor_squared, parse_range,
                                     poisson_measurement, prediction_on_data, subtract,
                                     subtract_prediction)

SCALE, BACKGROUND_FRACTION = 2.5, 0.01
MAG_E, MAG_SIGMA, MAG_FRACTION = 15.0, 3.0, 0.3
MAG_Q_MAX = 3.0   # 1/A; the default fit region starts at 4
# expected counts in the brightest phonon bin: low and high count levels
COUNT_LEVELS = {"low": 50.0, "high": 5000.0}


@pytest.fixture(scope="module")
def prediction(example_dir):
    from insnet_core.simulate import simulate
    e = np.arange(-20.0, 150.0 + 1e-9, 1.0)
    q = np.arange(0.0, 10.0 + 1e-9, 0.1)
    return simulate(example_dir / "mp-1818-20180417", instrument="SEQUOIA", ei=160.0,
                    temperature=5.0, orders=2, energy_edges=e, q_edges=q).total


def _truth(pred):
    """(expected data, injected magnetic signal, background) on the prediction's bins."""
    peak = np.nanmax(pred.values)
    background = BACKGROUND_FRACTION * SCALE * peak
    e, q = pred.energy_centres, pred.q_centres
    # confined to low |Q| (as the case): the Ru+ form factor's tail (1.4 % at 4 1/A)
    # would otherwise enter the fit region and bias the scale by a few of its sigmas
    mag = (MAG_FRACTION * SCALE * peak * np.exp(-0.5 * ((e - MAG_E) / MAG_SIGMA) ** 2)[None, :]
           * (magnetic_form_factor_squared("Ru1+", q) * (q < MAG_Q_MAX))[:, None])
    mag = np.where(np.isnan(pred.values), np.nan, mag)
    expected = pred.replace(values=SCALE * pred.values + background + mag)
    return expected, mag, background


def _measure(pred, level, seed):
    expected, mag, background = _truth(pred)
    k = COUNT_LEVELS[level] / (SCALE * np.nanmax(pred.values))
    return poisson_measurement(expected, k, np.random.default_rng(seed)), mag, background


def validation_numbers(pred, level, seed=7, weighting="auto"):
    """Fitted scale, magnetic integral and pulls of one synthetic measurement."""
    data, mag, background = _measure(pred, level, seed)
    out = subtract_prediction(data, pred, background=True, weighting=weighting,
                              magnetic_q_range=(0.0, 2.0))
    fit = out.fit
    region = FitRegion().bins(data) & np.isfinite(out.residual.values)
    pulls = (out.residual.values - mag)[region] / out.residual.errors[region]
    # magnetic integral over 0-2 1/A and 5-25 meV (the peak +- 3.3 sigma)
    width = np.clip(np.minimum(pred.q_edges[1:], 2.0) - pred.q_edges[:-1], 0, None)
    injected_e = np.nansum(np.where(np.isfinite(data.values), mag, 0.0) * width[:, None],
                           axis=0)
    window = (pred.energy_centres > 5.0) & (pred.energy_centres < 25.0)
    de = pred.energy_widths[window]
    measured = float(np.sum(out.magnetic.values[0][window] * de))
    measured_err = float(np.sqrt(np.sum((out.magnetic.errors[0][window] * de) ** 2)))
    injected = float(np.sum(injected_e[window] * de))
    return {"scale": fit.scale, "scale_error": fit.scale_error,
            "scale_pull": (fit.scale - SCALE) / fit.scale_error,
            "background_pull": (fit.background - background) / fit.background_error,
            "chi2_dof": fit.chi2_dof, "weighting": fit.weighting,
            "magnetic_rel_error": measured / injected - 1.0,
            "magnetic_rel_sigma": measured_err / injected,
            "pull_mean": float(pulls.mean()), "pull_std": float(pulls.std()),
            "n_pulls": int(pulls.size), "n_zero_error": fit.n_zero_error}


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize("level", ["low", "high"])
def test_validation_synthetic_sequoia_map(prediction, level):
    r = validation_numbers(prediction, level)
    print(level, r)
    assert r["weighting"] == "poisson"            # counting data: auto picks Poisson
    assert abs(r["scale_pull"]) < 3.0
    # within 2 sigma is a statement about the ensemble: over 12 noise draws the pulls of the
    # fitted scale average to 0 (within 2/sqrt(12)) and most fall within 2 sigma
    pulls = np.array([validation_numbers(prediction, level, seed=s)["scale_pull"]
                      for s in range(100, 112)])
    assert abs(pulls.mean()) < 2.0 / np.sqrt(pulls.size)
    assert np.sum(np.abs(pulls) < 2.0) >= 10
    assert abs(r["background_pull"]) < 3.0
    assert abs(r["magnetic_rel_error"]) < 3.0 * r["magnetic_rel_sigma"]
    if level == "high":
        assert abs(r["magnetic_rel_error"]) < 0.05
        assert 0.8 < r["chi2_dof"] < 1.2
        assert abs(r["pull_mean"]) < 0.1 and abs(r["pull_std"] - 1.0) < 0.1
    else:
        # A few counts per bin: errors sqrt(n) (zero counts floored at one count) are not
        # Gaussian, the pulls are narrower (std ~0.8) and skewed; the fit is still unbiased.
        assert 0.6 < r["pull_std"] < 1.0


def test_data_weights_are_biased_at_low_counts(prediction):
    """Why 'auto' takes Poisson weights for counting data: 1/sigma_data^2 weights
    pull the scale far below the truth when bins hold few counts."""
    poisson = validation_numbers(prediction, "low", weighting="poisson")
    data = validation_numbers(prediction, "low", weighting="data")
    assert abs(poisson["scale_pull"]) < 2.0
    assert data["scale_pull"] < -4.0


# --------------------------------------------------------------------------- Monte Carlo
def test_error_propagation_matches_monte_carlo(prediction):
    """Resample the data (Poisson) and refit: the spread of the residual and of the scale
    equals the propagated errors."""
    pred = prediction.rebin(energy_edges=np.arange(-20.0, 150.0 + 1e-9, 4.0),
                            q_edges=np.arange(0.0, 10.0 + 1e-9, 0.5))
    expected, mag, background = _truth(pred)
    k = 400.0 / (SCALE * np.nanmax(pred.values))
    rng = np.random.default_rng(11)
    residuals, sigmas, scales, scale_errors = [], [], [], []
    for _ in range(300):
        data = poisson_measurement(expected, k, rng)
        out = subtract_prediction(data, pred, background=True)
        residuals.append(out.residual.values)
        sigmas.append(out.residual.errors)
        scales.append(out.fit.scale)
        scale_errors.append(out.fit.scale_error)
    residuals, sigmas = np.array(residuals), np.array(sigmas)
    good = np.all(np.isfinite(residuals), axis=0)
    busy = good & (expected.values * k > 20)          # sqrt(n) is a fair sigma there
    ratio = np.std(residuals, axis=0)[busy] / np.mean(sigmas, axis=0)[busy]
    scale_ratio = np.std(scales) / np.mean(scale_errors)
    print("MC residual spread / propagated sigma: median %.3f, 5-95%% %.3f-%.3f over %d bins; "
          "scale spread / sigma %.3f" % (np.median(ratio), *np.percentile(ratio, [5, 95]),
                                         ratio.size, scale_ratio))
    assert abs(np.median(ratio) - 1.0) < 0.05
    assert abs(scale_ratio - 1.0) < 0.15


def test_prediction_and_scale_errors_propagate_like_monte_carlo():
    """sigma^2 = sigma_data^2 + (s sigma_pred)^2 + (pred sigma_s)^2 against resampling
    the data, the prediction (an ML-like per-bin uncertainty) and the scale."""
    rng = np.random.default_rng(3)
    e = np.linspace(0.0, 50.0, 26)
    pred_v = rng.uniform(1.0, 5.0, (4, 25))
    pred_e = 0.1 * pred_v
    data_v = rng.uniform(5.0, 10.0, (4, 25))
    data_e = np.full_like(data_v, 0.3)
    s, s_err = 1.7, 0.05
    data = Spectrum(e, data_v, data_e, q_edges=np.linspace(0, 4, 5))
    pred = Spectrum(e, pred_v, pred_e, q_edges=np.linspace(0, 4, 5))
    out = subtract(data, pred, fixed_scale(s, s_err))
    assert out.metadata["subtraction_scale_method"] == "Fixed"
    n = 20000
    draws = (data_v + data_e * rng.standard_normal((n, 4, 25))
             - (s + s_err * rng.standard_normal((n, 1, 1)))
             * (pred_v + pred_e * rng.standard_normal((n, 4, 25))))
    ratio = draws.std(axis=0) / out.errors
    print("MC (data, prediction and scale resampled) / propagated sigma: mean %.4f, std %.4f"
          % (ratio.mean(), ratio.std()))
    assert np.allclose(draws.mean(axis=0), out.values, atol=0.05)
    assert abs(ratio.mean() - 1.0) < 0.02 and ratio.std() < 0.03


# --------------------------------------------------------------------------- mechanics
def _small(values=None, errors=None, q=True):
    """4 x 10 map (or 4 rows of 1D spectra); errors 0.5 when given as None for data."""
    e = np.linspace(0.0, 20.0, 11)
    v = np.arange(1.0, 41.0).reshape(4, 10) if values is None else values
    err = np.zeros_like(v) if errors is None else errors
    return Spectrum(e, v, err, q_edges=np.linspace(0.0, 8.0, 5) if q else None)


def test_exact_scale_and_background_recovered():
    pred = _small()
    data = pred.replace(values=3.0 * pred.values + 2.0, errors=np.full((4, 10), 0.1))
    fit = fit_scale(data, pred, FitRegion(q_range=(0, np.inf)), background=True,
                    weighting="data")
    assert fit.scale == pytest.approx(3.0, rel=1e-10)
    assert fit.background == pytest.approx(2.0, rel=1e-9)
    assert fit.chi2 == pytest.approx(0.0, abs=1e-12) and fit.dof == 38 and fit.n_bins == 40
    res = subtract(data, pred, fit)
    assert np.allclose(res.values, 0.0, atol=1e-9)
    assert res.metadata["subtraction_scale"] == pytest.approx(3.0)


def test_nan_bins_stay_nan_and_are_not_fitted():
    pred = _small()
    values = 2.0 * pred.values
    values[3, 5] = 1e6                      # would ruin the fit if used
    values[3, 5] = np.nan
    values[0, 0] = np.inf
    data = pred.replace(values=values, errors=np.full((4, 10), 0.5))
    out = subtract_prediction(data, pred, region=FitRegion(q_range=(0, np.inf)))
    assert out.fit.scale == pytest.approx(2.0, rel=1e-10) and out.fit.n_bins == 38
    assert np.isnan(out.residual.values[3, 5]) and np.isnan(out.residual.errors[3, 5])
    assert np.isnan(out.residual.values[0, 0])


def test_zero_error_bins_floored_at_smallest_positive_error():
    pred = _small()
    errors = np.full((4, 10), 0.5)
    errors[0, :3] = 0.0
    errors[1, 1] = 0.2
    data = pred.replace(values=2.0 * pred.values, errors=errors)
    out = subtract_prediction(data, pred, region=FitRegion(q_range=(0, np.inf)),
                              weighting="data")
    assert out.fit.n_zero_error == 3 and out.fit.zero_error_floor == pytest.approx(0.2)
    assert out.residual.metadata["subtraction_zero_error_bins"] == 3
    assert np.allclose(out.residual.errors[0, :3], np.hypot(0.2, pred.values[0, :3]
                                                            * out.fit.scale_error))


def test_prediction_rebinned_onto_data_and_uncovered_bins_nan():
    fine_e = np.linspace(0.0, 16.0, 33)           # covers only 0-16 meV of 0-20
    fine_q = np.linspace(0.0, 8.0, 17)
    pred = Spectrum(fine_e, np.ones((16, 32)), q_edges=fine_q)
    data = _small(values=np.full((4, 10), 3.0), errors=np.full((4, 10), 0.1))
    moved = prediction_on_data(data, pred)
    assert moved.shape == data.shape and np.array_equal(moved.energy_edges, data.energy_edges)
    assert np.allclose(moved.values[:, :8], 1.0)
    assert np.all(np.isnan(moved.values[:, 8:]))
    out = subtract_prediction(data, pred, region=FitRegion(q_range=(0, np.inf)))
    assert out.fit.scale == pytest.approx(3.0) and out.fit.n_bins == 32
    assert np.all(np.isnan(out.residual.values[:, 8:]))


def test_one_data_spectrum_uses_the_average_bank():
    e = np.linspace(10.0, 50.0, 21)
    rows = np.vstack([np.full(20, 1.0), np.full(20, 2.0), np.full(20, 3.0)])
    pred = Spectrum(e, rows, labels=["backward", "forward", "average"])
    data = Spectrum(e, np.full(20, 6.0), np.full(20, 0.1))
    out = subtract_prediction(data, pred)
    assert out.fit.scale == pytest.approx(2.0)
    assert out.residual.labels == data.labels and out.magnetic is None


def test_integrate_q_sums_covered_residual_with_correlated_scale_error():
    pred = _small()
    data = pred.replace(values=2.0 * pred.values + 1.0, errors=np.full((4, 10), 0.5))
    fit = fixed_scale(2.0, 0.1)
    mag = integrate_q(data, pred, fit, (0.0, 3.0))     # rows 0-2 and half of 2-4
    assert mag.shape == (1, 10)
    assert np.allclose(mag.values[0], 1.0 * 2.0 + 1.0 * 1.0)
    wp = 2.0 * pred.values[0] + 1.0 * pred.values[1]
    indep = (2.0 ** 2 + 1.0) * 0.25
    assert np.allclose(mag.errors[0], np.sqrt(indep + (wp * 0.1) ** 2))


def test_form_factor_from_periodictable():
    f2 = magnetic_form_factor_squared("Ru1+", [0.0, 2.0, 4.0])
    assert f2[0] == pytest.approx(1.0, abs=0.01) and f2[2] < 0.02 < f2[1] < 0.5
    with pytest.raises(InputError, match="Xx9"):
        magnetic_form_factor_squared("Xx9+", [1.0])


# --------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("case, match", [
    ("map_vs_1d", "1D spectra"),
    ("no_energy_overlap", "do not overlap"),
    ("all_nan", "all NaN"),
    ("zero_errors", "zero error in every bin"),
    ("empty_region", "holds no bin"),
    ("negative_errors", "negative errors"),
])
def test_bad_inputs_fail_clearly_and_leave_inputs_alone(case, match):
    pred = _small()
    data = _small(values=2.0 * pred.values, errors=np.full((4, 10), 0.5))
    if case == "map_vs_1d":
        pred = _small(q=False)
    elif case == "no_energy_overlap":
        pred = pred.replace(energy_edges=pred.energy_edges + 100.0)
    elif case == "all_nan":
        data = data.replace(values=np.full((4, 10), np.nan))
    elif case == "zero_errors":
        data = data.replace(errors=np.zeros((4, 10)))
    elif case == "negative_errors":
        data = data.replace(errors=-np.ones((4, 10)))
    before = (data.values.copy(), data.errors.copy(), pred.values.copy())
    region = FitRegion(q_range=(20.0, 30.0)) if case == "empty_region" else None
    with pytest.raises(InputError, match=match):
        subtract_prediction(data, pred, region=region)
    assert np.array_equal(before[0], data.values, equal_nan=True)
    assert np.array_equal(before[1], data.errors) and np.array_equal(before[2], pred.values)


def test_ranges_and_fixed_scale_checked():
    assert parse_range("4,", "x") == (4.0, np.inf)
    assert parse_range(",2", "x") == (-np.inf, 2.0)
    assert parse_range("", "x", (0.0, 2.0)) == (0.0, 2.0)
    for bad in ("2,1", "a,b", "1,2,3"):
        with pytest.raises(InputError, match="FitQRange"):
            parse_range(bad, "FitQRange")
    with pytest.raises(InputError, match="ScaleFactorError"):
        fixed_scale(1.0, -1.0)
