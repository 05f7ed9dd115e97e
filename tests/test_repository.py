"""The repository is self-contained: tests and benchmarks find their data from the clone."""
import ast
import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _string_constants(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)]


TEST_SOURCES = sorted(p for p in (REPO / "tests").glob("*.py") if p.name != Path(__file__).name)


@pytest.mark.parametrize("path", TEST_SOURCES, ids=lambda p: p.name)
def test_no_test_reads_data_outside_the_repository(path):
    for text in _string_constants(path):
        assert "shared" not in text.split("/"), (
            f"{path.name} names the shared folder outside the repository ({text!r}); "
            "copy the file into tests/data instead")
        assert not text.startswith(("/work/", "/home/", "/tmp/")), f"{path.name}: {text!r}"
    source = path.read_text()
    for outside in ("REPO.parent", "parents[1].parent", "parents[2]"):
        assert outside not in source, f"{path.name} looks outside the repository ({outside})"


def test_fixture_files_listed_with_provenance():
    readme = (REPO / "tests" / "data" / "README.md").read_text()
    files = [p for p in (REPO / "tests" / "data").rglob("*")
             if p.is_file() and p.suffix in (".nxs", ".nxspe", ".cif", ".POSCAR")]
    assert len(files) >= 13
    for f in files:
        assert f"`{f.name}`" in readme, f"{f.name} has no provenance in tests/data/README.md"
    assert sum(f.stat().st_size for f in files) < 5_000_000


def test_bench_default_phonondb_is_relative_to_the_repository(monkeypatch):
    monkeypatch.delenv("INSNET_PHONONDB", raising=False)
    spec = importlib.util.spec_from_file_location("bench_engine_probe",
                                                  REPO / "bench" / "bench_engine.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.PHONONDB == REPO.parent / "shared" / "data" / "phonondb"
    for path in sorted((REPO / "bench").glob("*.py")):
        for text in _string_constants(path):
            assert not text.startswith("/work/"), f"{path.name}: machine-specific path {text!r}"
