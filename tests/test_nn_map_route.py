"""The AE map route: a tiny route trained on the committed database, used through predict."""
import json

import numpy as np
import pytest

from insnet_core import InputError
from nn_helpers import DB_ROOT


@pytest.fixture(scope="module")
def route(tiny_model, tmp_path_factory):
    """(models folder holding maps/tiny-route, route folder) trained in seconds."""
    from insnet_core.cli import main
    root = tmp_path_factory.mktemp("route")
    cache, coder = root / "maps", root / "pca-coder"
    assert main(["maps", "build", "--db", str(DB_ROOT), "--out", str(cache), "--limit",
                 "80"]) == 0
    assert main(["maps", "pca", "--cache", str(cache), "--out", str(root / "pca.npz"),
                 "--components", "4", "--onnx", str(coder)]) == 0
    models = root / "models"
    folder = models / "maps" / "tiny-route"
    assert main(["maps", "route", "--cache", str(cache), "--db", str(DB_ROOT), "--model",
                 str(tiny_model), "--coder", str(coder), "--out", str(folder), "--heads", "2",
                 "--threads", "1"]) == 0
    return models, folder, cache


@pytest.fixture()
def shipped(route, monkeypatch):
    """predict() sees the tiny route as if it shipped in models/maps."""
    import insnet_core.predict as predict_module
    monkeypatch.setattr(predict_module, "_MODELS_DIR", route[0])
    return route[1]


def test_route_folder_card_and_files(route, tiny_model):
    from insnet_core.nn.map_route import ROUTE_CARD_FORMAT, MapRoute
    folder = route[1]
    card = json.loads((folder / "card.json").read_text())
    assert card["format_version"] == ROUTE_CARD_FORMAT and card["kind"] == "ae-route"
    assert card["predictor"] == json.loads((tiny_model / "card.json").read_text())["name"]
    assert card["coder"]["kind"] == "pca" and card["coder"]["latents"] == 4
    assert card["head"]["count"] == 2 and card["training"]["train_crystals"] > 10
    assert card["sigma_scale"] > 0
    for name in ("encoder.onnx", "decoder.onnx", "heads.safetensors"):
        assert (folder / name).is_file()
    r = MapRoute(folder)
    assert len(r.heads) == 2 and r.orders == card["orders"]


def test_bad_route_folders_are_named(route, tmp_path):
    import shutil
    from insnet_core.nn.card import ModelFileError
    from insnet_core.nn.map_route import MapRoute
    bad = tmp_path / "bad"
    shutil.copytree(route[1], bad)
    card = json.loads((bad / "card.json").read_text())
    (bad / "card.json").write_text(json.dumps(dict(card, format_version=99)))
    with pytest.raises(ModelFileError, match="format"):
        MapRoute(bad)
    (bad / "card.json").write_text(json.dumps(dict(card, map_grid={"q_edges": [0, 10, 200]})))
    with pytest.raises(ModelFileError, match="map_grid"):
        MapRoute(bad)
    (bad / "card.json").write_text(json.dumps(card))
    (bad / "heads.safetensors").unlink()
    with pytest.raises(ModelFileError, match="heads are missing"):
        MapRoute(bad)


def test_ae_route_ideal_map_has_the_engine_maps_scale(route, tiny_model, known):
    from insnet_core.nn.map_route import MapRoute, route_inputs
    from insnet_core.nn.predictor import Predictor
    from insnet_core.structure import read_structure
    r, pred = MapRoute(route[1]), Predictor(tiny_model)
    s = read_structure(known)
    raw = pred.raw([s], features=True)[0]
    ideal, _ = r.ideal_map(s, pred, raw)
    _, p0, _ = route_inputs(pred, [s], [raw], r.orders)[0]
    assert ideal.values.shape == (300, 300)
    assert ideal.values.sum() == pytest.approx(np.nansum(p0.values), rel=1e-6)
    assert np.all(ideal.errors >= 0) and ideal.errors.max() > 0
    assert ideal.metadata["map_route"] == "ae"


def test_predict_sequoia_through_the_ae_route(shipped, tiny_model, known):
    from insnet_core.predict import predict
    result = predict(known, method="ML", model=str(tiny_model), instrument="SEQUOIA", ei=160.0,
                     temperature=5.0, map_route="ae")
    total = result.total
    assert total.metadata["map_route"] == "ae" and total.metadata["map_route_model"] == \
        "tiny-route"
    assert result.by_element == {} and result.by_order == {}
    inst = result.total.metadata["instrument"]
    assert inst == "SEQUOIA"
    from insnet_core.instruments import get_instrument
    seq = get_instrument("SEQUOIA", ei=160.0)
    qc, ec = total.q_centres, total.energy_centres
    reach = seq.measurable(qc[:, None], ec[None, :])
    assert np.all(np.isnan(total.values[~reach]))               # outside SEQUOIA's reach
    beyond = (total.energy_edges[1:] > 150.0)[None, :] & reach    # beyond the ideal grid
    assert beyond.any() and np.all(np.isnan(total.values[beyond]))
    inside = reach & ~beyond & (total.q_edges[1:] <= 15.0)[:, None]
    assert np.all(np.isfinite(total.values[inside])) and np.nanmax(total.values) > 0
    assert "beyond the ideal grid" in total.metadata["beyond_ideal_grid"]
    assert total.metadata["phonon_orders"] == json.loads(
        (shipped / "card.json").read_text())["orders"]
    two = predict(known, method="ML", model=str(tiny_model), instrument="Ideal2D",
                  temperature=0.0, orders=2, map_route="ae").total
    assert "orders 2 requested" in two.metadata["phonon_orders_note"]
    # the partials route on the same request stays the default
    default = predict(known, method="ML", model=str(tiny_model), instrument="SEQUOIA",
                      ei=160.0, temperature=5.0)
    assert default.total.metadata["map_route"] == "partials" and default.by_element


def test_map_route_problems_are_named(shipped, tiny_model, known, monkeypatch, tmp_path):
    import insnet_core.predict as predict_module
    from insnet_core.predict import find_problems
    common = dict(method="ML", model=str(tiny_model))
    assert "map_route" in find_problems(known, instrument="VISION", map_route="ae", **common)
    msg = find_problems(known, instrument="Ideal2D", map_route="sideways", **common)
    assert "partials, ae" in msg["map_route"]
    assert "Method 'ML'" in find_problems(known, method="Physics", instrument="Ideal2D",
                                          map_route="ae")["map_route"]
    monkeypatch.setattr(predict_module, "_MODELS_DIR", tmp_path)  # nothing shipped
    msg = find_problems(known, instrument="Ideal2D", map_route="ae", **common)["map_route"]
    assert "no AE route model is shipped" in msg
    with pytest.raises(InputError, match="map_route"):
        predict_module.plan(known, instrument="Ideal2D", map_route="ae", **common)


def test_cli_route_option_and_contributions(shipped, tiny_model, known, tmp_path, capsys):
    from insnet_core.cli import main
    out = tmp_path / "ae.nxs"
    assert main(["predict", str(known), "--model", str(tiny_model), "--instrument", "ideal2d",
                 "--route", "ae", "--temperature", "0", "-o", str(out), "--quiet"]) == 0
    assert out.is_file()
    assert main(["predict", str(known), "--model", str(tiny_model), "--instrument", "ideal2d",
                 "--route", "ae", "--contributions", "element", "-o", str(tmp_path / "e.nxs"),
                 "--quiet"]) == 2
    assert "total only" in capsys.readouterr().err


def test_predict_ins_from_cif_map_route(shipped, tiny_model, known):
    from mantid.api import AnalysisDataService
    from mantid_helpers import algorithm_function
    alg = algorithm_function()
    ws = alg(InputFile=str(known), Method="ML", Model=str(tiny_model), Instrument="SEQUOIA",
             IncidentEnergy=160.0, MapRoute="AE", OutputWorkspace="ae_out")
    assert ws.getRun().getProperty("map_route").value == "ae"
    values = np.array([ws.readY(i) for i in range(ws.getNumberHistograms())])
    assert np.isnan(values).any() and np.nanmax(values) > 0
    with pytest.raises(Exception, match="total only"):
        alg(InputFile=str(known), Method="ML", Model=str(tiny_model), Instrument="SEQUOIA",
            IncidentEnergy=160.0, MapRoute="AE", Contributions="ByElement",
            OutputWorkspace="ae_group")
    AnalysisDataService.clear()


def test_maps_routes_scores_an_ae_route(route, tiny_model, capsys, tmp_path):
    import shutil
    from insnet_core.cli import main
    out = tmp_path / "routes.json"
    folder = tmp_path / "tiny-route"
    shutil.copytree(route[1], folder)
    assert main(["maps", "routes", "--cache", str(route[2]), "--db", str(DB_ROOT), "--model",
                 str(tiny_model), "--limit", "2", "--routes", str(folder), "--json",
                 str(out), "--write-cards"]) == 0
    rows = json.loads(out.read_text())["rows"]
    names = [r["name"] for r in rows]
    assert names[0].startswith("AE route tiny-route") and "ceiling" in names[1]
    assert names[2].startswith("partials") and names[3].startswith("mean")
    assert all(r["n"] == 2 for r in rows)
    card = json.loads((folder / "card.json").read_text())
    ae, partials = rows[0]["mse"], rows[2]["mse"]
    wins = ae["median"] < partials["median"] and ae["q3"] < partials["q3"]
    assert card["default_map_route"] == ("ae" if wins else "partials")
    assert f"{ae['median']:.5f}" in card["default_map_route_reason"]
    assert card["end_to_end"]["crystals"] == 2 and len(card["end_to_end"]["rows"]) == 4


def test_live_overlay_with_the_ae_route(shipped, tiny_model, known):
    from insnet_core.live import LiveOverlay, PredictionCache
    overlay = LiveOverlay(known, method="ML", model=str(tiny_model), instrument="SEQUOIA",
                          ei=100.0, temperature=5.0, cache=PredictionCache(), map_route="ae")
    e = np.linspace(-20.0, 80.0, 101)
    q = np.linspace(0.0, 6.0, 61)
    first = overlay.overlay_for((e, q, "meV"))
    assert first.metadata["map_route"] == "ae"
    assert np.array_equal(first.energy_edges, e) and np.nanmax(first.values) > 0
    partials = LiveOverlay(known, method="ML", model=str(tiny_model), instrument="SEQUOIA",
                           ei=100.0, temperature=5.0, cache=overlay.cache)
    assert partials.overlay_for((e, q, "meV")).metadata["map_route"] == "partials"


def test_the_default_map_route_follows_the_route_card(route, tiny_model, known, monkeypatch,
                                                      tmp_path):
    import shutil
    import insnet_core.predict as predict_module
    models = tmp_path / "models"
    folder = models / "maps" / "tiny-route"
    shutil.copytree(route[1], folder)
    monkeypatch.setattr(predict_module, "_MODELS_DIR", models)
    plan = dict(method="ML", model=str(tiny_model), instrument="Ideal2D")
    assert predict_module.default_map_route() == "partials"   # no choice recorded: partials
    assert predict_module.plan(known, **plan).map_route == "partials"
    card = json.loads((folder / "card.json").read_text())
    (folder / "card.json").write_text(json.dumps(dict(card, default_map_route="ae")))
    assert predict_module.default_map_route() == "ae"
    request = predict_module.plan(known, **plan)
    assert request.map_route == "ae" and request.map_route_model == str(folder)
    # VISION is 1D: the map route does not apply and is not an error
    assert predict_module.plan(known, method="ML", model=str(tiny_model)).map_route is None
