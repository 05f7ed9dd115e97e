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


def test_reconstruction_table_scores_coders_on_the_same_maps():
    rng = np.random.default_rng(5)
    basis = rng.random((2, 300, 300)).astype(np.float32)
    maps = mapdata.unbrighten(np.einsum("nk,kqe->nqe", rng.uniform(0.2, 0.4, (10, 2)), basis))
    maps = mapdata.max_normalise(maps)
    pca = mapdata.PCABaseline.fit(maps, n=2, chunk=4)
    rows = mapdata.reconstruction_table(maps, {
        "pca": (pca.project, pca.decode, pca.nbytes, 2),
        "zeros": (lambda x: np.zeros((len(x), 1)), lambda c: np.zeros((len(c), 300, 300)), 1, 0),
    }, log=lambda m: None)
    assert rows[0]["mse"]["median"] < 1e-4 and rows[0]["cosine"]["median"] > 0.999
    assert rows[1]["mse"]["median"] > 0.05 and rows[1]["cosine"]["median"] == 0.0
    text = mapdata.reconstruction_markdown(rows)
    assert text.count("\n") == 3 and "| pca | 10 |" in text


def test_cli_maps_build_pca_train_evaluate(tmp_path, capsys):
    import json
    from insnet_core.cli import main
    from nn_helpers import DB_ROOT
    cache = tmp_path / "maps"
    assert main(["maps", "build", "--db", str(DB_ROOT), "--out", str(cache), "--limit", "60"]) == 0
    assert main(["maps", "pca", "--cache", str(cache), "--out", str(tmp_path / "pca.npz"),
                 "--components", "3"]) == 0
    assert main(["maps", "train", "--cache", str(cache), "--out", str(tmp_path / "ae"),
                 "--channels", "2,4,4,4,4", "--max-maps", "8", "--epochs", "1",
                 "--threads", "1"]) == 0
    card = json.loads((tmp_path / "ae" / "card.json").read_text())
    assert card["onnx"]["opset"] == 17 and (tmp_path / "ae" / "decoder.onnx").is_file()
    assert card["split"]["train"] == 8
    capsys.readouterr()
    assert main(["maps", "evaluate", "--cache", str(cache), "--pca", str(tmp_path / "pca.npz"),
                 "--models", str(tmp_path / "ae"), "--part", "validation", "--threads", "1",
                 "--json", str(tmp_path / "rec.json")]) == 0
    out = capsys.readouterr().out
    assert "PCA-3" in out and "conv AE, ONNX" in out
    rows = json.loads((tmp_path / "rec.json").read_text())["rows"]
    assert len(rows) == 2 and all(0 <= r["mse"]["median"] < 1 for r in rows)
