"""The ideal 0 K map taken to SEQUOIA: against the engine's own SEQUOIA maps."""
import numpy as np
import pytest

from insnet_core import InputError
from insnet_core.ideal_map import (box_gaussian_matrix, ideal_to_instrument,
                                   thermal_difference, two_sided_edges)
from insnet_core.incoherent import build_ingredients
from insnet_core.simulate import Settings, simulate_ingredients
from insnet_core.spectrum import rebin_1d_matrix


@pytest.fixture(scope="module")
def csau(csau_modes):
    ing = build_ingredients(csau_modes, grouping="element", temperature=0.0)
    ideal = simulate_ingredients(ing, Settings.check("Ideal2D", temperature=0.0,
                                                     orders=3)).total
    return ing, ideal


def _cosine(a, b):
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)), float(a.sum() / b.sum())


def test_box_gaussian_matrix_is_a_rebin_at_zero_width_and_keeps_intensity():
    e_in = np.linspace(0.0, 20.0, 41)
    e_out = np.array([-10.0, 1.3, 2.0, 7.7, 12.0, 30.0])
    sharp = box_gaussian_matrix(e_in, np.zeros(40), e_out)
    expected = rebin_1d_matrix(e_in, e_out) * np.diff(e_out)[None, :] / np.diff(e_in)[:, None]
    np.testing.assert_allclose(sharp, expected, atol=1e-12)
    wide = box_gaussian_matrix(e_in, np.full(40, 1.5), e_out)
    np.testing.assert_allclose(wide.sum(axis=1), 1.0, atol=1e-9)  # all lands inside -10..30
    # a narrow bin spread by sigma: the fraction below its centre is one half
    half = box_gaussian_matrix(np.array([9.99, 10.01]), np.array([2.0]),
                               np.array([-50.0, 10.0, 50.0]))
    np.testing.assert_allclose(half[0], [0.5, 0.5], atol=1e-6)


@pytest.mark.parametrize("temperature", [5.0, 300.0])
def test_engine_ideal_map_to_sequoia_matches_the_engine_on_sequoia(csau, temperature):
    """Exact chain: the engine's own 0 K ideal map + thermal change = its SEQUOIA map."""
    ing, ideal = csau
    settings = Settings.check("SEQUOIA", temperature=temperature, orders=3, ei=160.0)
    direct = simulate_ingredients(ing, settings).total.values
    got = ideal_to_instrument(ideal, settings, thermal_difference(ing, temperature, 3))
    cosine, ratio = _cosine(got.values, direct)
    assert cosine > 0.9999
    assert abs(ratio - 1.0) < 0.01
    ok = np.isfinite(direct) & np.isfinite(got.values)
    assert np.abs(got.values - direct)[ok].max() < 0.01 * np.nanmax(direct)
    assert got.metadata["temperature_K"] == temperature
    assert "S_T - S_0" in got.metadata["temperature_route"]


def test_nan_outside_sequoia_kinematics_and_beyond_the_ideal_grid(csau):
    ing, ideal = csau
    settings = Settings.check("SEQUOIA", temperature=0.0, orders=3, ei=160.0,
                              q_edges=np.arange(0.0, 17.01, 0.1))
    got = ideal_to_instrument(ideal, settings)
    inst = settings.instrument
    qc = 0.5 * (settings.q_edges[1:] + settings.q_edges[:-1])
    ec = 0.5 * (settings.energy_edges[1:] + settings.energy_edges[:-1])
    reach = inst.measurable(qc[:, None], ec[None, :])
    assert np.all(np.isnan(got.values[~reach]))
    beyond = (settings.energy_edges[1:] > 150.0)[None, :] | (settings.q_edges[1:] > 15.0)[:, None]
    assert np.all(np.isnan(got.values[beyond]))
    inside = reach & ~beyond
    assert np.all(np.isfinite(got.values[inside]))
    assert got.metadata["bins_beyond_ideal_grid"] == int((reach & beyond).sum()) > 0
    assert "NaN" in got.metadata["beyond_ideal_grid"]
    # at 0 K nothing is scattered with energy gain: beyond the resolution's reach, zeros
    gain = inside & (ec < -40.0)[None, :]
    assert gain.any() and np.all(got.values[gain] < 1e-9 * np.nanmax(got.values))


def test_bad_inputs_are_named(csau):
    ing, ideal = csau
    hot = Settings.check("SEQUOIA", temperature=100.0, ei=160.0)
    with pytest.raises(InputError, match="needs the thermal difference"):
        ideal_to_instrument(ideal, hot)
    with pytest.raises(InputError, match="1D spectra"):
        ideal_to_instrument(ideal, Settings.check("VISION"))
    with pytest.raises(InputError, match="start at exactly 0"):
        two_sided_edges(np.array([1.0, 2.0]))
    wrong = thermal_difference(ing, 100.0, 2, q_edges=np.linspace(0, 15, 31))
    with pytest.raises(InputError, match="not on the ideal"):
        ideal_to_instrument(ideal, hot, wrong)
