#!/usr/bin/env python
"""A 5184-atom amorphous-like TiO2-SiO2 cell, the reference work's glass example.

alpha-quartz (mp-7000, 9 atoms, from the committed database) repeated 8 x 8 x 9 (5184
atoms); Ti on 8 % of the Si sites (chosen with a seed); every atom displaced at random by
0.1 A rms (isotropic Gaussian, seeded). Written as a POSCAR.

Usage::

    python examples/make_glass_cell.py [-o glass_5184.vasp] [--seed 0]
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: repetitions of the 9-atom quartz cell: 8 * 8 * 9 * 9 = 5184 atoms
REPS = (8, 8, 9)


def glass_cell(seed=0, ti_fraction=0.08, rms_displacement=0.1, reps=REPS):
    """(lattice (3, 3) A, species list, Cartesian positions (n, 3) A)."""
    from insnet_core.dataset.reader import Database
    rec = Database(REPO / "data" / "insnet-db").record("mp-7000")
    lattice = np.asarray(rec["lattice"], dtype=float)
    species = [str(s) for s in rec["species"]]
    frac = np.asarray(rec["frac_coords"], dtype=float)
    cells = np.array(list(itertools.product(*[range(r) for r in reps])), dtype=float)
    big_frac = np.concatenate([(frac + c) / np.array(reps) for c in cells])
    big_species = species * len(cells)
    big_lattice = lattice * np.array(reps, dtype=float)[:, None]
    rng = np.random.default_rng(seed)
    si = [i for i, s in enumerate(big_species) if s == "Si"]
    for i in rng.choice(si, int(round(ti_fraction * len(si))), replace=False):
        big_species[i] = "Ti"
    cart = big_frac @ big_lattice
    cart += rng.normal(scale=rms_displacement / np.sqrt(3), size=cart.shape)
    return big_lattice, big_species, cart


def write_poscar(path, lattice, species, cart, comment):
    order = sorted(set(species), key=species.index)
    lines = [comment, "1.0"] + [" ".join(f"{x:.8f}" for x in row) for row in lattice]
    lines += [" ".join(order), " ".join(str(species.count(e)) for e in order), "Cartesian"]
    for e in order:
        lines += [" ".join(f"{x:.8f}" for x in p) for s, p in zip(species, cart) if s == e]
    Path(path).write_text("\n".join(lines) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", default="glass_5184.vasp")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    lattice, species, cart = glass_cell(args.seed)
    write_poscar(args.output, lattice, species, cart,
                 f"TiO2-SiO2 glass-like cell from alpha-quartz {REPS}, 8 % Ti, 0.1 A rms, "
                 f"seed {args.seed}")
    print(f"wrote {args.output}: {len(species)} atoms "
          f"({', '.join(f'{e} {species.count(e)}' for e in sorted(set(species)))})")


if __name__ == "__main__":
    main()
