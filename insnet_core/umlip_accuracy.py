"""How close the uMLIP route comes to the DFT route, on crystals of the database.

For each chosen crystal the database holds the DFT-relaxed primitive cell and the VISION
target the engine computed from Togo's DFT force sets. The route starts from that same
cell, relaxes it with the potential (``cell`` or ``atoms`` mode), computes force sets and
the VISION spectrum with the database's own recipe (:class:`~insnet_core.dataset.record.
BuildConfig`: T = 0 K, 10 orders, the same mesh rule), so the two spectra differ only by the
force constants (and the DFT route's Born-charge correction where the crystal has one).

Softening: both potentials give frequencies that are too low. A frequency scale per
(potential, relax mode) is fitted on *training* crystals as the geometric-mean ratio of the
mean phonon energies (DFT / route), then applied to the *test* crystals (force constants
times scale**2). No per-crystal tuning.

Crystals are sampled with a fixed seed from a database part among cells of at most
``max_atoms`` atoms (large, low-symmetry cells need hundreds of supercell force
evaluations; the table says so). Rows are appended to a JSON-lines file, so a run that is
stopped resumes where it was.

Usage::

    python -m insnet_core.umlip_accuracy --db data/insnet-db --rows runs/umlip_rows.jsonl \\
        --train 6 --test 14 --max-atoms 8 --markdown docs/umlip_accuracy.md
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from insnet_core import InsnetError

__all__ = ["choose_crystals", "measure_crystal", "fit_scales", "summarise", "markdown_table",
           "run_study", "mean_energy"]


def mean_energy(ing):
    """Atom-weighted mean one-phonon energy of an ingredients set, meV."""
    centres = (np.arange(ing.dos.shape[1]) + 0.5) * ing.bin_width
    w = np.asarray(ing.n_atoms, dtype=float)[:, None] * np.clip(ing.dos, 0, None)
    return float((w * centres).sum() / max(w.sum(), 1e-300))


def choose_crystals(db, part, n, max_atoms, seed=7, hydrogen=None):
    """``n`` ids of a database part with at most ``max_atoms`` atoms, seeded, sorted.

    ``hydrogen``: None for any crystal, True for hydrogen-containing crystals only.
    """
    ids = [m for m in db.split(part) if int(db.record(m)["n_atoms"]) <= max_atoms
           and (hydrogen is None or bool(db.record(m)["contains_h"]) == hydrogen)]
    order = np.random.default_rng(seed).permutation(len(ids))  # nested: n + 1 adds one
    return sorted(ids[i] for i in order[:n])


def _vision_from_phonon(phonon, config, scale=1.0):
    from insnet_core.incoherent import build_ingredients
    from insnet_core.phonons import run_mesh
    from insnet_core.simulate import Settings, simulate_ingredients
    original = phonon.force_constants
    phonon.force_constants = original * scale ** 2
    try:
        modes = run_mesh(phonon, spacing=config.mesh_spacing)
    finally:
        phonon.force_constants = original  # the caller's phonon is left as it was
    ing = build_ingredients(modes, grouping=config.grouping, bin_width=config.bin_width,
                            temperature=config.temperature)
    vision = simulate_ingredients(ing, Settings.check(
        "VISION", orders=config.orders, temperature=config.temperature)).total
    return np.asarray(vision.values, dtype=float), ing, modes


def measure_crystal(db, material_id, potential, relax, cache_dir, scale=None,
                    general_scale=None):
    """Run the route on one database crystal; one row (dict) for the table.

    ``scale`` (optional): also compute the VISION spectrum with that frequency scale;
    ``general_scale`` (optional, the hydrogen parts): and with the scale fitted on the
    general training crystals, for comparison.
    A crystal the route fails on gives a row with ``error`` set.
    """
    from insnet_core.dataset.record import ingredients_from_record
    from insnet_core.phonons import load_phonopy
    from insnet_core.umlip import RouteSettings, run_route

    record = db.record(material_id)
    row = {"material_id": material_id, "potential": potential, "relax": relax,
           "n_atoms": int(record["n_atoms"]), "dft_unstable": bool(record["has_imaginary"]),
           "contains_h": bool(record["contains_h"])}
    t = time.perf_counter()
    try:
        route = run_route(db.structure(material_id),
                          RouteSettings(potential=potential, relax=relax, frequency_scale=1.0,
                                        allow_unconverged=True, allow_symmetry_change=True),
                          cache_dir=cache_dir)
        phonon = load_phonopy(route.params_file)
        vision, ing, modes = _vision_from_phonon(phonon, db.config)
        if scale is not None:
            row["vision_scaled"] = _vision_from_phonon(phonon, db.config, scale)[0][2].tolist()
            row["scale"] = float(scale)
        if general_scale is not None:
            row["vision_general"] = _vision_from_phonon(phonon, db.config,
                                                        general_scale)[0][2].tolist()
            row["scale_general"] = float(general_scale)
    except InsnetError as exc:
        row["error"] = str(exc)[:300]
        return row
    except MemoryError:
        row["error"] = "out of memory (the study's address-space limit)"
        return row
    r = route.report
    row.update({
        "seconds": r["timings"]["relax_s"] + r["timings"]["forces_s"]
        + r["timings"]["force_constants_s"],
        "converged": bool(r["relaxation"]["converged"]),
        "spacegroup_kept": not r["relaxation"].get("symmetry_lost", False),
        "volume_change_percent": r["relaxation"]["volume_change_percent"],
        "route_unstable": bool(modes.has_imaginary),
        "imaginary_at_gamma": bool(r["imaginary_at_gamma"]),
        "mean_energy_route": mean_energy(ing),
        "mean_energy_dft": mean_energy(ingredients_from_record(record, db.config)),
        "max_energy_route": float(modes.max_energy), "max_energy_dft": float(record["max_energy"]),
        "vision": vision[2].tolist(), "vision_dft": np.asarray(record["vision"][2]).tolist(),
        "wall_seconds": time.perf_counter() - t})
    return row


def fit_scales(rows):
    """Frequency scale per (potential, relax): geometric mean of E_DFT / E_route."""
    out = {}
    for row in rows:
        if "error" in row:
            continue
        key = f"{row['potential']}/{row['relax']}"
        out.setdefault(key, []).append(np.log(row["mean_energy_dft"] / row["mean_energy_route"]))
    return {k: float(np.exp(np.mean(v))) for k, v in out.items()}


def summarise(rows):
    """Metrics per (potential, relax, scaled or not) on the rows given (the test crystals)."""
    from insnet_core.nn.evaluate import spectrum_metrics
    groups = {}
    for row in rows:
        groups.setdefault((row["potential"], row["relax"]), []).append(row)
    table = []
    for (potential, relax), members in sorted(groups.items()):
        ok = [r for r in members if "error" not in r]
        # unscaled; the part's own scale; the general training crystals' scale (H parts)
        for scaled, key, scale_key in ((False, "vision", None), (True, "vision_scaled", "scale"),
                                       ("general", "vision_general", "scale_general")):
            if scaled and not all(key in r for r in ok):
                continue
            if not ok:
                table.append({"potential": potential, "relax": relax, "scaled": scaled,
                              "n": 0, "failed": len(members)})
                continue
            pred = np.array([r[key] for r in ok])
            true = np.array([r["vision_dft"] for r in ok])
            m = spectrum_metrics(pred, true)
            scale = ok[0][scale_key] if scale_key else 1.0
            table.append({
                "potential": potential, "relax": relax, "scaled": scaled, "scale": scale,
                "n": len(ok), "failed": len(members) - len(ok),
                "cosine_median": float(np.median(m["cosine"])),
                "cosine_q1": float(np.quantile(m["cosine"], 0.25)),
                "cosine_q3": float(np.quantile(m["cosine"], 0.75)),
                "mse_median": float(np.median(m["mse"])),
                "w1_median": float(np.median(m["w1"])),
                "energy_ratio_median": float(np.median(
                    [r["mean_energy_route"] / r["mean_energy_dft"] for r in ok])) * scale,
                "unstable_fraction": float(np.mean([r["route_unstable"] for r in ok])),
                "dft_unstable_fraction": float(np.mean([r["dft_unstable"] for r in ok])),
                "volume_change_median": float(np.median([r["volume_change_percent"]
                                                         for r in ok])),
                "seconds_median": float(np.median([r["seconds"] for r in ok]))})
    return table


def markdown_table(table):
    lines = ["| potential | relax | frequency scale | n (failed) | cosine median [q1, q3] | "
             "MSE median | W1 median (meV) | mean-energy ratio route/DFT | unstable (DFT) | "
             "volume change | s/crystal |",
             "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for t in table:
        if not t["n"]:
            lines.append(f"| {t['potential']} | {t['relax']} | | 0 ({t['failed']}) | | | | | | | |")
            continue
        lines.append(
            f"| {t['potential']} | {t['relax']} | {t['scale']:.3f}"
            f"{' (general)' if t['scaled'] == 'general' else ''} | {t['n']} ({t['failed']}) | "
            f"{t['cosine_median']:.3f} [{t['cosine_q1']:.3f}, {t['cosine_q3']:.3f}] | "
            f"{t['mse_median']:.4f} | {t['w1_median']:.2f} | {t['energy_ratio_median']:.3f} | "
            f"{100 * t['unstable_fraction']:.0f} % ({100 * t['dft_unstable_fraction']:.0f} %) | "
            f"{t['volume_change_median']:+.1f} % | {t['seconds_median']:.0f} |")
    return "\n".join(lines)


def _read_rows(path):
    if not Path(path).is_file():
        return []
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


#: Study parts: (part name, database split part, hydrogen filter, the part whose rows fit
#: the scales applied to it). The hydrogen parts are sampled among H-containing crystals
#: only and get their own scale, fitted on H-containing training crystals.
PARTS = {"train": ("train", None, None), "test": ("test", None, "train"),
         "train-h": ("train", True, None), "test-h": ("test", True, "train-h")}


def run_study(db, rows_path, potentials, relax_modes, n_train, n_test, max_atoms, cache_dir,
              log=print, n_train_h=0, n_test_h=0, max_atoms_h=16):
    """Training crystals first (fit the scales), then test crystals (scaled and not).

    ``n_train_h`` / ``n_test_h``: as many hydrogen-containing crystals (cells of at most
    ``max_atoms_h`` atoms) measured apart, with a scale fitted on the H-containing ones.
    """
    rows_path = Path(rows_path)
    rows_path.parent.mkdir(parents=True, exist_ok=True)
    done = {(r["part"], r["material_id"], r["potential"], r["relax"])
            for r in _read_rows(rows_path)}
    plan = []
    for part, n, limit in (("train", n_train, max_atoms), ("test", n_test, max_atoms),
                           ("train-h", n_train_h, max_atoms_h),
                           ("test-h", n_test_h, max_atoms_h)):
        split_part, hydrogen, _ = PARTS[part]
        if n:
            plan += [(part, m) for m in choose_crystals(db, split_part, n, limit,
                                                        hydrogen=hydrogen)]
    for part, mid in plan:
        for potential in potentials:
            for relax in relax_modes:
                if (part, mid, potential, relax) in done:
                    continue
                scale = None
                general = None
                fit_part = PARTS[part][2]
                if fit_part:
                    done_rows = _read_rows(rows_path)
                    train_rows = [r for r in done_rows if r["part"] == fit_part]
                    scale = fit_scales(train_rows).get(f"{potential}/{relax}")
                    if fit_part != "train":
                        general = fit_scales([r for r in done_rows if r["part"] == "train"]
                                             ).get(f"{potential}/{relax}")
                row = measure_crystal(db, mid, potential, relax, cache_dir, scale=scale,
                                      general_scale=general)
                row["part"] = part
                with rows_path.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                log(f"{part} {mid} ({row['n_atoms']} atoms) {potential}/{relax}: "
                    + (f"error {row['error']}" if "error" in row else
                       f"{row['seconds']:.0f} s, E ratio "
                       f"{row['mean_energy_route'] / row['mean_energy_dft']:.3f}"))
    return _read_rows(rows_path)


def report(rows, max_atoms, max_atoms_h=16):
    """Markdown: scales fitted on the training crystals, table on the test crystals.

    A second section covers the hydrogen parts when the rows have them.
    """
    text = []
    for train_part, test_part, limit, what in (
            ("train", "test", max_atoms, "sampled with a fixed seed"),
            ("train-h", "test-h", max_atoms_h,
             "sampled with a fixed seed among crystals that contain hydrogen")):
        train = [r for r in rows if r["part"] == train_part]
        test = [r for r in rows if r["part"] == test_part]
        if not test:
            continue
        scales = fit_scales(train)
        if text:
            text += ["", "Hydrogen-containing crystals, measured apart:", ""]
        text += [f"Training crystals (scale fit): {len({r['material_id'] for r in train})}; "
                 f"test crystals: {len({r['material_id'] for r in test})}; cells of at most "
                 f"{limit} atoms (primitive), {what}.", "",
                 "Frequency scales fitted on those training crystals (DFT / route mean phonon "
                 "energy, geometric mean): " + ", ".join(f"{k} {v:.3f}" for k, v in
                                                         sorted(scales.items())), "",
                 markdown_table(summarise(test))]
    return "\n".join(text)


def main(argv=None):
    from insnet_core.dataset.reader import Database
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", required=True)
    ap.add_argument("--rows", required=True, help="JSON-lines file of per-crystal rows (resumed)")
    ap.add_argument("--potentials", default="chgnet,7net-0")
    ap.add_argument("--relax", default="cell,atoms")
    ap.add_argument("--train", type=int, default=12)
    ap.add_argument("--test", type=int, default=24)
    ap.add_argument("--max-atoms", type=int, default=8)
    ap.add_argument("--train-h", type=int, default=0,
                    help="hydrogen-containing training crystals (their own scale fit)")
    ap.add_argument("--test-h", type=int, default=0,
                    help="hydrogen-containing test crystals, scored apart")
    ap.add_argument("--max-atoms-h", type=int, default=16)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--markdown", default=None, help="write the report here")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--memory-gb", type=float, default=10.0,
                    help="address-space limit of this process, so that a crystal the "
                         "potential cannot handle fails alone instead of the machine")
    args = ap.parse_args(argv)
    if args.memory_gb:
        import resource
        limit = int(args.memory_gb * 2 ** 30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    db = Database(args.db)
    if args.report_only:
        rows = _read_rows(args.rows)
    else:
        rows = run_study(db, args.rows, args.potentials.split(","), args.relax.split(","),
                         args.train, args.test, args.max_atoms, args.cache_dir,
                         log=lambda m: print(m, flush=True), n_train_h=args.train_h,
                         n_test_h=args.test_h, max_atoms_h=args.max_atoms_h)
    text = report(rows, args.max_atoms, args.max_atoms_h)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
