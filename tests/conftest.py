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
