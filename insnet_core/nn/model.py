"""The equivariant network: one periodic e3nn backbone, two heads.

Architecture (all sizes in :class:`ModelConfig`)

1. **Embedding.** Each atom gets a one-hot vector over the 118 elements.
   ``insnet`` kind: the node input is the one-hot next to the mass-weighted
   one-hot (mass / 100 Da), the node attribute the plain one-hot, each through
   its own linear layer (weights drawn from N(0, 1), so that the features
   start at unit size whatever the element) to ``em_dim`` scalars and a ReLU.
   ``reference`` kind, as Chen et al., Adv. Sci. 8, 2004214 (2021): one
   shared linear layer (default initialisation) applied to the one-hot times
   the mass in Da (input) and to the one-hot (attribute), then a ReLU.
2. **Edges.** Edge lengths are expanded on ``n_basis`` Gaussians over
   [0, cutoff] (times sqrt(n_basis)); edge attributes are the spherical
   harmonics of the edge direction up to ``lmax`` times a smooth cut-off.
3. **Convolutions.** ``layers`` gated equivariant convolutions
   (e3nn ``Convolution`` + ``Gate``) with ``mul`` channels of every irrep
   l <= lmax of both parities, then one convolution to scalars only.
4. **Heads** on the final per-atom scalars:

   * ``vision``: 119 VISION bins (10-1200 cm^-1, 10 cm^-1); per-atom values
     averaged over the cell, ReLU, divided by their maximum: the reference
     work's max-normalised target. In the ``reference`` kind the final
     convolution itself outputs the 119 bins (Chen's design); in the
     ``insnet`` kind a small MLP maps ``out_dim`` scalars to them.
   * ``dos`` (``insnet`` kind only): each atom's one-phonon DOS along the three
     principal axes of its Debye-Waller tensor (ascending mean-square
     displacement), ``dos_bins`` bins of ``dos_width`` meV from 0, a softmax per
     axis (each sums to one, like the database's per-element DOS). Averaging
     over the atoms of an element gives the element's partial DOS, from which
     the engine computes any instrument, temperature and order
     (:mod:`insnet_core.nn.partials`).

Every output is invariant under rotation, translation and permutation of the
atoms, and the cell average makes it intensive: a supercell predicts the same
spectrum as its primitive cell.
"""
from __future__ import annotations

import math

import torch
from e3nn import o3
from e3nn.math import soft_one_hot_linspace
from e3nn.nn import Gate
from e3nn.nn.models.gate_points_2101 import Compose, Convolution, smooth_cutoff, tp_path_exists

from insnet_core.nn.config import KINDS, MASS_SCALE, N_ELEMENTS, ModelConfig
from insnet_core.nn.readout import graph_mean, max_normalise, pooled_features

__all__ = ["ModelConfig", "INSNet", "N_ELEMENTS", "KINDS"]

def _hidden_irreps(mul, lmax):
    return o3.Irreps([(mul, (l, p)) for l in range(lmax + 1) for p in (1, -1)])


class INSNet(torch.nn.Module):
    """Crystal graph -> VISION spectrum and per-atom principal-axis DOS."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = c = config
        if c.kind == "insnet":
            self.embed_x = torch.nn.Linear(2 * N_ELEMENTS, c.em_dim)
            self.embed_z = torch.nn.Linear(N_ELEMENTS, c.em_dim)
            for lin in (self.embed_x, self.embed_z):
                torch.nn.init.normal_(lin.weight)
                torch.nn.init.zeros_(lin.bias)
        else:
            self.embed = torch.nn.Linear(N_ELEMENTS, c.em_dim)
        self.irreps_sh = o3.Irreps.spherical_harmonics(c.lmax)
        irreps_attr = o3.Irreps(f"{c.em_dim}x0e")
        irreps = irreps_attr
        hidden = _hidden_irreps(c.mul, c.lmax)
        conv_args = dict(irreps_node_attr=irreps_attr, irreps_edge_attr=self.irreps_sh,
                         number_of_basis=c.n_basis, radial_layers=c.radial_layers,
                         radial_neurons=c.radial_neurons, num_neighbors=c.num_neighbors)
        act = {1: torch.nn.functional.silu, -1: torch.tanh}
        act_gate = {1: torch.sigmoid, -1: torch.tanh}
        blocks = []
        for _ in range(c.layers):
            scalars = o3.Irreps([(m, ir) for m, ir in hidden
                                 if ir.l == 0 and tp_path_exists(irreps, self.irreps_sh, ir)])
            gated = o3.Irreps([(m, ir) for m, ir in hidden
                               if ir.l > 0 and tp_path_exists(irreps, self.irreps_sh, ir)])
            gate_ir = "0e" if tp_path_exists(irreps, self.irreps_sh, "0e") else "0o"
            gates = o3.Irreps([(m, gate_ir) for m, _ in gated])
            gate = Gate(scalars, [act[ir.p] for _, ir in scalars],
                        gates, [act_gate[ir.p] for _, ir in gates], gated)
            conv = Convolution(irreps, irreps_out=gate.irreps_in, **conv_args)
            blocks.append(Compose(conv, gate))
            irreps = gate.irreps_out
        self.blocks = torch.nn.ModuleList(blocks)
        n_out = c.n_vision if c.kind == "reference" else c.out_dim
        self.out_conv = Convolution(irreps, irreps_out=f"{n_out}x0e", **conv_args)
        if c.kind == "insnet":
            self.vision_head = (torch.nn.Sequential(
                torch.nn.SiLU(), torch.nn.Linear(c.out_dim, c.out_dim), torch.nn.SiLU(),
                torch.nn.Linear(c.out_dim, c.n_vision)) if "vision" in c.heads else None)
            self.dos_head = (torch.nn.Sequential(
                torch.nn.SiLU(), torch.nn.Linear(c.out_dim, 2 * c.out_dim), torch.nn.SiLU(),
                torch.nn.Linear(2 * c.out_dim, 3 * c.dos_bins)) if "dos" in c.heads else None)

    # ------------------------------------------------------------------
    def node_features(self, batch):
        """Final per-atom scalars, shape (n_nodes, out_dim or n_vision)."""
        c = self.config
        numbers = batch["numbers"]
        onehot = torch.nn.functional.one_hot(numbers - 1, N_ELEMENTS).to(batch["edge_vec"].dtype)
        mass = batch["masses"][:, None]
        if c.kind == "insnet":
            x = torch.relu(self.embed_x(torch.cat([onehot, onehot * mass / MASS_SCALE], dim=1)))
            z = torch.relu(self.embed_z(onehot))
        else:
            x = torch.relu(self.embed(onehot * mass))
            z = torch.relu(self.embed(onehot))
        vec = batch["edge_vec"]
        src, dst = batch["edge_src"], batch["edge_dst"]
        length = vec.norm(dim=1)
        length_emb = soft_one_hot_linspace(length, 0.0, c.cutoff, c.n_basis, basis="gaussian",
                                           cutoff=False).mul(math.sqrt(c.n_basis))
        sh = o3.spherical_harmonics(self.irreps_sh, vec, normalize=True, normalization="component")
        edge_attr = smooth_cutoff(length / c.cutoff)[:, None] * sh
        for block in self.blocks:
            x = block(x, z, src, dst, edge_attr, length_emb)
        return self.out_conv(x, z, src, dst, edge_attr, length_emb)

    def forward(self, batch, features=False):
        """Predictions for a batch of graphs.

        Parameters
        ----------
        batch : dict of tensors
            ``numbers`` (n,) int64, ``masses`` (n,), ``edge_src``/``edge_dst`` (m,)
            int64, ``edge_vec`` (m, 3) angstrom, ``node_graph`` (n,) int64 graph
            index of each node, ``n_graphs`` int.
        features : bool
            Also return the backbone's per-crystal features (what the map route's latent
            head reads).

        Returns
        -------
        dict
            ``vision``: (n_graphs, n_vision), max-normalised (if the head exists);
            ``dos``: (n_nodes, 3, dos_bins), each row summing to one (if it exists);
            ``features``: (n_graphs, 2 * per-atom scalars), :func:`pooled_features`
            (when asked for).
        """
        c = self.config
        h = self.node_features(batch)
        out = {}
        if features:
            out["features"] = pooled_features(h, batch["node_graph"], batch["n_graphs"])
        if "vision" in c.heads:
            per_atom = h if c.kind == "reference" else self.vision_head(h)
            out["vision"] = max_normalise(torch.relu(
                graph_mean(per_atom, batch["node_graph"], batch["n_graphs"])))
        if "dos" in c.heads:
            logits = self.dos_head(h).view(-1, 3, c.dos_bins)
            out["dos"] = torch.softmax(logits, dim=-1)
        return out
