"""Shared fixtures: paths to example and test data, phonon modes computed once per session.

Every file a test reads is in the repository (tests/data, examples/data), so a fresh
clone runs every test.
"""
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "data" / "phonondb"
TEST_DATA = REPO / "tests" / "data"


@pytest.fixture(scope="session")
def example_dir():
    """Folder of the phonondb example crystals shipped with the repo."""
    return EXAMPLES


@pytest.fixture(scope="session")
def test_data():
    """tests/data: real Mantid files (mantid_files/) and structures (examples/)."""
    return TEST_DATA


@pytest.fixture(scope="session")
def sif4_phonon():
    from insnet_core.phonons import load_phonopy
    return load_phonopy(EXAMPLES / "mp-1818-20180417")


@pytest.fixture(scope="session")
def sif4_modes(sif4_phonon):
    from insnet_core.phonons import run_mesh
    return run_mesh(sif4_phonon, spacing=0.1)  # the reference mesh the tests were sized for


@pytest.fixture(scope="session")
def csau_modes():
    from insnet_core.phonons import load_phonopy, run_mesh
    return run_mesh(load_phonopy(EXAMPLES / "mp-2667-20180417"), spacing=0.1)


# ---------------------------------------------------------------------------
# The ML route: a tiny model trained once per session on the committed database
# ---------------------------------------------------------------------------
@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("models") / "tiny"
    from insnet_core.nn.model import ModelConfig
    from insnet_core.nn.train import TrainSettings, train
    from nn_helpers import TINY, database, small_ids
    ids = small_ids(60, max_atoms=4)
    train(database(), out, ModelConfig(**TINY), TrainSettings(epochs=1, batch_size=8, seed=1),
          ids=ids, log=lambda m: None)
    return out


def _poscar(path, material_id):
    from nn_helpers import database
    rec = database().record(material_id)
    species = [str(s) for s in rec["species"]]
    order = sorted(set(species), key=species.index)
    lines = [material_id, "1.0"] + [" ".join(f"{x:.10f}" for x in row) for row in rec["lattice"]]
    lines += [" ".join(order), " ".join(str(species.count(e)) for e in order), "Direct"]
    for e in order:
        lines += [" ".join(f"{x:.10f}" for x in f) for s, f in zip(species, rec["frac_coords"])
                  if s == e]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def known(tmp_path_factory, tiny_model):
    import json
    from nn_helpers import database, small_ids
    elements = set(json.loads((tiny_model / "card.json").read_text())["elements"])
    mid = next(m for m in small_ids(60, max_atoms=4)
               if set(map(str, database().record(m)["species"])) <= elements)
    return _poscar(tmp_path_factory.mktemp("cells") / "POSCAR-known", mid)


# ---------------------------------------------------------------------------
# Mantid: the real one when importable, else the stand-in in tests/mantid_standin
# ---------------------------------------------------------------------------
import sys  # noqa: E402

MANTID_STANDIN = REPO / "tests" / "mantid_standin"
PLUGINS = REPO / "plugins" / "algorithms"

try:
    import mantid  # noqa: F401
    USING_MANTID_STANDIN = bool(getattr(mantid, "__insnet_standin__", False))
except ImportError:
    sys.path.insert(0, str(MANTID_STANDIN))
    USING_MANTID_STANDIN = True


def pytest_configure(config):
    config.addinivalue_line("markers", "mantid: needs a real Mantid installation")


def pytest_collection_modifyitems(config, items):
    if not USING_MANTID_STANDIN:
        return
    skip = pytest.mark.skip(reason="needs a real Mantid (the tests/mantid_standin stand-in "
                                   "is in use)")
    for item in items:
        if "mantid" in item.keywords:
            item.add_marker(skip)
