"""End-to-end map routes: the partials route's maps against the true maps, and the mean map."""
import numpy as np
import pytest

from insnet_core.nn import map_routes, mapdata
from nn_helpers import DB_ROOT, database


def test_mean_map_and_route_table():
    rng = np.random.default_rng(0)
    maps = mapdata.max_normalise(rng.random((6, 300, 300)))
    mean = map_routes.mean_map(maps.astype(np.float16))
    assert mean.shape == (300, 300) and mean.max() == pytest.approx(1.0)
    rows = map_routes.route_table(maps, {"exact": maps, "mean": mean})
    assert rows[0]["mse"]["median"] == 0.0 and rows[0]["cosine"]["median"] == pytest.approx(1)
    assert rows[1]["mse"]["median"] > 0
    assert "| exact | 6 |" in map_routes.route_markdown(rows)


def test_partials_route_maps_come_from_the_predictor(tiny_model, tmp_path, capsys):
    import json
    from insnet_core.cli import main
    from insnet_core.nn.predictor import Predictor
    from insnet_core.simulate import Settings
    cache = tmp_path / "maps"
    assert main(["maps", "build", "--db", str(DB_ROOT), "--out", str(cache), "--limit", "80"]) == 0
    capsys.readouterr()
    assert main(["maps", "routes", "--cache", str(cache), "--db", str(DB_ROOT), "--model",
                 str(tiny_model), "--limit", "2", "--json", str(tmp_path / "r.json")]) == 0
    out = json.loads((tmp_path / "r.json").read_text())
    assert len(out["ids"]) == 2 and [r["name"].split()[0] for r in out["rows"]] == [
        "partials", "mean"]
    assert all(r["n"] == 2 for r in out["rows"])
    # the route's map is the predictor's Ideal2D map, max-normalised
    db = database()
    mid = out["ids"][0]
    maps, _ = map_routes.partials_route_maps(db, tiny_model, [mid], log=lambda m: None)
    pred = Predictor(tiny_model)
    s = db.structure(mid)
    direct = pred.simulate(s, Settings.check("Ideal2D", orders=db.config.orders,
                                             temperature=0.0)).total.values
    np.testing.assert_allclose(maps[0], mapdata.max_normalise(direct), atol=1e-6)
