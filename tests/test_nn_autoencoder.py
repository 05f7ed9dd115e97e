"""Autoencoders of maps: a tiny one trains in seconds, resumes, saves and loads with checks."""
import json

import numpy as np
import pytest

from insnet_core.nn.autoencoder import (AEConfig, AETrainSettings, ConvAE, DenseAE,
                                        load_autoencoder, train_autoencoder)
from insnet_core.nn.card import ModelFileError

TINY = AEConfig(kind="conv", latent=6, channels=(2, 4, 4, 4, 4))


def tiny_maps(n, seed):
    """Max-normalised maps: one or two Gaussian ridges at random |Q| and E."""
    rng = np.random.default_rng(seed)
    q, e = np.meshgrid(np.arange(300), np.arange(300), indexing="ij")
    out = np.zeros((n, 300, 300), dtype=np.float32)
    for k in range(n):
        for _ in range(rng.integers(1, 3)):
            e0, w = rng.uniform(30, 270), rng.uniform(4, 12)
            out[k] += np.exp(-0.5 * ((e - e0) / w) ** 2) * (q / 300.0) ** 2
        out[k] /= out[k].max()
    return out


def test_shapes_and_latent_normalisation():
    import torch
    x = torch.rand(3, 300, 300)
    for model in (ConvAE(TINY), DenseAE(AEConfig(kind="dense", latent=5, dense_hidden=(16, 8)))):
        z = model.encode(x)
        assert z.shape == (3, model.config.latent)
        assert torch.all(z >= 0) and torch.allclose(z.amax(dim=1), torch.ones(3))
        y = model.decode(z)
        assert y.shape == (3, 300, 300) and torch.all((y >= 0) & (y <= 1))


def test_tiny_autoencoder_lowers_its_loss_and_resumes(tmp_path):
    train, val = tiny_maps(24, 1), tiny_maps(8, 2)
    settings = AETrainSettings(epochs=5, batch_size=4, lr=5e-3, seed=3, threads=1)
    card = train_autoencoder(train, val, tmp_path / "ae", TINY, settings, log=lambda m: None)
    hist = json.loads((tmp_path / "ae" / "history.json").read_text())
    assert hist[-1]["validation"] < 0.5 * hist[0]["validation"]
    assert card["parameters"] < 5e4 and card["training"]["epochs_run"] == 5
    model, card2 = load_autoencoder(tmp_path / "ae")
    assert card2["model"]["latent"] == 6
    # interrupted after 2 epochs, resumed to 5: the same history as the straight run
    AE2 = tmp_path / "ae2"
    train_autoencoder(train, val, AE2, TINY, AETrainSettings(**{**settings.__dict__, "epochs": 2}),
                      log=lambda m: None)
    train_autoencoder(train, val, AE2, TINY, settings, resume=True, log=lambda m: None)
    h2 = json.loads((AE2 / "history.json").read_text())
    assert [round(h["validation"], 6) for h in h2] == [round(h["validation"], 6) for h in hist]


def test_card_mismatch_is_a_clear_error(tmp_path):
    train, val = tiny_maps(8, 1), tiny_maps(4, 2)
    train_autoencoder(train, val, tmp_path / "ae", TINY,
                      AETrainSettings(epochs=1, batch_size=8, threads=1), log=lambda m: None)
    path = tmp_path / "ae" / "card.json"
    card = json.loads(path.read_text())
    card["map_grid"]["e_stop"] = 200.0
    path.write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match="map_grid"):
        load_autoencoder(tmp_path / "ae")
    card["map_grid"]["e_stop"] = 150.0
    card["model"]["channels"] = [2, 4, 4, 4, 8]
    path.write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match="weights do not fit"):
        load_autoencoder(tmp_path / "ae")
