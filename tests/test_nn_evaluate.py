"""Evaluation metrics and the one-run comparison written into model cards."""
import json
import shutil

import numpy as np
import pytest

from insnet_core.nn.evaluate import evaluate, spectrum_metrics, summarise, update_cards
from insnet_core.units import MEV_PER_CM1


def test_metrics_of_known_pairs():
    rng = np.random.default_rng(0)
    y = rng.random((3, 119))
    m = spectrum_metrics(y, y)
    np.testing.assert_allclose(m["mse"], 0.0, atol=1e-15)
    np.testing.assert_allclose(m["cosine"], 1.0)
    np.testing.assert_allclose(m["w1"], 0.0, atol=1e-12)
    a = np.zeros((1, 119))
    b = np.zeros((1, 119))
    a[0, 40] = b[0, 43] = 2.0                     # a peak moved by 3 bins of 10 cm^-1
    m = spectrum_metrics(a, b)
    assert m["w1"][0] == pytest.approx(30 * MEV_PER_CM1)
    assert m["cosine"][0] == 0.0 and m["mse"][0] == pytest.approx(2 / 119)
    m2 = spectrum_metrics(3 * a, b)               # max-normalised: the scale does not count
    np.testing.assert_allclose(m2["mse"], m["mse"])


def test_one_run_compares_routes_and_writes_cards(tmp_path):
    from insnet_core.nn.model import ModelConfig
    from insnet_core.nn.train import TrainSettings, train
    from nn_helpers import TINY, database, small_ids
    folder = tmp_path / "m"
    train(database(), folder, ModelConfig(**TINY), TrainSettings(epochs=1, batch_size=8),
          ids=small_ids(40, max_atoms=4), log=lambda m: None)
    result = evaluate(database(), [folder], part="test", limit=6, log=lambda m: None)
    assert set(result["routes"]) == {"mean", "oracle", "m:head", "m:partials"}
    s = summarise(result)
    assert s["oracle"]["all"]["cosine"]["median"] > 0.99       # the partials route's ceiling
    assert s["oracle"]["all"]["n"] == 6
    update_cards(result, [folder])
    card = json.loads((folder / "card.json").read_text())
    assert card["format_version"] == 1
    assert card["default_vision_route"] in ("head", "partials")
    assert "median MSE" in card["default_vision_route_reason"]
    assert card["test_metrics"]["crystals"] == 6


def test_coverage_of_a_gaussian_ensemble_is_calibrated():
    from insnet_core.nn.evaluate import coverage
    rng = np.random.default_rng(1)
    true = np.full((400, 119), 0.5)
    true[:, 0] = 1.0                      # max-normalised already
    sigma = np.full_like(true, 0.02)
    mean = true + rng.normal(size=true.shape) * sigma
    c = coverage(mean, sigma, true)
    assert c["within_1_sigma"] == pytest.approx(0.683, abs=0.01)
    assert c["within_2_sigma"] == pytest.approx(0.954, abs=0.01)
    assert coverage(mean, sigma / 10, true)["within_1_sigma"] < 0.2   # overconfident


def test_sigma_scale_fitted_on_one_split_calibrates_another():
    from insnet_core.nn.evaluate import coverage, fit_sigma_model
    rng = np.random.default_rng(2)

    def split(n):
        true = np.full((n, 119), 0.5)
        true[:, 0] = 1.0
        sigma = rng.uniform(0.005, 0.02, size=true.shape)  # the ensemble claims sigma ...
        mean = true + rng.normal(size=true.shape) * 3 * sigma   # ... but errs by 3 sigma
        return mean, sigma, true
    k, b = fit_sigma_model(*split(300))
    assert k == pytest.approx(3.0, rel=0.05)
    assert b < 0.01          # the spread alone calibrates: a floor small against 3 sigma ~ 0.04
    test = split(300)
    assert coverage(*test)["within_1_sigma"] < 0.35
    fixed = coverage(*test, scale=k, floor=b)
    assert fixed["within_1_sigma"] == pytest.approx(0.683, abs=0.015)
    assert fixed["within_2_sigma"] == pytest.approx(0.954, abs=0.015)


def test_a_floor_covers_the_bins_where_every_member_agrees():
    """Members that agree exactly (sigma 0) where they all miss: only a floor covers them."""
    from insnet_core.nn.evaluate import calibrated_sigma, coverage, fit_sigma_model
    rng = np.random.default_rng(3)

    def split(n):
        true = np.full((n, 119), 0.5)
        true[:, 0] = 1.0
        sigma = np.full_like(true, 0.02)
        sigma[:, 60:] = 0.0                                  # all members agree here ...
        err = rng.normal(size=true.shape) * 0.02
        err[:, 60:] = rng.normal(size=(n, 59)) * 0.05       # ... and all miss
        return true + err, sigma, true
    val = split(300)
    k, b = fit_sigma_model(*val)
    assert b > 0.01
    test = split(300)
    scale_only = coverage(*test, scale=k)
    assert scale_only["within_1_sigma"] < 0.55               # half the bins cannot be covered
    fixed = coverage(*test, scale=k, floor=b)
    # one floor for two kinds of bins is a compromise, but close to both levels
    assert fixed["within_1_sigma"] == pytest.approx(0.683, abs=0.05)
    assert fixed["within_2_sigma"] == pytest.approx(0.954, abs=0.04)
    # the floor is relative to the spectrum's maximum
    sig = calibrated_sigma(np.zeros((2, 3)), np.array([[1, 2, 4], [0, 1, 0.5]]), 2.0, 0.1)
    assert np.allclose(sig, [[0.4] * 3, [0.1] * 3])
