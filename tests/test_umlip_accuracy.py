"""The uMLIP accuracy study's sampling, scale fit and report (no potential is run here)."""
import json

import numpy as np
import pytest

from insnet_core import umlip_accuracy as ua
from nn_helpers import database


def test_hydrogen_sample_holds_only_hydrogen_crystals_within_the_size_limit():
    db = database()
    ids = ua.choose_crystals(db, "test", 5, 16, hydrogen=True)
    assert len(ids) == 5
    for m in ids:
        rec = db.record(m)
        assert rec["contains_h"] and rec["n_atoms"] <= 16
        assert m in db.split("test")
    # nested: asking for one more keeps the first ones
    assert set(ids) <= set(ua.choose_crystals(db, "test", 6, 16, hydrogen=True))


def test_scale_is_the_geometric_mean_energy_ratio():
    rows = [{"potential": "p", "relax": "atoms", "mean_energy_dft": 10.0, "mean_energy_route": 8.0},
            {"potential": "p", "relax": "atoms", "mean_energy_dft": 10.0, "mean_energy_route": 5.0},
            {"potential": "p", "relax": "atoms", "error": "failed"}]
    assert ua.fit_scales(rows)["p/atoms"] == pytest.approx(np.sqrt(1.25 * 2.0))


def _fake_measure(db, mid, potential, relax, cache_dir, scale=None, general_scale=None):
    """A route whose energies are 0.8 of DFT's for H-free and 0.5 for H crystals."""
    rec = db.record(mid)
    soft = 0.5 if rec["contains_h"] else 0.8
    true = np.asarray(rec["vision"][2], dtype=float)
    row = {"material_id": mid, "potential": potential, "relax": relax,
           "n_atoms": int(rec["n_atoms"]), "dft_unstable": bool(rec["has_imaginary"]),
           "contains_h": bool(rec["contains_h"]), "seconds": 1.0, "converged": True,
           "spacegroup_kept": True, "volume_change_percent": 0.0, "route_unstable": False,
           "imaginary_at_gamma": False, "mean_energy_route": 10.0 * soft,
           "mean_energy_dft": 10.0, "vision": np.roll(true, 3).tolist(),
           "vision_dft": true.tolist()}
    if scale is not None:
        row["scale"] = scale
        row["vision_scaled"] = true.tolist()
    if general_scale is not None:
        row["scale_general"] = general_scale
        row["vision_general"] = np.roll(true, 1).tolist()
    return row


def test_hydrogen_parts_get_their_own_scale_and_section(tmp_path, monkeypatch):
    monkeypatch.setattr(ua, "measure_crystal", _fake_measure)
    db = database()
    rows_path = tmp_path / "rows.jsonl"
    rows = ua.run_study(db, rows_path, ["7net-0"], ["atoms"], 2, 3, 8, None, log=lambda m: None,
                        n_train_h=2, n_test_h=3, max_atoms_h=16)
    parts = [r["part"] for r in rows]
    assert parts.count("train") == 2 and parts.count("test") == 3
    assert parts.count("train-h") == 2 and parts.count("test-h") == 3
    scale = {r["part"]: r.get("scale") for r in rows if r["part"].startswith("test")}
    assert scale["test-h"] == pytest.approx(2.0)  # fitted on H crystals only
    train_h = [r for r in rows if r["part"] == "train"]
    expected = ua.fit_scales(train_h)["7net-0/atoms"]
    assert scale["test"] == pytest.approx(expected)
    test_h = [r for r in rows if r["part"] == "test-h"]
    assert all(r["scale_general"] == pytest.approx(expected) for r in test_h)
    assert "scale_general" not in next(r for r in rows if r["part"] == "test")
    text = ua.report(rows, 8, 16)
    assert "Hydrogen-containing crystals, measured apart" in text
    assert "7net-0/atoms 2.000" in text
    assert f"| 7net-0 | atoms | {expected:.3f} (general) |" in text
    # resumed: nothing is measured twice
    monkeypatch.setattr(ua, "measure_crystal", lambda *a, **k: pytest.fail("measured again"))
    again = ua.run_study(db, rows_path, ["7net-0"], ["atoms"], 2, 3, 8, None,
                         log=lambda m: None, n_train_h=2, n_test_h=3, max_atoms_h=16)
    assert len(again) == len(rows)
    assert all(json.loads(line) for line in rows_path.read_text().splitlines())
