"""Training: a tiny model lowers its loss in seconds; resume; model files and their checks."""
import json

import numpy as np
import pytest

from insnet_core import InputError
from insnet_core.nn.card import ModelFileError, load_models
from insnet_core.nn.model import ModelConfig
from insnet_core.nn.train import TrainSettings, train
from nn_helpers import database, small_ids

TINY = dict(em_dim=8, mul=4, radial_neurons=8, out_dim=8, dos_bins=500)


@pytest.fixture(scope="module")
def ids():
    return small_ids(80, max_atoms=4)


@pytest.fixture(scope="module")
def run(tmp_path_factory, ids):
    out = tmp_path_factory.mktemp("run") / "tiny"
    settings = TrainSettings(epochs=6, batch_size=8, lr=0.01, seed=3, patience=50)
    card = train(database(), out, ModelConfig(**TINY), settings, ids=ids, log=lambda m: None)
    return out, card


def test_tiny_model_lowers_its_loss(run):
    out, card = run
    hist = card["history"]
    assert len(hist) == 6
    assert hist[-1]["train"] < 0.8 * hist[0]["train"]
    assert min(h["validation"]["total"] for h in hist) < hist[0]["validation"]["total"]
    assert (out / "loss.png").stat().st_size > 1000


def test_card_records_what_loading_needs(run):
    out, card = run
    c = json.loads((out / "card.json").read_text())
    assert c["format_version"] == 1 and c["members"] == ["weights.safetensors"]
    assert c["model"]["mul"] == 4 and c["dos_grid"]["bins"] == 500
    assert len(c["database"]["sha256"]) == 64 and c["split"]["seed"] == 20230101
    assert set(c["elements"]) <= set(sum((list(database().record(m)["elements"])
                                          for m in database().ids()), []))
    models, _ = load_models(out)
    assert len(models) == 1 and not models[0].training


@pytest.fixture
def one_thread():
    # with 2 threads, torch's CPU reductions may sum in another order when the machine is
    # busy (two fresh runs then differ in the 7th digit); bitwise repeatability needs 1
    import torch
    before = torch.get_num_threads()
    yield 1
    torch.set_num_threads(before)


def test_same_seed_same_weights_and_resume_continues(tmp_path, ids, one_thread):
    import torch
    s = TrainSettings(epochs=2, batch_size=8, lr=0.01, seed=5, threads=one_thread)
    a = train(database(), tmp_path / "a", ModelConfig(**TINY), s, ids=ids, log=lambda m: None)
    s1 = TrainSettings(epochs=1, batch_size=8, lr=0.01, seed=5, threads=one_thread)
    train(database(), tmp_path / "b", ModelConfig(**TINY), s1, ids=ids, log=lambda m: None)
    with pytest.raises(InputError, match="--resume"):
        train(database(), tmp_path / "b", ModelConfig(**TINY), s1, ids=ids, log=lambda m: None)
    b = train(database(), tmp_path / "b", ModelConfig(**TINY), s, ids=ids, resume=True,
              log=lambda m: None)
    assert [h["validation"]["total"] for h in a["history"]] == pytest.approx(
        [h["validation"]["total"] for h in b["history"]], rel=1e-5)
    ma, _ = load_models(tmp_path / "a", network="e3nn")
    mb, _ = load_models(tmp_path / "b", network="e3nn")
    for (k, va), vb in zip(ma[0].state_dict().items(), mb[0].state_dict().values()):
        torch.testing.assert_close(va, vb, rtol=1e-5, atol=1e-6, msg=k)
    other = TrainSettings(epochs=3, batch_size=4, lr=0.01, seed=5)
    with pytest.raises(InputError, match="batch_size"):
        train(database(), tmp_path / "b", ModelConfig(**TINY), other, ids=ids, resume=True,
              log=lambda m: None)


def test_resume_without_best_weights_writes_them_again(tmp_path, ids):
    # a run moved to another machine without its (uncommitted) best weights
    s1 = TrainSettings(epochs=1, batch_size=8, lr=0.01, seed=5)
    train(database(), tmp_path / "r", ModelConfig(**TINY), s1, ids=ids, log=lambda m: None)
    for name in ("best.safetensors", "weights.safetensors", "card.json"):  # as if unfinished
        (tmp_path / "r" / name).unlink()
    messages = []
    s2 = TrainSettings(epochs=2, batch_size=8, lr=0.01, seed=5)
    card = train(database(), tmp_path / "r", ModelConfig(**TINY), s2, ids=ids, resume=True,
                 log=messages.append)
    assert any("best.safetensors is missing" in m for m in messages)
    assert card["training"]["best_epoch"] == 2
    models, _ = load_models(tmp_path / "r")
    assert len(models) == 1


def _copy(run, tmp_path):
    import shutil
    dst = tmp_path / "m"
    shutil.copytree(run[0], dst)
    return dst


def test_card_mismatches_are_clear(run, tmp_path):
    folder = _copy(run, tmp_path)
    card = json.loads((folder / "card.json").read_text())

    def write(c):
        (folder / "card.json").write_text(json.dumps(c))

    write(dict(card, format_version=99))
    with pytest.raises(ModelFileError, match="format_version 99"):
        load_models(folder)
    write(dict(card, model=dict(card["model"], mul=6)))
    with pytest.raises(ModelFileError, match="do not fit"):
        load_models(folder)
    write(dict(card, model=dict(card["model"], colour="blue")))
    with pytest.raises(ModelFileError, match="colour"):
        load_models(folder)
    write(dict(card, vision_grid=dict(card["vision_grid"], bins=120)))
    with pytest.raises(ModelFileError, match="vision_grid"):
        load_models(folder)
    write(card)
    (folder / "weights.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(ModelFileError, match="unreadable weights"):
        load_models(folder)
    (folder / "weights.safetensors").unlink()
    with pytest.raises(ModelFileError, match="missing"):
        load_models(folder)


def test_unstable_choice_is_checked():
    with pytest.raises(InputError, match="--unstable"):
        TrainSettings(unstable="ignore").check()


def test_ensemble_members_give_errors(tmp_path, ids):
    from insnet_core.cli import main
    from insnet_core.nn.predictor import Predictor
    from insnet_core.simulate import Settings
    from nn_helpers import structure_of
    runs = []
    for seed in (1, 2):
        out = tmp_path / f"s{seed}"
        train(database(), out, ModelConfig(**TINY), TrainSettings(epochs=1, batch_size=8,
                                                                   seed=seed),
              ids=ids, log=lambda m: None)
        runs.append(str(out))
    assert main(["ensemble", *runs, "--out", str(tmp_path / "ens")]) == 0
    p = Predictor(tmp_path / "ens")
    assert p.n_members == 2
    mid = next(m for m in ids if set(map(str, database().record(m)["species"])) <= set(p.elements))
    res = p.simulate(structure_of(mid), Settings.check("VISION"))
    assert res.total.errors.max() > 0 and np.all(np.isfinite(res.total.errors))
    # a calibrated card (sigma_scale, written by `insnet evaluate --part validation`)
    # multiplies the errors, not the values
    from insnet_core.nn.card import read_card, write_card
    card = read_card(tmp_path / "ens")
    card["sigma_scale"] = {"value": 2.5, "fitted_on": "validation"}
    card.pop("format_version", None)
    write_card(tmp_path / "ens", card)
    scaled = Predictor(tmp_path / "ens").simulate(structure_of(mid), Settings.check("VISION"))
    np.testing.assert_allclose(scaled.total.values, res.total.values, rtol=1e-6)
    np.testing.assert_allclose(scaled.total.errors, 2.5 * res.total.errors, rtol=1e-5)
    assert "x 2.5" in scaled.total.metadata["errors"]
    other = tmp_path / "other"
    train(database(), other, ModelConfig(**dict(TINY, mul=3)), TrainSettings(epochs=1),
          ids=ids, log=lambda m: None)
    assert main(["ensemble", runs[0], str(other), "--out", str(tmp_path / "bad")]) == 2


def test_root_loss_is_the_root_of_each_crystals_error():
    import math
    import torch
    from insnet_core.nn.train import VISION_SCALE, total_loss
    mse = torch.tensor([0.04, 0.0001])
    got = total_loss({"vision_mse": mse}, "rmse")
    torch.testing.assert_close(got, torch.sqrt(mse + 1e-10) / math.sqrt(VISION_SCALE))
    torch.testing.assert_close(total_loss({"vision_mse": mse}), mse / VISION_SCALE)
    # the badly missed crystal weighs 20x the good one under the root, 400x under the square
    assert float(got[0] / got[1]) == pytest.approx(20.0, rel=1e-4)
    with pytest.raises(InputError, match="--vision-loss"):
        TrainSettings(vision_loss="mae").check()


def test_fine_tuning_starts_from_the_given_weights(run, tmp_path, ids):
    import torch
    from safetensors.torch import load_file
    out, card = run
    start = load_file(str(out / "weights.safetensors"))
    # no epoch: the run's first validation is the starting model's
    s = TrainSettings(epochs=1, batch_size=8, lr=0.0, weight_decay=0.0, seed=3,
                      init=str(out), vision_loss="rmse")
    ft = train(database(), tmp_path / "ft", ModelConfig(**TINY), s, ids=ids, log=lambda m: None)
    assert ft["training"]["init"] == str(out) and ft["training"]["loss"]["vision"] == "rmse"
    after = load_file(str(tmp_path / "ft" / "weights.safetensors"))
    for k, v in start.items():
        torch.testing.assert_close(after[k], v, msg=k)       # lr 0: unchanged
    member = tmp_path / "member-0.safetensors"
    with pytest.raises(InputError, match="member-0.safetensors"):
        train(database(), tmp_path / "bad", ModelConfig(**TINY),
              TrainSettings(epochs=1, init=str(out / member.name)), ids=ids, log=lambda m: None)
    other = dict(TINY, mul=6)
    with pytest.raises(InputError, match="mul"):
        train(database(), tmp_path / "bad2", ModelConfig(**other),
              TrainSettings(epochs=1, init=str(out)), ids=ids, log=lambda m: None)


def test_device_setting_is_checked():
    import torch
    with pytest.raises(InputError, match="--device"):
        TrainSettings(device="tpu").check()
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA device"):
            TrainSettings(device="cuda").check()
    assert TrainSettings(device="auto").check().device == "auto"


def test_resume_of_a_run_from_before_newer_settings(tmp_path, ids):
    # a checkpoint written before vision_loss / init / device existed resumes when they are
    # left at their defaults, and refuses when one is changed
    s1 = TrainSettings(epochs=1, batch_size=8, lr=0.01, seed=5)
    train(database(), tmp_path / "old", ModelConfig(**TINY), s1, ids=ids, log=lambda m: None)
    ck = tmp_path / "old" / "checkpoint.json"
    state = json.loads(ck.read_text())
    for key in ("vision_loss", "init", "device"):
        state["settings"].pop(key)
    ck.write_text(json.dumps(state))
    s2 = TrainSettings(epochs=2, batch_size=8, lr=0.01, seed=5, device="auto")
    card = train(database(), tmp_path / "old", ModelConfig(**TINY), s2, ids=ids, resume=True,
                 log=lambda m: None)
    assert card["training"]["epochs_run"] == 2
    ck.write_text(json.dumps(state))
    with pytest.raises(InputError, match="vision_loss"):
        train(database(), tmp_path / "old", ModelConfig(**TINY),
              TrainSettings(epochs=3, batch_size=8, lr=0.01, seed=5, vision_loss="rmse"),
              ids=ids, resume=True, log=lambda m: None)


def test_weight_averaging_keeps_the_mean_of_each_epochs_weights(run, tmp_path, ids,
                                                                 one_thread):
    """--average-weights: the model is the mean of the weights at the end of each epoch
    (the same runs without averaging give those weights: the checkpoint holds them)."""
    import torch
    from safetensors.torch import load_file
    out, _ = run
    base = dict(batch_size=8, lr=0.003, gamma=1.0, seed=7, init=str(out), threads=one_thread,
                patience=50)
    ends = []
    for n in (1, 2, 3):
        folder = tmp_path / f"plain{n}"
        train(database(), folder, ModelConfig(**TINY), TrainSettings(epochs=n, **base),
              ids=ids, log=lambda m: None)
        ckpt = load_file(str(folder / "checkpoint.safetensors"))
        ends.append({k[6:]: v for k, v in ckpt.items() if k.startswith("model.")})
    card = train(database(), tmp_path / "avg", ModelConfig(**TINY),
                 TrainSettings(epochs=3, average_weights=True, **base), ids=ids,
                 log=lambda m: None)
    assert card["training"]["weights"].startswith("mean of the weights at the end of epochs 1-3")
    assert all("validation_average" in h for h in card["history"])
    got = load_file(str(tmp_path / "avg" / "weights.safetensors"))
    moved = 0
    for k, v in got.items():
        if v.is_floating_point():
            want = sum(e[k].double() for e in ends) / 3
            torch.testing.assert_close(v.double(), want, rtol=1e-5, atol=1e-6, msg=k)
            moved += int(not torch.equal(ends[0][k], ends[2][k]))
    assert moved > 0          # the epochs' weights differ: the mean is not any one of them
