"""The trained network's forward pass in plain torch: inference without e3nn.

:class:`FastINSNet` reads the state dict of an :class:`~insnet_core.nn.model.INSNet`
(the parameters of its e3nn modules) and computes the same outputs from them with a
few dense operations. Training keeps the e3nn network; prediction uses this one. Two
facts make it fast:

1. Every node-level tensor product of a convolution (the self-connection ``sc`` and
   the linear maps ``lin1``, ``lin2``: e3nn ``FullyConnectedTensorProduct`` of the
   features with the node attributes) is bilinear in (features, attributes), and the
   attributes depend on the element only. For each element of a batch it is one
   matrix (features in x features out), applied to that element's atoms, instead of a
   contraction over the attributes for every atom.
2. The edge tensor product (the neighbour's features times the spherical harmonics of
   the edge direction, path weights from the radial network) is written out for
   l <= 1: each edge's products, dot and cross product are one small linear map per
   input channel (:func:`_edge_maps`), its outputs kept in the order they come out
   (lin2's matrices are permuted to read them), each path's weights one multiply.

Normalisation follows e3nn 0.5-0.6 exactly: 'component' irreps and 'element' path
normalisation, Wigner 3j symbols of unit norm, the fully connected radial network's
1/sqrt(fan-in) weights, activations scaled to unit second moment under a standard
normal as e3nn estimates it (10^6 draws, seed 0), so the outputs equal the e3nn
network's to float rounding (tests/test_nn_fastnet.py compares the two on random and
shipped weights). Only ``lmax`` <= 1 is written out (:func:`supported`); other
settings keep the e3nn network.

Irreps are lists of ``(mul, (l, p))``; a feature vector holds each entry's
``mul x (2l+1)`` numbers, channel-major (index ``u * (2l+1) + m``), l = 1 components
in the order x, y, z.
"""
from __future__ import annotations

import math
import threading
from collections import OrderedDict
from functools import lru_cache

import torch

from insnet_core.nn.config import MASS_SCALE, N_ELEMENTS, ModelConfig
from insnet_core.nn.readout import graph_mean, max_normalise, pooled_features

__all__ = ["FastINSNet", "LoopedMembers", "MemberError", "supported"]

_SQRT2, _SQRT3 = math.sqrt(2.0), math.sqrt(3.0)
#: Weight of the self-connection against the convolution in every layer (e3nn's
#: gate_points_2101 Convolution: sin and cos of pi/8).
_C_SELF, _C_CONV = math.sin(math.pi / 8), math.cos(math.pi / 8)
#: Edges times members per pass of a convolution's edge loop (intermediates of a few MB).
EDGE_CHUNK = 4096
#: Elements whose node matrices a network keeps (about 5 MB each for insnet-v2's three
#: members).
MATRIX_CACHE = 16
#: Edge lengths that round to the same multiple of this (A) share one radial-network
#: evaluation (float32 resolves about 5e-7 A at 4 A).
LENGTH_QUANTUM = 1e-6
_ACTS = {"silu": torch.nn.functional.silu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}


def supported(config):
    """Whether :class:`FastINSNet` implements these settings (else use the e3nn network)."""
    return config.lmax <= 1 and config.radial_layers >= 0


@lru_cache(maxsize=None)
def activation_scale(name):
    """Factor that gives activation ``name`` unit second moment for z ~ N(0, 1).

    Estimated as e3nn's ``normalize2mom`` does (the mean of f(z)^2 over 10^6 draws of a
    float64 generator seeded 0), so that the trained weights see the same functions;
    factors within 1e-4 of one count as one, as there.
    """
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(1_000_000, generator=gen, dtype=torch.float64)
    c = _ACTS[name](z).pow(2).mean().pow(-0.5).item()
    return 1.0 if abs(c - 1.0) < 1e-4 else c


# ---------------------------------------------------------------- irreps arithmetic
def _dim(irreps):
    return sum(mul * (2 * l + 1) for mul, (l, _) in irreps)


def _product(ir1, ir2):
    """Irreps in ir1 x ir2, ascending l (e3nn's order)."""
    (l1, p1), (l2, p2) = ir1, ir2
    return [(l, p1 * p2) for l in range(abs(l1 - l2), l1 + l2 + 1)]


def _simplify(irreps):
    out = []
    for mul, ir in irreps:
        if out and out[-1][1] == ir:
            out[-1] = (out[-1][0] + mul, ir)
        elif mul > 0:
            out.append((mul, ir))
    return out


def _sort(irreps):
    """Entries sorted by (l, p), ties by position; and each old index's new index."""
    order = sorted(range(len(irreps)), key=lambda i: (irreps[i][1], i))
    new_index = [0] * len(irreps)
    for new, old in enumerate(order):
        new_index[old] = new
    return [irreps[i] for i in order], new_index


def _path_exists(irreps1, irreps2, ir):
    return any(ir in _product(a, b) for _, a in irreps1 for _, b in irreps2)


def _offsets(irreps):
    out, off = [], 0
    for mul, (l, _) in irreps:
        out.append(off)
        off += mul * (2 * l + 1)
    return out


# ---------------------------------------------------------------- layers
# Weights and node features carry the ensemble's members first: (M, ...), (M, n_nodes,
# dim); edge tensors carry them second, (n_edges, M, dim), so that gathering the source
# atoms and summing onto the destinations run over contiguous rows; edge geometry (the
# same for all members) has no member axis.
class _NodeLinear:
    """e3nn FullyConnectedTensorProduct(irreps_in, n_attr x 0e, irreps_out), attributes
    known per element: one (dim_in, dim_out) matrix per member and element."""

    def __init__(self, weight, irreps_in, irreps_out, n_attr, where):
        self.irreps_in, self.irreps_out = irreps_in, irreps_out
        self.dim_in, self.dim_out = _dim(irreps_in), _dim(irreps_out)
        paths = [(i, o) for i, (_, a) in enumerate(irreps_in)
                 for o, (_, b) in enumerate(irreps_out) if b == a]
        fan = {}
        for i, o in paths:
            fan[o] = fan.get(o, 0) + irreps_in[i][0] * n_attr
        numel = sum(irreps_in[i][0] * n_attr * irreps_out[o][0] for i, o in paths)
        if weight.shape[1:].numel() != numel:
            raise ValueError(f"{where}: {weight.shape[1:].numel()} weights, the settings "
                             f"need {numel}")
        off_in, off_out = _offsets(irreps_in), _offsets(irreps_out)
        self.blocks = []  # (rows, cols, weight (M, n_attr, mul_in * mul_out), mul_in, d)
        k, n_members = 0, weight.shape[0]
        for i, o in paths:
            m1, (l, _) = irreps_in[i]
            m2 = irreps_out[o][0]
            w = weight[:, k:k + m1 * n_attr * m2].reshape(n_members, m1, n_attr, m2)
            k += m1 * n_attr * m2
            d = 2 * l + 1
            # attributes first, so that each element's matrix is one GEMM row
            w = (w / math.sqrt(fan[o])).permute(0, 2, 1, 3).reshape(n_members, n_attr, m1 * m2)
            self.blocks.append((slice(off_in[i], off_in[i] + m1 * d),
                                slice(off_out[o], off_out[o] + m2 * d), w.contiguous(), m1, d))
        #: output components some path reaches (e3nn's output_mask)
        mask = torch.zeros(self.dim_out, dtype=weight.dtype)
        for _, cols, _, _, _ in self.blocks:
            mask[cols] = 1.0
        self.mask = mask

    def matrices(self, attrs):
        """(M, n_elements, dim_in, dim_out) for attribute rows (M, n_elements, n_attr)."""
        n_m, n_el = attrs.shape[:2]
        out = attrs.new_zeros((n_m, n_el, self.dim_in, self.dim_out))
        for rows, cols, w, m1, d in self.blocks:
            m = torch.bmm(attrs, w).view(n_m, n_el, m1, -1)
            if d == 1:
                out[:, :, rows, cols] = m
            else:
                eye = torch.eye(d, dtype=m.dtype)
                out[:, :, rows, cols] = (m[..., :, None, :, None] * eye[:, None, :]).reshape(
                    n_m, n_el, m.shape[2] * d, m.shape[3] * d)
        return out


def _edge_maps(y0, y1):
    """The written-out edge products as per-edge linear maps of the source features.

    y0 (E,) and y1 (E, 3) are the edge's spherical harmonics (cut-off included). For a
    scalar input channel the map is the row ``[y0 | y1]`` (paths 0x0->0 and 0x1->1),
    (E, 1, 4); for an l = 1 channel the (3, 7) matrix ``[y0 I | y1 / sqrt 3 | C / sqrt 2]``
    (paths 1x0->1, 1x1->0 the dot product, 1x1->1 the cross product: x C = x cross y1),
    (E, 3, 7). Path weights multiply the outputs afterwards (one weight per channel).
    """
    a0 = torch.cat([y0[:, None], y1], dim=1)[:, None, :]
    a1 = y0.new_zeros((y0.shape[0], 3, 7))
    diag = torch.arange(3)
    a1[:, diag, diag] = y0[:, None]
    a1[:, :, 3] = y1 * (1.0 / _SQRT3)
    x, y, z = (y1 * (1.0 / _SQRT2)).unbind(1)
    a1[:, 0, 5], a1[:, 0, 6] = -z, y
    a1[:, 1, 4], a1[:, 1, 6] = z, -x
    a1[:, 2, 4], a1[:, 2, 5] = -y, x
    return a0, a1


#: Columns of the :func:`_edge_maps` maps per path, by (l_in, l_edge, l_out).
_MAP_COLUMNS = {(0, 0, 0): [0], (0, 1, 1): [1, 2, 3],
                (1, 0, 1): [0, 1, 2], (1, 1, 0): [3], (1, 1, 1): [4, 5, 6]}


def _apply_per_element(x, groups, mats):
    """Nodes of element k times ``mats[:, k]``: x (M, n, din) -> (M, n, dout);
    ``groups``: node indices per element."""
    out = x.new_empty(x.shape[:2] + (mats.shape[3],))
    for k, idx in enumerate(groups):
        out.index_copy_(1, idx, torch.bmm(x.index_select(1, idx), mats[:, k]))
    return out


class _Radial:
    """e3nn FullyConnectedNet([n_basis] + hidden + [n_out], silu), weights pre-scaled."""

    def __init__(self, weights):
        ws = [w / math.sqrt(w.shape[1]) for w in weights]   # (M, fan_in, fan_out)
        self.n_members = ws[0].shape[0]
        # the first layer reads the members' common input: one matrix for all of them
        self.first = ws[0].transpose(0, 1).reshape(ws[0].shape[1], -1)   # (n_basis, M*out)
        self.rest = ws[1:]
        self.scale = activation_scale("silu")

    def __call__(self, emb):
        """(E, n_basis) -> (E, M, n_out)."""
        h = (emb @ self.first).unflatten(1, (self.n_members, -1))
        for w in self.rest:
            h = torch.nn.functional.silu(h)
            if self.scale != 1.0:
                h = h * self.scale
            h = torch.stack([h[:, m] @ w[m] for m in range(self.n_members)], dim=1)
        return h


class _Convolution:
    """e3nn gate_points_2101 Convolution (self-connection + one edge tensor product)."""

    def __init__(self, state, prefix, irreps_in, irreps_out, irreps_sh, c):
        self.irreps_in, self.irreps_out = irreps_in, irreps_out
        mid, instructions = [], []
        for i, (mul, ir_in) in enumerate(irreps_in):
            for j, (_, ir_edge) in enumerate(irreps_sh):
                for ir_out in _product(ir_in, ir_edge):
                    if any(ir_out == ir for _, ir in irreps_out):
                        instructions.append((i, j, len(mid)))
                        mid.append((mul, ir_out))
        mid, new_index = _sort(mid)
        self.num_neighbors = c.num_neighbors
        off_in, off_mid = _offsets(irreps_in), _offsets(mid)
        # The edge product's output in this class's own layout: per input irrep (in
        # order) a block of mul x K numbers, channel-major, the K columns being its
        # paths' outputs (:data:`_MAP_COLUMNS`); ``perm`` maps it to e3nn's (sorted)
        # layout, which lin2's matrices read. Each input irrep keeps its paths as
        # (first column, columns, first radial weight): one weight per path and channel.
        self.inputs, perm, w_off = [], [], 0
        for i, (mul, (l_in, _)) in enumerate(irreps_in):
            cols, mid_of, paths = [], [], []
            for ii, j, k in instructions:
                if ii != i:
                    continue
                l_edge, l_out = irreps_sh[j][1][0], mid[new_index[k]][1][0]
                new = _MAP_COLUMNS[(l_in, l_edge, l_out)]
                paths.append((len(cols), len(new), w_off))
                cols += new
                mid_of += [(off_mid[new_index[k]], 2 * l_out + 1, m) for m in range(len(new))]
                w_off += mul
            if not cols:
                continue
            perm += [b0 + u * d + m for u in range(mul) for b0, d, m in mid_of]
            full = len(cols) == (4 if l_in == 0 else 7)
            self.inputs.append((off_in[i], mul, 2 * l_in + 1,
                                None if full else torch.tensor(cols), paths))
        if sorted(perm) != list(range(_dim(mid))):
            raise ValueError(f"{prefix}: the edge paths do not cover the tensor product's "
                             "output")
        self.perm = torch.tensor(perm)
        sizes = [c.n_basis] + [c.radial_neurons] * c.radial_layers + [w_off]
        self.radial = _Radial([state.take(f"{prefix}.fc.layer{n}.weight", (a, b))
                               for n, (a, b) in enumerate(zip(sizes, sizes[1:]))])
        self.sc = _NodeLinear(state.take(f"{prefix}.sc.weight"), irreps_in, irreps_out,
                              c.em_dim, f"{prefix}.sc")
        self.lin1 = _NodeLinear(state.take(f"{prefix}.lin1.weight"), irreps_in, irreps_in,
                                c.em_dim, f"{prefix}.lin1")
        self.lin2 = _NodeLinear(state.take(f"{prefix}.lin2.weight"), mid, irreps_out,
                                c.em_dim, f"{prefix}.lin2")
        m = self.sc.mask
        self.c_conv = (1.0 - m) + _C_CONV * m

    def matrices(self, attrs):
        """Per-element matrices of [sc | lin1] and lin2 for the attribute rows."""
        return (torch.cat([self.sc.matrices(attrs), self.lin1.matrices(attrs)], dim=3),
                self.lin2.matrices(attrs).index_select(2, self.perm))

    def edge_product(self, h, maps, w):
        """The tensor product on every edge: (E, M, dim_in) features of the source atom,
        the :func:`_edge_maps` of the edges, w (E, M, n_weights) path weights from the
        radial network -> (E, M, dim_mid) in this class's layout (``perm``)."""
        n_e, n_m = h.shape[:2]
        parts = []
        for a, mul, d, cols, paths in self.inputs:
            x = h[..., a:a + mul * d].reshape(n_e, n_m * mul, d)
            amap = maps[d == 3] if cols is None else maps[d == 3].index_select(2, cols)
            r = x * amap if d == 1 else torch.bmm(x, amap)        # (E, M * mul, K)
            r = r.view(n_e, n_m, mul, -1)
            for c0, nc, w0 in paths:
                r[..., c0:c0 + nc] *= w[..., w0:w0 + mul, None]
            parts.append(r.flatten(2))
        return torch.cat(parts, dim=2) if len(parts) > 1 else parts[0]

    def __call__(self, x, groups, mats, chunks):
        sl = _apply_per_element(x, groups, mats[0])
        d_out = _dim(self.irreps_out)
        s = sl[..., :d_out]
        h = sl[..., d_out:].transpose(0, 1).contiguous()           # (n, M, dim_in)
        n_m, n = x.shape[:2]
        d_mid = len(self.perm)
        agg = x.new_zeros((n, n_m * d_mid))
        for src, dst, maps, emb, rows in chunks:
            w = self.radial(emb)
            if rows is not None:                  # edges of equal length share a row
                w = w.index_select(0, rows)
            e = self.edge_product(h.index_select(0, src), maps, w)
            agg.index_add_(0, dst, e.view(len(dst), n_m * d_mid))
        agg = agg.view(n, n_m, d_mid).transpose(0, 1) / math.sqrt(self.num_neighbors)
        return _C_SELF * s + self.c_conv * _apply_per_element(agg, groups, mats[1])


class _Gate:
    """e3nn Gate: activated scalars, and each gated irrep times its activated gate."""

    def __init__(self, scalars, gates, gated):
        tagged = ([("s", k, e) for k, e in enumerate(_simplify(scalars))]
                  + [("g", k, e) for k, e in enumerate(_simplify(gates))]
                  + [("v", k, e) for k, e in enumerate(_simplify(gated))])
        order = sorted(range(len(tagged)), key=lambda i: (tagged[i][2][1], i))
        where, off = {}, 0
        for i in order:
            tag, k, (mul, (l, _)) = tagged[i]
            where[(tag, k)] = (off, mul * (2 * l + 1))
            off += mul * (2 * l + 1)
        self.dim_in = off

        def spans(tag, n):
            return [where[(tag, k)] for k in range(n)]
        self.scalar_spans = spans("s", len(_simplify(scalars)))
        self.gate_spans = spans("g", len(_simplify(gates)))
        self.gated_spans = [(a, n, 2 * l + 1) for (a, n), (_, (l, _)) in
                            zip(spans("v", len(_simplify(gated))), _simplify(gated))]
        # activations per original entry (as the network passes them)
        self.scalar_acts = self._acts(scalars, {1: "silu", -1: "tanh"})
        self.gate_acts = self._acts(gates, {1: "sigmoid", -1: "tanh"})
        gate_p = gates[0][1][1] if gates else 1
        self.irreps_out = list(scalars) + [(m, (l, p * gate_p)) for m, (l, p) in _simplify(gated)]

    @staticmethod
    def _acts(irreps, by_parity):
        out, off = [], 0
        for mul, (_, p) in irreps:
            name = by_parity[p]
            out.append((off, mul, _ACTS[name], activation_scale(name)))
            off += mul
        return out

    @staticmethod
    def _activate(x, acts):
        parts = []
        for off, mul, fn, scale in acts:
            y = fn(x[..., off:off + mul])
            parts.append(y * scale if scale != 1.0 else y)
        return torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]

    def __call__(self, x):
        scalars = torch.cat([x[..., a:a + n] for a, n in self.scalar_spans], dim=-1)
        out = [self._activate(scalars, self.scalar_acts)]
        if self.gate_spans:
            gates = torch.cat([x[..., a:a + n] for a, n in self.gate_spans], dim=-1)
            gates = self._activate(gates, self.gate_acts)
            g = 0
            for a, n, d in self.gated_spans:
                mul = n // d
                v = x[..., a:a + n].unflatten(-1, (mul, d)) * gates[..., g:g + mul, None]
                out.append(v.flatten(-2))
                g += mul
        return torch.cat(out, dim=-1)


class _Head:
    """The insnet kind's per-atom MLP (SiLU, Linear, SiLU, Linear), members stacked."""

    def __init__(self, state, prefix, sizes):
        self.layers = []
        for n, (a, b) in zip((1, 3), zip(sizes, sizes[1:])):
            w = state.take(f"{prefix}.{n}.weight", (b, a))
            self.layers.append((w.transpose(1, 2).contiguous(),
                                state.take(f"{prefix}.{n}.bias", (b,))[:, None, :]))

    def __call__(self, h):
        for w, b in self.layers:
            h = torch.baddbmm(b, torch.nn.functional.silu(h), w)
        return h


# ---------------------------------------------------------------- the network
#: State-dict entries of the e3nn modules that hold no trained numbers (output masks,
#: empty weight slots, Wigner 3j constants): present, not read.
def _e3nn_constant(key):
    return key.endswith(("output_mask", ".tp.weight", ".mul.weight")) or "._w3j_" in key


class _Tracked(dict):
    """A state dict that remembers which tensors were taken, and checks their shapes."""

    def __init__(self, *args):
        super().__init__(*args)
        self.used = set()

    def take(self, key, shape=None):
        value = self[key]
        if shape is not None and tuple(value.shape) != tuple(shape):
            raise ValueError(f"{key}: shape {tuple(value.shape)}, the settings need "
                             f"{tuple(shape)}")
        self.used.add(key)
        return value


class MemberError(ValueError):
    """Weights of member ``member`` (index into the state dicts) do not fit."""

    def __init__(self, message, member):
        super().__init__(message)
        self.member = member


class _Members:
    """The members' state dicts read together: ``take`` stacks a tensor of every member."""

    def __init__(self, states):
        self.states = [_Tracked({k: v.detach().to(torch.float32) for k, v in st.items()})
                       for st in states]

    def _fail(self, k, message):
        raise MemberError(f"member {k}: {message}" if len(self.states) > 1 else message, k)

    def take(self, key, shape=None):
        out = []
        for k, st in enumerate(self.states):
            if key not in st:
                self._fail(k, f"weights lack {key!r} for these settings")
            try:
                out.append(st.take(key, shape if shape is not None or not out
                                   else out[0].shape))
            except ValueError as exc:
                self._fail(k, str(exc))
        return torch.stack(out)

    def check_all_used(self):
        for k, st in enumerate(self.states):
            left = sorted(key for key in set(st) - st.used if not _e3nn_constant(key))
            if left:
                self._fail(k, f"{len(left)} tensors these settings do not use, e.g. "
                              f"{left[0]!r}")


class FastINSNet(torch.nn.Module):
    """The forward pass of :class:`~insnet_core.nn.model.INSNet` from its state dict.

    Parameters
    ----------
    config : ModelConfig
        The card's settings (``lmax`` <= 1, see :func:`supported`).
    state : dict of str -> tensor, or list of them
        An INSNet state dict (as saved in ``member-<k>.safetensors``), or the state
        dicts of an ensemble's members (same settings): they run together, one pass
        of every operation for all members.

    Raises
    ------
    ValueError
        A setting this class does not implement, or weights that do not fit the
        settings (the message names the tensor).
    """

    def __init__(self, config: ModelConfig, state):
        super().__init__()
        if not supported(config):
            raise ValueError(f"lmax = {config.lmax}: the plain-torch network implements "
                             "lmax <= 1 only")
        self.config = c = config
        #: one state dict given: outputs without the members' axis (as INSNet's)
        self.single = isinstance(state, dict)
        members = _Members([state] if self.single else list(state))
        if not members.states:
            raise ValueError("no members given")
        self.n_members = len(members.states)
        self._build(c, members)
        members.check_all_used()

    def _build(self, c, state):
        if c.kind == "insnet":
            self.embed_x = (state.take("embed_x.weight", (c.em_dim, 2 * N_ELEMENTS)),
                            state.take("embed_x.bias", (c.em_dim,)))
            self.embed_z = (state.take("embed_z.weight", (c.em_dim, N_ELEMENTS)),
                            state.take("embed_z.bias", (c.em_dim,)))
        else:
            self.embed_x = self.embed_z = (state.take("embed.weight", (c.em_dim, N_ELEMENTS)),
                                           state.take("embed.bias", (c.em_dim,)))
        sh = [(1, (l, (-1) ** l)) for l in range(c.lmax + 1)]
        hidden = [(c.mul, (l, p)) for l in range(c.lmax + 1) for p in (1, -1)]
        irreps = [(c.em_dim, (0, 1))]
        self.layers = []
        for n in range(c.layers):
            scalars = [(m, ir) for m, ir in hidden if ir[0] == 0 and _path_exists(irreps, sh, ir)]
            gated = [(m, ir) for m, ir in hidden if ir[0] > 0 and _path_exists(irreps, sh, ir)]
            gate_ir = (0, 1) if _path_exists(irreps, sh, (0, 1)) else (0, -1)
            gates = [(m, gate_ir) for m, _ in gated]
            gate = _Gate(scalars, gates, gated)
            conv_out = _simplify(_sort(_simplify(scalars) + _simplify(gates)
                                       + _simplify(gated))[0])
            conv = _Convolution(state, f"blocks.{n}.first", irreps, conv_out, sh, c)
            self.layers.append((conv, gate))
            irreps = gate.irreps_out
        n_out = c.n_vision if c.kind == "reference" else c.out_dim
        self.out_conv = _Convolution(state, "out_conv", irreps, [(n_out, (0, 1))], sh, c)
        self.vision_head = self.dos_head = None
        if c.kind == "insnet":
            if "vision" in c.heads:
                self.vision_head = _Head(state, "vision_head",
                                         (c.out_dim, c.out_dim, c.n_vision))
            if "dos" in c.heads:
                self.dos_head = _Head(state, "dos_head",
                                      (c.out_dim, 2 * c.out_dim, 3 * c.dos_bins))
        self.basis = torch.linspace(0.0, c.cutoff, c.n_basis, dtype=torch.float32)
        #: edges per pass of the edge loop: the pass's intermediates (all members) stay
        #: in cache
        self.chunk = max(EDGE_CHUNK // self.n_members, 256)
        self._matrix_cache, self._matrix_lock = OrderedDict(), threading.Lock()

    # ------------------------------------------------------------------
    def _embed(self, numbers, masses, elements):
        """Node inputs (M, n, em_dim) and each element's attributes (M, n_el, em_dim)."""
        c = self.config
        col = numbers - 1
        wx, bx = self.embed_x                     # (M, em, in), (M, em)
        if c.kind == "insnet":
            x = (wx[:, :, col] + wx[:, :, N_ELEMENTS + col] * (masses / MASS_SCALE)
                 ).transpose(1, 2) + bx[:, None, :]
        else:
            x = (wx[:, :, col] * masses).transpose(1, 2) + bx[:, None, :]
        wz, bz = self.embed_z
        z = torch.relu(wz[:, :, elements - 1].transpose(1, 2) + bz[:, None, :])
        return torch.relu(x), z

    def _edges(self, batch):
        """The edge loop's passes: (src, dst, edge maps, radial basis of the pass's distinct
        lengths, each edge's row in it or None when all its lengths differ).

        Edges are ordered by length and a length is computed once: the radial network,
        the edge loop's largest cost, runs on each distinct length of a pass (a
        symmetric cell has few; any cell has every bond twice, i->j and j->i). Lengths
        count as equal when they agree to ``LENGTH_QUANTUM`` (about one float32 rounding
        step at a few A); summation order is the only other change.
        """
        c = self.config
        vec = batch["edge_vec"].to(torch.float32)
        length = vec.norm(dim=1)
        quanta, inverse = torch.unique(torch.round(length.double() / LENGTH_QUANTUM).long(),
                                       return_inverse=True)
        order = torch.argsort(inverse, stable=True)
        inverse, vec, length = inverse[order], vec[order], length[order]
        src, dst = batch["edge_src"][order], batch["edge_dst"][order]
        step = self.basis[1] - self.basis[0]
        distinct = (quanta.double() * LENGTH_QUANTUM).to(torch.float32)
        emb = torch.exp(-((distinct[:, None] - self.basis) / step).pow(2)) \
            * (math.sqrt(c.n_basis) / 1.12)
        u = 2.0 * (length / c.cutoff - 1.0)
        cut = (1.0 - torch.cos(math.pi * u)) / 2.0
        cut = torch.where(u > 0, torch.zeros_like(cut),
                          torch.where(u < -1, torch.ones_like(cut), cut))
        y1 = vec / length.clamp_min(1e-12)[:, None] * (_SQRT3 * cut[:, None])
        n, chunks = self.chunk, []
        for a in range(0, max(len(length), 1), n):
            rows = inverse[a:a + n]
            if len(rows) == 0:
                lo, hi, rows = 0, 0, None
            else:
                lo, hi = int(rows[0]), int(rows[-1]) + 1
                rows = None if hi - lo == len(rows) else rows - lo
            chunks.append((src[a:a + n], dst[a:a + n], _edge_maps(cut[a:a + n], y1[a:a + n]),
                           emb[lo:hi], rows))
        return chunks

    def node_features(self, batch):
        """Final per-atom scalars, (M, n_nodes, out_dim or n_vision); (n_nodes, ...) for
        a single state dict."""
        h = self._node_features(batch)
        return h[0] if self.single else h

    def _node_features(self, batch):
        numbers = batch["numbers"]
        elements, inverse = torch.unique(numbers, return_inverse=True)
        groups = [torch.nonzero(inverse == k).flatten() for k in range(len(elements))]
        x, z = self._embed(numbers, batch["masses"].to(torch.float32), elements)
        mats = self._element_matrices(elements, z)
        chunks = self._edges(batch)
        for (conv, gate), m in zip(self.layers, mats):
            x = gate(conv(x, groups, m, chunks))
        return self.out_conv(x, groups, mats[-1], chunks)

    def _element_matrices(self, elements, z):
        """Every convolution's per-element matrices for these elements (ascending Z), from
        a cache of the last ``MATRIX_CACHE`` elements seen (each is a fixed function of the
        element: a few MB, rebuilt in ~1 ms from weights that have left the CPU caches)."""
        keys = [int(e) for e in elements]
        convs = [conv for conv, _ in self.layers] + [self.out_conv]
        with self._matrix_lock:         # a server's threads may share one network
            per = {e: self._matrix_cache.get(e) for e in keys}
        missing = [k for k, e in enumerate(keys) if per[e] is None]
        if missing:
            new = [conv.matrices(z[:, missing]) for conv in convs]
            for j, k in enumerate(missing):   # copies: a view would keep the whole batch's
                per[keys[k]] = [(a[:, j].contiguous(), b[:, j].contiguous())  # tensors alive
                                for a, b in new]
        with self._matrix_lock:
            for e in keys:
                self._matrix_cache[e] = per[e]
                self._matrix_cache.move_to_end(e)
            while len(self._matrix_cache) > MATRIX_CACHE:
                self._matrix_cache.popitem(last=False)
        per = [per[e] for e in keys]
        return [(torch.stack([p[n][0] for p in per], dim=1),
                 torch.stack([p[n][1] for p in per], dim=1)) for n in range(len(convs))]

    def forward(self, batch, features=False):
        """As :meth:`insnet_core.nn.model.INSNet.forward` (same inputs and outputs); for
        an ensemble every output has the members first: ``vision`` (M, n_graphs, 119),
        ``dos`` (M, n_nodes, 3, bins), ``features`` (M, n_graphs, 2k)."""
        c = self.config
        h = self._node_features(batch)
        index, n_graphs = batch["node_graph"], batch["n_graphs"]
        out = {}
        if features:
            out["features"] = torch.stack([pooled_features(hm, index, n_graphs) for hm in h])
        if "vision" in c.heads:
            per_atom = h if c.kind == "reference" else self.vision_head(h)
            out["vision"] = torch.stack([max_normalise(torch.relu(graph_mean(p, index, n_graphs)))
                                         for p in per_atom])
        if "dos" in c.heads:
            logits = self.dos_head(h).unflatten(-1, (3, c.dos_bins))
            out["dos"] = torch.softmax(logits, dim=-1)
        return {k: v[0] for k, v in out.items()} if self.single else out


class LoopedMembers(torch.nn.Module):
    """Modules of one ensemble run one after another, outputs stacked members first (for
    settings :class:`FastINSNet` does not implement)."""

    def __init__(self, models):
        super().__init__()
        self.members = torch.nn.ModuleList(models)
        self.config = models[0].config
        self.n_members = len(models)

    def forward(self, batch, features=False):
        outs = [m(batch, features=features) for m in self.members]
        return {k: torch.stack([o[k] for o in outs]) for k in outs[0]}
