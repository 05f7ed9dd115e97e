"""Per-crystal read-out of per-atom network outputs (torch, no e3nn).

Shared by the e3nn network (:mod:`insnet_core.nn.model`) and its inference form
(:mod:`insnet_core.nn.fastnet`).
"""
from __future__ import annotations

import torch

__all__ = ["graph_mean", "pooled_features", "max_normalise"]


def pooled_features(h, index, n_graphs):
    """Mean and maximum of per-atom scalars ``h`` (n_nodes, k) over each crystal: (n, 2k)."""
    mean = graph_mean(h, index, n_graphs)
    mx = h.new_full((n_graphs, h.shape[1]), -torch.inf).scatter_reduce_(
        0, index[:, None].expand_as(h), h, reduce="amax")
    return torch.cat([mean, mx], dim=1)


def graph_mean(values, index, n_graphs):
    """Mean of per-node rows over the nodes of each graph, (n_graphs, ...)."""
    total = values.new_zeros((n_graphs,) + values.shape[1:]).index_add_(0, index, values)
    count = values.new_zeros(n_graphs).index_add_(0, index, torch.ones_like(index, dtype=values.dtype))
    return total / count.clamp_min(1.0).view((-1,) + (1,) * (values.dim() - 1))


def max_normalise(x, tiny=1e-20):
    """Rows divided by their maximum (rows of zeros stay zero).

    The floor ``tiny`` only guards rows of zeros; it must not bias small rows
    (the reference kind starts with outputs of order 1e-5).
    """
    return x / x.max(dim=1, keepdim=True).values.clamp_min(tiny)
