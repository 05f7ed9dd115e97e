"""The Spectrum type: construction checks and flux-conserving rebinning."""
import numpy as np
import pytest

from insnet_core import InputError
from insnet_core.spectrum import Spectrum, rebin_1d_matrix
from insnet_core.units import MEV_PER_CM1


def random_map(seed=0, nq=30, ne=50):
    rng = np.random.default_rng(seed)
    q = np.cumsum(rng.uniform(0.05, 0.2, nq + 1))
    e = np.cumsum(rng.uniform(0.2, 2.0, ne + 1)) - 5.0
    vals = rng.random((nq, ne))
    return Spectrum(energy_edges=e, values=vals, errors=0.1 * vals, q_edges=q)


@pytest.mark.parametrize("kind", ["uniform", "log", "random"])
def test_rebin_conserves_integral_exactly(kind):
    sp = random_map()
    e = sp.energy_edges
    if kind == "uniform":
        new_e = np.linspace(e[0] - 1, e[-1] + 1, 37)
    elif kind == "log":  # VISION-like logarithmic bins, covering the old range
        new_e = np.concatenate([[e[0] - 1], np.geomspace(0.5, e[-1] + 1, 60)])
    else:
        new_e = np.sort(np.concatenate([[e[0] - 0.3, e[-1] + 0.2],
                                        np.random.default_rng(3).uniform(e[0], e[-1], 25)]))
    new_q = np.linspace(sp.q_edges[0] - 0.1, sp.q_edges[-1] + 0.05, 13)
    out = sp.rebin(energy_edges=new_e, q_edges=new_q)
    assert out.integral() == pytest.approx(sp.integral(), rel=1e-12)
    assert out.values.shape == (12, new_e.size - 1)
    # the original is untouched
    assert np.array_equal(sp.energy_edges, random_map().energy_edges)


def test_rebin_onto_identical_edges_is_identity():
    sp = random_map(2)
    out = sp.rebin(energy_edges=sp.energy_edges.copy(), q_edges=sp.q_edges.copy())
    assert np.allclose(out.values, sp.values, rtol=1e-13)
    assert np.allclose(out.errors, sp.errors, rtol=1e-13)


def test_rebin_merging_two_bins_averages_and_adds_errors_in_quadrature():
    sp = Spectrum(energy_edges=[0.0, 1.0, 3.0], values=[[2.0, 5.0]], errors=[[3.0, 4.0]])
    out = sp.rebin(energy_edges=[0.0, 3.0])
    assert out.values[0, 0] == pytest.approx((2.0 * 1 + 5.0 * 2) / 3)
    assert out.errors[0, 0] == pytest.approx(np.hypot(3.0 * 1, 4.0 * 2) / 3)


def test_rebin_propagates_nan():
    vals = np.ones((1, 4))
    vals[0, 1] = np.nan
    sp = Spectrum(energy_edges=[0, 1, 2, 3, 4], values=vals)
    out = sp.rebin(energy_edges=[0, 1.5, 2.0, 4.0])
    assert np.isnan(out.values[0, 0]) and np.isnan(out.values[0, 1])
    assert out.values[0, 2] == 1.0


def test_overlap_matrix_columns():
    m = rebin_1d_matrix(np.array([0.0, 1, 2, 3]), np.array([0.5, 2.5]))
    assert np.allclose(m[:, 0], [0.5 / 2, 1 / 2, 0.5 / 2])


def test_wavenumber_bins_round_trip():
    edges_cm = np.arange(10.0, 1201.0, 10.0)
    sp = Spectrum(energy_edges=edges_cm * MEV_PER_CM1, values=np.ones(edges_cm.size - 1),
                  display_energy_unit="cm-1")
    assert sp.display_energy_unit == "cm-1"
    assert sp.energy_widths == pytest.approx(np.full(119, 10 * MEV_PER_CM1))


@pytest.mark.parametrize("edges,msg", [
    ([0.0, 1.0, 1.0], "ascending"),
    ([1.0, 0.0], "ascending"),
    ([0.0, np.nan], "finite"),
    ([0.0], "two bin edges"),
])
def test_bad_edges(edges, msg):
    with pytest.raises(InputError, match=msg):
        Spectrum(energy_edges=edges, values=np.zeros(max(len(edges) - 1, 1)))


def test_shape_mismatch_messages():
    with pytest.raises(InputError, match="energy bins"):
        Spectrum(energy_edges=[0, 1, 2], values=[1.0, 2.0, 3.0])
    with pytest.raises(InputError, match="rows"):
        Spectrum(energy_edges=[0, 1], values=[[1.0], [2.0]], q_edges=[0, 1, 2, 3])
    with pytest.raises(InputError, match="no \\|Q\\| axis"):
        Spectrum(energy_edges=[0, 1], values=[1.0]).rebin(q_edges=[0, 1])


def test_add_and_row():
    sp = random_map(4)
    twice = sp + sp
    assert np.allclose(twice.values, 2 * sp.values)
    assert np.allclose(twice.errors, np.sqrt(2) * sp.errors)
    r = sp.row(3)
    assert not r.is_map and r.labels[0].startswith("|Q| =")
    with pytest.raises(InputError, match="identical bins"):
        sp + sp.rebin(energy_edges=np.linspace(-5, 30, 10))
