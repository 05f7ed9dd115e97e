"""Crash-safe storage of database records: staged files + atomically replaced HDF5 shards.

Layout of a database folder::

    <db>/build.json                 build settings (written once, checked on --resume)
    <db>/<shard>.h5                 consolidated records of one source shard
    <db>/staging/<shard>/<id>.npz   records finished since the last consolidation

Safety under SIGKILL at any moment:

* a record is first written to ``<id>.npz.tmp`` and renamed to ``<id>.npz``
  (rename is atomic), so a staged record is either complete or absent;
* a shard file is rewritten to ``<shard>.h5.tmp`` and renamed over the old
  one, so ``<shard>.h5`` is always a complete file;
* staged records are deleted only after the shard file containing them has
  been renamed into place; a record found both staged and in the shard is
  counted once (records are keyed by material id).

Shard HDF5 layout (column-wise, one row per crystal, ragged arrays with
offsets): see :data:`SCALAR_FIELDS`, :data:`ATOM_FIELDS`, :data:`ELEMENT_FIELDS`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

from insnet_core import InputError
from insnet_core.dataset.record import RECORD_FORMAT

__all__ = ["ShardStore", "write_shard", "read_shard", "SCALAR_FIELDS"]

#: One value per crystal: name -> numpy dtype ('str' = variable-length UTF-8).
SCALAR_FIELDS = {
    "material_id": "str", "status": "str", "reason": "str", "source_sha256": "str",
    "formula": "str", "spacegroup": "str", "seconds": "f4", "n_atoms": "i4",
    "min_energy": "f8", "max_energy": "f8", "imaginary_fraction": "f8",
    "has_imaginary": "?", "above_max_energy": "?", "contains_h": "?", "has_born": "?",
}
#: Per crystal, fixed shape.
FIXED_FIELDS = {"lattice": ((3, 3), "f8"), "mesh": ((3,), "i4"), "vision": ((3, 119), "f4")}
#: Per atom of the primitive cell (ragged, offsets in ``atom_offsets``).
ATOM_FIELDS = {"species": "str", "frac_coords": "f8"}
#: Per element of a crystal (ragged, offsets in ``element_offsets``).
ELEMENT_FIELDS = {"elements": "str", "element_n_atoms": "f8", "element_mass": "f8",
                  "element_xs": "f8", "msd_0K": "f8", "msd_300K": "f8",
                  "principal_msd_0K": "f8"}
#: Per element, per principal axis, per 0.1 meV grid point (ragged rows of 3 x n values).
DOS_FIELD = "dos_axes"
_STR = h5py.string_dtype("utf-8")


def _id_key(material_id):
    """Sort key: numeric part of 'mp-123' first, then the text."""
    tail = material_id.rsplit("-", 1)[-1]
    return (int(tail) if tail.isdigit() else 10 ** 12, material_id)


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_shard(path, records, attrs):
    """Write records (list of dicts) to ``path`` atomically (tmp file + rename).

    Parameters
    ----------
    path : Path
    records : list of dict
        Sorted by material id here; failed records carry only scalar fields.
    attrs : dict
        JSON-able file attributes (build config, provenance).
    """
    path = Path(path)
    records = sorted(records, key=lambda r: _id_key(r["material_id"]))
    tmp = path.with_name(path.name + ".tmp")
    n = len(records)
    with h5py.File(tmp, "w") as f:
        for key, value in attrs.items():
            f.attrs[key] = json.dumps(value)
        f.attrs["n_records"] = n
        for name, dtype in SCALAR_FIELDS.items():
            default = "" if dtype == "str" else 0
            col = [r.get(name, default) for r in records]
            if dtype == "str":
                f.create_dataset(name, data=np.array([str(c) for c in col], dtype=object),
                                 dtype=_STR)
            else:
                f.create_dataset(name, data=np.array(col, dtype=dtype))
        ok = [r.get("status") == "ok" for r in records]
        for name, (shape, dtype) in FIXED_FIELDS.items():
            arr = np.full((n,) + shape, np.nan if dtype.startswith("f") else 0, dtype=dtype)
            for i, r in enumerate(records):
                if ok[i]:
                    arr[i] = r[name]
            f.create_dataset(name, data=arr, compression="gzip", shuffle=True,
                             chunks=(max(1, min(n, 64)),) + shape if n else None)
        _write_ragged(f, records, ok, ATOM_FIELDS, "atom_offsets", "species")
        _write_ragged(f, records, ok, ELEMENT_FIELDS, "element_offsets", "elements")
        # DOS: one ragged row per element (its 3 axes one after the other); lengths differ
        rows = [r[DOS_FIELD] for i, r in enumerate(records) if ok[i]]
        lengths = np.array([row[0].size for row in rows for _ in range(row.shape[0])],
                           dtype=np.int64)
        flat = (np.concatenate([row.ravel() for row in rows]).astype(np.float32)
                if rows else np.zeros(0, np.float32))
        f.create_dataset("dos_offsets", data=np.concatenate([[0], np.cumsum(lengths)]))
        f.create_dataset(DOS_FIELD, data=flat, compression="gzip", compression_opts=9,
                         shuffle=True, chunks=(min(max(flat.size, 1), 1 << 16),))
        f.flush()
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _write_ragged(f, records, ok, fields, offsets_name, count_field):
    counts = [len(r[count_field]) if ok[i] else 0 for i, r in enumerate(records)]
    f.create_dataset(offsets_name, data=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))
    for name, dtype in fields.items():
        parts = [np.asarray(r[name]) for i, r in enumerate(records) if ok[i]]
        if dtype == "str":
            flat = [str(x) for p in parts for x in p]
            f.create_dataset(name, data=np.array(flat, dtype=object), dtype=_STR)
        else:
            if parts:
                data = np.concatenate(parts).astype(dtype)
            else:
                data = np.zeros((0, 3) if name in ("frac_coords", "principal_msd_0K") else (0,),
                                dtype=dtype)
            f.create_dataset(name, data=data)


def read_shard(path):
    """Read every record of a shard file as a list of dicts (inverse of write_shard)."""
    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{path}: not a readable database shard ({exc})") from None
    with f:
        if DOS_FIELD not in f:
            fmt = json.loads(f.attrs.get("config", "{}")).get("format", 1)
            raise InputError(f"{path}: database shard of format {fmt}, which has no "
                             f"principal-axis DOS; this insnet reads format {RECORD_FORMAT}: "
                             "rebuild it with 'insnet dataset build'")
        n = int(f.attrs["n_records"])
        cols = {}
        for name, dtype in SCALAR_FIELDS.items():
            data = f[name][()]
            cols[name] = [x.decode() if isinstance(x, bytes) else x for x in data] \
                if dtype == "str" else data
        fixed = {name: f[name][()] for name in FIXED_FIELDS}
        atom_off = f["atom_offsets"][()]
        el_off = f["element_offsets"][()]
        atoms = {name: f[name][()] for name in ATOM_FIELDS}
        elems = {name: f[name][()] for name in ELEMENT_FIELDS}
        dos_off = f["dos_offsets"][()]
        dos = f[DOS_FIELD][()]
    records = []
    k_ok = 0
    for i in range(n):
        rec = {}
        for name, dtype in SCALAR_FIELDS.items():
            value = cols[name][i]
            rec[name] = str(value) if dtype == "str" else value.item()
        if rec["status"] == "ok":
            for name in FIXED_FIELDS:
                rec[name] = fixed[name][i]
            a0, a1 = atom_off[k_ok], atom_off[k_ok + 1]
            for name, dtype in ATOM_FIELDS.items():
                vals = atoms[name][a0:a1]
                rec[name] = (np.array([v.decode() if isinstance(v, bytes) else v for v in vals],
                                      dtype="U3") if dtype == "str" else vals)
            e0, e1 = el_off[k_ok], el_off[k_ok + 1]
            for name, dtype in ELEMENT_FIELDS.items():
                vals = elems[name][e0:e1]
                rec[name] = (np.array([v.decode() if isinstance(v, bytes) else v for v in vals],
                                      dtype="U3") if dtype == "str" else vals)
            rows = [dos[dos_off[j]:dos_off[j + 1]].reshape(3, -1) for j in range(e0, e1)]
            rec[DOS_FIELD] = np.array(rows, dtype=np.float32)
            k_ok += 1
        records.append(rec)
    return records


class ShardStore:
    """Staging + consolidation for one database folder."""

    def __init__(self, root):
        self.root = Path(root)

    def shard_path(self, shard):
        return self.root / f"{shard}.h5"

    def staging_dir(self, shard):
        return self.root / "staging" / shard

    def clean_temporaries(self):
        """Remove half-written files left by a killed run."""
        for tmp in list(self.root.glob("*.tmp")) + list(self.root.glob("staging/*/*.tmp")):
            tmp.unlink(missing_ok=True)

    def stage(self, shard, record):
        """Write one finished record atomically to the staging folder."""
        folder = self.staging_dir(shard)
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"{record['material_id']}.npz"
        tmp = folder / f"{record['material_id']}.npz.tmp"
        payload = {}
        for key, value in record.items():
            arr = np.asarray(value)
            payload[key] = arr
        with open(tmp, "wb") as handle:
            np.savez(handle, **payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)
        return final

    def staged(self, shard):
        """Staged records of a shard: dict id -> record (unreadable files are removed)."""
        out = {}
        folder = self.staging_dir(shard)
        if not folder.is_dir():
            return out
        for path in sorted(folder.glob("*.npz")):
            try:
                with np.load(path, allow_pickle=False) as data:
                    rec = {k: (data[k].item() if data[k].ndim == 0 else data[k]) for k in data.files}
            except Exception:  # a damaged staged file is recomputed, never trusted
                path.unlink(missing_ok=True)
                continue
            rec = {k: (str(v) if isinstance(v, np.str_) else v) for k, v in rec.items()}
            out[rec["material_id"]] = rec
        return out

    def consolidated(self, shard):
        path = self.shard_path(shard)
        return {r["material_id"]: r for r in read_shard(path)} if path.exists() else {}

    def done_ids(self, shard):
        """Material ids already finished (consolidated or staged)."""
        ids = set(self.staged(shard))
        path = self.shard_path(shard)
        if path.exists():
            with h5py.File(path, "r") as f:
                ids.update(x.decode() if isinstance(x, bytes) else str(x)
                           for x in f["material_id"][()])
        return ids

    def consolidate(self, shard, attrs):
        """Merge staged records into the shard file; then remove the staged files."""
        staged = self.staged(shard)
        if not staged:
            return 0
        records = self.consolidated(shard)
        for mid, rec in staged.items():
            records.setdefault(mid, rec)
        write_shard(self.shard_path(shard), list(records.values()), attrs)
        for mid in staged:
            (self.staging_dir(shard) / f"{mid}.npz").unlink(missing_ok=True)
        return len(staged)
