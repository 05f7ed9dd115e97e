"""Latent heads: small networks from per-crystal features to a coder's latents.

The features are the predictor's pooled backbone outputs (member 0, frozen: the e3nn
convolutions up to the per-atom scalars, mean and max over the atoms), to which the AE
route (:mod:`insnet_core.nn.map_route`) adds the latents of the engine's map of the
predicted DOS. The backbone is not retrained, so a head trains in minutes on a CPU.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["LatentMLP", "fit_latent_head", "predict_latents"]


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
    """The head's latents for features ``x`` (n, n_in), undoing the training scalers."""
    with torch.no_grad():
        z = model(torch.from_numpy(((x - scalers["xm"]) / scalers["xs"]).astype(np.float32)))
    return z.numpy() * scalers["ys"] + scalers["ym"]
