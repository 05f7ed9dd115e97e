"""Physics checks of the incoherent engine against analytic results.

* Einstein solid: peaks at n * E0 with Poisson weights of mean Q^2 hbar^2 / (2 M E0).
* Monatomic Debye solid: mean-square displacement against the analytic integral.
* Sum rules: zeroth moment 1 (with the elastic line) and first moment equal to the
  free-atom recoil hbar^2 Q^2 / 2M, on a real crystal, wherever the computed orders
  carry > 99 % of the Poisson weight.
* Detailed balance at T > 0: S(Q, -E) = exp(-E/kT) S(Q, E).
"""
import numpy as np
import pytest
from scipy import integrate, stats

from insnet_core import InputError
from insnet_core.cross_sections import atomic_mass, total_cross_section
from insnet_core.incoherent import (IncoherentIngredients, build_ingredients, check_orders,
                                    check_temperature, compute_map, compute_trajectory,
                                    mean_square_displacement, one_phonon_function,
                                    phonon_orders)
from insnet_core.phonons import PhononModes
from insnet_core.units import HBAR2_OVER_2AMU, KB_MEV_PER_K


def einstein_modes(energy, element="Ni"):
    """One atom per cell, all three modes at ``energy`` (meV) at a single q-point."""
    return PhononModes(species=(element,), masses=np.array([atomic_mass(element)]),
                       lattice=np.eye(3) * 3.0, frac_coords=np.zeros((1, 3)),
                       energies=np.full((1, 3), energy), q_weights=np.array([1.0]),
                       projections=np.ones((1, 3, 1)), orbits=np.array([0]), mesh=(1, 1, 1))


def flat(width):
    return lambda e: np.full(np.shape(e), width, dtype=float)


def bin_weights(values, edges, centre, half_window):
    """Integral of a 1D density over [centre - half_window, centre + half_window]."""
    c = 0.5 * (edges[1:] + edges[:-1])
    sel = np.abs(c - centre) < half_window
    return float((values[sel] * np.diff(edges)[sel]).sum())


@pytest.mark.parametrize("q", [2.0, 6.0, 10.0])
def test_einstein_peaks_have_poisson_weights(q):
    e0, el = 40.0, "Ni"
    ing = build_ingredients(einstein_modes(e0, el), bin_width=0.1)
    edges = np.arange(-10.0, 500.0, 0.5)
    out = compute_map(ing, np.array([q - 1e-4, q + 1e-4]), edges, flat(2.0), temperature=0.0,
                      orders=10, include_elastic=True)
    pref = total_cross_section(el) / (4 * np.pi)
    lam = q ** 2 * HBAR2_OVER_2AMU / (atomic_mass(el) * e0)
    poisson = stats.poisson(lam)
    total = sum(out.values())[0] / pref
    for n in range(0, 8):
        measured = bin_weights(total, edges, n * e0, 10.0)
        assert measured == pytest.approx(poisson.pmf(n), rel=1e-6, abs=1e-10), n
        # each order lands entirely on its own peak
        alone = out[(0, n)][0] / pref
        assert bin_weights(alone, edges, n * e0, 10.0) == pytest.approx(poisson.pmf(n), rel=1e-6)


def test_einstein_at_temperature_detailed_balance_and_debye_waller():
    e0, el, temp = 30.0, "Cu", 250.0
    ing = build_ingredients(einstein_modes(e0, el), bin_width=0.1)
    msd = mean_square_displacement(ing, temp)[0]
    analytic = HBAR2_OVER_2AMU / (atomic_mass(el) * e0) / np.tanh(e0 / (2 * KB_MEV_PER_K * temp))
    assert msd == pytest.approx(analytic, rel=1e-12)
    edges = np.arange(-100.0, 100.0, 0.5)
    out = compute_map(ing, np.array([3.0, 3.0001]), edges, flat(2.0), temperature=temp, orders=4)
    s = out[(0, 1)][0]
    loss = bin_weights(s, edges, e0, 8.0)
    gain = bin_weights(s, edges, -e0, 8.0)
    assert gain / loss == pytest.approx(np.exp(-e0 / (KB_MEV_PER_K * temp)), rel=1e-9)


def test_monatomic_debye_mean_square_displacement():
    el, e_debye = "Al", 35.0
    dx = 0.01
    grid = np.arange(0, int(e_debye / dx) + 3) * dx
    rho = np.where((grid > 0) & (grid <= e_debye), 3 * grid ** 2 / e_debye ** 3, 0.0) * dx
    ing = IncoherentIngredients(group_labels=[el], elements=[el], n_atoms=np.array([1.0]),
                                masses=np.array([atomic_mass(el)]),
                                cross_sections=np.array([total_cross_section(el)]),
                                bin_width=dx, dos=rho[None, :])
    c = HBAR2_OVER_2AMU / atomic_mass(el)
    # T = 0: a = c * int 3E^2/ED^3 / E dE = 3c / (2 ED)
    assert mean_square_displacement(ing, 0.0)[0] == pytest.approx(1.5 * c / e_debye, rel=1e-3)
    for temp in (100.0, 400.0):
        kt = KB_MEV_PER_K * temp
        exact, _ = integrate.quad(lambda e: 3 * e / e_debye ** 3 / np.tanh(e / (2 * kt)), 0, e_debye)
        assert mean_square_displacement(ing, temp)[0] == pytest.approx(c * exact, rel=1e-3)


@pytest.fixture(scope="module")
def sif4_ingredients(sif4_modes):
    return build_ingredients(sif4_modes, isotropic=True)  # the sum rules hold for one model throughout


@pytest.mark.parametrize("temperature", [0.0, 300.0])
def test_sum_rules_on_real_crystal(sif4_ingredients, temperature):
    ing = sif4_ingredients
    orders = 10
    edges = np.arange(-300.0, 1400.0, 0.5)
    msd = mean_square_displacement(ing, temperature)
    c = 0.5 * (edges[1:] + edges[:-1])
    w = np.diff(edges)
    pref = ing.cross_sections * ing.n_atoms / (4 * np.pi)
    kept = ing.dos.sum(axis=1)  # fraction of modes above the acoustic cutoff
    checked = 0
    qs = (1.0, 3.0, 5.0, 8.0, 12.0)
    q_edges = np.ravel([(q - 1e-4, q + 1e-4) for q in qs])  # even rows are the narrow bins
    out = compute_map(ing, q_edges, edges, flat(1.0), temperature=temperature, orders=orders,
                      include_elastic=True)
    for iq, q in enumerate(qs):
        for g in range(ing.n_groups):
            carried = stats.poisson(q * q * msd[g]).cdf(orders)
            if carried < 0.99:
                continue
            s = sum(v for (gg, _), v in out.items() if gg == g)[2 * iq] / pref[g]
            recoil = HBAR2_OVER_2AMU * q * q / ing.masses[g]
            assert (s * w).sum() == pytest.approx(carried, rel=1e-6)
            assert (s * w * c).sum() == pytest.approx(recoil * kept[g], rel=2e-2)
            assert kept[g] > 0.99
            checked += 1
    assert checked >= 6


def test_orders_are_exact_convolutions():
    rng = np.random.default_rng(1)
    t1 = np.zeros((2, 41))
    t1[:, 21:30] = rng.random((2, 9))
    stack = phonon_orders(t1, 3)
    direct2 = np.array([np.convolve(r, r)[20:61] for r in t1])
    assert np.allclose(stack[1], direct2, atol=1e-14)
    direct3 = np.array([np.convolve(np.convolve(r, r), r)[40:81] for r in t1])
    assert np.allclose(stack[2], direct3, atol=1e-14)


def test_trajectory_matches_map_at_fixed_q(sif4_ingredients):
    ing = sif4_ingredients
    edges = np.arange(5.0, 140.0, 1.0)
    q = 4.0
    traj = compute_trajectory(ing, lambda e: np.full(np.shape(e), q), edges, flat(1.5), orders=3)
    mp = compute_map(ing, np.array([q - 1e-5, q + 1e-5]), edges, flat(1.5), orders=3)
    for key, val in traj.items():
        assert np.allclose(val, mp[key][0], rtol=1e-6, atol=1e-14)


def test_one_phonon_low_q_limit_is_q_squared(sif4_ingredients):
    ing = sif4_ingredients
    edges = np.arange(5.0, 140.0, 1.0)
    q = np.array([0.1, 0.1001, 0.2, 0.2001])
    out = compute_map(ing, q, edges, flat(1.5), orders=1)
    s = out[(0, 1)]
    assert s[2].sum() / s[0].sum() == pytest.approx((0.20005 / 0.10005) ** 2, rel=1e-3)


@pytest.mark.parametrize("bad", [-1, float("nan"), "warm", float("inf")])
def test_bad_temperature(bad):
    with pytest.raises(InputError, match="temperature"):
        check_temperature(bad)


@pytest.mark.parametrize("bad", [0, 11, 2.5, "x"])
def test_bad_orders(bad):
    with pytest.raises(InputError, match="orders"):
        check_orders(bad)


def test_one_phonon_function_is_zero_on_gain_side_at_zero_kelvin(sif4_ingredients):
    t1 = one_phonon_function(sif4_ingredients, 0.0, 1400)
    assert np.all(t1[:, :1400] == 0)
    assert np.all(t1[:, 1401:] >= 0) and t1.sum() > 0


@pytest.mark.parametrize("temperature", [0.0, 300.0])
def test_banks_sharing_orders_give_what_separate_calls_give(sif4_ingredients, temperature):
    # two "banks" of one instrument: different trajectories and resolutions, one cache
    ing = sif4_ingredients
    edges = np.arange(2.0, 140.0, 1.0)
    banks = [(lambda e: 0.3 + 0.1 * np.asarray(e), flat(1.0)),
             (lambda e: 1.0 + 0.2 * np.asarray(e), flat(1.0)),
             (lambda e: 1.0 + 0.2 * np.asarray(e), flat(2.5))]
    cache = {}
    shared = [compute_trajectory(ing, q, edges, w, temperature=temperature, orders=4,
                                 orders_cache=cache) for q, w in banks]
    alone = [compute_trajectory(ing, q, edges, w, temperature=temperature, orders=4)
             for q, w in banks]
    for a, b in zip(shared, alone):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    assert 1 <= len(cache) <= 2   # the first two banks have the same window: one entry


def test_cached_resolution_kernel_is_the_broadening_matrix(sif4_ingredients):
    from insnet_core import incoherent
    grid = np.arange(0.0, 80.0, 0.1)
    edges = np.arange(2.0, 70.0, 0.7)
    fwhm = 0.5 + 0.02 * grid
    first = incoherent._kernel(grid, fwhm, edges)
    want = incoherent.broadening_matrix(grid, fwhm, edges).T.toarray()
    np.testing.assert_array_equal(first.toarray(), want)
    assert incoherent._kernel(grid.copy(), fwhm.copy(), edges.copy()) is first   # reused
    other = incoherent._kernel(grid, fwhm * 1.5, edges)       # another resolution: its own
    assert other is not first
    assert not np.allclose(other.toarray(), want)
    # a spectrum computed with a cached kernel equals the first computation exactly
    q = lambda e: 0.5 + 0.1 * np.asarray(e)                   # noqa: E731
    a = compute_trajectory(sif4_ingredients, q, edges, flat(1.2), orders=3)
    b = compute_trajectory(sif4_ingredients, q, edges, flat(1.2), orders=3)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
