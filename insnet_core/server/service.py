"""What the analysis server does with one upload, without any web framework.

:class:`PredictionService` takes the bytes of an uploaded structure file and
the form's settings (:class:`FormSettings`), checks them, predicts the VISION
spectrum and one S(|Q|,E) map (SEQUOIA at the chosen Ei, or the ideal 2D grid)
with :func:`insnet_core.predict.predict`, and keeps the result in a bounded
in-memory store (:class:`ResultStore`) so that the page can fetch element or
order contributions and downloads (``.nxs``, ``.csv``, ``.png``) later.

The user's bytes are written only inside a per-request temporary directory,
under a fixed name (the user's file name is shown, never used as a path), and
the directory is removed before the call returns, whatever happens.
"""
from __future__ import annotations

import re
import secrets
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from insnet_core import InputError, InsnetError
from insnet_core.defaults import VISION_ROUTES

__all__ = ["Limits", "FormSettings", "ServiceResult", "ResultStore", "PredictionService",
           "parse_form", "safe_display_name", "DOWNLOAD_FORMATS"]

#: Instruments the page offers, as users name them.
INSTRUMENTS = ("VISION", "SEQUOIA", "Ideal2D")
#: Download formats: extension -> media type.
DOWNLOAD_FORMATS = {"nxs": "application/x-hdf5", "csv": "text/csv", "png": "image/png"}
_STRUCTURE_FORMATS = ("cif", "poscar")


@dataclass(frozen=True)
class Limits:
    """Bounds on the work one server process accepts.

    Attributes
    ----------
    max_upload_bytes : int
        Largest request body (the structure file and the form); larger uploads
        are refused (HTTP 413) before they are read to the end.
    max_atoms : int
        Largest cell, atoms.
    timeout_s : float
        Longest a prediction may take before the request is answered 504.
    workers : int
        Predictions computed at the same time.
    queue : int
        Requests allowed to wait for a worker; beyond ``workers + queue``
        requests are refused at once (HTTP 503 with Retry-After).
    results_kept : int
        Finished results kept in memory for downloads (oldest dropped first).
    result_ttl_s : float
        How long a result stays downloadable.
    """

    max_upload_bytes: int = 1024 * 1024
    max_atoms: int = 500
    timeout_s: float = 60.0
    workers: int = 2
    queue: int = 8
    results_kept: int = 32
    result_ttl_s: float = 3600.0

    def __post_init__(self):
        # uploads are parsed in memory; the multipart parser keeps parts up to 1 MiB
        # in memory and would spill larger ones to the system temporary folder
        if not 0 < self.max_upload_bytes <= 1024 * 1024:
            raise InputError("max_upload_bytes must be between 1 and 1048576 (1 MiB)")
        for name in ("max_atoms", "workers", "results_kept"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be at least 1")
        if int(self.queue) < 0:
            raise InputError("queue must be >= 0")
        if not float(self.timeout_s) > 0 or not float(self.result_ttl_s) > 0:
            raise InputError("timeout_s and result_ttl_s must be > 0 s")


@dataclass
class FormSettings:
    """The page's settings, checked (see :func:`parse_form`).

    ``instrument`` picks the map: SEQUOIA at ``ei`` (meV) or the ideal 2D grid;
    VISION (1D) is always computed, so choosing VISION shows the ideal map.
    """

    instrument: str = "VISION"
    temperature: float = 5.0
    ei: float | None = None
    chopper_package: str | None = None
    chopper_frequency: int | None = None
    model: str | None = None
    vision_route: str | None = None

    def map_instrument(self):
        return "SEQUOIA" if self.instrument == "SEQUOIA" else "Ideal2D"


def _blank(value):
    return value is None or (isinstance(value, str) and not value.strip())


def _number(form, key, kind, problems):
    raw = form.get(key)
    if _blank(raw):
        return None
    try:
        value = kind(str(raw).strip()) if kind is not int else int(float(str(raw).strip()))
    except ValueError:
        problems[key] = f"{key} must be a number, got {str(raw)[:40]!r}"
        return None
    if not np.isfinite(value):
        problems[key] = f"{key} must be finite, got {raw!r}"
        return None
    return value


def parse_form(form):
    """Check the form fields and return :class:`FormSettings`.

    Parameters
    ----------
    form : mapping of str -> str
        ``instrument``, ``temperature`` (K), ``ei`` (meV), ``chopper_package``,
        ``chopper_frequency`` (Hz), ``model``, ``vision_route``; blank fields
        take their defaults.

    Raises
    ------
    InputError
        Naming every faulty field (``field: message; ...``).
    """
    problems = {}
    settings = FormSettings()
    inst = form.get("instrument")
    if not _blank(inst):
        match = [name for name in INSTRUMENTS if name.lower() == str(inst).strip().lower()]
        if not match:
            problems["instrument"] = (f"unknown instrument {str(inst)[:40]!r}; choose one of "
                                      f"{', '.join(INSTRUMENTS)}")
        else:
            settings.instrument = match[0]
    temperature = _number(form, "temperature", float, problems)
    if temperature is not None:
        settings.temperature = temperature
    settings.ei = _number(form, "ei", float, problems)
    settings.chopper_frequency = _number(form, "chopper_frequency", int, problems)
    for key in ("chopper_package", "model", "vision_route"):
        if not _blank(form.get(key)):
            setattr(settings, key, str(form.get(key)).strip())
    if settings.instrument == "SEQUOIA" and settings.ei is None and "ei" not in problems:
        problems["ei"] = "SEQUOIA needs an incident energy Ei (meV)"
    if settings.vision_route is not None and settings.vision_route not in VISION_ROUTES:
        problems["vision_route"] = (f"route must be one of {', '.join(VISION_ROUTES)}, got "
                                    f"{settings.vision_route[:40]!r}")
    if problems:
        raise InputError("; ".join(f"{k}: {v}" for k, v in problems.items()))
    return settings


def safe_display_name(name, default="structure.cif"):
    """A file name fit for display only: the last path part, harmless characters, ≤ 80."""
    text = str(name or "").replace("\\", "/").split("/")[-1]
    text = re.sub(r"[^A-Za-z0-9._+-]", "_", text).lstrip(".")[:80]
    return text or default


def _structure_format(name, data):
    """'cif' or 'poscar' from the upload's name and first bytes (never trusted as a path)."""
    lower = name.lower()
    if lower.endswith(".cif") or b"_cell_length_a" in data or data.lstrip().startswith(b"data_"):
        return "cif"
    if "poscar" in lower or "contcar" in lower or lower.endswith(".vasp"):
        return "poscar"
    return "cif"


@dataclass
class ServiceResult:
    """One finished prediction: the spectra, a summary, and when it was made."""

    id: str
    name: str
    summary: dict
    settings: FormSettings
    vision: object           # SimulationResult on VISION
    map: object              # SimulationResult on SEQUOIA or Ideal2D
    seconds: float
    created: float = field(default_factory=time.monotonic)

    def part(self, which, contribution="total"):
        """The spectrum ``which`` ('vision' | 'map') for a contribution.

        ``contribution``: 'total', 'element:<symbol>' or 'order:<n>'.
        """
        if which not in ("vision", "map"):
            raise KeyError(f"unknown spectrum {which!r}; use 'vision' or 'map'")
        result = self.vision if which == "vision" else self.map
        if contribution in (None, "", "total"):
            return result.total
        kind, _, key = str(contribution).partition(":")
        if kind == "element" and key in result.by_element:
            return result.by_element[key]
        if kind == "order" and key.isdigit() and int(key) in result.by_order:
            return result.by_order[int(key)]
        raise KeyError(f"unknown contribution {contribution!r}")


class ResultStore:
    """Finished results kept in memory, bounded in count and age (thread-safe)."""

    def __init__(self, keep, ttl_s):
        self._keep = int(keep)
        self._ttl = float(ttl_s)
        self._items = OrderedDict()
        self._lock = threading.Lock()

    def _expire(self, now):
        while self._items:
            key, item = next(iter(self._items.items()))
            if now - item.created <= self._ttl and len(self._items) <= self._keep:
                break
            self._items.pop(key)

    def add(self, result):
        with self._lock:
            self._items[result.id] = result
            self._expire(time.monotonic())

    def get(self, result_id):
        with self._lock:
            self._expire(time.monotonic())
            return self._items.get(str(result_id))

    def __len__(self):
        with self._lock:
            return len(self._items)


def _spacegroup(structure):
    try:
        import spglib
        cell = (structure.lattice, structure.frac_coords,
                [int(z) for z in structure.to_phonopy_atoms().numbers])
        found = spglib.get_spacegroup(cell, symprec=1e-3)
        return found or "not found (symprec 1e-3)"
    except Exception as exc:  # noqa: BLE001 - the summary must not fail on symmetry
        return f"not found ({type(exc).__name__})"


class PredictionService:
    """Predictions for the server: checked inputs in, spectra and JSON out.

    Parameters
    ----------
    limits : Limits, optional
    model : str, optional
        Default model (a folder name under ``models/`` or a path); the shipped
        default model otherwise. It is loaded once, by :meth:`warm_up` or the
        first request, and shared by all requests.
    """

    def __init__(self, limits=None, model=None):
        self.limits = limits or Limits()
        self.model = model
        self.results = ResultStore(self.limits.results_kept, self.limits.result_ttl_s)

    # ------------------------------------------------------------ set-up
    def models(self):
        """Names of the models with a DOS head that the page may offer."""
        from insnet_core.predict import available_models, default_model
        names = []
        default = self._model_name()
        for name in available_models():
            names.append(name)
        if default and default not in names:
            names.insert(0, default)
        if default_model() in names:
            names.remove(default_model())
            names.insert(0, default_model())
        return names

    def _model_name(self):
        from insnet_core.predict import default_model
        return self.model or default_model()

    def warm_up(self):
        """Load the default model now (once per process)."""
        from insnet_core.predict import load_predictor, resolve_model
        name = self._model_name()
        if name is None:
            raise InsnetError("no trained model is installed: the server needs one "
                              "(models/<name>/card.json)")
        load_predictor(resolve_model(name))
        # the first prediction of each instrument sets up its resolution model (s);
        # one small crystal through all three keeps that out of the first request
        data = b"NaCl warm-up\n1.0\n0 2.82 2.82\n2.82 0 2.82\n2.82 2.82 0\nNa Cl\n1 1\n" \
               b"Direct\n0 0 0\n0.5 0.5 0.5\n"
        for instrument in ("VISION", "SEQUOIA"):
            self.run(data, "POSCAR", FormSettings(instrument=instrument, ei=160.0), keep=False)
        return name

    def options(self):
        """What the page's form offers (instruments, chopper settings, models, limits)."""
        from insnet_core.instruments.sequoia import Sequoia
        return {"instruments": list(INSTRUMENTS),
                "chopper_packages": Sequoia.chopper_packages(),
                "chopper_frequencies": Sequoia.chopper_frequencies(),
                "models": self.models(), "default_model": self._model_name(),
                "vision_routes": list(VISION_ROUTES),
                "limits": {"max_upload_bytes": self.limits.max_upload_bytes,
                           "max_atoms": self.limits.max_atoms,
                           "timeout_s": self.limits.timeout_s}}

    # ------------------------------------------------------------ work
    def run(self, data, filename, settings, keep=True):
        """Predict from the bytes of an uploaded structure file.

        Parameters
        ----------
        data : bytes
            The file's content.
        filename : str
            The user's name for it (display only).
        settings : FormSettings
        keep : bool
            Keep the result in :attr:`results` for downloads.

        Returns
        -------
        ServiceResult

        Raises
        ------
        InputError
            For an empty, unreadable or unsupported structure or bad settings.
        """
        from insnet_core.predict import predict
        from insnet_core.structure import read_structure

        name = safe_display_name(filename)
        if not data or not data.strip():
            raise InputError(f"{name}: the file is empty")
        if len(data) > self.limits.max_upload_bytes:
            raise InputError(f"{name}: {len(data)} bytes, above the limit of "
                             f"{self.limits.max_upload_bytes}")
        if b"\x00" in data[:4096]:
            raise InputError(f"{name}: not a text file (CIF or POSCAR expected)")
        start = time.perf_counter()
        fmt = _structure_format(name, data)
        workdir = Path(tempfile.mkdtemp(prefix="insnet-serve-"))
        try:
            path = workdir / ("upload.cif" if fmt == "cif" else "POSCAR")
            path.write_bytes(data)
            try:
                structure = read_structure(path, max_atoms=self.limits.max_atoms, fmt=fmt)
            except InputError as exc:
                raise InputError(str(exc).replace(str(path), name)) from None
            model = settings.model or self._model_name()
            common = dict(method="ML", model=model, temperature=settings.temperature)
            try:
                vision = predict(path, instrument="VISION", vision_route=settings.vision_route,
                                 **common)
                if settings.map_instrument() == "SEQUOIA":
                    spectra_map = predict(path, instrument="SEQUOIA", ei=settings.ei,
                                          chopper_package=settings.chopper_package,
                                          chopper_frequency=settings.chopper_frequency,
                                          **common)
                else:
                    spectra_map = predict(path, instrument="Ideal2D", **common)
            except InputError as exc:
                text = str(exc).replace(str(path), name)
                raise InputError(text.removeprefix("structure_file: ")) from None
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        for result in (vision, spectra_map):
            for spec in ([result.total] + list(result.by_element.values())
                         + list(result.by_order.values())):
                spec.metadata["structure_file"] = name
                if "warnings" in spec.metadata:
                    spec.metadata["warnings"] = spec.metadata["warnings"].replace(str(path), name)
        meta = vision.total.metadata
        warnings = [w for w in str(meta.get("warnings", "")).split(" | ") if w]
        summary = {"file": name, "formula": structure.formula,
                   "spacegroup": _spacegroup(structure), "atoms": structure.n_atoms,
                   "elements": list(structure.elements),
                   "volume_A3": round(float(structure.volume), 3),
                   "model": meta.get("model"), "members": meta.get("model_members"),
                   "vision_route": meta.get("vision_route"),
                   "errors": meta.get("errors"), "warnings": warnings,
                   "map_instrument": settings.map_instrument(),
                   "temperature_K": settings.temperature}
        if settings.map_instrument() == "SEQUOIA":
            inst = spectra_map.total.metadata
            summary.update(ei_meV=settings.ei, chopper_package=inst.get("chopper_package"),
                           chopper_frequency_Hz=inst.get("chopper_frequency_hz"))
        result = ServiceResult(id=secrets.token_urlsafe(12), name=name, summary=summary,
                               settings=settings, vision=vision, map=spectra_map,
                               seconds=time.perf_counter() - start)
        if keep:
            self.results.add(result)
        return result

    # ------------------------------------------------------------ output
    def download(self, result, which, fmt, contribution="total"):
        """Bytes and file name of one spectrum as ``.nxs``, ``.csv`` or ``.png``."""
        from insnet_core.io.nexus import save_nexus_processed
        from insnet_core.io.text import save_csv
        from insnet_core.plotting import plot_spectrum

        if fmt not in DOWNLOAD_FORMATS:
            raise KeyError(f"unknown format {fmt!r}; use one of {', '.join(DOWNLOAD_FORMATS)}")
        spec = result.part(which, contribution)
        stem = Path(result.name).stem or "structure"
        instrument = "VISION" if which == "vision" else result.settings.map_instrument()
        tag = "" if contribution in (None, "", "total") else "_" + contribution.replace(":", "_")
        filename = safe_display_name(f"{stem}_{instrument}{tag}.{fmt}")
        workdir = Path(tempfile.mkdtemp(prefix="insnet-serve-"))
        try:
            path = workdir / f"out.{fmt}"
            if fmt == "nxs":
                save_nexus_processed(spec, path, workspace_name=Path(filename).stem)
            elif fmt == "csv":
                save_csv(spec, path)
            else:
                plot_spectrum(spec, path)
            return path.read_bytes(), filename
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    @staticmethod
    def spectrum_json(spec):
        """A spectrum as plain lists for the page's plots (NaN → null).

        1D: ``x`` (centres in the display unit), ``rows`` {label: values},
        ``errors`` {label: errors}; maps: ``x`` (energy centres, meV), ``q``
        (|Q| centres, 1/angstrom), ``z`` (n_q, n_e).
        """
        edges, values, errors, y_label = spec.in_unit()
        centres = 0.5 * (edges[1:] + edges[:-1])
        unit = spec.display_energy_unit
        out = {"x": _clean(centres), "energy_unit": unit, "y_label": y_label}
        if spec.is_map:
            out.update(q=_clean(spec.q_centres), z=_clean(values), zerr=None)
        else:
            out["rows"] = {lab: _clean(v) for lab, v in zip(spec.labels, values)}
            out["errors"] = {lab: _clean(e) for lab, e in zip(spec.labels, errors)}
        return out

    def result_json(self, result):
        """The page's view of a result: summary, VISION with contributions, total map."""
        vision = {"total": self.spectrum_json(result.vision.total),
                  "elements": {k: self.spectrum_json(v)["rows"]
                               for k, v in result.vision.by_element.items()},
                  "orders": {str(k): self.spectrum_json(v)["rows"]
                             for k, v in result.vision.by_order.items()}}
        spectra_map = self.spectrum_json(result.map.total)
        spectra_map["contributions"] = (
            ["total"] + [f"element:{k}" for k in result.map.by_element]
            + [f"order:{k}" for k in result.map.by_order])
        return {"id": result.id, "summary": result.summary, "seconds": round(result.seconds, 3),
                "vision": vision, "map": spectra_map,
                "downloads": {f"{which}_{fmt}": f"/api/results/{result.id}/{which}.{fmt}"
                              for which in ("vision", "map") for fmt in DOWNLOAD_FORMATS}}


def _clean(array, digits=6):
    """Nested lists of floats with ``digits`` significant digits; NaN/inf → None."""
    a = np.asarray(array, dtype=float)
    finite = np.isfinite(a)
    rounded = np.where(finite, a, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.where(rounded != 0, np.floor(np.log10(np.abs(rounded))), 0)
    scale = 10.0 ** (digits - 1 - mag)
    rounded = np.round(rounded * scale) / scale
    obj = rounded.astype(object)
    obj[~finite] = None
    return obj.tolist()
