"""Tests for insnet_core.structure: reading CIF/POSCAR files and validating them."""
import dataclasses
import math
import os
import warnings
from pathlib import Path

import numpy as np
import periodictable
import pytest

from insnet_core import InputError
from insnet_core.structure import (
    DEFAULT_MAX_ATOMS, MIN_DISTANCE, Structure, read_structure, validate)

REPO = Path(__file__).resolve().parents[1]
# SiF4 (mp-1818) unit cell from Togo's phonondb 2018-04-17 (CC-BY-4.0), shipped in examples/
SIF4 = REPO / "examples" / "data" / "phonondb" / "mp-1818-20180417" / "POSCAR-unitcell"
# example structures kept with the tests (provenance: tests/data/README.md)
BA3ZNRU2O9 = REPO / "tests" / "data" / "examples" / "Ba3ZnRu2O9.cif"


def cell_volume(a, b, c, alpha, beta, gamma):
    """Triclinic cell volume from the six cell parameters (degrees)."""
    ca, cb, cg = (math.cos(math.radians(x)) for x in (alpha, beta, gamma))
    return a * b * c * math.sqrt(1 - ca ** 2 - cb ** 2 - cg ** 2 + 2 * ca * cb * cg)


def snapshot(path):
    st = os.stat(path)
    return Path(path).read_bytes(), st.st_mtime_ns, st.st_size


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def raises_input_error(path, *details, **kwargs):
    """read_structure(path) must raise InputError naming the file and every detail."""
    before = snapshot(path) if Path(path).is_file() else None
    with pytest.raises(InputError) as info:
        read_structure(path, **kwargs)
    message = str(info.value)
    assert Path(path).name in message, message
    for detail in details:
        assert detail in message, f"{detail!r} not in {message!r}"
    assert "Traceback" not in message
    if before is not None:
        assert snapshot(path) == before, "the input file was modified"
    return message


# ------------------------------------------------------------------ CIF text
def cif(atoms, *, cell="4.0 4.0 4.0 90 90 90", symmetry="loop_\n_space_group_symop_operation_xyz\n'x, y, z'\n",
        occupancy=True, type_symbol=True, header="data_test"):
    """A small CIF: ``atoms`` is a list of (label, type_symbol, occupancy, x, y, z) strings."""
    a, b, c, al, be, ga = cell.split()
    cols = ["_atom_site_label"]
    if type_symbol:
        cols.append("_atom_site_type_symbol")
    if occupancy:
        cols.append("_atom_site_occupancy")
    cols += ["_atom_site_fract_x", "_atom_site_fract_y", "_atom_site_fract_z"]
    rows = []
    for label, sym, occ, x, y, z in atoms:
        row = [label] + ([sym] if type_symbol else []) + ([occ] if occupancy else []) + [x, y, z]
        rows.append("  " + "  ".join(row))
    return (f"{header}\n_cell_length_a {a}\n_cell_length_b {b}\n_cell_length_c {c}\n"
            f"_cell_angle_alpha {al}\n_cell_angle_beta {be}\n_cell_angle_gamma {ga}\n"
            f"{symmetry}\nloop_\n" + "\n".join(cols) + "\n" + "\n".join(rows) + "\n")


CSCL = [("Cs1", "Cs", "1.0", "0", "0", "0"), ("Cl1", "Cl", "1.0", "0.5", "0.5", "0.5")]


def poscar(symbols, counts, coords, lattice=((5, 0, 0), (0, 5, 0), (0, 0, 5)), scale="1.0"):
    lines = ["test structure", scale]
    lines += ["  ".join(f"{x:.10f}" for x in row) for row in lattice]
    if symbols is not None:
        lines.append(" ".join(symbols))
    lines.append(" ".join(str(c) for c in counts))
    lines.append("Direct")
    lines += ["  ".join(f"{x:.10f}" for x in row) for row in coords]
    return "\n".join(lines) + "\n"


# ============================================================ good inputs
def test_read_ba3znru2o9_cif():
    path = BA3ZNRU2O9
    before = snapshot(path)
    s = read_structure(path)
    assert snapshot(path) == before
    # Wyckoff multiplicities in P6_3/mmc: Ba1 2b, Ba2 4f, Zn1 2a, Ru1 4f, O1 6h, O2 12k
    # -> 30 atoms = 2 formula units. (O1 is listed as (0.4853, 0.971, 1/4), only
    # rounded onto x, 2x; its images must not be doubled into 12 near-coincident atoms.)
    assert s.n_atoms == 30
    counts = {el: s.species.count(el) for el in s.elements}
    assert counts == {"Ba": 6, "Zn": 2, "Ru": 4, "O": 18}
    assert s.formula == "Ba3ZnRu2O9"
    assert s.elements == ("Ba", "O", "Ru", "Zn")
    expected = cell_volume(5.77490, 5.77490, 14.1823, 90, 90, 120)
    assert s.volume == pytest.approx(expected, rel=1e-9)
    assert s.volume == pytest.approx(abs(np.linalg.det(s.lattice)), rel=1e-12)
    assert s.volume == pytest.approx(409.605638, rel=1e-6)  # _cell_volume in the file
    assert s.source == str(path)
    # 0.9119(7) for the Ba2 z coordinate parses to 0.9119
    ba_z = s.frac_coords[[i for i, e in enumerate(s.species) if e == "Ba"], 2]
    assert np.any(np.isclose(ba_z, 0.9119, atol=1e-12))
    assert np.any(np.isclose(ba_z, 1 - 0.9119, atol=1e-12))  # its -z image
    assert np.linalg.norm(s.lattice[0]) == pytest.approx(5.77490, abs=1e-12)
    assert np.linalg.norm(s.lattice[2]) == pytest.approx(14.1823, abs=1e-12)


def test_read_teo2_poscar():
    s = read_structure(BA3ZNRU2O9.parent / "TeO2.POSCAR")
    assert s.n_atoms == 12
    assert s.species == ("O",) * 8 + ("Te",) * 4
    assert s.formula == "TeO2"
    assert s.volume == pytest.approx(4.82073203 ** 2 * 7.44328478, rel=1e-8)
    assert s.frac_coords[0] == pytest.approx([0.25063581, 0.35824429, 0.3063105])


def test_read_phonondb_poscar_unitcell():
    before = snapshot(SIF4)
    s = read_structure(SIF4)
    assert snapshot(SIF4) == before
    assert s.n_atoms == 10
    assert s.species == ("F",) * 8 + ("Si",) * 2
    assert s.formula == "SiF4"
    assert s.volume == pytest.approx(5.46225847 ** 3, rel=1e-8)
    assert s.volume == pytest.approx(abs(np.linalg.det(s.lattice)))
    assert s.frac_coords[9] == pytest.approx([0.5, 0.5, 0.5])


def test_uncertainties_parse(tmp_path):
    atoms = [("Cs1", "Cs", "1.000(2)", "0", "0", "0"),
             ("Cl1", "Cl", "1.0", "0.5000(3)", "0.5", "0.4990(12)")]
    path = write(tmp_path, "cscl.cif", cif(atoms, cell="4.1230(2) 4.1230(2) 4.1230(2) 90 90 90.00(1)"))
    s = read_structure(path)
    assert s.n_atoms == 2
    assert s.species == ("Cs", "Cl")
    assert s.frac_coords[1] == pytest.approx([0.5, 0.5, 0.499], abs=1e-15)
    assert s.lattice == pytest.approx(np.eye(3) * 4.123, abs=1e-12)
    assert s.volume == pytest.approx(4.123 ** 3)


def test_cif_space_group_by_name(tmp_path):
    sym = "_symmetry_space_group_name_H-M 'F m -3 m'\n"
    atoms = [("Na1", "Na+", "1", "0", "0", "0"), ("Cl1", "Cl-", "1", "0.5", "0.5", "0.5")]
    s = read_structure(write(tmp_path, "nacl.cif", cif(atoms, cell="5.64 5.64 5.64 90 90 90",
                                                        symmetry=sym)))
    assert s.n_atoms == 8
    assert s.formula == "NaCl"
    assert s.species == ("Na",) * 4 + ("Cl",) * 4


def test_cif_symbols_from_labels(tmp_path):
    atoms = [("Cs1", "", "1", "0", "0", "0"), ("Cl1a", "", "1", "0.5", "0.5", "0.5")]
    path = write(tmp_path, "labels.cif", cif(atoms, type_symbol=False, occupancy=False))
    assert read_structure(path).species == ("Cs", "Cl")


def test_format_detection_and_override(tmp_path):
    text_poscar = SIF4.read_text()
    assert read_structure(write(tmp_path, "cell.txt", text_poscar)).formula == "SiF4"
    assert read_structure(write(tmp_path, "SiF4.vasp", text_poscar)).formula == "SiF4"
    assert read_structure(write(tmp_path, "CONTCAR", text_poscar)).formula == "SiF4"
    text_cif = cif(CSCL)
    assert read_structure(write(tmp_path, "model.dat", text_cif)).formula == "CsCl"
    odd = write(tmp_path, "POSCAR-but-cif", text_cif)
    assert read_structure(odd, fmt="cif").formula == "CsCl"
    assert read_structure(SIF4, fmt="POSCAR").n_atoms == 10
    raises_input_error(odd, "not a valid POSCAR", "fmt='cif'")  # a POSCAR by its name
    raises_input_error(SIF4, "'xyz'", fmt="xyz")


def test_reading_emits_no_warnings(tmp_path):
    path = write(tmp_path, "nacl.cif", cif(
        [("Na1", "Na", "1", "0", "0", "0"), ("Cl1", "Cl", "1", "0.5", "0.5", "0.5")],
        cell="5.64 5.64 5.64 90 90 90", symmetry="_space_group_IT_number 225\n"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_structure(path).n_atoms == 8
        assert read_structure(SIF4).n_atoms == 10
        read_structure(BA3ZNRU2O9)


# ========================================================= Structure API
def test_structure_api():
    s = read_structure(SIF4)
    assert s.cart_coords == pytest.approx(s.frac_coords @ s.lattice)
    assert s.cart_coords[9] == pytest.approx([5.46225847 / 2] * 3)
    assert s.masses.shape == (10,)
    assert s.masses[0] == pytest.approx(periodictable.F.mass)
    assert s.masses[9] == pytest.approx(28.0855, abs=1e-3)
    assert s.elements == ("F", "Si")

    pmg = s.to_pymatgen()
    assert len(pmg) == 10 and pmg.composition.reduced_formula == "SiF4"
    assert pmg.volume == pytest.approx(s.volume)

    atoms = s.to_phonopy_atoms()
    assert list(atoms.symbols) == list(s.species)
    assert np.allclose(atoms.cell, s.lattice)
    assert np.allclose(atoms.scaled_positions, s.frac_coords)
    assert np.allclose(atoms.masses, s.masses)

    with pytest.raises(dataclasses.FrozenInstanceError):
        s.source = "x"
    with pytest.raises(ValueError):
        s.frac_coords[0, 0] = 0.3
    assert "SiF4" in repr(s)


def test_hash_is_stable_and_content_based():
    a = read_structure(SIF4)
    b = read_structure(SIF4)
    assert a.hash() == b.hash()
    assert len(a.hash()) == 64 and int(a.hash(), 16) >= 0
    same = Structure.from_arrays(a.lattice, a.species, a.frac_coords + [1.0, 0.0, -1.0], source="other")
    assert same.hash() == a.hash()  # same crystal, source ignored, coordinates wrapped
    tiny = Structure.from_arrays(a.lattice, a.species, a.frac_coords + 1e-9)
    assert tiny.hash() == a.hash()
    moved = a.frac_coords.copy()
    moved[0, 0] += 1e-3
    assert Structure.from_arrays(a.lattice, a.species, moved).hash() != a.hash()
    relabelled = ("Cl",) + a.species[1:]
    assert Structure.from_arrays(a.lattice, relabelled, a.frac_coords).hash() != a.hash()
    assert Structure.from_arrays(a.lattice * 1.01, a.species, a.frac_coords).hash() != a.hash()


def test_from_arrays_and_constructor_validate():
    lat = np.eye(3) * 4.0
    s = Structure.from_arrays(lat, ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]], source="mine")
    assert s.n_atoms == 2 and s.formula == "CsCl" and s.source == "mine"
    direct = Structure(lat, ("Cs", "Cl"), np.array([[0, 0, 0], [0.5, 0.5, 0.5]]))
    assert direct.hash() == s.hash()
    with pytest.raises(InputError, match="0.100 A apart"):
        Structure(lat, ("Cs", "Cl"), np.array([[0, 0, 0], [0.025, 0, 0]]))
    with pytest.raises(InputError, match="2 species but 1 coordinate rows"):
        Structure.from_arrays(lat, ["Cs", "Cl"], [[0, 0, 0]])
    with pytest.raises(InputError, match="3x3"):
        Structure.from_arrays(np.eye(2), ["Cs"], [[0, 0, 0]])
    with pytest.raises(InputError, match="more than the limit of 1"):
        Structure.from_arrays(lat, ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]], max_atoms=1)


def test_validate_self_image():
    with pytest.raises(InputError, match=r"atom 1 \(H\) is 0.400 A from its own periodic image"):
        validate(np.eye(3) * 0.4, ["H"], [[0, 0, 0]], source="tiny")


# ============================================================ bad inputs
def test_missing_file(tmp_path):
    raises_input_error(tmp_path / "nothere.cif", "not found")


def test_directory(tmp_path):
    (tmp_path / "POSCAR").mkdir()
    raises_input_error(tmp_path / "POSCAR", "directory")


def test_empty_file(tmp_path):
    raises_input_error(write(tmp_path, "empty.cif", ""), "empty")
    raises_input_error(write(tmp_path, "POSCAR", "  \n\n"), "empty")


def test_unreadable_file(tmp_path, monkeypatch):
    path = write(tmp_path, "locked.cif", cif(CSCL))

    def refuse(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)  # works even when run as root
    with pytest.raises(InputError, match="locked.cif: cannot read the file .Permission denied"):
        read_structure(path)


def test_binary_and_unrecognised_files(tmp_path):
    path = tmp_path / "junk.cif"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    raises_input_error(path, "binary")
    raises_input_error(write(tmp_path, "notes.txt", "hello world\nthis is prose\n"),
                       "neither a CIF")
    raises_input_error(write(tmp_path, "prose.cif", "hello world\n"), "line 1", "data_")


def test_cif_syntax_errors_give_line_numbers(tmp_path):
    good = cif(CSCL)
    lines = good.splitlines()
    # a row with a missing value: the loop has 6 names, the broken row 5 values
    broken = good.replace("Cl1  Cl  1.0  0.5  0.5  0.5", "Cl1  Cl  1.0  0.5  0.5")
    loop_line = next(i for i, l in enumerate(lines) if l == "loop_" and i > 8) + 1
    row_line = next(i for i, l in enumerate(lines) if l.strip().startswith("Cl1")) + 1
    raises_input_error(write(tmp_path, "short_row.cif", broken),
                       f"line {loop_line}", f"check line {row_line}", "not a multiple of 6")
    stray = good.replace("_cell_length_b 4.0", "_cell_length_b 4.0 4.1")
    raises_input_error(write(tmp_path, "stray.cif", stray), "line 3", "'4.1'")
    quote = good.replace("'x, y, z'", "'x, y, z")
    raises_input_error(write(tmp_path, "quote.cif", quote), "line 10", "\"'x, y, z\"", "never closed")
    text = good + ";\nan unterminated text field\n"
    raises_input_error(write(tmp_path, "text.cif", text), f"line {len(lines) + 1}", "';'")
    no_value = good.replace("_cell_angle_gamma 90", "_cell_angle_gamma")
    raises_input_error(write(tmp_path, "novalue.cif", no_value), "line 7", "_cell_angle_gamma")


def test_cif_structural_problems(tmp_path):
    no_cell = "\n".join(l for l in cif(CSCL).splitlines() if not l.startswith("_cell_length_a"))
    raises_input_error(write(tmp_path, "nocell.cif", no_cell), "cell parameters")
    bad_coord = cif([("Cs1", "Cs", "1", "0", "0", "?")])
    raises_input_error(write(tmp_path, "coord.cif", bad_coord), "Cs1", "coordinates")
    bad_sg = cif(CSCL, symmetry="_symmetry_space_group_name_H-M 'Q 9 9'\n")
    raises_input_error(write(tmp_path, "sg.cif", bad_sg), "Q 9 9", "symmetry")
    two = cif(CSCL) + cif(CSCL, header="data_second")
    raises_input_error(write(tmp_path, "two.cif", two), "2 structures", "data_second")
    cart = cif(CSCL).replace("_atom_site_fract_", "_atom_site_Cartn_")
    raises_input_error(write(tmp_path, "cart.cif", cart), "Cartesian")


def test_poscar_syntax_errors(tmp_path):
    good = SIF4.read_text().splitlines()
    bad_vec = good.copy()
    bad_vec[3] = "  0.0  five  0.0"
    raises_input_error(write(tmp_path, "POSCAR-vec", "\n".join(bad_vec)), "line 4", "cell vector")
    short = "\n".join(good[:-2]) + "\n"
    raises_input_error(write(tmp_path, "POSCAR-short", short), "10 atoms", "only 8")
    counts = good.copy()
    counts[6] = "8 2 1"
    raises_input_error(write(tmp_path, "POSCAR-counts", "\n".join(counts)), "line 7",
                       "3 atom counts for 2 element symbols")
    vasp4 = "\n".join(good[:5] + good[6:]) + "\n"
    raises_input_error(write(tmp_path, "POSCAR-vasp4", vasp4), "no element symbols")
    bad_coord = good.copy()
    bad_coord[10] = "0.1 0.2 x"
    raises_input_error(write(tmp_path, "POSCAR-coord", "\n".join(bad_coord)), "line 11", "atom 3")
    raises_input_error(write(tmp_path, "POSCAR-tiny", "a\n1.0\n"), "only 2 lines")


def test_no_atoms(tmp_path):
    raises_input_error(write(tmp_path, "POSCAR", poscar(["Si"], [0], [])), "no atoms")
    no_sites = cif(CSCL).split("loop_\n_atom_site_label")[0]
    raises_input_error(write(tmp_path, "empty_cell.cif", no_sites), "no atoms")
    with pytest.raises(InputError, match="no atoms"):
        Structure.from_arrays(np.eye(3), [], np.zeros((0, 3)))


def test_partial_occupancy(tmp_path):
    atoms = [("Cs1", "Cs", "1.0", "0", "0", "0"), ("Cl1", "Cl", "0.5", "0.5", "0.5", "0.5")]
    raises_input_error(write(tmp_path, "half.cif", cif(atoms)), "site Cl1 (Cl)", "occupancy 0.5",
                       "partial or mixed occupancy")
    atoms[1] = ("Cl1", "Cl", "0.95(2)", "0.5", "0.5", "0.5")
    raises_input_error(write(tmp_path, "refined.cif", cif(atoms)), "Cl1", "occupancy 0.95")
    # occupancy 0: pymatgen's default parsing drops such a site without a word
    atoms[1] = ("Cl1", "Cl", "0", "0.5", "0.5", "0.5")
    raises_input_error(write(tmp_path, "vacant.cif", cif(atoms)), "Cl1", "occupancy 0:")
    atoms[1] = ("Cl1", "Cl", "1.2", "0.5", "0.5", "0.5")
    raises_input_error(write(tmp_path, "over.cif", cif(atoms)), "Cl1", "occupancy 1.2")


def test_mixed_occupancy(tmp_path):
    # Fe/Co sharing one site: pymatgen would merge these into one disordered site
    atoms = [("Fe1", "Fe", "0.5", "0", "0", "0"), ("Co1", "Co", "0.5", "0", "0", "0"),
             ("O1", "O", "1", "0.5", "0.5", "0.5")]
    msg = raises_input_error(write(tmp_path, "feco.cif", cif(atoms)), "site Fe1 (Fe)",
                             "occupancy 0.5", "Co1 (Co, occupancy 0.5)")
    assert "shares its position" in msg and "other site" not in msg
    # both given as fully occupied: two atoms on one position
    atoms[0] = ("Fe1", "Fe", "1", "0", "0", "0")
    atoms[1] = ("Co1", "Co", "1", "0", "0", "0")
    raises_input_error(write(tmp_path, "feco_full.cif", cif(atoms)), "Fe1 (atom 1)",
                       "Co1 (atom 2)", "0.000 A apart", "mixed site")


def test_unknown_and_unsupported_elements(tmp_path):
    atoms = [("Xx1", "Xx", "1", "0", "0", "0"), ("Cl1", "Cl", "1", "0.5", "0.5", "0.5")]
    raises_input_error(write(tmp_path, "xx.cif", cif(atoms)), "Xx1", "'Xx' is not a chemical element")
    raises_input_error(write(tmp_path, "POSCAR-Xx", poscar(["Xx"], [1], [[0, 0, 0]])), "'Xx'",
                       "atom 1")
    raises_input_error(write(tmp_path, "POSCAR-D", poscar(["D", "O"], [1, 1], [[0, 0, 0], [0.5, 0, 0]])),
                       "'D'", "isotope H-2", "use 'H'")
    raises_input_error(write(tmp_path, "POSCAR-Am", poscar(["Am"], [1], [[0, 0, 0]])), "'Am'", "Z = 95")
    raises_input_error(write(tmp_path, "POSCAR-Po", poscar(["Po"], [1], [[0, 0, 0]])), "'Po'",
                       "neutron scattering cross section")


def test_overlapping_atoms(tmp_path):
    text = poscar(["Si", "O"], [1, 1], [[0, 0, 0], [0.06, 0, 0]])  # 0.3 A in a 5 A cell
    raises_input_error(write(tmp_path, "POSCAR", text), "atom 1 (Si)", "atom 2 (O)", "0.300 A apart",
                       f"{MIN_DISTANCE} A")
    across = poscar(["Si", "O"], [1, 1], [[0.99, 0.5, 0.5], [0.02, 0.5, 0.5]])  # across the boundary
    raises_input_error(write(tmp_path, "across.vasp", across), "atom 1 (Si)", "atom 2 (O)", "0.150 A apart")
    ok = poscar(["Si", "O"], [1, 1], [[0.9, 0.5, 0.5], [0.02, 0.5, 0.5]])  # 0.6 A: allowed
    assert read_structure(write(tmp_path, "ok.vasp", ok)).n_atoms == 2


def test_symmetry_images_too_close(tmp_path):
    # a site 0.1 A off a mirror plane: its image is 0.2 A away
    sym = "loop_\n_space_group_symop_operation_xyz\n'x, y, z'\n'x, y, -z'\n"
    atoms = [("Si1", "Si", "1", "0", "0", "0.01")]
    raises_input_error(write(tmp_path, "mirror.cif", cif(atoms, cell="10 10 10 90 90 90", symmetry=sym)),
                       "Si1 (atom 1)", "Si1 (atom 2)", "0.200 A apart", "symmetry images")


def test_bad_cell_volume(tmp_path):
    left = poscar(["Si"], [1], [[0, 0, 0]], lattice=((5, 0, 0), (0, 5, 0), (0, 0, -5)))
    raises_input_error(write(tmp_path, "POSCAR-left", left), "-125", "left-handed")
    flat = poscar(["Si"], [1], [[0, 0, 0]], lattice=((5, 0, 0), (0, 5, 0), (5, 5, 0)))
    raises_input_error(write(tmp_path, "POSCAR-flat", flat), "cell volume is 0", "degenerate")
    nearly = poscar(["Si"], [1], [[0, 0, 0]], lattice=((5, 0, 0), (0, 5, 0), (5, 5, 1e-4)))
    raises_input_error(write(tmp_path, "POSCAR-nearly", nearly), "cell volume is 0.0025", "degenerate")
    impossible = cif(CSCL, cell="4 4 4 120 120 120")
    raises_input_error(write(tmp_path, "angles.cif", impossible), "cell")


def test_too_many_atoms():
    assert DEFAULT_MAX_ATOMS == 500
    raises_input_error(SIF4, "has 10 atoms", "limit of 5", "max_atoms", max_atoms=5)
    assert read_structure(SIF4, max_atoms=10).n_atoms == 10
    assert read_structure(SIF4, max_atoms=None).n_atoms == 10
