"""Ideal2D: an idealised powder-map instrument, the reference work's ideal grid.

No kinematic limits (every (|Q|, E) point is measurable) and a constant
Gaussian energy resolution (1.5 meV FWHM). Default grid: |Q| from 0 to
15 1/A in 0.05 1/A bins and energy transfer from 0 to 150 meV in 0.5 meV
bins, i.e. a 300 x 300 map. Numbers in ``data/ideal2d.json``.
"""
from __future__ import annotations

import numpy as np

from insnet_core.instruments.base import Instrument, load_instrument_data

__all__ = ["Ideal2D"]


def _grid(spec):
    """Edges start, start + step, ..., stop from a {"start", "stop", "step"} dict."""
    start, stop, step = float(spec["start"]), float(spec["stop"]), float(spec["step"])
    n_bins = int(round((stop - start) / step))
    return np.round(start + step * np.arange(n_bins + 1), 10)


class Ideal2D(Instrument):
    """Ideal powder-map instrument: everything measurable, constant resolution.

    Takes no settings.
    """

    name = "Ideal2D"
    is_map = True
    display_energy_unit = "meV"
    settings = ()

    def __init__(self):
        self._data = load_instrument_data("ideal2d")
        self.fwhm = float(self._data["resolution_fwhm_meV"])

    def default_energy_edges(self):
        """Energy edges 0, 0.5, ..., 150 meV, shape (301,)."""
        return _grid(self._data["energy_grid_meV"])

    def default_q_edges(self):
        """|Q| edges 0, 0.05, ..., 15 1/A, shape (301,)."""
        return _grid(self._data["q_grid_inv_angstrom"])

    def resolution_fwhm(self, energy):
        """Constant FWHM (1.5 meV), same shape as ``energy``."""
        return np.full(np.shape(energy), self.fwhm, dtype=float)

    def measurable(self, q, energy):
        """All True, with the broadcast shape of ``q`` and ``energy``."""
        return np.ones(np.broadcast_shapes(np.shape(q), np.shape(energy)), dtype=bool)

    def describe(self):
        """Settings for output metadata."""
        return {"name": self.name, "geometry": self._data["geometry"],
                "resolution_fwhm_meV": self.fwhm}
