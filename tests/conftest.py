"""Shared fixtures: paths to example data and phonon modes computed once per session."""
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "data" / "phonondb"
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def example_dir():
    """Folder of the phonondb example crystals shipped with the repo."""
    return EXAMPLES


@pytest.fixture(scope="session")
def shared_dir():
    """The project's read-only shared data folder (skips when absent)."""
    if not SHARED.is_dir():
        pytest.skip(f"shared data folder not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def sif4_phonon():
    from insnet_core.phonons import load_phonopy
    return load_phonopy(EXAMPLES / "mp-1818-20180417")


@pytest.fixture(scope="session")
def sif4_modes(sif4_phonon):
    from insnet_core.phonons import run_mesh
    return run_mesh(sif4_phonon)


@pytest.fixture(scope="session")
def csau_modes():
    from insnet_core.phonons import load_phonopy, run_mesh
    return run_mesh(load_phonopy(EXAMPLES / "mp-2667-20180417"))
