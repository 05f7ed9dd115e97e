"""Tests of insnet_core.instruments: VISION, SEQUOIA, Ideal2D and get_instrument."""
import json
import math

import numpy as np
import pytest

from insnet_core import InputError
from insnet_core.instruments import (Bank, Ideal2D, Sequoia, Vision, get_instrument,
                                     instrument_names)
from insnet_core.instruments.base import DATA_DIR
from insnet_core.units import MEV_PER_CM1


def hand_q(e_i, e_f, angle_deg):
    """|Q| written out by hand with E = 2.0721 k^2 (meV, 1/A)."""
    k_i = math.sqrt(e_i / 2.0721)
    k_f = math.sqrt(e_f / 2.0721)
    return math.sqrt(k_i ** 2 + k_f ** 2 - 2 * k_i * k_f * math.cos(math.radians(angle_deg)))


@pytest.fixture(scope="module")
def vision():
    return Vision()


@pytest.fixture(scope="module")
def sequoia160():
    return Sequoia(160.0)


# ---------------------------------------------------------------- VISION
def test_vision_defaults(vision):
    assert vision.name == "VISION" and vision.is_map is False
    assert vision.final_energy == pytest.approx(3.5)
    assert [(b.name, b.angle_deg) for b in vision.banks] == [("backward", 135.0), ("forward", 45.0)]
    assert vision.display_energy_unit == "cm-1"
    assert vision.default_q_edges() is None


def test_vision_default_energy_edges(vision):
    edges = vision.default_energy_edges()
    assert edges.shape == (120,)
    assert edges[0] == pytest.approx(10 * MEV_PER_CM1)
    assert edges[-1] == pytest.approx(1200 * MEV_PER_CM1)
    np.testing.assert_allclose(np.diff(edges), 10 * MEV_PER_CM1)


def test_vision_q_trajectory_matches_hand_calculation(vision):
    # E = 100 meV, backward bank: E_i = 103.5 meV, Q^2 = 49.949 + 1.689 + 2*7.0675*1.2997*0.7071
    q_back = vision.q_of_energy(100.0, vision.banks[0])
    assert float(q_back) == pytest.approx(8.0392, rel=2e-4)
    assert float(q_back) == pytest.approx(hand_q(103.5, 3.5, 135.0), rel=1e-4)
    # E = 500 meV, forward bank, bank given by name
    q_fwd = vision.q_of_energy(np.array([500.0]), "forward")
    assert q_fwd.shape == (1,)
    assert q_fwd[0] == pytest.approx(14.698, rel=2e-4)
    assert q_fwd[0] == pytest.approx(hand_q(503.5, 3.5, 45.0), rel=1e-4)


def test_vision_q_shape_and_impossible_energies(vision):
    energy = np.linspace(-10.0, 100.0, 12).reshape(3, 4)
    q = vision.q_of_energy(energy, Bank("backward", 135.0))
    assert q.shape == (3, 4)
    assert np.all(np.isnan(q[energy <= -3.5]))
    assert np.all(np.isfinite(q[energy > -3.5]))
    with pytest.raises(InputError, match="sideways"):
        vision.q_of_energy(10.0, "sideways")


def test_vision_resolution_about_1p2_percent(vision):
    energy = np.geomspace(20.0, 500.0, 40)
    ratio = vision.resolution_fwhm(energy) / energy
    assert np.all((ratio > 0.010) & (ratio < 0.015)), ratio
    assert abs(np.median(ratio) - 0.012) < 0.0015


def test_vision_resolution_sane(vision):
    energy = np.linspace(0.0, 1200.0, 2401)
    fwhm = vision.resolution_fwhm(energy)
    assert fwhm.shape == energy.shape
    assert np.all(np.isfinite(fwhm)) and np.all(fwhm > 0)
    assert np.all(np.diff(fwhm) > 0)
    grid = vision.resolution_fwhm(np.array([[10.0, 100.0], [200.0, 400.0]]))
    assert grid.shape == (2, 2)
    # contributions add in quadrature; per-bank widths equal the average one
    terms = vision.resolution_terms(energy)
    np.testing.assert_allclose(np.sqrt(sum(t ** 2 for t in terms.values())), fwhm)
    for bank in vision.banks:
        np.testing.assert_allclose(vision.bank_resolution_fwhm(energy, bank), fwhm)


def test_vision_final_energy_setting():
    custom = Vision(final_energy=3.64)
    assert custom.final_energy == 3.64
    assert float(custom.q_of_energy(100.0, "backward")) == pytest.approx(
        hand_q(103.64, 3.64, 135.0), rel=1e-4)


def test_resins_vision_model_state():
    """resins 0.1.0's VISION model has d_t = null and fails when evaluated.

    If this test starts failing, resins' VISION model has been fixed: compare it
    with insnet's own VISION resolution and update this record.
    """
    resins = pytest.importorskip("resins")
    inst = resins.Instrument.from_default("VISION")
    assert inst.get_model_data().d_t is None
    model = inst.get_resolution_function()
    with pytest.raises(TypeError):
        model.get_characteristics(np.array([[10.0], [100.0]]))


# --------------------------------------------------------------- SEQUOIA
def test_sequoia_defaults(sequoia160):
    s = sequoia160
    assert s.name == "SEQUOIA" and s.is_map is True
    assert s.chopper_package == "High-Resolution"
    assert s.chopper_frequency == 600
    assert "High-Resolution" in Sequoia.chopper_packages()
    assert Sequoia.chopper_frequencies() == list(range(60, 601, 60))
    assert Sequoia(20.0).chopper_frequency == 240  # v_i / (4 pi 0.58 m) = 268 Hz


def test_sequoia_default_edges(sequoia160):
    energy = sequoia160.default_energy_edges()
    assert energy[0] == pytest.approx(-80.0) and energy[-1] == pytest.approx(152.0)
    np.testing.assert_allclose(np.diff(energy), 0.8)
    assert energy.size == 291 and energy[-1] < 160.0
    q = sequoia160.default_q_edges()
    assert q[0] == 0.0 and q[-1] == pytest.approx(9.1)  # 2 k_i sin(31 deg) = 9.051
    np.testing.assert_allclose(np.diff(q), 0.05)
    sequoia160.validate(energy, q)


def test_sequoia_measurable_region(sequoia160):
    s = sequoia160
    for energy in (-80.0, 0.0, 80.0, 150.0):
        q_low = hand_q(160.0, 160.0 - energy, 2.0)
        q_high = hand_q(160.0, 160.0 - energy, 62.0)
        inside = np.array([q_low * 1.001, 0.5 * (q_low + q_high), q_high * 0.999])
        outside = np.array([q_low * 0.999, q_high * 1.001])
        assert np.all(s.measurable(inside, energy)), energy
        assert not np.any(s.measurable(outside, energy)), energy
    # elastic corners and the E >= Ei limit
    assert s.measurable(9.0, 0.0) and not s.measurable(9.1, 0.0)
    assert s.measurable(0.31, 0.0) and not s.measurable(0.30, 0.0)
    assert not np.any(s.measurable(np.linspace(0, 20, 50), 160.0))
    assert not np.any(s.measurable(np.linspace(0, 20, 50), 170.0))
    # broadcasting
    mask = s.measurable(s.default_q_edges()[:, None], s.default_energy_edges()[None, :])
    assert mask.shape == (183, 291) and mask.dtype == bool
    assert mask.any() and not mask.all()


def test_sequoia_resolution(sequoia160):
    resins = pytest.importorskip("resins")
    energy = sequoia160.default_energy_edges()
    fwhm = sequoia160.resolution_fwhm(energy)
    assert fwhm.shape == energy.shape
    assert np.all(np.isfinite(fwhm)) and np.all(fwhm > 0)
    # elastic width against resins called directly
    model = resins.Instrument.from_default("SEQUOIA").get_resolution_function(
        "PyChop_fit", chopper_package="High-Resolution", e_init=160.0, chopper_frequency=600)
    sigma = model.get_characteristics(np.array([[0.0]]))["sigma"][0]
    expected = 2 * math.sqrt(2 * math.log(2)) * sigma
    assert float(sequoia160.resolution_fwhm(0.0)) == pytest.approx(expected, rel=1e-12)
    assert 3.0 < expected < 6.0  # a few % of Ei at the elastic line
    # direct geometry: the width shrinks as E -> Ei
    toward_ei = np.linspace(0.0, 0.97 * 160.0, 50)
    assert np.all(np.diff(sequoia160.resolution_fwhm(toward_ei)) < 0)
    # finite everywhere, even outside the measurable range
    assert np.all(np.isfinite(sequoia160.resolution_fwhm(np.array([-500.0, 165.0, 1e4]))))


def test_sequoia_other_settings():
    flux = Sequoia(ei="100", chopper_package="high-flux", chopper_frequency=300.0)
    assert flux.chopper_package == "High-Flux" and flux.chopper_frequency == 300
    info = flux.describe()
    assert info["ei_meV"] == 100.0 and info["chopper_frequency_origin"] == "user"
    fine = Sequoia(100.0, chopper_package="High-Resolution", chopper_frequency=300)
    assert fine.resolution_fwhm(0.0) < flux.resolution_fwhm(0.0)


@pytest.mark.parametrize("kwargs, words", [
    (dict(ei=0.0), ["ei", "0"]),
    (dict(ei=-5.0), ["ei", "-5"]),
    (dict(ei=float("nan")), ["ei", "nan"]),
    (dict(ei=float("inf")), ["ei", "inf"]),
    (dict(ei="abc"), ["ei", "abc"]),
    (dict(ei=2.0), ["ei", "2 meV"]),
    (dict(ei=7000.0), ["ei", "7000"]),
    (dict(ei=160.0, chopper_package="Fast"), ["chopper_package", "Fast", "High-Resolution"]),
    (dict(ei=160.0, chopper_frequency=610), ["chopper_frequency", "610", "600"]),
    (dict(ei=160.0, chopper_frequency=59), ["chopper_frequency", "59", "60"]),
    (dict(ei=160.0, chopper_frequency=600.5), ["chopper_frequency", "600.5"]),
    (dict(ei=160.0, chopper_frequency="fast"), ["chopper_frequency", "fast"]),
    (dict(ei=4.0, chopper_frequency=600), ["chopper_frequency", "600", "ei = 4"]),
])
def test_sequoia_bad_settings(kwargs, words):
    with pytest.raises(InputError) as info:
        Sequoia(**kwargs)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_sequoia_validate(sequoia160):
    sequoia160.validate(np.linspace(-50, 159, 100), np.linspace(0, 10, 11))
    for top in (160.0, 200.0):
        with pytest.raises(InputError) as info:
            sequoia160.validate(np.linspace(0, top, 11))
        assert "ei = 160" in str(info.value) and f"{top:g}" in str(info.value)
    with pytest.raises(InputError, match="negative"):
        sequoia160.validate(np.linspace(0, 100, 11), np.linspace(-1, 5, 7))
    with pytest.raises(InputError, match="ascending"):
        sequoia160.validate(np.array([0.0, 10.0, 5.0]))


def test_vision_bad_settings(vision):
    for bad in (0.0, -1.0, float("nan"), "x"):
        with pytest.raises(InputError, match="final_energy"):
            Vision(final_energy=bad)
    vision.validate(vision.default_energy_edges())
    with pytest.raises(InputError, match=r"-3\.5"):
        vision.validate(np.linspace(-4.0, 100.0, 10))
    with pytest.raises(InputError, match="q_edges"):
        vision.validate(vision.default_energy_edges(), np.linspace(0, 10, 11))


# --------------------------------------------------------------- Ideal2D
def test_ideal2d_grid_and_resolution():
    ideal = Ideal2D()
    assert ideal.is_map and ideal.name == "Ideal2D"
    q = ideal.default_q_edges()
    energy = ideal.default_energy_edges()
    assert q.shape == (301,) and energy.shape == (301,)
    assert q[0] == 0.0 and q[-1] == 15.0 and energy[0] == 0.0 and energy[-1] == 150.0
    np.testing.assert_allclose(np.diff(q), 0.05)
    np.testing.assert_allclose(np.diff(energy), 0.5)
    fwhm = ideal.resolution_fwhm(np.array([[0.0, 50.0], [100.0, 1000.0]]))
    assert fwhm.shape == (2, 2) and np.all(fwhm == 1.5)
    mask = ideal.measurable(q[:, None], energy[None, :])
    assert mask.shape == (301, 301) and mask.all()
    ideal.validate(energy, q)


# ---------------------------------------------------------- get_instrument
def test_get_instrument_names():
    assert instrument_names() == ["VISION", "SEQUOIA", "Ideal2D"]
    assert isinstance(get_instrument("vision"), Vision)
    assert isinstance(get_instrument(" VISION "), Vision)
    assert isinstance(get_instrument("Sequoia", ei=160), Sequoia)
    assert isinstance(get_instrument("IDEAL2D"), Ideal2D)
    assert get_instrument("vision", final_energy=None).final_energy == 3.5
    assert get_instrument("sequoia", ei=50, chopper_package=None).chopper_package == "High-Resolution"


@pytest.mark.parametrize("name", ["MAPS", "", None, 3])
def test_get_instrument_unknown_name(name):
    with pytest.raises(InputError) as info:
        get_instrument(name)
    for valid in ("VISION", "SEQUOIA", "Ideal2D"):
        assert valid in str(info.value)


def test_get_instrument_bad_settings():
    with pytest.raises(InputError, match="VISION has no setting ei"):
        get_instrument("VISION", ei=100)
    with pytest.raises(InputError, match="Ideal2D has no setting fwhm"):
        get_instrument("ideal2d", fwhm=2.0)
    with pytest.raises(InputError, match="ei"):
        get_instrument("SEQUOIA")


# ------------------------------------------------------------- metadata
def test_describe_is_json_serialisable(vision, sequoia160):
    for inst in (vision, sequoia160, Ideal2D()):
        info = inst.describe()
        assert info["name"] == inst.name
        json.dumps(info)
        assert inst.name in repr(inst) or type(inst).__name__ in repr(inst)


@pytest.mark.parametrize("name", ["vision", "sequoia", "ideal2d"])
def test_data_files_cite_their_sources(name):
    with open(DATA_DIR / f"{name}.json", encoding="utf-8") as handle:
        data = json.load(handle)
    sources = data["_sources"]
    assert sources and all(isinstance(text, str) and text for text in sources.values())
    for key in sources:
        node = data
        for part in key.split("."):
            assert part in node, f"{name}.json _sources names unknown key {key!r}"
            node = node[part]
