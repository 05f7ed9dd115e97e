"""One evaluation run: every model and the baselines on the same test crystals.

``insnet evaluate --db data/insnet-db --models models/A models/B`` predicts the
VISION spectrum (bank average, 10-1200 cm^-1, 0 K, the database's orders) of
every crystal of the chosen split part and compares it with the database
target. Routes per model: ``head`` (head (a), the network's VISION output);
for models with the DOS head, ``partials`` (head (b)'s per-element DOS through
the engine); for models with nearest-crystal data, ``neighbours`` (the head
blended with the nearest database crystals' spectra, :mod:`insnet_core.nn.neighbours`).
Baselines in the same run: ``mean`` (the mean max-normalised training spectrum)
and ``oracle`` (the true DOS coarsened to the DOS head's grid, through the engine:
the ceiling of the partials route).

Metrics per crystal, on max-normalised spectra

* ``mse``: mean squared error over the 119 bins (the reference work's measure);
* ``cosine``: cosine similarity;
* ``w1``: Wasserstein-1 distance in meV between the spectra taken as
  distributions over energy (each scaled to unit sum): the integral of the
  absolute difference of their cumulative sums over energy.

Summaries: median and quartiles, for all crystals and by class (contains H,
modes above 150 meV, more than 50 atoms, unstable in DFT, stable).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from insnet_core.nn.data import DOS_WIDTH, build_graph_set, rebin_dos

__all__ = ["spectrum_metrics", "evaluate", "summarise", "markdown_table", "coverage",
           "calibrated_sigma", "fit_sigma_model", "update_cards", "CLASSES"]

CLASSES = ("all", "contains_h", "above_150meV", "over_50_atoms", "unstable", "stable")


def _vision_widths():
    from insnet_core.units import MEV_PER_CM1
    return 10.0 * MEV_PER_CM1


def _max_norm(x):
    x = np.clip(np.asarray(x, dtype=np.float64), 0.0, None)
    m = x.max(axis=-1, keepdims=True)
    return np.where(m > 0, x / np.where(m > 0, m, 1.0), 0.0)


def spectrum_metrics(pred, true):
    """MSE, cosine and W1 (meV) of max-normalised spectra, rows = crystals.

    Parameters
    ----------
    pred, true : ndarray, shape (n, 119)

    Returns
    -------
    dict of ndarray (n,)
    """
    p, t = _max_norm(pred), _max_norm(true)
    mse = ((p - t) ** 2).mean(axis=1)
    norm = np.linalg.norm(p, axis=1) * np.linalg.norm(t, axis=1)
    cosine = np.where(norm > 0, (p * t).sum(axis=1) / np.where(norm > 0, norm, 1), 0.0)
    ps = p / np.maximum(p.sum(axis=1, keepdims=True), 1e-300)
    ts = t / np.maximum(t.sum(axis=1, keepdims=True), 1e-300)
    w1 = np.abs(np.cumsum(ps - ts, axis=1)).sum(axis=1) * _vision_widths()
    return {"mse": mse, "cosine": cosine, "w1": w1}


def _engine_vision(species, elements, dos, settings):
    from insnet_core.nn.partials import ingredients_from_partials
    from insnet_core.simulate import simulate_ingredients

    ing = ingredients_from_partials(species, elements, dos, DOS_WIDTH, fine=0.1)
    total = simulate_ingredients(ing, settings).total
    return total.values[list(total.labels).index("average")]


def evaluate(db, model_folders, part="test", split_seed=None, limit=0, log=print,
             graph_cache=None):
    """Metrics of every route on one split part.

    Returns
    -------
    dict
        ``ids``, ``flags`` (class -> bool list), ``routes`` (name -> metric ->
        list), ``seconds`` (name -> prediction time).
    """
    import torch

    from insnet_core.dataset.reader import SPLIT_SEED
    from insnet_core.nn.data import collate
    from insnet_core.nn.predictor import Predictor
    from insnet_core.simulate import Settings

    seed = SPLIT_SEED if split_seed is None else split_seed
    gs = build_graph_set(db, cache_dir=graph_cache)
    pos = gs.part_positions(part, seed)
    train = gs.part_positions("train", seed)
    if limit:
        pos = pos[:limit]
    ids = [gs.ids[i] for i in pos]
    true = gs.vision[pos]
    routes, seconds, calibration = {}, {}, {}
    settings = Settings.check("VISION", orders=db.config.orders, temperature=0.0)

    mean = _max_norm(gs.vision[train].mean(axis=0))
    routes["mean"] = np.repeat(mean[None, :], len(pos), axis=0)

    t0 = time.time()
    oracle = []
    for mid in ids:
        rec = db.record(mid)
        dos = rebin_dos(rec["dos_axes"], db.config.bin_width)
        dos = dos / np.maximum(dos.sum(axis=-1, keepdims=True), 1e-30)
        oracle.append(_engine_vision([str(s) for s in rec["species"]],
                                     [str(e) for e in rec["elements"]], dos, settings))
    routes["oracle"] = np.array(oracle)
    seconds["oracle"] = time.time() - t0
    log(f"oracle: {seconds['oracle']:.0f} s")

    for folder in model_folders:
        pred = Predictor(folder)
        name = pred.name
        t0 = time.time()
        heads = {"head": [], "dos": [], "head_std": [], "features": []}
        with torch.no_grad():
            for start in range(0, len(pos), 32):
                chunk = pos[start:start + 32]
                batch = collate(gs, chunk)
                out = pred.network(batch, features=pred.neighbours is not None)
                if pred.neighbours is not None:            # (outputs: members first)
                    heads["features"].append(out["features"].numpy().mean(axis=0))
                if "vision" in pred.config.heads:
                    members = out["vision"].numpy()
                    heads["head"].append(members.mean(axis=0))
                    if pred.n_members > 1:
                        heads["head_std"].append(members.std(axis=0, ddof=1))
                if "dos" in pred.config.heads:
                    ng = batch["node_dos_group"].numpy()
                    d = out["dos"].numpy().mean(axis=0)
                    groups = np.zeros((batch["n_groups"],) + d.shape[1:])
                    np.add.at(groups, ng, d)
                    groups /= np.bincount(ng, minlength=batch["n_groups"])[:, None, None]
                    heads["dos"].append(groups)
        seconds[f"{name}:network"] = time.time() - t0
        if heads["head"]:
            routes[f"{name}:head"] = np.concatenate(heads["head"])
        nb_weight = None
        if heads["features"]:
            # a crystal the set holds is measured against the set's other crystals
            routes[f"{name}:neighbours"], nb_weight, _, _ = pred.neighbours.blend(
                routes[f"{name}:head"], np.concatenate(heads["features"]), exclude=ids)
        if heads["head_std"]:
            std = np.concatenate(heads["head_std"])
            calibration[name] = {
                "raw": coverage(routes[f"{name}:head"], std, true),
                "with_card_scale": coverage(routes[f"{name}:head"], std, true,
                                            pred.sigma_scale, pred.sigma_floor),
                "fitted_model": fit_sigma_model(routes[f"{name}:head"], std, true),
                "zero_sigma_fraction": zero_sigma_fraction(routes[f"{name}:head"], std, true)}
            calibration[name]["with_fitted_model"] = coverage(
                routes[f"{name}:head"], std, true, *calibration[name]["fitted_model"])
            if nb_weight is not None:   # the neighbours route's errors, as the predictor's
                calibration[name]["neighbours"] = coverage(
                    routes[f"{name}:neighbours"], std * (1.0 - nb_weight[:, None]), true,
                    *pred.neighbour_sigma)
        if heads["dos"]:
            groups = np.concatenate(heads["dos"])
            t0 = time.time()
            out = [None] * len(pos)
            row = 0  # group rows are in batch order: walk them crystal by crystal
            for k, i in enumerate(pos):
                n_el = gs.group_ptr[i + 1] - gs.group_ptr[i]
                rec = db.record(gs.ids[i])
                out[k] = _engine_vision([str(s) for s in rec["species"]],
                                        [str(e) for e in rec["elements"]],
                                        groups[row:row + n_el], settings)
                row += n_el
            routes[f"{name}:partials"] = np.array(out)
            seconds[f"{name}:engine"] = time.time() - t0
        log(f"{name}: done")
    flags = {k: gs.flags[k][pos] for k in gs.flags}
    flags["stable"] = ~gs.flags["unstable"][pos]
    metrics = {name: {k: v.tolist() for k, v in spectrum_metrics(p, true).items()}
               for name, p in routes.items()}
    return {"part": part, "split_seed": seed, "ids": ids,
            "flags": {k: v.tolist() for k, v in flags.items()},
            "routes": metrics, "seconds": seconds, "calibration": calibration}


def calibrated_sigma(std, values, scale=1.0, floor=0.0):
    """The calibrated per-bin error: ``sqrt((scale * std)**2 + (floor * max(values))**2)``.

    ``std`` is the ensemble's spread, ``values`` the spectrum it belongs to (the same
    shape; the maximum is taken over the last axis, the energy bins). ``floor`` is an
    error the members share and so do not show (for instance all of them predicting
    zero where the truth is not), as a fraction of the spectrum's maximum.
    """
    std = np.asarray(std, dtype=float)
    if not floor:
        return scale * std
    return np.sqrt((scale * std) ** 2 + (floor * _peak(values)) ** 2)


def _peak(values):
    """Maximum |value| over the energy bins (last axis, kept); NaN bins (outside an
    instrument's kinematic range) do not count, an all-NaN row gives 0."""
    vals = np.abs(np.asarray(values, dtype=float))
    return np.where(np.isfinite(vals), vals, 0.0).max(axis=-1, keepdims=True)


def _live(mean, std, t):
    """Bins that count for calibration: some spread, or a prediction that misses."""
    return (std > 0) | (np.abs(mean - t) > 0)


def coverage(mean, std, true, scale=1.0, floor=0.0):
    """Fraction of bins whose truth lies within 1 and 2 ensemble sigmas of the mean.

    Head (a) outputs are max-normalised per member; ``mean`` and ``std`` are over the
    members, ``true`` the max-normalised targets, all (n, bins). ``scale`` and ``floor``
    calibrate the sigmas (:func:`calibrated_sigma`, fitted by :func:`fit_sigma_model`).
    A calibrated ensemble gives about 0.68 and 0.95. Bins where every member and the truth
    are zero are left out.
    """
    t = _max_norm(true)
    live = _live(mean, std, t)
    dev = np.abs(mean - t)[live]
    sig = calibrated_sigma(std, mean, scale, floor)[live]
    return {"within_1_sigma": float(np.mean(dev <= sig)),
            "within_2_sigma": float(np.mean(dev <= 2 * sig)), "bins": int(live.sum()),
            "sigma_scale": float(scale), "sigma_floor": float(floor)}


def fit_sigma_model(mean, std, true, levels=(0.6827, 0.9545)):
    """Scale k and floor b of :func:`calibrated_sigma` that calibrate 1 and 2 sigma.

    A grid search over (k, b) for the pair whose coverage at 1 and 2 sigma is closest
    (sum of squared differences) to ``levels``; b = 0 is on the grid, so an ensemble
    whose spread alone can be calibrated keeps a zero floor.

    Returns
    -------
    (float, float)
        k, b.
    """
    t = _max_norm(true)
    live = _live(mean, std, t)
    dev = np.abs(mean - t)[live]
    peak = np.broadcast_to(_peak(mean), mean.shape)[live]
    sig = std[live]
    if not dev.size:
        return 1.0, 0.0
    best, best_cost = (1.0, 0.0), np.inf
    # a subsample keeps the search fast on a whole split (tens of thousands of bins)
    if dev.size > 40000:
        pick = np.random.default_rng(0).choice(dev.size, 40000, replace=False)
        dev, peak, sig = dev[pick], peak[pick], sig[pick]
    for b in np.concatenate([[0.0], np.geomspace(1e-4, 0.3, 61)]):
        for k in np.geomspace(0.05, 20.0, 131):
            s1 = np.sqrt((k * sig) ** 2 + (b * peak) ** 2)
            c1, c2 = np.mean(dev <= s1), np.mean(dev <= 2 * s1)
            cost = (c1 - levels[0]) ** 2 + (c2 - levels[1]) ** 2
            if cost < best_cost - 1e-6:  # ties keep the smaller floor (b ascends)
                best, best_cost = (float(k), float(b)), cost
    return best


def zero_sigma_fraction(mean, std, true):
    """Fraction of the live bins (see :func:`coverage`) whose sigma is 0 but error is not."""
    t = _max_norm(true)
    live = (std > 0) | (np.abs(mean - t) > 0)
    return float(np.mean((std[live] == 0)))


def summarise(result):
    """route -> class -> metric -> {n, median, q1, q3}."""
    out = {}
    flags = {k: np.asarray(v, dtype=bool) for k, v in result["flags"].items()}
    n = len(result["ids"])
    for route, metrics in result["routes"].items():
        out[route] = {}
        for cls in CLASSES:
            mask = np.ones(n, dtype=bool) if cls == "all" else flags[cls]
            entry = {"n": int(mask.sum())}
            for metric, values in metrics.items():
                v = np.asarray(values)[mask]
                if v.size:
                    q1, med, q3 = np.percentile(v, [25, 50, 75])
                    entry[metric] = {"median": float(med), "q1": float(q1), "q3": float(q3)}
            out[route][cls] = entry
    return out


def markdown_table(summary, classes=CLASSES):
    """Median (quartiles) table: one row per route and class."""
    lines = ["| route | class | n | MSE median (q1-q3) | cosine median (q1-q3) | "
             "W1 meV median (q1-q3) |", "|---|---|---|---|---|---|"]
    for route, per in summary.items():
        for cls in classes:
            e = per[cls]
            if e["n"] == 0:
                continue
            cells = []
            for metric, fmt in (("mse", "{:.4f}"), ("cosine", "{:.3f}"), ("w1", "{:.2f}")):
                m = e[metric]
                cells.append(f"{fmt.format(m['median'])} ({fmt.format(m['q1'])}-"
                             f"{fmt.format(m['q3'])})")
            lines.append(f"| {route} | {cls} | {e['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(result, path):
    """JSON with per-crystal metrics and the summary."""
    path = Path(path)
    data = dict(result, summary=summarise(result))
    path.write_text(json.dumps(data) + "\n")
    return data


def update_cards(result, model_folders):
    """Write the summary into each model's card; choose its default VISION route.

    The route with the lower median MSE on all crystals (the reference work's measure)
    becomes ``default_vision_route``; the reason, with the medians, goes in
    ``default_vision_route_reason``. Returns the folders updated.
    """
    from insnet_core.defaults import VISION_ROUTES
    from insnet_core.nn.card import read_card, write_card

    summary = summarise(result)
    baselines = {k: v for k, v in summary.items() if ":" not in k}
    done = []
    for folder in model_folders:
        folder = Path(folder)
        card = read_card(folder)
        name = card.get("name", folder.name)
        mine = {k.split(":", 1)[1]: v for k, v in summary.items() if k.startswith(name + ":")}
        others = {k: v["all"] for k, v in summary.items()
                  if ":" in k and not k.startswith(name + ":")}
        cal = result.get("calibration", {}).get(name)
        if result["part"] != "test":
            # another split calibrates the ensemble's sigma; only the test split measures
            if cal is None:
                continue
            k, b = cal["fitted_model"]
            card["sigma_scale"] = {"value": k, "floor": b, "fitted_on": result["part"],
                                   "levels": [0.6827, 0.9545],
                                   "model": "sqrt((value * ensemble std)^2 + (floor * "
                                            "spectrum maximum)^2)",
                                   "raw_coverage": cal["raw"],
                                   "coverage_on_fit_part": cal["with_fitted_model"],
                                   "zero_sigma_fraction": cal["zero_sigma_fraction"]}
            card.pop("format_version", None)
            write_card(folder, card)
            done.append(folder)
            continue
        if cal is not None:
            card["calibration"] = {"part": result["part"], "raw": cal["raw"],
                                   "calibrated": cal["with_card_scale"]}
            if "neighbours" in cal:
                card["calibration"]["neighbours_route"] = cal["neighbours"]
        card["test_metrics"] = {"part": result["part"], "split_seed": result["split_seed"],
                                "crystals": len(result["ids"]), "routes": mine,
                                "baselines": baselines, "other_models_all": others,
                                "command": "insnet evaluate --db <db> --models "
                                           + " ".join(str(f) for f in model_folders)}
        routes = [r for r in VISION_ROUTES if r in mine]
        if len(routes) > 1:
            med = {r: mine[r]["all"]["mse"]["median"] for r in routes}
            best = min(med, key=med.get)
            card["default_vision_route"] = best

            def line(key, fmt):
                return ", ".join(f"{r} {mine[r]['all'][key]['median']:{fmt}}" for r in routes)
            card["default_vision_route_reason"] = (
                f"lowest median MSE on the {result['part']} split: {line('mse', '.4f')} "
                f"(cosine {line('cosine', '.3f')}; W1 meV {line('w1', '.2f')}); maps and "
                "other instruments always use the partials route")
        card.pop("format_version", None)
        write_card(folder, card)
        done.append(folder)
    return done
