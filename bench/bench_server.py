#!/usr/bin/env python
"""Latency of the analysis page (``insnet serve``) for the example CIF, CPU.

Prints a markdown table; a benchmark, not a test, it asserts nothing. Goal (issue):
upload-to-plotted-result <= 1 s for the example (Ba3ZnRu2O9, SEQUOIA Ei = 160 meV,
5 K, plus VISION) on 2 cores.

Rows (wall clock, median of ``--repeats``), each against the first row measured in the
same run (the library call the server makes, in this process):

* ``PredictionService.run`` in process: VISION + SEQUOIA map from the CIF bytes;
* ``POST /api/predict`` to a real ``insnet serve`` subprocess on 127.0.0.1 (HTTP,
  multipart upload, JSON of both spectra, parse in Python);
* the page in headless Chromium (Playwright): choose the file, click Predict, until
  both plots are drawn (the page's own ``performance.now()`` stopwatch, and the wall
  clock seen from Playwright);
* server start: process launch until ``/api/health`` answers (model loaded, warmed up).

"new crystal" rows perturb the cell by 1e-5 A per repeat so that the network runs each
time (the predictor keeps the last few structures); "repeat" rows send the same bytes.

Usage::

    .venv/bin/python bench/bench_server.py [--repeats 5] [--screenshot docs/server_page.png]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CIF = REPO / "examples" / "data" / "Ba3ZnRu2O9.cif"
FORM = {"instrument": "SEQUOIA", "ei": "160", "temperature": "5"}


def _variant(i):
    """The example CIF with a and b lengthened by i * 1e-5 A (a new crystal to the cache)."""
    text = CIF.read_text()
    return text.replace("5.77490(16)", f"{5.77490 + i * 1e-5:.5f}").encode()


def _median(values):
    return statistics.median(values) if values else float("nan")


def bench_library(repeats):
    from insnet_core.server.service import FormSettings, Limits, PredictionService
    service = PredictionService(Limits())
    service.warm_up()
    settings = FormSettings(instrument="SEQUOIA", ei=160.0, temperature=5.0)
    new, same = [], []
    for i in range(repeats):
        t = time.perf_counter()
        service.run(_variant(1000 + i), "x.cif", settings, keep=False)
        new.append(time.perf_counter() - t)
    data = CIF.read_bytes()
    service.run(data, "x.cif", settings, keep=False)
    for _ in range(repeats):
        t = time.perf_counter()
        service.run(data, "x.cif", settings, keep=False)
        same.append(time.perf_counter() - t)
    return _median(new), _median(same)


def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server():
    """Launch ``insnet serve``; returns (process, base URL, seconds until healthy)."""
    import httpx
    port = _free_port()
    exe = Path(sys.executable).with_name("insnet")
    cmd = [str(exe) if exe.exists() else sys.executable, *([] if exe.exists() else
           ["-m", "insnet_core.cli"]), "serve", "--port", str(port)]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"insnet serve exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(url + "/api/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    return proc, url, time.perf_counter() - t


def bench_api(url, repeats):
    import httpx
    new, same = [], []
    with httpx.Client(base_url=url, timeout=60) as client:
        def post(data):
            t = time.perf_counter()
            r = client.post("/api/predict", data=FORM,
                            files={"structure": ("Ba3ZnRu2O9.cif", data)})
            r.raise_for_status()
            r.json()
            return time.perf_counter() - t
        for i in range(repeats):
            new.append(post(_variant(2000 + i)))
        data = CIF.read_bytes()
        post(data)
        same = [post(data) for _ in range(repeats)]
    return _median(new), _median(same)


def _chromium():
    return next((p for p in (os.environ.get("INSNET_CHROMIUM"), shutil.which("chromium"),
                             shutil.which("chromium-browser")) if p), None)


def bench_browser(url, repeats, screenshot=None):
    """Upload from the page; returns {row: (in-page s, wall s)} or None without a browser."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    chromium = _chromium()
    if chromium is None:
        return None
    rows = {"new crystal": ([], []), "repeat": ([], [])}
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 1900})
        page.goto(url + "/")
        page.wait_for_selector("body[data-ready='1']")
        page.select_option("#instrument", "SEQUOIA")
        page.fill("#ei", "160")
        page.fill("#temperature", "5")

        def upload(path):
            page.set_input_files("#structure", str(path))
            t = time.perf_counter()
            page.click("#submit")
            page.wait_for_selector("body[data-state='done']", timeout=60000)
            wall = time.perf_counter() - t
            return float(page.get_attribute("body", "data-latency-ms")) / 1000, wall

        for i in range(repeats):
            path = Path(tmp) / f"variant{i}" / "Ba3ZnRu2O9.cif"
            path.parent.mkdir()
            path.write_bytes(_variant(3000 + i))
            for lst, v in zip(rows["new crystal"], upload(path)):
                lst.append(v)
        upload(CIF)
        for _ in range(repeats):
            for lst, v in zip(rows["repeat"], upload(CIF)):
                lst.append(v)
        if screenshot:
            page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    return {k: (_median(a), _median(b)) for k, (a, b) in rows.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--screenshot", type=Path, help="save the page with the map (PNG)")
    args = ap.parse_args(argv)

    lib_new, lib_same = bench_library(args.repeats)
    proc, url, start_s = start_server()
    try:
        api_new, api_same = bench_api(url, args.repeats)
        page = bench_browser(url, args.repeats, args.screenshot)
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    from insnet_core.structure import read_structure
    n_atoms = read_structure(CIF).n_atoms
    print(f"\nBa3ZnRu2O9 ({n_atoms} atoms), VISION + SEQUOIA Ei=160 meV 5 K map; cores: "
          f"{os.cpu_count()}; median of {args.repeats}\n")
    print("| path | new crystal (s) | ratio | repeat (s) | ratio |")
    print("|---|---:|---:|---:|---:|")

    def row(name, new, same):
        print(f"| {name} | {new:.3f} | {new / lib_new:.2f} | {same:.3f} | "
              f"{same / lib_same:.2f} |")
    row("library call (PredictionService.run), baseline", lib_new, lib_same)
    row("HTTP API POST /api/predict", api_new, api_same)
    if page is None:
        print("| page in Chromium | (no chromium/playwright) | | | |")
    else:
        row("page: upload to plotted (in-page stopwatch)", page["new crystal"][0],
            page["repeat"][0])
        row("page: upload to plotted (Playwright wall clock)", page["new crystal"][1],
            page["repeat"][1])
    print(f"\nserver start (launch to /api/health, model loaded and warmed up): "
          f"{start_s:.2f} s")
    if args.screenshot and page is not None:
        print(f"screenshot: {args.screenshot}")


if __name__ == "__main__":
    main()
