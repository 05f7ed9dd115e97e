"""Shared pieces of the predictor tests: the committed database, small crystals from it."""
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DB_ROOT = REPO / "data" / "insnet-db"
#: Settings of the tiny predictor the ML tests train (conftest's tiny_model, evaluate tests)
TINY = dict(em_dim=8, mul=4, radial_neurons=8, out_dim=8)
_DB = None


def database():
    """The committed INS database, loaded once per test session."""
    global _DB
    if _DB is None:
        from insnet_core.dataset.reader import Database
        _DB = Database(DB_ROOT)
    return _DB


def small_ids(n, max_atoms=6, part=None):
    """The first ``n`` crystals (of a split part) with at most ``max_atoms`` atoms."""
    db = database()
    ids = db.ids() if part is None else db.split(part)
    return [m for m in ids if db.record(m)["n_atoms"] <= max_atoms][:n]


def structure_of(material_id):
    from insnet_core.structure import Structure
    rec = database().record(material_id)
    return Structure.from_arrays(rec["lattice"], [str(s) for s in rec["species"]],
                                 rec["frac_coords"], source=material_id)


def random_rotation(seed):
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q
