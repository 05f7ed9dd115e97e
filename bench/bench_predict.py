#!/usr/bin/env python
"""Speed of the ML route (structure -> spectrum) against the physics route, CPU.

Prints a markdown table; a benchmark, not a test, it asserts nothing. Goals (issue):
VISION <= 20 ms at 100 atoms (warm), SEQUOIA map on a SofQW-style binning <= 100 ms
(the partials route; the AE route of a shipped route folder is timed next to it),
cold start (imports + model load + one prediction) <= 3 s.

Rows (wall clock, median of ``--repeats``, torch threads = ``--threads``):

* network + engine, VISION, for cells of about 10, 100 and 300 atoms (the database's
  crystal mp-1818's neighbours: supercells of a small database crystal), and the 120-atom
  cell with every atom moved at random by ~0.05 A (no symmetry: no two bonds share a length
  but i->j and j->i, the network's worst case);
* the same split: network alone (all heads) and engine alone;
* SEQUOIA, Ei = 160 meV, 5 K, on 0-12 1/A x (-20)-150 meV bins of 0.05 1/A x 1 meV;
* cold start in a fresh interpreter (``python -c`` predict one CIF);
* batch throughput (crystals per second, VISION, network batched);
* the reference work's 5184-atom TiO2-SiO2 glass-like cell (VISION and the Ideal2D map,
  peak memory of that process; issue goals <= 3 s and <= 4 GB);
* the physics route on the same crystal (``simulate`` with its phonondb force constants),
  for the ratio.

Usage::

    .venv/bin/python bench/bench_predict.py [--model models/NAME] [--repeats 5] [--threads 2]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


#: the 5184-atom cell through the ML route, in its own interpreter (for its peak memory)
_GLASS = """
import resource, sys, tempfile, time, torch
torch.set_num_threads(%d)
sys.path.insert(0, "examples")
from make_glass_cell import glass_cell, write_poscar
from insnet_core.predict import load_predictor
from insnet_core.simulate import Settings
from insnet_core.structure import read_structure
path = tempfile.mkdtemp() + "/glass.vasp"
write_poscar(path, *glass_cell(0), "glass")
s = read_structure(path, max_atoms=None)
p = load_predictor(%r)
t = time.perf_counter(); raw = p.raw([s], max_atoms=None, cache=False)[0]
net = time.perf_counter() - t
t = time.perf_counter(); p.simulate(s, Settings.check("VISION"), raw)
vis = time.perf_counter() - t
t = time.perf_counter(); p.simulate(s, Settings.check("Ideal2D"), raw)
mp = time.perf_counter() - t
print(net, vis, mp, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, s.n_atoms)
"""


def _timed(fn, repeats):
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def _supercell(structure, reps):
    from insnet_core.structure import Structure
    import itertools
    cells = np.array(list(itertools.product(*[range(r) for r in reps])))
    frac = np.concatenate([(structure.frac_coords + c) / np.array(reps) for c in cells])
    return Structure.from_arrays(structure.lattice * np.array(reps)[:, None],
                                 list(structure.species) * len(cells), frac,
                                 source=f"{structure.source} x{reps}", max_atoms=None)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model folder (default: the shipped default)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-glass", action="store_true", help="leave the 5184-atom cell out")
    args = ap.parse_args()

    import torch
    torch.set_num_threads(args.threads)
    from insnet_core.predict import load_predictor, resolve_model
    from insnet_core.simulate import Settings, simulate
    from insnet_core.structure import read_structure
    from insnet_core.instruments import get_instrument

    folder = resolve_model(args.model)
    pred = load_predictor(folder)
    crystal = REPO / "examples" / "data" / "phonondb" / "mp-1818-20180417"
    base = read_structure(crystal / "POSCAR-unitcell")
    rows = []
    vision = Settings.check("VISION")
    cell = _supercell(base, (2, 2, 3))
    moved = cell.frac_coords + np.random.default_rng(0).normal(0.0, 0.01, cell.frac_coords.shape)
    rattled = type(cell).from_arrays(cell.lattice, list(cell.species), moved,
                                     source="mp-1818 x(2, 2, 3) rattled", max_atoms=None)
    for reps in ((1, 1, 1), (2, 2, 3), (3, 3, 4), "rattled"):
        s = (base if reps == (1, 1, 1) else rattled if reps == "rattled"
             else _supercell(base, reps))
        raw = pred.raw([s])[0]
        t_net = _timed(lambda: pred.raw([s], cache=False), args.repeats)
        t_eng = _timed(lambda: pred.simulate(s, vision, raw), args.repeats)
        t_all = _timed(lambda: pred.simulate(s, vision, pred.raw([s], cache=False)[0]),
                       args.repeats)
        what = " (atoms moved at random)" if reps == "rattled" else ""
        rows.append((f"VISION, {s.n_atoms} atoms{what}", t_all, f"network {t_net * 1e3:.1f} ms, "
                     f"engine {t_eng * 1e3:.1f} ms"))
    seq = Settings.check(get_instrument("SEQUOIA", ei=160.0), 5.0, "auto",
                         np.arange(-20.0, 150.0 + 1e-9, 1.0), np.arange(0.0, 12.0 + 1e-9, 0.05))
    t_map = _timed(lambda: pred.simulate(base, seq, pred.raw([base], cache=False)[0]),
                   args.repeats)
    rows.append((f"SEQUOIA Ei 160 meV, {seq.q_edges.size - 1}x{seq.energy_edges.size - 1} "
                 f"bins, {base.n_atoms} atoms", t_map, "partials route (the default)"))
    from insnet_core.predict import _route_cards, load_map_route
    for route_folder, card in _route_cards().items():
        if card.get("predictor") != pred.name:
            continue
        route = load_map_route(route_folder)
        t_ae = _timed(lambda: route.simulate(base, seq, pred, pred.raw(
            [base], cache=False, features=True)[0]), args.repeats)
        rows.append((f"the same map through the AE route {route.name}", t_ae,
                     f"AE / partials = {t_ae / t_map:.2f}"))
    # batch throughput: 32 copies of slightly strained cells through one network call
    cells = [_supercell(base, (1, 1, 1)) for _ in range(32)]
    t_batch = _timed(lambda: [pred.simulate(c, vision, r)
                              for c, r in zip(cells, pred.raw(cells))], 1)
    rows.append(("batch of 32, VISION", t_batch, f"{32 / t_batch:.1f} crystals/s"))
    cif = REPO / "examples" / "data" / "Ba3ZnRu2O9.cif"
    code = ("import torch; torch.set_num_threads(%d); from insnet_core.predict import predict; "
            "predict(%r, method='ML', model=%r)" % (args.threads, str(cif), str(folder)))
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
    rows.append(("cold start (imports, model load, VISION of Ba3ZnRu2O9)",
                 time.perf_counter() - t, ""))
    if not args.skip_glass:  # the reference work's glass example, in a fresh process
        glass = subprocess.run([sys.executable, "-c", _GLASS % (args.threads, str(folder))],
                               check=True, cwd=REPO, capture_output=True, text=True)
        net, vis, mp, rss, n = (float(x) for x in glass.stdout.split()[-5:])
        rows.append((f"{int(n)}-atom TiO2-SiO2 glass cell (examples/make_glass_cell.py)",
                     net + vis, f"network {net:.1f} s; engine VISION {vis * 1e3:.0f} ms, "
                     f"Ideal2D map {mp * 1e3:.0f} ms; peak memory {rss:.2f} GB"))
    t_phys = _timed(lambda: simulate(crystal, instrument="VISION"), max(1, args.repeats // 2))
    rows.append((f"physics route, simulate VISION, {base.n_atoms} atoms", t_phys,
                 f"ML/physics = {rows[0][1] / t_phys:.3f}"))

    print(f"model: {folder.name} ({pred.n_members} member(s)); torch threads {args.threads}")
    print("| case | time | note |")
    print("|---|---|---|")
    for name, sec, note in rows:
        print(f"| {name} | {sec * 1e3:.1f} ms | {note} |")


if __name__ == "__main__":
    main()
