#!/usr/bin/env python
"""Decode speed and size of the map autoencoders (ONNX on the CPU) and the PCA baseline.

Prints a markdown table; a benchmark, not a test, it asserts nothing. Rows: the compact
conv AE and the reference work's dense AE (90000-2500-500-50 and mirror), each exported
to ONNX and run with onnxruntime's CPU provider (``--threads``), and PCA-50 in numpy:
parameters, bytes, decode time per map (median of ``--repeats``, batch of 1 and of 32),
encode time per map. Weights are random unless ``--model`` / ``--pca`` give trained ones
(time does not depend on the values). The ratio column is against the dense decoder.

Usage::

    .venv/bin/python bench/bench_maps.py [--model models/NAME] [--pca pca50.npz] [--threads 2]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _timed(fn, repeats):
    fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def _shipped_model_files():
    """Files under models/ that git tracks (what a clone ships); all files without git."""
    import subprocess
    try:
        out = subprocess.run(["git", "ls-files", "models"], cwd=REPO, check=True,
                             capture_output=True, text=True).stdout.split()
        return [REPO / f for f in out]
    except (OSError, subprocess.CalledProcessError):
        return sorted(p for p in (REPO / "models").rglob("*") if p.is_file())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="trained compact AE folder")
    ap.add_argument("--pca", default=None, help="fitted PCA .npz")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--skip-dense", action="store_true")
    args = ap.parse_args()

    import torch
    torch.set_num_threads(args.threads)
    from insnet_core.nn.autoencoder import AEConfig, build_autoencoder, load_autoencoder
    from insnet_core.nn.mapdata import MAP_SHAPE, PCABaseline
    from insnet_core.nn.onnx_export import OnnxHalf, export_autoencoder

    rng = np.random.default_rng(0)
    maps1 = rng.random((1,) + MAP_SHAPE).astype(np.float32)
    maps32 = rng.random((32,) + MAP_SHAPE).astype(np.float32)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cases = [("compact conv AE" + (" (trained)" if args.model else ""), args.model,
                  AEConfig(kind="conv"))]
        if not args.skip_dense:
            cases.append(("dense AE (reference)", None, AEConfig(kind="dense")))
        for label, folder, config in cases:
            model = load_autoencoder(folder)[0] if folder else build_autoencoder(config)
            out = Path(tmp) / label.split()[0]
            out.mkdir()
            enc_path, dec_path = export_autoencoder(model, out)
            enc, dec = OnnxHalf(enc_path, args.threads), OnnxHalf(dec_path, args.threads)
            lat1 = enc(maps1)
            lat32 = enc(maps32)
            rows.append({"case": label,
                         "params": sum(int(p.numel()) for p in model.parameters()),
                         "bytes": enc_path.stat().st_size + dec_path.stat().st_size,
                         "decode1": _timed(lambda: dec(lat1), args.repeats),
                         "decode32": _timed(lambda: dec(lat32), args.repeats) / 32,
                         "encode1": _timed(lambda: enc(maps1), args.repeats)})
            del model, enc, dec
    pca = PCABaseline.load(args.pca) if args.pca else PCABaseline(
        rng.random(MAP_SHAPE[0] * MAP_SHAPE[1]), rng.random((50, MAP_SHAPE[0] * MAP_SHAPE[1])))
    s1, s32 = pca.encode(maps1), pca.encode(maps32)
    rows.append({"case": "PCA-50 (numpy)", "params": int(pca.components.size + pca.mean.size),
                 "bytes": pca.nbytes, "decode1": _timed(lambda: pca.decode(s1), args.repeats),
                 "decode32": _timed(lambda: pca.decode(s32), args.repeats) / 32,
                 "encode1": _timed(lambda: pca.encode(maps1), args.repeats)})
    base = next((r for r in rows if r["case"].startswith("dense")), rows[0])
    print(f"onnxruntime CPU provider, {args.threads} threads; times per map")
    print("| case | parameters | bytes (ONNX / npz) | decode, batch 1 | decode, batch 32 | "
          "encode, batch 1 | bytes vs dense | decode vs dense |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['case']} | {r['params']:,} | {r['bytes'] / 1e6:.1f} MB | "
              f"{r['decode1'] * 1e3:.2f} ms | {r['decode32'] * 1e3:.2f} ms | "
              f"{r['encode1'] * 1e3:.2f} ms | {r['bytes'] / base['bytes']:.4f} | "
              f"{r['decode1'] / base['decode1']:.3f} |")
    by_folder = {}
    for p in _shipped_model_files():
        rel = p.relative_to(REPO / "models").parts
        key = "/".join(rel[:2] if rel[0] in ("maps", "baselines") else rel[:1])
        by_folder[key] = by_folder.get(key, 0) + p.stat().st_size
    print()
    print("| shipped model folder | bytes |")
    print("|---|---:|")
    for key, size in sorted(by_folder.items()):
        print(f"| models/{key} | {size / 1e6:.1f} MB |")
    print(f"| all shipped models (goal <= 100 MB) | {sum(by_folder.values()) / 1e6:.1f} MB |")


if __name__ == "__main__":
    main()
