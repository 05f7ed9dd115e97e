"""How much the VISION targets of two database builds differ, crystal by crystal.

Reads only the per-crystal columns every format has kept (``material_id``,
``status``, ``contains_h``, ``has_imaginary``, ``vision``) straight from the
shard files, so a database of an older format can be compared with a rebuild.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from insnet_core import InputError

__all__ = ["read_targets", "compare_targets", "format_comparison"]


def read_targets(root):
    """VISION average spectra and class flags of a database folder.

    Returns
    -------
    dict
        material_id -> (vision average row (119,), contains_h, has_imaginary);
        computed crystals only.
    """
    root = Path(root)
    shards = sorted(root.glob("*.h5"))
    if not shards:
        raise InputError(f"{root}: no database shard files (*.h5)")
    out = {}
    for path in shards:
        with h5py.File(path, "r") as f:
            ids = [x.decode() if isinstance(x, bytes) else str(x) for x in f["material_id"][()]]
            status = [x.decode() if isinstance(x, bytes) else str(x) for x in f["status"][()]]
            vision = f["vision"][()]
            has_h = f["contains_h"][()]
            unstable = f["has_imaginary"][()]
        for i, mid in enumerate(ids):
            if status[i] == "ok":
                out[mid] = (np.asarray(vision[i, -1], dtype=float), bool(has_h[i]),
                            bool(unstable[i]))
    return out


def _one_minus_cosine(a, b):
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return 0.0 if na == nb else 1.0
    return float(1.0 - np.dot(a, b) / (na * nb))


def compare_targets(old_root, new_root, threshold=0.01):
    """1 - cosine between the VISION targets of the crystals both builds computed.

    Returns
    -------
    dict
        ``rows``: list of (class name, n, n changed > threshold, median, 90th percentile,
        max of 1 - cosine); ``worst``: the 10 most changed (material_id, 1 - cosine);
        ``only_old`` / ``only_new``: counts of crystals computed in one build only.
    """
    old, new = read_targets(old_root), read_targets(new_root)
    common = sorted(set(old) & set(new))
    diff = {m: _one_minus_cosine(old[m][0], new[m][0]) for m in common}
    classes = {
        "all": common,
        "contains H": [m for m in common if new[m][1]],
        "no H": [m for m in common if not new[m][1]],
        "unstable in DFT": [m for m in common if new[m][2]],
    }
    rows = []
    for name, ids in classes.items():
        values = np.array([diff[m] for m in ids]) if ids else np.zeros(0)
        if values.size:
            rows.append((name, len(ids), int((values > threshold).sum()),
                         float(np.median(values)), float(np.percentile(values, 90)),
                         float(values.max())))
        else:
            rows.append((name, 0, 0, float("nan"), float("nan"), float("nan")))
    worst = sorted(diff.items(), key=lambda kv: -kv[1])[:10]
    return {"rows": rows, "worst": worst, "threshold": threshold,
            "only_old": len(set(old) - set(new)), "only_new": len(set(new) - set(old))}


def format_comparison(result):
    """The comparison as a Markdown table."""
    t = result["threshold"]
    lines = [f"| class | crystals | changed by > {100 * t:g} % (1 - cosine) | median | "
             "90th percentile | max |", "|---|---|---|---|---|---|"]
    for name, n, changed, med, p90, top in result["rows"]:
        share = f"{changed} ({100 * changed / n:.1f} %)" if n else "0"
        lines.append(f"| {name} | {n} | {share} | {med:.2e} | {p90:.2e} | {top:.2e} |")
    lines.append("")
    lines.append("Most changed: " + ", ".join(f"{m} ({v:.2e})" for m, v in result["worst"]))
    if result["only_old"] or result["only_new"]:
        lines.append(f"Computed in one build only: {result['only_old']} old, "
                     f"{result['only_new']} new.")
    return "\n".join(lines)
