"""The 'neighbours' VISION route: the head blended with the nearest database crystals."""
import json
import shutil

import numpy as np
import pytest

from insnet_core.nn.card import ModelFileError
from insnet_core.nn.neighbours import NeighbourSet, fit


def _set(n=50, d=6, bins=119, seed=0):
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(n, d))
    spectra = rng.random((n, bins)) ** 4
    spectra /= spectra.max(axis=1, keepdims=True)
    return NeighbourSet(feats, spectra, [f"mp-{i}" for i in range(n)]), feats, spectra, rng


def test_nearest_matches_brute_force():
    ns, feats, _, rng = _set()
    q = rng.normal(size=(7, feats.shape[1]))
    idx, dist = ns.nearest(q, 3)
    z = (feats - feats.mean(0)) / (feats.std(0) + 1e-6)
    zq = (q - feats.mean(0)) / (feats.std(0) + 1e-6)
    brute = np.sqrt(((zq[:, None] - z[None]) ** 2).sum(-1) / feats.shape[1])
    np.testing.assert_array_equal(idx, np.argsort(brute, axis=1)[:, :3])
    np.testing.assert_allclose(dist, np.sort(brute, axis=1)[:, :3], rtol=1e-4, atol=1e-5)


def test_blend_limits():
    ns, feats, spectra, rng = _set()
    head = rng.random((4, 119))
    # on a training crystal with a = 1: its own spectrum; far from all: the sharpened head
    out, w, idx, dist = ns.blend(head[:1], feats[5:6], {"k": 1, "a": 1.0, "d0": 0.5,
                                                         "power": 1.3})
    assert idx[0, 0] == 5 and dist[0, 0] < 1e-3 and w[0] == pytest.approx(1.0, abs=1e-2)
    np.testing.assert_allclose(out[0], spectra[5], atol=1e-2)
    far = feats[:1] + 1e3
    out, w, _, _ = ns.blend(head[:1], far, {"k": 2, "a": 1.0, "d0": 0.5, "power": 1.3})
    assert w[0] < 1e-12
    np.testing.assert_allclose(out[0], (head[0] / head[0].max()) ** 1.3, atol=1e-9)
    assert out.max() == pytest.approx(1.0)


def test_fit_takes_neighbours_only_when_they_help():
    ns, feats, spectra, rng = _set(n=80)
    q = feats[:30] + rng.normal(scale=0.05, size=(30, feats.shape[1]))   # near crystals 0..29
    head = spectra[:30] * 0.5 + 0.5 * rng.random((30, 119))              # a blurred guess
    best, table = fit(ns, head, q, spectra[:30])                       # truth: the neighbour
    own = next(r for r in table if r["a"] == 0.0 and r["power"] == 1.0)
    assert best["a"] > 0 and table[0]["mse_median"] < 0.5 * own["mse_median"]
    # every candidate keeps the head's cosine and W1 (the selection rule)
    assert all(r["cosine_median"] >= own["cosine_median"] and
               r["w1_median"] <= own["w1_median"] for r in table)
    assert [r["mse_median"] for r in table] == sorted(r["mse_median"] for r in table)
    # truth = the head itself: nothing beats it, the head (a = 0, power 1) is kept
    best, table = fit(ns, head, q, head)
    assert best["a"] == 0.0 and best["power"] == 1.0 and table[0]["mse_median"] == 0.0


def test_a_crystal_of_the_set_can_be_left_out_of_its_own_search():
    ns, feats, spectra, rng = _set()
    idx, dist = ns.nearest(feats[[5, 9]], 2)
    assert list(idx[:, 0]) == [5, 9] and np.all(dist[:, 0] < 1e-3)
    left, ldist = ns.nearest(feats[[5, 9]], 2, exclude=["mp-5", None])
    assert 5 not in left[0] and left[0, 0] == idx[0, 1]     # the next nearest moves up
    np.testing.assert_array_equal(left[1], idx[1])           # None: nothing left out
    assert np.all(np.isfinite(ldist))
    out, _, bidx, _ = ns.blend(spectra[:1], feats[5:6], {"k": 1, "a": 1.0, "d0": 0.5,
                                                         "power": 1.0}, exclude=["mp-5"])
    assert bidx[0, 0] != 5 and not np.allclose(out[0], spectra[5], atol=1e-2)
    # fitting with the crystals' own ids is fitting on the others: own spectra are no help
    best, table = fit(ns, spectra[:30] * 0.5 + 0.25, feats[:30], spectra[:30],
                      exclude=[f"mp-{i}" for i in range(30)])
    cheat, _ = fit(ns, spectra[:30] * 0.5 + 0.25, feats[:30], spectra[:30])
    assert cheat["a"] == 1.0 and table[0]["mse_median"] > 0.01
    with pytest.raises(ValueError, match="exclude"):
        ns.nearest(feats[:2], 1, exclude=["mp-1"])


def test_save_load_round_trip_and_bad_file(tmp_path):
    ns, feats, spectra, _ = _set()
    ns.save(tmp_path)
    back = NeighbourSet.load(tmp_path, {"k": 2, "a": 0.5, "d0": 0.3, "power": 1.1})
    assert back.ids == ns.ids and back.params["k"] == 2
    np.testing.assert_allclose(back.spectra, spectra, atol=1e-3)      # float16 on disk
    (tmp_path / "neighbours.npz").write_bytes(b"not a zip")
    with pytest.raises(ModelFileError, match="neighbours.npz"):
        NeighbourSet.load(tmp_path, None)


@pytest.fixture(scope="module")
def model_with_neighbours(tiny_model, tmp_path_factory):
    from insnet_core.nn.neighbours import build
    from nn_helpers import database, small_ids
    folder = tmp_path_factory.mktemp("nb") / "tiny-nb"
    shutil.copytree(tiny_model, folder)
    card = build(database(), folder, log=lambda m: None, ids=small_ids(60, max_atoms=4))
    return folder, card


def test_build_records_the_fit(model_with_neighbours):
    folder, card = model_with_neighbours
    info = json.loads((folder / "card.json").read_text())["neighbours"]
    assert info == json.loads(json.dumps(card["neighbours"]))
    assert (folder / "neighbours.npz").exists() and info["training_crystals"] > 10
    # the default pool: every part of the split, fitted leave-one-out
    assert info["pool"] == "all" and info["leave_one_out"] is True
    assert set(info["crystals"]) == {"train", "validation", "test"}
    held = NeighbourSet.load(folder, info["params"]).ids
    assert len(held) == sum(info["crystals"].values())
    med = info["validation_medians"]
    assert med["neighbours"]["mse_median"] <= med["head"]["mse_median"]
    assert med["neighbours"]["w1_median"] <= med["head"]["w1_median"]


def test_a_training_only_pool_holds_the_training_crystals(tiny_model, tmp_path):
    from insnet_core.dataset.reader import SPLIT_SEED, split_of
    from insnet_core.nn.neighbours import build
    from nn_helpers import database, small_ids
    folder = tmp_path / "tiny-train-pool"
    shutil.copytree(tiny_model, folder)
    card = build(database(), folder, log=lambda m: None, ids=small_ids(60, max_atoms=4),
                 pool="train")
    info = card["neighbours"]
    assert info["pool"] == "train" and info["leave_one_out"] is False
    ids = NeighbourSet.load(folder, info["params"]).ids
    assert ids and all(split_of(m, SPLIT_SEED) == "train" for m in ids)
    with pytest.raises(ValueError, match="pool"):
        build(database(), folder, log=lambda m: None, ids=small_ids(60, max_atoms=4),
              pool="everything")


def test_predictor_route_names_the_nearest_crystal(model_with_neighbours):
    from insnet_core import InputError
    from insnet_core.nn.predictor import Predictor
    from insnet_core.simulate import Settings
    from nn_helpers import structure_of
    folder, card = model_with_neighbours
    pred = Predictor(folder)
    ns = pred.neighbours
    mid = ns.ids[0]                                 # a crystal of the set: distance 0
    s = structure_of(mid)
    vision = Settings.check("VISION")
    res = pred.simulate(s, vision, vision_route="neighbours")
    note = res.total.metadata["nearest_database_crystal"]
    assert res.total.metadata["vision_route"] == "neighbours"
    assert mid in note and "distance 0.000" in note
    assert np.all(np.isfinite(res.total.values)) and np.all(res.total.errors >= 0)
    head = pred.simulate(s, vision, vision_route="head")
    assert "nearest_database_crystal" not in head.total.metadata
    # the same integral (the partials route's scale) whatever the route
    avg = list(res.total.labels).index("average")
    assert np.nansum(res.total.values[avg]) == pytest.approx(np.nansum(head.total.values[avg]),
                                                             rel=1e-6)
    no_nb = folder.parent / "no-nb"
    shutil.copytree(folder, no_nb)
    c = json.loads((no_nb / "card.json").read_text())
    c.pop("neighbours")
    (no_nb / "card.json").write_text(json.dumps(c))
    with pytest.raises(InputError, match="neighbours.npz"):
        Predictor(no_nb).simulate(s, vision, vision_route="neighbours")


def test_route_through_predict_and_the_algorithm(model_with_neighbours, known):
    from mantid_helpers import algorithm_function
    from insnet_core import InputError
    from insnet_core.predict import find_problems, predict
    folder, _ = model_with_neighbours
    res = predict(known, method="ML", model=str(folder), instrument="VISION",
                  vision_route="neighbours")
    assert res.total.metadata["vision_route"] == "neighbours"
    alg = algorithm_function()
    ws = alg(InputFile=str(known), Method="ML", Model=str(folder), Instrument="VISION",
             VisionRoute="Head", OutputWorkspace="nb_head")
    assert ws.getRun().getProperty("vision_route").value == "head"
    ws = alg(InputFile=str(known), Method="ML", Model=str(folder), Instrument="VISION",
             VisionRoute="Neighbours", OutputWorkspace="nb_nb")
    run = ws.getRun()
    assert run.getProperty("vision_route").value == "neighbours"
    assert "nearest database crystal mp-" in run.getProperty("nearest_database_crystal").value
    # a route that cannot apply is named, never dropped
    problems = find_problems(known, method="ML", model=str(folder), instrument="SEQUOIA",
                             ei=160.0, vision_route="head")
    assert "VISION only" in problems["vision_route"]
    with pytest.raises(InputError, match="vision_route: VISION route must be one of"):
        predict(known, method="ML", model=str(folder), vision_route="nearest")
    with pytest.raises(Exception, match="VisionRoute"):
        alg(InputFile=str(known), Method="ML", Model=str(folder), Instrument="SEQUOIA",
            IncidentEnergy=160.0, VisionRoute="Head", OutputWorkspace="nb_bad")


def test_neighbours_route_needs_the_file(tiny_model, known):
    from insnet_core import InputError
    from insnet_core.predict import predict
    with pytest.raises(InputError, match="no nearest-crystal data"):
        predict(known, method="ML", model=str(tiny_model), vision_route="neighbours")


def test_route_is_invariant_under_supercell_and_rotation(model_with_neighbours, known):
    import itertools
    from insnet_core.nn.predictor import Predictor
    from insnet_core.simulate import Settings
    from insnet_core.structure import Structure, read_structure
    from nn_helpers import random_rotation
    folder, _ = model_with_neighbours
    pred = Predictor(folder)
    s = read_structure(known)
    cells = np.array(list(itertools.product(range(2), repeat=3)))
    frac = np.concatenate([(s.frac_coords + c) / 2.0 for c in cells])
    big = Structure.from_arrays(2 * s.lattice, list(s.species) * 8, frac, source="2x2x2")
    turned = Structure.from_arrays(s.lattice @ random_rotation(5).T, list(s.species),
                                   s.frac_coords, source="rotated")
    vision = Settings.check("VISION")
    ref = pred.simulate(s, vision, vision_route="neighbours").total
    for other, per_cell in ((big, 8.0), (turned, 1.0)):
        got = pred.simulate(other, vision, vision_route="neighbours").total
        assert got.metadata["nearest_database_crystal"].split(" (")[0] == \
            ref.metadata["nearest_database_crystal"].split(" (")[0]
        np.testing.assert_allclose(got.values / per_cell, ref.values, rtol=2e-4,
                                   atol=2e-4 * np.nanmax(ref.values))


def test_evaluate_scores_the_route_and_may_make_it_the_default(model_with_neighbours,
                                                                tmp_path):
    from insnet_core.nn.evaluate import evaluate, summarise, update_cards
    from nn_helpers import database
    folder, _ = model_with_neighbours
    work = tmp_path / folder.name
    shutil.copytree(folder, work)
    result = evaluate(database(), [work], part="test", limit=6, log=lambda m: None)
    name = json.loads((work / "card.json").read_text())["name"]
    assert {f"{name}:head", f"{name}:neighbours", f"{name}:partials"} <= set(result["routes"])
    s = summarise(result)
    assert s[f"{name}:neighbours"]["all"]["n"] == 6
    update_cards(result, [work])
    card = json.loads((work / "card.json").read_text())
    med = {r: s[f"{name}:{r}"]["all"]["mse"]["median"] for r in ("head", "neighbours",
                                                                     "partials")}
    assert card["default_vision_route"] == min(med, key=med.get)
    assert "neighbours" in card["default_vision_route_reason"]


def test_structure_far_from_the_training_crystals_is_warned(model_with_neighbours, tmp_path,
                                                            known):
    from insnet_core.nn.predictor import Predictor
    from insnet_core.simulate import Settings
    from insnet_core.structure import read_structure
    folder, card = model_with_neighbours
    q = card["neighbours"]["validation_distance_quantiles"]
    assert 0 <= q["q50"] <= q["q90"] <= q["q99"]
    s = read_structure(known)
    pred = Predictor(folder)
    res = pred.simulate(s, Settings.check("VISION"))
    d = pred.neighbours.nearest(pred.raw([s])[0]["neighbour_features"][None], 1)[1][0, 0]
    warned = "far from every database crystal" in res.total.metadata.get("warnings", "")
    assert warned == (d > q["q99"])                   # warned exactly when it is that far
    strict = tmp_path / "strict"
    shutil.copytree(folder, strict)
    c = json.loads((strict / "card.json").read_text())
    c["neighbours"]["validation_distance_quantiles"]["q99"] = 1e-9   # everything is far
    (strict / "card.json").write_text(json.dumps(c))
    for inst in ("VISION", "Ideal2D"):                 # every instrument, every route
        res = Predictor(strict).simulate(s, Settings.check(inst))
        assert "far from every database crystal" in res.total.metadata["warnings"]
        assert "extrapolation" in res.total.metadata["warnings"]
