"""The 2D route's data: the database's S(|Q|,E) maps, their split, preprocessing and metrics.

Maps are the reference work's targets: ``Database.regenerate(id, 'map')``, the Ideal2D map
of 300 |Q| rows (0-15 1/A, 0.05 1/A) x 300 energy columns (0-150 meV, 0.5 meV; 1.5 meV
FWHM) at 0 K. They are regenerated once into a cache (float16, max-normalised, about
1.7 GB for the whole database; resumable) that the autoencoders and the PCA baseline read.

Split (:func:`ae_part`): the reference work's 94 / 5 / 1 by material id, except that the
predictor's test crystals (``dataset.reader.split_of``) are never in the autoencoder's
training part: they form their own part, ``predictor-test``, on which the end-to-end routes
are compared. So: ``train`` ~84 %, ``validation`` 5 %, ``test`` 1 %, ``predictor-test``
10 % of the database.

Preprocessing as the reference work: the map is max-normalised to 1, then brightened with
``g(x) = 1 - (1 - x)**3`` (weak features lifted); :func:`unbrighten` inverts it. Metrics
(:func:`map_metrics`) are taken on max-normalised maps (not brightened): MSE and cosine.

numpy only; the networks are in :mod:`insnet_core.nn.autoencoder`.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

from insnet_core import InputError

__all__ = ["MAP_SHAPE", "AE_FRACTIONS", "ae_part", "ae_split", "brighten", "unbrighten",
           "max_normalise", "map_metrics", "MapCache", "build_map_cache", "PCABaseline",
           "quartiles", "reconstruction_table", "reconstruction_markdown"]

#: (|Q| rows, energy columns) of a database map.
MAP_SHAPE = (300, 300)
#: The reference work's autoencoder split (train / validation / test), of the crystals
#: that are not in the predictor's test part.
AE_FRACTIONS = {"train": 0.94, "validation": 0.05, "test": 0.01}
#: Seed of the autoencoder split (its own hash stream, independent of the predictor's).
AE_SEED = 20230315


def ae_part(material_id, seed=AE_SEED, predictor_seed=None):
    """Autoencoder part of a material id: 'train', 'validation', 'test' or 'predictor-test'."""
    from insnet_core.dataset.reader import SPLIT_SEED, split_of
    if split_of(material_id, SPLIT_SEED if predictor_seed is None else predictor_seed) == "test":
        return "predictor-test"
    h = hashlib.sha256(f"ae:{seed}:{material_id}".encode()).hexdigest()
    u = int(h[:16], 16) / 16 ** 16
    edge = 0.0
    for part, frac in AE_FRACTIONS.items():
        edge += frac
        if u < edge:
            return part
    return "test"


def ae_split(ids, seed=AE_SEED):
    """dict part -> list of ids (order kept)."""
    out = {p: [] for p in list(AE_FRACTIONS) + ["predictor-test"]}
    for m in ids:
        out[ae_part(m, seed)].append(m)
    return out


def max_normalise(maps):
    """Maps divided by their own maximum (clipped at 0); all-zero maps stay zero.

    Parameters
    ----------
    maps : ndarray, shape (..., 300, 300)
    """
    x = np.clip(np.asarray(maps, dtype=np.float32), 0.0, None)
    m = x.max(axis=(-2, -1), keepdims=True)
    return np.where(m > 0, x / np.where(m > 0, m, 1.0), 0.0).astype(np.float32)


def brighten(x):
    """The reference work's brightening ``g(x) = 1 - (1 - x)**3`` of a max-normalised map."""
    x = np.clip(x, 0.0, 1.0)
    return 1.0 - (1.0 - x) ** 3


def unbrighten(y):
    """Inverse of :func:`brighten`: ``x = 1 - (1 - y)**(1/3)`` (y clipped to [0, 1])."""
    y = np.clip(y, 0.0, 1.0)
    return 1.0 - np.cbrt(1.0 - y)


def map_metrics(pred, true):
    """MSE and cosine of max-normalised maps, one value per map.

    Parameters
    ----------
    pred, true : ndarray, shape (n, 300, 300) (or (n, pixels))

    Returns
    -------
    dict of ndarray (n,)
    """
    p = max_normalise(np.asarray(pred).reshape(len(pred), *MAP_SHAPE)).reshape(len(pred), -1)
    t = max_normalise(np.asarray(true).reshape(len(true), *MAP_SHAPE)).reshape(len(true), -1)
    p, t = p.astype(np.float64), t.astype(np.float64)
    mse = ((p - t) ** 2).mean(axis=1)
    norm = np.linalg.norm(p, axis=1) * np.linalg.norm(t, axis=1)
    cosine = np.where(norm > 0, (p * t).sum(axis=1) / np.where(norm > 0, norm, 1.0), 0.0)
    return {"mse": mse, "cosine": cosine}


class MapCache:
    """The regenerated maps of a database, memory-mapped (float16, max-normalised).

    Files in ``folder``: ``maps.f16`` (n x 300 x 300 float16), ``done.u8`` (one byte per
    map, 1 once written), ``meta.json`` (database hash, ids, shape, temperature).
    """

    def __init__(self, folder):
        self.folder = Path(folder)
        meta_path = self.folder / "meta.json"
        if not meta_path.is_file():
            raise InputError(f"{self.folder}: no map cache here (build it with "
                             "`insnet maps build`)")
        self.meta = json.loads(meta_path.read_text())
        self.ids = list(self.meta["ids"])
        self.index = {m: i for i, m in enumerate(self.ids)}
        n = len(self.ids)
        self.maps = np.memmap(self.folder / "maps.f16", dtype=np.float16, mode="r",
                              shape=(n,) + MAP_SHAPE)
        self.done = np.fromfile(self.folder / "done.u8", dtype=np.uint8).astype(bool)
        if self.done.size != n:
            raise InputError(f"{self.folder}: done.u8 has {self.done.size} entries for {n} maps")

    @property
    def complete(self):
        return bool(self.done.all())

    def part(self, part, seed=AE_SEED):
        """Ids of one autoencoder part whose maps are in the cache."""
        return [m for m in self.ids if self.done[self.index[m]] and ae_part(m, seed) == part]

    def get(self, ids):
        """float32 maps (n, 300, 300), max-normalised, in the order of ``ids``."""
        rows = [self.index[m] for m in ids]
        missing = [m for m, r in zip(ids, rows) if not self.done[r]]
        if missing:
            raise InputError(f"{self.folder}: maps not built yet for {missing[:3]} "
                             f"({len(missing)} in all)")
        return np.asarray(self.maps[rows], dtype=np.float32)


def build_map_cache(db, folder, ids=None, chunk=64, log=print, limit_seconds=None):
    """Regenerate the maps of ``db`` into ``folder`` (resumes what is there).

    Parameters
    ----------
    db : insnet_core.dataset.reader.Database
    folder : path
    ids : list of str, optional
        The crystals (default: every 'ok' crystal of the database).
    chunk : int
        Maps written between flushes of the done mask.
    limit_seconds : float, optional
        Stop (resumably) after this long.

    Returns
    -------
    MapCache
    """
    from insnet_core.nn.data import database_hash

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ids = list(db.ids()) if ids is None else list(ids)
    meta = {"format": 1, "database_sha256": database_hash(db), "ids": ids,
            "shape": list(MAP_SHAPE), "temperature_K": 0.0, "dtype": "float16",
            "normalisation": "max-normalised per map"}
    meta_path = folder / "meta.json"
    n = len(ids)
    if meta_path.is_file():
        old = json.loads(meta_path.read_text())
        if old.get("database_sha256") != meta["database_sha256"] or old.get("ids") != ids:
            raise InputError(f"{folder}: the map cache belongs to another database or crystal "
                             "list; remove the folder or choose another")
    else:
        np.memmap(folder / "maps.f16", dtype=np.float16, mode="w+", shape=(n,) + MAP_SHAPE).flush()
        np.zeros(n, dtype=np.uint8).tofile(folder / "done.u8")
        tmp = folder / "meta.json.tmp"
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, meta_path)
    maps = np.memmap(folder / "maps.f16", dtype=np.float16, mode="r+", shape=(n,) + MAP_SHAPE)
    done = np.fromfile(folder / "done.u8", dtype=np.uint8)
    todo = np.flatnonzero(done == 0)
    t0 = time.time()
    for start in range(0, todo.size, chunk):
        rows = todo[start:start + chunk]
        for r in rows:
            spectrum = db.regenerate(ids[r], "map")
            values = np.asarray(spectrum.values)
            if values.shape != MAP_SHAPE:
                raise InputError(f"{ids[r]}: map of shape {values.shape}, expected {MAP_SHAPE}")
            maps[r] = max_normalise(values)
        maps.flush()  # the maps first, then the mask that says they are there
        done[rows] = 1
        tmp = folder / "done.u8.tmp"
        done.tofile(tmp)
        os.replace(tmp, folder / "done.u8")
        log(f"maps: {int(done.sum())} of {n} ({time.time() - t0:.0f} s)")
        if limit_seconds is not None and time.time() - t0 > limit_seconds:
            break
    return MapCache(folder)


class PCABaseline:
    """PCA of brightened maps with ``n`` components: the cheap, honest baseline.

    ``encode`` gives the component scores, ``decode`` the brightened maps (clipped to
    [0, 1]). Fitted by a randomized SVD (two power iterations) of the centred maps; saved
    as an ``.npz`` of plain arrays.
    """

    def __init__(self, mean, components):
        self.mean = np.asarray(mean, dtype=np.float32)            # (pixels,)
        self.components = np.asarray(components, dtype=np.float32)  # (n, pixels)

    @classmethod
    def fit(cls, maps, n=50, seed=0, chunk=512):
        """Fit on max-normalised maps (n_maps, 300, 300); brightened here."""
        rng = np.random.default_rng(seed)
        m = len(maps)
        pixels = MAP_SHAPE[0] * MAP_SHAPE[1]

        def rows(s):
            return brighten(np.asarray(maps[s:s + chunk], dtype=np.float32)).reshape(-1, pixels)

        mean = np.zeros(pixels, dtype=np.float64)
        for s in range(0, m, chunk):
            mean += rows(s).sum(axis=0)
        mean = (mean / m).astype(np.float32)

        def times(v):   # (X - mean) @ v, v (pixels, k)
            return np.concatenate([(rows(s) - mean) @ v for s in range(0, m, chunk)])

        def times_t(u):  # (X - mean).T @ u, u (m, k)
            out = np.zeros((pixels, u.shape[1]), dtype=np.float64)
            for s in range(0, m, chunk):
                out += (rows(s) - mean).T @ u[s:s + chunk]
            return out.astype(np.float32)

        k = min(n + 10, m)
        q, _ = np.linalg.qr(times(rng.standard_normal((pixels, k)).astype(np.float32)))
        for _ in range(2):
            q, _ = np.linalg.qr(times(np.linalg.qr(times_t(q))[0]))
        b = times_t(q).T                       # (k, pixels) = q.T @ (X - mean)
        _, _, vt = np.linalg.svd(b, full_matrices=False)
        return cls(mean, vt[:n])

    def encode(self, maps):
        """Scores (n, components) of max-normalised maps (brightened here)."""
        return self.project(brighten(np.asarray(maps, dtype=np.float32)))

    def project(self, brightened):
        """Scores of maps already brightened (as the autoencoders' encoders take them)."""
        x = np.asarray(brightened, dtype=np.float32).reshape(len(brightened), -1)
        return (x - self.mean) @ self.components.T

    def decode(self, scores):
        y = np.asarray(scores, dtype=np.float32) @ self.components + self.mean
        return np.clip(y, 0.0, 1.0).reshape(len(scores), *MAP_SHAPE)

    def save(self, path):
        np.savez(path, mean=self.mean, components=self.components)

    @classmethod
    def load(cls, path):
        with np.load(path, allow_pickle=False) as d:
            return cls(d["mean"], d["components"])

    @property
    def nbytes(self):
        return int(self.mean.nbytes + self.components.nbytes)


def quartiles(metrics):
    """metric -> {median, q1, q3} of each per-map metric array."""
    out = {}
    for k, v in metrics.items():
        q1, med, q3 = np.percentile(v, [25, 50, 75])
        out[k] = {"median": float(med), "q1": float(q1), "q3": float(q3)}
    return out


def reconstruction_table(maps, coders, log=print):
    """Reconstruction error of each coder on the same max-normalised maps.

    Parameters
    ----------
    maps : ndarray (n, 300, 300)
    coders : dict name -> (encode, decode, bytes, parameters)
        ``encode`` / ``decode`` map brightened maps <-> codes in batches (numpy).

    Returns
    -------
    list of dict
        name, n, MSE and cosine median / quartiles (max-normalised, not brightened),
        bytes, parameters, decode seconds per map (batches of 32).
    """
    rows = []
    for name, (encode, decode, nbytes, params) in coders.items():
        out = np.empty_like(maps, dtype=np.float32)
        t_dec = 0.0
        for s in range(0, len(maps), 32):
            codes = encode(brighten(maps[s:s + 32]))
            t = time.perf_counter()
            out[s:s + 32] = unbrighten(decode(codes))
            t_dec += time.perf_counter() - t
        row = {"name": name, "n": int(len(maps)), "bytes": int(nbytes), "parameters": int(params),
               "decode_seconds_per_map": t_dec / max(len(maps), 1),
               **quartiles(map_metrics(out, maps))}
        rows.append(row)
        log(f"{name}: MSE {row['mse']['median']:.5f} cosine {row['cosine']['median']:.4f}")
    return rows


def reconstruction_markdown(rows):
    lines = ["| coder | maps | MSE median (q1-q3) | cosine median (q1-q3) | parameters | bytes | "
             "decode per map (batches of 32) |", "|---|---:|---|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['n']} | {r['mse']['median']:.5f} ({r['mse']['q1']:.5f}-"
                     f"{r['mse']['q3']:.5f}) | {r['cosine']['median']:.4f} "
                     f"({r['cosine']['q1']:.4f}-{r['cosine']['q3']:.4f}) | {r['parameters']:,} | "
                     f"{r['bytes'] / 1e6:.1f} MB | {r['decode_seconds_per_map'] * 1e3:.1f} ms |")
    return "\n".join(lines)
