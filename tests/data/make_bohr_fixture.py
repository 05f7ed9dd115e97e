#!/usr/bin/env python
"""Write tests/data/csau_qe_bohr/phonopy.yaml: CsAu (examples/data/phonondb/mp-2667) in QE units.

The VASP force sets of the phonondb folder give force constants in eV/A^2 on a cell in
angstrom. This script writes the same crystal as Quantum ESPRESSO's phonopy interface
would: ``calculator: qe``, cell in bohr, force constants in Ry/bohr^2 (compact form),
no BORN. Frequencies and the angstrom-sized mesh must be those of the original.

Run from the repository root: ``python tests/data/make_bohr_fixture.py``.
"""
from pathlib import Path

import numpy as np
import phonopy
from phonopy.interface.calculator import get_calculator_physical_units
from phonopy.structure.atoms import PhonopyAtoms

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "examples" / "data" / "phonondb" / "mp-2667-20180417"
OUT = REPO / "tests" / "data" / "csau_qe_bohr"

qe = get_calculator_physical_units("qe")
bohr = qe.distance_to_A                       # angstrom per bohr
ry = qe.energy_to_eV                          # eV per Ry
ref = phonopy.load(supercell_matrix=np.diag([4, 4, 4]), primitive_matrix="auto",
                   unitcell_filename=str(SOURCE / "POSCAR-unitcell"),
                   force_sets_filename=str(SOURCE / "FORCE_SETS"), is_compact_fc=True,
                   produce_fc=True, log_level=0, fc_calculator="traditional")
cell = ref.unitcell
unitcell = PhonopyAtoms(symbols=cell.symbols, cell=cell.cell / bohr,
                        scaled_positions=cell.scaled_positions, masses=cell.masses)
out = phonopy.Phonopy(unitcell, supercell_matrix=ref.supercell_matrix,
                      primitive_matrix=ref.primitive_matrix, calculator="qe")
# eV/A^2 -> Ry/bohr^2
out.force_constants = ref.force_constants * bohr ** 2 / ry
OUT.mkdir(parents=True, exist_ok=True)
out.save(str(OUT / "phonopy.yaml"), settings={"force_constants": True})
print(f"wrote {OUT / 'phonopy.yaml'}")
