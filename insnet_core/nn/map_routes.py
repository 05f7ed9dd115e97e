"""End-to-end map routes on the predictor's test crystals, against the true maps.

Routes (each gives the 300 x 300 Ideal2D map at 0 K from a structure alone):

* ``partials``: the predictor's per-element DOS (ensemble mean of the members' maps)
  through the engine, :meth:`insnet_core.nn.predictor.Predictor.simulate` on Ideal2D;
* ``mean``: the mean of the autoencoder's training maps, the same for every crystal
  (what a model that learnt nothing would give);
* ``ae``: structure -> 50 latents -> ONNX decoder, an AE route folder's
  :func:`insnet_core.nn.map_route.route_maps`.

:func:`route_table` scores them on the same crystals with :func:`~insnet_core.nn.mapdata.
map_metrics` (MSE and cosine of max-normalised maps).
"""
from __future__ import annotations

import time

import numpy as np

from insnet_core.nn.mapdata import map_metrics, max_normalise, quartiles

__all__ = ["partials_route_maps", "mean_map", "route_table"]


def partials_route_maps(db, model_folder, ids, chunk=16, log=print):
    """Maps (n, 300, 300) of the partials route for database crystals ``ids``; seconds."""
    from insnet_core.nn.predictor import Predictor
    from insnet_core.simulate import Settings

    pred = Predictor(model_folder)
    settings = Settings.check("Ideal2D", orders=db.config.orders, temperature=0.0)
    out = np.empty((len(ids), 300, 300), dtype=np.float32)
    t0 = time.perf_counter()
    for s in range(0, len(ids), chunk):
        structures = [db.structure(m) for m in ids[s:s + chunk]]
        raws = pred.raw(structures, max_atoms=None, cache=False)
        for k, (st, raw) in enumerate(zip(structures, raws)):
            out[s + k] = max_normalise(pred.simulate(st, settings, raw).total.values)
        log(f"partials route: {min(s + chunk, len(ids))} of {len(ids)}")
    return out, time.perf_counter() - t0


def mean_map(maps):
    """Max-normalised mean of max-normalised maps (iterates in chunks; float16 is fine)."""
    total = np.zeros(maps.shape[1:], dtype=np.float64)
    for s in range(0, len(maps), 256):
        total += np.asarray(maps[s:s + 256], dtype=np.float64).sum(axis=0)
    return max_normalise(total)


def route_table(true, routes):
    """Rows (name, n, MSE / cosine median and quartiles) for routes {name: maps}."""
    rows = []
    for name, pred in routes.items():
        if pred.ndim == 2:
            pred = np.broadcast_to(pred, true.shape)
        rows.append({"name": name, "n": int(len(true)), **quartiles(map_metrics(pred, true))})
    return rows


def route_markdown(rows):
    lines = ["| route | crystals | MSE median (q1-q3) | cosine median (q1-q3) |",
             "|---|---:|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['n']} | {r['mse']['median']:.5f} ({r['mse']['q1']:.5f}-"
                     f"{r['mse']['q3']:.5f}) | {r['cosine']['median']:.4f} "
                     f"({r['cosine']['q1']:.4f}-{r['cosine']['q3']:.4f}) |")
    return "\n".join(lines)
