"""ONNX halves of an autoencoder against torch; provider choice with and without a GPU."""
import logging

import numpy as np
import pytest

from insnet_core import InputError
from insnet_core.nn.autoencoder import ConvAE
from insnet_core.nn.onnx_export import OnnxHalf, choose_providers, export_autoencoder
from test_nn_autoencoder import TINY, tiny_maps


def test_onnx_matches_torch(tmp_path, caplog):
    import torch
    torch.manual_seed(0)
    model = ConvAE(TINY).eval()
    enc_path, dec_path = export_autoencoder(model, tmp_path)
    maps = tiny_maps(3, 5)
    x = 1 - (1 - maps) ** 3
    with caplog.at_level(logging.INFO, logger="insnet"):
        enc, dec = OnnxHalf(enc_path, threads=1), OnnxHalf(dec_path, threads=1)
    assert "onnxruntime provider CPUExecutionProvider" in caplog.text   # no GPU here
    with torch.no_grad():
        z_t = model.encode(torch.from_numpy(x)).numpy()
        y_t = model.decode(torch.from_numpy(z_t)).numpy()
    z = enc(x)
    assert np.abs(z - z_t).max() <= 1e-4
    assert np.abs(dec(z_t) - y_t).max() <= 1e-4
    assert dec(z[:1]).shape == (1, 300, 300)           # batch size is free


def test_provider_choice_falls_back_to_cpu():
    assert choose_providers(["CUDAExecutionProvider", "CPUExecutionProvider"]) == [
        "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers(["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert choose_providers(["AzureExecutionProvider", "CPUExecutionProvider"]) == [
        "CPUExecutionProvider"]
    assert choose_providers(["CUDAExecutionProvider", "CPUExecutionProvider"],
                            prefer_gpu=False) == ["CPUExecutionProvider"]


def test_bad_onnx_files_are_named(tmp_path):
    with pytest.raises(InputError, match="missing"):
        OnnxHalf(tmp_path / "decoder.onnx")
    (tmp_path / "decoder.onnx").write_bytes(b"not onnx")
    with pytest.raises(InputError, match="decoder.onnx: onnxruntime cannot open it"):
        OnnxHalf(tmp_path / "decoder.onnx")


def test_pca_as_an_onnx_linear_autoencoder(tmp_path):
    from insnet_core.nn.mapdata import PCABaseline, brighten
    from insnet_core.nn.onnx_export import export_pca
    maps = tiny_maps(12, 7)
    pca = PCABaseline.fit(maps, n=4, chunk=5)
    enc_path, dec_path = export_pca(pca, tmp_path)
    enc, dec = OnnxHalf(enc_path, threads=1), OnnxHalf(dec_path, threads=1)
    x = brighten(maps)
    np.testing.assert_allclose(enc(x), pca.project(x), atol=2e-4)
    z = pca.project(x)
    np.testing.assert_allclose(dec(z), pca.decode(z), atol=1e-5)
    assert dec(z[:1]).shape == (1, 300, 300)


def test_pca_stored_as_float16_halves_the_bytes_and_computes_in_float32(tmp_path):
    from insnet_core.nn.mapdata import PCABaseline, brighten
    from insnet_core.nn.onnx_export import export_pca
    maps = tiny_maps(12, 7)
    pca = PCABaseline.fit(maps, n=4, chunk=5)
    full = export_pca(pca, tmp_path / "full")
    half = export_pca(pca, tmp_path / "half", storage="float16")
    assert half[1].stat().st_size < 0.55 * full[1].stat().st_size
    rounded = PCABaseline(pca.mean.astype(np.float16).astype(np.float32),
                          pca.components.astype(np.float16).astype(np.float32))
    x = brighten(maps)
    enc, dec = OnnxHalf(half[0], threads=1), OnnxHalf(half[1], threads=1)
    np.testing.assert_allclose(enc(x), rounded.project(x), atol=2e-4)
    z = rounded.project(x)
    np.testing.assert_allclose(dec(z), rounded.decode(z), atol=1e-5)
    # the rounding itself is far below the coders' errors (RMSE ~ 0.02 on real maps)
    assert np.abs(rounded.decode(z) - pca.decode(z)).max() < 2e-3
    with pytest.raises(ValueError, match="storage"):
        export_pca(pca, tmp_path / "bad", storage="int8")
