"""The 2D route's data: split, brightening, metrics and the resumable map cache."""
import numpy as np
import pytest

from insnet_core import InputError
from insnet_core.nn import mapdata
from nn_helpers import database, small_ids


def test_split_keeps_the_predictor_test_crystals_out_of_autoencoder_training():
    from insnet_core.dataset.reader import split_of
    ids = database().ids()
    parts = mapdata.ae_split(ids)
    n = len(ids)
    assert sum(len(v) for v in parts.values()) == n
    for m in parts["train"] + parts["validation"] + parts["test"]:
        assert split_of(m) != "test"
    assert all(split_of(m) == "test" for m in parts["predictor-test"])
    rest = n - len(parts["predictor-test"])
    for part, frac in mapdata.AE_FRACTIONS.items():   # 94 / 5 / 1 of the others
        assert len(parts[part]) / rest == pytest.approx(frac, abs=0.01)
    assert mapdata.ae_split(ids) == parts              # seeded: the same every time


def test_brightening_is_the_reference_curve_and_inverts():
    x = np.linspace(0, 1, 101)
    y = mapdata.brighten(x)
    np.testing.assert_allclose(y, 1 - (1 - x) ** 3)
    assert y[1] == pytest.approx(3 * x[1], rel=0.02)   # weak features x3
    np.testing.assert_allclose(mapdata.unbrighten(y), x, atol=1e-12)


def test_map_metrics():
    rng = np.random.default_rng(0)
    a = rng.random((3, 300, 300))
    m = mapdata.map_metrics(a, 5 * a)                  # max-normalised: scale does not count
    np.testing.assert_allclose(m["mse"], 0, atol=1e-12)
    np.testing.assert_allclose(m["cosine"], 1)
    m = mapdata.map_metrics(a, rng.random((3, 300, 300)))
    assert np.all(m["mse"] > 0.05) and np.all(m["cosine"] < 0.9)


def test_map_cache_builds_resumes_and_equals_regenerate(tmp_path):
    db = database()
    ids = small_ids(5, max_atoms=3)
    cache = mapdata.build_map_cache(db, tmp_path / "maps", ids=ids, chunk=2,
                                    log=lambda m: None, limit_seconds=0)
    assert not cache.complete and cache.done.sum() == 2   # stopped after the first chunk
    with pytest.raises(InputError, match="not built yet"):
        cache.get(ids)
    cache = mapdata.build_map_cache(db, tmp_path / "maps", ids=ids, chunk=2, log=lambda m: None)
    assert cache.complete
    got = cache.get(ids[::-1])
    for k, m in enumerate(ids[::-1]):
        want = mapdata.max_normalise(db.regenerate(m, "map").values)
        np.testing.assert_allclose(got[k], want, atol=1e-3, rtol=2e-3)  # float16
        assert got[k].max() == pytest.approx(1.0)
    with pytest.raises(InputError, match="another database or crystal list"):
        mapdata.build_map_cache(db, tmp_path / "maps", ids=ids[:2], log=lambda m: None)


def test_pca_reconstructs_maps_made_of_few_components(tmp_path):
    rng = np.random.default_rng(4)
    basis = rng.random((3, 300, 300)).astype(np.float32)
    # brightened maps that lie in a 3-dimensional affine space
    y = np.einsum("nk,kqe->nqe", rng.uniform(0.1, 0.3, (40, 3)), basis)
    maps = mapdata.unbrighten(y)
    pca = mapdata.PCABaseline.fit(maps, n=3, chunk=16)
    back = mapdata.unbrighten(pca.decode(pca.encode(maps)))
    assert np.abs(back - maps).max() < 1e-3
    pca.save(tmp_path / "pca.npz")
    again = mapdata.PCABaseline.load(tmp_path / "pca.npz")
    np.testing.assert_array_equal(again.components, pca.components)
    assert pca.nbytes == 4 * 4 * 90000
    few = mapdata.PCABaseline.fit(maps, n=1, chunk=16)
    worse = mapdata.unbrighten(few.decode(few.encode(maps)))
    assert np.abs(worse - maps).max() > 1e-2          # fewer components than the data needs
