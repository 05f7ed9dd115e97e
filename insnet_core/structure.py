"""Crystal structures: reading CIF and VASP POSCAR files, and checking them.

A :class:`Structure` is the one ordered, validated unit cell that the rest of
insnet works from. Lengths are in angstrom, masses in amu.

* :func:`read_structure` turns a file into a :class:`Structure`. pymatgen does
  the parsing; insnet adds line numbers to CIF syntax errors, keeps the CIF
  site labels for messages, and never lets pymatgen silently merge, rescale or
  drop sites.
* :func:`validate` is the single place where the content of a structure is
  checked (atoms present, real elements, full occupancy, cell volume, atom
  count limit, no overlapping atoms). Every failure is an
  :class:`insnet_core.InputError` whose message names the file and the
  offending site, element, distance or count.

Sites are numbered from 1 in messages ("atom 3"), as a user counts them in a
file.
"""
from __future__ import annotations

import hashlib
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import periodictable

from insnet_core import InputError

__all__ = [
    "Structure", "read_structure", "validate",
    "DEFAULT_MAX_ATOMS", "MIN_DISTANCE", "HIGHEST_Z",
]

#: Largest number of atoms per cell :func:`read_structure` accepts by default.
DEFAULT_MAX_ATOMS = 500
#: Two atoms closer than this (angstrom, periodic boundaries) are an error.
MIN_DISTANCE = 0.5
#: Highest atomic number accepted (plutonium).
HIGHEST_Z = 94
#: An occupancy this close to 1 counts as full (printing precision of CIFs).
OCCUPANCY_TOLERANCE = 1e-3
#: Symmetry images of one CIF site closer than this (angstrom) are one atom.
SYMMETRY_MERGE_DISTANCE = 0.05
#: Decimals kept by :meth:`Structure.hash` (angstrom for the cell, fractions for sites).
HASH_DECIMALS = 6

_FORMATS = ("cif", "poscar")


# --------------------------------------------------------------------------
# the structure type
# --------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Structure:
    """An ordered crystal unit cell.

    Build one with :func:`read_structure` or :meth:`from_arrays`; the plain
    constructor runs the same checks (without an atom count limit). Arrays
    are stored read-only.

    Parameters
    ----------
    lattice : ndarray, shape (3, 3)
        Cell vectors in angstrom, one per row (a, b, c); right-handed.
    species : tuple of str, length n
        Element symbol of each site.
    frac_coords : ndarray, shape (n, 3)
        Fractional coordinates of each site.
    source : str
        Path of the file the structure was read from, or ``''``.

    Notes
    -----
    Two structures compare equal only when they are the same object; compare
    :meth:`hash` values to test for the same cell content.
    """

    lattice: np.ndarray
    species: tuple
    frac_coords: np.ndarray
    source: str = ""

    def __post_init__(self):
        checked = validate(self.lattice, self.species, self.frac_coords,
                           source=self.source, max_atoms=None)
        object.__setattr__(self, "lattice", checked.lattice)
        object.__setattr__(self, "species", checked.species)
        object.__setattr__(self, "frac_coords", checked.frac_coords)
        object.__setattr__(self, "source", checked.source)

    @classmethod
    def _unchecked(cls, lattice, species, frac_coords, source):
        """Build without running :func:`validate` (for :func:`validate` itself)."""
        obj = object.__new__(cls)
        lattice = np.array(lattice, dtype=float)
        frac_coords = np.array(frac_coords, dtype=float).reshape(-1, 3)
        lattice.setflags(write=False)
        frac_coords.setflags(write=False)
        object.__setattr__(obj, "lattice", lattice)
        object.__setattr__(obj, "species", tuple(species))
        object.__setattr__(obj, "frac_coords", frac_coords)
        object.__setattr__(obj, "source", str(source))
        return obj

    @classmethod
    def from_arrays(cls, lattice, species, frac_coords, source="", max_atoms=DEFAULT_MAX_ATOMS):
        """Build a validated structure from arrays.

        Parameters
        ----------
        lattice : array_like, shape (3, 3)
            Cell vectors in angstrom, one per row.
        species : sequence of str, length n
            Element symbols.
        frac_coords : array_like, shape (n, 3)
            Fractional coordinates.
        source : str
            Where the data came from (used in error messages).
        max_atoms : int or None
            Largest accepted number of atoms; None for no limit.

        Raises
        ------
        InputError
            When :func:`validate` rejects the data.
        """
        return validate(lattice, species, frac_coords, source=source, max_atoms=max_atoms)

    # ------------------------------------------------------------ properties
    @property
    def n_atoms(self):
        """Number of atoms in the cell."""
        return len(self.species)

    @property
    def volume(self):
        """Cell volume in cubic angstrom (always positive)."""
        return float(np.linalg.det(self.lattice))

    @property
    def cart_coords(self):
        """Cartesian positions in angstrom, shape (n, 3)."""
        return self.frac_coords @ self.lattice

    @property
    def formula(self):
        """Reduced chemical formula, e.g. ``'SiF4'``."""
        from pymatgen.core import Composition
        counts = {}
        for sym in self.species:
            counts[sym] = counts.get(sym, 0) + 1
        return Composition(counts).reduced_formula

    @property
    def elements(self):
        """Sorted tuple of the distinct element symbols."""
        return tuple(sorted(set(self.species)))

    @property
    def masses(self):
        """Atomic masses in amu (natural isotopic abundance), shape (n,)."""
        return np.array([periodictable.elements.symbol(s).mass for s in self.species], dtype=float)

    # ------------------------------------------------------------ conversion
    def to_pymatgen(self):
        """The structure as a :class:`pymatgen.core.Structure`."""
        from pymatgen.core import Lattice
        from pymatgen.core import Structure as PmgStructure
        return PmgStructure(Lattice(np.array(self.lattice)), list(self.species),
                            np.array(self.frac_coords), coords_are_cartesian=False)

    def to_phonopy_atoms(self):
        """The structure as a :class:`phonopy.structure.atoms.PhonopyAtoms`.

        Masses are set from :attr:`masses`, so phonopy uses the same values as
        the rest of insnet.
        """
        from phonopy.structure.atoms import PhonopyAtoms
        return PhonopyAtoms(symbols=list(self.species), cell=np.array(self.lattice),
                            scaled_positions=np.array(self.frac_coords),
                            masses=self.masses)

    def hash(self):
        """Stable SHA-256 hex digest of the cell content, for use as a cache key.

        The lattice (angstrom) and the fractional coordinates, wrapped into
        [0, 1), are rounded to :data:`HASH_DECIMALS` decimals; the site order
        counts. ``source`` is not included.
        """
        lat = np.round(np.asarray(self.lattice, dtype=float), HASH_DECIMALS) + 0.0
        frac = np.round(np.mod(self.frac_coords, 1.0), HASH_DECIMALS)
        frac = np.mod(frac, 1.0) + 0.0  # 0.9999999 rounds to 1.0, which is 0.0
        fmt = f"{{:.{HASH_DECIMALS}f}}"
        parts = ["insnet-structure-v1",
                 " ".join(fmt.format(x) for x in lat.ravel()),
                 " ".join(self.species),
                 " ".join(fmt.format(x) for x in frac.ravel())]
        return hashlib.sha256("\n".join(parts).encode("ascii")).hexdigest()

    def __repr__(self):
        where = f", source={self.source!r}" if self.source else ""
        return (f"Structure({self.formula}, {self.n_atoms} atoms, "
                f"volume={self.volume:.3f} A^3{where})")


# --------------------------------------------------------------------------
# validation: the one place where structure content is checked
# --------------------------------------------------------------------------
def _prefix(source):
    return f"{source}: " if source else "structure: "


def _site_name(index, labels, species):
    """'O1 (atom 5)' when the site has a label, else 'atom 5 (O)'."""
    label = labels[index] if labels is not None else None
    if label:
        return f"{label} (atom {index + 1})"
    return f"atom {index + 1} ({species[index]})"


def _element_problem(symbol):
    """Why ``symbol`` is not usable as an element, or None when it is."""
    try:
        el = periodictable.elements.symbol(symbol)
    except (ValueError, KeyError, TypeError):
        return f"'{symbol}' is not a chemical element symbol"
    if isinstance(el, periodictable.core.Isotope):
        return (f"'{symbol}' is the isotope {el.element.symbol}-{el.isotope}, not an "
                f"element; isotopes are not supported, use '{el.element.symbol}'")
    if not 1 <= el.number <= HIGHEST_Z:
        if el.number == 0:
            return f"'{symbol}' is not a chemical element symbol"
        return (f"element '{symbol}' (Z = {el.number}) is beyond plutonium; "
                f"only Z <= {HIGHEST_Z} is supported")
    neutron = getattr(el, "neutron", None)
    if neutron is None or neutron.total is None or neutron.b_c is None:
        return (f"element '{symbol}' has no neutron scattering cross section in the "
                f"periodictable data, so its spectrum cannot be computed")
    return None


def _min_image_distances(lattice, frac_coords, index):
    """Shortest periodic distance (angstrom) from atom ``index`` to every atom.

    Exact for the small distances this is used for (well under half a cell
    height); used only to describe sites sharing a position.
    """
    diff = frac_coords - frac_coords[index]
    diff -= np.round(diff)
    return np.linalg.norm(diff @ lattice, axis=1)


def validate(lattice, species, frac_coords, *, source="", labels=None, occupancies=None,
             max_atoms=DEFAULT_MAX_ATOMS):
    """Check a unit cell and return it as a :class:`Structure`.

    The checks, in order: the arrays have consistent shapes and finite values;
    there is at least one atom; every species is a real element with
    Z <= :data:`HIGHEST_Z` and neutron cross sections in :mod:`periodictable`;
    every site is fully occupied by one element; the cell volume is positive
    and not near zero (vectors right-handed, not coplanar); there are at most
    ``max_atoms`` atoms; no two atoms (or an atom and its own periodic image)
    are closer than :data:`MIN_DISTANCE`.

    Parameters
    ----------
    lattice : array_like, shape (3, 3)
        Cell vectors in angstrom, one per row.
    species : sequence of str, length n
        Element symbol of each site.
    frac_coords : array_like, shape (n, 3)
        Fractional coordinates.
    source : str
        File the data came from; starts every error message.
    labels : sequence of str, length n, optional
        Site labels (e.g. CIF ``_atom_site_label``), used to name sites.
    occupancies : sequence of float, length n, optional
        Site occupancies as given in the file; all must be 1.
    max_atoms : int or None
        Largest accepted number of atoms; None for no limit.

    Returns
    -------
    Structure

    Raises
    ------
    InputError
        With one message naming the file and the problem.
    """
    pre = _prefix(source)
    source = "" if source is None else str(source)

    # shapes and numbers --------------------------------------------------
    if isinstance(species, str):
        raise InputError(f"{pre}species must be a sequence of element symbols, "
                         f"not the single string {species!r}")
    try:
        species = tuple(str(s).strip() for s in species)
    except TypeError:
        raise InputError(f"{pre}species must be a sequence of element symbols, "
                         f"got {type(species).__name__}") from None
    n = len(species)
    try:
        frac = np.array(frac_coords, dtype=float)
        if frac.size == 0:
            frac = frac.reshape(0, 3)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{pre}fractional coordinates are not numbers ({exc})") from None
    if frac.ndim != 2 or frac.shape[1] != 3:
        raise InputError(f"{pre}fractional coordinates must have shape (n, 3), got {frac.shape}")
    if frac.shape[0] != n:
        raise InputError(f"{pre}{n} species but {frac.shape[0]} coordinate rows")
    if labels is not None:
        labels = tuple("" if lab is None else str(lab) for lab in labels)
        if len(labels) != n:
            raise InputError(f"{pre}{n} sites but {len(labels)} labels")

    # no atoms --------------------------------------------------------------
    if n == 0:
        raise InputError(f"{pre}contains no atoms")

    try:
        lat = np.array(lattice, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{pre}cell vectors are not numbers ({exc})") from None
    if lat.shape != (3, 3):
        raise InputError(f"{pre}cell must be a 3x3 matrix (rows a, b, c), got shape {lat.shape}")
    if not np.all(np.isfinite(lat)):
        raise InputError(f"{pre}cell vectors are not finite numbers "
                         f"(impossible cell lengths or angles?)")
    bad = np.flatnonzero(~np.all(np.isfinite(frac), axis=1))
    if bad.size:
        raise InputError(f"{pre}{_site_name(int(bad[0]), labels, species)} has "
                         f"non-finite coordinates {frac[bad[0]].tolist()}")

    # elements --------------------------------------------------------------
    for i, sym in enumerate(species):
        problem = _element_problem(sym)
        if problem:
            raise InputError(f"{pre}{_site_name(i, labels, species)}: {problem}")

    # occupancy -------------------------------------------------------------
    if occupancies is not None:
        occ = np.array(occupancies, dtype=float).reshape(-1)
        if occ.size != n:
            raise InputError(f"{pre}{n} sites but {occ.size} occupancies")
        partial = np.flatnonzero(~(np.abs(occ - 1.0) <= OCCUPANCY_TOLERANCE))
        if partial.size:
            i = int(partial[0])
            what = labels[i] if labels is not None and labels[i] else f"atom {i + 1}"
            msg = f"{pre}site {what} ({species[i]}) has occupancy {occ[i]:g}"
            named = {what}
            if np.all(np.isfinite(lat)) and abs(np.linalg.det(lat)) > 0:
                dist = _min_image_distances(lat, frac, i)
                sharing = [j for j in np.flatnonzero(dist < MIN_DISTANCE) if j != i]
                names = []
                for j in sharing:
                    name = labels[j] if labels is not None and labels[j] else f"atom {j + 1}"
                    entry = f"{name} ({species[j]}, occupancy {occ[j]:g})"
                    if entry not in names and name != what:
                        names.append(entry)
                        named.add(name)
                if names:
                    msg += " and shares its position with " + ", ".join(names)
            others = {labels[j] if labels is not None and labels[j] else f"atom {j + 1}"
                      for j in partial} - named
            if others:
                msg += f" ({len(others)} other site(s) are not fully occupied either)"
            raise InputError(
                msg + ": partial or mixed occupancy is not supported; insnet needs an "
                "ordered structure, so choose an ordered model (e.g. a supercell with "
                "each site fully occupied by one element) and give every site occupancy 1")

    # cell volume -----------------------------------------------------------
    volume = float(np.linalg.det(lat))
    lengths = np.linalg.norm(lat, axis=1)
    scale = float(np.prod(lengths))
    if volume < 0:
        raise InputError(
            f"{pre}cell volume is {volume:.6g} A^3: the cell vectors are left-handed; "
            f"swap two of them (with the matching coordinate columns) or reverse one")
    if volume <= 1e-6 or scale == 0 or volume < 1e-4 * scale:
        raise InputError(
            f"{pre}cell volume is {volume:.6g} A^3: the cell is degenerate "
            f"(zero-length or nearly coplanar cell vectors)")

    # size limit ------------------------------------------------------------
    if max_atoms is not None and n > max_atoms:
        raise InputError(
            f"{pre}has {n} atoms in the cell, more than the limit of {max_atoms}; "
            f"pass a larger max_atoms (e.g. max_atoms={n}) to allow it")

    # overlapping atoms -----------------------------------------------------
    from pymatgen.core import Lattice
    from pymatgen.core import Structure as PmgStructure
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pmg = PmgStructure(Lattice(lat), list(species), frac)
        centres, neighbours, _, dists = pmg.get_neighbor_list(MIN_DISTANCE)
    if len(dists):
        k = int(np.argmin(dists))
        i, j, d = int(centres[k]), int(neighbours[k]), float(dists[k])
        if i == j:
            raise InputError(
                f"{pre}{_site_name(i, labels, species)} is {d:.3f} A from its own periodic "
                f"image (closer than {MIN_DISTANCE} A): the cell is too small")
        i, j = min(i, j), max(i, j)
        if labels is not None and labels[i] and labels[i] == labels[j]:
            hint = ("; they are symmetry images of one site: is its position rounded too "
                    "coarsely or off its special position?")
        elif d < 0.01:
            hint = "; two atoms on one position: a mixed site or a duplicated atom?"
        else:
            hint = ""
        raise InputError(
            f"{pre}{_site_name(i, labels, species)} and {_site_name(j, labels, species)} "
            f"are {d:.3f} A apart, closer than {MIN_DISTANCE} A{hint}")

    return Structure._unchecked(lat, species, frac, source)


# --------------------------------------------------------------------------
# reading files
# --------------------------------------------------------------------------
def read_structure(path, max_atoms=DEFAULT_MAX_ATOMS, fmt=None):
    """Read a CIF or VASP POSCAR file and return the validated :class:`Structure`.

    Parameters
    ----------
    path : str or os.PathLike
        The file. ``*.cif`` is read as CIF; ``POSCAR*``, ``CONTCAR*``,
        ``POSCAR-unitcell``, ``*.vasp`` and ``*.poscar`` as POSCAR; any other
        name is recognised by its content.
    max_atoms : int or None
        Largest accepted number of atoms in the cell; None for no limit.
    fmt : {'cif', 'poscar'}, optional
        Force the format instead of guessing it.

    Returns
    -------
    Structure
        The cell exactly as given in the file (CIF symmetry applied, no
        reduction to a primitive cell); ``source`` is ``str(path)``.

    Raises
    ------
    InputError
        When the file is missing, unreadable, empty or malformed, or when
        :func:`validate` rejects its content. The file is never modified.
    """
    name = os.fspath(path)
    if fmt is not None:
        fmt = str(fmt).strip().lower()
        if fmt not in _FORMATS:
            raise InputError(f"{name}: unknown structure format {fmt!r}; use 'cif' or 'poscar'")
    text = _read_text(name)
    if fmt is None:
        fmt = _guess_format(name, text)
    if fmt == "cif":
        data = _read_cif(text, name)
    else:
        data = _read_poscar(text, name)
    return validate(data["lattice"], data["species"], data["frac_coords"], source=name,
                    labels=data.get("labels"), occupancies=data.get("occupancies"),
                    max_atoms=max_atoms)


def _read_text(name):
    """Return the text of file ``name``, or raise InputError saying why not."""
    p = Path(name)
    if not p.exists():
        raise InputError(f"{name}: file not found")
    if p.is_dir():
        raise InputError(f"{name}: is a directory, not a structure file")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise InputError(f"{name}: cannot read the file ({exc.strerror or exc})") from None
    if not raw.strip():
        raise InputError(f"{name}: the file is empty")
    if b"\x00" in raw:
        raise InputError(f"{name}: is a binary file, not a CIF or POSCAR text file")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _guess_format(name, text):
    base = Path(name).name.lower()
    if base.endswith((".cif", ".mcif")):
        return "cif"
    if "poscar" in base or "contcar" in base or base.endswith((".vasp", ".poscar")):
        return "poscar"
    if re.search(r"^\s*data_", text, flags=re.MULTILINE | re.IGNORECASE):
        return "cif"
    if _looks_like_poscar(text):
        return "poscar"
    raise InputError(
        f"{name}: is neither a CIF (no 'data_' block) nor a VASP POSCAR file; if it is "
        f"one, name it *.cif or POSCAR / *.vasp, or pass fmt='cif' or fmt='poscar'")


def _floats(line, count=None):
    """The numbers on a line (None when any token is not a number)."""
    try:
        values = [float(tok) for tok in line.split()]
    except ValueError:
        return None
    if count is not None and len(values) < count:
        return None
    return values


def _looks_like_poscar(text):
    lines = text.splitlines()
    if len(lines) < 7:
        return False
    scale = _floats(lines[1])
    return bool(scale) and all(_floats(lines[k].split("!")[0], 3) for k in (2, 3, 4))


# ----------------------------------------------------------------- POSCAR
def _read_poscar(text, name):
    """Parse POSCAR text; return a dict for :func:`validate`."""
    lines = text.splitlines()

    hint = ""
    if re.search(r"^\s*data_", text, flags=re.MULTILINE | re.IGNORECASE):
        hint = " (it looks like a CIF: pass fmt='cif')"

    def fail(lineno, problem):
        raise InputError(f"{name}: not a valid POSCAR file: line {lineno}: {problem}{hint}")

    if len(lines) < 7:
        raise InputError(f"{name}: not a valid POSCAR file: only {len(lines)} lines; a "
                         f"POSCAR needs a comment, a scale, three cell vectors, element "
                         f"symbols, counts and coordinates")
    scale = _floats(lines[1])
    if not scale or len(scale) not in (1, 3):
        fail(2, f"expected the scale factor (one number), found {lines[1].strip()!r}")
    for k in (2, 3, 4):
        if _floats(lines[k].split("!")[0], 3) is None:
            fail(k + 1, f"expected a cell vector (three numbers), found {lines[k].strip()!r}")
    tokens = lines[5].split()
    if tokens and all(re.fullmatch(r"\d+", t) for t in tokens):
        raise InputError(
            f"{name}: line 6 gives atom counts but no element symbols (old VASP 4 format); "
            f"add a line with the element symbols (e.g. 'Si O') above the counts line")
    symbols = [re.split(r"[_/]", t)[0] for t in tokens]
    counts_line = lines[6].split()
    try:
        counts = [int(t) for t in counts_line]
    except ValueError:
        fail(7, f"expected atom counts (whole numbers), found {lines[6].strip()!r}")
    if not counts or any(c < 0 for c in counts):
        fail(7, f"expected atom counts (whole numbers >= 0), found {lines[6].strip()!r}")
    if len(counts) != len(symbols):
        fail(7, f"{len(counts)} atom counts for {len(symbols)} element symbols on line 6 "
                f"({' '.join(tokens)})")
    species = [s for s, c in zip(symbols, counts) for _ in range(c)]
    n = len(species)
    if n == 0:
        return {"lattice": np.full((3, 3), np.nan), "species": [],
                "frac_coords": np.zeros((0, 3))}

    start = 7
    if start < len(lines) and lines[start].strip()[:1].lower() == "s":
        start += 1  # selective dynamics
    if start >= len(lines) or lines[start].strip()[:1].lower() not in ("d", "c", "k"):
        found = lines[start].strip() if start < len(lines) else "end of file"
        fail(start + 1, f"expected 'Direct' or 'Cartesian', found {found!r}")
    coord_lines = lines[start + 1:start + 1 + n]
    for k, line in enumerate(coord_lines):
        if _floats(" ".join(line.split()[:3]), 3) is None:
            fail(start + 2 + k, f"expected the coordinates of atom {k + 1} (three numbers), "
                                f"found {line.strip()!r}")
    if len(coord_lines) < n:
        raise InputError(
            f"{name}: not a valid POSCAR file: the counts line announces {n} atoms but "
            f"only {len(coord_lines)} coordinate lines follow")

    from pymatgen.io.vasp import Poscar
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            poscar = Poscar.from_str(text)
            pmg = poscar.structure
        except Exception as exc:  # pymatgen raises many types; report, never leak
            raise InputError(f"{name}: not a valid POSCAR file ({type(exc).__name__}: "
                             f"{exc})") from None
    if len(pmg) != n:
        raise InputError(f"{name}: not a valid POSCAR file: read {len(pmg)} atoms but the "
                         f"counts line announces {n}")
    return {"lattice": np.array(pmg.lattice.matrix), "species": species,
            "frac_coords": np.array(pmg.frac_coords)}


# -------------------------------------------------------------------- CIF
class _CifSyntaxError(Exception):
    def __init__(self, lineno, problem):
        super().__init__(f"line {lineno}: {problem}")


_CIF_TOKEN = re.compile(r"""'(.*?)'(?=\s|$)|"(.*?)"(?=\s|$)|(['"].*)|(\S+)""")


def _cif_line_tokens(line, lineno):
    """(lineno, text, quoted) for each token of one CIF line, comments dropped."""
    out = []
    for m in _CIF_TOKEN.finditer(line):
        single, double, broken, plain = m.groups()
        if plain is not None and plain.startswith("#"):
            break
        if broken is not None:
            raise _CifSyntaxError(lineno, f"quoted string {broken!r} is never closed")
        if plain is not None:
            out.append((lineno, plain, False))
        else:
            out.append((lineno, single if single is not None else double, True))
    return out


def _cif_tokens(text):
    """All tokens of a CIF with their line numbers; text fields become one token."""
    tokens = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith(";"):
            start = i
            i += 1
            while i < len(lines) and not lines[i].startswith(";"):
                i += 1
            if i >= len(lines):
                raise _CifSyntaxError(start + 1, "text field opened with ';' is never closed")
            tokens.append((start + 1, "\n".join(lines[start:i])[1:], True))
            tokens.extend(_cif_line_tokens(lines[i][1:], i + 1))
        else:
            tokens.extend(_cif_line_tokens(line, i + 1))
        i += 1
    return tokens


def _is_keyword(tok):
    lineno, text, quoted = tok
    low = text.lower()
    return (not quoted) and (text.startswith("_") or low == "loop_" or low.startswith("data_")
                             or low.startswith("save_") or low in ("global_", "stop_"))


def _check_cif_syntax(text):
    """Raise _CifSyntaxError (with a line number) for what pymatgen would misread."""
    tokens = _cif_tokens(text)
    pos, n = 0, len(tokens)
    seen_data = False
    while pos < n:
        lineno, tok, quoted = tokens[pos]
        low = tok.lower()
        if not quoted and low.startswith("data_"):
            seen_data = True
            pos += 1
            continue
        if not seen_data:
            raise _CifSyntaxError(lineno, f"expected a 'data_' block header, found {tok!r}")
        if not quoted and low == "loop_":
            pos += 1
            tags = []
            while pos < n and not tokens[pos][2] and tokens[pos][1].startswith("_"):
                tags.append(tokens[pos][1])
                pos += 1
            if not tags:
                raise _CifSyntaxError(lineno, "'loop_' is not followed by data names")
            values = []
            while pos < n and not _is_keyword(tokens[pos]):
                values.append(tokens[pos])
                pos += 1
            if not values:
                raise _CifSyntaxError(lineno, f"loop ({tags[0]}, ...) has no values")
            if len(values) % len(tags):
                per_line = {}
                for v in values:
                    per_line[v[0]] = per_line.get(v[0], 0) + 1
                odd = [ln for ln, cnt in per_line.items() if cnt != len(tags)]
                where = f"; check line {odd[0]}" if odd else ""
                raise _CifSyntaxError(
                    lineno, f"loop of {len(tags)} data names ({', '.join(tags)}) has "
                            f"{len(values)} values, not a multiple of {len(tags)}{where}")
            continue
        if not quoted and tok.startswith("_"):
            if pos + 1 >= n or _is_keyword(tokens[pos + 1]):
                raise _CifSyntaxError(lineno, f"data name {tok} has no value")
            pos += 2
            continue
        if not quoted and (low.startswith("save_") or low in ("global_", "stop_")):
            pos += 1
            continue
        raise _CifSyntaxError(lineno, f"value {tok!r} does not follow a data name")
    if not seen_data:
        raise _CifSyntaxError(1, "no 'data_' block: this is not a CIF")


def _cif_column(block, key):
    """A CIF column as a list of strings, or None when absent (names are case-insensitive)."""
    actual = {k.lower(): k for k in block.data}.get(key.lower())
    if actual is None:
        return None
    values = block.data[actual]
    return [values] if isinstance(values, str) else list(values)


def _cif_element(type_symbol, label):
    """Element symbol of a CIF site, from its type symbol (else its label).

    Charges and numbers are stripped ('Fe3+' -> 'Fe'). A label such as 'Ow1'
    falls back to its first letter when its letters are not an element;
    a type symbol is taken as written, so unknown ones are reported.
    """
    if type_symbol not in (None, "", "?", "."):
        m = re.match(r"[A-Za-z]+", type_symbol.strip())
        return m.group().title() if m else type_symbol.strip()
    m = re.match(r"[A-Za-z]+", (label or "").strip())
    if not m:
        return (label or "").strip()
    letters = m.group().title()
    for candidate in (letters, letters[:2].title(), letters[:1]):
        if candidate and _element_problem(candidate) is None:
            return candidate
    return letters


def _cif_number(text):
    """Float from a CIF number such as '0.9119(7)'; None for '?', '.' or garbage."""
    from pymatgen.io.cif import str2float
    text = text.strip()
    if text in ("?", "."):
        return None
    try:
        return float(str2float(text))
    except (ValueError, TypeError):
        return None


_SYMMETRY_TAGS = (
    "_symmetry_equiv_pos_as_xyz", "_space_group_symop_operation_xyz",
    "_symmetry_space_group_name_h-m", "_symmetry_space_group_name_h_m",
    "_space_group_name_h-m_alt", "_space_group_name_hall", "_symmetry_space_group_name_hall",
    "_space_group_it_number", "_symmetry_int_tables_number",
)
_P1_NAMES = {"p1", "1"}


def _read_cif(text, name):
    """Parse CIF text; return a dict for :func:`validate`.

    pymatgen tokenises the file and supplies the cell and the symmetry
    operations; the symmetry images of each listed site are generated here so
    that every atom keeps its CIF label and occupancy and no site is merged,
    rescaled or dropped.
    """
    try:
        _check_cif_syntax(text)
    except _CifSyntaxError as exc:
        raise InputError(f"{name}: CIF syntax error at {exc}") from None

    from pymatgen.io.cif import CifFile, CifParser
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            cif = CifFile.from_str(text)
            parser = CifParser.from_str(text)
        except Exception as exc:  # pymatgen raises many types; report, never leak
            raise InputError(f"{name}: not a valid CIF ({type(exc).__name__}: {exc})") from None
    for w in caught:
        if "Possible issue in CIF file" in str(w.message):
            raise InputError(f"{name}: not a valid CIF ({w.message})")

    atom_keys = ("_atom_site_fract_x", "_atom_site_label", "_atom_site_cartn_x")
    blocks = [b for b in cif.data.values()
              if any(k.lower() in atom_keys for k in b.data)]
    if len(blocks) > 1:
        names = ", ".join("data_" + b.header for b in blocks)
        raise InputError(f"{name}: contains {len(blocks)} structures ({names}); "
                         f"keep only one data block per file")
    if not blocks:
        return {"lattice": np.full((3, 3), np.nan), "species": [],
                "frac_coords": np.zeros((0, 3))}
    block = blocks[0]
    if parser.feature_flags.get("magcif"):
        raise InputError(f"{name}: magnetic CIF (magCIF) files are not supported; "
                         f"export the nuclear structure as a plain CIF")

    xs = [_cif_column(block, f"_atom_site_fract_{c}") for c in "xyz"]
    if any(col is None for col in xs):
        if any(k.lower().startswith("_atom_site_cartn_") for k in block.data):
            raise InputError(f"{name}: gives Cartesian atom positions (_atom_site_Cartn_x) "
                             f"only; fractional coordinates (_atom_site_fract_x/y/z) are needed")
        raise InputError(f"{name}: the atom site loop lacks _atom_site_fract_x/y/z")
    n_rows = len(xs[0])
    labels = _cif_column(block, "_atom_site_label") or [""] * n_rows
    types = _cif_column(block, "_atom_site_type_symbol") or [None] * n_rows
    occs = _cif_column(block, "_atom_site_occupancy") or ["1"] * n_rows
    if any(len(col) != n_rows for col in (*xs, labels, types, occs)):
        raise InputError(f"{name}: the _atom_site_ data names do not all have "
                         f"{n_rows} values (are they in one loop?)")

    rows = []
    for r in range(n_rows):
        label = labels[r]
        site = label or f"row {r + 1} of the atom site loop"
        coord = [_cif_number(col[r]) for col in xs]
        if any(c is None for c in coord):
            raise InputError(f"{name}: site {site} has unreadable fractional coordinates "
                             f"({xs[0][r]}, {xs[1][r]}, {xs[2][r]})")
        occ_text = occs[r].strip()
        occ = 1.0 if occ_text in ("?", ".") else _cif_number(occ_text)
        if occ is None:
            raise InputError(f"{name}: site {site} has an unreadable occupancy {occ_text!r}")
        rows.append((label, _cif_element(types[r], label), occ, np.array(coord)))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            lattice = parser.get_lattice(block)
            ops = parser.get_symops(block)
        except Exception as exc:  # pymatgen raises many types; report, never leak
            raise InputError(f"{name}: could not read the cell or the symmetry "
                             f"({type(exc).__name__}: {exc})") from None
    if lattice is None:
        raise InputError(f"{name}: cell parameters missing or unreadable (need "
                         f"_cell_length_a/b/c and _cell_angle_alpha/beta/gamma)")
    if any("Defaulting to P1" in str(w.message) for w in caught):
        given = {k: v for k, v in block.data.items() if k.lower().rstrip("_") in _SYMMETRY_TAGS}
        non_trivial = {k: v for k, v in given.items()
                       if re.sub(r"[\s_']", "", str(v)).lower() not in _P1_NAMES}
        if non_trivial:
            key, value = next(iter(non_trivial.items()))
            raise InputError(f"{name}: could not interpret the symmetry ({key} = {value!r}); "
                             f"list the operations in _space_group_symop_operation_xyz")
    matrix = np.array(lattice.matrix, dtype=float)

    species, frac, site_labels, occupancies = [], [], [], []
    for label, symbol, occ, coord in rows:
        images = []
        for op in ops:
            x = np.asarray(op.operate(coord), dtype=float)
            x = x - np.floor(x)
            if images:
                diff = np.array(images) - x
                diff -= np.round(diff)
                if np.min(np.linalg.norm(diff @ matrix, axis=1)) < SYMMETRY_MERGE_DISTANCE:
                    continue
            images.append(x)
        species.extend([symbol] * len(images))
        frac.extend(images)
        site_labels.extend([label] * len(images))
        occupancies.extend([occ] * len(images))
    return {"lattice": matrix, "species": species,
            "frac_coords": np.array(frac, dtype=float).reshape(-1, 3),
            "labels": site_labels, "occupancies": occupancies}
