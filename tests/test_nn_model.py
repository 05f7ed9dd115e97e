"""INSNet: outputs invariant under rotation, translation, permutation and supercells."""
import itertools

import numpy as np
import pytest
import torch

from insnet_core.nn.data import graph_batch
from insnet_core.nn.graph import build_graph
from insnet_core.nn.model import INSNet, ModelConfig

# a small, low-symmetry ternary cell (not from the database: invariance needs no training)
LATTICE = np.array([[4.1, 0.2, 0.1], [0.3, 4.6, -0.2], [0.4, 0.1, 5.2]])
SPECIES = ["Li", "O", "O", "Ti", "H"]
FRAC = np.array([[0.0, 0.0, 0.0], [0.31, 0.12, 0.27], [0.55, 0.61, 0.18],
                 [0.5, 0.2, 0.7], [0.8, 0.75, 0.55]])


def _model(kind="insnet"):
    torch.manual_seed(1)
    heads = ("vision",) if kind == "reference" else ("vision", "dos")
    cfg = ModelConfig(kind=kind, heads=heads, em_dim=16, mul=8, radial_neurons=16, out_dim=16,
                      num_neighbors=40.0, dos_bins=50)
    return INSNet(cfg).double().eval()


def _predict(model, lattice, species, frac):
    g = build_graph(lattice, species, frac, cutoff=model.config.cutoff)
    with torch.no_grad():
        out = model(graph_batch([g], dtype=torch.float64))
    vision = out["vision"][0].numpy()
    dos = None
    if "dos" in out:  # per-element mean DOS
        d = out["dos"].numpy()
        dos = np.stack([d[np.array(species) == e].mean(axis=0) for e in sorted(set(species))])
    return vision, dos


@pytest.mark.parametrize("kind", ["insnet", "reference"])
def test_rotation_translation_permutation(kind):
    from nn_helpers import random_rotation
    model = _model(kind)
    v0, d0 = _predict(model, LATTICE, SPECIES, FRAC)
    assert np.all(np.isfinite(v0)) and v0.max() == pytest.approx(1.0, abs=1e-6)
    rot = random_rotation(3)
    v1, d1 = _predict(model, LATTICE @ rot.T, SPECIES, FRAC)          # rotated cell
    perm = [3, 0, 4, 2, 1]
    v2, d2 = _predict(model, LATTICE, [SPECIES[i] for i in perm],
                      (FRAC[perm] + [0.13, -0.4, 0.77]) % 1.0)        # permuted + translated
    for v, d in ((v1, d1), (v2, d2)):
        np.testing.assert_allclose(v, v0, atol=1e-6)  # edge vectors are float32
        if d0 is not None:
            np.testing.assert_allclose(d, d0, atol=1e-6)  # edge vectors are float32


def test_supercell_predicts_the_same_spectrum():
    model = _model()
    v0, d0 = _predict(model, LATTICE, SPECIES, FRAC)
    cells = np.array(list(itertools.product(range(2), repeat=3)))
    frac = np.concatenate([(FRAC + c) / 2.0 for c in cells])
    species = SPECIES * len(cells)
    v1, d1 = _predict(model, 2 * LATTICE, species, frac)
    np.testing.assert_allclose(v1, v0, atol=1e-6)  # edge vectors are float32
    np.testing.assert_allclose(d1, d0, atol=1e-6)  # edge vectors are float32


def test_dos_head_rows_are_distributions():
    _, d = _predict(_model(), LATTICE, SPECIES, FRAC)
    assert d.shape == (4, 3, 50)
    np.testing.assert_allclose(d.sum(axis=-1), 1.0, atol=1e-12)
    assert (d >= 0).all()


def test_config_rejects_unknown_settings():
    with pytest.raises(ValueError, match="unknown model settings"):
        ModelConfig.from_dict({"kind": "insnet", "bogus": 1})
    with pytest.raises(ValueError, match="VISION head only"):
        ModelConfig(kind="reference", heads=("vision", "dos"))
