"""Periodic radius graphs: neighbour counts against a brute-force image sum."""
import itertools

import numpy as np
import pytest

from insnet_core import InputError
from insnet_core.nn.graph import atomic_number, build_graph


def _brute_force_count(lattice, frac, cutoff):
    """Neighbours within cutoff by summing over enough periodic images (test only)."""
    pts = np.asarray(frac) @ lattice
    n = len(pts)
    reach = int(np.ceil(cutoff / min(np.linalg.norm(lattice, axis=1)))) + 1
    counts = np.zeros(n, dtype=int)
    for shift in itertools.product(range(-reach, reach + 1), repeat=3):
        t = np.array(shift) @ lattice
        d = np.linalg.norm(pts[None, :, :] + t - pts[:, None, :], axis=-1)
        counts += ((d < cutoff) & (d > 1e-9)).sum(axis=1)
    return counts


def test_rocksalt_neighbour_shells_match_image_sum():
    a = 5.64
    lattice = np.array([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]])
    frac = [[0, 0, 0], [0.5, 0.5, 0.5]]
    g = build_graph(lattice, ["Na", "Cl"], frac, cutoff=6.0)
    per_atom = np.bincount(g.edge_dst, minlength=2)
    np.testing.assert_array_equal(per_atom, _brute_force_count(lattice, np.array(frac), 6.0))
    # shells of rock salt within 6 A (a/2=2.82: 6, a/sqrt2=3.99: 12, 4.88: 8, 5.64: 6)
    assert per_atom.tolist() == [32, 32]
    assert g.min_distance() == pytest.approx(a / 2, rel=1e-6)
    d = np.linalg.norm(g.edge_vec, axis=1)
    assert d.max() < 6.0


def test_edge_vectors_point_from_destination_to_source_image():
    lattice = np.diag([3.0, 4.0, 5.0])
    frac = np.array([[0.1, 0.2, 0.3], [0.6, 0.5, 0.4]])
    g = build_graph(lattice, ["Si", "O"], frac, cutoff=4.5)
    pts = frac @ lattice
    # each edge vector equals r_src - r_dst up to a lattice translation
    diff = g.edge_vec - (pts[g.edge_src] - pts[g.edge_dst])
    shifts = diff @ np.linalg.inv(lattice)
    np.testing.assert_allclose(shifts, np.round(shifts), atol=1e-5)


def test_unknown_element_is_named():
    with pytest.raises(InputError, match="Xx"):
        atomic_number("Xx")
