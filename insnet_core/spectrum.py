"""The one spectrum type that flows from calculation to rebinning to file.

A :class:`Spectrum` is histogram data laid out like a Mantid ``Workspace2D``:

* the X axis is energy transfer, given as ascending **bin edges in meV**;
* ``values`` has shape ``(n_rows, n_energy_bins)``; each row is one histogram;
* the vertical axis is either ascending |Q| **bin edges** in 1/angstrom (a
  powder map, laid out like Mantid's SofQW output) or one text label per row
  (1D spectra, e.g. the banks of an instrument: ``["backward", "forward"]``).

``values`` are densities: intensity per meV (and, for maps, per bin in |Q|,
i.e. the value is the bin-average over |Q|). This makes every rebinning
flux-conserving: the integral ``sum(values * dE * dQ)`` is preserved exactly
when the new bins cover the old ones.

Bins that cannot be measured (outside an instrument's kinematic range) are NaN,
as in Mantid's SofQW output. Errors are one standard deviation, same shape as
``values`` (zeros when unknown).

``display_energy_unit`` ('meV' or 'cm-1') only controls how writers and plots
show the energy axis; all arrays stay in meV.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from insnet_core import InputError
from insnet_core.units import MEV_PER_CM1, normalise_energy_unit

__all__ = ["Spectrum", "rebin_1d_matrix", "check_edges", "densities_in_meV",
           "edges_from_centres"]


def check_edges(edges, name):
    """Return ``edges`` as a float array after checking it is 1D, finite, strictly ascending.

    Parameters
    ----------
    edges : array_like, shape (n+1,)
    name : str
        Used in the error message (e.g. ``"energy bin edges"``).
    """
    arr = np.array(edges, dtype=float, copy=True)  # never share the caller's array
    if arr.ndim != 1 or arr.size < 2:
        raise InputError(f"{name}: need at least two bin edges, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{name}: bin edges must be finite numbers")
    if np.any(np.diff(arr) <= 0):
        bad = int(np.argmax(np.diff(arr) <= 0))
        raise InputError(
            f"{name}: bin edges must be strictly ascending (edge {bad} = {arr[bad]:g} "
            f"is followed by {arr[bad + 1]:g})")
    return arr


def edges_from_centres(centres):
    """Bin edges half-way between point values, the outer edges mirrored (as Mantid's
    ConvertToHistogram does). ``centres``: shape (n,), n >= 2; returns shape (n+1,)."""
    c = np.asarray(centres, dtype=float)
    mid = 0.5 * (c[1:] + c[:-1])
    return np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])


def densities_in_meV(energy_edges, values, errors, unit):
    """Inverse of :meth:`Spectrum.in_unit`: edges and densities given in ``unit`` -> meV.

    Returns
    -------
    tuple
        ``(energy_edges_meV, values_per_meV, errors_per_meV)``; unchanged for meV.
    """
    if normalise_energy_unit(unit) == "cm-1":
        return (energy_edges * MEV_PER_CM1, values / MEV_PER_CM1, errors / MEV_PER_CM1)
    return energy_edges, values, errors


def rebin_1d_matrix(old_edges, new_edges):
    """Overlap matrix for flux-conserving rebinning of densities.

    Parameters
    ----------
    old_edges : ndarray, shape (n_old+1,)
    new_edges : ndarray, shape (n_new+1,)

    Returns
    -------
    ndarray, shape (n_old, n_new)
        ``M[i, j]`` is the length of the overlap of old bin ``i`` with new bin
        ``j`` divided by the width of new bin ``j``. For a density ``y`` on the
        old bins, ``y @ M`` is the density on the new bins.
    """
    lo = np.maximum(old_edges[:-1, None], new_edges[None, :-1])
    hi = np.minimum(old_edges[1:, None], new_edges[None, 1:])
    overlap = np.clip(hi - lo, 0.0, None)
    return overlap / np.diff(new_edges)[None, :]


def _rebin_axis(values, errors, old_edges, new_edges, axis):
    """Rebin densities (and their errors, in quadrature) along ``axis``.

    A new bin is NaN when any old bin overlapping it is NaN; a new bin not
    covered by the old range at all gets 0 over the uncovered part (no data
    means no intensity, as in Mantid's Rebin), so fully uncovered bins are 0.
    """
    mat = rebin_1d_matrix(old_edges, new_edges)
    v = np.moveaxis(values, axis, -1)
    e = np.moveaxis(errors, axis, -1)
    nan = np.isnan(v)
    new_v = np.where(nan, 0.0, v) @ mat
    new_e = np.sqrt(np.where(nan, 0.0, e) ** 2 @ (mat ** 2))
    touched_nan = (nan.astype(float) @ (mat > 0).astype(float)) > 0
    new_v[touched_nan] = np.nan
    new_e[touched_nan] = np.nan
    return np.moveaxis(new_v, -1, axis), np.moveaxis(new_e, -1, axis)


@dataclass
class Spectrum:
    """Histogram S(E) or S(|Q|, E) with errors, axes and metadata.

    Parameters
    ----------
    energy_edges : array_like, shape (n_e+1,)
        Ascending energy-transfer bin edges in meV.
    values : array_like, shape (n_rows, n_e) or (n_e,)
        Intensity densities (per meV). A 1D array is taken as one row.
    errors : array_like, optional
        One-sigma errors, same shape as ``values``; zeros when omitted.
    q_edges : array_like, shape (n_rows+1,), optional
        Ascending |Q| bin edges in 1/angstrom (makes this a powder map).
    labels : list of str, optional
        One label per row when there is no |Q| axis (default ``["S(E)"]``
        for one row, ``"spectrum 1"``… otherwise).
    y_label : str
        What the values are, with units (e.g. ``"S(Q,E) (barn/sr/meV/cell)"``).
    display_energy_unit : {'meV', 'cm-1'}
        How writers and plots show the energy axis.
    metadata : dict
        Free-form provenance (instrument, temperature, Ei, formula, …); writers
        store it as sample logs.
    """

    energy_edges: np.ndarray
    values: np.ndarray
    errors: np.ndarray | None = None
    q_edges: np.ndarray | None = None
    labels: list | None = None
    y_label: str = "S(Q,E) (barn/sr/meV/cell)"
    display_energy_unit: str = "meV"
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        self.energy_edges = check_edges(self.energy_edges, "energy bin edges")
        vals = np.array(self.values, dtype=float)
        if vals.ndim == 1:
            vals = vals[None, :]
        if vals.ndim != 2:
            raise InputError(f"spectrum values must be 1D or 2D, got shape {vals.shape}")
        if vals.shape[1] != self.energy_edges.size - 1:
            raise InputError(
                f"spectrum values have {vals.shape[1]} energy bins but "
                f"{self.energy_edges.size} energy edges were given")
        self.values = vals
        if self.errors is None:
            self.errors = np.zeros_like(vals)
        else:
            err = np.array(self.errors, dtype=float)
            if err.shape != vals.shape and err.size == vals.size and err.ndim == 1:
                err = err.reshape(vals.shape)
            if err.shape != vals.shape:
                raise InputError(f"spectrum errors have shape {err.shape}, values {vals.shape}")
            self.errors = err
        if self.q_edges is not None:
            self.q_edges = check_edges(self.q_edges, "|Q| bin edges")
            if self.q_edges.size - 1 != vals.shape[0]:
                raise InputError(
                    f"spectrum has {vals.shape[0]} rows but {self.q_edges.size} |Q| edges")
            if self.labels is not None:
                raise InputError("a spectrum has either |Q| edges or row labels, not both")
        else:
            if self.labels is None:
                self.labels = (["S(E)"] if vals.shape[0] == 1
                               else [f"spectrum {i + 1}" for i in range(vals.shape[0])])
            self.labels = [str(x) for x in self.labels]
            if len(set(self.labels)) != len(self.labels):
                raise InputError(f"spectrum row labels must be unique, got {self.labels}")
            if len(self.labels) != vals.shape[0]:
                raise InputError(
                    f"spectrum has {vals.shape[0]} rows but {len(self.labels)} labels")
        self.display_energy_unit = normalise_energy_unit(self.display_energy_unit)
        if self.display_energy_unit not in ("meV", "cm-1"):
            raise InputError("display_energy_unit must be 'meV' or 'cm-1'")
        self.metadata = dict(self.metadata)

    # ------------------------------------------------------------------ axes
    @property
    def is_map(self):
        """True when the vertical axis is |Q| (a powder map)."""
        return self.q_edges is not None

    @property
    def energy_centres(self):
        """Bin centres in meV, shape (n_e,)."""
        return 0.5 * (self.energy_edges[1:] + self.energy_edges[:-1])

    @property
    def energy_widths(self):
        """Bin widths in meV, shape (n_e,)."""
        return np.diff(self.energy_edges)

    @property
    def q_centres(self):
        """|Q| bin centres in 1/angstrom, shape (n_rows,); None for 1D spectra."""
        if self.q_edges is None:
            return None
        return 0.5 * (self.q_edges[1:] + self.q_edges[:-1])

    @property
    def shape(self):
        return self.values.shape

    def in_unit(self, unit=None):
        """Energy axis and densities expressed in ``unit`` (for writers and plots).

        Parameters
        ----------
        unit : {'meV', 'cm-1'}, optional
            Default: ``display_energy_unit``.

        Returns
        -------
        tuple
            ``(energy_edges, values, errors, y_label)``: edges in ``unit``,
            values and errors as densities per ``unit`` (per cm^-1 = per meV
            times meV per cm^-1), the y label with its energy unit replaced.
        """
        unit = normalise_energy_unit(unit or self.display_energy_unit)
        if unit not in ("meV", "cm-1"):
            raise InputError(f"spectra are shown in meV or cm-1, not {unit}")
        if unit == "cm-1":
            return (self.energy_edges / MEV_PER_CM1, self.values * MEV_PER_CM1,
                    self.errors * MEV_PER_CM1, self.y_label.replace("meV", "cm^-1"))
        return self.energy_edges, self.values, self.errors, self.y_label

    # ------------------------------------------------------------ operations
    def integral(self, ignore_nan=True):
        """Integral of each row over energy (1D) or of the whole map over |Q| and E.

        Returns
        -------
        ndarray (n_rows,) for 1D spectra, or float for maps.
        """
        vals = np.nan_to_num(self.values) if ignore_nan else self.values
        per_row = vals @ self.energy_widths
        if self.is_map:
            return float(per_row @ np.diff(self.q_edges))
        return per_row

    def rebin(self, energy_edges=None, q_edges=None):
        """Flux-conserving rebin onto new bin edges (any spacing, logarithmic included).

        Parameters
        ----------
        energy_edges : array_like, optional
            New ascending energy edges in meV; unchanged when None.
        q_edges : array_like, optional
            New ascending |Q| edges in 1/angstrom (maps only); unchanged when None.

        Returns
        -------
        Spectrum
            A new object; ``self`` is not modified.
        """
        vals, errs = self.values, self.errors
        e_new = self.energy_edges
        q_new = self.q_edges
        if energy_edges is not None:
            e_new = check_edges(energy_edges, "new energy bin edges")
            vals, errs = _rebin_axis(vals, errs, self.energy_edges, e_new, axis=1)
        if q_edges is not None:
            if not self.is_map:
                raise InputError("cannot rebin in |Q|: this spectrum has no |Q| axis")
            q_new = check_edges(q_edges, "new |Q| bin edges")
            vals, errs = _rebin_axis(vals, errs, self.q_edges, q_new, axis=0)
        return self.replace(energy_edges=e_new, values=vals, errors=errs, q_edges=q_new)

    def replace(self, **changes):
        """Copy with some fields replaced (arrays are copied, never shared)."""
        fields = dict(energy_edges=self.energy_edges, values=self.values, errors=self.errors,
                      q_edges=self.q_edges, labels=self.labels, y_label=self.y_label,
                      display_energy_unit=self.display_energy_unit,
                      metadata=copy.deepcopy(self.metadata))
        fields.update(changes)
        for key in ("energy_edges", "values", "errors", "q_edges"):
            if fields[key] is not None:
                fields[key] = np.array(fields[key], dtype=float, copy=True)
        if fields["labels"] is not None:
            fields["labels"] = list(fields["labels"])
        return Spectrum(**fields)

    def row(self, index):
        """One row as a 1D spectrum (label kept, or ``|Q| = a-b`` for maps)."""
        label = (self.labels[index] if not self.is_map else
                 f"|Q| = {self.q_edges[index]:g}-{self.q_edges[index + 1]:g} 1/A")
        return self.replace(values=self.values[index:index + 1],
                            errors=self.errors[index:index + 1], q_edges=None, labels=[label])

    def scaled(self, factor):
        """Values and errors multiplied by ``factor``."""
        return self.replace(values=self.values * factor, errors=self.errors * abs(factor))

    def __add__(self, other):
        if not isinstance(other, Spectrum):
            return NotImplemented
        if (other.values.shape != self.values.shape
                or not np.array_equal(other.energy_edges, self.energy_edges)
                or (self.is_map != other.is_map)
                or (self.is_map and not np.array_equal(other.q_edges, self.q_edges))):
            raise InputError("can only add spectra on identical bins; rebin one of them first")
        return self.replace(values=self.values + other.values,
                            errors=np.hypot(self.errors, other.errors))
