"""A first latent head: the predictor's backbone, frozen, and a small network to 50 latents.

Structure -> backbone (member 0 of a predictor model: the e3nn convolutions up to the
per-atom scalars) -> mean and max over the atoms (2 x out_dim numbers per crystal) -> MLP ->
the coder's latents (standardised PCA scores or autoencoder latents) -> the coder's ONNX
decoder -> map. The backbone is not retrained, so the head trains in minutes on a CPU;
a head trained with the backbone is the next step.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["backbone_features", "LatentMLP", "fit_latent_head", "predict_latents",
           "ae_route_on_test"]


def backbone_features(gs, model, positions, batch_size=32):
    """(n, 2 * out_dim) mean and max of the backbone's per-atom scalars, per crystal."""
    from insnet_core.nn.data import collate
    out = []
    model.eval()
    with torch.no_grad():
        for s in range(0, len(positions), batch_size):
            batch = collate(gs, positions[s:s + batch_size])
            h = model.node_features(batch)
            index = batch["node_graph"]
            n = batch["n_graphs"]
            total = h.new_zeros((n, h.shape[1])).index_add_(0, index, h)
            count = h.new_zeros(n).index_add_(0, index, torch.ones_like(index, dtype=h.dtype))
            mean = total / count[:, None]
            mx = h.new_full((n, h.shape[1]), -torch.inf).scatter_reduce_(
                0, index[:, None].expand_as(h), h, reduce="amax")
            out.append(torch.cat([mean, mx], dim=1).numpy())
    return np.concatenate(out)


class LatentMLP(torch.nn.Module):
    def __init__(self, n_in, n_out, hidden=256):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(n_in, hidden), torch.nn.SiLU(), torch.nn.Linear(hidden, hidden),
            torch.nn.SiLU(), torch.nn.Linear(hidden, n_out))

    def forward(self, x):
        return self.net(x)


def fit_latent_head(x_train, y_train, x_val, y_val, epochs=300, lr=1e-3, seed=0,
                    patience=30, batch_size=128):
    """Train the MLP on standardised inputs and targets; returns (model, scalers, history).

    ``scalers``: dict of the input mean/std and the target mean/std, so that
    ``predict(x) = model((x - xm) / xs) * ys + ym``.
    """
    torch.manual_seed(seed)
    xm, xs = x_train.mean(0), x_train.std(0) + 1e-6
    ym, ys = y_train.mean(0), y_train.std(0) + 1e-6
    xt = torch.from_numpy(((x_train - xm) / xs).astype(np.float32))
    yt = torch.from_numpy(((y_train - ym) / ys).astype(np.float32))
    xv = torch.from_numpy(((x_val - xm) / xs).astype(np.float32))
    yv = torch.from_numpy(((y_val - ym) / ys).astype(np.float32))
    model = LatentMLP(xt.shape[1], yt.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-5)
    rng = np.random.default_rng(seed)
    best, best_state, since, history = np.inf, None, 0, []
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(len(xt))
        for s in range(0, len(order), batch_size):
            idx = torch.from_numpy(order[s:s + batch_size])
            loss = ((model(xt[idx]) - yt[idx]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            val = float(((model(xv) - yv) ** 2).mean())
        history.append(val)
        if val < best - 1e-6:
            best, since = val, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            since += 1
            if since >= patience:
                break
    model.load_state_dict(best_state)
    return model, {"xm": xm, "xs": xs, "ym": ym, "ys": ys}, history


def predict_latents(model, scalers, x):
    with torch.no_grad():
        z = model(torch.from_numpy(((x - scalers["xm"]) / scalers["xs"]).astype(np.float32)))
    return z.numpy() * scalers["ys"] + scalers["ym"]


def ae_route_on_test(db, cache, pca, model_folder, graph_cache=None, log=print, test_ids=None):
    """The AE route end to end with this head, scored on the predictor's test crystals.

    Fits the head on the autoencoder's training part (validation part for early stopping):
    features from member 0 of ``model_folder``, targets the PCA scores of the true maps.
    Returns (rows for :func:`insnet_core.nn.map_routes.route_table`-style markdown, ids).
    """
    from insnet_core.nn.card import load_models
    from insnet_core.nn.data import build_graph_set
    from insnet_core.nn.map_routes import route_table
    from insnet_core.nn.mapdata import ae_part, unbrighten

    ids = [m for m in cache.ids if cache.done[cache.index[m]]]
    gs = build_graph_set(db, ids=ids, cache_dir=graph_cache)
    models, card = load_models(model_folder)
    known = set(card["elements"])
    parts = {}
    for i, m in enumerate(gs.ids):
        parts.setdefault(ae_part(m), []).append(i)
    if test_ids is not None:
        where = {m: i for i, m in enumerate(gs.ids)}
        parts["predictor-test"] = [where[m] for m in test_ids]
    else:
        parts["predictor-test"] = [i for i in parts.get("predictor-test", [])
                                   if set(map(str, db.record(gs.ids[i])["species"])) <= known]
    feats, scores = {}, {}
    for p in ("train", "validation", "predictor-test"):
        pos = np.array(parts.get(p, []), dtype=np.int64)
        feats[p] = backbone_features(gs, models[0], pos)
        chunks = [pca.encode(cache.get([gs.ids[i] for i in pos[s:s + 256]]))
                  for s in range(0, len(pos), 256)]
        scores[p] = np.concatenate(chunks)
        log(f"{p}: {len(pos)} crystals")
    model, scalers, history = fit_latent_head(feats["train"], scores["train"],
                                              feats["validation"], scores["validation"])
    log(f"head: {len(history)} epochs, best validation {min(history):.4f} (standardised)")
    test = [gs.ids[i] for i in parts["predictor-test"]]
    true = cache.get(test)
    pred = unbrighten(pca.decode(predict_latents(model, scalers, feats["predictor-test"])))
    ceiling = unbrighten(pca.decode(scores["predictor-test"]))
    name = f"AE route: PCA-{len(pca.components)} + latent head on {card.get('name')}'s backbone"
    rows = route_table(true, {name: pred, f"PCA-{len(pca.components)} of the true map "
                                          "(the route's ceiling)": ceiling})
    return rows, test
