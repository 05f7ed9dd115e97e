"""Latent heads: the backbone's pooled features, an MLP to latents."""
import numpy as np
import pytest


def test_backbone_features_are_per_crystal_and_permutation_invariant(tiny_model):
    from insnet_core.nn.predictor import Predictor
    from nn_helpers import database, small_ids
    pred = Predictor(tiny_model)
    db = database()
    structures = [db.structure(m) for m in small_ids(6, max_atoms=4)]
    f = np.stack([e["features"] for e in pred.raw(structures, cache=False, features=True)])
    assert f.shape == (len(structures), 2 * pred.config.out_dim) and np.all(np.isfinite(f))
    # batching does not change a crystal's features; the order of crystals follows the input
    g = np.stack([pred.raw([s], cache=False, features=True)[0]["features"]
                  for s in structures[::-1]])
    np.testing.assert_allclose(g[::-1], f, rtol=1e-5, atol=1e-6)


def test_latent_head_learns_a_smooth_map_of_the_features():
    from insnet_core.nn.latent_head import fit_latent_head, predict_latents
    rng = np.random.default_rng(0)
    w = rng.normal(size=(16, 5)) / 4   # x @ w of order 1: tanh is smooth there
    x = rng.normal(size=(600, 16)).astype(np.float32)
    y = np.tanh(x @ w) * 3 + 1
    model, sc, hist = fit_latent_head(x[:500], y[:500], x[500:], y[500:], epochs=60,
                                      patience=10)
    pred = predict_latents(model, sc, x[500:])
    assert np.mean((pred - y[500:]) ** 2) < 0.1 * np.var(y[500:])
    assert hist[-1] < hist[0]
