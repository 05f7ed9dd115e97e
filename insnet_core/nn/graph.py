"""Periodic radius graphs of crystals (numpy only; no torch here).

A crystal becomes a graph whose nodes are the atoms of the cell and whose
edges join every atom to every periodic image of every atom within the cut-off
radius (the reference work's 6 angstrom). Neighbour lists come from vesin
(cell lists, O(N)); the edge vector of the pair (i, j, shift S) is
``r_j + S @ lattice - r_i``, in angstrom, and the message flows from j into i.

Graphs are invariant under translation and permutation by construction; a
rotation of the cell rotates the edge vectors, which the equivariant network
handles.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from insnet_core import InputError
from insnet_core.cross_sections import atomic_mass

__all__ = ["CUTOFF", "CrystalGraph", "build_graph", "graph_of_structure", "atomic_number"]

#: Neighbour cut-off radius of the reference work, angstrom.
CUTOFF = 6.0

_SYMBOLS = None


def atomic_number(symbol):
    """Atomic number of an element symbol (``'Fe'`` -> 26)."""
    global _SYMBOLS
    if _SYMBOLS is None:
        import periodictable
        _SYMBOLS = {el.symbol: el.number for el in periodictable.elements if el.number > 0}
    try:
        return _SYMBOLS[str(symbol)]
    except KeyError:
        raise InputError(f"element {symbol!r}: not a chemical element") from None


@dataclass(frozen=True)
class CrystalGraph:
    """One crystal as a periodic radius graph.

    Attributes
    ----------
    numbers : ndarray of int64, shape (n,)
        Atomic number of each node.
    masses : ndarray of float32, shape (n,)
        Atomic mass of each node, in dalton.
    edge_src, edge_dst : ndarray of int64, shape (m,)
        Message from node ``edge_src`` into node ``edge_dst``.
    edge_vec : ndarray of float32, shape (m, 3)
        Vector from the destination atom to the source image, angstrom.
    volume : float
        Cell volume, cubic angstrom.
    """

    numbers: np.ndarray
    masses: np.ndarray
    edge_src: np.ndarray
    edge_dst: np.ndarray
    edge_vec: np.ndarray
    volume: float

    @property
    def n_atoms(self):
        return int(self.numbers.shape[0])

    @property
    def n_edges(self):
        return int(self.edge_src.shape[0])

    def min_distance(self):
        """Shortest edge length in angstrom (inf without edges)."""
        if self.n_edges == 0:
            return float("inf")
        return float(np.sqrt((self.edge_vec.astype(np.float64) ** 2).sum(axis=1)).min())


def build_graph(lattice, species, frac_coords, cutoff=CUTOFF):
    """The periodic radius graph of a cell.

    Parameters
    ----------
    lattice : array_like, shape (3, 3)
        Cell vectors in angstrom, one per row.
    species : sequence of str, length n
        Element symbols.
    frac_coords : array_like, shape (n, 3)
        Fractional coordinates.
    cutoff : float
        Radius in angstrom.

    Returns
    -------
    CrystalGraph
    """
    from vesin import NeighborList

    lattice = np.asarray(lattice, dtype=np.float64).reshape(3, 3)
    frac = np.asarray(frac_coords, dtype=np.float64).reshape(-1, 3)
    frac = frac - np.floor(frac)
    points = frac @ lattice
    nl = NeighborList(cutoff=float(cutoff), full_list=True)
    i, j, vec = nl.compute(points=points, box=lattice, periodic=True, quantities="ijD")
    keep = (vec ** 2).sum(axis=1) > 1e-12  # no self-pair at zero shift
    numbers = np.array([atomic_number(s) for s in species], dtype=np.int64)
    masses = np.array([atomic_mass(s) for s in species], dtype=np.float32)
    return CrystalGraph(numbers=numbers, masses=masses,
                        edge_src=np.asarray(j, dtype=np.int64)[keep],
                        edge_dst=np.asarray(i, dtype=np.int64)[keep],
                        edge_vec=np.asarray(vec, dtype=np.float32)[keep],
                        volume=float(abs(np.linalg.det(lattice))))


def graph_of_structure(structure, cutoff=CUTOFF):
    """:func:`build_graph` of an :class:`insnet_core.structure.Structure`."""
    return build_graph(structure.lattice, structure.species, structure.frac_coords, cutoff)
