"""Spectra as CSV text files with a commented header.

Layout (energies and values in the spectrum's ``display_energy_unit``; values
are densities per that unit)::

    # insnet spectrum (CSV)
    # kind: "1d"                          <- every header value is JSON
    # energy_unit: "meV"
    # y_label: "S(Q,E) (barn/sr/meV/cell)"
    # labels: ["backward", "forward"]
    # metadata: {"instrument": "TOSCA", ...}
    energy_centre,energy_low,energy_high,value[backward],error[backward],value[forward],...

Maps (``kind: "map"``) use a long format, one line per (|Q|, E) bin, |Q| in
1/angstrom::

    q_low,q_high,energy_low,energy_high,value,error

Numbers are written with Python's shortest round-trip representation, so a
meV file reads back exactly; NaN is written as ``nan``.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from insnet_core import InputError
from insnet_core.io import atomic_output, json_default
from insnet_core.spectrum import Spectrum, densities_in_meV

__all__ = ["save_csv", "load_csv"]

_MAGIC = "# insnet spectrum (CSV)"
_MAP_COLUMNS = ["q_low", "q_high", "energy_low", "energy_high", "value", "error"]


def _dump(value):
    return json.dumps(value, default=json_default, allow_nan=True, ensure_ascii=False)


def save_csv(spectrum, path):
    """Write ``spectrum`` as CSV (atomically: a failure leaves no partial file).

    Parameters
    ----------
    spectrum : Spectrum
    path : str or os.PathLike

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    if not isinstance(spectrum, Spectrum):
        raise InputError(f"save_csv needs a Spectrum, got {type(spectrum).__name__}")
    unit = spectrum.display_energy_unit
    edges, values, errors, y_label = spectrum.in_unit()
    lo, hi = edges[:-1], edges[1:]
    header = [
        ("kind", "map" if spectrum.is_map else "1d"),
        ("energy_unit", unit),
        ("q_unit", "1/A" if spectrum.is_map else None),
        ("values", f"densities per {unit}" + (" (bin averages over |Q|)" if spectrum.is_map
                                               else "")),
        ("y_label", y_label),
        ("spectrum_y_label", spectrum.y_label),
        ("labels", None if spectrum.is_map else spectrum.labels),
        ("metadata", spectrum.metadata),
    ]
    path = Path(path)
    with atomic_output(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            fh.write(_MAGIC + "\n")
            for key, value in header:
                if value is not None:
                    fh.write(f"# {key}: {_dump(value)}\n")
            writer = csv.writer(fh, lineterminator="\n")
            if spectrum.is_map:
                writer.writerow(_MAP_COLUMNS)
                q = spectrum.q_edges
                for i in range(values.shape[0]):
                    for j in range(values.shape[1]):
                        writer.writerow([float(q[i]), float(q[i + 1]), float(lo[j]),
                                         float(hi[j]), float(values[i, j]),
                                         float(errors[i, j])])
            else:
                columns = ["energy_centre", "energy_low", "energy_high"]
                for label in spectrum.labels:
                    columns += [f"value[{label}]", f"error[{label}]"]
                writer.writerow(columns)
                centres = 0.5 * (lo + hi)
                for j in range(values.shape[1]):
                    row = [float(centres[j]), float(lo[j]), float(hi[j])]
                    for i in range(values.shape[0]):
                        row += [float(values[i, j]), float(errors[i, j])]
                    writer.writerow(row)
    return path


def _edges_from(lows, highs, what, path):
    lows = np.asarray(lows, dtype=float)
    highs = np.asarray(highs, dtype=float)
    if lows.size == 0:
        raise InputError(f"{path}: no {what} bins")
    if not np.array_equal(lows[1:], highs[:-1]):
        raise InputError(f"{path}: the {what} bins are not contiguous")
    return np.append(lows, highs[-1])


def load_csv(path):
    """Read a CSV file written by :func:`save_csv` back into a :class:`Spectrum`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    header = {}
    rows = []
    with open(path, newline="", encoding="utf-8") as fh:
        first = fh.readline().rstrip("\n")
        if first != _MAGIC:
            raise InputError(f"{path}: not an insnet CSV spectrum (first line {first!r})")
        lines = []
        for line in fh:
            if line.startswith("#"):
                key, sep, value = line[1:].strip().partition(":")
                if sep:
                    try:
                        header[key.strip()] = json.loads(value)
                    except ValueError as exc:
                        raise InputError(f"{path}: bad header line {line.strip()!r}") from exc
            else:
                lines.append(line)
        rows = list(csv.reader(lines))
    if not rows:
        raise InputError(f"{path}: no column header")
    columns, data = rows[0], rows[1:]
    try:
        table = np.array([[float(x) for x in r] for r in data if r], dtype=float)
    except ValueError as exc:
        raise InputError(f"{path}: non-numeric value in the data ({exc})") from exc
    unit = header.get("energy_unit", "meV")
    kind = header.get("kind", "1d")
    if table.size == 0:
        raise InputError(f"{path}: no data rows")
    if kind == "map":
        if columns != _MAP_COLUMNS or table.shape[1] != 6:
            raise InputError(f"{path}: map columns must be {','.join(_MAP_COLUMNS)}")
        q_lo, q_pos = np.unique(table[:, 0], return_inverse=True)
        e_lo, e_pos = np.unique(table[:, 2], return_inverse=True)
        q_hi = np.array([table[q_pos == i, 1][0] for i in range(q_lo.size)])
        e_hi = np.array([table[e_pos == j, 3][0] for j in range(e_lo.size)])
        if table.shape[0] != q_lo.size * e_lo.size:
            raise InputError(f"{path}: the map does not have one line per (|Q|, E) bin")
        values = np.full((q_lo.size, e_lo.size), np.nan)
        errors = np.full_like(values, np.nan)
        values[q_pos, e_pos] = table[:, 4]
        errors[q_pos, e_pos] = table[:, 5]
        q_edges = _edges_from(q_lo, q_hi, "|Q|", path)
        e_edges = _edges_from(e_lo, e_hi, "energy", path)
        labels = None
    else:
        n_rows = (table.shape[1] - 3) // 2
        if table.shape[1] < 5 or table.shape[1] != 3 + 2 * n_rows:
            raise InputError(f"{path}: 1D columns must be energy_centre, energy_low, "
                             "energy_high, then value/error pairs")
        e_edges = _edges_from(table[:, 1], table[:, 2], "energy", path)
        values = table[:, 3::2].T
        errors = table[:, 4::2].T
        q_edges = None
        labels = header.get("labels")
        if not isinstance(labels, list) or len(labels) != n_rows:
            labels = [c[len("value["):-1] for c in columns[3::2]]
    if unit == "cm-1":
        e_edges, values, errors = densities_in_meV(e_edges, values, errors, "cm-1")
    y_label = header.get("spectrum_y_label", header.get("y_label", "Intensity"))
    try:
        return Spectrum(energy_edges=e_edges, values=values, errors=errors, q_edges=q_edges,
                        labels=labels, y_label=y_label, display_energy_unit=unit,
                        metadata=header.get("metadata") or {})
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from exc
