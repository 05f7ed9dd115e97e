"""Phonons from force constants: loading phonopy data and sampling modes on a mesh.

The engine needs, for every atom of the primitive cell, how the phonon modes
on a Brillouin-zone mesh project onto it. :func:`load_phonopy` reads the
published formats (a phonondb folder, ``phonopy.yaml`` with or without
``FORCE_CONSTANTS``), :func:`run_mesh` diagonalises the dynamical matrix on a
Gamma-centred mesh and returns :class:`PhononModes`.

Masses are those of :mod:`periodictable` (natural isotopic abundance), set on
the phonopy object so eigenvectors and the INS kinematics use the same values.
"""
from __future__ import annotations

import io
import re
import warnings
from contextlib import redirect_stdout
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from insnet_core import InputError
from insnet_core.units import MEV_PER_THZ

__all__ = ["PhononModes", "load_phonopy", "run_mesh", "mesh_for_spacing", "default_mesh",
           "primitive_lattice_angstrom", "length_unit_to_angstrom", "read_phonopy_conf",
           "IMAGINARY_TOLERANCE_MEV", "DEFAULT_MESH_SPACING", "DEFAULT_MESH_WORK"]

#: Modes below minus this (meV, about 0.12 THz) count as imaginary (unstable).
#: Acoustic branches within a few hundredths of a THz of zero near Gamma are the
#: usual noise of finite-displacement force sets, not instabilities.
IMAGINARY_TOLERANCE_MEV = 0.5

#: Acoustic modes at Gamma within this many meV of zero are set to exactly zero.
ACOUSTIC_GAMMA_TOLERANCE_MEV = 2.0

#: Memory allowed for one batch of eigenvectors in :func:`run_mesh`, bytes.
MESH_BATCH_BYTES = 256 * 2 ** 20

#: phonopy backend for dynamical matrices. Its C extension (OpenMP) gives the same frequencies
#: as the Rust one (phonors) and keeps its speed from call to call; with phonors 0.8 the
#: non-analytical-correction kernel became 4-5x slower after the first call in a process
#: (measured on mp-277: 3 s, then 14 s per 400 q-points), which a database worker repeats
#: thousands of times. phonopy falls back to Rust where the C extension is missing.
PHONOPY_BACKEND = "C"

#: Default maximum spacing between mesh points, 1/angstrom (reference work: < 0.1).
DEFAULT_MESH_SPACING = 0.1

#: Small cells get at least ``DEFAULT_MESH_WORK / n_atoms**3`` q-points in the full mesh
#: (see :func:`default_mesh`): a cell with few bands needs many q-points for a smooth
#: spectrum, and the cost of diagonalising (3 n)^2 matrices stays bounded.
DEFAULT_MESH_WORK = 4.0e6


@dataclass
class PhononModes:
    """Phonon modes on a mesh, reduced to what incoherent INS needs.

    Attributes
    ----------
    species : tuple of str, length n_atoms
        Element symbol of each atom of the primitive cell.
    masses : ndarray, shape (n_atoms,)
        Atomic masses in amu (the ones used in the dynamical matrix).
    lattice : ndarray, shape (3, 3)
        Primitive-cell vectors (rows) in angstrom.
    frac_coords : ndarray, shape (n_atoms, 3)
    energies : ndarray, shape (n_q, n_modes)
        Mode energies in meV; imaginary modes are negative.
    q_weights : ndarray, shape (n_q,)
        Weights of the (irreducible) q-points, summing to 1.
    projections : ndarray, shape (n_q, n_modes, n_atoms)
        sum over x, y, z of |e_{k,alpha}(q, nu)|^2: the fraction of mode
        (q, nu) on atom k. Sums to 1 over atoms and to 3 over modes.
    orbits : ndarray of int, shape (n_atoms,)
        Index of the symmetry-equivalent representative of each atom.
    mesh : tuple of int
        The Gamma-centred mesh.
    displacement_tensors : ndarray, shape (n_q, n_modes, n_atoms, 6), float32, optional
        Re(e e^dagger) of each atom's 3-component eigenvector block, the
        mode's displacement tensor, as (xx, yy, zz, yz, xz, xy); its trace is
        ``projections``. Not orbit-averaged (each atom's own). None when the
        modes were made without them (then only isotropic quantities exist).
    rotations : ndarray, shape (n_ops, 3, 3), optional
        Cartesian rotation matrices of the crystal's space-group operations.
    permutations : ndarray of int, shape (n_ops, n_atoms), optional
        ``permutations[s, k]`` is the atom that operation ``s`` sends atom ``k`` to.
    """

    species: tuple
    masses: np.ndarray
    lattice: np.ndarray
    frac_coords: np.ndarray
    energies: np.ndarray
    q_weights: np.ndarray
    projections: np.ndarray
    orbits: np.ndarray
    mesh: tuple
    displacement_tensors: np.ndarray | None = None
    rotations: np.ndarray | None = None
    permutations: np.ndarray | None = None

    @property
    def n_atoms(self):
        return len(self.species)

    @property
    def min_energy(self):
        """Lowest mode energy on the mesh, meV (negative when imaginary)."""
        return float(self.energies.min())

    @property
    def max_energy(self):
        """Highest mode energy on the mesh, meV."""
        return float(self.energies.max())

    @property
    def imaginary_fraction(self):
        """Fraction of the mode weight (q-weighted) that is imaginary."""
        bad = self.energies < -IMAGINARY_TOLERANCE_MEV
        return float((self.q_weights[:, None] * bad).sum() / self.energies.shape[1])

    @property
    def has_imaginary(self):
        """True when any mode is below -IMAGINARY_TOLERANCE_MEV (crystal unstable here)."""
        return self.min_energy < -IMAGINARY_TOLERANCE_MEV

    def stability_report(self):
        """One line describing imaginary modes, for logs and warnings."""
        if not self.has_imaginary:
            return "dynamically stable on the mesh (no imaginary modes)"
        return (f"UNSTABLE: imaginary modes down to {self.min_energy:.2f} meV "
                f"({self.min_energy / MEV_PER_THZ:.2f} THz), {100 * self.imaginary_fraction:.1f} % "
                f"of the mode weight; they are left out of the spectrum")

    @property
    def formula(self):
        """Reduced chemical formula, e.g. 'SiF4'."""
        from pymatgen.core import Composition
        with warnings.catch_warnings():  # e.g. "no Pauling electronegativity for Ne"
            warnings.simplefilter("ignore")
            return Composition(" ".join(self.species)).reduced_formula


def read_phonopy_conf(path):
    """Read DIM and PRIMITIVE_AXIS from a phonopy.conf.

    Returns
    -------
    supercell_matrix : ndarray (3, 3) of int
    primitive_matrix : ndarray (3, 3) of float, or the string 'P' when absent
    """
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read phonopy.conf ({exc})") from None
    settings = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.split("#")[0].strip()
        if not line:
            continue
        if "=" not in line:
            raise InputError(f"{path}, line {lineno}: expected 'KEY = value', got {line!r}")
        key, value = (s.strip() for s in line.split("=", 1))
        settings[key.upper()] = (value, lineno)
    if "DIM" not in settings:
        raise InputError(f"{path}: no DIM (supercell matrix) given")
    value, lineno = settings["DIM"]
    try:
        dim = [int(x) for x in value.split()]
    except ValueError:
        raise InputError(f"{path}, line {lineno}: DIM must be 3 or 9 integers, got {value!r}") from None
    if len(dim) == 3:
        supercell = np.diag(dim)
    elif len(dim) == 9:
        supercell = np.array(dim).reshape(3, 3)
    else:
        raise InputError(f"{path}, line {lineno}: DIM must be 3 or 9 integers, got {len(dim)}")
    if abs(round(np.linalg.det(supercell))) < 1:
        raise InputError(f"{path}, line {lineno}: DIM matrix {dim} is singular")
    primitive = "P"
    if "PRIMITIVE_AXIS" in settings:
        value, lineno = settings["PRIMITIVE_AXIS"]
        if value.strip().lower() in ("auto", "p"):
            primitive = "auto" if value.strip().lower() == "auto" else "P"
        else:
            try:
                nums = [float(Fraction(x)) for x in value.split()]
            except (ValueError, ZeroDivisionError):
                raise InputError(f"{path}, line {lineno}: PRIMITIVE_AXIS must be 9 numbers "
                                 f"(fractions allowed), got {value!r}") from None
            if len(nums) != 9:
                raise InputError(f"{path}, line {lineno}: PRIMITIVE_AXIS needs 9 numbers, got {len(nums)}")
            primitive = np.array(nums).reshape(3, 3)
    return supercell, primitive


def _quiet(func, *args, **kwargs):
    """Run a phonopy call with its stdout chatter and warnings captured."""
    buf = io.StringIO()
    with redirect_stdout(buf), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return func(*args, **kwargs)


def _set_periodictable_masses(phonon):
    import periodictable
    masses = []
    for sym in phonon.primitive.symbols:
        try:
            masses.append(float(periodictable.elements.symbol(sym).mass))
        except ValueError:
            raise InputError(f"unknown element {sym!r} in the phonon structure") from None
    # phonopy takes masses of the primitive cell and maps them onto the supercell
    phonon.masses = masses


def load_phonopy(source, born=True):
    """Load force constants with the phonopy API.

    Parameters
    ----------
    source : str or Path
        One of
        * a folder with ``POSCAR-unitcell``, ``phonopy.conf`` (DIM, PRIMITIVE_AXIS),
          ``FORCE_SETS`` and optionally ``BORN`` (Togo's phonondb layout);
        * a folder or file ``phonopy.yaml`` / ``phonopy_params.yaml`` /
          ``phonopy_disp.yaml`` (with ``FORCE_SETS`` or ``FORCE_CONSTANTS``
          beside it when the yaml holds no forces).
    born : bool
        Apply the non-analytical term correction when a ``BORN`` file is present.

    Returns
    -------
    phonopy.Phonopy
        With force constants produced (phonopy's traditional solver, as the
        force sets were published with; 4-10 times faster here than symfc, with
        frequencies equal to 0.003 meV) and masses from periodictable.

    Raises
    ------
    InputError
        Missing or unreadable files, supercell size not matching the force sets.
    """
    import phonopy

    source = Path(source)
    if not source.exists():
        raise InputError(f"{source}: no such file or folder")
    folder = source if source.is_dir() else source.parent
    yaml_file = None
    if source.is_file() and source.suffix in (".yaml", ".yml"):
        yaml_file = source
    elif source.is_dir():
        for name in ("phonopy_params.yaml", "phonopy.yaml", "phonopy_disp.yaml"):
            if (folder / name).is_file():
                yaml_file = folder / name
                break
    born_file = folder / "BORN"
    born_arg = str(born_file) if (born and born_file.is_file()) else None

    try:
        if yaml_file is not None and not (folder / "POSCAR-unitcell").is_file():
            kwargs = {}
            if (folder / "FORCE_CONSTANTS").is_file():
                kwargs["force_constants_filename"] = str(folder / "FORCE_CONSTANTS")
            elif (folder / "FORCE_SETS").is_file():
                kwargs["force_sets_filename"] = str(folder / "FORCE_SETS")
            phonon = _quiet(phonopy.load, str(yaml_file), born_filename=born_arg,
                            produce_fc=True, log_level=0, fc_calculator="traditional",
                            lang=PHONOPY_BACKEND, **kwargs)
        else:
            unitcell = folder / "POSCAR-unitcell"
            conf = folder / "phonopy.conf"
            for required in (unitcell, conf):
                if not required.is_file():
                    raise InputError(f"{folder}: missing {required.name} (a phonondb folder needs "
                                     "POSCAR-unitcell, phonopy.conf and FORCE_SETS or FORCE_CONSTANTS)")
            supercell, primitive = read_phonopy_conf(conf)
            kwargs = {}
            if (folder / "FORCE_SETS").is_file():
                kwargs["force_sets_filename"] = str(folder / "FORCE_SETS")
                _check_force_sets(folder / "FORCE_SETS", unitcell, supercell)
            elif (folder / "FORCE_CONSTANTS").is_file():
                kwargs["force_constants_filename"] = str(folder / "FORCE_CONSTANTS")
            else:
                raise InputError(f"{folder}: missing FORCE_SETS (and no FORCE_CONSTANTS)")
            phonon = _quiet(phonopy.load, supercell_matrix=supercell, primitive_matrix=primitive,
                            unitcell_filename=str(unitcell), born_filename=born_arg,
                            produce_fc=True, log_level=0, fc_calculator="traditional",
                            lang=PHONOPY_BACKEND, **kwargs)
    except InputError:
        raise
    except Exception as exc:  # phonopy raises many types for broken files
        raise InputError(f"{source}: phonopy could not load the force constants "
                         f"({type(exc).__name__}: {str(exc).strip()[:200]})") from None
    if phonon.force_constants is None:
        raise InputError(f"{source}: no force constants could be produced")
    _set_periodictable_masses(phonon)
    return phonon


def _count_poscar_atoms(path):
    lines = Path(path).read_text().splitlines()
    for idx in (5, 6):
        try:
            return sum(int(x) for x in lines[idx].split())
        except (ValueError, IndexError):
            continue
    raise InputError(f"{path}: cannot find the atom counts line of the POSCAR")


def _check_force_sets(force_sets, unitcell, supercell):
    """Check FORCE_SETS is complete and matches DIM before phonopy sees it."""
    try:
        lines = force_sets.read_text().split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{force_sets}: cannot read ({exc})") from None
    try:
        natom = int(lines[0].split()[0])
        ndisp = int(lines[1].split()[0])
    except (ValueError, IndexError):
        first = lines[0].split() if lines else []
        if len(first) == 6:
            raise InputError(f"{force_sets}: looks like a type-2 FORCE_SETS (6 columns per "
                             "line); convert it to phonopy.yaml with forces, which insnet reads")
        raise InputError(f"{force_sets}: not a phonopy type-1 FORCE_SETS file "
                         "(first two lines must be the atom and displacement counts)") from None
    expected = _count_poscar_atoms(unitcell) * int(round(abs(np.linalg.det(supercell))))
    if natom != expected:
        raise InputError(f"{force_sets}: has {natom} atoms per supercell, but POSCAR-unitcell and "
                         f"DIM ({' '.join(str(int(x)) for x in supercell.ravel())}) give {expected}")
    numbers = [ln for ln in lines[2:] if ln.strip()]
    # each displacement: atom index, displacement vector, then natom force lines
    needed = ndisp * (2 + natom)
    if len(numbers) < needed:
        raise InputError(f"{force_sets}: truncated: {ndisp} displacements need {needed} data lines, "
                         f"found {len(numbers)}")
    for ln in numbers[:needed]:
        if not re.fullmatch(r"\s*[-+0-9.eE]+(\s+[-+0-9.eE]+)*\s*", ln):
            raise InputError(f"{force_sets}: malformed line {ln.strip()[:60]!r}")


def mesh_for_spacing(lattice, spacing=DEFAULT_MESH_SPACING):
    """Smallest Gamma-centred mesh with point spacing below ``spacing``.

    Reciprocal vectors of equal length (as in the primitive cells of centred
    lattices) get equal mesh numbers, the larger of the two, so the mesh keeps
    the crystal's point-group symmetry and its irreducible wedge stays small.

    Parameters
    ----------
    lattice : ndarray (3, 3)
        Primitive-cell vectors (rows), angstrom.
    spacing : float
        Maximum distance between neighbouring mesh points, 1/angstrom
        (reciprocal vectors include the factor 2 pi).

    Returns
    -------
    tuple of 3 int
    """
    spacing = _positive(spacing, "mesh spacing (1/angstrom)")
    recip = 2 * np.pi * np.linalg.inv(lattice).T
    lengths = np.linalg.norm(recip, axis=1)
    mesh = [int(max(1, np.floor(length / spacing) + 1)) for length in lengths]
    for i in range(3):
        for j in range(3):
            if abs(lengths[i] - lengths[j]) <= 1e-3 * max(lengths[i], lengths[j]):
                mesh[i] = max(mesh[i], mesh[j])
    return tuple(mesh)


def _init_symmetric_mesh(phonon, mesh, symmetry):
    """Set up phonopy's mesh; False when phonopy had to drop point-group symmetry."""
    buf = io.StringIO()
    with redirect_stdout(buf), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        phonon.init_mesh(list(mesh), with_eigenvectors=True, is_gamma_center=True,
                         is_mesh_symmetry=symmetry, use_iter_mesh=True)
    return not any("incompatible with the primitive-cell point group" in str(w.message)
                   for w in caught)


def run_mesh(phonon, mesh=None, spacing=None, symmetry=True):
    """Diagonalise the dynamical matrix on a Gamma-centred mesh.

    Parameters
    ----------
    phonon : phonopy.Phonopy
    mesh : tuple of 3 int, optional
        Explicit mesh. By default :func:`default_mesh` of the primitive cell
        (converged rule), or :func:`mesh_for_spacing` when ``spacing`` is given.
    spacing : float, optional
        Mesh spacing bound in 1/angstrom, used alone (no small-cell minimum)
        when ``mesh`` is None; e.g. 0.1 for the reference work's mesh.
    symmetry : bool
        Use the irreducible wedge (fast). Per-atom quantities are then
        averaged over symmetry-equivalent atoms, which is exact for the
        isotropic quantities the incoherent engine uses.

    Returns
    -------
    PhononModes
    """
    prim = phonon.primitive
    lattice = primitive_lattice_angstrom(phonon)   # phonopy keeps the calculator's unit
    if mesh is None:
        mesh = (default_mesh(lattice, len(prim.symbols)) if spacing is None
                else mesh_for_spacing(lattice, spacing))
    else:
        mesh = _check_mesh(mesh)
    n_atoms = len(prim.symbols)
    n_modes = 3 * n_atoms
    # the irreducible q-points and weights, without diagonalising anything yet
    if not _init_symmetric_mesh(phonon, mesh, symmetry):
        # the primitive cells of body- and face-centred lattices keep their point group
        # only on meshes with equal numbers along all three axes
        mesh = (max(mesh),) * 3
        _init_symmetric_mesh(phonon, mesh, symmetry)
    result = phonon.mesh
    qpoints = np.asarray(result.qpoints, dtype=float)
    # Eigenvectors are needed only as atom projections: compute them in batches of
    # q-points so memory stays bounded (a 306-atom cell has 918 x 918 complex
    # eigenvectors, 13 MB per q-point).
    batch = max(1, int(MESH_BATCH_BYTES // (16 * n_modes * n_modes)))
    freq_list, proj_list, tensor_list = [], [], []
    for start in range(0, len(qpoints), batch):
        qp = _quiet(phonon.run_qpoints, qpoints[start:start + batch], with_eigenvectors=True)
        eig = np.asarray(phonon.qpoints.eigenvectors)   # (n_b, 3n, 3n): [:, component, band]
        amp = np.abs(eig) ** 2
        proj_b = amp.reshape(amp.shape[0], n_atoms, 3, n_modes).sum(axis=2)
        proj_list.append(np.transpose(proj_b, (0, 2, 1)))  # (n_b, band, atom)
        tensor_list.append(_displacement_tensors(eig, n_atoms))
        freq_list.append(np.asarray(phonon.qpoints.frequencies, dtype=float))
        del qp, eig, amp
    freqs = np.concatenate(freq_list) * MEV_PER_THZ
    proj = np.concatenate(proj_list)
    tensors = np.concatenate(tensor_list)
    weights = np.asarray(result.weights, dtype=float)
    # The three acoustic modes at Gamma are zero by translational symmetry; small
    # values of either sign there are numerical noise of the force sets, not an
    # instability. Larger ones (broken acoustic sum rule) are kept and flagged.
    for iq in np.nonzero(np.all(np.abs(qpoints) < 1e-12, axis=1))[0]:
        low = np.argsort(np.abs(freqs[iq]))[:3]
        low = low[np.abs(freqs[iq, low]) < ACOUSTIC_GAMMA_TOLERANCE_MEV]
        freqs[iq, low] = 0.0
    weights = weights / weights.sum()
    try:
        orbits = np.asarray(phonon.primitive_symmetry.get_dataset()["equivalent_atoms"])
    except (AttributeError, KeyError, TypeError):
        import spglib
        ds = spglib.get_symmetry_dataset((lattice, prim.scaled_positions, prim.numbers))
        orbits = np.asarray(ds.equivalent_atoms)
    if symmetry:
        for rep in np.unique(orbits):
            members = orbits == rep
            proj[:, :, members] = proj[:, :, members].mean(axis=2, keepdims=True)
    rotations, permutations = _space_group_operations(phonon, lattice)
    return PhononModes(
        species=tuple(prim.symbols), masses=np.array(prim.masses, dtype=float),
        lattice=lattice, frac_coords=np.array(prim.scaled_positions, dtype=float),
        energies=freqs, q_weights=weights, projections=proj, orbits=orbits, mesh=tuple(mesh),
        displacement_tensors=tensors, rotations=rotations, permutations=permutations)


#: Order of the six independent components of a symmetric 3x3 tensor.
TENSOR_COMPONENTS = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


def _displacement_tensors(eig, n_atoms):
    """Re(e e^dagger) per (q, band, atom) as 6 components, float32.

    ``eig`` is phonopy's (n_q, 3 n_atoms, n_bands) eigenvector array
    (component index first). Returns (n_q, n_bands, n_atoms, 6).
    """
    e = eig.reshape(eig.shape[0], n_atoms, 3, eig.shape[2])      # [q, atom, alpha, band]
    re = np.ascontiguousarray(e.real, dtype=np.float32)
    im = np.ascontiguousarray(e.imag, dtype=np.float32)
    out = np.empty((eig.shape[0], eig.shape[2], n_atoms, 6), dtype=np.float32)
    for c, (a, b) in enumerate(TENSOR_COMPONENTS):   # Re(e_a e_b*) = Re Re + Im Im
        out[..., c] = np.transpose(re[:, :, a] * re[:, :, b] + im[:, :, a] * im[:, :, b],
                                   (0, 2, 1))
    return out


def _space_group_operations(phonon, lattice):
    """Cartesian rotations (n_ops, 3, 3) and atom permutations (n_ops, n_atoms) of the primitive cell.

    Operation s maps fractional position x to r_s x + t_s; in Cartesian
    coordinates (lattice vectors as rows, x_cart = L^T x) the rotation is
    ``L^T r_s L^-T``. ``permutations[s, k]`` is the atom at r_s x_k + t_s.
    """
    prim = phonon.primitive
    frac = np.asarray(prim.scaled_positions, dtype=float)
    ops = phonon.primitive_symmetry.symmetry_operations   # the symmetry phonopy reduced the mesh with
    rot_frac = np.asarray(ops["rotations"], dtype=float)
    trans = np.asarray(ops["translations"], dtype=float)
    lt = lattice.T
    rotations = np.einsum("ij,sjk,kl->sil", lt, rot_frac, np.linalg.inv(lt))
    moved = np.einsum("sij,kj->ski", rot_frac, frac) + trans[:, None, :]
    diff = moved[:, :, None, :] - frac[None, None, :, :]
    diff -= np.round(diff)
    dist = np.linalg.norm(diff @ lattice, axis=-1)                  # (n_ops, k, k')
    permutations = dist.argmin(axis=2)
    if not np.all(dist.min(axis=2) < 1e-3):
        raise InputError("the crystal's symmetry operations do not map the atoms onto each other; "
                         "check the structure's positions")
    return rotations, permutations


# ---------------------------------------------------------------- mesh rule and units
def length_unit_to_angstrom(phonon):
    """Angstrom per unit of length of a phonopy object's cells.

    phonopy keeps cells in the unit of the calculator that produced the force
    constants (``Phonopy.calculator``, written as ``calculator`` in
    ``phonopy.yaml``): angstrom for VASP and most codes, bohr for Quantum
    ESPRESSO, ABINIT, DFTB+, ... ; None (no calculator recorded) means VASP
    units, as phonopy itself assumes.

    Parameters
    ----------
    phonon : phonopy.Phonopy

    Returns
    -------
    float
        1.0 for angstrom, 0.529177... for bohr.

    Raises
    ------
    InputError
        A calculator phonopy does not know.
    """
    from phonopy.interface.calculator import get_calculator_physical_units
    calculator = getattr(phonon, "calculator", None)
    try:
        units = get_calculator_physical_units(calculator)
    except Exception:  # phonopy raises RuntimeError for unknown names
        raise InputError(f"force constants: unknown calculator {calculator!r}; phonopy cannot "
                         "tell its length unit") from None
    return float(units.distance_to_A)


def primitive_lattice_angstrom(phonon):
    """Primitive-cell vectors (rows) of a phonopy object in angstrom, shape (3, 3)."""
    return np.array(phonon.primitive.cell, dtype=float) * length_unit_to_angstrom(phonon)


def default_mesh(lattice, n_atoms, spacing=DEFAULT_MESH_SPACING, work=DEFAULT_MESH_WORK):
    """The engine's default Gamma-centred mesh: converged for small cells too.

    The mesh is the denser of

    * points less than ``spacing`` apart (the reference work's 0.1 1/A rule), and
    * at least ``work / n_atoms**3`` q-points in the full mesh, spread as
      evenly as the spacing rule spreads them (:func:`mesh_for_spacing` at the
      spacing ``(V* n_atoms**3 / work)**(1/3)``, V* the reciprocal-cell volume).

    Cells of more than about 20 atoms are unchanged (their many bands give a
    converged spectrum at 0.1 1/A); a 2-atom cell gets about 5e5 points. The
    convergence table behind the numbers is in docs/engine.md.

    Parameters
    ----------
    lattice : ndarray, shape (3, 3)
        Primitive-cell vectors (rows), angstrom.
    n_atoms : int
        Atoms in the primitive cell.
    spacing : float
        Maximum mesh spacing, 1/angstrom.
    work : float
        Minimum of (number of q-points) x n_atoms**3; 0 gives the spacing rule alone.

    Returns
    -------
    tuple of 3 int
    """
    lattice = np.asarray(lattice, dtype=float)
    spacing = _positive(spacing, "mesh spacing (1/angstrom)")
    target = spacing
    if work and n_atoms >= 1:
        recip_volume = (2 * np.pi) ** 3 / abs(np.linalg.det(lattice))
        target = min(spacing, (recip_volume * n_atoms ** 3 / float(work)) ** (1.0 / 3.0))
    return mesh_for_spacing(lattice, target)


def _positive(value, what):
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a positive number, got {value!r}") from None
    if not np.isfinite(x) or x <= 0:
        raise InputError(f"{what} must be a positive number, got {value!r}")
    return x


def _check_mesh(mesh):
    """An explicit mesh as a tuple of three positive ints (InputError otherwise)."""
    try:
        values = [int(m) for m in mesh]
        ok = len(values) == 3 and all(v >= 1 and v == float(m) for v, m in zip(values, mesh))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InputError(f"mesh must be three positive integers, e.g. 20 20 20; got {mesh!r}")
    return tuple(values)
