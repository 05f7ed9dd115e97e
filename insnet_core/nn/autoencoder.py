"""Autoencoders of S(|Q|,E) maps: 300 x 300 brightened map <-> 50 latent numbers.

* :class:`ConvAE` — the compact autoencoder that ships: strided convolutions down to a
  9 x 9 grid, a linear layer to the 50 latents (positive, then max-normalised to 1 as in
  the reference work), and the mirror (linear, bilinear upsampling + convolutions) back to
  the brightened map (sigmoid output). A few hundred thousand parameters.
* :class:`DenseAE` — the reference work's dense autoencoder 90000-2500-500-50 and mirror
  (226 M parameters), a baseline trained as far as the CPU budget allows.

Both take and return brightened maps ``g(x) = 1 - (1 - x)**3`` of max-normalised maps
(:mod:`insnet_core.nn.mapdata`), shape (n, 300, 300). Training:
:func:`train_autoencoder` (seeded, checkpoints every few minutes, ``resume``, early
stopping on the validation maps); the folder then holds ``weights.safetensors``,
``card.json`` and, through :mod:`insnet_core.nn.onnx_export`, ``encoder.onnx`` and
``decoder.onnx``.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from insnet_core import InputError
from insnet_core.nn.card import ModelFileError, read_json_card, write_json_card
from insnet_core.nn.checkpoint import load_checkpoint, save_checkpoint
from insnet_core.nn.mapdata import MAP_SHAPE, brighten

__all__ = ["AEConfig", "ConvAE", "DenseAE", "build_autoencoder", "AETrainSettings",
           "train_autoencoder", "load_autoencoder", "AE_CARD_FORMAT"]

AE_CARD_FORMAT = 1


@dataclass
class AEConfig:
    """Architecture of an autoencoder (stored in its card)."""

    kind: str = "conv"                        # 'conv' (compact) or 'dense' (reference)
    latent: int = 50
    channels: tuple = (8, 16, 32, 48, 48)     # conv: per stride-2 stage
    dense_hidden: tuple = (2500, 500)         # dense: the reference work's layers

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)
        self.dense_hidden = tuple(int(c) for c in self.dense_hidden)
        if self.kind not in ("conv", "dense"):
            raise InputError(f"autoencoder kind must be 'conv' or 'dense', got {self.kind!r}")
        if self.latent < 1 or not self.channels or min(self.channels) < 1:
            raise InputError("autoencoder latent size and channels must be positive")

    @classmethod
    def from_dict(cls, d):
        return cls(**d)


def _normalised_latent(z):
    """Positive latents, each vector divided by its maximum (the reference work's scaling)."""
    z = torch.nn.functional.softplus(z)
    return z / z.amax(dim=1, keepdim=True).clamp_min(1e-12)


#: Sizes of the conv stages: 300 -> 150 -> 75 -> 38 -> 19 -> 10 (k=4 s=2 p=1 rounds down,
#: so the decoder resizes back to exactly these).
def _stage_sizes(n_stages, size=MAP_SHAPE[0]):
    sizes = [size]
    for _ in range(n_stages):
        sizes.append((sizes[-1] + 2 - 4) // 2 + 1)
    return sizes


class ConvAE(torch.nn.Module):
    """Compact convolutional autoencoder (see the module docstring)."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        ch = (1,) + config.channels
        self.sizes = _stage_sizes(len(config.channels))
        enc = []
        for a, b in zip(ch[:-1], ch[1:]):
            enc += [torch.nn.Conv2d(a, b, 4, stride=2, padding=1), torch.nn.SiLU()]
        self.encoder_convs = torch.nn.Sequential(*enc)
        flat = ch[-1] * self.sizes[-1] ** 2
        self.to_latent = torch.nn.Linear(flat, config.latent)
        self.from_latent = torch.nn.Linear(config.latent, flat)
        dec = []
        rev = ch[::-1]
        prev = rev[0]
        # mirror of the encoder up to half size; the full-size map comes from one
        # convolution after the last upsampling (the 300 x 300 stage is the costly one)
        for i, b in enumerate(rev[1:-1]):
            size = self.sizes[-2 - i]
            dec += [torch.nn.Upsample(size=(size, size), mode="bilinear", align_corners=False),
                    torch.nn.Conv2d(prev, b, 3, padding=1), torch.nn.SiLU()]
            prev = b
        dec.append(torch.nn.Upsample(size=MAP_SHAPE, mode="bilinear", align_corners=False))
        self.decoder_convs = torch.nn.Sequential(*dec)
        self.out = torch.nn.Conv2d(prev, 1, 3, padding=1)
        self.top = ch[-1]

    def encode(self, maps):
        """(n, 300, 300) brightened maps -> (n, latent) max-normalised latents."""
        h = self.encoder_convs(maps.unsqueeze(1))
        return _normalised_latent(self.to_latent(h.flatten(1)))

    def decode(self, latent):
        """(n, latent) -> (n, 300, 300) brightened maps in [0, 1]."""
        s = self.sizes[-1]
        h = torch.nn.functional.silu(self.from_latent(latent)).view(-1, self.top, s, s)
        h = self.decoder_convs(h)
        return torch.sigmoid(self.out(h)).squeeze(1)

    def forward(self, maps):
        return self.decode(self.encode(maps))


class DenseAE(torch.nn.Module):
    """The reference work's dense autoencoder 90000-2500-500-50 (and mirror)."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        sizes = [MAP_SHAPE[0] * MAP_SHAPE[1]] + list(config.dense_hidden) + [config.latent]
        enc, dec = [], []
        for a, b in zip(sizes[:-1], sizes[1:]):
            enc += [torch.nn.Linear(a, b), torch.nn.ReLU()]
        rev = sizes[::-1]
        for a, b in zip(rev[:-1], rev[1:]):
            dec += [torch.nn.Linear(a, b), torch.nn.ReLU()]
        self.enc = torch.nn.Sequential(*enc[:-1])
        self.dec = torch.nn.Sequential(*dec[:-1])

    def encode(self, maps):
        return _normalised_latent(self.enc(maps.flatten(1)))

    def decode(self, latent):
        return torch.sigmoid(self.dec(latent)).view(-1, *MAP_SHAPE)

    def forward(self, maps):
        return self.decode(self.encode(maps))


def build_autoencoder(config):
    return ConvAE(config) if config.kind == "conv" else DenseAE(config)


# ------------------------------------------------------------------ training
@dataclass
class AETrainSettings:
    epochs: int = 60
    batch_size: int = 16
    lr: float = 1e-3
    seed: int = 0
    patience: int = 8
    checkpoint_minutes: float = 5.0
    max_hours: float | None = None
    threads: int | None = None
    extra: dict = field(default_factory=dict)

    def check(self):
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise InputError("epochs and batch size must be >= 1 and lr > 0")
        return self


def _as_tensor(maps):
    return torch.from_numpy(brighten(np.asarray(maps, dtype=np.float32)).astype(np.float32))


def _val_loss(model, maps, batch_size=32):
    model.eval()
    total = 0.0
    with torch.no_grad():
        for s in range(0, len(maps), batch_size):
            x = _as_tensor(maps[s:s + batch_size])
            total += float(((model(x) - x) ** 2).mean(dim=(1, 2)).sum())
    model.train()
    return total / max(len(maps), 1)


def train_autoencoder(train_maps, val_maps, out, config=None, settings=None, resume=False,
                      log=print, info=None):
    """Train an autoencoder on max-normalised maps; returns the card.

    Parameters
    ----------
    train_maps, val_maps : ndarray (n, 300, 300)
        Max-normalised maps (float16 or float32; brightened here, per batch).
    out : path
        Run folder: ``checkpoint.safetensors`` + ``checkpoint.json`` every
        ``checkpoint_minutes`` and each epoch, ``best.safetensors``, and at the
        end ``weights.safetensors`` + ``card.json`` + ``history.json``.
    resume : bool
        Continue from the checkpoint in ``out`` (same config, same batch order).
    info : dict, optional
        Extra card entries (database hash, split, ids counts).
    """
    from safetensors.torch import save_file

    settings = (settings or AETrainSettings()).check()
    config = config or AEConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if settings.threads:
        torch.set_num_threads(int(settings.threads))
    torch.manual_seed(settings.seed)
    model = build_autoencoder(config)
    opt = torch.optim.Adam(model.parameters(), lr=settings.lr)
    state = {"epoch": 0, "batch": 0, "best": math.inf, "best_epoch": 0, "history": [],
             "seconds": 0.0, "config": asdict(config)}
    ck = out / "checkpoint.json"
    if resume and ck.is_file():
        saved = json.loads(ck.read_text())
        if saved["config"] != json.loads(json.dumps(asdict(config))):
            raise InputError(f"{ck}: checkpoint of another autoencoder config {saved['config']}")
        saved = load_checkpoint(out, model, opt)
        state = {k: saved[k] for k in state}
        log(f"resumed at epoch {state['epoch']} batch {state['batch']}")

    def save():
        save_checkpoint(out, model, opt, state, compact=False)

    t_start = time.time()
    seconds0 = state["seconds"]
    last_ck = time.time()
    stop = False
    n = len(train_maps)
    while state["epoch"] < settings.epochs and not stop:
        order = np.random.default_rng(settings.seed + state["epoch"]).permutation(n)
        batches = [order[i:i + settings.batch_size] for i in range(0, n, settings.batch_size)]
        model.train()
        while state["batch"] < len(batches):
            idx = np.sort(batches[state["batch"]])
            x = _as_tensor(train_maps[idx])
            loss = ((model(x) - x) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            state["batch"] += 1
            state["seconds"] = seconds0 + time.time() - t_start
            if time.time() - last_ck > 60 * settings.checkpoint_minutes:
                save()
                last_ck = time.time()
            if settings.max_hours and state["seconds"] > 3600 * settings.max_hours:
                stop = True
                break
        if stop:
            break
        val = _val_loss(model, val_maps)
        state["epoch"] += 1
        state["batch"] = 0
        state["history"].append({"epoch": state["epoch"], "train_last": loss.item(),
                                 "validation": val, "seconds": state["seconds"]})
        log(f"epoch {state['epoch']}: validation {val:.5f} ({state['seconds']:.0f} s)")
        if val < state["best"]:
            state["best"], state["best_epoch"] = val, state["epoch"]
            save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()},
                      str(out / "best.safetensors"))
        save()
        last_ck = time.time()
        if state["epoch"] - state["best_epoch"] >= settings.patience:
            log(f"early stop: no improvement for {settings.patience} epochs")
            break
    if stop:
        save()
        log(f"stopped after {state['seconds'] / 3600:.2f} h (--max-hours); --resume continues")
        return None
    return _finish(out, model, config, settings, state, info or {})


def _finish(out, model, config, settings, state, info):
    from safetensors.torch import load_file, save_file
    best = out / "best.safetensors"
    if best.is_file():
        model.load_state_dict(load_file(str(best)))
    weights = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(weights, str(out / "weights.safetensors"))
    n_params = sum(int(p.numel()) for p in model.parameters())
    card = {"kind": "autoencoder", "name": out.name, "model": asdict(config),
            "map_grid": map_grid(), "preprocessing": "max-normalised, brightened "
            "g(x) = 1 - (1 - x)^3; latent softplus, max-normalised to 1",
            "training": {**asdict(settings), "epochs_run": state["epoch"],
                         "best_epoch": state["best_epoch"], "best_validation_mse_brightened":
                         state["best"], "seconds": state["seconds"]},
            "parameters": n_params, "weights_bytes": (out / "weights.safetensors").stat().st_size,
            **info}
    write_ae_card(out, card)
    (out / "history.json").write_text(json.dumps(state["history"], indent=1))
    return card


def map_grid():
    """The map grid as stored in cards."""
    return {"q_unit": "1/A", "q_start": 0.0, "q_stop": 15.0, "q_bins": MAP_SHAPE[0],
            "e_unit": "meV", "e_start": 0.0, "e_stop": 150.0, "e_bins": MAP_SHAPE[1],
            "resolution_fwhm_meV": 1.5, "temperature_K": 0.0, "layout": "(q, e)"}


def write_ae_card(folder, card):
    """Write an autoencoder's ``card.json`` (format :data:`AE_CARD_FORMAT`)."""
    write_json_card(folder, card, AE_CARD_FORMAT)


def read_ae_card(folder):
    """The card of an autoencoder folder, checked for kind, format and map grid."""
    path, card = read_json_card(folder, "autoencoder")
    if card.get("kind") != "autoencoder":
        raise ModelFileError(f"{path}: kind {card.get('kind')!r}, not an autoencoder")
    if card.get("format_version") != AE_CARD_FORMAT:
        raise ModelFileError(f"{path}: format_version {card.get('format_version')!r}; this "
                             f"insnet reads autoencoder cards of format {AE_CARD_FORMAT}")
    if card.get("map_grid") != map_grid():
        raise ModelFileError(f"{path}: map_grid {card.get('map_grid')} differs from this code's "
                             f"{map_grid()}")
    return card


def load_autoencoder(folder):
    """(torch module in eval mode, card) of an autoencoder folder."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    card = read_ae_card(folder)
    try:
        config = AEConfig.from_dict(card["model"])
    except (TypeError, InputError) as exc:
        raise ModelFileError(f"{folder}: autoencoder settings do not match this code ({exc})") \
            from None
    model = build_autoencoder(config)
    path = Path(folder) / "weights.safetensors"
    try:
        model.load_state_dict(load_file(str(path)), strict=True)
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise ModelFileError(f"{path}: weights do not fit the card ({str(exc)[:200]})") from None
    model.eval()
    return model, card
