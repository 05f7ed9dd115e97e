"""Model files: weights (safetensors) + ``card.json``; checks on loading.

A model folder ``models/<name>/`` holds

* ``card.json`` — format version, model kind and hyper-parameters
  (:class:`~insnet_core.nn.config.ModelConfig`), the output grids and their
  units, the training elements, database hash and split seed, training
  settings and time, test metrics;
* ``weights.safetensors`` — the state dict (float32 tensors, no pickle), or
  ``member-<k>.safetensors`` for each member of an ensemble.

:func:`load_ensemble` builds what prediction runs (all members in one plain-torch
network, :mod:`insnet_core.nn.fastnet`), :func:`load_models` each member's module (by
default the trainable e3nn one); both refuse, with one message naming the file and the field, a card of another format, grids other
than this code's, or weights that do not fit the configuration.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

from insnet_core import InputError

__all__ = ["CARD_FORMAT", "ModelFileError", "write_card", "read_card", "save_members",
           "assemble_ensemble", "unseen_elements",
           "load_models", "load_ensemble", "vision_grid", "dos_grid"]

#: Version of the card + weights layout this code reads and writes.
CARD_FORMAT = 1
_CARD = "card.json"


class ModelFileError(InputError):
    """A model folder that this code cannot use."""


def vision_grid():
    """The VISION head's grid as stored in cards (cm^-1 bin edges)."""
    return {"unit": "cm^-1", "start": 10.0, "stop": 1200.0, "width": 10.0, "bins": 119,
            "normalisation": "max"}


def dos_grid(bins, width):
    """The DOS head's grid as stored in cards (meV bins from 0)."""
    return {"unit": "meV", "start": 0.0, "width": float(width), "bins": int(bins),
            "axes": "principal axes of the Debye-Waller tensor, ascending", "normalisation":
            "each axis sums to 1"}


def write_json_card(folder, card, version):
    """Write ``card.json`` with ``format_version`` = ``version`` (atomically, sorted keys)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    card = dict(card, format_version=version)
    tmp = folder / (_CARD + ".tmp")
    tmp.write_text(json.dumps(card, indent=1, sort_keys=True) + "\n")
    tmp.replace(folder / _CARD)


def read_json_card(folder, what):
    """(path, dict) of a folder's ``card.json``; ModelFileError names a missing or bad one.

    ``what`` names the kind of folder in the messages ('model', 'autoencoder').
    """
    path = Path(folder) / _CARD
    if not path.is_file():
        raise ModelFileError(f"{folder}: no {_CARD}; not an insnet {what} folder")
    try:
        return path, json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: unreadable {what} card ({exc})") from None


def write_card(folder, card):
    """Write ``card.json`` (adds the format version)."""
    write_json_card(folder, card, CARD_FORMAT)


def read_card(folder):
    """The card of a model folder, checked for format and grids."""
    path, card = read_json_card(folder, "model")
    version = card.get("format_version")
    if version != CARD_FORMAT:
        raise ModelFileError(f"{path}: format_version {version!r}; this insnet reads model "
                             f"cards of format {CARD_FORMAT}")
    for key in ("model", "elements", "members"):
        if key not in card:
            raise ModelFileError(f"{path}: the card has no '{key}' field")
    if card.get("vision_grid") != vision_grid():
        raise ModelFileError(f"{path}: vision_grid {card.get('vision_grid')} differs from this "
                             f"code's {vision_grid()}")
    model = card["model"]
    if "dos" in model.get("heads", []):
        expect = dos_grid(model.get("dos_bins"), model.get("dos_width"))
        if card.get("dos_grid") != expect:
            raise ModelFileError(f"{path}: dos_grid {card.get('dos_grid')} differs from the "
                                 f"model settings' {expect}")
    return card


def unseen_elements(structure, card, name):
    """The message for elements of ``structure`` absent from the card's training, or None."""
    unknown = sorted(set(structure.species) - set(card["elements"]))
    if not unknown:
        return None
    return (f"{structure.source or 'structure'}: element(s) {', '.join(unknown)} never seen in "
            f"training by model {name!r}; it cannot predict them (use Method 'Physics' with "
            "force constants)")


def save_members(folder, models, card):
    """Write each model's weights and the card (``members`` lists the files)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for k, m in enumerate(models):
        name = "weights.safetensors" if len(models) == 1 else f"member-{k}.safetensors"
        state = {key: v.detach().to("cpu").contiguous() for key, v in m.state_dict().items()}
        save_file(state, str(folder / name))
        names.append(name)
    card = dict(card)
    card["members"] = names
    write_card(folder, card)


def _read_members(folder):
    """(config, card, list of state dicts) of a model folder, checked."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from insnet_core.nn.config import ModelConfig

    folder = Path(folder)
    card = read_card(folder)
    try:
        config = ModelConfig.from_dict(card["model"])
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{folder / _CARD}: model settings do not match this code ({exc})") \
            from None
    states = []
    for name in card["members"]:
        path = folder / name
        if not path.is_file():
            raise ModelFileError(f"{path}: weights file listed in the card is missing")
        try:
            states.append(load_file(str(path)))
        except (SafetensorError, OSError) as exc:
            raise ModelFileError(f"{path}: unreadable weights ({exc})") from None
    return config, card, states


def _misfit(path, exc):
    first = str(exc).splitlines()[0:2]
    return ModelFileError(f"{path}: weights do not fit the card's model settings "
                          f"({' '.join(first)})")


def load_models(folder, network="e3nn"):
    """The members of a model folder, one module each, and its card.

    Parameters
    ----------
    folder : path
        ``models/<name>``.
    network : {'e3nn', 'fast'}
        ``e3nn``: the trainable :class:`~insnet_core.nn.model.INSNet` modules;
        ``fast``: each member's plain-torch inference form
        (:class:`~insnet_core.nn.fastnet.FastINSNet`, the e3nn modules where its settings
        are not written out). Prediction uses :func:`load_ensemble`.

    Returns
    -------
    (list of torch.nn.Module, dict)
        The members in evaluation mode, and the card.

    Raises
    ------
    ModelFileError
        Unknown format, grid mismatch, unknown settings, missing or ill-fitting
        weights.
    """
    from insnet_core.nn.fastnet import FastINSNet, supported

    if network not in ("fast", "e3nn"):
        raise ValueError(f"network must be 'fast' or 'e3nn', got {network!r}")
    config, card, states = _read_members(folder)
    fast = network == "fast" and supported(config)
    models = []
    for name, state in zip(card["members"], states):
        try:
            net = FastINSNet(config, state) if fast else _e3nn_member(config, state, models)
        except (RuntimeError, ValueError) as exc:
            raise _misfit(Path(folder) / name, exc) from None
        models.append(net.eval())
    return models, card


def load_ensemble(folder):
    """All members of a model folder as one module, and the card: what prediction runs.

    The module's outputs carry the members first (``vision`` (M, n_graphs, bins), ``dos``
    (M, n_nodes, 3, bins), ``features`` (M, n_graphs, k)); it is the plain-torch network
    (:class:`~insnet_core.nn.fastnet.FastINSNet`, every operation once for all members,
    no e3nn import) where the settings allow, else the e3nn members one after another.

    Raises
    ------
    ModelFileError
        As :func:`load_models`; a member that does not fit is named.
    """
    from insnet_core.nn.fastnet import FastINSNet, LoopedMembers, supported

    config, card, states = _read_members(folder)
    if not supported(config):   # the states already read: no second pass over the files
        models = []
        for name, state in zip(card["members"], states):
            try:
                models.append(_e3nn_member(config, state, models).eval())
            except RuntimeError as exc:
                raise _misfit(Path(folder) / name, exc) from None
        return LoopedMembers(models).eval(), card
    try:
        net = FastINSNet(config, states)
    except ValueError as exc:
        name = card["members"][getattr(exc, "member", 0)]
        raise _misfit(Path(folder) / name, exc) from None
    return net.eval(), card


def _e3nn_member(config, state, previous):
    from insnet_core.nn.model import INSNet

    # members share the architecture: copying the first one's module is twice as fast
    # as building e3nn's tensor products again
    net = INSNet(config) if not previous else copy.deepcopy(previous[0])
    net.load_state_dict(state, strict=True)
    return net


def assemble_ensemble(run_folders, out, name=None):
    """One model folder whose members are the finished runs ``run_folders``.

    The runs must share the model settings, elements and database; the card is the
    first run's with ``members`` (one weights file each) and ``member_runs``
    (seeds and best epochs). Returns the new card.
    """
    import shutil

    cards = [read_card(f) for f in run_folders]
    first = cards[0]
    for f, c in zip(run_folders[1:], cards[1:]):
        for key in ("model", "elements", "vision_grid", "dos_grid"):
            if c.get(key) != first.get(key):
                raise ModelFileError(f"{f}: its card's '{key}' differs from {run_folders[0]}'s; "
                                     "ensemble members must share it")
        if c["database"]["sha256"] != first["database"]["sha256"]:
            raise ModelFileError(f"{f}: trained on another database than {run_folders[0]}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for k, (f, c) in enumerate(zip(run_folders, cards)):
        if len(c["members"]) != 1:
            raise ModelFileError(f"{f}: already an ensemble; give single runs")
        target = f"member-{k}.safetensors"
        shutil.copyfile(Path(f) / c["members"][0], out / target)
        names.append(target)
    card = dict(first)
    card.pop("format_version", None)
    card["name"] = name or out.name
    card["members"] = names
    card["member_runs"] = [{"run": str(f), "seed": c["training"]["seed"],
                            "best_epoch": c["training"]["best_epoch"],
                            "best_validation": c["training"]["best_validation"]}
                           for f, c in zip(run_folders, cards)]
    card.pop("history", None)
    write_card(out, card)
    return card
