"""Training: seeded, checkpointed, resumable, early-stopped.

``insnet train --db data/insnet-db --out models/NAME`` runs :func:`train`.
The run folder holds

* ``checkpoint.safetensors`` + ``checkpoint.json`` — model and optimiser
  tensors, and the loop state (epoch, batch, best validation loss, history,
  RNG seeds), rewritten every ``checkpoint_minutes`` and at each epoch end.
  ``--resume`` continues from them exactly where the run stopped (same batch
  order). ``--compact`` checkpoints leave the optimiser moments out (a third
  of the size, for committing a run that spans sessions; the moments restart
  on resume).
* ``best.safetensors`` — weights of the best validation epoch;
* ``history.json`` and ``loss.png`` — loss curves;
* at the end (early stop or ``epochs`` reached) ``card.json`` +
  ``weights.safetensors`` (the best epoch), the model folder proper.

Losses (per crystal, then averaged with the crystal weights)

* VISION head: mean squared error of the max-normalised spectra (the
  reference work's loss), divided by ``VISION_SCALE``; or, with
  ``vision_loss='rmse'``, its square root per crystal divided by
  sqrt(``VISION_SCALE``). The mean of the per-crystal root weighs a crystal the
  model misses badly less than the mean of the squares does, so it aims at the
  *median* crystal's error (the test metric) rather than the mean's;
* DOS head, per element and principal axis: the Wasserstein-1 distance
  between predicted and target DOS (integral of |CDF difference|, meV)
  divided by ``W1_SCALE``, plus the absolute log-ratio of the first inverse
  moment sum(g/E) (what the Debye-Waller factor and the low-energy intensity
  depend on).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from insnet_core.allocator import tune_allocator
from insnet_core import InputError, __version__
from insnet_core.nn.card import dos_grid, save_members, vision_grid
from insnet_core.nn.checkpoint import load_checkpoint, save_checkpoint
from insnet_core.nn.data import DOS_BINS, DOS_WIDTH, build_graph_set, collate, database_hash
from insnet_core.nn.model import INSNet, ModelConfig

__all__ = ["TrainSettings", "train", "loss_terms", "UNSTABLE_CHOICES"]

VISION_SCALE = 0.01
W1_SCALE = 5.0   # meV
MOMENT_WEIGHT = 0.5
#: Per-crystal VISION loss: the mean squared error, or its square root (see above).
VISION_LOSSES = ("mse", "rmse")
#: How unstable crystals (modes below -1 THz) enter training.
UNSTABLE_CHOICES = {"keep": 1.0, "downweight": 0.3, "drop": 0.0}


@dataclass
class TrainSettings:
    epochs: int = 200
    batch_size: int = 16
    lr: float = 0.005
    weight_decay: float = 0.05
    gamma: float = 0.96
    patience: int = 12
    seed: int = 0
    checkpoint_minutes: float = 5.0
    unstable: str = "keep"
    split_seed: int = 20230101
    max_train: int = 0        # 0: all training crystals (a positive number: the first n, for tests)
    max_hours: float = 0.0    # 0: no time limit; otherwise stop (resumably) after this long
    threads: int = 0          # 0: leave torch's default
    compact: bool = False
    vision_loss: str = "mse"
    init: str = ""            # a model folder whose weights start the run ("" : random)
    device: str = "cpu"       # 'cpu', 'cuda' or 'auto' (cuda when torch sees a GPU)
    average_weights: bool = False   # the model = mean of the weights at each epoch's end

    def check(self):
        if self.device not in ("cpu", "cuda", "auto"):
            raise InputError(f"--device must be cpu, cuda or auto, got {self.device!r}")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise InputError("--device cuda: torch sees no CUDA device here (use cpu or auto)")
        if self.vision_loss not in VISION_LOSSES:
            raise InputError(f"--vision-loss must be one of {list(VISION_LOSSES)}, "
                             f"got {self.vision_loss!r}")
        if self.unstable not in UNSTABLE_CHOICES:
            raise InputError(f"--unstable must be one of {list(UNSTABLE_CHOICES)}, "
                             f"got {self.unstable!r}")
        if self.batch_size < 1 or self.epochs < 1:
            raise InputError("--batch-size and --epochs must be positive")
        return self


def loss_terms(out, batch, width=DOS_WIDTH):
    """Per-crystal loss terms (dict of (n_graphs,) tensors) for the heads present."""
    terms = {}
    n = batch["n_graphs"]
    if "vision" in out:
        terms["vision_mse"] = ((out["vision"] - batch["vision"]) ** 2).mean(dim=1)
    if "dos" in out:
        groups = batch["node_dos_group"]
        g = out["dos"].new_zeros((batch["n_groups"],) + out["dos"].shape[1:])
        g = g.index_add(0, groups, out["dos"])
        count = g.new_zeros(batch["n_groups"]).index_add_(
            0, groups, torch.ones_like(groups, dtype=g.dtype))
        g = g / count[:, None, None]
        t = batch["dos"]
        w1 = (torch.cumsum(g, -1) - torch.cumsum(t, -1)).abs().sum(-1) * width   # (G, 3) meV
        energy = (torch.arange(g.shape[-1], dtype=g.dtype, device=g.device) + 0.5) * width
        m_pred = (g / energy).sum(-1).clamp_min(1e-12)
        m_true = (t / energy).sum(-1).clamp_min(1e-12)
        dlog = (m_pred.log() - m_true.log()).abs()
        # group -> graph: the first node of each group tells its graph
        group_graph = groups.new_zeros(batch["n_groups"]).index_copy_(
            0, groups, batch["node_graph"])
        per_graph = g.new_zeros(n)
        ngroups = g.new_zeros(n).index_add_(
            0, group_graph, torch.ones_like(group_graph, dtype=g.dtype))
        terms["dos_w1"] = per_graph.index_add(0, group_graph, w1.mean(-1)) / ngroups
        terms["dos_moment"] = per_graph.index_add(0, group_graph, dlog.mean(-1)) / ngroups
    return terms


def total_loss(terms, vision_loss="mse"):
    """Per-crystal total of the scaled terms."""
    total = 0.0
    if "vision_mse" in terms:
        if vision_loss == "rmse":
            total = total + torch.sqrt(terms["vision_mse"] + 1e-10) / math.sqrt(VISION_SCALE)
        else:
            total = total + terms["vision_mse"] / VISION_SCALE
    if "dos_w1" in terms:
        total = total + terms["dos_w1"] / W1_SCALE + MOMENT_WEIGHT * terms["dos_moment"]
    return total


def _on(batch, device):
    """A collated batch with its tensors on ``device``."""
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _evaluate_loss(model, gs, positions, batch_size, vision_loss="mse", device="cpu"):
    model.eval()
    sums, count = {}, 0
    with torch.no_grad():
        for start in range(0, len(positions), batch_size):
            pos = positions[start:start + batch_size]
            batch = _on(collate(gs, pos), device)
            terms = loss_terms(model(batch), batch)
            terms["total"] = total_loss(terms, vision_loss)
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.sum())
            count += len(pos)
    model.train()
    return {k: v / max(count, 1) for k, v in sums.items()}


def _init_dos_bias(model, gs, positions):
    """Start the DOS head at the training crystals' mean DOS (log of it, per axis)."""
    groups = np.concatenate([np.arange(gs.group_ptr[k], gs.group_ptr[k + 1]) for k in positions])
    mean = gs.dos[groups].mean(axis=0)                      # (3, bins)
    last = model.dos_head[-1]
    with torch.no_grad():
        last.bias.copy_(torch.from_numpy(np.log(mean + 1e-6).reshape(-1)).to(last.bias.dtype))


def _init_from(model, folder, config, log):
    """Start from trained weights (fine-tuning): a model folder's ``weights.safetensors``, or
    one weights file of a model folder (an ensemble's ``member-<k>.safetensors``). The
    folder's card must have this run's settings."""
    from safetensors.torch import load_file

    from insnet_core.nn.card import read_card
    path = Path(folder)
    folder, weights = ((path.parent, path) if path.suffix == ".safetensors"
                       else (path, path / "weights.safetensors"))
    card = read_card(folder)
    theirs = dict(card["model"])
    mine = config.to_dict()
    diff = sorted(k for k in set(mine) | set(theirs)
                  if k != "num_neighbors" and mine.get(k) != theirs.get(k))
    if diff:
        raise InputError(f"--init {folder}: its model settings differ from this run's ({diff})")
    if theirs.get("num_neighbors") != mine.get("num_neighbors"):
        raise InputError(f"--init {folder}: trained with {theirs.get('num_neighbors')} mean "
                         f"neighbours, this run's training set has {mine.get('num_neighbors')}")
    if not weights.exists():
        raise InputError(f"--init {path}: no {weights.name} there (for an ensemble, name a "
                         "member's file, e.g. member-0.safetensors)")
    model.load_state_dict(load_file(str(weights)))
    log(f"weights from {weights}")


def _plot_history(folder, history):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history:
        return
    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(ep, [h["train"] for h in history], label="training")
    ax.plot(ep, [h["validation"]["total"] for h in history], label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (scaled terms, see card)")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title(folder.name)
    fig.tight_layout()
    fig.savefig(folder / "loss.png", dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------- main loop
def train(db, out, config=None, settings=None, resume=False, graph_cache=None, log=print,
          ids=None):
    """Train one model; returns the run folder's final card (dict) or None if stopped early.

    Parameters
    ----------
    db : Database
    out : path
        Run / model folder.
    config : ModelConfig
        ``num_neighbors`` is replaced by the training set's mean.
    settings : TrainSettings
    resume : bool
        Continue from ``out/checkpoint.*`` (settings and config must match).
    graph_cache : path, optional
        Folder for the cached graphs of the whole database.
    ids : list of str, optional
        Use only these crystals of the database (split as usual).
    """
    out = Path(out)
    settings = (settings or TrainSettings()).check()
    config = config or ModelConfig()
    tune_allocator()   # autograd's large blocks stay in the process (allocator.py)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    if out.exists() and (out / "checkpoint.json").exists() and not resume:
        raise InputError(f"{out}: a run is already there; pass --resume to continue it or "
                         "choose another --out")
    if resume and not (out / "checkpoint.json").exists():
        raise InputError(f"{out}: nothing to resume (no checkpoint.json)")
    out.mkdir(parents=True, exist_ok=True)

    t0 = time.time()
    gs = build_graph_set(db, ids=ids, cache_dir=graph_cache)
    parts = {p: gs.part_positions(p, settings.split_seed) for p in ("train", "validation", "test")}
    weight = np.ones(len(gs))
    weight[gs.flags["unstable"]] = UNSTABLE_CHOICES[settings.unstable]
    train_pos = parts["train"][weight[parts["train"]] > 0]
    if settings.max_train:
        train_pos = train_pos[:settings.max_train]
        parts["validation"] = parts["validation"][:max(settings.max_train // 4, 2)]
    val_pos = parts["validation"]
    config.num_neighbors = round(gs.mean_neighbors(train_pos), 3)
    log(f"data: {len(train_pos)} training, {len(val_pos)} validation crystals "
        f"({time.time() - t0:.0f} s); mean neighbours {config.num_neighbors}")

    torch.manual_seed(settings.seed)
    model = INSNet(config)
    if settings.init:
        _init_from(model, settings.init, config, log)
    elif model.config.kind == "insnet" and "dos" in config.heads:
        _init_dos_bias(model, gs, train_pos)
    device = torch.device("cuda" if settings.device == "cuda" or (
        settings.device == "auto" and torch.cuda.is_available()) else "cpu")
    model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    state = {"epoch": 0, "batch": 0, "best": math.inf, "best_epoch": -1, "bad_epochs": 0,
             "history": [], "seconds": 0.0, "train_sum": 0.0, "train_count": 0,
             "settings": asdict(settings), "config": config.to_dict()}
    if resume:
        saved = load_checkpoint(out, model, opt)
        for key in ("settings", "config"):
            mine = dict(state[key])
            theirs = dict(saved[key])
            for ignore in ("max_hours", "threads", "checkpoint_minutes", "compact", "epochs",
                           "patience", "device"):
                mine.pop(ignore, None)
                theirs.pop(ignore, None)
            if key == "settings":   # settings added since the run began, at their defaults
                defaults = asdict(TrainSettings())
                for k in set(mine) - set(theirs):
                    if mine[k] == defaults.get(k):
                        mine.pop(k)
            if mine != theirs:
                diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
                raise InputError(f"{out}: --resume with other {key} than the run's ({diff})")
        saved["settings"] = asdict(settings)
        if math.isfinite(saved["best"]) and not (out / "best.safetensors").exists() \
                and not (out / "weights.safetensors").exists():  # (a finished run's best)
            # the best weights did not travel with the checkpoint (they are large and not
            # always committed): forget that best so the next validated epoch writes them
            log(f"{out / 'best.safetensors'} is missing: the best of epoch "
                f"{saved['best_epoch']} ({saved['best']:.4f}) is forgotten")
            saved.update(best=math.inf, best_epoch=-1, bad_epochs=0)
        state = saved
        log(f"resumed at epoch {state['epoch']}, batch {state['batch']}"
            + (" (compact checkpoint: optimiser moments restart)" if saved.get("compact") else ""))
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model {config.kind}: {n_params} parameters, heads {list(config.heads)}, on {device}")

    last_ckpt = time.time()
    start_wall = time.time()
    seconds0 = state["seconds"]
    stopped_for_time = False
    model.train()
    while state["epoch"] < settings.epochs and state["bad_epochs"] < settings.patience:
        ep = state["epoch"]
        order = np.random.default_rng([settings.seed, ep]).permutation(train_pos)
        batches = [order[i:i + settings.batch_size]
                   for i in range(0, len(order), settings.batch_size)]
        for b in range(state["batch"], len(batches)):
            batch = _on(collate(gs, batches[b]), device)
            terms = loss_terms(model(batch), batch)
            w = torch.as_tensor(weight[batches[b]], dtype=torch.float32, device=device)
            loss = (total_loss(terms, settings.vision_loss) * w).sum() / w.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            state["train_sum"] += loss.item() * len(batches[b])
            state["train_count"] += len(batches[b])
            state["batch"] = b + 1
            now = time.time()
            state["seconds"] = seconds0 + now - start_wall
            if settings.max_hours and now - start_wall > settings.max_hours * 3600:
                stopped_for_time = True
                break
            if now - last_ckpt > settings.checkpoint_minutes * 60:
                save_checkpoint(out, model, opt, state, settings.compact)
                last_ckpt = now
        if stopped_for_time:
            break
        val = _evaluate_loss(model, gs, val_pos, 32, settings.vision_loss, device)
        train_loss = state["train_sum"] / max(state["train_count"], 1)
        state["history"].append({"epoch": ep + 1, "train": train_loss, "validation": val,
                                 "lr": opt.param_groups[0]["lr"], "seconds": state["seconds"]})
        if settings.average_weights:
            state["history"][-1]["validation_average"] = _average_epoch(
                out, model, state, config, gs, val_pos, settings, device)
        if val["total"] < state["best"]:
            state.update(best=val["total"], best_epoch=ep + 1, bad_epochs=0)
            from safetensors.torch import save_file
            save_file({k: v.detach().cpu().contiguous()
                       for k, v in model.state_dict().items()}, str(out / "best.safetensors"))
        else:
            state["bad_epochs"] += 1
        for group in opt.param_groups:
            group["lr"] *= settings.gamma
        state.update(epoch=ep + 1, batch=0, train_sum=0.0, train_count=0)
        log(f"epoch {ep + 1}: train {train_loss:.4f}  validation {val['total']:.4f} "
            f"{ {k: round(v, 5) for k, v in val.items() if k != 'total'} }  "
            f"({state['seconds'] / 60:.1f} min)")
        save_checkpoint(out, model, opt, state, settings.compact)
        last_ckpt = time.time()
        (out / "history.json").write_text(json.dumps(state["history"], indent=1))
        _plot_history(out, state["history"])
    save_checkpoint(out, model, opt, state, settings.compact)
    if stopped_for_time:
        log(f"stopped after {settings.max_hours} h at epoch {state['epoch']}, batch "
            f"{state['batch']}; continue with --resume")
        return None
    return finish(db, out, gs, parts, train_pos, config, settings, state)


def _average_epoch(out, model, state, config, gs, val_pos, settings, device):
    """Fold this epoch's weights into the running mean (``average.safetensors``, the
    count in ``state['averaged_epochs']``) and return the mean's validation loss.

    Stochastic weight averaging: the mean of the weights a constant learning rate visits
    around a minimum generalises better than any one of them. Meant for fine-tuning a
    trained model (``--init``, ``--gamma 1``), where every epoch's weights are good.
    """
    from safetensors.torch import load_file, save_file

    path = out / "average.safetensors"
    n = int(state.get("averaged_epochs", 0))
    now = {k: v.detach().cpu().double() for k, v in model.state_dict().items()}
    if n and path.exists():
        mean = {k: v.double() for k, v in load_file(str(path)).items()}
        now = {k: mean[k] + (now[k] - mean[k]) / (n + 1) for k in now}
    elif n:
        raise InputError(f"{path} is missing: the weight average of {n} epochs cannot go on "
                         "(start the run again)")
    typed = {k: v.to(model.state_dict()[k].dtype).contiguous() for k, v in now.items()}
    save_file(typed, str(path))
    state["averaged_epochs"] = n + 1
    averaged = INSNet(config)
    averaged.load_state_dict(typed)
    averaged.to(device)
    return _evaluate_loss(averaged, gs, val_pos, 32, settings.vision_loss, device)


def finish(db, out, gs, parts, train_pos, config, settings, state):
    """Write the model folder (best weights, or the weight average, + card) at the end of
    a run."""
    from safetensors.torch import load_file

    model = INSNet(config)
    best = out / "best.safetensors"
    if settings.average_weights and (out / "average.safetensors").exists():
        best = out / "average.safetensors"
    elif not best.exists():  # a committed run keeps only weights.safetensors (same tensors)
        best = out / "weights.safetensors"
    model.load_state_dict(load_file(str(best)))
    elements = gs.elements(train_pos)
    import periodictable
    symbols = [periodictable.elements[int(z)].symbol for z in elements]
    stats = _training_ranges(gs, train_pos)
    card = {
        "name": out.name, "insnet_version": __version__, "torch_version": torch.__version__,
        "model": config.to_dict(), "vision_grid": vision_grid(),
        "dos_grid": dos_grid(config.dos_bins, config.dos_width) if "dos" in config.heads else None,
        "elements": symbols, "training_ranges": stats,
        "database": {"root": str(db.root), "sha256": database_hash(db), "crystals": len(gs),
                     "format": db.config.format},
        "split": {"seed": settings.split_seed, "train": int(len(train_pos)),
                  "validation": int(len(parts["validation"])), "test": int(len(parts["test"]))},
        "training": dict(asdict(settings), best_epoch=state["best_epoch"],
                         epochs_run=state["epoch"], seconds=round(state["seconds"], 1),
                         best_validation=state["best"],
                         weights=(f"mean of the weights at the end of epochs 1-"
                                  f"{state.get('averaged_epochs', 0)} (weight averaging)"
                                  if best.name == "average.safetensors"
                                  else f"best epoch ({state['best_epoch']})"),
                         loss={"vision": settings.vision_loss, "vision_scale": VISION_SCALE,
                               "w1_scale_meV": W1_SCALE, "moment_weight": MOMENT_WEIGHT}),
        "history": state["history"],
    }
    save_members(out, [model], card)
    return card


def _training_ranges(gs, positions):
    """Density and shortest-neighbour-distance ranges of the training crystals."""
    dens, dmin, natoms = [], [], []
    for k in positions:
        e0, e1 = gs.edge_ptr[k], gs.edge_ptr[k + 1]
        n = gs.node_ptr[k + 1] - gs.node_ptr[k]
        vec = gs.edge_vec[e0:e1]
        d = float(np.sqrt((vec.astype(np.float64) ** 2).sum(1)).min()) if e1 > e0 else np.inf
        dmin.append(d)
        natoms.append(int(n))
        dens.append(float((e1 - e0) / n))
    return {"neighbours_per_atom": [float(np.min(dens)), float(np.max(dens))],
            "min_distance_A": [float(np.min(dmin)), float(np.max(dmin))],
            "atoms": [int(np.min(natoms)), int(np.max(natoms))]}
