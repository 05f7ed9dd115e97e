"""Prediction with a trained model folder: structure -> spectra with errors.

:class:`Predictor` loads a model folder once (all ensemble members) and

* checks a structure against what the model knows: an element absent from
  training or a cell above the atom limit is an :class:`InputError`; a cell
  whose neighbour density or shortest distance lies outside the training
  range gives warnings (stored by callers in the output's logs);
* predicts head (a), the max-normalised VISION spectrum, and head (b), the
  per-element principal-axis DOS, for every member;
* turns them into a :class:`~insnet_core.simulate.SimulationResult` on any
  instrument through the engine (partials route), with the ensemble's
  per-bin standard deviation as the spectrum errors. For VISION the card's
  ``default_vision_route`` may choose head (a) instead: its shape, put on the
  absolute scale of the partials route's VISION spectrum; or ``neighbours``: head (a)
  blended with the spectra of the nearest database crystals
  (:mod:`insnet_core.nn.neighbours`, for a model folder that has them).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from insnet_core import InputError
from insnet_core.allocator import tune_allocator
from insnet_core.defaults import VISION_ROUTES
from insnet_core.nn.card import load_ensemble, unseen_elements
from insnet_core.nn.data import graph_batch
from insnet_core.nn.graph import graph_of_structure
from insnet_core.nn.partials import ingredients_from_partials

__all__ = ["Predictor", "VISION_ROUTES"]

#: Largest cell a model accepts by default (atoms).
MAX_ATOMS = 1000
#: Single-structure network outputs remembered (one VISION and one map request on
#: the same crystal, as the server and the live overlay make, run the network once).
RAW_CACHE_SIZE = 8


class Predictor:
    """A loaded model folder.

    Parameters
    ----------
    folder : path
        ``models/<name>``.
    threads : int, optional
        torch intra-op threads for this process (left alone when None).
    """

    def __init__(self, folder, threads=None):
        tune_allocator()   # the edge loop's blocks stay in the process (allocator.py)
        self.folder = Path(folder)
        #: every member in one module, outputs members first (nn.card.load_ensemble)
        self.network, self.card = load_ensemble(self.folder)
        self.config = self.network.config
        self.n_members = self.network.n_members
        self.elements = list(self.card["elements"])
        self.ranges = self.card.get("training_ranges", {})
        self.name = self.card.get("name", self.folder.name)
        #: Multiplies the ensemble's standard deviation so that it covers the truth as a
        #: 1-sigma band should (fitted on the validation split by ``insnet evaluate``)
        #: and an error floor, a fraction of the spectrum's maximum, for what all members
        #: miss together (see evaluate.calibrated_sigma)
        cal = self.card.get("sigma_scale")
        cal = cal if isinstance(cal, dict) else {}
        scale, floor = float(cal.get("value", 1.0)), float(cal.get("floor", 0.0))
        self.sigma_scale = scale if np.isfinite(scale) and scale > 0 else 1.0
        self.sigma_floor = floor if np.isfinite(floor) and floor > 0 else 0.0
        #: the database crystals' features and spectra (the 'neighbours' VISION route)
        self.neighbours, self.neighbour_sigma, self.far_distance = None, (1.0, 0.0), None
        info = self.card.get("neighbours")
        if isinstance(info, dict) and "vision" in self.config.heads:
            from insnet_core.nn.neighbours import NeighbourSet
            self.neighbours = NeighbourSet.load(self.folder, info.get("params"))
            cal = info.get("sigma_scale") or {}
            self.neighbour_sigma = (float(cal.get("value", 1.0)), float(cal.get("floor", 0.0)))
            far = (info.get("validation_distance_quantiles") or {}).get("q99")
            self.far_distance = float(far) if far else None
        if threads:
            torch.set_num_threads(int(threads))
        self._raw_cache = OrderedDict()
        self._raw_lock = threading.Lock()

    # ------------------------------------------------------------ checks
    def check(self, structure, max_atoms=MAX_ATOMS):
        """Raise InputError for what the model cannot know; return warnings (list of str)."""
        src = structure.source or "structure"
        problem = unseen_elements(structure, self.card, self.name)
        if problem:
            raise InputError(problem)
        if max_atoms and structure.n_atoms > max_atoms:
            raise InputError(f"{src}: {structure.n_atoms} atoms in the cell, above model "
                             f"{self.name!r}'s limit of {max_atoms}")
        graph = graph_of_structure(structure, self.config.cutoff)
        return graph, self._warnings(structure, graph)

    def _warnings(self, structure, graph):
        out = []
        src = structure.source or "structure"
        dens = graph.n_edges / max(graph.n_atoms, 1)
        lo, hi = self.ranges.get("neighbours_per_atom", (0, np.inf))
        if not lo <= dens <= hi:
            out.append(f"{src}: {dens:.1f} neighbours per atom within {self.config.cutoff:g} A, "
                       f"outside the training range {lo:.0f}-{hi:.0f}: the prediction is an "
                       "extrapolation")
        dmin = graph.min_distance()
        lo, hi = self.ranges.get("min_distance_A", (0, np.inf))
        if not lo <= dmin <= hi:
            out.append(f"{src}: shortest interatomic distance {dmin:.2f} A, outside the "
                       f"training range {lo:.2f}-{hi:.2f} A: the prediction is an extrapolation")
        if graph.n_edges == 0:
            out.append(f"{src}: no neighbours within {self.config.cutoff:g} A")
        return out

    def _far_warning(self, structure, features):
        """A warning when the network places the structure farther from every crystal of
        the neighbour set than 99 % of the validation crystals are from their nearest
        other crystal (None otherwise)."""
        if self.far_distance is None:
            return None
        idx, dist = self.neighbours.nearest(features[None, :], 1)
        d = float(dist[0, 0])
        if d <= self.far_distance:
            return None
        src = structure.source or "structure"
        return (f"{src}: far from every database crystal in the network's feature space "
                f"(distance {d:.2f} to the nearest, {self.neighbours.ids[int(idx[0, 0])]}; 99 % "
                f"of the validation crystals are within {self.far_distance:.2f} of another): "
                "the prediction is an extrapolation")

    # ------------------------------------------------------------ raw outputs
    def raw(self, structures, max_atoms=MAX_ATOMS, cache=True, features=False):
        """Head outputs of every member for a list of structures.

        A single structure's outputs are remembered (``RAW_CACHE_SIZE`` of them) unless
        ``cache`` is False (benchmarks time the network, not the cache).

        Returns
        -------
        list of dict
            Per structure: ``vision`` (n_members, 119) or None, ``dos``
            (n_members, n_el, 3, bins) or None, ``elements`` (list), ``warnings``;
            with ``features``, also ``features``: member 0's pooled backbone features
            (the map route's input, :func:`insnet_core.nn.model.pooled_features`).
        """
        if len(structures) == 1 and cache:
            key = (structures[0].hash(), str(structures[0].source), max_atoms, features)
            with self._raw_lock:
                if key in self._raw_cache:
                    self._raw_cache.move_to_end(key)
                    return [_copy_entry(self._raw_cache[key])]
            result = self._raw(structures, max_atoms, features)
            with self._raw_lock:
                self._raw_cache[key] = _copy_entry(result[0])
                while len(self._raw_cache) > RAW_CACHE_SIZE:
                    self._raw_cache.popitem(last=False)
            return result
        return self._raw(structures, max_atoms, features)

    def _raw(self, structures, max_atoms, features=False):
        checked = [self.check(s, max_atoms) for s in structures]
        batch = graph_batch([g for g, _ in checked])
        with torch.no_grad():
            out = {k: v.numpy() for k, v in self.network(
                batch, features=features or self.neighbours is not None).items()}
        node_graph = batch["node_graph"].numpy()
        results = []
        for b, (s, (graph, warnings)) in enumerate(zip(structures, checked)):
            elements = sorted(set(s.species), key=s.species.index)
            entry = {"elements": elements, "warnings": warnings, "vision": None, "dos": None}
            if features:
                entry["features"] = out["features"][0, b].astype(float)
            if self.neighbours is not None:
                entry["neighbour_features"] = out["features"][:, b].mean(axis=0).astype(float)
                far = self._far_warning(s, entry["neighbour_features"])
                if far:
                    entry["warnings"] = list(warnings) + [far]
            if "vision" in self.config.heads:
                entry["vision"] = out["vision"][:, b].astype(float)
            if "dos" in self.config.heads:
                d = out["dos"][:, node_graph == b]            # (members, atoms, 3, bins)
                species = np.array(s.species)
                entry["dos"] = np.stack([d[:, species == e].mean(axis=1) for e in elements],
                                        axis=1).astype(float)
            results.append(entry)
        return results

    # ------------------------------------------------------------ spectra
    def ingredients(self, structure, raw_entry, member):
        """Engine ingredients of one member's DOS prediction."""
        return ingredients_from_partials(structure.species, raw_entry["elements"],
                                         raw_entry["dos"][member], self.config.dos_width,
                                         fine=0.1)

    def simulate(self, structure, settings, raw_entry=None, vision_route=None):
        """SimulationResult of one structure: ensemble mean, std as errors.

        Parameters
        ----------
        structure : insnet_core.structure.Structure
        settings : insnet_core.simulate.Settings
        raw_entry : dict, optional
            From :meth:`raw` (computed when None).
        vision_route : {'partials', 'head'}, optional
            VISION only; default from the card.
        """
        from insnet_core.simulate import SimulationResult, simulate_ingredients

        entry = raw_entry or self.raw([structure])[0]
        if entry["dos"] is None:
            raise InputError(f"model {self.name!r} has no DOS head; it predicts the VISION "
                             "spectrum on its own grid only (use a model with the DOS head)")
        runs = [simulate_ingredients(self.ingredients(structure, entry, k), settings)
                for k in range(self.n_members)]

        def combine(spectra):
            vals = np.stack([s.values for s in spectra])
            mean = vals.mean(axis=0)
            err = (self._sigma(vals.std(axis=0, ddof=1), mean) if len(spectra) > 1
                   else np.zeros_like(vals[0]))
            return replace(spectra[0], values=mean, errors=err,
                           metadata=dict(spectra[0].metadata))

        total = combine([r.total for r in runs])
        by_element = {k: combine([r.by_element[k] for r in runs]) for k in runs[0].by_element}
        by_order = {k: combine(spectra) for k, spectra in _orders_of_all(runs).items()}
        route = vision_route or self.card.get("default_vision_route", "partials")
        if route not in VISION_ROUTES:
            raise InputError(f"VISION route must be one of {VISION_ROUTES}, got {route!r}")
        if route == "neighbours" and self.neighbours is None:
            raise InputError(f"model {self.name!r} has no nearest-crystal data ({self.folder} "
                             "has no neighbours.npz); VISION route 'head' or 'partials'")
        used, note = "partials", None
        if (route in ("head", "neighbours") and settings.instrument.name == "VISION"
                and entry["vision"] is not None):
            total, note = self._head_vision(entry, total, route == "neighbours")
            used = route
        meta = {"prediction_method": "ML", "model": self.name,
                "model_members": self.n_members, "vision_route": used,
                "errors": self._errors_note() if self.n_members > 1
                else "none (single model)"}
        if note:
            meta["nearest_database_crystal"] = note
        if entry["warnings"]:
            meta["warnings"] = " | ".join(entry["warnings"])
        for spec in [total] + list(by_element.values()) + list(by_order.values()):
            spec.metadata.update(meta)
        return SimulationResult(total=total, by_element=by_element, by_order=by_order,
                                stability={"has_imaginary": False, "min_energy_meV": 0.0,
                                           "imaginary_fraction": 0.0})

    def _sigma(self, std, mean):
        """Calibrated errors of an ensemble spread (any leading shape, bins last)."""
        from insnet_core.nn.evaluate import calibrated_sigma
        return calibrated_sigma(std, mean, self.sigma_scale, self.sigma_floor)

    def _errors_note(self):
        if self.sigma_scale == 1.0 and self.sigma_floor == 0.0:
            return "ensemble standard deviation per bin"
        note = f"ensemble standard deviation per bin x {self.sigma_scale:.3g}"
        if self.sigma_floor:
            note += (f", in quadrature with {self.sigma_floor:.3g} x the spectrum maximum "
                     "(the error the members share)")
        return note + " (calibrated on the validation split)"

    def _head_vision(self, entry, partial_total, neighbours=False):
        """Head (a)'s VISION shape on the partials route's bins and absolute scale.

        The head predicts the bank average on its own grid (10-1200 cm^-1,
        10 cm^-1); it is rebinned (flux conserving) to the requested bins and
        scaled to the partials route's integral. Each bank row is the head's
        average times the partials route's bank / average ratio per bin. With
        ``neighbours`` the shape is first blended with the nearest training
        crystals' spectra (errors: the members' spread times the head's share,
        calibrated for that route). Returns (spectrum, note on the neighbours or None).
        """
        from insnet_core.nn.evaluate import calibrated_sigma
        from insnet_core.spectrum import Spectrum
        from insnet_core.units import MEV_PER_CM1

        head_edges = (10.0 + 10.0 * np.arange(self.config.n_vision + 1)) * MEV_PER_CM1
        shape = entry["vision"].mean(axis=0)
        spread = (entry["vision"].std(axis=0, ddof=1) if entry["vision"].shape[0] > 1
                  else np.zeros_like(shape))
        note = None
        if neighbours:
            out, weight, idx, dist = self.neighbours.blend(
                shape[None, :], entry["neighbour_features"][None, :])
            shape = out[0]
            err = calibrated_sigma(spread * (1.0 - weight[0]), shape, *self.neighbour_sigma)
            note = self.neighbours.describe(idx[0], dist[0], weight[0])
        else:
            err = self._sigma(spread, shape) if entry["vision"].shape[0] > 1 else spread
        head = Spectrum(energy_edges=head_edges, values=shape, errors=err)
        head = head.rebin(energy_edges=partial_total.energy_edges)
        rows = list(partial_total.labels or [])
        avg_row = rows.index("average") if "average" in rows else partial_total.values.shape[0] - 1
        ref = partial_total.values[avg_row]
        total_head = np.nansum(head.values[0])
        scale = np.nansum(ref) / total_head if total_head > 0 else 0.0
        avg = head.values[0] * scale
        avg_err = head.errors[0] * scale
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(ref[None, :] > 0, partial_total.values / ref[None, :], 0.0)
        return replace(partial_total, values=avg[None, :] * ratio,
                       errors=avg_err[None, :] * ratio,
                       metadata=dict(partial_total.metadata)), note


def _orders_of_all(runs):
    """Each phonon order's spectrum from every member's run, order -> list.

    With automatic orders each member keeps the orders that matter for its own spectrum,
    so one member may stop at order 4 and another at 5; an order a member left out (it
    carried under the threshold of its intensity) counts as zero there, NaN where the
    bins are unmeasurable.
    """
    out = {}
    for k in sorted(set().union(*(r.by_order for r in runs))):
        like = next(r.by_order[k] for r in runs if k in r.by_order)
        empty = replace(like, values=np.where(np.isnan(like.values), np.nan, 0.0),
                        errors=np.where(np.isnan(like.values), np.nan, 0.0))
        out[k] = [r.by_order.get(k, empty) for r in runs]
    return out


def _copy_entry(entry):
    """An independent copy of one :meth:`Predictor.raw` entry."""
    return {k: (v.copy() if isinstance(v, np.ndarray) else list(v) if isinstance(v, list) else v)
            for k, v in entry.items()}
