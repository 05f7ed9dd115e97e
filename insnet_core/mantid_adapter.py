"""The bridge between insnet's :class:`~insnet_core.spectrum.Spectrum` and Mantid workspaces.

This is the only insnet module that imports Mantid, and it does so inside its
functions, so ``import insnet_core`` (and this module) works without Mantid.

* :func:`spectrum_to_workspace`: a Spectrum as a ``Workspace2D``. X is the
  energy transfer (``DeltaE`` in meV, or ``DeltaE_inWavenumber`` in cm^-1 when
  the spectrum is shown in wavenumbers, values then being densities per cm^-1),
  flagged as a distribution. Maps get a vertical |Q| axis (``MomentumTransfer``
  bin edges, the layout of ``SofQW``); 1D spectra get one row per label on a
  ``TextAxis``. Metadata become sample logs.
* :func:`binning_from_workspace`: the energy and |Q| bin edges of a reduced
  workspace, so a prediction can be computed on exactly its bins.
"""
from __future__ import annotations

import json
import numbers

import numpy as np

from insnet_core import InputError
from insnet_core.mantid_logs import sample_log_name
from insnet_core.spectrum import Spectrum, densities_in_meV, edges_from_centres
from insnet_core.units import energy_to_meV

__all__ = ["spectrum_to_workspace", "binning_from_workspace", "workspace_to_spectrum",
           "ENERGY_UNITS"]

#: Mantid X unit ids insnet accepts, with the energy unit they mean.
ENERGY_UNITS = {"DeltaE": "meV", "DeltaE_inWavenumber": "cm-1"}
_Q_UNIT = "MomentumTransfer"
_Q_LABEL_CAPTIONS = ("|q|", "q", "|q| (a^-1)", "momentumtransfer")
#: Relative tolerance when checking that a template's axes are the spectrum's bins.
_TEMPLATE_RTOL = 1e-9


def _ws_name(ws):
    try:
        name = ws.name()
    except Exception:  # noqa: BLE001 - any workspace-like object
        name = ""
    return f"workspace '{name}'" if name else "the workspace"


def _centres_to_edges(centres, what, where):
    c = np.asarray(centres, dtype=float)
    if c.size < 2:
        raise InputError(f"{where}: the {what} axis has a single point value; cannot make bin "
                         "edges from it")
    return edges_from_centres(c)


def _ascending(values, what, where):
    v = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(v)):
        raise InputError(f"{where}: the {what} axis has non-finite values")
    if np.any(np.diff(v) <= 0):
        raise InputError(f"{where}: the {what} axis is not strictly ascending")
    return v


def _vertical_kind(axis):
    """'q' for a |Q| axis, 'rows' for spectrum numbers/text, else the unit id."""
    if axis.isSpectra() or axis.isText():
        return "rows"
    unit = axis.getUnit()
    uid = unit.unitID()
    if uid == _Q_UNIT:
        return "q"
    if uid == "Label" and unit.caption().strip().lower() in _Q_LABEL_CAPTIONS:
        return "q"
    if uid in ("Empty", "Label") and not axis.isNumeric():
        return "rows"
    return uid


def binning_from_workspace(ws):
    """Bin edges of a reduced MatrixWorkspace.

    Parameters
    ----------
    ws : MatrixWorkspace
        X in ``DeltaE`` (meV) or ``DeltaE_inWavenumber`` (cm^-1), histogram
        (bin edges) or point data (centres; edges at the midpoints), the same
        X for every spectrum. The vertical axis is either |Q|
        (``MomentumTransfer``, bin edges or centres), which makes it a map like
        ``SofQW`` output, or spectrum numbers / text labels (1D spectra).

    Returns
    -------
    energy_edges : ndarray
        Energy-transfer bin edges in meV (converted from cm^-1 if needed).
    q_edges : ndarray or None
        |Q| bin edges in 1/angstrom for maps, None for 1D workspaces.
    display_energy_unit : str
        'cm-1' for a wavenumber X axis, else 'meV'.

    Raises
    ------
    InputError
        Wrong X unit (the message names it and says what is expected), ragged
        X, non-ascending axes, or a vertical axis that is neither |Q| nor
        spectrum numbers.
    """
    where = _ws_name(ws)
    if not all(hasattr(ws, attr) for attr in ("readX", "getAxis", "getNumberHistograms")):
        raise InputError(f"{where}: not a MatrixWorkspace (a {type(ws).__name__})")
    xunit = ws.getAxis(0).getUnit()
    uid = xunit.unitID()
    if uid not in ENERGY_UNITS:
        caption = xunit.caption()
        shown = f"'{uid}'" + (f" ({caption})" if caption and caption != uid else "")
        raise InputError(
            f"{where}: X unit is {shown}; expected an energy transfer, DeltaE (meV) or "
            "DeltaE_inWavenumber (cm^-1) - reduce to energy transfer first (e.g. "
            "ConvertUnits with Target=DeltaE, or SofQW for a powder map)")
    unit = ENERGY_UNITS[uid]
    n_hist = ws.getNumberHistograms()
    x = np.array(ws.readX(0), dtype=float)
    for i in range(1, n_hist):
        if not np.array_equal(np.asarray(ws.readX(i)), x):
            raise InputError(f"{where}: spectrum {i} has different X values from spectrum 0; "
                             "rebin to common bins first (e.g. Rebin)")
    x = _ascending(x, "energy", where)
    edges = x if ws.isHistogramData() else _centres_to_edges(x, "energy", where)
    energy_edges = energy_to_meV(edges, unit)

    vertical = ws.getAxis(1)
    kind = _vertical_kind(vertical)
    q_edges = None
    if kind == "q":
        values = np.asarray(vertical.extractValues(), dtype=float)
        values = _ascending(values, "|Q|", where)
        if values.size == n_hist + 1:
            q_edges = values
        elif values.size == n_hist:
            q_edges = _centres_to_edges(values, "|Q|", where)
        else:
            raise InputError(f"{where}: the |Q| axis has {values.size} values for {n_hist} "
                             "spectra")
        if q_edges[0] < 0:
            raise InputError(f"{where}: the |Q| axis starts below 0 ({q_edges[0]:g})")
    elif kind != "rows":
        raise InputError(
            f"{where}: vertical axis unit is '{kind}'; expected |Q| (MomentumTransfer, as "
            "SofQW writes it) or spectrum numbers (1D spectra)")
    return energy_edges, q_edges, ("cm-1" if unit == "cm-1" else "meV")


def _log_value(value):
    """A metadata value as something Mantid's Run.addProperty takes, or None to skip."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return str(value)


def _template_axes(spectrum, like):
    """X values, X unit id, and vertical axis values copied from ``like`` (checked)."""
    e_meV, q_edges, unit = binning_from_workspace(like)
    where = _ws_name(like)
    if e_meV.size != spectrum.energy_edges.size or not np.allclose(
            e_meV, spectrum.energy_edges, rtol=_TEMPLATE_RTOL, atol=1e-12):
        raise InputError(f"{where}: its energy bins are not the spectrum's; rebin the "
                         "spectrum onto them first")
    x = np.array(like.readX(0), dtype=float)
    xunit = like.getAxis(0).getUnit().unitID()
    vertical = None
    if spectrum.is_map:
        if q_edges is None:
            raise InputError(f"{where}: has no |Q| axis but the spectrum is a map")
        if q_edges.size != spectrum.q_edges.size or not np.allclose(
                q_edges, spectrum.q_edges, rtol=_TEMPLATE_RTOL, atol=1e-12):
            raise InputError(f"{where}: its |Q| bins are not the spectrum's")
        vertical = np.array(like.getAxis(1).extractValues(), dtype=float)
    return x, xunit, unit, vertical


def spectrum_to_workspace(spectrum, name=None, like=None, title=None):
    """Build a Mantid ``Workspace2D`` from a Spectrum.

    Parameters
    ----------
    spectrum : insnet_core.spectrum.Spectrum
    name : str, optional
        When given, the workspace is added to (or replaces one in) the
        AnalysisDataService under this name.
    like : MatrixWorkspace, optional
        A workspace whose bins the spectrum is on (e.g. the one its binning
        came from): its X values, X unit and |Q| axis values (edges or
        centres) are copied value for value, so the output's axes equal the
        template's exactly, point data included.
    title : str, optional
        Workspace title (default: formula, instrument and contribution).

    Returns
    -------
    Workspace2D
        Distribution; ``YUnitLabel`` from ``spectrum.y_label``; errors set;
        every metadata entry as a sample log (lists and dicts as JSON text,
        booleans as 0/1), named by :func:`insnet_core.mantid_logs.sample_log_name`
        (never a name Mantid reads specially, such as ``proton_charge``).
    """
    from mantid.api import AnalysisDataService, BinEdgeAxis, NumericAxis, TextAxis, \
        WorkspaceFactory

    unit = spectrum.display_energy_unit
    vertical = None
    if like is not None:
        x, xunit, unit, vertical = _template_axes(spectrum, like)
    shown_x, values, errors, y_label = spectrum.in_unit(unit)
    if like is None:
        x, xunit = shown_x, ("DeltaE_inWavenumber" if unit == "cm-1" else "DeltaE")
    n_rows, n_e = values.shape
    ws = WorkspaceFactory.create("Workspace2D", NVectors=n_rows, XLength=int(np.size(x)),
                                 YLength=n_e)
    x = np.asarray(x, dtype=float)
    for i in range(n_rows):
        ws.setX(i, x)
        ws.setY(i, values[i])
        ws.setE(i, errors[i])
    ws.getAxis(0).setUnit(xunit)
    if spectrum.is_map:
        qvals = spectrum.q_edges if vertical is None else vertical
        axis = (BinEdgeAxis.create(qvals.size) if qvals.size == n_rows + 1
                else NumericAxis.create(qvals.size))
        for i, q in enumerate(qvals):
            axis.setValue(i, float(q))
        axis.setUnit(_Q_UNIT)
    else:
        axis = TextAxis.create(n_rows)
        for i, label in enumerate(spectrum.labels):
            axis.setLabel(i, str(label))
    ws.replaceAxis(1, axis)
    ws.setDistribution(True)
    ws.setYUnitLabel(y_label)
    meta = spectrum.metadata
    if title is None:
        title = " ".join(str(meta[k]) for k in ("formula", "instrument", "contribution")
                         if meta.get(k) not in (None, ""))
    ws.setTitle(title or "insnet")
    run = ws.mutableRun()
    used = set()
    for key, value in meta.items():
        converted = _log_value(value)
        if converted is None:
            continue
        run.addProperty(sample_log_name(key, used), converted, True)
    if name:
        AnalysisDataService.addOrReplace(str(name), ws)
    return ws


def _row_labels(ws, n_rows):
    axis = ws.getAxis(1)
    if axis.isText():
        labels = [str(axis.label(i)) for i in range(n_rows)]
        if len(set(labels)) == n_rows and all(labels):
            return labels
    return [f"spectrum {i + 1}" for i in range(n_rows)]


#: Text sample logs :func:`workspace_to_spectrum` carries (a prediction's provenance).
_TEXT_LOGS = ("prediction_method", "model", "model_version", "formula")


def workspace_to_spectrum(ws, log_names=("Ei", "temperature_K")):
    """A reduced MatrixWorkspace as a Spectrum (the workspace is only read).

    Parameters
    ----------
    ws : MatrixWorkspace
        As accepted by :func:`binning_from_workspace`: X in DeltaE or
        DeltaE_inWavenumber; a |Q| vertical axis makes a map, otherwise each
        spectrum is one row (text-axis labels kept).
    log_names : tuple of str
        Numeric sample logs copied into the metadata when present (time
        series as their mean).

    Returns
    -------
    Spectrum
        Values and errors as densities per meV: a histogram workspace not
        flagged as a distribution is divided by its energy bin widths (in the
        workspace's unit) first, then wavenumber densities are converted to
        per meV. Metadata: ``source_workspace``, the numeric logs found and
        the text logs ``prediction_method``, ``model``, ``model_version`` and
        ``formula`` when present.
    """
    energy_edges, q_edges, unit = binning_from_workspace(ws)
    values = np.array(ws.extractY(), dtype=float)
    errors = np.array(ws.extractE(), dtype=float)
    if ws.isHistogramData() and not ws.isDistribution():
        widths = np.diff(np.asarray(ws.readX(0), dtype=float))
        values = values / widths[None, :]
        errors = errors / widths[None, :]
    edges_in_unit = energy_edges if unit == "meV" else energy_edges / energy_to_meV(1.0, unit)
    _, values, errors = densities_in_meV(edges_in_unit, values, errors, unit)
    meta = {"source_workspace": ws.name()} if ws.name() else {}
    run = ws.getRun()
    for name in log_names:
        if run.hasProperty(name):
            try:
                meta[name] = float(run.getPropertyAsSingleValue(name))
            except (ValueError, RuntimeError):
                continue
    for name in _TEXT_LOGS:
        if run.hasProperty(name):
            value = run.getProperty(name).value
            if isinstance(value, str):
                meta[name] = value
    return Spectrum(energy_edges=energy_edges, values=values, errors=errors, q_edges=q_edges,
                    labels=None if q_edges is not None else _row_labels(ws, values.shape[0]),
                    y_label=ws.YUnitLabel() or "intensity", display_energy_unit=unit,
                    metadata=meta)
