"""The physics route end to end: force constants -> instrument spectrum.

:func:`simulate` loads phonopy data, samples modes on the reference mesh,
builds the incoherent ingredients and turns them into the spectrum an
instrument measures (:func:`simulate_ingredients`). Every setting is checked
before any expensive work, so a bad setting fails at once.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from insnet_core import InputError, __version__
from insnet_core.defaults import (AUTO_ORDERS, AUTO_ORDER_THRESHOLD, DEFAULT_ORDERS,
                                  DEFAULT_TEMPERATURE_K, MAX_ORDER, check_orders_setting)
from insnet_core.incoherent import (build_ingredients, check_temperature,
                                    compute_map, compute_trajectory, DEFAULT_BIN_WIDTH)
from insnet_core.instruments import get_instrument
from insnet_core.spectrum import Spectrum, check_edges

__all__ = ["SimulationResult", "simulate", "simulate_ingredients", "Settings", "Y_LABEL",
           "choose_orders"]

log = logging.getLogger(__name__)

#: What the values of a simulated spectrum are.
Y_LABEL = "S(Q,E) (barn/sr/meV per cell)"


@dataclass
class Settings:
    """Checked simulation settings (all validation happens in :meth:`check`)."""

    instrument: object
    temperature: float = DEFAULT_TEMPERATURE_K
    orders: object = DEFAULT_ORDERS    # int 1..MAX_ORDER or 'auto'
    energy_edges: np.ndarray | None = None
    q_edges: np.ndarray | None = None
    include_elastic: bool = False

    @classmethod
    def check(cls, instrument="VISION", temperature=DEFAULT_TEMPERATURE_K, orders=DEFAULT_ORDERS,
              energy_edges=None, q_edges=None, include_elastic=False, **instrument_settings):
        """Validate everything a simulation needs; raise InputError on the first problem.

        ``orders`` is an int 1..MAX_ORDER or ``'auto'`` (see :func:`choose_orders`).
        Engine-level: the temperature default stays 0 K because the database build
        relies on it; the user-facing entry points (:func:`simulate`, ``predict``,
        the CLI and the algorithms) default to
        :data:`insnet_core.defaults.DEFAULT_TEMPERATURE_K`.
        """
        if isinstance(instrument, str):
            instrument = get_instrument(instrument, **instrument_settings)
        elif instrument_settings:
            raise InputError("instrument settings given together with an Instrument object")
        temperature = check_temperature(temperature)
        orders = check_orders_setting(orders)
        if energy_edges is None:
            energy_edges = instrument.default_energy_edges()
        energy_edges = check_edges(energy_edges, "energy bin edges")
        if instrument.is_map:
            if q_edges is None:
                q_edges = instrument.default_q_edges()
            q_edges = check_edges(q_edges, "|Q| bin edges")
            if q_edges[0] < 0:
                raise InputError(f"|Q| bin edges must be >= 0, got {q_edges[0]:g}")
        elif q_edges is not None:
            raise InputError(f"{instrument.name} gives 1D spectra along fixed trajectories; "
                             "|Q| bins apply to map instruments (SEQUOIA, Ideal2D) only")
        instrument.validate(energy_edges, q_edges)
        return cls(instrument=instrument, temperature=temperature, orders=orders,
                   energy_edges=energy_edges, q_edges=q_edges,
                   include_elastic=bool(include_elastic))


@dataclass
class SimulationResult:
    """A simulated spectrum with its partial contributions.

    Attributes
    ----------
    total : Spectrum
    by_element : dict of str -> Spectrum
        Contribution of each element (all orders).
    by_order : dict of int -> Spectrum
        Contribution of each phonon order (all elements); 0 is the elastic
        line when included, 1 the fundamentals, >= 2 overtones and combinations.
    stability : dict
        ``has_imaginary``, ``min_energy_meV``, ``imaginary_fraction``.
    """

    total: Spectrum
    by_element: dict = field(default_factory=dict)
    by_order: dict = field(default_factory=dict)
    stability: dict = field(default_factory=dict)


def _assemble(parts, ingredients, make):
    """Sum engine parts ``{(element, order): array}`` into total, per element, per order."""
    elements = list(dict.fromkeys(ingredients.elements))
    orders = sorted({n for _, n in parts})
    total = sum(parts.values())
    by_el = {el: sum(v for (e, _), v in parts.items() if e == el) for el in elements}
    by_order = {n: sum(v for (_, m), v in parts.items() if m == n) for n in orders}
    return (make(total, "total"),
            {el: make(v, f"element {el}") for el, v in by_el.items()},
            {n: make(v, f"order {n}") for n, v in by_order.items()})


def simulate_ingredients(ingredients, settings, metadata=None):
    """Spectrum of an instrument from incoherent ingredients.

    Parameters
    ----------
    ingredients : insnet_core.incoherent.IncoherentIngredients
    settings : Settings
    metadata : dict, optional
        Extra provenance merged into every output spectrum's metadata.

    Returns
    -------
    SimulationResult
    """
    inst = settings.instrument
    auto = settings.orders == AUTO_ORDERS
    debye_waller = ("anisotropic for the fundamentals, isotropic for overtones"
                    if ingredients.anisotropic else "isotropic")
    meta = {"method": f"physics: incoherent approximation, powder averaged, Debye-Waller "
                      f"factor {debye_waller}",
            "engine": f"insnet {__version__}", "temperature_K": settings.temperature,
            "phonon_orders": settings.orders, "include_elastic": settings.include_elastic}
    if auto:
        meta["phonon_orders_rule"] = (f"auto: orders 1..n, order n+1 < {AUTO_ORDER_THRESHOLD:g} "
                                      f"of the intensity in the output window (n <= {MAX_ORDER})")
    described = dict(inst.describe())
    meta["instrument"] = described.pop("name", inst.name)
    meta.update(described)
    meta.update(metadata or {})
    edges = settings.energy_edges
    common = dict(temperature=settings.temperature,
                  orders=MAX_ORDER if auto else settings.orders,
                  include_elastic=settings.include_elastic)
    if inst.is_map:
        parts = compute_map(ingredients, settings.q_edges, edges, inst.resolution_fwhm,
                            by="element", **common)
        qc = 0.5 * (settings.q_edges[1:] + settings.q_edges[:-1])
        ec = 0.5 * (edges[1:] + edges[:-1])
        mask = ~np.asarray(inst.measurable(qc[:, None], ec[None, :]), dtype=bool)
        mask = np.broadcast_to(mask, (qc.size, ec.size))
        if auto:
            area = np.diff(settings.q_edges)[:, None] * np.diff(edges)[None, :]
            parts, meta["phonon_orders"] = choose_orders(parts, np.where(mask, 0.0, area))

        def make(values, what):
            values = np.where(mask, np.nan, values)
            errors = np.where(mask, np.nan, 0.0)  # unmeasurable bins: NaN, as Mantid's SofQW
            return Spectrum(energy_edges=edges, values=values, errors=errors,
                            q_edges=settings.q_edges,
                            y_label=Y_LABEL, display_energy_unit=inst.display_energy_unit,
                            metadata={**meta, "contribution": what})
    else:
        per_bank, orders_cache = [], {}   # the banks share the phonon orders
        for bank in inst.banks:
            per_bank.append(compute_trajectory(
                ingredients, lambda e, b=bank: inst.q_of_energy(e, b), edges,
                lambda e, b=bank: inst.bank_resolution_fwhm(e, b), by="element",
                orders_cache=orders_cache, **common))
        parts = {key: np.vstack([pb[key] for pb in per_bank]
                                + [np.mean([pb[key] for pb in per_bank], axis=0)])
                 for key in per_bank[0]}
        if auto:
            weights = np.broadcast_to(np.diff(edges), (len(inst.banks) + 1, edges.size - 1))
            parts, meta["phonon_orders"] = choose_orders(parts, weights)
        labels = [b.name for b in inst.banks] + ["average"]

        def make(values, what):
            return Spectrum(energy_edges=edges, values=values, labels=labels, y_label=Y_LABEL,
                            display_energy_unit=inst.display_energy_unit,
                            metadata={**meta, "contribution": what})
    total, by_el, by_order = _assemble(parts, ingredients, make)
    return SimulationResult(total=total, by_element=by_el, by_order=by_order)


def choose_orders(parts, weights, threshold=AUTO_ORDER_THRESHOLD):
    """Keep the phonon orders that matter in the output window.

    With I_k the intensity of order k in the window (``sum(values * weights)``
    over all elements, k = 1..K computed), the highest order kept is the
    smallest n with I_{n+1} < ``threshold`` * (I_1 + ... + I_K), or K when no
    order is that small. Order 0 (the elastic line) is always kept.

    Parameters
    ----------
    parts : dict
        ``{(key, order): ndarray}`` as returned by the engine.
    weights : ndarray
        Bin sizes (meV, or meV/angstrom for maps; 0 for unmeasurable bins),
        broadcastable to the parts' shape.
    threshold : float
        Fraction of the intensity, 1e-3 by default.

    Returns
    -------
    kept : dict
        ``parts`` without the orders above n.
    n : int
        The highest order kept.
    """
    orders = sorted({n for _, n in parts if n >= 1})
    intensity = {n: 0.0 for n in orders}
    for (_, n), values in parts.items():
        if n >= 1:
            intensity[n] += float(np.nansum(values * weights))
    total = sum(intensity.values())
    highest = orders[-1] if orders else 0
    if total > 0:
        for n in orders[:-1]:
            if intensity[n + 1] < threshold * total:
                highest = n
                break
    log.info("phonon orders: kept 1..%d of %d (%s)", highest, orders[-1] if orders else 0,
             ", ".join(f"order {n}: {intensity[n] / total:.2e}" for n in orders)
             if total > 0 else "no intensity in the window")
    return {k: v for k, v in parts.items() if k[1] <= highest}, highest


def simulate(source, instrument="VISION", temperature=DEFAULT_TEMPERATURE_K,
             orders=DEFAULT_ORDERS, energy_edges=None, q_edges=None, include_elastic=False,
             mesh=None, mesh_spacing=None, grouping="site", bin_width=DEFAULT_BIN_WIDTH,
             isotropic=False, progress=None, **instrument_settings):
    """Simulate the INS spectrum of a crystal from its force constants.

    Parameters
    ----------
    source : str or Path
        phonopy data (see :func:`insnet_core.phonons.load_phonopy`).
    instrument : str or Instrument
        'VISION', 'SEQUOIA' or 'Ideal2D' (case-insensitive), or an instance.
    temperature : float
        Sample temperature, K (Bose factor and Debye-Waller factor); default
        :data:`insnet_core.defaults.DEFAULT_TEMPERATURE_K` (5 K).
    orders : int or 'auto'
        Highest phonon order, 1..10, or 'auto' (default): computed to 10 and
        cut where the next order carries < 0.1 % of the intensity in the
        output window (:func:`choose_orders`); the order kept is in the
        metadata as ``phonon_orders``.
    energy_edges, q_edges : array_like, optional
        Output bin edges (meV, 1/angstrom); the instrument's defaults otherwise.
    include_elastic : bool
        Include the elastic line (order 0).
    mesh : tuple of 3 int, optional
        Explicit Gamma-centred mesh.
    mesh_spacing : float, optional
        Maximum Gamma-centred mesh spacing in 1/angstrom, used alone (0.1 gives
        the reference work's mesh). Default (neither given): the converged rule
        of :func:`insnet_core.phonons.default_mesh`.
    grouping : {'site', 'element'}
        See :func:`insnet_core.incoherent.build_ingredients`.
    bin_width : float
        Internal energy grid, meV.
    isotropic : bool
        Use the isotropic Debye-Waller factor for the fundamentals too (as the
        engine did before; for comparisons). By default the fundamentals use
        each site's full Debye-Waller tensor, averaged exactly over Q directions.
    progress : callable, optional
        ``progress(fraction, message)`` called between steps.
    **instrument_settings
        E.g. ``ei=160.0, chopper_package='Fine', chopper_frequency=600``.

    Returns
    -------
    SimulationResult
        Imaginary modes are left out and reported in ``stability`` and in
        every spectrum's metadata (``unstable``), never used silently.
    """
    from insnet_core.phonons import _check_mesh, _positive, load_phonopy, run_mesh

    report = progress or (lambda fraction, message: None)
    settings = Settings.check(instrument, temperature, orders, energy_edges, q_edges,
                              include_elastic, **instrument_settings)
    if mesh is not None and mesh_spacing is not None:
        raise InputError("give either mesh or mesh_spacing, not both")
    mesh = None if mesh is None else _check_mesh(mesh)
    mesh_spacing = (None if mesh_spacing is None
                    else _positive(mesh_spacing, "mesh spacing (1/angstrom)"))
    report(0.05, "loading force constants")
    phonon = load_phonopy(source)
    report(0.3, "phonon modes on the mesh")
    modes = run_mesh(phonon, mesh=mesh, spacing=mesh_spacing)
    stability = {"has_imaginary": bool(modes.has_imaginary),
                 "min_energy_meV": modes.min_energy,
                 "imaginary_fraction": modes.imaginary_fraction}
    if modes.has_imaginary:
        log.warning("%s: %s", source, modes.stability_report())
    report(0.6, "incoherent spectrum")
    ingredients = build_ingredients(modes, grouping=grouping, bin_width=bin_width,
                                    isotropic=isotropic, temperature=settings.temperature)
    meta = {"formula": modes.formula, "source": str(source), "mesh": " ".join(map(str, modes.mesh)),
            "unstable": int(modes.has_imaginary), "min_phonon_energy_meV": modes.min_energy,
            "imaginary_mode_fraction": modes.imaginary_fraction,
            "stability": modes.stability_report()}
    result = simulate_ingredients(ingredients, settings, meta)
    result.stability = stability
    report(1.0, "done")
    return result
