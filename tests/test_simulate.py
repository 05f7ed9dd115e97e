"""End-to-end physics route: force constants -> instrument spectra."""
import numpy as np
import pytest

from insnet_core import InputError
from insnet_core.instruments import get_instrument
from insnet_core.incoherent import build_ingredients
from insnet_core.simulate import Settings, simulate, simulate_ingredients


@pytest.fixture(scope="module")
def sif4_ing(sif4_modes):
    return build_ingredients(sif4_modes)


def test_ideal2d_map_layout_and_partials(sif4_ing):
    res = simulate_ingredients(sif4_ing, Settings.check("Ideal2D", orders=4))
    tot = res.total
    assert tot.is_map and tot.values.shape == (300, 300)
    assert tot.q_edges[0] == 0 and tot.q_edges[-1] == pytest.approx(15)
    assert tot.energy_edges[-1] == pytest.approx(150)
    assert np.all(np.isfinite(tot.values)) and np.all(tot.values >= 0)
    # partials add up to the total, both ways
    assert np.allclose(sum(s.values for s in res.by_element.values()), tot.values, rtol=1e-12)
    assert np.allclose(sum(s.values for s in res.by_order.values()), tot.values, rtol=1e-12)
    assert set(res.by_element) == {"F", "Si"} and sorted(res.by_order) == [1, 2, 3, 4]
    # nothing above the highest fundamental except overtones
    emax = sif4_ing.max_energy
    above = tot.energy_centres > emax + 5 * 1.5
    assert np.allclose(res.by_order[1].values[:, above], 0, atol=1e-12 * tot.values.max())


def test_vision_banks_and_average(sif4_ing):
    res = simulate_ingredients(sif4_ing, Settings.check("VISION"))
    tot = res.total
    assert tot.labels == ["backward", "forward", "average"]
    assert tot.display_energy_unit == "cm-1" and tot.values.shape == (3, 119)
    assert np.allclose(tot.values[2], tot.values[:2].mean(axis=0))
    # backscattering sees larger Q than forward scattering -> more overtone weight
    over_back = res.by_order[2].values[0].sum() / res.by_order[1].values[0].sum()
    over_fwd = res.by_order[2].values[1].sum() / res.by_order[1].values[1].sum()
    assert over_back > over_fwd


def test_sequoia_nan_outside_kinematic_range(sif4_ing):
    inst = get_instrument("SEQUOIA", ei=160.0)
    res = simulate_ingredients(sif4_ing, Settings.check(inst))
    tot = res.total
    qc, ec = tot.q_centres, tot.energy_centres
    reach = inst.measurable(qc[:, None], ec[None, :])
    assert np.all(np.isnan(tot.values[~reach]))
    assert np.all(np.isfinite(tot.values[reach]))
    assert tot.metadata["ei_meV"] == 160.0


def test_temperature_adds_gain_side(sif4_ing):
    edges = np.arange(-50, 50.5, 0.5)
    cold = simulate_ingredients(sif4_ing, Settings.check("Ideal2D", energy_edges=edges,
                                                         temperature=0.0)).total
    warm = simulate_ingredients(sif4_ing, Settings.check("Ideal2D", energy_edges=edges,
                                                         temperature=300)).total
    gain = cold.energy_centres < -5
    assert cold.values[:, gain].max() < 1e-12 * cold.values.max()
    assert warm.values[:, gain].max() > 0.01 * warm.values.max()


def test_end_to_end_flags_unstable_crystal(example_dir):
    res = simulate(example_dir / "mp-39-20180417", "Ideal2D", orders=2)
    assert res.stability["has_imaginary"]
    assert res.total.metadata["unstable"] == 1
    assert "UNSTABLE" in res.total.metadata["stability"]


@pytest.mark.parametrize("kwargs,msg", [
    (dict(instrument="SEQUOIA", ei=-5.0), "Ei|ei"),
    (dict(instrument="SEQUOIA", ei=0.0), "Ei|ei"),
    (dict(instrument="SEQUOIA", ei=50.0, energy_edges=np.arange(0, 80.0, 1)), "Ei|ei"),
    (dict(instrument="SEQUOIA", ei=160.0, chopper_package="Nope"), "chopper"),
    (dict(instrument="Ideal2D", temperature=-1), "temperature"),
    (dict(instrument="VISION", orders=12), "orders"),
    (dict(instrument="MARI"), "VISION"),
    (dict(instrument="VISION", q_edges=[0, 1, 2]), "map instruments"),
])
def test_bad_settings_fail_before_any_work(kwargs, msg, tmp_path):
    with pytest.raises(InputError, match=msg):
        simulate(tmp_path / "does-not-exist", **kwargs)
