"""The nearest database crystals: a VISION route that blends the head with their spectra.

The network's pooled backbone features (the mean over atoms of its last per-atom
scalars, averaged over the ensemble's members) place a crystal among the database's
crystals. The ``neighbours`` VISION route takes the head's prediction and mixes in the
database spectra of the nearest crystals, weighted by how near they are:

    head' = m(head) ** power                  (m: max-normalise; power >= 1 sharpens)
    w_j   = exp(-d_j / d0), j = 1..k           (d_j: distance to the j-th nearest)
    near  = m(sum_j w_j y_j / sum_j w_j)      (y_j: its database spectrum)
    out   = m((1 - a w_1) head' + a w_1 near)

with ``d`` the Euclidean distance of the standardised features divided by sqrt(number
of features). A crystal far from every known crystal (d >> d0) gets the sharpened
head alone (the ensemble's mean is broader than any one spectrum: members whose peaks
sit a bin apart average into a lower, wider peak). ``k``, ``a``, ``d0`` and ``power`` are
fitted on the validation split (:func:`fit`): the lowest median MSE (the reference
work's measure) among the settings whose median cosine and W1 are no worse than the
head's, so that the route does not trade peak positions or the distribution over energy
for the MSE; the test split then measures the route (``insnet evaluate``).

The set holds the crystals of the parts of the split named by its pool
(:data:`POOLS`; by default all of them: a user's new crystal is best served by every
reference spectrum there is). A crystal of the set that is itself being fitted
(validation) or measured (test) is searched among the *other* crystals only
(leave-one-out, the ``exclude`` arguments), so the figures are those of a crystal the
set does not hold. The outputs name the nearest crystal and its distance, which a user
can look up in the database.

Stored with a model as ``neighbours.npz`` (features and spectra float16, about 4 MB);
numpy only.
"""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from insnet_core.nn.card import ModelFileError
from insnet_core.nn.evaluate import _max_norm, spectrum_metrics

__all__ = ["NeighbourSet", "fit", "FILE", "PARAMETER_GRID", "POOLS", "DEFAULT_POOL"]

FILE = "neighbours.npz"
_FORMAT = 1
#: Grid :func:`fit` searches.
PARAMETER_GRID = {"k": (1, 2, 3), "a": (0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
                  "d0": (0.1, 0.2, 0.3, 0.5, 1.0), "power": (1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6)}
#: Which parts of the database's split the set holds. More reference crystals are
#: nearer to a new one; parts the network was not trained on enter with the network's
#: features like any new crystal. Validation and test crystals in the set are left out
#: of their own search when the blend is fitted (validation) and measured (test).
POOLS = {"train": ("train",), "train+validation": ("train", "validation"),
         "all": ("train", "validation", "test")}
DEFAULT_POOL = "all"


class NeighbourSet:
    """Database crystals' features and VISION spectra, with the blend's parameters.

    Parameters
    ----------
    features : ndarray, shape (n, d)
        Pooled backbone features of the set's crystals (members' mean).
    spectra : ndarray, shape (n, 119)
        Their database VISION spectra, max-normalised.
    ids : list of str
        Their material ids.
    params : dict, optional
        ``k``, ``a``, ``d0``, ``power`` (see the module docstring).
    """

    def __init__(self, features, spectra, ids, params=None):
        self.features = np.asarray(features, dtype=np.float32)
        self.spectra = np.asarray(spectra, dtype=np.float32)
        self.ids = [str(i) for i in ids]
        if not (len(self.features) == len(self.spectra) == len(self.ids)) or not self.ids:
            raise ValueError("features, spectra and ids must have the same, non-zero length")
        f64 = self.features.astype(np.float64)
        self.mean = f64.mean(axis=0)
        self.scale = f64.std(axis=0) + 1e-6
        self._z = ((f64 - self.mean) / self.scale).astype(np.float32)
        self._z2 = (self._z.astype(np.float64) ** 2).sum(axis=1)
        self.params = dict(params or {"k": 1, "a": 0.0, "d0": 1.0, "power": 1.0})
        self._where = {m: i for i, m in enumerate(self.ids)}

    # ------------------------------------------------------------ files
    def save(self, folder):
        path = Path(folder) / FILE
        np.savez_compressed(path, format=np.int64(_FORMAT),
                            features=self.features.astype(np.float16),
                            spectra=self.spectra.astype(np.float16), ids=np.array(self.ids))
        return path

    @classmethod
    def load(cls, folder, params):
        path = Path(folder) / FILE
        try:
            with np.load(path, allow_pickle=False) as data:
                if int(data["format"]) != _FORMAT:
                    raise ModelFileError(f"{path}: format {int(data['format'])}; this insnet "
                                         f"reads format {_FORMAT}")
                return cls(data["features"], data["spectra"], list(data["ids"]), params)
        except (OSError, KeyError, ValueError) as exc:
            raise ModelFileError(f"{path}: not a neighbour file of this insnet ({exc})") \
                from None

    # ------------------------------------------------------------ queries
    def nearest(self, features, k, exclude=None):
        """Indices and distances (n_q, k) of the k nearest crystals of the set.

        ``exclude``: one material id per query (or None) left out of that query's
        search: a crystal of the set asked about itself (fitting, evaluation) is
        measured against the others only.
        """
        z = (np.atleast_2d(np.asarray(features, dtype=np.float64)) - self.mean) / self.scale
        if z.shape[1] != self._z.shape[1]:
            raise ValueError(f"{z.shape[1]} features given, the neighbour set has "
                             f"{self._z.shape[1]}")
        # einsum, not matmul: a BLAS call here wakes numpy's BLAS threads, which then spin
        # on the cores the network's torch threads need next (a single prediction runs
        # 2x slower right after it); a single-threaded loop over ~1e6 products is ~1 ms
        cross = np.einsum("qd,nd->qn", z.astype(np.float32), self._z)
        d2 = (z ** 2).sum(axis=1)[:, None] + self._z2[None, :] - 2.0 * cross.astype(np.float64)
        if exclude is not None:
            if len(exclude) != len(d2):
                raise ValueError(f"{len(exclude)} ids to exclude for {len(d2)} queries")
            for q, mid in enumerate(exclude):
                own = self._where.get(str(mid)) if mid is not None else None
                if own is not None:
                    d2[q, own] = np.inf
            k = min(k, d2.shape[1] - 1)
        idx = np.argpartition(d2, kth=min(k, d2.shape[1] - 1), axis=1)[:, :k] \
            if k < d2.shape[1] else np.argsort(d2, axis=1)
        order = np.argsort(np.take_along_axis(d2, idx, axis=1), axis=1)
        idx = np.take_along_axis(idx, order, axis=1)[:, :k]
        dist = np.sqrt(np.maximum(np.take_along_axis(d2, idx, axis=1), 0.0) / z.shape[1])
        return idx, dist

    def blend(self, head, features, params=None, near=None, exclude=None):
        """The route's spectra.

        Parameters
        ----------
        head : ndarray, shape (n_q, 119)
            The head's (ensemble mean) spectra.
        features : ndarray, shape (n_q, d)
        params : dict, optional
            Instead of the set's own.
        near : (idx, dist), optional
            From :meth:`nearest` with at least ``k`` columns (for fitting).
        exclude : list of str, optional
            Per query, a material id to leave out (:meth:`nearest`).

        Returns
        -------
        spectra : ndarray (n_q, 119), max-normalised
        weight : ndarray (n_q,)
            ``a w_1``, the share of the neighbours' spectrum.
        idx, dist : ndarray (n_q, k)
        """
        p = dict(self.params if params is None else params)
        k = int(p["k"])
        idx, dist = self.nearest(features, k, exclude) if near is None else near
        idx, dist = idx[:, :k], dist[:, :k]
        w = np.exp(-dist / float(p["d0"]))
        near_spec = (self.spectra[idx] * w[..., None]).sum(axis=1) \
            / np.maximum(w.sum(axis=1, keepdims=True), 1e-300)
        weight = float(p["a"]) * w[:, 0]
        out = (1.0 - weight[:, None]) * _max_norm(head) ** float(p["power"]) \
            + weight[:, None] * _max_norm(near_spec)
        return _max_norm(out), weight, idx, dist

    def describe(self, idx, dist, weight):
        """One line naming the nearest crystal of the set (for logs)."""
        return (f"nearest database crystal {self.ids[int(idx[0])]} (feature distance "
                f"{float(dist[0]):.3f}; its spectrum weighs {float(weight):.2f} in the blend)")


def _medians(pred, true):
    return {f"{k}_median": float(np.median(v)) for k, v in spectrum_metrics(pred, true).items()}


def fit(neighbours, head, features, true, grid=None, exclude=None):
    """Blend parameters for these crystals (the validation split).

    ``exclude``: the crystals' own ids when the set holds them (each is then fitted
    on the others, leave-one-out).

    The lowest median MSE among the grid points whose median cosine is at least, and
    median W1 at most, the head's own (the head itself, ``a`` = 0 and ``power`` = 1,
    always qualifies).

    Returns
    -------
    best : dict
        ``k``, ``a``, ``d0``, ``power``.
    table : list of dict
        The qualifying grid points with their medians (``mse_median``,
        ``cosine_median``, ``w1_median``), best first; the head itself is the row with
        ``a`` = 0.
    """
    grid = dict(PARAMETER_GRID, **(grid or {}))
    near = neighbours.nearest(features, max(grid["k"]), exclude)
    own = _medians(head, true)
    table = [dict(k=1, a=0.0, d0=1.0, power=1.0, **own)]
    for k, a, d0, power in itertools.product(grid["k"], grid["a"], grid["d0"], grid["power"]):
        p = {"k": int(k), "a": float(a), "d0": float(d0), "power": float(power)}
        m = _medians(neighbours.blend(head, features, p, near)[0], true)
        if m["cosine_median"] >= own["cosine_median"] and m["w1_median"] <= own["w1_median"]:
            table.append(dict(p, **m))
    table.sort(key=lambda r: r["mse_median"])
    return {key: table[0][key] for key in ("k", "a", "d0", "power")}, table


def network_outputs(network, gs, positions, batch=32):
    """Head spectra (members' mean and std) and members' mean pooled features."""
    import torch

    from insnet_core.nn.data import collate
    heads, stds, feats = [], [], []
    with torch.no_grad():
        for start in range(0, len(positions), batch):
            out = network(collate(gs, positions[start:start + batch]), features=True)
            v = out["vision"].numpy().astype(np.float64)          # (M, b, 119)
            heads.append(v.mean(axis=0))
            stds.append(v.std(axis=0, ddof=1) if v.shape[0] > 1 else np.zeros_like(v[0]))
            feats.append(out["features"].numpy().astype(np.float64).mean(axis=0))
    return np.concatenate(heads), np.concatenate(stds), np.concatenate(feats)


def build(db, folder, graph_cache=None, log=print, ids=None, pool=DEFAULT_POOL):
    """Write ``neighbours.npz`` for a model folder and fit the blend on the validation split.

    ``pool`` (:data:`POOLS`): the parts of the split whose crystals the set holds. The
    blend is fitted on the validation crystals, each searched among the set's other
    crystals (leave-one-out when the set holds the validation part). The card gets
    ``neighbours``: the file, the crystals used, the fitted parameters, the validation
    medians of the head and of this route, the error model fitted for the route (as
    ``sigma_scale``: the head members' spread times ``1 - weight``, scaled, with a
    floor), and the command. ``ids``: only these crystals of the database (split as
    usual; for tests). Returns the card.
    """
    import time

    from insnet_core.dataset.reader import SPLIT_SEED
    from insnet_core.nn.card import read_card, write_card
    from insnet_core.nn.data import build_graph_set
    from insnet_core.nn.evaluate import coverage, fit_sigma_model
    from insnet_core.nn.predictor import Predictor

    if pool not in POOLS:
        raise ValueError(f"pool must be one of {sorted(POOLS)}, got {pool!r}")
    t0 = time.time()
    folder = Path(folder)
    pred = Predictor(folder)
    if "vision" not in pred.config.heads:
        raise ModelFileError(f"{folder}: the model has no VISION head to blend")
    seed = pred.card.get("split", {}).get("seed", SPLIT_SEED)
    gs = build_graph_set(db, ids=ids, cache_dir=graph_cache)
    outputs, counts = {}, {}
    for part in dict.fromkeys(POOLS[pool] + ("validation",)):
        positions = gs.part_positions(part, seed)
        outputs[part] = (positions,) + network_outputs(pred.network, gs, positions)
        if part in POOLS[pool]:
            counts[part] = len(positions)
    log(f"features of {sum(len(o[0]) for o in outputs.values())} crystals "
        f"({time.time() - t0:.0f} s)")
    held = [outputs[part] for part in POOLS[pool]]
    members = np.concatenate([o[0] for o in held])
    ns = NeighbourSet(np.concatenate([o[3] for o in held]), _max_norm(gs.vision[members]),
                      [gs.ids[i] for i in members])
    val, head, std, f_val = outputs["validation"]
    val_ids = [gs.ids[i] for i in val]
    true = gs.vision[val]
    best, table = fit(ns, head, f_val, true, exclude=val_ids)
    out, weight, _, dist = ns.blend(head, f_val, best, exclude=val_ids)
    scale, floor = fit_sigma_model(out, std * (1.0 - weight[:, None]), true)
    ns.save(folder)
    own = _medians(head, true)
    card = read_card(folder)
    card["neighbours"] = {
        "file": FILE, "pool": pool, "crystals": counts,
        "training_crystals": counts.get("train", 0), "features": int(f_val.shape[1]),
        "params": best, "fitted_on": "validation", "validation_crystals": len(val),
        "leave_one_out": "validation" in POOLS[pool],
        "validation_medians": {"head": own, "neighbours": {
            k: table[0][k] for k in ("mse_median", "cosine_median", "w1_median")}},
        "selection": "lowest median MSE among settings whose median cosine and W1 are no "
                     "worse than the head's (validation split, each crystal searched among "
                     "the set's other crystals)",
        "median_weight_validation": float(np.median(weight)),
        # how far validation crystals sit from their nearest other crystal of the set: a
        # structure beyond the 99th percentile is flagged as far from the known crystals
        "validation_distance_quantiles": {
            f"q{int(q * 100)}": float(np.quantile(dist[:, 0], q)) for q in (0.5, 0.9, 0.99)},
        "sigma_scale": {"value": scale, "floor": floor,
                        "coverage_on_fit_part": coverage(out, std * (1.0 - weight[:, None]),
                                                         true, scale, floor)},
        "grid": PARAMETER_GRID,
        "command": f"insnet neighbours --db {db.root} --model {folder} --pool {pool}",
    }
    card.pop("format_version", None)
    write_card(folder, card)
    log(f"{folder / FILE}: {len(ns.ids)} crystals ({pool}), {best}; validation median MSE "
        f"head {own['mse_median']:.4f} -> {table[0]['mse_median']:.4f}, cosine "
        f"{own['cosine_median']:.3f} -> {table[0]['cosine_median']:.3f}, W1 "
        f"{own['w1_median']:.2f} -> {table[0]['w1_median']:.2f} meV ({time.time() - t0:.0f} s)")
    return card
