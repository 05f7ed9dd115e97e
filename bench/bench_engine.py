#!/usr/bin/env python
"""Speed of the insnet physics engine on three phonondb crystals, with euphonic as reference.

Prints a plain-text (markdown) table; it is a benchmark, not a test, and asserts nothing.

For each crystal (about 5, 100 and 200 atoms in the primitive cell; see README.md for why
not 300) it times, wall-clock, each in isolation:

* phonopy load + force constants (:func:`insnet_core.phonons.load_phonopy`);
* mesh diagonalisation at the reference spacing 0.1 1/A (:func:`run_mesh`);
* ingredients (:func:`build_ingredients`), anisotropic fundamentals (default);
* the 300x300 Ideal2D map, orders 1..4, at 0 K and at 300 K (:func:`simulate_ingredients`);
* the same ingredients + 0 K map with ``isotropic=True`` (the baseline of the anisotropic
  fundamentals, same run);
* VISION 1D, orders 1..4, 0 K;
* the reference tool: euphonic's coherent one-phonon powder map on the same |Q| x E grid
  (same force constants, written by phonopy and read by ``ForceConstants.from_phonopy``),
  ``--points`` golden-sphere q-points per |Q| shell, Debye-Waller factor at 0 K,
  1.5 meV FWHM Gaussian broadening. When the full map would take longer than
  ``--euphonic-budget`` seconds, a subset of evenly spaced shells is timed and the total
  extrapolated (marked ``*`` in the table).

Each crystal runs in a fresh subprocess (one for insnet, one for euphonic) so peak memory
(``ru_maxrss``) is per crystal and euphonic's OpenMP threads are not disabled by phonopy's.

Usage::

    .venv/bin/python bench/bench_engine.py [--quick] [--repeats N] [--cache DIR]
"""
from __future__ import annotations

import argparse
import csv
import gc
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
#: phonondb shards: the project's data folder next to the repository, unless INSNET_PHONONDB says
PHONONDB = Path(os.environ.get("INSNET_PHONONDB") or REPO.parent / "shared" / "data" / "phonondb")
EXAMPLES = REPO / "examples" / "data" / "phonondb"

#: Default crystals: (role, material id). Primitive sizes 5, 104 and 200 atoms.
DEFAULT_CRYSTALS = [
    ("small", "mp-1818"),     # SiF4, I-43m, 10 atoms/cell, 5 primitive; in examples/
    ("~100", "mp-542843"),    # MgB2P2H8O13, P2_1/c, 104 atoms (hydrogenous: DOS to ~450 meV)
    ("large", "mp-667369"),   # Ca2Zr5Ti2O16, Pbca, 200 atoms: largest primitive cell in phonondb
]

#: Goal: engine (ingredients + 300x300 map, orders 1..4) of a ~100-atom crystal on 2 cores.
GOAL_SECONDS = 1.0
GOAL_ATOMS = 100

MARKER = "BENCH-RESULT "


# ----------------------------------------------------------------------------- helpers

def best_of(func, repeats, budget):
    """Run ``func`` up to ``repeats`` times (fewer once ``budget`` seconds are spent).

    Returns (best seconds, number of runs, last return value, first-run seconds).
    """
    best, spent, runs, value, first = float("inf"), 0.0, 0, None, None
    while runs < max(1, repeats):
        gc.collect()
        t0 = time.perf_counter()
        value = func()
        dt = time.perf_counter() - t0
        best, spent, runs = min(best, dt), spent + dt, runs + 1
        first = dt if first is None else first
        if spent + dt > budget:   # another run would go past the budget
            break
    return best, runs, value, first


def peak_rss_mb():
    """Peak resident memory of this process, MiB (Linux reports KiB, macOS bytes)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def emit(result):
    """Hand a worker's result to the parent (last line of stdout)."""
    sys.stdout.flush()
    print(MARKER + json.dumps(result), flush=True)


def read_index():
    path = PHONONDB / "index.csv"
    if not path.is_file():
        return {}
    with open(path, newline="") as fh:
        return {row["material_id"]: row for row in csv.DictReader(fh)}


def locate(material_id, index, cache):
    """Folder of a phonondb crystal: examples/, the cache, or extracted from its shard."""
    row = index.get(material_id)
    folder_name = row["folder"] if row else None
    if folder_name is None:
        hits = sorted(EXAMPLES.glob(f"{material_id}-*"))
        if not hits:
            raise SystemExit(f"bench: {material_id} is neither in {PHONONDB}/index.csv "
                             f"nor in {EXAMPLES}")
        return hits[0]
    for base in (EXAMPLES, cache):
        if (base / folder_name / "FORCE_SETS").is_file():
            return base / folder_name
    shard = PHONONDB / f"{row['shard']}.tar.xz"
    if not shard.is_file():
        raise SystemExit(f"bench: {shard} not found (needed for {material_id})")
    cache.mkdir(parents=True, exist_ok=True)
    log(f"extracting {folder_name} from {shard.name} into {cache}")
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=cache))
    try:
        prefix = folder_name + "/"
        seen = False
        with tarfile.open(shard, "r:xz") as tar:
            for member in tar:          # one pass over the stream; the folder is contiguous
                if member.name.startswith(prefix) or member.name == folder_name:
                    seen = True
                    if member.isfile() or member.isdir():
                        tar.extract(member, staging, filter="data")
                elif seen:
                    break
        if not (staging / folder_name / "FORCE_SETS").is_file():
            raise SystemExit(f"bench: {folder_name} not found in {shard}")
        (staging / folder_name).rename(cache / folder_name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return cache / folder_name


def log(message):
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- workers

def worker_insnet(folder, yaml_dir, repeats, budget):
    """Time the insnet steps on one crystal; write phonopy.yaml (with FC) for euphonic."""
    sys.path.insert(0, str(REPO))
    from insnet_core.incoherent import build_ingredients
    from insnet_core.phonons import load_phonopy, run_mesh
    from insnet_core.simulate import Settings, simulate_ingredients

    res = {"folder": str(folder)}
    t_load, n_load, phonon, cold = best_of(lambda: load_phonopy(folder), repeats, budget)
    res.update(load_s=t_load, load_runs=n_load, load_cold_s=cold)
    t_mesh, n_mesh, modes, _ = best_of(lambda: run_mesh(phonon), repeats, budget)
    res.update(mesh_s=t_mesh, mesh_runs=n_mesh, mesh=list(modes.mesh),
               irr_q=int(modes.energies.shape[0]), prim_atoms=modes.n_atoms,
               formula=modes.formula, min_energy=modes.min_energy,
               max_energy=modes.max_energy, unstable=bool(modes.has_imaginary))
    t_ing, n_ing, ing, _ = best_of(lambda: build_ingredients(modes), repeats, budget)
    res.update(ingredients_s=t_ing, ingredients_runs=n_ing, groups=ing.n_groups,
               grid_points=int(ing.dos.shape[1]))
    t_iso, _, ing_iso, _ = best_of(lambda: build_ingredients(modes, isotropic=True), repeats,
                                   budget)
    map_iso = Settings.check("Ideal2D", orders=4, temperature=0.0)
    t_map_iso, _, _, _ = best_of(lambda: simulate_ingredients(ing_iso, map_iso), repeats, budget)
    res.update(ingredients_iso_s=t_iso, map0_iso_s=t_map_iso)

    cases = {"map0": Settings.check("Ideal2D", orders=4, temperature=0.0),
             "map300": Settings.check("Ideal2D", orders=4, temperature=300.0),
             "vision": Settings.check("VISION", orders=4, temperature=0.0)}
    shape = None
    for key, settings in cases.items():
        t, n, out, _ = best_of(lambda s=settings: simulate_ingredients(ing, s), repeats, budget)
        res[f"{key}_s"], res[f"{key}_runs"] = t, n
        if key == "map0":
            shape = list(out.total.values.shape)
    res["map_shape"] = shape
    res["insnet_rss_mb"] = peak_rss_mb()

    t0 = time.perf_counter()
    Path(yaml_dir).mkdir(parents=True, exist_ok=True)
    phonon.save(str(Path(yaml_dir) / "phonopy.yaml"), settings={"force_constants": True})
    res["export_s"] = time.perf_counter() - t0
    emit(res)


def worker_euphonic(yaml_dir, points, budget, threads, mesh_spacing):
    """Time euphonic's coherent one-phonon powder map on the Ideal2D grid."""
    import numpy as np
    import euphonic
    from euphonic import ForceConstants, Spectrum2D, ureg
    from euphonic.powder import sample_sphere_structure_factor
    from euphonic.util import mp_grid

    sys.path.insert(0, str(REPO))
    from insnet_core.instruments import get_instrument   # light: no phonopy import

    inst = get_instrument("Ideal2D")
    q_edges, e_edges = inst.default_q_edges(), inst.default_energy_edges()
    q_centres = 0.5 * (q_edges[1:] + q_edges[:-1])
    ebins = e_edges * ureg("meV")
    res = {"euphonic_version": euphonic.__version__, "points": points, "threads": threads}

    t0 = time.perf_counter()
    fc = ForceConstants.from_phonopy(path=str(yaml_dir), summary_name="phonopy.yaml")
    res["setup_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    spec = fc.crystal.get_mp_grid_spec(mesh_spacing * ureg("1/angstrom"))
    dw_modes = fc.calculate_qpoint_phonon_modes(mp_grid(spec), n_threads=threads)
    dw = dw_modes.calculate_debye_waller(0 * ureg("K"))
    res["dw_s"] = time.perf_counter() - t0
    res["dw_mesh"] = [int(x) for x in spec]
    del dw_modes

    def shell(i):
        s = sample_sphere_structure_factor(
            fc, q_centres[i] * ureg("1/angstrom"), dw=dw, temperature=0 * ureg("K"),
            sampling="golden", npts=points, energy_bins=ebins, n_threads=threads)
        return s.y_data.to("mbarn/meV").magnitude

    n_shells = q_centres.size
    z = np.zeros((n_shells, e_edges.size - 1))
    probe = n_shells // 2
    t0 = time.perf_counter()
    z[probe] = shell(probe)
    t_probe = time.perf_counter() - t0
    if t_probe * n_shells <= budget:
        chosen = np.arange(n_shells)
    else:
        k = int(min(n_shells, max(3, budget // max(t_probe, 1e-9))))
        chosen = np.unique(np.linspace(0, n_shells - 1, k).round().astype(int))
    t0 = time.perf_counter()
    for i in chosen:
        z[i] = shell(i)
    t_shells = time.perf_counter() - t0
    shells_s = t_shells * n_shells / chosen.size

    t0 = time.perf_counter()
    spectrum = Spectrum2D(q_edges * ureg("1/angstrom"), ebins, z * ureg("mbarn/meV"))
    spectrum.broaden(y_width=inst.fwhm * ureg("meV"), shape="gauss")
    res["broaden_s"] = time.perf_counter() - t0
    res.update(shells_timed=int(chosen.size), shells_total=int(n_shells),
               per_shell_s=t_shells / chosen.size, extrapolated=bool(chosen.size < n_shells),
               map_s=shells_s + res["broaden_s"], euphonic_rss_mb=peak_rss_mb())
    emit(res)


# ----------------------------------------------------------------------------- driver

BLAS_ENV = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS")


def run_worker(args_list, timeout, blas_threads=None):
    cmd = [sys.executable, str(Path(__file__).resolve())] + args_list
    env = dict(os.environ)
    if blas_threads is not None:
        env.update({name: str(blas_threads) for name in BLAS_ENV})
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
    raise RuntimeError(f"worker {' '.join(args_list[:2])} failed (rc {proc.returncode}):\n  "
                       + "\n  ".join(tail))


def fmt(x, digits=3):
    if x is None:
        return "-"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x < 0.01:
        return f"{x:.4f}"
    return f"{x:.{digits}f}" if x < 1 else f"{x:.2f}"


def table(headers, rows):
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    line = lambda cells: "| " + " | ".join(str(c).rjust(w) for c, w in zip(cells, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|"
    return "\n".join([line(headers), sep] + [line(r) for r in rows])


def versions():
    out = {}
    for name in ("numpy", "phonopy", "euphonic"):
        try:
            from importlib.metadata import version
            out[name] = version(name)
        except Exception:           # not installed
            out[name] = "-"
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="only the small crystal (mp-1818)")
    p.add_argument("--repeats", type=int, default=3,
                   help="best of N runs per step (fewer where one run is long; default 3)")
    p.add_argument("--cache", type=Path, default=HERE / ".cache",
                   help="folder for crystals extracted from the phonondb shards "
                        "(default bench/.cache, git-ignored)")
    p.add_argument("--crystals", help="comma-separated material ids instead of the defaults, "
                                      "e.g. mp-1818,mp-3080,mp-706657")
    p.add_argument("--points", type=int, default=100,
                   help="euphonic: q-points per |Q| shell (golden sphere; default 100)")
    p.add_argument("--euphonic-budget", type=float, default=20.0,
                   help="euphonic: seconds of shell calculations per crystal before timing "
                        "a subset of shells and extrapolating (default 20)")
    p.add_argument("--no-euphonic", action="store_true", help="skip the reference tool")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="euphonic OpenMP threads (default: all cores)")
    p.add_argument("--blas-threads", type=int,
                   help="set OPENBLAS/MKL/OMP_NUM_THREADS for the insnet steps (default: "
                        "leave the environment as it is)")
    p.add_argument("--step-budget", type=float, default=15.0,
                   help="stop repeating a step once its runs took this many seconds (default 15)")
    # internal: the per-crystal subprocesses
    p.add_argument("--worker", choices=("insnet", "euphonic"), help=argparse.SUPPRESS)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    p.add_argument("--yaml-dir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker == "insnet":
        return worker_insnet(Path(args.folder), args.yaml_dir, args.repeats, args.step_budget)
    if args.worker == "euphonic":
        return worker_euphonic(args.yaml_dir, args.points, args.euphonic_budget, args.threads,
                               0.1)

    if args.crystals:
        crystals = [("", c.strip()) for c in args.crystals.split(",") if c.strip()]
    else:
        crystals = DEFAULT_CRYSTALS[:1] if args.quick else DEFAULT_CRYSTALS
    index = read_index()
    cache = args.cache.resolve()
    started = time.perf_counter()
    load_before = machine_load()
    results = []
    with tempfile.TemporaryDirectory(prefix="insnet-bench-") as tmp:
        for role, mid in crystals:
            folder = locate(mid, index, cache)
            yaml_dir = Path(tmp) / mid
            log(f"{mid}: insnet steps ({folder})")
            r = run_worker(["--worker", "insnet", "--folder", str(folder), "--yaml-dir",
                            str(yaml_dir), "--repeats", str(args.repeats),
                            "--step-budget", str(args.step_budget)], timeout=1800,
                           blas_threads=args.blas_threads)
            r.update(material_id=mid, role=role,
                     cell_atoms=int(index[mid]["n_atoms"]) if mid in index else None)
            if not args.no_euphonic:
                log(f"{mid}: euphonic map ({r['prim_atoms']} atoms, {args.points} points/shell)")
                try:
                    r["eu"] = run_worker(["--worker", "euphonic", "--yaml-dir", str(yaml_dir),
                                          "--points", str(args.points), "--threads",
                                          str(args.threads), "--euphonic-budget",
                                          str(args.euphonic_budget)], timeout=1800)
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    log(f"{mid}: euphonic failed: {exc}")
            results.append(r)
    report(results, args, time.perf_counter() - started, load_before, machine_load())


def machine_load():
    """1-minute load average and the 60 s CPU pressure ('some', %), where Linux gives them."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    pressure = None
    try:
        for line in Path("/proc/pressure/cpu").read_text().splitlines():
            if line.startswith("some"):
                pressure = float(line.split("avg60=")[1].split()[0])
    except (OSError, IndexError, ValueError):
        pass
    return load, pressure


def describe_load(label, load):
    avg, pressure = load
    text = f"{label}: load average {avg:.2f}" if avg is not None else f"{label}: load average -"
    return text + (f", CPU pressure {pressure:.0f} %" if pressure is not None else "")


def report(results, args, total_s, load_before, load_after):
    v = versions()
    print(f"\ninsnet engine benchmark  ({platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}, numpy {v['numpy']}, "
          f"phonopy {v['phonopy']}, euphonic {v['euphonic']})")
    blas = (f"{args.blas_threads} (OPENBLAS/MKL/OMP_NUM_THREADS)" if args.blas_threads
            else "environment default (" + (", ".join(f"{n}={os.environ[n]}" for n in BLAS_ENV
                                                       if n in os.environ)
                                             or "unset: one per core") + ")")
    print(f"Wall-clock seconds, best of up to {args.repeats} runs per step (one run when a "
          f"step takes more than ~{args.step_budget / 2:g} s); maps 300x300 Ideal2D, "
          f"orders 1..4. BLAS threads for insnet: {blas}.")
    print(describe_load("Before", load_before) + "; " + describe_load("after", load_after) + ".")
    if load_before[0] is not None and load_before[0] > 0.5 * (os.cpu_count() or 1):
        print("WARNING: the machine was busy before the benchmark started; timings include "
              "contention (multithreaded BLAS suffers most: try --blas-threads 1).")
    print()
    headers = ["crystal", "prim atoms", "mesh / irr-q", "load s", "mesh s", "ingredients s",
               "map 0 K s", "map 300 K s", "VISION s", "isotropic: ingr. + map 0 K s",
               "ratio aniso/iso", "euphonic map s", "ratio eu/insnet",
               "peak RSS MB insnet/eu"]
    rows = []
    for r in results:
        eu = r.get("eu")
        cell = f" ({r['cell_atoms']} in cell)" if r.get("cell_atoms") not in (None, r["prim_atoms"]) else ""
        if eu:
            eu_s = fmt(eu["map_s"]) + ("*" if eu["extrapolated"] else "")
            ratio = f"{eu['map_s'] / r['map0_s']:.0f}x"
            rss = f"{r['insnet_rss_mb']:.0f}/{eu['euphonic_rss_mb']:.0f}"
        else:
            eu_s, ratio, rss = "-", "-", f"{r['insnet_rss_mb']:.0f}/-"
        rows.append([f"{r['material_id']} {r['formula']}", f"{r['prim_atoms']}{cell}",
                     f"{'x'.join(map(str, r['mesh']))} / {r['irr_q']}",
                     fmt(r["load_s"]), fmt(r["mesh_s"]), fmt(r["ingredients_s"]),
                     fmt(r["map0_s"]), fmt(r["map300_s"]), fmt(r["vision_s"]),
                     fmt(r["ingredients_iso_s"] + r["map0_iso_s"]),
                     f"{(r['ingredients_s'] + r['map0_s']) / (r['ingredients_iso_s'] + r['map0_iso_s']):.1f}x",
                     eu_s, ratio, rss])
    print(table(headers, rows))

    print()
    for r in results:
        eu = r.get("eu")
        notes = [f"{r['groups']} site groups, internal grid {r['grid_points']} points "
                 f"(DOS to {r['max_energy']:.0f} meV)"]
        if r["unstable"]:
            notes.append(f"imaginary modes down to {r['min_energy']:.1f} meV (left out)")
        notes.append(f"runs load/mesh/map0: {r['load_runs']}/{r['mesh_runs']}/{r['map0_runs']}, "
                     f"first (cold, with imports) load {r['load_cold_s']:.2f} s")
        if eu:
            how = (f"extrapolated from {eu['shells_timed']} of {eu['shells_total']} shells"
                   if eu["extrapolated"] else f"all {eu['shells_total']} shells")
            notes.append(f"euphonic: {eu['per_shell_s'] * 1e3:.0f} ms/shell, {how}; "
                         f"broadening {eu['broaden_s']:.2f} s; not in the map time: "
                         f"read FC {eu['setup_s']:.1f} s, 0 K Debye-Waller on "
                         f"{'x'.join(map(str, eu['dw_mesh']))} grid {eu['dw_s']:.1f} s")
        print(f"- {r['material_id']}: " + "; ".join(notes))
    if any(r.get("eu") for r in results):
        eu0 = next(r["eu"] for r in results if r.get("eu"))
        print(f"\neuphonic {eu0['euphonic_version']}: coherent one-phonon S(|Q|,E) powder "
              f"average, {eu0['points']} golden-sphere points per |Q| shell, 300 shells "
              f"(bin centres), 0 K with Debye-Waller, 1.5 meV FWHM Gaussian, "
              f"{eu0['threads']} OpenMP threads; * = extrapolated from the timed shells. "
              "insnet maps are incoherent, multiphonon to order 4, with Debye-Waller.")

    target = min(results, key=lambda r: abs(r["prim_atoms"] - GOAL_ATOMS))
    engine = target["ingredients_s"] + target["map0_s"]
    e2e = target["load_s"] + target["mesh_s"] + engine
    if abs(target["prim_atoms"] - GOAL_ATOMS) <= 30:
        verdict = "MET" if engine <= GOAL_SECONDS else "NOT MET"
        print(f"\nGoal: <= {GOAL_SECONDS:g} s for the ~{GOAL_ATOMS}-atom 300x300 map with orders "
              f"to 4 on 2 cores. {target['material_id']} ({target['prim_atoms']} atoms): engine "
              f"(ingredients + map 0 K) = {engine:.3f} s -> {verdict}. End to end including "
              f"phonopy load and mesh: {e2e:.2f} s (load {target['load_s']:.2f} s, mesh "
              f"{target['mesh_s']:.2f} s).")
    else:
        print(f"\nGoal (<= {GOAL_SECONDS:g} s for a ~{GOAL_ATOMS}-atom map): no ~{GOAL_ATOMS}-atom "
              f"crystal in this run (largest: {target['prim_atoms']} atoms; engine "
              f"{engine:.3f} s, end to end {e2e:.2f} s).")
    print(f"Total benchmark time: {total_s:.0f} s.")


if __name__ == "__main__":
    main()
