"""Predictions next to live data: compute once, rebin for every update.

During a live run Mantid hands a post-processing script the accumulated data
every few seconds, with a binning the user may change at any time. Computing
a prediction takes seconds; rebinning one takes milliseconds. So:

* :class:`PredictionCache` keeps fine-grid predictions keyed by everything a
  prediction depends on: the structure (its content hash), the force-constants
  files (a hash of their bytes), the method/model, the instrument settings,
  the temperature and the fine grid.
* :class:`LiveOverlay` holds one prediction request; :meth:`LiveOverlay.overlay_for`
  takes a chunk's binning and returns the cached fine prediction rebinned onto
  it (:meth:`Spectrum.rebin`, flux conserving). It computes only on a cache
  miss: the first call, or a chunk reaching outside the cached energy/|Q| range.

The fine grid covers the instrument's default range (extended to the chunk's
when needed) with steps :data:`FINE_ENERGY_STEP` meV and :data:`FINE_Q_STEP`
1/A, fine enough that rebinning onto typical reduction bins (>= 0.5 meV,
>= 0.05 1/A) changes integrals by nothing and shapes by little.
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from insnet_core import InputError
from insnet_core.defaults import DEFAULT_ORDERS, DEFAULT_TEMPERATURE_K

__all__ = ["files_hash", "PredictionCache", "LiveOverlay", "FINE_ENERGY_STEP", "FINE_Q_STEP",
           "default_cache", "shared_overlay"]

#: Energy step of the cached fine prediction, meV.
FINE_ENERGY_STEP = 0.25
#: |Q| step of the cached fine prediction, 1/angstrom.
FINE_Q_STEP = 0.025
_FC_NAMES = ("POSCAR-unitcell", "phonopy.conf", "FORCE_SETS", "FORCE_CONSTANTS", "BORN",
             "phonopy_params.yaml", "phonopy.yaml", "phonopy_disp.yaml")


def files_hash(source):
    """SHA-256 of the force-constants files behind ``source`` (names and bytes).

    Parameters
    ----------
    source : str or Path
        A phonondb folder or a phonopy yaml file; the known phonopy files of
        its folder are hashed, so editing FORCE_SETS or BORN changes the hash.
    """
    p = Path(source)
    folder = p if p.is_dir() else p.parent
    files = [folder / n for n in _FC_NAMES if (folder / n).is_file()]
    if p.is_file() and p not in files:
        files.append(p)
    if not files:
        raise InputError(f"force constants {source}: no phonopy files found")
    digest = hashlib.sha256(b"insnet-fc-v1")
    for f in sorted(files, key=lambda x: x.name):
        digest.update(f.name.encode())
        digest.update(hashlib.sha256(f.read_bytes()).digest())
    return digest.hexdigest()


class PredictionCache:
    """Least-recently-used store of fine-grid predictions (total spectrum only).

    Parameters
    ----------
    max_entries : int
        Predictions kept; the least recently used one is dropped beyond this.
    """

    def __init__(self, max_entries=4):
        self.max_entries = int(max_entries)
        self._store = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(request, energy_edges, q_edges):
        """Cache key of a checked request computed on the given fine grid."""
        parts = request.cache_key_parts()
        grid = hashlib.sha256(np.asarray(energy_edges, dtype=float).tobytes())
        if q_edges is not None:
            grid.update(np.asarray(q_edges, dtype=float).tobytes())
        return tuple(sorted(parts.items())) + (("grid", grid.hexdigest()),)

    def get(self, key):
        with self._lock:
            spec = self._store.get(key)
            if spec is None:
                self.misses += 1
                return None
            self._store.move_to_end(key)
            self.hits += 1
            return spec

    def put(self, key, spectrum):
        with self._lock:
            self._store[key] = spectrum
            self._store.move_to_end(key)
            while len(self._store) > self.max_entries:
                self._store.popitem(last=False)

    def clear(self):
        with self._lock:
            self._store.clear()
            self.hits = self.misses = 0

    def __len__(self):
        return len(self._store)


#: The cache shared by every LiveOverlay that is not given its own (it survives
#: between live-data updates because the module stays imported).
default_cache = PredictionCache()


def _grid(lo, hi, step):
    """Edges from floor(lo/step)*step to ceil(hi/step)*step."""
    first = int(np.floor(lo / step + 1e-9))
    last = int(np.ceil(hi / step - 1e-9))
    return np.round(np.arange(first, last + 1) * step, 10)


class _Rebinner:
    """Flux-conserving rebin from fixed old edges to fixed new edges, operators kept sparse.

    Gives the same numbers as :meth:`Spectrum.rebin` (same overlap matrices,
    same NaN and error rules) but builds the overlap matrices once, so each
    further update costs a few sparse products.
    """

    def __init__(self, old_e, new_e, old_q=None, new_q=None):
        from scipy import sparse
        from insnet_core.spectrum import rebin_1d_matrix

        def ops(old, new):
            m = rebin_1d_matrix(np.asarray(old, float), np.asarray(new, float))
            return (sparse.csr_matrix(m.T), sparse.csr_matrix((m ** 2).T),
                    sparse.csr_matrix((m > 0).astype(float).T))
        self.e_ops = ops(old_e, new_e)
        self.q_ops = None if new_q is None else ops(old_q, new_q)

    @staticmethod
    def _axis(values, errors, operators):
        """Rebin along the first axis of (n_old, k) arrays."""
        m, m2, touched = operators
        nan = np.isnan(values)
        clean_v = np.where(nan, 0.0, values)
        clean_e = np.where(nan, 0.0, errors)
        new_v = np.asarray(m @ clean_v)
        new_e = np.sqrt(np.asarray(m2 @ (clean_e ** 2)))
        if nan.any():
            hit = np.asarray(touched @ nan.astype(float)) > 0
            new_v[hit] = np.nan
            new_e[hit] = np.nan
        return new_v, new_e

    def apply(self, values, errors):
        v, e = self._axis(values.T, errors.T, self.e_ops)  # energy: (n_e, n_rows)
        v, e = v.T, e.T
        if self.q_ops is not None:
            v, e = self._axis(v, e, self.q_ops)
        return v, e


class LiveOverlay:
    """A prediction that follows the binning of live data.

    Parameters
    ----------
    structure_file, method, force_constants, model, instrument, temperature,
    ei, chopper_package, chopper_frequency, orders, map_route :
        As for :func:`insnet_core.predict.predict` (checked at once).
    fine_energy_step, fine_q_step : float
        Steps of the cached fine grid (meV, 1/A).
    cache : PredictionCache, optional
        Defaults to the module's :data:`default_cache`.
    """

    def __init__(self, structure_file, method="Physics", force_constants=None, model=None,
                 instrument="SEQUOIA", temperature=DEFAULT_TEMPERATURE_K, ei=None,
                 chopper_package=None, chopper_frequency=None, orders=DEFAULT_ORDERS,
                 fine_energy_step=FINE_ENERGY_STEP,
                 fine_q_step=FINE_Q_STEP, cache=None, map_route=None):
        from insnet_core.predict import plan
        self._args = dict(structure_file=structure_file, method=method,
                          force_constants=force_constants, model=model, instrument=instrument,
                          temperature=temperature, ei=ei, chopper_package=chopper_package,
                          chopper_frequency=chopper_frequency, orders=orders,
                          map_route=map_route)
        self._request = plan(**self._args)  # raises InputError at once on bad settings
        self.fine_energy_step = float(fine_energy_step)
        self.fine_q_step = float(fine_q_step)
        self.cache = default_cache if cache is None else cache
        self._current = None  # (key, energy range, q range)
        self._rebinners = OrderedDict()  # (fine key, chunk edges digest) -> _Rebinner
        self.last_was_hit = None

    @property
    def instrument(self):
        return self._request.settings.instrument

    def _fine_grid(self, energy_edges, q_edges):
        inst = self.instrument
        de = inst.default_energy_edges()
        lo = min(de[0], energy_edges[0])
        hi = max(de[-1], energy_edges[-1])
        e_fine = _grid(lo, hi, self.fine_energy_step)
        top = getattr(inst, "ei", None)
        if top is not None:
            e_fine = e_fine[e_fine < top]
            if e_fine[-1] < energy_edges[-1]:
                raise InputError(f"chunk energy bins reach {energy_edges[-1]:g} meV, at or "
                                 f"beyond the incident energy {top:g} meV")
        if not inst.is_map:
            if e_fine[0] <= -getattr(inst, "final_energy", np.inf):
                e_fine = e_fine[e_fine > -inst.final_energy]
            return e_fine, None
        dq = inst.default_q_edges()
        q_hi = max(dq[-1], q_edges[-1]) if q_edges is not None else dq[-1]
        return e_fine, _grid(0.0, q_hi, self.fine_q_step)

    def _covers(self, energy_edges, q_edges):
        if self._current is None:
            return False
        _, (e_lo, e_hi), q_range = self._current
        if energy_edges[0] < e_lo - 1e-12 or energy_edges[-1] > e_hi + 1e-12:
            return False
        if q_edges is not None and q_range is not None and q_edges[-1] > q_range[1] + 1e-12:
            return False
        return True

    def fine_prediction(self, energy_edges, q_edges=None):
        """The cached fine-grid total spectrum covering these edges (computed on a miss)."""
        from insnet_core.predict import run_request
        from insnet_core.simulate import Settings

        if self._covers(energy_edges, q_edges):
            spec = self.cache.get(self._current[0])
            if spec is not None:
                self.last_was_hit = True
                return spec
        e_fine, q_fine = self._fine_grid(energy_edges, q_edges)
        key = PredictionCache.key(self._request, e_fine, q_fine)
        spec = self.cache.get(key)
        self.last_was_hit = spec is not None
        if spec is None:
            s = self._request.settings
            self._request.settings = Settings.check(s.instrument, s.temperature, s.orders,
                                                    e_fine, q_fine, s.include_elastic)
            spec = run_request(self._request).total
            self.cache.put(key, spec)
        q_range = None if q_fine is None else (q_fine[0], q_fine[-1])
        self._current = (key, (e_fine[0], e_fine[-1]), q_range)
        return spec

    def overlay_for(self, chunk_binning):
        """The prediction on a chunk's bins.

        Parameters
        ----------
        chunk_binning : tuple
            ``(energy_edges_meV, q_edges_or_None, display_energy_unit)``, as
            returned by :func:`insnet_core.mantid_adapter.binning_from_workspace`
            or :func:`insnet_core.io.nexus.read_binning`.

        Returns
        -------
        Spectrum
            Exactly the chunk's edges. For a 1D chunk and a map instrument the
            map is summed over |Q| (average over the cached |Q| range).
        """
        from insnet_core.spectrum import check_edges
        energy_edges, q_edges, unit = chunk_binning
        energy_edges = check_edges(energy_edges, "chunk energy bin edges")
        if q_edges is not None:
            q_edges = check_edges(q_edges, "chunk |Q| bin edges")
            if not self.instrument.is_map:
                raise InputError(f"{self.instrument.name} gives 1D spectra; the chunk is a "
                                 "|Q|-E map")
        fine = self.fine_prediction(energy_edges, q_edges)
        collapse = fine.is_map and q_edges is None
        target_q = (np.array([fine.q_edges[0], fine.q_edges[-1]]) if collapse
                    else q_edges if fine.is_map else None)
        digest = hashlib.sha256(energy_edges.tobytes())
        if target_q is not None:
            digest.update(b"q" + np.asarray(target_q, float).tobytes())
        rkey = (self._current[0], digest.hexdigest())
        rebinner = self._rebinners.get(rkey)
        if rebinner is None:
            rebinner = _Rebinner(fine.energy_edges, energy_edges, fine.q_edges, target_q)
            self._rebinners[rkey] = rebinner
            while len(self._rebinners) > 4:
                self._rebinners.popitem(last=False)
        values, errors = rebinner.apply(fine.values, fine.errors)
        if collapse:
            return fine.replace(energy_edges=energy_edges, values=values, errors=errors,
                                q_edges=None, labels=["|Q|-averaged"],
                                display_energy_unit=unit or fine.display_energy_unit)
        return fine.replace(energy_edges=energy_edges, values=values, errors=errors,
                            q_edges=target_q, display_energy_unit=unit or
                            fine.display_energy_unit)


_OVERLAYS = OrderedDict()


def _stamp(path):
    if path in (None, ""):
        return None
    p = Path(path)
    if not p.exists():
        return (str(p), None)
    files = [p] if p.is_file() else sorted(x for x in p.iterdir() if x.is_file())
    if p.is_file() and p.parent.is_dir():
        files += sorted(p.parent / n for n in _FC_NAMES if (p.parent / n).is_file())
    return tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files)


def shared_overlay(**settings):
    """A :class:`LiveOverlay` for these settings, reused between calls (live updates).

    A live post-processing script runs again for every update; this keeps one
    overlay per distinct settings (and file modification times) so that only
    the first update pays for checking inputs and computing.
    """
    key = (repr(sorted(settings.items())), _stamp(settings.get("structure_file")),
           _stamp(settings.get("force_constants")))
    overlay = _OVERLAYS.get(key)
    if overlay is None:
        overlay = LiveOverlay(**settings)
        _OVERLAYS[key] = overlay
        while len(_OVERLAYS) > 4:
            _OVERLAYS.popitem(last=False)
    return overlay
