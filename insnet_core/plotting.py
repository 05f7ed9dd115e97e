"""PNG pictures of spectra (matplotlib, Agg canvas: no display needed).

* 1D spectra: one line per row against energy transfer, with a legend.
* |Q|-E maps: ``pcolormesh`` on the true bin edges, |Q| horizontal and energy
  transfer vertical (the usual way powder maps are shown), NaN bins left blank,
  colour bar labelled with the spectrum's ``y_label``.

Energies and values are shown in the spectrum's ``display_energy_unit``
(values as densities per that unit). The title is built from the metadata keys
``formula``, ``instrument``, ``temperature`` (K) and ``Ei`` (meV) when present.

pyplot is never imported, so plotting does not touch global figure state or
need a GUI backend.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from insnet_core import InputError
from insnet_core.io import atomic_output
from insnet_core.spectrum import Spectrum
from insnet_core.units import MEV_PER_CM1

__all__ = ["plot_spectrum", "make_figure", "default_title", "plot_subtraction"]

#: Rows beyond this number get no legend (it would hide the data).
MAX_LEGEND_ENTRIES = 12

_UNIT_TEXT = {"meV": "meV", "cm-1": "cm$^{-1}$"}
_KEYS = {
    "formula": ("formula", "chemical_formula"),
    "instrument": ("instrument",),
    "temperature": ("temperature", "temperature_K", "T"),
    "Ei": ("Ei", "ei", "incident_energy", "Ei_meV", "ei_meV"),
}


def _lookup(metadata, what):
    for key in _KEYS[what]:
        value = metadata.get(key)
        if value is not None and value != "":
            return value
    return None


def _number(value):
    try:
        return f"{float(value):g}"
    except (TypeError, ValueError):
        return str(value)


def default_title(spectrum):
    """Title from metadata: formula, instrument, T and Ei when present ('' if none)."""
    meta = spectrum.metadata
    parts = []
    for what in ("formula", "instrument"):
        value = _lookup(meta, what)
        if value is not None:
            parts.append(str(value))
    temp = _lookup(meta, "temperature")
    if temp is not None:
        parts.append(f"T = {_number(temp)} K")
    ei = _lookup(meta, "Ei")
    if ei is not None:
        parts.append(f"Ei = {_number(ei)} meV")
    if meta.get("potential"):
        parts.append(f"uMLIP {meta['potential']}")
    title = ", ".join(parts)
    if _truthy(meta.get("unstable")):
        low = meta.get("min_phonon_energy_meV")
        where = " (at Gamma)" if _truthy(meta.get("imaginary_at_gamma")) else ""
        title += ("\nUNSTABLE: imaginary modes" + where
                  + (f" down to {float(low):.2f} meV" if low is not None else "")
                  + ", left out")
    return title


def _truthy(value):
    try:
        return bool(int(value))
    except (TypeError, ValueError):
        return bool(value)


def _display(spectrum):
    edges, values, _, y_label = spectrum.in_unit()
    return edges, values, y_label.replace("cm^-1", "cm$^{-1}$")


def make_figure(spectrum, title=None):
    """Build (but do not save) the matplotlib Figure for ``spectrum``.

    Parameters
    ----------
    spectrum : Spectrum
    title : str, optional
        Defaults to :func:`default_title`.

    Returns
    -------
    matplotlib.figure.Figure
        With an Agg canvas attached.
    """
    if not isinstance(spectrum, Spectrum):
        raise InputError(f"plot_spectrum needs a Spectrum, got {type(spectrum).__name__}")
    edges, values, y_label = _display(spectrum)
    e_label = f"Energy transfer ({_UNIT_TEXT[spectrum.display_energy_unit]})"
    fig = Figure(figsize=(7.0, 5.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    if spectrum.is_map:
        data = np.ma.masked_invalid(values.T)  # (n_e, n_q): energy vertical
        finite = values[np.isfinite(values)]
        vmin = vmax = None
        if finite.size:
            vmin = 0.0 if finite.min() >= 0 else float(finite.min())
            # Clip the few brightest bins (elastic line, Bragg peaks) so the
            # inelastic signal stays visible.
            vmax = float(np.percentile(finite, 99.5))
            if not vmax > vmin:
                vmax = float(finite.max()) if finite.max() > vmin else vmin + 1.0
        mesh = ax.pcolormesh(spectrum.q_edges, edges, data, shading="flat", vmin=vmin,
                             vmax=vmax, cmap="viridis")
        colorbar = fig.colorbar(mesh, ax=ax)
        colorbar.set_label(y_label)
        ax.set_xlabel("|Q| (Å$^{-1}$)")
        ax.set_ylabel(e_label)
        ax.set_xlim(spectrum.q_edges[0], spectrum.q_edges[-1])
        ax.set_ylim(edges[0], edges[-1])
    else:
        centres = 0.5 * (edges[1:] + edges[:-1])
        for row, label in zip(values, spectrum.labels):
            ax.plot(centres, row, linewidth=1.0, label=label)
        ax.set_xlabel(e_label)
        ax.set_ylabel(y_label)
        ax.set_xlim(edges[0], edges[-1])
        if len(spectrum.labels) <= MAX_LEGEND_ENTRIES:
            ax.legend(fontsize="small")
    if title is None:
        title = default_title(spectrum)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_spectrum(spectrum, path, title=None):
    """Write a PNG picture of ``spectrum`` to ``path`` (atomically).

    Parameters
    ----------
    spectrum : Spectrum
    path : str or os.PathLike
        Destination PNG file.
    title : str, optional
        Defaults to formula/instrument/T/Ei from the metadata.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    fig = make_figure(spectrum, title=title)
    path = Path(path)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def _map_panel(fig, ax, spectrum, values, title, vmin, vmax, cmap):
    edges = spectrum.in_unit()[0]
    mesh = ax.pcolormesh(spectrum.q_edges, edges, np.ma.masked_invalid(values.T),
                         shading="flat", vmin=vmin, vmax=vmax, cmap=cmap)
    fig.colorbar(mesh, ax=ax)
    ax.set_xlabel("|Q| (Å$^{-1}$)")
    ax.set_ylabel(f"Energy transfer ({_UNIT_TEXT[spectrum.display_energy_unit]})")
    ax.set_title(title, fontsize="medium")


def plot_subtraction(data, result, path, title=None):
    """PNG of a phonon subtraction: data, scaled prediction, residual, magnetic intensity.

    Parameters
    ----------
    data : Spectrum
        The measured data.
    result : insnet_core.subtraction.SubtractionResult
    path : str or os.PathLike
        Destination PNG file.
    title : str, optional
        Figure title (default: the fitted scale, its error and chi^2/dof).

    Returns
    -------
    pathlib.Path
        ``path``. Maps give four panels (data, scaled prediction and residual
        as |Q|-E maps, data and scaled prediction on one colour scale, the
        residual on a symmetric one; the |Q|-integrated residual with its
        error band); 1D data give two (data and scaled prediction; residual
        with error band).
    """
    fit = result.fit
    scaled = result.prediction.values * fit.scale + fit.background
    fig = Figure(figsize=(13.0, 9.0) if data.is_map else (8.0, 7.0), dpi=100)
    FigureCanvasAgg(fig)
    unit = data.display_energy_unit
    conv = MEV_PER_CM1 if unit == "cm-1" else 1.0   # densities per meV -> per display unit
    if data.is_map:
        axes = [fig.add_subplot(2, 2, i + 1) for i in range(4)]
        finite = data.values[np.isfinite(data.values)] * conv
        vmax = float(np.percentile(finite, 99.5)) if finite.size else 1.0
        vmin = min(0.0, float(finite.min())) if finite.size else 0.0
        _map_panel(fig, axes[0], data, data.values * conv, "data", vmin, vmax, "viridis")
        _map_panel(fig, axes[1], data, scaled * conv, "scaled prediction", vmin, vmax,
                   "viridis")
        resid = result.residual.values * conv
        finite = np.abs(resid[np.isfinite(resid)])
        lim = float(np.percentile(finite, 99.5)) if finite.size else 1.0
        _map_panel(fig, axes[2], data, resid, "residual (data - scaled prediction)", -lim,
                   lim, "RdBu_r")
        ax = axes[3]
        if result.magnetic is not None:
            mag = result.magnetic
            edges, values, errors, _ = mag.in_unit()
            centres = 0.5 * (edges[1:] + edges[:-1])
            ax.plot(centres, values[0], linewidth=1.0, color="C3")
            ax.fill_between(centres, values[0] - errors[0], values[0] + errors[0],
                            color="C3", alpha=0.3, linewidth=0)
            ax.axhline(0.0, color="grey", linewidth=0.5)
            ax.set_title(f"residual integrated over {mag.labels[0]}", fontsize="medium")
            ax.set_ylabel("intensity x 1/A")
        ax.set_xlabel(f"Energy transfer ({_UNIT_TEXT[unit]})")
    else:
        top, bottom = fig.add_subplot(2, 1, 1), fig.add_subplot(2, 1, 2)
        edges, values, errors, _ = data.in_unit()
        centres = 0.5 * (edges[1:] + edges[:-1])
        for i, label in enumerate(data.labels[:MAX_LEGEND_ENTRIES]):
            top.plot(centres, values[i], linewidth=0.8, label=f"data {label}")
            top.plot(centres, scaled[i] * conv, linewidth=0.8, linestyle="--",
                     label=f"scaled prediction {label}")
            _, rv, re_, _ = result.residual.in_unit()
            bottom.plot(centres, rv[i], linewidth=0.8, label=f"residual {label}")
            bottom.fill_between(centres, rv[i] - re_[i], rv[i] + re_[i], alpha=0.3,
                                linewidth=0)
        top.legend(fontsize="small")
        bottom.axhline(0.0, color="grey", linewidth=0.5)
        for ax in (top, bottom):
            ax.set_xlabel(f"Energy transfer ({_UNIT_TEXT[unit]})")
    fig.suptitle(title or (f"scale {fit.scale:.4g} ± {fit.scale_error:.2g}, "
                           f"χ²/dof {fit.chi2_dof:.3g} ({fit.method})"))
    fig.tight_layout()
    path = Path(path)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
