"""Eyeballing one database crystal: VISION spectrum and 300 x 300 map in one PNG."""
from __future__ import annotations

import numpy as np

from insnet_core.io import atomic_output
from insnet_core.units import CM1_PER_MEV

__all__ = ["plot_record"]


def plot_record(db, material_id, path):
    """Write a two-panel PNG (VISION banks; Ideal2D map) of one crystal to ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    rec = db.record(material_id)
    vision = db.regenerate(material_id, "vision")
    smap = db.regenerate(material_id, "map")
    fig = Figure(figsize=(11, 4.2))
    ax1, ax2 = fig.subplots(1, 2)
    e_cm = vision.energy_centres * CM1_PER_MEV
    stored = rec["vision"]
    for k, label in enumerate(vision.labels):
        ax1.plot(e_cm, stored[k] / CM1_PER_MEV, lw=1, label=label)
    ax1.set_xlabel("Energy transfer (cm$^{-1}$)")
    ax1.set_ylabel("S(Q,E) (barn/sr/cm$^{-1}$ per cell)")
    ax1.set_title("VISION (stored target)")
    ax1.legend(fontsize=8)
    vals = np.ma.masked_invalid(smap.values.T)
    top = np.nanpercentile(smap.values, 99.5) or None
    mesh = ax2.pcolormesh(smap.q_edges, smap.energy_edges, vals, vmin=0, vmax=top,
                          shading="flat")
    ax2.set_xlabel("|Q| (Å$^{-1}$)")
    ax2.set_ylabel("Energy transfer (meV)")
    ax2.set_title("Ideal 2D map, 0 K (regenerated)")
    fig.colorbar(mesh, ax=ax2, label="S(Q,E) (barn/sr/meV per cell)")
    flags = []
    if rec.get("has_imaginary"):
        flags.append(f"imaginary modes (min {rec['min_energy']:.1f} meV)")
    if rec.get("above_max_energy"):
        flags.append("modes above 150 meV")
    fig.suptitle(f"{material_id} {rec.get('formula', '')}" + (f" — {', '.join(flags)}"
                                                                 if flags else ""))
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return path
