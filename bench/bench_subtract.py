#!/usr/bin/env python
"""Cost of a phonon subtraction (insnet_core.subtraction) on a 300x300 map, after the prediction.

Prints a plain-text (markdown) table; a benchmark, not a test, it asserts nothing.

The data are a Poisson "measurement" of a SEQUOIA-like map (Ei = 160 meV, 5 K; a synthetic
prediction with phonon-like bands, kinematic NaN region, flat background), 300 x 300 bins.
Measured in the same process, wall clock, best and median of ``--repeats`` runs:

* baseline: plain numpy ``data - s * pred`` with a known s (no errors, no checks);
* Fixed: :func:`subtract_prediction` with a given scale (checks, errors, logs);
* FitHighQ (data / poisson weights, with and without a flat background): the fit over
  |Q| >= 4 1/A, the residual with propagated errors and the |Q|-integrated magnetic
  intensity over 0-2 1/A (goal <= 50 ms, so it can run on every live-data update).

Usage::

    .venv/bin/python bench/bench_subtract.py [--repeats N]
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

from insnet_core.spectrum import Spectrum  # noqa: E402
from insnet_core.subtraction import (FitRegion, poisson_measurement,  # noqa: E402
                                     subtract_prediction)

GOAL_MS = 50.0


def synthetic(n=300, seed=0):
    """(data, prediction): 300 x 300 SEQUOIA-like map, Ei = 160 meV."""
    e_edges = np.linspace(-80.0, 150.0, n + 1)
    q_edges = np.linspace(0.0, 12.0, n + 1)
    e = 0.5 * (e_edges[1:] + e_edges[:-1])
    q = 0.5 * (q_edges[1:] + q_edges[:-1])
    bands = sum(np.exp(-0.5 * ((e - c) / 3.0) ** 2) for c in (12.0, 35.0, 60.0, 95.0))
    values = (q[:, None] ** 2 * np.exp(-0.01 * q[:, None] ** 2)) * bands[None, :] * (e > 0)
    ki = np.sqrt(160.0 / 2.0721)
    kf = np.sqrt(np.clip(160.0 - e, 0.0, None) / 2.0721)
    qmin = np.sqrt(ki ** 2 + kf ** 2 - 2 * ki * kf * np.cos(np.radians(2.0)))
    qmax = np.sqrt(ki ** 2 + kf ** 2 - 2 * ki * kf * np.cos(np.radians(62.0)))
    outside = (q[:, None] < qmin[None, :]) | (q[:, None] > qmax[None, :])
    values = np.where(outside, np.nan, values)
    pred = Spectrum(e_edges, values, q_edges=q_edges)
    expected = pred.replace(values=2.0 * values + 0.01 * np.nanmax(values))
    data = poisson_measurement(expected, 2000.0 / np.nanmax(expected.values),
                               np.random.default_rng(seed))
    return data, pred


def timed(func, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        func()
        times.append((time.perf_counter() - t0) * 1e3)
    return min(times), statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    data, pred = synthetic()
    region = FitRegion(q_range=(4.0, np.inf))
    cases = [
        ("baseline: numpy data - s*pred", lambda: data.values - 2.0 * pred.values),
        ("Fixed scale (errors, logs)",
         lambda: subtract_prediction(data, pred, method="Fixed", scale=2.0)),
    ]
    for weighting in ("data", "poisson"):
        for background in (False, True):
            cases.append((f"FitHighQ {weighting}{' + background' if background else ''}"
                          " + magnetic 0-2",
                          lambda w=weighting, b=background: subtract_prediction(
                              data, pred, region=region, background=b, weighting=w,
                              magnetic_q_range=(0.0, 2.0))))
    print(f"\ninsnet phonon subtraction, 300x300 map  ({platform.processor() or platform.machine()}"
          f", Python {platform.python_version()}, numpy {np.__version__}); milliseconds, "
          f"{args.repeats} runs\n")
    head = ("case", "best", "median", f"<= {GOAL_MS:g} ms")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for label, func in cases:
        func()  # warm-up
        best, median = timed(func, args.repeats)
        goal = "" if label.startswith("baseline") else ("yes" if median <= GOAL_MS else "NO")
        print(f"| {label} | {best:.2f} | {median:.2f} | {goal} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
