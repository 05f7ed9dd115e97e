"""The training database: build, SIGKILL + resume, stored vs regenerated targets, failures."""
import csv
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from insnet_core import InputError
from insnet_core.cli import main
from insnet_core.dataset.build import build
from insnet_core.dataset.reader import Database, split_of
from insnet_core.dataset.record import BuildConfig
from insnet_core.dataset.store import read_shard
from insnet_core.simulate import simulate

GOOD = ["mp-2667", "mp-1818", "mp-661", "mp-39"]
FAST = BuildConfig(orders=4)


def _add_folder(tar, folder, files):
    for name, data in files.items():
        info = tarfile.TarInfo(f"{folder}/{name}")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def source(tmp_path_factory, example_dir):
    """A small phonondb-like source: 2 shards, good crystals and broken folders."""
    root = tmp_path_factory.mktemp("phonondb")
    good = {mid: {p.name: p.read_bytes() for p in (example_dir / f"{mid}-20180417").iterdir()}
            for mid in GOOD}
    base = good["mp-2667"]
    broken = {
        "mp-900001": {k: v for k, v in base.items() if k != "FORCE_SETS"},
        "mp-900002": {**base, "phonopy.conf": b"DIM = 3 3 3\n"},
        "mp-900003": {**base, "FORCE_SETS": base["FORCE_SETS"][: len(base["FORCE_SETS"]) // 2]},
    }
    rows = []
    shards = {"phonondb-00": ["mp-2667", "mp-1818", "mp-900001", "mp-900002"],
              "phonondb-01": ["mp-661", "mp-39", "mp-900003", "mp-900004"]}
    for shard, ids in shards.items():
        with tarfile.open(root / f"{shard}.tar.xz", "w:xz") as tar:
            for mid in ids:
                files = good.get(mid) or broken.get(mid)
                if files is not None:  # mp-900004 is listed in the index but absent
                    _add_folder(tar, f"{mid}-20180417", files)
        rows += [{"material_id": m, "folder": f"{m}-20180417", "formula": "", "n_atoms": 0,
                  "elements": "", "spacegroup": "P1 (1)", "has_born": 1, "supercell_atoms": 0,
                  "force_sets_bytes": 0, "shard": shard} for m in ids]
    with open(root / "index.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


@pytest.fixture(scope="module")
def reference_db(source, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "db"
    counts = build(source, out, workers=0, config=FAST, progress=False, consolidate_every=2)
    assert counts == {"planned": 8, "skipped": 0, "computed": 8, "failed": 4}
    return out


def _records(db):
    return {m: db.record(m) for m in db.ids(status=None)}


def _same(a, b):
    assert sorted(a) == sorted(b)
    for mid in a:
        ra, rb = a[mid], b[mid]
        assert sorted(ra) == sorted(rb), mid
        for key in ra:
            if key == "seconds":
                continue
            va, vb = ra[key], rb[key]
            if isinstance(va, np.ndarray):
                assert np.array_equal(va, vb, equal_nan=va.dtype.kind == "f"), (mid, key)
            else:
                assert va == vb, (mid, key)


def test_failures_recorded_with_reasons(reference_db):
    db = Database(reference_db)
    reasons = {db.record(m)["material_id"]: db.record(m)["reason"] for m in db.ids("failed")}
    assert "FORCE_SETS" in reasons["mp-900001"] and "missing" in reasons["mp-900001"]
    assert "DIM" in reasons["mp-900002"]
    assert "truncated" in reasons["mp-900003"]
    assert "not found" in reasons["mp-900004"]
    assert db.ids() == ["mp-39", "mp-661", "mp-1818", "mp-2667"]
    rec = db.record("mp-39")
    assert rec["has_imaginary"] and rec["min_energy"] < -1 and rec["imaginary_fraction"] > 0
    assert not db.record("mp-2667")["has_imaginary"]
    assert db.record("mp-1818")["spacegroup"] == "P1 (1)"


def test_one_file_per_shard_and_no_staging_left(reference_db):
    assert sorted(p.name for p in reference_db.glob("*.h5")) == ["phonondb-00.h5",
                                                                 "phonondb-01.h5"]
    assert not list(reference_db.glob("staging/*/*"))


def test_sigkill_mid_build_then_resume_matches_uninterrupted(source, reference_db, tmp_path):
    out = tmp_path / "db"
    cmd = [sys.executable, "-c",
           "import sys; from insnet_core.dataset.build import build; "
           "from insnet_core.dataset.record import BuildConfig; "
           f"build({str(source)!r}, {str(out)!r}, workers=1, config=BuildConfig(orders=4), "
           "progress=False, consolidate_every=1, resume=True)"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    try:
        # kill as soon as the first records exist, with the run still going
        while time.time() < deadline:
            staged = list(out.glob("staging/*/*.npz")) + list(out.glob("*.h5"))
            if staged:
                break
            if proc.poll() is not None:
                pytest.fail("build finished before it could be killed")
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    partial = Database(out)
    assert 0 < len(partial) < 8, "the kill should land mid-run"
    with pytest.raises(InputError, match="--resume"):
        build(source, out, workers=0, config=FAST, progress=False)
    counts = build(source, out, workers=0, config=FAST, progress=False, resume=True)
    assert counts["skipped"] == len(partial) and counts["computed"] == 8 - len(partial)
    _same(_records(Database(out)), _records(Database(reference_db)))
    # a second resume has nothing to do and changes nothing
    again = build(source, out, workers=0, config=FAST, progress=False, resume=True)
    assert again["computed"] == 0 and again["skipped"] == 8
    _same(_records(Database(out)), _records(Database(reference_db)))


def test_resume_refuses_other_settings(source, reference_db):
    with pytest.raises(InputError, match="different settings"):
        build(source, reference_db, workers=0, config=BuildConfig(orders=5), progress=False,
              resume=True)


@pytest.mark.parametrize("mid", ["mp-2667", "mp-1818", "mp-661"])
def test_regenerated_map_equals_engine_direct_result(reference_db, example_dir, mid):
    db = Database(reference_db)
    regenerated = db.regenerate(mid, "map")
    direct = simulate(example_dir / f"{mid}-20180417", "Ideal2D", orders=FAST.orders,
                      temperature=FAST.temperature, mesh_spacing=FAST.mesh_spacing,
                      grouping="element").total
    assert regenerated.values.shape == (300, 300)
    np.testing.assert_array_equal(regenerated.energy_edges, direct.energy_edges)
    np.testing.assert_array_equal(regenerated.q_edges, direct.q_edges)
    # ingredients are stored as float32: equal to storage precision
    np.testing.assert_allclose(regenerated.values, direct.values, rtol=2e-6,
                               atol=1e-6 * direct.values.max())


def test_stored_vision_target_equals_regenerated(reference_db):
    db = Database(reference_db)
    for mid in db.ids():
        stored = db.record(mid)["vision"]
        again = db.regenerate(mid, "vision").values
        np.testing.assert_allclose(stored, again, rtol=1e-5, atol=1e-6 * again.max())


def test_split_is_seeded_disjoint_and_stable(reference_db):
    db = Database(reference_db)
    parts = {p: db.split(p) for p in ("train", "validation", "test")}
    assert sum(len(v) for v in parts.values()) == len(db.ids())
    assert not set(parts["train"]) & set(parts["test"])
    ids = [f"mp-{i}" for i in range(5000)]
    fractions = {p: np.mean([split_of(m) == p for m in ids]) for p in ("train", "validation",
                                                                         "test")}
    assert fractions["train"] == pytest.approx(0.8, abs=0.02)
    assert fractions["test"] == pytest.approx(0.1, abs=0.015)
    assert [split_of(m) for m in ids[:50]] == [split_of(m) for m in ids[:50]]
    assert [split_of(m, seed=1) for m in ids[:200]] != [split_of(m) for m in ids[:200]]


def test_vision_array_and_show(reference_db, tmp_path):
    from insnet_core.cli import main
    db = Database(reference_db)
    arr = db.vision_array(db.ids())
    assert arr.shape == (4, 119) and arr.dtype == np.float32 and np.all(arr >= 0)
    png = tmp_path / "show.png"
    assert main(["dataset", "show", "mp-1818", "--db", str(reference_db), "-o", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert main(["dataset", "show", "mp-5", "--db", str(reference_db), "-o", str(png)]) == 2


def test_bad_source_and_options(tmp_path, source):
    with pytest.raises(InputError, match="index.csv"):
        build(tmp_path, tmp_path / "db", workers=0, progress=False)
    with pytest.raises(InputError, match="not in index.csv"):
        build(source, tmp_path / "db2", workers=0, only=["mp-1"], progress=False)


def test_build_through_an_existing_scheduler(source, reference_db, tmp_path):
    """--scheduler: the same records when tasks go to a cluster the user already runs."""
    from dask.distributed import LocalCluster

    only = ["mp-2667", "mp-900001", "mp-661"]
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster:
        counts = build(source, tmp_path / "db", scheduler=cluster.scheduler_address,
                       only=only, config=FAST, progress=False)
    assert counts["computed"] == 3 and counts["failed"] == 1
    ref = _records(Database(reference_db))
    _same(_records(Database(tmp_path / "db")), {m: ref[m] for m in only})


def test_committed_database_covers_phonondb():
    """The database on main: its card states its size (all of phonondb, >= 9000 crystals,
    or a rebuild in progress that says so), flags consistent, targets reproducible."""
    root = Path(__file__).resolve().parents[1] / "data" / "insnet-db"
    db = Database(root)
    card = (root / "DATACARD.md").read_text()
    stated = re.search(r"crystals stored: \*\*(\d+)\*\* of (\d+) in the source index", card)
    assert stated and int(stated.group(1)) == len(db)
    planned = int(stated.group(2))
    assert planned >= 9000
    if len(db) < planned:
        # a rebuild spanning sessions: its card says so and how to continue it
        assert "rebuild in progress" in card and "--resume" in card
        assert len(db) >= 1000
    ok = db.ids()
    assert len(ok) + len(db.ids(status="failed")) == len(db)
    rec = db.record("mp-149")  # silicon: stable, optic modes near 60 meV
    assert rec["formula"] == "Si" and not rec["has_imaginary"]
    assert 60 < rec["max_energy"] < 66
    np.testing.assert_allclose(db.regenerate("mp-149", "vision").values, rec["vision"],
                               rtol=1e-5, atol=1e-6 * rec["vision"].max())
    below_1thz = np.mean([db.record(m)["min_energy"] < -4.1357 for m in ok])
    assert 0.15 < below_1thz < 0.35  # about a quarter of phonondb is unstable in this setting


def test_compare_counts_changed_targets(reference_db, tmp_path):
    from insnet_core.dataset.compare import compare_targets
    same = compare_targets(reference_db, reference_db)
    assert same["rows"][0][:3] == ("all", 4, 0) and same["rows"][0][5] < 1e-12
    changed = tmp_path / "db"
    shutil.copytree(reference_db, changed)
    shard = sorted(changed.glob("*.h5"))[0]
    with h5py.File(shard, "r+") as f:
        vision = f["vision"][()]
        first = [x.decode() for x in f["status"][()]].index("ok")
        vision[first, -1, ::2] = 0.0       # one computed crystal: every other bin emptied
        f["vision"][...] = vision
    result = compare_targets(reference_db, changed)
    assert result["rows"][0][2] == 1 and result["worst"][0][1] > 0.01
    assert main(["dataset", "compare", str(reference_db), str(changed)]) == 0


def test_older_database_format_is_refused_clearly(reference_db, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(reference_db, old)
    meta = json.loads((old / "build.json").read_text())
    meta["config"]["format"] = 1
    (old / "build.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="format 1.*rebuild"):
        Database(old)
    shard = sorted(old.glob("*.h5"))[0]
    with h5py.File(shard, "r+") as f:     # a format-1 shard stored an isotropic 'dos'
        f.move("dos_axes", "dos")
    with pytest.raises(InputError, match="no principal-axis DOS.*rebuild"):
        read_shard(shard)


def test_datacard_with_comparison(reference_db, tmp_path):
    card = tmp_path / "DATACARD.md"
    assert main(["dataset", "info", "--db", str(reference_db), "--card", str(card),
                 "--compare-with", str(reference_db)]) == 0
    text = card.read_text()
    assert "principal axes" in text and "record format 2" in text
    assert "## Changes of the VISION targets from the previous build" in text
    assert "| all | 4 | 0 (0.0 %)" in text
