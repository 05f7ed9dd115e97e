"""The database's data card (DATACARD.md), generated from the database itself."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from insnet_core.dataset.build import read_index

__all__ = ["datacard_text", "write_datacard"]


def datacard_text(db, source=None, comparison=None):
    """Markdown data card: counts, elements, flags, failures by reason, rebuild, licence.

    ``comparison``: optional Markdown (``insnet_core.dataset.compare.format_comparison``)
    of how the VISION targets changed from the previous build.
    """
    ok = db.ids()
    failed = db.ids(status="failed")
    recs = [db.record(m) for m in ok]
    planned = None
    if source is not None and Path(source, "index.csv").is_file():
        planned = len(read_index(source))
    elements = Counter(str(e) for r in recs for e in r["elements"])
    unstable = sum(bool(r["has_imaginary"]) for r in recs)
    below_1thz = sum(r["min_energy"] < -4.1357 for r in recs)
    above = sum(bool(r["above_max_energy"]) for r in recs)
    with_h = sum(bool(r["contains_h"]) for r in recs)
    shards = sorted(p.stem for p in Path(db.root).glob("*.h5"))
    size = sum(p.stat().st_size for p in Path(db.root).glob("*.h5"))
    cfg = db.config
    lines = [
        "# insnet INS database — data card",
        "",
        "Incoherent INS spectra ingredients and targets computed by insnet's physics engine "
        "from the DFT force sets of Togo's phonon database.",
        "",
        "## Contents",
        "",
        f"* crystals stored: **{len(ok) + len(failed)}**"
        + (f" of {planned} in the source index" if planned else "")
        + f" — computed {len(ok)}, failed {len(failed)}",
        f"* shard files: {len(shards)} ({', '.join(shards)}), {size / 2 ** 20:.1f} MiB in all",
        *([f"* **rebuild in progress**: {planned - len(ok) - len(failed)} crystals of the "
           "source index are not computed yet; continue with `insnet dataset build --source "
           "../shared/data/phonondb --out data/insnet-db --resume` (see Rebuild)"]
          if planned and len(ok) + len(failed) < planned else []),
        f"* with imaginary modes (below -{0.5} meV): {unstable}; below -1 THz: {below_1thz}",
        f"* with modes above {cfg.max_energy_flag:g} meV (beyond the map's range): {above}",
        f"* containing hydrogen: {with_h}",
        f"* distinct elements: {len(elements)}",
        "",
        "Every record: structure (primitive lattice, species, fractional positions), "
        "provenance (material id, sha256 of the source files, package versions in the shard "
        "attributes), per-element one-phonon DOS on a "
        f"{cfg.bin_width:g} meV grid along the three principal axes of the element's "
        "Debye-Waller tensor (what the anisotropic fundamentals need; their mean is the "
        "isotropic DOS) with masses, cross sections and atom counts, mean-square "
        "displacements at 0 and 300 K (and the principal values at 0 K), the VISION target "
        "(10-1200 cm^-1, 10 cm^-1 bins; "
        "backward, forward, average), and flags (minimum frequency, imaginary fraction, "
        "modes above 150 meV, contains H, failure reason).",
        "",
        "The 300 x 300 map target (0-15 1/A x 0-150 meV, 1.5 meV FWHM, 0 K) is not stored: "
        "`insnet_core.dataset.record.regenerate(record, 'map')` (or "
        "`Database.regenerate(id, 'map')`) rebuilds it from the ingredients, equal to the "
        "engine's direct result to float32 precision (tests/test_dataset.py).",
        "",
        f"Settings: record format {cfg.format}; "
        + ("the engine's default Gamma-centred mesh (spacing < 0.1 1/A and at least "
           "4e6/n_atoms^3 q-points, docs/engine.md)" if cfg.mesh_spacing is None else
           f"Gamma-centred mesh spacing < {cfg.mesh_spacing:g} 1/A")
        + f", phonon orders 1-{cfg.orders}, ingredients grouped per "
        f"{cfg.grouping}, T = {cfg.temperature:g} K for the targets; fundamentals with the "
        "anisotropic Debye-Waller factor (exact powder average, docs/engine.md), overtones "
        "isotropic.",
        "",
        "## Elements (number of crystals containing each)",
        "",
        ", ".join(f"{el} {n}" for el, n in sorted(elements.items(), key=lambda kv: -kv[1])),
        "",
        "## Failures by reason",
        "",
    ]
    fails = db.failures()
    if not fails:
        lines.append("none")
    for reason, ids in sorted(fails.items(), key=lambda kv: -len(kv[1])):
        shown = ", ".join(ids[:8]) + (" ..." if len(ids) > 8 else "")
        lines.append(f"* {len(ids)}: {reason} ({shown})")
    if comparison:
        lines += ["", "## Changes of the VISION targets from the previous build", "",
                  comparison]
    lines += [
        "",
        "## Rebuild",
        "",
        "```bash",
        "insnet dataset build --source ../shared/data/phonondb --out data/insnet-db --resume",
        "insnet dataset info --db data/insnet-db",
        "```",
        "",
        "The build is resumable at any point (a killed run loses nothing); a rebuild of one "
        "source shard rewrites only that shard's file.",
        "",
        "## Licence and citation",
        "",
        "Derived from Togo's phonon database (version 2018-04-17, Kyoto University), "
        "licence CC-BY-4.0; this database is distributed under the same licence. Cite: "
        "A. Togo, \"Phonon database at Kyoto University\" (2018-04-17); A. Togo and I. Tanaka, "
        "Scr. Mater. 108, 1-5 (2015).",
        "",
    ]
    return "\n".join(lines)


def write_datacard(db, path, source=None, comparison=None):
    """Write :func:`datacard_text` to ``path``."""
    Path(path).write_text(datacard_text(db, source, comparison))
    return path
