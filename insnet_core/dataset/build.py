"""Build the INS training database from Togo's phonondb shards, resumably, with dask.

Each crystal is an independent task. The driver streams the crystal's files
out of its ``.tar.xz`` shard and sends their bytes with the task, so workers
need no shared filesystem (a real cluster's scheduler works the same as the
default LocalCluster). Finished records are staged and consolidated per shard
(:mod:`insnet_core.dataset.store`), so a run killed at any moment resumes
with ``resume=True`` and loses nothing.
"""
from __future__ import annotations

import csv
import json
import os
import sys
import tarfile
import time
from collections import OrderedDict
from pathlib import Path

from insnet_core import InputError, __version__
from insnet_core.dataset.record import BuildConfig, compute_record, failure_record
from insnet_core.dataset.store import ShardStore
from insnet_core.parallel import SerialExecutor, close_client, make_client

__all__ = ["read_index", "build", "package_versions", "iter_shard_files"]

REQUIRED_COLUMNS = ("material_id", "folder", "shard")


def package_versions():
    """Versions of the packages a record depends on (stored as provenance)."""
    from importlib import metadata
    out = {"insnet": __version__}
    for name in ("phonopy", "spglib", "numpy", "scipy", "periodictable", "resins"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def read_index(source):
    """Rows of ``<source>/index.csv`` as an ordered dict material_id -> row."""
    source = Path(source)
    index = source / "index.csv"
    if not index.is_file():
        raise InputError(f"{source}: no index.csv (expected a phonondb folder with index.csv "
                         "and phonondb-NN.tar.xz shards)")
    with open(index, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"{index}: missing column(s) {', '.join(missing)}")
        rows = OrderedDict()
        for lineno, row in enumerate(reader, 2):
            if not row["material_id"]:
                raise InputError(f"{index}, line {lineno}: empty material_id")
            rows[row["material_id"]] = row
    return rows


def iter_shard_files(shard_path, wanted_folders):
    """Yield ``(folder, {file name: bytes})`` for the wanted crystal folders of a shard.

    Folders are yielded in archive order; a wanted folder missing from the
    archive is yielded with an empty dict (recorded as a failure by the caller).
    """
    wanted = set(wanted_folders)
    seen = set()
    current, files = None, {}
    try:
        with tarfile.open(shard_path, "r:xz") as tar:
            for member in tar:
                parts = Path(member.name).parts
                if len(parts) < 2 or parts[0] not in wanted or not member.isfile():
                    continue
                if current is not None and parts[0] != current:
                    yield current, files
                    seen.add(current)
                    files = {}
                current = parts[0]
                handle = tar.extractfile(member)
                files[parts[-1]] = handle.read() if handle is not None else b""
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InputError(f"{shard_path}: cannot read the shard archive ({exc})") from None
    if current is not None:
        yield current, files
        seen.add(current)
    for folder in sorted(wanted - seen):
        yield folder, {}


def _plan(rows, only, limit):
    ids = list(rows)
    if only:
        unknown = [i for i in only if i not in rows]
        if unknown:
            raise InputError(f"--only: material id(s) not in index.csv: {', '.join(unknown[:10])}")
        ids = [i for i in ids if i in set(only)]
    if limit is not None:
        if limit < 0:
            raise InputError(f"--limit must be >= 0, got {limit}")
        ids = ids[:limit]
    shards = OrderedDict()
    for mid in ids:
        shards.setdefault(rows[mid]["shard"], []).append(mid)
    return shards


def _check_build_json(out, config, source, resume):
    meta_path = out / "build.json"
    wanted = {"config": config.to_dict(), "source": Path(source).name}
    if meta_path.exists():
        if not resume:
            raise InputError(f"{out}: a database is already there; pass --resume to continue "
                             "it (finished crystals are kept) or choose another --out")
        have = json.loads(meta_path.read_text())
        if have.get("config") != wanted["config"]:
            raise InputError(f"{out}: was built with different settings {have.get('config')}; "
                             "use a new --out for these settings")
    else:
        if out.exists() and any(out.iterdir()) and not resume:
            raise InputError(f"{out}: folder exists and is not empty")
        out.mkdir(parents=True, exist_ok=True)
        tmp = meta_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(wanted, indent=1))
        os.replace(tmp, meta_path)


def build(source, out, workers=2, scheduler=None, limit=None, only=None, resume=False,
          config=BuildConfig(), consolidate_every=50, progress=True, log=None):
    """Build (or resume) the database.

    Parameters
    ----------
    source : path
        phonondb folder with ``index.csv`` and ``phonondb-NN.tar.xz``.
    out : path
        Database folder (one ``<shard>.h5`` per source shard).
    workers : int
        LocalCluster worker processes (0 = run in this process, no dask).
    scheduler : str, optional
        Address of an existing dask scheduler (a real cluster); overrides workers.
    limit : int, optional
        Only the first N crystals of the index (after ``only``).
    only : list of str, optional
        Only these material ids.
    resume : bool
        Continue a build in ``out``: finished crystals are skipped.
    consolidate_every : int
        Merge staged records into the shard file after this many new records.

    Returns
    -------
    dict
        Counts: ``planned``, ``skipped`` (already done), ``computed``, ``failed``.
    """
    source, out = Path(source), Path(out)
    if not source.is_dir():
        raise InputError(f"{source}: source folder not found")
    if workers < 0:
        raise InputError(f"--workers must be >= 0, got {workers}")
    rows = read_index(source)
    shards = _plan(rows, only, limit)
    _check_build_json(out, config, source, resume)
    store = ShardStore(out)
    store.clean_temporaries()
    attrs = {"config": config.to_dict(), "packages": package_versions(),
             "source": "Togo phonondb 2018-04-17 (CC-BY-4.0)", "shard_of": ""}
    todo = OrderedDict()
    skipped = 0
    for shard, ids in shards.items():
        done = store.done_ids(shard)
        todo[shard] = [i for i in ids if i not in done]
        skipped += len(ids) - len(todo[shard])
    total = sum(len(v) for v in todo.values())
    counts = {"planned": sum(len(v) for v in shards.values()), "skipped": skipped,
              "computed": 0, "failed": 0}
    if total == 0:
        for shard in shards:
            store.consolidate(shard, {**attrs, "shard_of": shard})
        return counts
    client, cluster = make_client(workers, scheduler)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=total, desc="crystals", unit="crystal", file=sys.stderr,
                   smoothing=0.05)
    try:
        for shard, ids in todo.items():
            if not ids:
                store.consolidate(shard, {**attrs, "shard_of": shard})
                continue
            _run_shard(client, store, source, shard, ids, rows, config, attrs,
                       max(1, workers) * 2 + 2, consolidate_every, counts, bar)
    finally:
        if bar is not None:
            bar.close()
        close_client(client, cluster)
    return counts


def _run_shard(client, store, source, shard, ids, rows, config, attrs, in_flight,
               consolidate_every, counts, bar):
    """Compute the given crystals of one shard, staging each result as it arrives."""
    shard_attrs = {**attrs, "shard_of": shard}
    folder_to_id = {rows[i]["folder"]: i for i in ids}
    shard_path = Path(source) / f"{shard}.tar.xz"
    since = 0
    pending = []
    serial = isinstance(client, SerialExecutor)

    def accept(record):
        nonlocal since
        store.stage(shard, record)
        counts["computed"] += 1
        counts["failed"] += record["status"] != "ok"
        since += 1
        if bar is not None:
            bar.update(1)
        if since >= consolidate_every:
            store.consolidate(shard, shard_attrs)
            since = 0

    def extra_of(mid):
        return {"spacegroup": rows[mid].get("spacegroup", "")}

    if not shard_path.is_file():
        for mid in ids:
            accept(failure_record(mid, f"source shard {shard_path.name} is missing"))
        store.consolidate(shard, shard_attrs)
        return
    if serial:
        for folder, files in iter_shard_files(shard_path, folder_to_id):
            mid = folder_to_id[folder]
            accept(compute_record(mid, files, config, extra_of(mid)) if files else
                   failure_record(mid, f"folder {folder} not found in {shard_path.name}"))
        store.consolidate(shard, shard_attrs)
        return

    from dask.distributed import as_completed, wait
    tracker = as_completed()
    owner = {}

    def collect(fut):
        try:
            record = fut.result()
        except Exception as exc:  # worker lost (e.g. killed for memory): record, go on
            record = failure_record(owner[fut.key], f"worker failed: {type(exc).__name__}: {exc}")
        owner.pop(fut.key, None)
        accept(record)

    for folder, files in iter_shard_files(shard_path, folder_to_id):
        mid = folder_to_id[folder]
        if not files:
            accept(failure_record(mid, f"folder {folder} not found in {shard_path.name}"))
            continue
        fut = client.submit(compute_record, mid, files, config, extra_of(mid), pure=False,
                            key=f"crystal-{mid}-{time.time_ns()}")
        owner[fut.key] = mid
        tracker.add(fut)
        pending.append(fut)
        while tracker.count() >= in_flight:
            collect(next(tracker))
    for done in tracker:
        collect(done)
    wait(pending)
    store.consolidate(shard, shard_attrs)
