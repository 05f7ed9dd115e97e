"""Training data: the database's crystals as graphs with their targets.

:func:`build_graph_set` turns every crystal of a :class:`Database` into its
periodic graph (:mod:`insnet_core.nn.graph`) and its targets, packed into
flat arrays (:class:`GraphSet`) that a training run keeps in memory and caches
on disk (``<cache>/graphs-<database hash>.npz``; the cache is derived data,
rebuilt when the database changes).

Targets of one crystal

* ``vision``: the database's average VISION row, max-normalised (119 bins);
* ``dos``: each element's principal-axis one-phonon DOS, summed from the
  database's 0.1 meV grid into ``DOS_BINS`` bins of ``DOS_WIDTH`` meV from 0
  (the last bin collects anything above), each axis summing to one;
* flags for the evaluation classes: contains H, modes above 150 meV, more than
  50 atoms, unstable in DFT (modes below -1 THz).

Only this module and the other ``insnet_core.nn`` modules import torch.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from insnet_core.nn.graph import CUTOFF, build_graph

__all__ = ["DOS_BINS", "DOS_WIDTH", "UNSTABLE_MEV", "GraphSet", "build_graph_set",
           "database_hash", "rebin_dos", "collate", "graph_batch"]

#: Predicted DOS grid: bins of DOS_WIDTH meV from 0 (0-500 meV).
DOS_BINS = 500
DOS_WIDTH = 1.0
#: "Unstable in DFT": lowest mode below -1 THz, in meV.
UNSTABLE_MEV = -4.135667696
_CACHE_FORMAT = 1


def rebin_dos(dos, source_width, bins=DOS_BINS, width=DOS_WIDTH):
    """Sum a DOS on a fine grid from 0 into coarser bins from 0.

    Parameters
    ----------
    dos : ndarray, shape (..., n_fine)
        Histogram on bins of ``source_width`` meV starting at 0.
    source_width, width : float
        Fine and coarse bin widths in meV; ``width`` must be a multiple.
    bins : int
        Number of coarse bins; weight beyond the last goes into it.

    Returns
    -------
    ndarray, shape (..., bins)
    """
    factor = int(round(width / source_width))
    if abs(factor * source_width - width) > 1e-9 * width or factor < 1:
        raise ValueError(f"DOS bin width {width} meV is not a multiple of {source_width} meV")
    dos = np.asarray(dos, dtype=np.float64)
    n = dos.shape[-1]
    full = bins * factor
    if n < full:
        pad = np.zeros(dos.shape[:-1] + (full - n,))
        dos = np.concatenate([dos, pad], axis=-1)
        tail = 0.0
    else:
        tail = dos[..., full:].sum(axis=-1)
        dos = dos[..., :full]
    out = dos.reshape(dos.shape[:-1] + (bins, factor)).sum(axis=-1)
    out[..., -1] += tail
    return out


def database_hash(db):
    """sha256 over the database's shard files (names and contents), hex."""
    h = hashlib.sha256()
    for path in sorted(Path(db.root).glob("*.h5")):
        h.update(path.name.encode())
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()


@dataclass
class GraphSet:
    """Many crystal graphs and their targets in flat arrays.

    Per crystal ``k``: nodes ``node_ptr[k]:node_ptr[k+1]``, edges
    ``edge_ptr[k]:edge_ptr[k+1]`` (node indices local to the crystal), element
    groups ``group_ptr[k]:group_ptr[k+1]``.
    """

    ids: list
    numbers: np.ndarray       # (N,) int64
    masses: np.ndarray        # (N,) float32
    node_group: np.ndarray    # (N,) int64, element index local to the crystal
    node_ptr: np.ndarray      # (K+1,)
    edge_src: np.ndarray      # (M,) int64 local
    edge_dst: np.ndarray      # (M,) int64 local
    edge_vec: np.ndarray      # (M, 3) float32
    edge_ptr: np.ndarray      # (K+1,)
    group_elements: np.ndarray  # (G,) atomic numbers
    group_ptr: np.ndarray     # (K+1,)
    dos: np.ndarray           # (G, 3, DOS_BINS) float32
    vision: np.ndarray        # (K, 119) float32, max-normalised
    flags: dict               # name -> (K,) bool

    def __len__(self):
        return len(self.ids)

    def subset(self, ids):
        """Positions of the given material ids in this set."""
        where = {m: i for i, m in enumerate(self.ids)}
        return np.array([where[m] for m in ids], dtype=np.int64)

    def part_positions(self, part, seed):
        """Positions (int array) of the crystals in one part of the seeded split."""
        from insnet_core.dataset.reader import split_of
        return np.array([i for i, m in enumerate(self.ids) if split_of(m, seed) == part],
                        dtype=np.int64)

    def mean_neighbors(self, positions=None):
        """Mean number of edges per atom over the given crystals (all by default)."""
        pos = np.arange(len(self)) if positions is None else np.asarray(positions)
        n_edges = (self.edge_ptr[pos + 1] - self.edge_ptr[pos]).sum()
        n_nodes = (self.node_ptr[pos + 1] - self.node_ptr[pos]).sum()
        return float(n_edges / max(n_nodes, 1))

    def elements(self, positions=None):
        """Sorted atomic numbers present in the given crystals."""
        pos = np.arange(len(self)) if positions is None else np.asarray(positions)
        seen = set()
        for k in pos:
            seen.update(self.numbers[self.node_ptr[k]:self.node_ptr[k + 1]].tolist())
        return sorted(seen)

    def save(self, path):
        arrays = {k: getattr(self, k) for k in
                  ("numbers", "masses", "node_group", "node_ptr", "edge_src", "edge_dst",
                   "edge_vec", "edge_ptr", "group_elements", "group_ptr", "dos", "vision")}
        arrays["ids"] = np.array(self.ids)
        for k, v in self.flags.items():
            arrays[f"flag_{k}"] = v
        arrays["cache_format"] = np.array(_CACHE_FORMAT)
        tmp = Path(f"{path}.{os.getpid()}.tmp.npz")  # two runs may build the same cache
        np.savez(tmp, **arrays)
        tmp.replace(path)

    @classmethod
    def load(cls, path):
        with np.load(path) as z:
            if int(z["cache_format"]) != _CACHE_FORMAT:
                raise ValueError("old graph cache")
            flags = {k[5:]: z[k] for k in z.files if k.startswith("flag_")}
            kw = {k: z[k] for k in z.files if not k.startswith("flag_")
                  and k not in ("ids", "cache_format")}
            return cls(ids=[str(m) for m in z["ids"]], flags=flags, **kw)


def _crystal(rec, cutoff, source_width):
    g = build_graph(rec["lattice"], [str(s) for s in rec["species"]], rec["frac_coords"], cutoff)
    elements = [str(e) for e in rec["elements"]]
    index = {e: i for i, e in enumerate(elements)}
    node_group = np.array([index[str(s)] for s in rec["species"]], dtype=np.int64)
    dos = rebin_dos(rec["dos_axes"], source_width)
    dos = dos / np.maximum(dos.sum(axis=-1, keepdims=True), 1e-30)
    vis = np.asarray(rec["vision"][2], dtype=np.float64)
    vis = np.clip(vis, 0.0, None)
    vis = vis / vis.max() if vis.max() > 0 else vis
    flags = {"contains_h": bool(rec.get("contains_h")),
             "above_150meV": bool(rec.get("above_max_energy")),
             "over_50_atoms": int(rec["n_atoms"]) > 50,
             "unstable": float(rec.get("min_energy", 0.0)) < UNSTABLE_MEV}
    return g, node_group, [g.numbers[node_group == i][0] for i in range(len(elements))], \
        dos.astype(np.float32), vis.astype(np.float32), flags


def build_graph_set(db, ids=None, cutoff=CUTOFF, cache_dir=None, progress=False):
    """Graphs and targets of database crystals (all 'ok' ones by default).

    Parameters
    ----------
    db : insnet_core.dataset.reader.Database
    ids : list of str, optional
    cutoff : float
        Graph radius, angstrom.
    cache_dir : path, optional
        Read/write ``graphs-<hash>.npz`` here (only for the full set).
    """
    full = ids is None
    ids = db.ids() if ids is None else list(ids)
    cache = None
    if cache_dir is not None and full:
        key = hashlib.sha256(json.dumps([database_hash(db), cutoff, DOS_BINS, DOS_WIDTH,
                                         _CACHE_FORMAT]).encode()).hexdigest()[:16]
        cache = Path(cache_dir) / f"graphs-{key}.npz"
        if cache.exists():
            try:
                return GraphSet.load(cache)
            except (ValueError, KeyError, OSError):
                pass  # stale or partial cache: rebuilt below
    parts = {k: [] for k in ("numbers", "masses", "node_group", "edge_src", "edge_dst",
                             "edge_vec", "group_elements", "dos", "vision")}
    node_ptr, edge_ptr, group_ptr = [0], [0], [0]
    flags = {}
    iterator = ids
    if progress:
        from tqdm import tqdm
        iterator = tqdm(ids, desc="graphs", unit="crystal")
    for mid in iterator:
        g, node_group, group_el, dos, vis, fl = _crystal(db.record(mid), cutoff,
                                                         db.config.bin_width)
        parts["numbers"].append(g.numbers)
        parts["masses"].append(g.masses)
        parts["node_group"].append(node_group)
        parts["edge_src"].append(g.edge_src)
        parts["edge_dst"].append(g.edge_dst)
        parts["edge_vec"].append(g.edge_vec)
        parts["group_elements"].append(np.array(group_el, dtype=np.int64))
        parts["dos"].append(dos)
        parts["vision"].append(vis[None])
        node_ptr.append(node_ptr[-1] + g.n_atoms)
        edge_ptr.append(edge_ptr[-1] + g.n_edges)
        group_ptr.append(group_ptr[-1] + len(group_el))
        for k, v in fl.items():
            flags.setdefault(k, []).append(v)
    out = GraphSet(ids=ids, node_ptr=np.array(node_ptr), edge_ptr=np.array(edge_ptr),
                   group_ptr=np.array(group_ptr),
                   flags={k: np.array(v, dtype=bool) for k, v in flags.items()},
                   **{k: np.concatenate(v) for k, v in parts.items()})
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        out.save(cache)
    return out


def collate(gs, positions, dtype=None):
    """A training batch (dict of torch tensors) of the crystals at ``positions``.

    Node and edge indices are offset into one disjoint graph; ``node_dos_group``
    gives each node's element group in the batch's ``dos`` target rows.
    """
    import torch

    dtype = dtype or torch.float32
    nodes, edges, groups = [], [], []
    src, dst, node_graph, node_group = [], [], [], []
    n_off = g_off = 0
    for b, k in enumerate(positions):
        n0, n1 = gs.node_ptr[k], gs.node_ptr[k + 1]
        e0, e1 = gs.edge_ptr[k], gs.edge_ptr[k + 1]
        g0, g1 = gs.group_ptr[k], gs.group_ptr[k + 1]
        nodes.append(slice(n0, n1))
        edges.append(slice(e0, e1))
        groups.append(slice(g0, g1))
        src.append(gs.edge_src[e0:e1] + n_off)
        dst.append(gs.edge_dst[e0:e1] + n_off)
        node_graph.append(np.full(n1 - n0, b, dtype=np.int64))
        node_group.append(gs.node_group[n0:n1] + g_off)
        n_off += n1 - n0
        g_off += g1 - g0
    cat = np.concatenate
    return {
        "numbers": torch.from_numpy(cat([gs.numbers[s] for s in nodes])),
        "masses": torch.from_numpy(cat([gs.masses[s] for s in nodes])).to(dtype),
        "edge_src": torch.from_numpy(cat(src)),
        "edge_dst": torch.from_numpy(cat(dst)),
        "edge_vec": torch.from_numpy(cat([gs.edge_vec[s] for s in edges])).to(dtype),
        "node_graph": torch.from_numpy(cat(node_graph)),
        "node_dos_group": torch.from_numpy(cat(node_group)),
        "n_graphs": len(positions),
        "n_groups": g_off,
        "vision": torch.from_numpy(gs.vision[np.asarray(positions)]).to(dtype),
        "dos": torch.from_numpy(cat([gs.dos[s] for s in groups])).to(dtype),
    }


def graph_batch(graphs, dtype=None):
    """A prediction batch (dict of torch tensors, no targets) of CrystalGraph objects."""
    import torch

    dtype = dtype or torch.float32
    src, dst, node_graph = [], [], []
    off = 0
    for b, g in enumerate(graphs):
        src.append(g.edge_src + off)
        dst.append(g.edge_dst + off)
        node_graph.append(np.full(g.n_atoms, b, dtype=np.int64))
        off += g.n_atoms
    cat = np.concatenate
    return {
        "numbers": torch.from_numpy(cat([g.numbers for g in graphs])),
        "masses": torch.from_numpy(cat([g.masses for g in graphs])).to(dtype),
        "edge_src": torch.from_numpy(cat(src)),
        "edge_dst": torch.from_numpy(cat(dst)),
        "edge_vec": torch.from_numpy(cat([g.edge_vec for g in graphs])).to(dtype),
        "node_graph": torch.from_numpy(cat(node_graph)),
        "n_graphs": len(graphs),
    }
