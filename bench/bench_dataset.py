"""Database build throughput: crystals per core-hour and scaling from 1 to 2 dask workers.

Builds the same subset of phonondb crystals into fresh temporary databases with
1 and 2 LocalCluster workers (and in-process, no dask, as the baseline) and
prints a table. Run on an otherwise idle machine:

    .venv/bin/python bench/bench_dataset.py [--n 24] [--source ../shared/data/phonondb]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from insnet_core.dataset.build import build, read_index
from insnet_core.dataset.reader import Database

REPO = Path(__file__).resolve().parents[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=str(REPO.parent / "shared" / "data" / "phonondb"))
    parser.add_argument("--n", type=int, default=24, help="crystals in the subset")
    parser.add_argument("--shard", default="phonondb-00")
    parser.add_argument("--stride", type=int, default=7,
                        help="take every N-th crystal of the shard (a spread of sizes)")
    args = parser.parse_args()

    rows = read_index(args.source)
    subset = [m for m, r in rows.items() if r["shard"] == args.shard][::args.stride][: args.n]
    print(f"subset: {len(subset)} crystals of {args.shard} (every {args.stride}th in index "
          f"order, {sum(int(rows[m]['n_atoms']) for m in subset)} atoms in all); "
          f"{os.cpu_count()} cores")
    results = []
    for label, workers in (("in-process (no dask)", 0), ("dask, 1 worker", 1),
                           ("dask, 2 workers", 2)):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            counts = build(args.source, Path(tmp) / "db", workers=workers, only=subset,
                           progress=False, consolidate_every=10)
            wall = time.perf_counter() - start
            db = Database(Path(tmp) / "db")
            busy = sum(db.record(m)["seconds"] for m in db.ids(status=None))
        cores = max(1, workers)
        per_core_hour = counts["computed"] / (wall * cores / 3600.0)
        results.append((label, workers, wall, counts["computed"], counts["failed"],
                        per_core_hour, busy))
    base = results[1][2]
    print()
    print("| run | workers | wall s | crystals | failed | crystals/core-hour | "
          "speed-up vs 1 worker | task s (sum) | busy fraction |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, workers, wall, n, failed, cph, busy in results:
        print(f"| {label} | {workers} | {wall:.1f} | {n} | {failed} | {cph:.0f} | "
              f"{base / wall:.2f} | {busy:.1f} | {busy / (wall * max(1, workers)):.2f} |")
    print()
    print("Wall times include starting the LocalCluster (a few seconds) and reading the "
          "shard archive; speed-up 2.0 would be perfect scaling on 2 cores. 'task s' adds "
          "the time each crystal took inside its task; busy fraction = task s / (wall x "
          "workers).")


if __name__ == "__main__":
    main()
