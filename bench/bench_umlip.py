#!/usr/bin/env python
"""Wall time of the uMLIP route per stage for 10 / 30 / ~100-atom cells, CPU.

Prints a markdown table; a benchmark, not a test, it asserts nothing. Goal (issue):
<= 30 s for the 30-atom cell (Ba3ZnRu2O9) on 2 cores (the potential's one-off load is
printed apart).

Cells: SiF4 (mp-1818, 10 atoms, examples/), Ba3ZnRu2O9 (30 atoms, examples/), and the
conventional cell of Li3GaN2 (mp-3887, 96 atoms, Ia-3) from the training database when
``data/insnet-db`` is present. Stages: loading the potential (once per process),
relaxation (cell and atoms, space group kept), forces on the displaced supercells
(>= 10 A), force constants, and the engine's VISION spectrum from them; the engine alone
is the baseline of the ratio column (route total / engine).

Usage::

    .venv/bin/python bench/bench_umlip.py [--potentials chgnet,7net-0] [--skip-large]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _cells(skip_large):
    from insnet_core.structure import Structure, read_structure
    cells = [("SiF4", read_structure(REPO / "examples/data/phonondb/mp-1818-20180417/"
                                     "POSCAR-unitcell")),
             ("Ba3ZnRu2O9", read_structure(REPO / "examples/data/Ba3ZnRu2O9.cif"))]
    db = REPO / "data" / "insnet-db"
    if not skip_large and db.is_dir():
        import numpy as np
        from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

        from insnet_core.dataset.reader import Database
        rec = Database(db).record("mp-3887")
        prim = Structure.from_arrays(np.asarray(rec["lattice"]),
                                     [str(s) for s in rec["species"]],
                                     np.asarray(rec["frac_coords"]), source="mp-3887")
        conv = SpacegroupAnalyzer(prim.to_pymatgen()).get_conventional_standard_structure()
        cells.append(("Li3GaN2 (conventional)", Structure.from_arrays(
            conv.lattice.matrix, [s.specie.symbol for s in conv], conv.frac_coords,
            source="mp-3887 conventional")))
    return cells


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--potentials", default="chgnet,7net-0")
    ap.add_argument("--skip-large", action="store_true", help="leave the ~100-atom cell out")
    args = ap.parse_args(argv)

    from insnet_core import umlip
    from insnet_core.simulate import simulate

    rows = []
    for name in args.potentials.split(","):
        t = time.perf_counter()
        umlip._calculator(name)
        load = time.perf_counter() - t
        for label, structure in _cells(args.skip_large):
            with tempfile.TemporaryDirectory() as cache:
                t = time.perf_counter()
                route = umlip.run_route(structure, umlip.RouteSettings(
                    potential=name, allow_unconverged=True, allow_symmetry_change=True),
                    cache_dir=cache)
                total = time.perf_counter() - t
                t = time.perf_counter()
                simulate(route.params_file, instrument="VISION")
                engine = time.perf_counter() - t
            r = route.report
            rows.append((name, label, structure.n_atoms, r["supercell_atoms"],
                         r["displacements"], r["relaxation"]["steps"], load,
                         r["timings"]["relax_s"], r["timings"]["forces_s"],
                         r["timings"]["force_constants_s"], engine, total + engine))
            load = 0.0  # loaded once per process

    print(f"\nuMLIP route, CPU, {os.cpu_count()} cores "
          f"(torch threads {__import__('torch').get_num_threads()})\n")
    print("| potential | cell | atoms | supercell atoms | displacements | relax steps | "
          "load (s) | relax (s) | forces (s) | FC (s) | engine VISION (s) | total (s) | "
          "total / engine |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (pot, label, n, sc, nd, steps, load, relax, forces, fc, engine, total) in rows:
        print(f"| {pot} | {label} | {n} | {sc} | {nd} | {steps} | {load:.1f} | {relax:.1f} | "
              f"{forces:.1f} | {fc:.2f} | {engine:.1f} | {total:.1f} | {total / engine:.1f} |")
    print("\n(total = relaxation + forces + force constants + engine, potential already "
          "loaded; the first row of each potential also paid the load)")


if __name__ == "__main__":
    main()
