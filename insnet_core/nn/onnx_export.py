"""Autoencoder halves as ONNX files, and running them with onnxruntime.

:func:`export_autoencoder` writes ``encoder.onnx`` (brightened maps (n, 300, 300) ->
latents (n, 50)) and ``decoder.onnx`` (latents -> brightened maps), batch size free, at
opset :data:`OPSET` (recorded in the card). :class:`OnnxHalf` runs one of them: the CUDA
provider when onnxruntime offers it (``onnxruntime-gpu`` on a machine with a GPU), the CPU
provider otherwise, chosen when the session opens and logged. This module imports torch
only to export; running needs onnxruntime alone.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np

from insnet_core import InputError

__all__ = ["OPSET", "export_autoencoder", "choose_providers", "OnnxHalf"]

OPSET = 17
_LOG = logging.getLogger("insnet")


def export_autoencoder(model, folder):
    """Write ``encoder.onnx`` and ``decoder.onnx`` of a torch autoencoder into ``folder``."""
    import torch

    folder = Path(folder)
    model = model.eval()

    class _Encoder(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, maps):
            return self.m.encode(maps)

    class _Decoder(_Encoder):
        def forward(self, latent):
            return self.m.decode(latent)

    maps = torch.zeros((2,) + tuple(_map_shape()), dtype=torch.float32)
    latent = torch.full((2, model.config.latent), 0.5, dtype=torch.float32)
    # the TorchScript exporter (dynamo=False) is chosen on purpose: the torch.export one
    # needs onnxscript, and these two small graphs need nothing it adds
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        for half, arg, name, inp, outp in ((_Encoder(model), maps, "encoder", "maps", "latent"),
                                           (_Decoder(model), latent, "decoder", "latent",
                                            "maps")):
            torch.onnx.export(half, (arg,), str(folder / f"{name}.onnx"), opset_version=OPSET,
                              input_names=[inp], output_names=[outp],
                              dynamic_axes={inp: {0: "n"}, outp: {0: "n"}}, dynamo=False)
    return folder / "encoder.onnx", folder / "decoder.onnx"


def _map_shape():
    from insnet_core.nn.mapdata import MAP_SHAPE
    return MAP_SHAPE


def choose_providers(available=None, prefer_gpu=True):
    """onnxruntime providers to use, best first: CUDA when offered, then CPU."""
    if available is None:
        import onnxruntime
        available = onnxruntime.get_available_providers()
    chosen = []
    if prefer_gpu and "CUDAExecutionProvider" in available:
        chosen.append("CUDAExecutionProvider")
    chosen.append("CPUExecutionProvider")
    return chosen


class OnnxHalf:
    """One ONNX half (encoder or decoder) in an onnxruntime session.

    Parameters
    ----------
    path : path
        ``encoder.onnx`` or ``decoder.onnx``.
    threads : int, optional
        Intra-op threads of the CPU provider (onnxruntime's default when None).
    prefer_gpu : bool
        Use the CUDA provider when onnxruntime offers it.
    """

    def __init__(self, path, threads=None, prefer_gpu=True):
        try:
            import onnxruntime
        except ImportError as exc:
            raise InputError(f"the 2D route needs onnxruntime (pip install 'insnet[ml]'): "
                             f"{exc}") from None
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"{self.path}: ONNX file missing from the model folder")
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        wanted = choose_providers(onnxruntime.get_available_providers(), prefer_gpu)
        try:
            self.session = onnxruntime.InferenceSession(str(self.path), options,
                                                        providers=wanted)
        except Exception as exc:  # onnxruntime raises its own classes for bad files
            raise InputError(f"{self.path}: onnxruntime cannot open it "
                             f"({type(exc).__name__}: {str(exc)[:200]})") from None
        self.providers = self.session.get_providers()
        self.input = self.session.get_inputs()[0].name
        _LOG.info("%s: onnxruntime provider %s", self.path.name, self.providers[0])

    def __call__(self, x):
        """Run on a float32 batch (numpy); returns the output as numpy float32."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        return self.session.run(None, {self.input: x})[0]
