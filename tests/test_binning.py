"""Rebin-style parameter strings -> bin edges."""
import numpy as np
import pytest

from insnet_core import InputError
from insnet_core.binning import energy_edges_from_params, rebin_edges
from insnet_core.units import MEV_PER_CM1


def test_linear_bins_exact():
    edges = rebin_edges("0,0.5,150")
    assert edges.size == 301 and edges[0] == 0 and edges[-1] == 150
    assert np.allclose(np.diff(edges), 0.5)


def test_last_partial_bin_merged_or_kept_like_mantid():
    assert rebin_edges("0,1,5.2").tolist() == [0, 1, 2, 3, 4, 5.2]     # 0.2 < 25 %: merged
    assert rebin_edges("0,1,5.5").tolist() == [0, 1, 2, 3, 4, 5, 5.5]  # 0.5 >= 25 %: kept


def test_logarithmic_bins():
    edges = rebin_edges("1,-0.01,100")
    ratios = edges[1:-1] / edges[:-2]
    assert np.allclose(ratios, 1.01)
    assert edges[0] == 1 and edges[-1] == 100


def test_chained_ranges():
    edges = rebin_edges("0,1,3,0.5,4")
    assert edges.tolist() == [0, 1, 2, 3, 3.5, 4]


def test_wavenumber_conversion():
    edges = energy_edges_from_params("10,10,1200", "cm-1")
    assert edges.size == 120
    assert edges[0] == pytest.approx(10 * MEV_PER_CM1)
    assert edges[-1] == pytest.approx(1200 * MEV_PER_CM1)


@pytest.mark.parametrize("text,msg", [
    ("0,1", "start,step,end"),
    ("a,1,2", "numbers"),
    ("0,0,5", "zero"),
    ("5,1,0", "above its start"),
    ("0,-0.1,10", "start > 0"),
    ("0,1,inf", "finite"),
])
def test_bad_params(text, msg):
    with pytest.raises(InputError, match=msg):
        rebin_edges(text, "--bins")
