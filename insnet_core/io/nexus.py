"""Mantid processed-NeXus files (``.nxs``) and NXSPE files.

Writing
-------
:func:`save_nexus_processed` writes one :class:`~insnet_core.spectrum.Spectrum`
as a Mantid ``Workspace2D`` in the layout Mantid's ``SaveNexusProcessed``
produces (checked against real files written by Mantid 3.x-6.x), so that
``LoadNexusProcessed`` reads it as histogram data:

* X (``axis1``): energy-transfer bin edges, unit ``DeltaE`` (meV) or
  ``DeltaE_inWavenumber`` (cm^-1) when the spectrum's ``display_energy_unit``
  is ``'cm-1'``; in that case the values and errors are written as densities
  per cm^-1. The workspace is flagged as a distribution.
* vertical axis (``axis2``): |Q| bin edges with unit ``MomentumTransfer`` for
  powder maps (the layout of Mantid's ``SofQW`` output); for 1D spectra the row
  labels (e.g. VISION's backward / forward / average banks) as Mantid writes a
  ``TextAxis``: one NX_CHAR string of the labels, each followed by a newline,
  with ``units="TextAxis"`` (``NexusFileIO::writeNexusProcessedData2D``), which
  ``LoadNexusProcessed`` reads back into a TextAxis.
* ``spectrum.metadata`` becomes sample logs: numbers as float logs, strings as
  string logs, never under a name Mantid reads specially
  (:mod:`insnet_core.mantid_logs`). A string log ``insnet_spectrum_json`` carries everything needed
  to read the file back exactly (metadata, row labels, y label, display unit).

Strings are written with the exact HDF5 encodings the NeXus C API gives them
in Mantid's files (fixed-length ASCII, null-terminated pad; a trailing NUL byte
on exactly the fields where Mantid writes one).

Reading
-------
:func:`load_nexus_processed` returns one ``Spectrum`` from a processed-NeXus
or NXSPE file: our own files come back exactly, and Mantid's files are read
when their X axis is an energy transfer (see the function for the rules).
Anything else is refused with an :class:`~insnet_core.InputError` that names
the file and says why.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import warnings
from pathlib import Path

import h5py
import numpy as np

from insnet_core import InputError, __version__
from insnet_core.io import atomic_output, json_default
from insnet_core.mantid_logs import JSON_LOG_NAME, sample_log_name
from insnet_core.spectrum import Spectrum, densities_in_meV, edges_from_centres
from insnet_core.units import normalise_energy_unit

__all__ = ["save_nexus_processed", "load_nexus_processed", "read_binning", "JSON_LOG_NAME"]

_JSON_FORMAT = "insnet-spectrum"
_JSON_VERSION = 1
#: NeXus API version recorded in the root attributes (as in files from Mantid 6.x).
NEXUS_VERSION = "4.4.2"
_ENTRY = "mantid_workspace_1"
_DEFINITION = "Mantid Processed Workspace"
_DEFINITION_URL = "http://www.nexusformat.org/instruments/xml/NXprocessed.xml"
_DEFINITION_LOCAL_URL = "http://www.isis.rl.ac.uk/xml/IXmantid.xml"
_EMPTY_SHAPE_XML = '<type name="userShape">  </type>'


# =====================================================================
# Low-level writers reproducing the NeXus-API encodings of Mantid files
# =====================================================================
def _encode(text, nul):
    """Bytes for a string field; NeXus never writes an empty string."""
    raw = str(text).encode("utf-8")
    if nul:
        raw += b"\x00"
    if not raw:
        raw = b"\x00"
    return raw


def _string_type(raw):
    tid = h5py.h5t.C_S1.copy()
    tid.set_size(len(raw))
    tid.set_strpad(h5py.h5t.STR_NULLTERM)
    try:
        raw.decode("ascii")
        tid.set_cset(h5py.h5t.CSET_ASCII)
    except UnicodeDecodeError:
        tid.set_cset(h5py.h5t.CSET_UTF8)
    return tid


def _attr_str(obj, name, text, nul=False):
    """Scalar fixed-length string attribute, written byte for byte (no conversion).

    ``nul=True`` appends the terminating NUL that Mantid stores in some
    attributes (``distribution``, ``URL``, ``Version``); an empty string is
    always stored as a single NUL byte, as in Mantid's files.
    """
    raw = _encode(text, nul)
    tid = _string_type(raw)
    if name in obj.attrs:
        del obj.attrs[name]
    aid = h5py.h5a.create(obj.id, name.encode("utf-8"), tid, h5py.h5s.create(h5py.h5s.SCALAR))
    aid.write(np.array(raw, dtype=f"S{len(raw)}"), mtype=tid)


def _attr_int(obj, name, value):
    """Scalar int32 attribute (``signal``, ``version``, ``name_empty``)."""
    obj.attrs.create(name, np.int32(value))


def _data_str(group, name, text, nul):
    """Shape-(1,) fixed-length string dataset as NeXus writes NX_CHAR data.

    ``nul=True`` for the entry-level fields (``title``, ``workspace_name``,
    ``definition``), which Mantid stores with their terminating NUL; log values
    and note fields have none. An empty string is written as ``' '``.
    """
    text = str(text)
    if not text:
        text = " "
    raw = _encode(text, nul)
    tid = _string_type(raw)
    dsid = h5py.h5d.create(group.id, name.encode("utf-8"), tid, h5py.h5s.create_simple((1,)))
    dsid.write(h5py.h5s.ALL, h5py.h5s.ALL, np.array([raw], dtype=f"S{len(raw)}"), mtype=tid)
    return group[name]


def _data_num(group, name, values, dtype, compress=False):
    arr = np.ascontiguousarray(values, dtype=dtype)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if compress:
        chunks = (1, arr.shape[1]) if arr.ndim == 2 else arr.shape
        return group.create_dataset(name, data=arr, chunks=chunks, compression="gzip",
                                    compression_opts=6)
    return group.create_dataset(name, data=arr)


def _group(parent, name, nx_class, version=None):
    grp = parent.create_group(name)
    _attr_str(grp, "NX_class", nx_class)
    if version is not None:
        _attr_int(grp, "version", version)
    return grp


def _write_logs(entry, spectrum, payload):
    logs = _group(entry, "logs", "NXgroup", version=1)
    gonio = _group(logs, "goniometer", "NXpositioner", version=1)
    _data_num(gonio, "num_axes", [0], np.int32)
    used = set()
    for key, value in spectrum.metadata.items():
        if isinstance(value, (bool, np.bool_)):
            continue  # only numbers and strings become individual logs
        if isinstance(value, (int, float, np.integer, np.floating)):
            grp = _group(logs, sample_log_name(key, used), "NXlog")
            _attr_str(_data_num(grp, "value", [float(value)], np.float64), "units", " ")
        elif isinstance(value, str):
            grp = _group(logs, sample_log_name(key, used), "NXlog")
            _attr_str(_data_str(grp, "value", value, nul=False), "units", " ")
    grp = _group(logs, JSON_LOG_NAME, "NXlog")
    _attr_str(_data_str(grp, "value", payload, nul=False), "units", " ")


def _write_sample(entry, spectrum):
    sample = _group(entry, "sample", "NXsample")
    name = spectrum.metadata.get("formula")
    if isinstance(name, str) and name.strip():
        _attr_str(sample, "name", name)
    else:
        _attr_str(sample, "name", " ")
        _attr_int(sample, "name_empty", 1)
    _attr_str(sample, "shape_xml", _EMPTY_SHAPE_XML)
    _attr_int(sample, "version", 1)
    for key in ("geom_height", "geom_thickness", "geom_width"):
        _data_num(sample, key, [0.0], np.float64)
    _data_num(sample, "geom_id", [0], np.int32)
    material = _group(sample, "material", "NXdata")
    _attr_str(material, "formulaStyle", "empty")
    _attr_str(material, "name", " ")
    _attr_int(material, "version", 2)
    for key, val in (("number_density", 0.0), ("packing_fraction", 1.0),
                     ("pressure", 0.0), ("temperature", 0.0)):
        _data_num(material, key, [val], np.float64)
    _data_num(sample, "num_oriented_lattice", [0], np.int32)
    _data_num(sample, "num_other_samples", [0], np.int32)


def _write_instrument(entry, n_rows, now):
    inst = _group(entry, "instrument", "NXinstrument", version=1)
    det = _group(inst, "detector", "NXdetector", version=1)
    _data_num(det, "spectra", np.arange(1, n_rows + 1), np.int32, compress=True)
    pmap = _group(inst, "instrument_parameter_map", "NXnote", version=1)
    _data_str(pmap, "author", " ", nul=False)
    _data_str(pmap, "data", " ", nul=False)
    _data_str(pmap, "date", now.replace(tzinfo=None).isoformat(timespec="microseconds"),
              nul=False)
    _data_str(pmap, "description", "Instrument parameter map (none: data written by insnet).",
              nul=False)
    _data_str(pmap, "type", "text/plain", nul=False)
    xml = _group(inst, "instrument_xml", "NXnote")
    _data_str(xml, "data", " ", nul=False)
    _data_str(xml, "description", "Instrument definition (none: data written by insnet).",
              nul=False)
    _data_str(xml, "type", "text/xml", nul=False)
    _data_str(inst, "name", " ", nul=False)


def _text_axis(labels):
    """Row labels as Mantid writes a TextAxis: each label followed by a newline.

    A newline inside a label would split it on reading, so it becomes a blank;
    an empty label becomes a blank too (Mantid's reader skips empty lines).
    """
    return "".join((str(label).replace("\r", " ").replace("\n", " ") or " ") + "\n"
                   for label in labels)


def save_nexus_processed(spectrum, path, workspace_name="insnet", title=None):
    """Write ``spectrum`` as a Mantid processed-NeXus file that ``LoadNexusProcessed`` reads.

    Parameters
    ----------
    spectrum : Spectrum
        A 1D spectrum (rows become spectra 1..n) or a |Q|-E map (the vertical
        axis becomes |Q| bin edges, like Mantid's ``SofQW`` output).
    path : str or os.PathLike
        Destination file (conventionally ``.nxs``). Written atomically: on any
        failure no partial file is left and an existing file is untouched.
    workspace_name : str
        Name Mantid gives the workspace on loading.
    title : str, optional
        Workspace title; defaults to ``metadata['title']`` or ``workspace_name``.

    Notes
    -----
    The metadata round-trips exactly when it is JSON-representable (str, int,
    float, bool, None, lists and dicts with string keys); tuples and numpy
    arrays come back as lists, other objects as their ``str()``. Sample logs
    go in the entry's ``logs`` group, where Mantid (since 2011) keeps them.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    if not isinstance(spectrum, Spectrum):
        raise InputError(f"save_nexus_processed needs a Spectrum, got {type(spectrum).__name__}")
    if not isinstance(workspace_name, str) or not workspace_name.strip():
        raise InputError("workspace_name must be a non-empty string")
    if title is None:
        meta_title = spectrum.metadata.get("title")
        title = meta_title if isinstance(meta_title, str) and meta_title else workspace_name
    unit = spectrum.display_energy_unit
    x_unit = "DeltaE_inWavenumber" if unit == "cm-1" else "DeltaE"
    x_edges, shown_values, shown_errors, shown_label = spectrum.in_unit()
    payload = {
        "format": _JSON_FORMAT, "version": _JSON_VERSION,
        "y_label": spectrum.y_label,
        "display_energy_unit": unit,
        "labels": spectrum.labels,
        "metadata": spectrum.metadata,
    }
    if unit == "cm-1":
        # cm^-1 -> meV is not exactly invertible in floating point; keep the
        # exact edges so that our own files read back to the last digit.
        payload["energy_edges_meV"] = spectrum.energy_edges.tolist()
    try:
        payload_text = json.dumps(payload, default=json_default, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise InputError(f"spectrum metadata cannot be stored: {exc}") from exc

    path = Path(path)
    now = _dt.datetime.now().astimezone()
    n_rows = spectrum.values.shape[0]
    with atomic_output(path) as tmp:
        with h5py.File(tmp, "w") as f:
            _attr_str(f, "HDF5_Version", h5py.version.hdf5_version)
            _attr_str(f, "NeXus_version", NEXUS_VERSION)
            _attr_str(f, "file_name", os.path.abspath(path))
            _attr_str(f, "file_time", now.isoformat(timespec="seconds"))

            entry = _group(f, _ENTRY, "NXentry")
            for key, url in (("definition", _DEFINITION_URL),
                             ("definition_local", _DEFINITION_LOCAL_URL)):
                ds = _data_str(entry, key, _DEFINITION, nul=True)
                _attr_str(ds, "URL", url, nul=True)
                _attr_str(ds, "Version", "1.0", nul=True)
            _data_str(entry, "title", title, nul=True)
            _data_str(entry, "workspace_name", workspace_name, nul=True)
            _attr_str(_data_str(entry, "program_name", "insnet", nul=False), "version",
                      __version__)

            _write_instrument(entry, n_rows, now)
            _write_logs(entry, spectrum, payload_text)
            _group(entry, "process", "NXprocess")
            _write_sample(entry, spectrum)

            ws = _group(entry, "workspace", "NXdata")
            values = _data_num(ws, "values", shown_values, np.float64, compress=True)
            _attr_int(values, "signal", 1)
            _attr_str(values, "axes", "axis2,axis1")
            _attr_str(values, "units", "")
            _attr_str(values, "unit_label", shown_label)
            _data_num(ws, "errors", shown_errors, np.float64, compress=True)
            axis1 = _data_num(ws, "axis1", x_edges, np.float64)
            _attr_str(axis1, "distribution", "1", nul=True)
            _attr_str(axis1, "units", x_unit)
            if spectrum.is_map:
                axis2 = _data_num(ws, "axis2", spectrum.q_edges, np.float64)
                _attr_str(axis2, "units", "MomentumTransfer")
            else:
                axis2 = _data_str(ws, "axis2", _text_axis(spectrum.labels), nul=False)
                _attr_str(axis2, "units", "TextAxis")
    return path


# =====================================================================
# Reading
# =====================================================================
_Q_CAPTIONS = {"|q|", "momentumtransfer", "momentum transfer", "mod(q)", "modq"}
_Q_LABELS = {"", "angstrom^-1", "a^-1", "å^-1", "1/a", "1/å", "1/angstrom", "\\aa^-1",
             "invangstrom", "inverse angstrom"}
_ENERGY_CAPTIONS = {"deltae", "de", "energy transfer", "energytransfer", "energy shift",
                    "energy", "__msl_energytransfer", "e"}


def _text(value):
    """Decode an HDF5 string value (bytes, str, or 1-element array) and strip NULs/blanks."""
    if isinstance(value, np.ndarray):
        if value.size == 0:
            return ""
        value = value.reshape(-1)[0]
    if isinstance(value, (bytes, np.bytes_)):
        value = bytes(value).decode("utf-8", errors="replace")
    return str(value).replace("\x00", "").strip()


def _attr(obj, name, default=""):
    if name not in obj.attrs:
        return default
    return _text(obj.attrs[name])


def _nx_class(obj):
    return _attr(obj, "NX_class")


class _Notes(list):
    def add(self, text):
        if text not in self:
            self.append(text)


def _classify_axis(ds):
    """Return (kind, unit, description) for a Mantid axis dataset.

    kind is 'energy' (unit 'meV'/'cm-1'), 'q' (unit '1/A'), 'spectrum',
    'text' or 'other' (unit: the Mantid unit id).
    """
    units = _attr(ds, "units")
    caption = _attr(ds, "caption")
    label = _attr(ds, "label")
    desc = repr(units) if units else "(no unit)"
    if units == "Label":
        desc = f"'Label' (caption {caption!r}, label {label!r})"
    if units == "DeltaE":
        return "energy", "meV", desc
    if units == "DeltaE_inWavenumber":
        return "energy", "cm-1", desc
    if units == "MomentumTransfer":
        return "q", "1/A", desc
    if units == "spectraNumber":
        return "spectrum", None, desc
    if units == "TextAxis":
        return "text", None, desc
    if units == "Label":
        cap = caption.strip().lower()
        if cap in _Q_CAPTIONS and label.strip().lower() in _Q_LABELS:
            return "q", "1/A", desc
        if cap in _ENERGY_CAPTIONS:
            if not label.strip():
                return "energy", "meV?", desc
            try:
                unit = normalise_energy_unit(label)
            except InputError:
                return "other", units, desc
            if unit in ("meV", "cm-1"):
                return "energy", unit, desc
    return "other", units, desc


def _ascending(edges):
    d = np.diff(edges)
    return bool(np.all(d > 0))


def _axis_edges(values, n_bins, what, is_label_vertical, notes, path):
    """Bin edges (ascending) and the permutation to apply to the bins.

    ``values`` has n_bins+1 entries (edges) or n_bins entries (centres, or
    lower boundaries for a vertical 'Label' axis with uniform spacing, which
    is how ConvertMDHistoToMatrixWorkspace writes it).
    """
    v = np.asarray(values, dtype=float).reshape(-1)
    if not np.all(np.isfinite(v)):
        raise InputError(f"{path}: unsupported: the {what} axis has non-finite values")
    order = np.arange(n_bins)
    if v.size == n_bins + 1:
        if _ascending(v):
            return v, order
        if _ascending(v[::-1]):
            notes.add(f"{what} axis was descending; bins reversed")
            return v[::-1].copy(), order[::-1]
        raise InputError(f"{path}: unsupported: the {what} bin edges are not monotonic")
    if v.size != n_bins:
        raise InputError(f"{path}: unsupported: the {what} axis has {v.size} values for "
                         f"{n_bins} bins (expected {n_bins} or {n_bins + 1})")
    if n_bins < 2:
        raise InputError(f"{path}: unsupported: a single {what} value gives no bin width")
    if not _ascending(v):
        order = np.argsort(v, kind="stable")
        v = v[order]
        if not _ascending(v):
            raise InputError(f"{path}: unsupported: the {what} axis has repeated values")
        notes.add(f"{what} axis was not ascending; bins sorted")
    steps = np.diff(v)
    if is_label_vertical and np.allclose(steps, steps[0], rtol=1e-6, atol=0):
        notes.add(f"{what} axis had one value per bin on a 'Label' axis: taken as lower bin "
                  "boundaries (ConvertMDHistoToMatrixWorkspace convention)")
        return np.append(v, v[-1] + steps[0]), order
    notes.add(f"{what} axis had one value per bin (centres): edges made from midpoints")
    return edges_from_centres(v), order


def _read_logs(entry):
    """Mantid sample logs as a dict: single values as-is, numeric time series as means."""
    group = entry.get("logs")
    if group is None:
        group = entry.get("sample")  # files written before 2011 keep logs in the sample
    out = {}
    if group is None:
        return out
    for name, grp in group.items():
        if not isinstance(grp, h5py.Group) or _nx_class(grp) != "NXlog" or "value" not in grp:
            continue
        ds = grp["value"]
        if not isinstance(ds, h5py.Dataset):
            continue
        kind = ds.dtype.kind
        if kind in "SUO":
            if "time" in grp or ds.size != 1:
                continue
            out[name] = _text(ds[()])
        elif kind in "iufb":
            data = np.asarray(ds[()])
            if "time" in grp:
                if data.size == 0:
                    continue
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    out[name] = float(np.nanmean(data.astype(float)))
            elif data.size == 1:
                item = data.reshape(-1)[0]
                out[name] = float(item) if kind == "f" else int(item)
    return out


def _find_entry(f, path, entry):
    names = [k for k, g in f.items() if isinstance(g, h5py.Group)
             and (_nx_class(g) == "NXentry" or k.startswith("mantid_workspace_"))]
    if entry is not None:
        if entry not in names:
            raise InputError(f"{path}: has no entry {entry!r} (entries: {', '.join(names)})")
        return f[entry]
    if not names:
        raise InputError(f"{path}: unsupported: no NXentry group (not a NeXus file?)")
    if len(names) > 1:
        raise InputError(
            f"{path}: unsupported: the file holds {len(names)} workspaces "
            f"({', '.join(sorted(names))}), i.e. a group or multi-period workspace; "
            "save one workspace per file, or pass entry=... to read one of them")
    return f[names[0]]


def load_nexus_processed(path, entry=None):
    """Read one :class:`Spectrum` from a Mantid processed-NeXus or NXSPE file.

    Our own files (written by :func:`save_nexus_processed`) come back exactly.
    Mantid's files are interpreted as follows:

    * X axis ``DeltaE`` (meV) or ``DeltaE_inWavenumber`` (cm^-1, converted to
      meV with values converted to per-meV densities), or a ``Label`` axis whose
      caption names an energy transfer (``'DeltaE'``, ``'Energy Shift'``,
      MSlice's ``'__MSL_EnergyTransfer'``; its label gives the unit, meV when
      empty). Bin edges are used as they are; point data (one value per bin)
      get edges at the midpoints. Histograms not flagged as distributions are
      divided by the bin widths.
    * vertical axis ``MomentumTransfer`` (or a ``Label`` axis with caption
      ``'|Q|'``) makes a |Q|-E map: |Q| edges as they are, |Q| centres turned
      into edges by midpoints; spectrum numbers, text labels or any other
      vertical axis give 1D rows labelled ``'spectrum N'`` (or the text label,
      or ``'<unit> = value'``).
    * a transposed map (X = |Q|, vertical = energy transfer) is transposed.
    * NXSPE files give 1D rows, one per detector, labelled with their angles.

    Every conversion made is listed in ``metadata['import_notes']``; Mantid
    sample logs become metadata (numeric time series as their mean).

    Parameters
    ----------
    path : str or os.PathLike
    entry : str, optional
        Which top-level entry to read when the file holds several workspaces
        (a group or multi-period file); by default such files are refused.

    Returns
    -------
    Spectrum

    Raises
    ------
    InputError
        The file is missing, not HDF5, or holds data this reader does not
        support (the message names the file and the reason, e.g. an X axis
        that is not an energy transfer).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if not h5py.is_hdf5(path):
        raise InputError(f"{path}: unsupported: not an HDF5 NeXus file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{path}: cannot be opened as HDF5 ({exc})") from exc
    with f:
        grp = _find_entry(f, path, entry)
        definition = _text(grp["definition"][()]) if "definition" in grp else ""
        try:
            if definition.upper() == "NXSPE":
                return _read_nxspe(grp, path)
            if "workspace" in grp and isinstance(grp["workspace"], h5py.Group):
                return _read_workspace2d(grp, path)
        except InputError as exc:
            if str(path) in str(exc):
                raise
            raise InputError(f"{path}: {exc}") from exc
        for other, what in (("event_workspace", "an EventWorkspace (histogram it with Rebin "
                                                "first)"),
                            ("peaks_workspace", "a PeaksWorkspace"),
                            ("table_workspace", "a TableWorkspace")):
            if other in grp:
                raise InputError(f"{path}: unsupported: entry {grp.name} holds {what}")
        raise InputError(f"{path}: unsupported: entry {grp.name} has no 'workspace' data "
                         "group (not a Mantid processed workspace or NXSPE file)")


def read_binning(path, entry=None):
    """Binning of a spectrum file, to match a prediction to reduced data.

    Returns
    -------
    energy_edges : ndarray
        Energy-transfer bin edges in meV.
    q_edges : ndarray or None
        |Q| bin edges in 1/angstrom for maps, None for 1D spectra.
    display_energy_unit : str
        'cm-1' when the file's energy axis is in wavenumbers, else 'meV'.
    """
    spec = load_nexus_processed(path, entry=entry)
    q = None if spec.q_edges is None else spec.q_edges.copy()
    return spec.energy_edges.copy(), q, spec.display_energy_unit


def _own_payload(entry):
    logs = entry.get("logs")
    if logs is None or JSON_LOG_NAME not in logs:
        return None
    grp = logs[JSON_LOG_NAME]
    if not isinstance(grp, h5py.Group) or "value" not in grp:
        return None
    raw = grp["value"][()]
    raw = raw.reshape(-1)[0] if isinstance(raw, np.ndarray) else raw
    if isinstance(raw, (bytes, np.bytes_)):
        raw = bytes(raw).decode("utf-8", errors="replace")
    try:
        payload = json.loads(str(raw).rstrip("\x00"))
    except ValueError:
        return None
    if not isinstance(payload, dict) or payload.get("format") != _JSON_FORMAT:
        return None
    return payload


def _y_label(ds):
    units = _attr(ds, "units")
    label = _attr(ds, "unit_label")
    if units and label and units not in label:
        return f"{label} ({units})"
    return label or units or "Intensity"


def _read_workspace2d(entry, path):
    ws = entry["workspace"]
    for key in ("values", "axis1", "axis2"):
        if key not in ws:
            raise InputError(f"{path}: unsupported: workspace group has no {key!r} dataset")
    values = np.asarray(ws["values"][()], dtype=float)
    if values.ndim == 1:
        values = values[None, :]
    if values.ndim != 2:
        raise InputError(f"{path}: unsupported: values have shape {values.shape}")
    errors = (np.asarray(ws["errors"][()], dtype=float).reshape(values.shape)
              if "errors" in ws else np.zeros_like(values))
    notes = _Notes()
    ax1, ax2 = ws["axis1"], ws["axis2"]
    x_kind, x_unit, x_desc = _classify_axis(ax1)
    y_kind, y_unit, y_desc = _classify_axis(ax2)
    distribution = _attr(ax1, "distribution", default=None)

    x = np.asarray(ax1[()])
    if x.ndim == 2:
        if not np.all(x == x[0]):
            raise InputError(f"{path}: unsupported: each spectrum has its own X binning "
                             "(ragged workspace); rebin to common bins first")
        x = x[0]
    if x.dtype.kind not in "iuf":
        raise InputError(f"{path}: unsupported: the X axis is not numeric")

    if x_kind == "energy" and y_kind not in ("energy",):
        is_map = y_kind == "q" and (values.shape[0] > 1 or ax2.size == 2)
        e_unit = x_unit
        e_edges, e_order = _axis_edges(x, values.shape[1], "energy", False, notes, path)
        values, errors = values[:, e_order], errors[:, e_order]
        if distribution == "0" and x.size == values.shape[1] + 1:
            widths = np.diff(e_edges)
            values, errors = values / widths, errors / widths
            notes.add("histogram was not a distribution: divided by the energy bin widths")
        elif distribution is None:
            notes.add("no distribution flag: values taken as densities")
        q_edges = None
        labels = None
        if is_map:
            q_edges, q_order = _axis_edges(ax2[()], values.shape[0], "|Q|",
                                           _attr(ax2, "units") == "Label", notes, path)
            values, errors = values[q_order], errors[q_order]
        else:
            labels = _row_labels(ax2, y_kind, values.shape[0])
    elif x_kind == "q" and y_kind == "energy":
        e_unit = y_unit
        values, errors = values.T.copy(), errors.T.copy()
        notes.add("transposed map (X = |Q|, vertical = energy transfer): transposed")
        q_edges, q_order = _axis_edges(x, values.shape[0], "|Q|", False, notes, path)
        e_edges, e_order = _axis_edges(ax2[()], values.shape[1], "energy",
                                       _attr(ax2, "units") == "Label", notes, path)
        values, errors = values[q_order][:, e_order], errors[q_order][:, e_order]
        notes.add("values taken as given (the distribution flag refers to the |Q| axis)")
        labels = None
    else:
        if x_kind == "energy":
            why = "both axes are energy transfers"
        elif x_kind == "q":
            why = (f"the X axis unit is {x_desc} (momentum transfer), not an energy transfer, "
                   "and the vertical axis is not an energy transfer: a diffraction-like S(Q) "
                   "or a cut at constant energy")
        else:
            why = f"the X axis unit is {x_desc}, not an energy transfer"
        raise InputError(f"{path}: unsupported: {why}")

    if e_unit == "meV?":
        e_unit = "meV"
        notes.add("energy axis label gives no unit: meV assumed")
    payload = _own_payload(entry)
    if e_unit == "cm-1":
        e_edges, values, errors = densities_in_meV(e_edges, values, errors, "cm-1")
        notes.add("energy converted from cm^-1 to meV, values to per-meV densities")
        exact = payload.get("energy_edges_meV") if payload else None
        if exact is not None and len(exact) == e_edges.size:
            exact = np.asarray(exact, dtype=float)
            if np.allclose(exact, e_edges, rtol=1e-12, atol=1e-12):
                e_edges = exact

    if payload is not None:
        metadata = payload.get("metadata") or {}
        y_label = payload.get("y_label", _y_label(ws["values"]))
        display = payload.get("display_energy_unit", "cm-1" if e_unit == "cm-1" else "meV")
        own_labels = payload.get("labels")
        if labels is not None and isinstance(own_labels, list) and len(own_labels) == len(labels):
            labels = own_labels
    else:
        metadata = _read_logs(entry)
        metadata["source_file"] = str(path)
        if "workspace_name" in entry:
            metadata["workspace_name"] = _text(entry["workspace_name"][()])
        if "title" in entry:
            metadata.setdefault("title", _text(entry["title"][()]))
        notes.add(f"X axis {x_desc}, vertical axis {y_desc}")
        metadata["import_notes"] = "; ".join(notes)
        y_label = _y_label(ws["values"])
        display = "cm-1" if e_unit == "cm-1" else "meV"

    if labels is not None and q_edges is not None:
        labels = None
    return Spectrum(energy_edges=e_edges, values=values, errors=errors, q_edges=q_edges,
                    labels=labels, y_label=y_label, display_energy_unit=display,
                    metadata=metadata)


def _format_number(v):
    v = float(v)
    return str(int(v)) if v.is_integer() else f"{v:g}"


def _row_labels(ax2, kind, n_rows):
    if kind == "text":
        text = ax2[()]
        if isinstance(text, np.ndarray):
            text = b"".join(bytes(t) for t in text.reshape(-1)) if text.dtype.kind == "S" \
                else "".join(str(t) for t in text.reshape(-1))
        if isinstance(text, (bytes, np.bytes_)):
            text = bytes(text).decode("utf-8", errors="replace")
        labels = str(text).replace("\x00", "").split("\n")
        if labels and labels[-1] == "":
            labels.pop()
        if len(labels) == n_rows:
            return labels
        return [f"spectrum {i + 1}" for i in range(n_rows)]
    vals = np.asarray(ax2[()]).reshape(-1)
    if vals.dtype.kind not in "iuf" or vals.size != n_rows:
        return [f"spectrum {i + 1}" for i in range(n_rows)]
    if kind == "spectrum":
        return [f"spectrum {_format_number(v)}" for v in vals]
    if kind == "q":
        return [f"|Q| = {_format_number(v)} 1/A" for v in vals]
    name = _attr(ax2, "caption") or _attr(ax2, "units") or "axis2"
    return [f"{name} = {_format_number(v)}" for v in vals]


def _read_nxspe(entry, path):
    if "data" not in entry or "data" not in entry["data"]:
        raise InputError(f"{path}: unsupported: NXSPE file without data/data")
    data = entry["data"]
    values = np.asarray(data["data"][()], dtype=float)
    if values.ndim == 1:
        values = values[None, :]
    errors = (np.asarray(data["error"][()], dtype=float).reshape(values.shape)
              if "error" in data else np.zeros_like(values))
    if "energy" not in data:
        raise InputError(f"{path}: unsupported: NXSPE file without data/energy")
    notes = _Notes()
    unit = _attr(data["energy"], "units") or "meV"
    try:
        unit = normalise_energy_unit(unit)
    except InputError as exc:
        raise InputError(f"{path}: unsupported: NXSPE energy unit {unit!r}") from exc
    if unit not in ("meV", "cm-1"):
        raise InputError(f"{path}: unsupported: NXSPE energy unit {unit!r}")
    e_edges, order = _axis_edges(data["energy"][()], values.shape[1], "energy", False, notes,
                                 path)
    values, errors = values[:, order], errors[:, order]
    if unit == "cm-1":
        e_edges, values, errors = densities_in_meV(e_edges, values, errors, "cm-1")
        notes.add("energy converted from cm^-1 to meV, values to per-meV densities")
    n = values.shape[0]
    polar = np.asarray(data["polar"][()], dtype=float).reshape(-1) if "polar" in data else None
    azim = (np.asarray(data["azimuthal"][()], dtype=float).reshape(-1)
            if "azimuthal" in data else None)
    if polar is not None and polar.size == n:
        if azim is not None and azim.size == n:
            labels = [f"polar {p:.2f} deg, azimuthal {a:.2f} deg" for p, a in zip(polar, azim)]
        else:
            labels = [f"polar {p:.2f} deg" for p in polar]
    else:
        labels = [f"spectrum {i + 1}" for i in range(n)]
    metadata = {"source_file": str(path)}
    version = _attr(entry["definition"], "version")
    metadata["nxspe_version"] = version
    info = entry.get("NXSPE_info")
    if info is not None:
        for key, meta in (("fixed_energy", "Ei"), ("psi", "psi"),
                          ("ki_over_kf_scaling", "ki_over_kf_scaling")):
            if key in info:
                val = np.asarray(info[key][()]).reshape(-1)
                if val.size == 1 and val.dtype.kind in "iufb":
                    metadata[meta] = float(val[0]) if val.dtype.kind == "f" else int(val[0])
    inst = entry.get("instrument")
    if inst is not None and "name" in inst:
        metadata["instrument"] = _text(inst["name"][()])
    notes.add("NXSPE: one row per detector (group) at fixed angles, read as 1D spectra; "
              "values taken as per-meV densities as stored")
    metadata["import_notes"] = "; ".join(notes)
    display = "cm-1" if unit == "cm-1" else "meV"
    return Spectrum(energy_edges=e_edges, values=values, errors=errors, labels=labels,
                    y_label="Intensity", display_energy_unit=display,
                    metadata=metadata)
