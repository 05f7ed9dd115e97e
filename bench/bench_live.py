#!/usr/bin/env python
"""Per-update cost of the live-data overlay (insnet_core.live), for a 300x300 map.

Prints a plain-text (markdown) table; a benchmark, not a test, it asserts nothing.

For each case (SiF4, phonondb mp-1818, 5 K) it measures in the same process:

* cache miss: a fresh LiveOverlay with an empty cache; the full prediction on the fine grid
  plus the rebin onto the chunk's 300x300 bins (what the first live update costs);
* first hit: the next update, the fine prediction cached; includes building the sparse
  rebin operators for that chunk binning (what an update after a binning change costs);
* cache hit: further updates with the same binning: rebin only (goal <= 50 ms).

Wall-clock, best and median of ``--repeats`` runs (misses: fewer, they take seconds).

Usage::

    .venv/bin/python bench/bench_live.py [--repeats N]
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from insnet_core.live import LiveOverlay, PredictionCache  # noqa: E402

CRYSTAL = REPO / "examples" / "data" / "phonondb" / "mp-1818-20180417"
GOAL_MS = 50.0
CASES = [
    ("Ideal2D", {}, np.linspace(0.0, 150.0, 301), np.linspace(0.0, 15.0, 301)),
    ("SEQUOIA Ei=160", {"ei": 160.0}, np.linspace(-80.0, 150.0, 301),
     np.linspace(0.0, 12.0, 301)),
]


def timed(func):
    t0 = time.perf_counter()
    func()
    return (time.perf_counter() - t0) * 1e3


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--miss-repeats", type=int, default=3)
    args = parser.parse_args(argv)
    rows = []
    for label, settings, e_edges, q_edges in CASES:
        instrument = label.split()[0]
        chunk = (e_edges, q_edges, "meV")

        def fresh():
            return LiveOverlay(CRYSTAL / "POSCAR-unitcell", force_constants=CRYSTAL,
                               instrument=instrument, temperature=5.0,
                               cache=PredictionCache(), **settings)
        misses = []
        for _ in range(args.miss_repeats):
            overlay = fresh()
            misses.append(timed(lambda: overlay.overlay_for(chunk)))
            assert overlay.last_was_hit is False
        # first hit: a new chunk binning (operators built), prediction cached
        shifted = (np.linspace(e_edges[0], e_edges[-1] - 1.0, 301),
                   np.linspace(q_edges[0], q_edges[-1] - 0.5, 301), "meV")
        first = timed(lambda: overlay.overlay_for(shifted))
        assert overlay.last_was_hit is True
        hits = []
        for _ in range(args.repeats):
            hits.append(timed(lambda: overlay.overlay_for(chunk)))
            assert overlay.last_was_hit is True
        shape = overlay.overlay_for(chunk).shape
        rows.append((label, f"{shape[0]}x{shape[1]}", min(misses), statistics.median(misses),
                     first, min(hits), statistics.median(hits)))

    print(f"\ninsnet live overlay: per-update cost  ({platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}, numpy {np.__version__})")
    print(f"SiF4 (phonondb mp-1818), 5 K; fine grid 0.25 meV x 0.025 1/A; milliseconds; "
          f"hits: {args.repeats} runs, misses: {args.miss_repeats} runs\n")
    head = ("case", "chunk bins", "miss best", "miss median", "first hit (new binning)",
            "hit best", "hit median", f"hit <= {GOAL_MS:g} ms")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for label, shape, mb, mm, fh, hb, hm in rows:
        ok = "yes" if hm <= GOAL_MS else "NO"
        print(f"| {label} | {shape} | {mb:.0f} | {mm:.0f} | {fh:.1f} | {hb:.1f} | {hm:.1f} | "
              f"{ok} |")
    print(f"\nSpeed-up of a hit over a miss (medians): "
          + ", ".join(f"{r[0]}: {r[3] / r[6]:.0f}x" for r in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
