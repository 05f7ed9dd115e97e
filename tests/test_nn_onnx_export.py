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
