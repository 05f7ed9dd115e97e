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

__all__ = ["OPSET", "export_autoencoder", "export_pca", "choose_providers", "OnnxHalf"]

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


def export_pca(pca, folder, storage="float32"):
    """Write a PCA coder as ``encoder.onnx`` / ``decoder.onnx``, the autoencoders' interface.

    Encoder: brightened maps (n, 300, 300) -> scores (n, k) = (x - mean) @ components.T;
    decoder: scores -> clip(scores @ components + mean, 0, 1) as (n, 300, 300). A linear
    autoencoder, so that the map route runs any coder the same way. ``storage``
    ``'float16'`` keeps the components and mean as float16 in the files (half the bytes;
    cast to float32 in the graph, so the arithmetic stays float32).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if storage not in ("float32", "float16"):
        raise ValueError(f"storage must be float32 or float16, got {storage!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows, cols = _map_shape()
    dtype = np.float16 if storage == "float16" else np.float32
    comps = np.asarray(pca.components, dtype=dtype)
    mean = np.asarray(pca.mean, dtype=dtype)
    k = comps.shape[0]

    def const(name, array):
        return numpy_helper.from_array(np.asarray(array), name)

    def stored(name):
        """Nodes turning stored constant ``name`` into float32 tensor ``name + '_f'``."""
        return [helper.make_node("Cast", [name], [name + "_f"], to=TensorProto.FLOAT)]

    enc = helper.make_graph(
        stored("mean") + stored("components_t") +
        [helper.make_node("Reshape", ["maps", "flat_shape"], ["flat"]),
         helper.make_node("Sub", ["flat", "mean_f"], ["centred"]),
         helper.make_node("MatMul", ["centred", "components_t_f"], ["latent"])],
        "pca_encoder",
        [helper.make_tensor_value_info("maps", TensorProto.FLOAT, ["n", rows, cols])],
        [helper.make_tensor_value_info("latent", TensorProto.FLOAT, ["n", k])],
        [const("flat_shape", np.array([-1, rows * cols], dtype=np.int64)),
         const("mean", mean), const("components_t", np.ascontiguousarray(comps.T))])
    dec = helper.make_graph(
        stored("components") + stored("mean") +
        [helper.make_node("MatMul", ["latent", "components_f"], ["flat"]),
         helper.make_node("Add", ["flat", "mean_f"], ["shifted"]),
         helper.make_node("Clip", ["shifted", "zero", "one"], ["clipped"]),
         helper.make_node("Reshape", ["clipped", "map_shape"], ["maps"])],
        "pca_decoder",
        [helper.make_tensor_value_info("latent", TensorProto.FLOAT, ["n", k])],
        [helper.make_tensor_value_info("maps", TensorProto.FLOAT, ["n", rows, cols])],
        [const("components", comps), const("mean", mean),
         const("zero", np.array(0.0, dtype=np.float32)),
         const("one", np.array(1.0, dtype=np.float32)),
         const("map_shape", np.array([-1, rows, cols], dtype=np.int64))])
    paths = []
    for graph, name in ((enc, "encoder"), (dec, "decoder")):
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        onnx.checker.check_model(model)
        onnx.save(model, str(folder / f"{name}.onnx"))
        paths.append(folder / f"{name}.onnx")
    return tuple(paths)
