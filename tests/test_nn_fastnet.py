"""FastINSNet: the plain-torch forward pass equals the e3nn network's on the same weights."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from insnet_core.nn.card import ModelFileError, load_ensemble, load_models
from insnet_core.nn.data import graph_batch
from insnet_core.nn.fastnet import FastINSNet, activation_scale, supported
from insnet_core.nn.graph import build_graph
from insnet_core.nn.model import INSNet, ModelConfig

REPO = Path(__file__).resolve().parents[1]
LATTICE = np.array([[4.1, 0.2, 0.1], [0.3, 4.6, -0.2], [0.4, 0.1, 5.2]])
SPECIES = ["Li", "O", "O", "Ti", "H"]
FRAC = np.array([[0.0, 0.0, 0.0], [0.31, 0.12, 0.27], [0.55, 0.61, 0.18],
                 [0.5, 0.2, 0.7], [0.8, 0.75, 0.55]])


def _batch():
    a = build_graph(LATTICE, SPECIES, FRAC, cutoff=6.0)
    b = build_graph(LATTICE * 1.1, ["Na", "Cl", "Cl", "Na", "Na"], FRAC[::-1], cutoff=6.0)
    return graph_batch([a, b])


def _pair(**settings):
    torch.manual_seed(3)
    cfg = ModelConfig(**{**dict(em_dim=16, mul=8, radial_neurons=16, out_dim=16,
                                num_neighbors=40.0, dos_bins=50), **settings})
    net = INSNet(cfg).eval()
    with torch.no_grad():  # every weight away from its initial value, biases not zero
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return net, FastINSNet(cfg, net.state_dict()).eval()


@pytest.mark.parametrize("settings", [
    dict(),
    dict(kind="reference", heads=("vision",)),
    dict(lmax=0),
    dict(layers=1, radial_layers=2),
    dict(layers=3, heads=("dos",)),
])
def test_outputs_equal_the_e3nn_network(settings):
    net, fast = _pair(**settings)
    batch = _batch()
    with torch.no_grad():
        want, got = net(batch, features=True), fast(batch, features=True)
    assert set(got) == set(want)
    for key in want:
        scale = float(want[key].abs().max())
        torch.testing.assert_close(got[key], want[key], rtol=1e-5, atol=1e-6 * scale, msg=key)


def test_edge_chunks_do_not_change_the_result():
    _, fast = _pair()
    batch = _batch()
    with torch.no_grad():
        whole = fast(batch)["dos"]
        fast.chunk = 7   # edges in passes of 7: the sums over neighbours are split
        split = fast(batch)["dos"]
    torch.testing.assert_close(split, whole, rtol=1e-5, atol=1e-8)


def test_equal_bond_lengths_share_one_radial_evaluation():
    """A rock-salt 2x2x2 cell has a few distinct bond lengths among hundreds of edges;
    the radial network runs once per distinct length and the outputs still equal e3nn's."""
    net, fast = _pair()
    cube = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    na = np.concatenate([(cube + c) / 2 for c in np.ndindex(2, 2, 2)])
    frac = np.concatenate([na, (na + [0.25, 0, 0]) % 1.0])
    graph = build_graph(np.eye(3) * 11.2, ["Na"] * 32 + ["Cl"] * 32, frac, cutoff=6.0)
    batch = graph_batch([graph])
    chunks = fast._edges(batch)
    distinct = sum(len(emb) for _, _, _, emb, _ in chunks)
    assert sum(len(src) for src, *_ in chunks) == graph.n_edges
    assert distinct < graph.n_edges / 50      # lengths are shared ...
    assert any(rows is not None for *_, rows in chunks)
    with torch.no_grad():
        want, got = net(batch, features=True), fast(batch, features=True)
    for key in want:                           # ... and nothing changes
        scale = float(want[key].abs().max())
        torch.testing.assert_close(got[key], want[key], rtol=1e-5, atol=1e-6 * scale, msg=key)


def test_shipped_model_equal_through_both_networks():
    from insnet_core.nn.graph import graph_of_structure
    from insnet_core.structure import read_structure
    s = read_structure(REPO / "examples" / "data" / "Ba3ZnRu2O9.cif")
    batch = graph_batch([graph_of_structure(s, 6.0)])
    fast, _ = load_models(REPO / "models" / "insnet-v1", network="fast")
    slow, _ = load_models(REPO / "models" / "insnet-v1")
    assert isinstance(fast[0], FastINSNet) and isinstance(slow[0], INSNet)
    with torch.no_grad():
        a, b = fast[0](batch), slow[0](batch)
    for key in ("vision", "dos"):
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-7, msg=key)


def test_activation_scales_are_e3nn_s():
    from e3nn.math import normalize2mom
    for name, fn in (("silu", torch.nn.functional.silu), ("tanh", torch.tanh),
                     ("sigmoid", torch.sigmoid)):
        ref = normalize2mom(fn)
        assert activation_scale(name) == pytest.approx(1.0 if ref._is_id else ref.cst, rel=1e-12)


def test_weights_that_do_not_fit_name_the_tensor():
    net, _ = _pair()
    cfg, state = net.config, net.state_dict()
    with pytest.raises(ValueError, match="embed_z.weight"):
        FastINSNet(cfg, {k: v for k, v in state.items() if k != "embed_z.weight"})
    with pytest.raises(ValueError, match="blocks.0.first.fc.layer0.weight"):
        FastINSNet(cfg, dict(state, **{"blocks.0.first.fc.layer0.weight": torch.zeros(3, 3)}))
    with pytest.raises(ValueError, match="blocks.1.first.lin2"):
        FastINSNet(cfg, dict(state, **{"blocks.1.first.lin2.weight": torch.zeros(5)}))
    with pytest.raises(ValueError, match="do not use.*extra.weight"):
        FastINSNet(cfg, dict(state, **{"extra.weight": torch.zeros(2)}))
    with pytest.raises(ValueError, match="lmax"):
        FastINSNet(ModelConfig(lmax=2), state)
    assert supported(ModelConfig(lmax=1)) and not supported(ModelConfig(lmax=2))


def test_load_models_names_the_file_of_ill_fitting_weights(tiny_model, tmp_path):
    import shutil
    from safetensors.torch import load_file, save_file
    folder = tmp_path / "m"
    shutil.copytree(tiny_model, folder)
    state = load_file(str(folder / "weights.safetensors"))
    state["embed_x.bias"] = torch.zeros(3)
    save_file(state, str(folder / "weights.safetensors"))
    with pytest.raises(ModelFileError, match=r"weights.safetensors: weights do not fit.*embed_x"):
        load_ensemble(folder)


def test_an_ensemble_runs_its_members_together():
    nets = []
    for seed in (1, 2, 3):
        torch.manual_seed(seed)
        nets.append(_pair()[0])
    # _pair reseeds; give each member its own weights
    with torch.no_grad():
        for k, net in enumerate(nets):
            for p in net.parameters():
                p.add_(0.1 * (k + 1) * torch.randn_like(p))
    joint = FastINSNet(nets[0].config, [n.state_dict() for n in nets]).eval()
    assert joint.n_members == 3
    batch = _batch()
    with torch.no_grad():
        got = joint(batch, features=True)
        for k, net in enumerate(nets):
            want = net(batch, features=True)
            for key in want:
                scale = float(want[key].abs().max())
                torch.testing.assert_close(got[key][k], want[key], rtol=1e-5,
                                           atol=1e-6 * scale, msg=f"member {k} {key}")
    bad = [n.state_dict() for n in nets]
    bad[2] = dict(bad[2], **{"blocks.0.first.sc.weight": torch.zeros(7)})
    with pytest.raises(ValueError, match="member 2: .*blocks.0.first.sc") as info:
        FastINSNet(nets[0].config, bad)
    assert info.value.member == 2


def test_shipped_ensemble_equals_its_members():
    from insnet_core.nn.graph import graph_of_structure
    from insnet_core.structure import read_structure
    s = read_structure(REPO / "examples" / "data" / "Ba3ZnRu2O9.cif")
    batch = graph_batch([graph_of_structure(s, 6.0)])
    joint, card = load_ensemble(REPO / "models" / "insnet-v2")
    members, _ = load_models(REPO / "models" / "insnet-v2")
    assert joint.n_members == len(card["members"]) == len(members) == 3
    with torch.no_grad():
        got = joint(batch)
        for k, m in enumerate(members):
            want = m(batch)
            for key in ("vision", "dos"):   # (float32 sums in another order: 1e-6 of max)
                torch.testing.assert_close(got[key][k], want[key], rtol=1e-5, atol=1e-6)


def test_prediction_does_not_import_e3nn():
    code = ("import sys; from insnet_core.predict import predict; "
            f"predict({str(REPO / 'examples' / 'data' / 'Ba3ZnRu2O9.cif')!r}, method='ML'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'e3nn'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_element_matrix_cache_gives_the_same_outputs():
    # a network keeps each element's node matrices; outputs must not depend on what it saw
    import insnet_core.nn.fastnet as fastnet
    net, fast = _pair()
    a = build_graph(LATTICE, SPECIES, FRAC, cutoff=6.0)
    b = build_graph(LATTICE * 1.1, ["Na", "Cl", "Cl", "Na", "Na"], FRAC[::-1], cutoff=6.0)
    batches = [graph_batch([a]), graph_batch([b]), _batch()]
    with torch.no_grad():
        first = [FastINSNet(net.config, net.state_dict())(x) for x in batches]  # fresh each
        seen = [fast(x) for x in batches]
        assert 0 < len(fast._matrix_cache) <= fastnet.MATRIX_CACHE
        old = fastnet.MATRIX_CACHE
        try:
            fastnet.MATRIX_CACHE = 1              # an eviction on every call
            evicting = [fast(x) for x in reversed(batches)][::-1]
            assert len(fast._matrix_cache) == 1
        finally:
            fastnet.MATRIX_CACHE = old
    for want, got1, got2 in zip(first, seen, evicting):
        for key in want:
            torch.testing.assert_close(got1[key], want[key], rtol=1e-6, atol=1e-7, msg=key)
            torch.testing.assert_close(got2[key], want[key], rtol=1e-6, atol=1e-7, msg=key)
