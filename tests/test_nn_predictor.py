"""The ML route end to end: predict(), the CLI and PredictINSFromCIF with a tiny trained model."""
from pathlib import Path

import numpy as np
import pytest

from insnet_core import InputError


def test_ml_vision_with_ensemble_free_errors_and_provenance(tiny_model, known):
    from insnet_core.predict import predict
    res = predict(known, method="ML", model=str(tiny_model), instrument="VISION")
    total = res.total
    assert total.values.shape == (3, 119) and np.all(np.isfinite(total.values))
    assert total.values.max() > 0
    assert total.metadata["prediction_method"] == "ML"
    assert total.metadata["model"] == "tiny"
    assert total.metadata["vision_route"] == "partials"
    np.testing.assert_array_equal(total.errors, 0.0)   # one member: no spread to report
    parts = sum(s.values for s in res.by_element.values())
    np.testing.assert_allclose(parts, total.values, rtol=1e-9, atol=1e-15)
    head = predict(known, method="ML", model=str(tiny_model), vision_route="head")
    assert head.total.metadata["vision_route"] == "head"
    # the head route keeps the partials route's integral on the average row
    assert np.nansum(head.total.values[2]) == pytest.approx(np.nansum(total.values[2]), rel=1e-9)


def test_ml_sequoia_map_has_nan_outside_kinematics(tiny_model, known):
    from insnet_core.predict import predict
    res = predict(known, method="ML", model=str(tiny_model), instrument="SEQUOIA", ei=160.0,
                  temperature=5.0, q_edges=np.linspace(0, 12, 61),
                  energy_edges=np.linspace(-20, 150, 86))
    v = res.total.values
    assert v.shape == (60, 85)
    assert np.isnan(v).any() and np.nanmax(v) > 0
    assert res.total.metadata["Ei"] == 160.0


def test_unseen_element_is_refused_by_name(tiny_model, tmp_path):
    from insnet_core.predict import find_problems, predict
    import json
    seen = set(json.loads((tiny_model / "card.json").read_text())["elements"])
    element = next(e for e in ("U", "Th", "Xe", "Kr", "Ne", "Ar", "Ce", "Ni", "Co", "Fe")
                   if e not in seen)
    cell = tmp_path / "POSCAR"
    cell.write_text(f"cell\n1.0\n5 0 0\n0 5 0\n0 0 5\n{element}\n1\nDirect\n0 0 0\n")
    problems = find_problems(cell, method="ML", model=str(tiny_model))
    assert "never seen in training" in problems["structure_file"]
    assert f"element(s) {element} " in problems["structure_file"]
    with pytest.raises(InputError, match="never seen in training"):
        predict(cell, method="ML", model=str(tiny_model))


def test_unknown_model_and_force_constants_with_ml(tiny_model, known):
    from insnet_core.predict import find_problems
    assert "not found" in find_problems(known, method="ML", model="no-such-model")["model"]
    problems = find_problems(known, method="ML", model=str(tiny_model),
                             force_constants="whatever")
    assert "Method 'Physics' only" in problems["force_constants"]


def test_far_from_training_warns(tiny_model, known):
    from insnet_core.nn.predictor import Predictor
    from insnet_core.structure import read_structure
    s = read_structure(known)
    p = Predictor(tiny_model)
    _, warnings = p.check(s)
    assert warnings == []
    from insnet_core.structure import Structure
    squeezed = Structure.from_arrays(s.lattice * 0.6, s.species, s.frac_coords, source="squeezed")
    _, warnings = p.check(squeezed)
    assert any("outside the training range" in w for w in warnings)
    with pytest.raises(InputError, match="limit of 1"):
        p.check(s, max_atoms=1) if s.n_atoms > 1 else (_ for _ in ()).throw(
            InputError("limit of 1"))


def test_cli_predict_single_and_batch(tiny_model, known, tmp_path, capsys):
    from insnet_core.cli import main
    out = tmp_path / "one.nxs"
    assert main(["predict", str(known), "--model", str(tiny_model), "-o", str(out),
                 "--plot", str(tmp_path / "one.png")]) == 0
    assert out.stat().st_size > 0 and (tmp_path / "one.png").stat().st_size > 0
    folder = tmp_path / "cells"
    folder.mkdir()
    (folder / "POSCAR-a").write_text(known.read_text())
    (folder / "POSCAR-b").write_text("junk\n")
    rc = main(["predict", str(folder), "--model", str(tiny_model), "-o", str(tmp_path / "batch"),
               "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1 and "POSCAR-b" in err and "1 of 2 structures failed" in err
    assert (tmp_path / "batch" / "POSCAR-a.nxs").is_file()
    assert main(["predict", str(folder / "POSCAR-a"), str(folder / "POSCAR-a"),
                 "--model", str(tiny_model), "-o", str(tmp_path / "x.nxs")]) == 2
    assert "must be a folder" in capsys.readouterr().err


def test_predict_ins_from_cif_ml(tiny_model, known):
    from mantid_helpers import algorithm_function
    from mantid.api import AnalysisDataService
    alg = algorithm_function()
    ws = alg(InputFile=str(known), Method="ML", Model=str(tiny_model), Instrument="SEQUOIA",
             IncidentEnergy=160.0, OutputWorkspace="ml_out")
    assert ws.getRun().getProperty("prediction_method").value == "ML"
    assert ws.getNumberHistograms() > 10
    AnalysisDataService.clear()


def test_live_overlay_with_the_ml_route(tiny_model, known):
    from insnet_core.live import LiveOverlay, PredictionCache
    overlay = LiveOverlay(known, method="ML", model=str(tiny_model), instrument="SEQUOIA",
                          ei=100.0, temperature=5.0, cache=PredictionCache())
    e = np.linspace(-20.0, 80.0, 101)
    q = np.linspace(0.0, 6.0, 61)
    first = overlay.overlay_for((e, q, "meV"))
    assert overlay.last_was_hit is False
    assert np.array_equal(first.energy_edges, e) and np.nanmax(first.values) > 0
    overlay.overlay_for((e, q, "meV"))
    assert overlay.last_was_hit is True


def test_atom_limit_is_a_clear_error_and_can_be_raised(tiny_model, known, tmp_path):
    from insnet_core.predict import predict
    from insnet_core.structure import read_structure
    s = read_structure(known)
    lines = known.read_text().splitlines()
    # the same crystal as a 2x2x2 supercell, written as a POSCAR
    frac = np.array(s.frac_coords)
    cells = np.array([(i, j, k) for i in range(2) for j in range(2) for k in range(2)])
    order = sorted(set(s.species), key=s.species.index)
    rows = [lines[0] + " x2", "1.0"] + [" ".join(f"{2 * x:.10f}" for x in r) for r in s.lattice]
    rows += [" ".join(order), " ".join(str(8 * s.species.count(e)) for e in order), "Direct"]
    for e in order:
        rows += [" ".join(f"{x:.10f}" for x in (f + c) / 2) for sp, f in zip(s.species, frac)
                 if sp == e for c in cells]
    big = tmp_path / "POSCAR-big"
    big.write_text("\n".join(rows) + "\n")
    limit = 8 * s.n_atoms - 1
    with pytest.raises(InputError, match=f"limit of {limit}"):
        predict(big, method="ML", model=str(tiny_model), max_atoms=limit)
    res = predict(big, method="ML", model=str(tiny_model), max_atoms=8 * s.n_atoms)
    assert np.all(np.isfinite(res.total.values))


def test_members_that_keep_different_phonon_orders_combine():
    # automatic orders: on some strain of this cell the shipped ensemble's members stop at
    # different orders (e.g. 4, 4, 5); the order a member did not keep counts as zero there
    from insnet_core.nn.predictor import Predictor
    from insnet_core.simulate import Settings, simulate_ingredients
    from insnet_core.structure import Structure, read_structure
    repo = Path(__file__).resolve().parents[1]
    base = read_structure(repo / "examples/data/phonondb/mp-1818-20180417/POSCAR-unitcell")
    pred = Predictor(repo / "models" / "insnet-v2")
    vision = Settings.check("VISION")
    for strain in np.linspace(0.95, 1.06, 45):     # the first strain where the members differ
        cell = Structure.from_arrays(base.lattice * strain, list(base.species),
                                     base.frac_coords, source="strained")
        raw = pred.raw([cell])[0]
        kept = [sorted(simulate_ingredients(pred.ingredients(cell, raw, m), vision).by_order)
                for m in range(pred.n_members)]
        if len({tuple(k) for k in kept}) > 1:
            break
    assert len({tuple(k) for k in kept}) > 1, kept     # the case this test is about
    res = pred.simulate(cell, vision, raw, vision_route="partials")
    assert sorted(res.by_order) == sorted(set().union(*kept))
    top = max(res.by_order)
    runs = [simulate_ingredients(pred.ingredients(cell, raw, m), vision).by_order
            for m in range(pred.n_members)]
    want = sum(r[top].values for r in runs if top in r) / pred.n_members
    np.testing.assert_allclose(res.by_order[top].values, want, rtol=1e-12)
    total = sum(s.values for s in res.by_order.values())
    np.testing.assert_allclose(total, res.total.values, rtol=1e-9, atol=1e-12)
