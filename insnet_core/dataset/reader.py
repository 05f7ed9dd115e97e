"""Reading the INS database for training and inspection.

>>> db = Database("data/insnet-db")
>>> train_ids = db.split("train")                  # fixed, seeded split by material id
>>> x = db.vision_array(train_ids)                 # (n, 119) VISION targets, float32
>>> spectrum = db.regenerate("mp-1818", "map")     # 300 x 300 map target (Spectrum)

The split is a pure function of the material id and the seed: the same
crystal always lands in the same part, whatever else the database holds.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from insnet_core import InputError
from insnet_core.dataset.record import RECORD_FORMAT, BuildConfig, regenerate
from insnet_core.dataset.store import ShardStore, read_shard

__all__ = ["Database", "split_of", "SPLIT_FRACTIONS", "SPLIT_SEED"]

#: Fractions of the train / validation / test parts.
SPLIT_FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}
#: Default seed of the split.
SPLIT_SEED = 20230101


def split_of(material_id, seed=SPLIT_SEED, fractions=SPLIT_FRACTIONS):
    """Part ('train', 'validation' or 'test') of a material id.

    ``u = int(sha256(f"{seed}:{material_id}")[:16], 16) / 16**16`` is uniform
    in [0, 1); the parts are consecutive intervals of ``fractions``.
    """
    digest = hashlib.sha256(f"{seed}:{material_id}".encode()).hexdigest()
    u = int(digest[:16], 16) / float(16 ** 16)
    edge = 0.0
    for name, frac in fractions.items():
        edge += frac
        if u < edge:
            return name
    return list(fractions)[-1]


class Database:
    """All shard files of a database folder, indexed by material id."""

    def __init__(self, root):
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(f"{self.root}: database folder not found")
        meta = self.root / "build.json"
        self.config = (BuildConfig.from_dict(json.loads(meta.read_text())["config"])
                       if meta.exists() else BuildConfig())
        if self.config.format != RECORD_FORMAT:
            raise InputError(f"{self.root}: database of format {self.config.format}; this insnet "
                             f"reads format {RECORD_FORMAT} (principal-axis DOS for the "
                             "anisotropic fundamentals): rebuild it with 'insnet dataset build'")
        self._records = {}
        self._shard_of = {}
        for path in sorted(self.root.glob("*.h5")):
            for rec in read_shard(path):
                self._records[rec["material_id"]] = rec
                self._shard_of[rec["material_id"]] = path.stem
        store = ShardStore(self.root)
        staging = self.root / "staging"
        if staging.is_dir():  # records of an unfinished build are readable too
            for folder in sorted(p for p in staging.iterdir() if p.is_dir()):
                for mid, rec in store.staged(folder.name).items():
                    self._records.setdefault(mid, rec)
                    self._shard_of.setdefault(mid, folder.name)

    def __len__(self):
        return len(self._records)

    def __contains__(self, material_id):
        return material_id in self._records

    def record(self, material_id):
        """The stored record (dict of arrays and scalars) of one crystal."""
        try:
            return self._records[material_id]
        except KeyError:
            raise InputError(f"{material_id}: not in the database at {self.root}") from None

    def structure(self, material_id, max_atoms=None):
        """The stored (DFT-relaxed primitive) cell of one crystal as a Structure."""
        from insnet_core.structure import Structure
        rec = self.record(material_id)
        return Structure.from_arrays(np.asarray(rec["lattice"]), [str(x) for x in rec["species"]],
                                     np.asarray(rec["frac_coords"]),
                                     source=str(rec["material_id"]), max_atoms=max_atoms)

    def ids(self, status="ok", stable_only=False, max_energy=None):
        """Material ids, sorted; filter by status ('ok', 'failed', None = all) and flags."""
        out = []
        for mid, rec in self._records.items():
            if status is not None and rec["status"] != status:
                continue
            if stable_only and rec.get("has_imaginary"):
                continue
            if max_energy is not None and rec.get("max_energy", 0) > max_energy:
                continue
            out.append(mid)
        return sorted(out, key=lambda m: (int(m.rsplit("-", 1)[-1])
                                          if m.rsplit("-", 1)[-1].isdigit() else 10 ** 12, m))

    def split(self, part, seed=SPLIT_SEED, **filters):
        """Ids of one part ('train', 'validation', 'test') of the seeded split."""
        if part not in SPLIT_FRACTIONS:
            raise InputError(f"split part must be one of {list(SPLIT_FRACTIONS)}, got {part!r}")
        return [m for m in self.ids(**filters) if split_of(m, seed) == part]

    def failures(self):
        """dict reason -> list of material ids, for the failed crystals."""
        out = {}
        for mid in self.ids(status="failed"):
            out.setdefault(self._records[mid]["reason"], []).append(mid)
        return out

    def vision_array(self, ids, row="average"):
        """VISION targets, shape (n, 119) float32 (row: 'backward', 'forward', 'average')."""
        k = {"backward": 0, "forward": 1, "average": 2}[row]
        return np.stack([self.record(m)["vision"][k] for m in ids]).astype(np.float32)

    def regenerate(self, material_id, target="map", **settings):
        """A spectrum of one crystal from its stored ingredients (see record.regenerate)."""
        return regenerate(self.record(material_id), target, self.config, **settings)

    def map_array(self, ids, temperature=0.0):
        """300 x 300 map targets regenerated from ingredients, shape (n, 300, 300) float32."""
        return np.stack([self.regenerate(m, "map", temperature=temperature).values
                         for m in ids]).astype(np.float32)

    def torch_dataset(self, part="train", target="vision", seed=SPLIT_SEED, **filters):
        """A ``torch.utils.data.Dataset`` of (material id, target tensor) for one split part.

        Maps are regenerated lazily per item. Needs torch (imported here only).
        """
        import torch

        ids = self.split(part, seed, **filters)
        db = self

        class _INSDataset(torch.utils.data.Dataset):
            def __len__(self):
                return len(ids)

            def __getitem__(self, i):
                mid = ids[i]
                if target == "vision":
                    y = db.vision_array([mid])[0]
                else:
                    y = db.regenerate(mid, "map").values.astype(np.float32)
                return mid, torch.from_numpy(np.asarray(y))

        return _INSDataset()
