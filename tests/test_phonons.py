"""Independent checks of the phonon layer against phonopy on the same force constants.

The engine (``run_mesh`` + ``build_ingredients`` / ``mean_square_displacement``)
reduces phonopy's eigenvectors in its own way: irreducible wedge with
orbit-averaged projections, linear split of mode energies onto a 0.1 meV grid,
exclusion of modes below ``DEFAULT_MIN_ENERGY``. Here the same quantities are
obtained from phonopy's own routines on the full (symmetry-free) mesh and
compared:

* partial DOS per element  <->  ``Phonopy.run_projected_dos``;
* isotropic mean-square displacement  <->  ``Phonopy.run_thermal_displacements``.

Also covered: the mesh rule, imaginary-mode detection, ``read_phonopy_conf``
and the error messages of ``load_phonopy`` for broken inputs.
"""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from insnet_core import InputError
from insnet_core.incoherent import (DEFAULT_MIN_ENERGY, build_ingredients,
                                    mean_square_displacement)
from insnet_core.phonons import (load_phonopy, mesh_for_spacing, read_phonopy_conf,
                                 run_mesh)
from insnet_core.units import MEV_PER_THZ

DATA = Path(__file__).resolve().parents[1] / "examples" / "data" / "phonondb"
CSAU = DATA / "mp-2667-20180417"
SIF4 = DATA / "mp-1818-20180417"
TL = DATA / "mp-39-20180417"

#: Gaussian (standard deviation, meV) applied to both DOS before comparing them.
SMOOTH_SIGMA = 0.3
#: Coarse comparison grid spacing, meV.
COARSE_STEP = 0.25


@pytest.fixture(scope="module", params=[CSAU, SIF4], ids=["CsAu", "SiF4"])
def crystal(request):
    """(phonopy object, engine modes) for one crystal; the phonopy mesh is re-run per test."""
    phonon = load_phonopy(request.param)
    modes = run_mesh(phonon, spacing=0.1)  # irreducible wedge, spacing < 0.1 1/A
    return phonon, modes


def _phonopy_full_mesh(phonon, mesh):
    """Same Gamma-centred mesh, all q-points, eigenvectors kept (what phonopy's
    projected DOS and thermal displacements require)."""
    phonon.run_mesh(list(mesh), is_mesh_symmetry=False, with_eigenvectors=True,
                    is_gamma_center=True)


# ---------------------------------------------------------------- (c) partial DOS
def test_partial_dos_per_element_matches_phonopy(crystal):
    phonon, modes = crystal
    ing = build_ingredients(modes, grouping="element")
    coarse = np.arange(0.0, modes.max_energy + 6 * SMOOTH_SIGMA, COARSE_STEP)

    # Engine: grid weights (per atom and direction, summing to ~1) smoothed by a
    # unit-area Gaussian evaluated on the coarse grid -> states per meV per direction.
    kern = (np.exp(-0.5 * ((coarse[:, None] - ing.grid[None, :]) / SMOOTH_SIGMA) ** 2)
            / (np.sqrt(2 * np.pi) * SMOOTH_SIGMA))
    engine = ing.dos @ kern.T                                   # (n_elements, n_coarse)

    # phonopy: Gaussian-smeared projected DOS on the same points, states per THz
    # per atom (integrates to 3) -> divide by 3 and by meV/THz.
    _phonopy_full_mesh(phonon, modes.mesh)
    phonon.run_projected_dos(sigma=SMOOTH_SIGMA / MEV_PER_THZ,
                             freq_min=coarse[0] / MEV_PER_THZ,
                             freq_max=coarse[-1] / MEV_PER_THZ,
                             freq_pitch=COARSE_STEP / MEV_PER_THZ)
    pdos = phonon.projected_dos
    freq_pts = np.asarray(pdos.frequency_points) * MEV_PER_THZ
    assert freq_pts.shape == coarse.shape and np.allclose(freq_pts, coarse, atol=1e-9)
    per_atom = np.asarray(pdos.projected_dos) / 3.0 / MEV_PER_THZ   # (n_atoms, n_coarse)
    # both normalised the same way: ~1 state per atom and direction
    assert np.allclose(per_atom.sum(axis=1) * COARSE_STEP, 1.0, atol=2e-3)
    assert np.allclose(ing.dos.sum(axis=1), 1.0, atol=2e-3)

    symbols = list(phonon.primitive.symbols)
    assert ing.elements == list(dict.fromkeys(symbols))
    for gi, element in enumerate(ing.elements):
        ref = per_atom[[i for i, s in enumerate(symbols) if s == element]].mean(axis=0)
        diff = np.abs(engine[gi] - ref).max() / ref.max()
        assert diff < 0.01, f"{element}: max |engine - phonopy| = {100 * diff:.2f} % of peak"


# ------------------------------------------------------------- (d) Debye-Waller
@pytest.mark.parametrize("temperature", [300.0, 0.0])
def test_mean_square_displacement_matches_phonopy(crystal, temperature):
    phonon, modes = crystal
    ing = build_ingredients(modes, grouping="site")
    msd = mean_square_displacement(ing, temperature)          # (n_site_groups,) A^2

    _phonopy_full_mesh(phonon, modes.mesh)
    phonon.run_thermal_displacements(temperatures=[temperature],
                                     freq_min=DEFAULT_MIN_ENERGY / MEV_PER_THZ)
    disp = np.asarray(phonon.thermal_displacements.thermal_displacements)[0]
    disp = disp.reshape(len(modes.species), 3).mean(axis=1)   # isotropic <u_Q^2> per atom

    reps = list(dict.fromkeys(int(o) for o in modes.orbits))
    assert len(reps) == ing.n_groups
    for gi, rep in enumerate(reps):
        members = np.nonzero(modes.orbits == rep)[0]
        # equivalent atoms have the same isotropic displacement in phonopy too
        assert np.allclose(disp[members], disp[rep], rtol=1e-6)
        rel = abs(msd[gi] / disp[rep] - 1)
        assert rel < 0.005, (f"{ing.group_labels[gi]} at {temperature} K: engine "
                            f"{msd[gi]:.6f} A^2, phonopy {disp[rep]:.6f} A^2")
    if temperature == 0.0:
        assert np.all(msd > 0)   # zero-point motion


# ------------------------------------------------------------------ mesh rule
def test_mesh_for_spacing_hand_checked():
    # orthorhombic 3 x 5 x 10 A: |b_i| = 2 pi / a_i = 2.0944, 1.2566, 0.6283 1/A
    lattice = np.diag([3.0, 5.0, 10.0])
    mesh = mesh_for_spacing(lattice, 0.1)
    assert mesh == (21, 13, 7)
    lengths = 2 * np.pi / np.array([3.0, 5.0, 10.0])
    assert np.all(lengths / np.array(mesh) < 0.1)
    # and it is the smallest such mesh
    assert np.all(lengths / (np.array(mesh) - 1) >= 0.1)
    # a large cell needs only a few points, never zero
    assert mesh_for_spacing(np.diag([100.0, 100.0, 100.0]), 0.1) == (1, 1, 1)


def test_mesh_for_spacing_hexagonal():
    a, c = 3.1137, 4.9832
    lattice = np.array([[a, 0, 0], [-a / 2, a * np.sqrt(3) / 2, 0], [0, 0, c]])
    mesh = mesh_for_spacing(lattice)
    recip = 2 * np.pi * np.linalg.inv(lattice).T
    spacing = np.linalg.norm(recip, axis=1) / np.array(mesh)
    assert np.all(spacing < 0.1)
    assert mesh[0] == mesh[1]


# ----------------------------------------------------------- imaginary modes
def test_imaginary_modes_flagged_for_unstable_tl():
    modes = run_mesh(load_phonopy(TL), spacing=0.1)
    assert modes.has_imaginary
    assert modes.min_energy < -1.0
    assert modes.imaginary_fraction > 0
    assert "UNSTABLE" in modes.stability_report()


def test_stable_csau_not_flagged():
    modes = run_mesh(load_phonopy(CSAU), spacing=0.1)
    assert not modes.has_imaginary
    assert modes.imaginary_fraction == 0.0
    assert modes.min_energy > -0.5


# ------------------------------------------------------------ phonopy.conf
def test_read_phonopy_conf_fractions(tmp_path):
    conf = tmp_path / "phonopy.conf"
    conf.write_text("# comment\nDIM = 2 0 0 0 2 0 0 0 2\n"
                    "PRIMITIVE_AXIS = -1/2 1/2 1/2 1/2 -1/2 1/2 1/2 1/2 -1/2   # bcc\n")
    supercell, primitive = read_phonopy_conf(conf)
    assert np.array_equal(supercell, 2 * np.eye(3, dtype=int))
    expected = 0.5 * (np.ones((3, 3)) - 2 * np.eye(3))
    assert np.allclose(primitive, expected)
    # the shipped bcc example parses the same way
    _, prim_sif4 = read_phonopy_conf(SIF4 / "phonopy.conf")
    assert np.allclose(prim_sif4, expected)
    # three DIM numbers form a diagonal matrix; no PRIMITIVE_AXIS -> 'P'
    conf.write_text("DIM = 4 4 2\n")
    supercell, primitive = read_phonopy_conf(conf)
    assert np.array_equal(supercell, np.diag([4, 4, 2])) and primitive == "P"


@pytest.mark.parametrize("text, lineno, words", [
    ("DIM = 2 2 2\nthis line has no equals sign\n", 2, "KEY = value"),
    ("# header\n\nDIM = 2 2 x\n", 3, "DIM"),
    ("DIM = 2 2\n", 1, "DIM"),
    ("DIM = 2 2 2\nPRIMITIVE_AXIS = 1/2 1/0 0 0 1 0 0 0 1\n", 2, "PRIMITIVE_AXIS"),
    ("DIM = 2 2 2\nPRIMITIVE_AXIS = 1 0 0 0 1 0\n", 2, "PRIMITIVE_AXIS"),
    ("DIM = 0 0 0\n", 1, "singular"),
])
def test_read_phonopy_conf_bad_lines(tmp_path, text, lineno, words):
    conf = tmp_path / "phonopy.conf"
    conf.write_text(text)
    with pytest.raises(InputError) as info:
        read_phonopy_conf(conf)
    msg = str(info.value)
    assert str(conf) in msg
    assert f"line {lineno}" in msg
    assert words in msg


def test_read_phonopy_conf_without_dim(tmp_path):
    conf = tmp_path / "phonopy.conf"
    conf.write_text("PRIMITIVE_AXIS = auto\n")
    with pytest.raises(InputError, match="no DIM"):
        read_phonopy_conf(conf)


# ---------------------------------------------------------- broken folders
def _snapshot(folder):
    """{relative path: sha256} of every file below ``folder``."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _truncate_half(folder):
    text = (folder / "FORCE_SETS").read_text()
    (folder / "FORCE_SETS").write_text(text[: len(text) // 2])


def _garbage_header(folder):
    (folder / "FORCE_SETS").write_text("this is not\na force sets file\n")


def _garbage_inside(folder):
    lines = (folder / "FORCE_SETS").read_text().splitlines(True)
    lines[40] = "0.1 0.2 zzz\n"
    (folder / "FORCE_SETS").write_text("".join(lines))


def _binary(folder):
    (folder / "FORCE_SETS").write_bytes(bytes(range(256)) * 8)


@pytest.mark.parametrize("break_it, words", [
    (lambda d: (d / "FORCE_SETS").unlink(), ["FORCE_SETS", "missing"]),
    (lambda d: (d / "POSCAR-unitcell").unlink(), ["POSCAR-unitcell", "missing"]),
    (lambda d: (d / "phonopy.conf").write_text("DIM = 2 2 2\n"),
     ["FORCE_SETS", "DIM", "128 atoms", "16"]),
    (_truncate_half, ["FORCE_SETS", "truncated"]),
    (_garbage_header, ["FORCE_SETS", "not a phonopy"]),
    (_garbage_inside, ["FORCE_SETS", "malformed line", "zzz"]),
    (_binary, ["FORCE_SETS", "cannot read"]),
], ids=["no-force-sets", "no-poscar", "wrong-dim", "truncated", "garbage-header",
        "garbage-inside", "binary"])
def test_load_phonopy_broken_folder(tmp_path, break_it, words):
    folder = tmp_path / "mp-2667"
    shutil.copytree(CSAU, folder)
    break_it(folder)
    before = _snapshot(folder)
    with pytest.raises(InputError) as info:
        load_phonopy(folder)
    msg = str(info.value)
    assert str(folder) in msg
    for word in words:
        assert word in msg, f"{word!r} not in {msg!r}"
    assert _snapshot(folder) == before, "load_phonopy modified its input folder"


def test_load_phonopy_nonexistent_path(tmp_path):
    missing = tmp_path / "no-such-crystal"
    with pytest.raises(InputError, match="no such file or folder") as info:
        load_phonopy(missing)
    assert str(missing) in str(info.value)
    assert not missing.exists()


def test_load_phonopy_leaves_good_folder_unchanged(tmp_path):
    folder = tmp_path / "mp-2667"
    shutil.copytree(CSAU, folder)
    before = _snapshot(folder)
    phonon = load_phonopy(folder)
    assert phonon.force_constants is not None
    assert _snapshot(folder) == before


def test_phonopy_yaml_and_force_constants_give_same_modes(tmp_path, example_dir):
    """The yaml routes (forces inside, or FORCE_CONSTANTS beside) equal the phonondb folder."""
    from phonopy.file_IO import write_FORCE_CONSTANTS

    from insnet_core.phonons import load_phonopy, run_mesh

    folder = example_dir / "mp-2667-20180417"
    ref = load_phonopy(folder)
    mesh = (6, 6, 6)
    ref_modes = run_mesh(ref, mesh=mesh)
    with_forces = tmp_path / "params"
    with_forces.mkdir()
    ref.save(str(with_forces / "phonopy_params.yaml"))
    fc_only = tmp_path / "fc"
    fc_only.mkdir()
    ref.save(str(fc_only / "phonopy.yaml"), settings={"force_sets": False,
                                                       "force_constants": False})
    write_FORCE_CONSTANTS(ref.force_constants, filename=str(fc_only / "FORCE_CONSTANTS"),
                          p2s_map=ref.primitive.p2s_map if ref.force_constants.shape[0]
                          != ref.force_constants.shape[1] else None)
    for source in (with_forces / "phonopy_params.yaml", fc_only):
        modes = run_mesh(load_phonopy(source), mesh=mesh)
        np.testing.assert_allclose(modes.energies, ref_modes.energies, atol=2e-3)


def test_phonopy_backend_is_the_c_extension():
    """Dynamical matrices through phonopy's C extension (see PHONOPY_BACKEND): the Rust
    kernel of the non-analytical correction slows down after its first call in a process."""
    from insnet_core.phonons import PHONOPY_BACKEND
    from phonopy._lang import have_c_ext
    phonon = load_phonopy(SIF4)
    assert PHONOPY_BACKEND == "C"
    assert phonon.lang == ("C" if have_c_ext() else "Rust")
