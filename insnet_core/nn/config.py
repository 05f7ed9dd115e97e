"""Hyper-parameters of the equivariant network (:class:`ModelConfig`), without torch.

The model card stores them; both the e3nn network (:mod:`insnet_core.nn.model`, used
for training) and its plain-torch inference form (:mod:`insnet_core.nn.fastnet`) are
built from them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

__all__ = ["ModelConfig", "N_ELEMENTS", "KINDS", "MASS_SCALE"]

#: Length of the one-hot element vector (H .. Og).
N_ELEMENTS = 118
#: Model kinds: the shipped design and the reference work's (1D head only).
KINDS = ("insnet", "reference")
#: Masses enter the ``insnet`` kind's node input divided by this (Da).
MASS_SCALE = 100.0


@dataclass
class ModelConfig:
    """Hyper-parameters of the network (:class:`insnet_core.nn.model.INSNet`); saved in the model card.

    Lengths in angstrom, energies in meV.
    """

    kind: str = "insnet"
    cutoff: float = 6.0
    n_basis: int = 10
    radial_layers: int = 1
    radial_neurons: int = 100
    em_dim: int = 64
    mul: int = 32
    lmax: int = 1
    layers: int = 2
    num_neighbors: float = 50.0
    out_dim: int = 64
    n_vision: int = 119
    dos_bins: int = 500
    dos_width: float = 1.0
    heads: tuple = field(default_factory=lambda: ("vision", "dos"))

    def __post_init__(self):
        self.heads = tuple(self.heads)
        if self.kind not in KINDS:
            raise ValueError(f"model kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "reference" and self.heads != ("vision",):
            raise ValueError("the reference kind has the VISION head only")
        for h in self.heads:
            if h not in ("vision", "dos"):
                raise ValueError(f"unknown head {h!r}")

    def to_dict(self):
        d = asdict(self)
        d["heads"] = list(self.heads)
        return d

    @classmethod
    def from_dict(cls, data):
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model settings {sorted(unknown)}")
        return cls(**data)
