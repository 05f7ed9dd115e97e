"""Force constants from a structure alone with a universal ML interatomic potential.

The uMLIP route: a validated :class:`~insnet_core.structure.Structure` is relaxed
with the potential (space group kept by ASE's ``FixSymmetry``; cell and atoms, or
atoms only in the input cell), phonopy displaces atoms in a supercell at least
``supercell_length`` wide in every direction, the potential gives the forces, and
the force sets are written as a standard ``phonopy_params.yaml``. The engine then
treats it exactly as DFT force constants (:func:`insnet_core.simulate.simulate`).

Potentials (:data:`POTENTIALS`) are chosen by name; their weights ship inside their
wheels (extra ``insnet[umlip]``), nothing is downloaded. torch, ASE and the
potentials are imported only here, and only when a route runs.

Results are cached by (structure hash, potential and its version, settings) in
``cache_dir`` (default ``$INSNET_CACHE_DIR/umlip`` or ``~/.cache/insnet/umlip``):
one folder per key with ``phonopy_params.yaml`` and ``route.json`` (the report).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata as importlib_metadata
from pathlib import Path

import numpy as np

from insnet_core import InputError, InsnetError, __version__

__all__ = ["POTENTIALS", "DEFAULT_POTENTIAL", "RELAX_MODES", "RouteSettings", "RouteResult",
           "UmlipError", "run_route", "supercell_for_length", "check_settings",
           "default_cache_dir", "load_calculator", "simulate_with_potential",
           "simulate_structure"]

log = logging.getLogger(__name__)

#: Cache layout version (part of every cache key).
CACHE_FORMAT = 2


@dataclass(frozen=True)
class Potential:
    """A universal potential: its name, the package that ships it, how to build it."""

    name: str
    package: str          # distribution name, for the version and the install message
    module: str           # module imported to check it is installed
    description: str
    #: Frequency scale applied by default, per relax mode (force constants times scale**2):
    #: the correction of the potential's systematic softening, fitted on training crystals
    #: of the database (docs/umlip.md); a mode not listed gets 1.0 (none).
    #: One scale for every structure, hydrogen or not: on twelve hydrogen-containing test
    #: crystals it did better than no scale and than a scale fitted on hydrogen-containing
    #: crystals (docs/umlip.md).
    frequency_scales: tuple = ()

    def frequency_scale(self, relax):
        return dict(self.frequency_scales).get(relax, 1.0)


#: The potentials the route knows, by the name a user types.
POTENTIALS = {
    "chgnet": Potential("chgnet", "chgnet", "chgnet",
                        "CHGNet 0.3.0 (Deng et al. 2023; Materials Project trajectories)",
                        frequency_scales=(("atoms", 1.260), ("cell", 1.416))),
    "7net-0": Potential("7net-0", "sevenn", "sevenn",
                        "SevenNet-0 (Park et al. 2024; MPtrj)",
                        frequency_scales=(("atoms", 1.057), ("cell", 1.154))),
}

#: The potential used when none is named: the closer to DFT of the two (docs/umlip.md).
DEFAULT_POTENTIAL = "7net-0"

#: ``atoms``: atoms only, in the input cell (default: closer to DFT than relaxing the cell,
#: which both potentials expand by a few %); ``cell``: cell and atoms (symmetry kept);
#: ``none``: the input structure as it is.
RELAX_MODES = ("atoms", "cell", "none")


class UmlipError(InsnetError):
    """The route ran but its result cannot be trusted (e.g. relaxation not converged)."""


@dataclass(frozen=True)
class RouteSettings:
    """Settings of the uMLIP route; check them with :func:`check_settings`.

    Attributes
    ----------
    potential : str
        A key of :data:`POTENTIALS`.
    relax : str
        One of :data:`RELAX_MODES`.
    fmax : float
        Convergence of the relaxation: largest residual force, eV/angstrom (with a cell
        filter also the stress times the volume per atom).
    max_steps : int
        Most optimiser steps.
    supercell_length : float
        Smallest width of the phonopy supercell in every direction, angstrom.
    displacement : float
        Finite displacement, angstrom.
    frequency_scale : float or None
        Multiplies every phonon frequency (force constants by its square); None takes
        the potential's default for the relax mode (:meth:`Potential.frequency_scale`).
    max_supercell_atoms : int
        Largest supercell the potential is run on (memory grows fast with its size).
    allow_unconverged, allow_symmetry_change : bool
        Go on (with a warning in the report) instead of failing.
    """

    potential: str = DEFAULT_POTENTIAL
    relax: str = "atoms"
    fmax: float = 0.01
    max_steps: int = 300
    supercell_length: float = 10.0
    displacement: float = 0.01
    frequency_scale: float | None = None
    max_supercell_atoms: int = 1000
    allow_unconverged: bool = False
    allow_symmetry_change: bool = False

    def cache_fields(self):
        """The settings that change the force constants (the cache key's part)."""
        out = asdict(self)
        out.pop("allow_unconverged")
        out.pop("max_supercell_atoms")
        out.pop("allow_symmetry_change")
        return out


def check_settings(settings=None, **changes):
    """Validate route settings; returns a :class:`RouteSettings`.

    Raises
    ------
    InputError
        An unknown potential or relax mode, or a number out of range (named).
    """
    s = replace(settings or RouteSettings(), **changes)
    name = str(s.potential).strip().lower()
    if name not in POTENTIALS:
        raise InputError(f"potential: unknown '{s.potential}' (choose from "
                         f"{', '.join(POTENTIALS)})")
    if s.relax not in RELAX_MODES:
        raise InputError(f"relax: unknown '{s.relax}' (choose from {', '.join(RELAX_MODES)})")

    def positive(value, what, low=0.0, high=np.inf):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise InputError(f"{what}: '{value}' is not a number") from None
        if not (low < value <= high) or not np.isfinite(value):
            raise InputError(f"{what}: {value:g} is out of range ({low:g} < value <= {high:g})")
        return value

    fmax = positive(s.fmax, "fmax (eV/angstrom)", 0.0, 1.0)
    steps = s.max_steps
    if isinstance(steps, bool) or not float(steps).is_integer() or not 0 <= int(steps) <= 100000:
        raise InputError(f"max_steps: {steps} is not a whole number of steps 0..100000")
    length = positive(s.supercell_length, "supercell_length (angstrom)", 0.0, 40.0)
    disp = positive(s.displacement, "displacement (angstrom)", 0.0, 0.1)
    scale = None if s.frequency_scale is None else positive(
        s.frequency_scale, "frequency_scale", 0.5, 2.0)
    limit = s.max_supercell_atoms
    if isinstance(limit, bool) or not float(limit).is_integer() or not 1 <= int(limit) <= 20000:
        raise InputError(f"max_supercell_atoms: {limit} is not a whole number 1..20000")
    return RouteSettings(potential=name, relax=s.relax, fmax=fmax, max_steps=int(steps),
                         supercell_length=length, displacement=disp, frequency_scale=scale,
                         max_supercell_atoms=int(limit),
                         allow_unconverged=bool(s.allow_unconverged),
                         allow_symmetry_change=bool(s.allow_symmetry_change))


def supercell_for_length(lattice, length):
    """Diagonal supercell multiples so that every width is at least ``length``.

    Parameters
    ----------
    lattice : array_like, shape (3, 3)
        Cell vectors (rows), angstrom.
    length : float
        Smallest width, angstrom: the distance between opposite faces of the supercell
        (not the vector lengths, which overstate the size of oblique cells).

    Returns
    -------
    tuple of 3 int
    """
    lat = np.asarray(lattice, dtype=float)
    volume = abs(np.linalg.det(lat))
    widths = [volume / np.linalg.norm(np.cross(lat[(i + 1) % 3], lat[(i + 2) % 3]))
              for i in range(3)]
    return tuple(max(1, int(np.ceil(length / w - 1e-6))) for w in widths)


def default_cache_dir():
    """``$INSNET_CACHE_DIR/umlip``, else ``~/.cache/insnet/umlip``."""
    root = os.environ.get("INSNET_CACHE_DIR")
    return (Path(root) if root else Path.home() / ".cache" / "insnet") / "umlip"


def _version(potential):
    try:
        return importlib_metadata.version(potential.package)
    except importlib_metadata.PackageNotFoundError:
        return None


def _require(potential):
    version = _version(potential)
    if version is None:
        raise InputError(f"potential {potential.name}: the uMLIP route needs the umlip extra "
                         f"({potential.package} is not installed): pip install 'insnet[umlip]'")
    return version


def load_calculator(name):
    """The ASE calculator of a potential, on the CPU (weights from the installed wheel)."""
    potential = POTENTIALS[name]
    _require(potential)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name == "chgnet":
            from chgnet.model import CHGNet
            from chgnet.model.dynamics import CHGNetCalculator
            return CHGNetCalculator(model=CHGNet.load(verbose=False), use_device="cpu")
        if name == "7net-0":
            from sevenn.calculator import SevenNetCalculator
            return SevenNetCalculator("7net-0", device="cpu")
    raise InputError(f"potential: unknown '{name}'")  # pragma: no cover (POTENTIALS is closed)


_CALCULATORS = {}


def _calculator(name):
    """One calculator per potential and process (loading one takes seconds)."""
    if name not in _CALCULATORS:
        _CALCULATORS[name] = load_calculator(name)
    return _CALCULATORS[name]


@dataclass
class RouteResult:
    """What the route produced.

    Attributes
    ----------
    params_file : Path
        ``phonopy_params.yaml`` (force sets of the relaxed cell; loads with phonopy and
        with ``insnet simulate`` / ``ForceConstantsFile``).
    report : dict
        Potential and version, settings, relaxation (steps, residual force, converged,
        space group before/after, volume change), supercell, timings, stability at Gamma.
    cached : bool
        True when the result came from the cache.
    """

    params_file: Path
    report: dict = field(default_factory=dict)
    cached: bool = False

    def metadata(self):
        """Flat entries for a spectrum's metadata (the output's sample logs)."""
        r = self.report
        relax = r["relaxation"]
        return {"prediction_method": "uMLIP", "potential": r["potential"],
                "potential_version": r["potential_version"],
                "relaxation": relax["mode"], "relaxation_steps": relax["steps"],
                "relaxation_residual_force": relax["residual_force"],
                "relaxation_converged": int(relax["converged"]),
                "spacegroup_before": relax["spacegroup_before"],
                "spacegroup_after": relax["spacegroup_after"],
                "volume_change_percent": relax["volume_change_percent"],
                "frequency_scale": r["frequency_scale"],
                "supercell": " ".join(map(str, r["supercell"])),
                "force_constants_file": str(self.params_file),
                "imaginary_at_gamma": int(r["imaginary_at_gamma"]),
                "gamma_lowest_optical_meV": r["gamma_lowest_optical_meV"],
                "route_warnings": "; ".join(r["warnings"])}


def _to_atoms(structure):
    from ase import Atoms
    return Atoms(symbols=list(structure.species), cell=np.array(structure.lattice),
                 scaled_positions=np.array(structure.frac_coords), pbc=True)


#: Tolerance (angstrom) of FixSymmetry: the relaxation keeps (and imposes) the symmetry
#: found at this tolerance, so a cell whose sites are rounded off their special positions
#: is symmetrised to its higher group.
FIX_SYMPREC = 1e-2
#: Tolerance (angstrom) of the space groups reported before and after the relaxation.
REPORT_SYMPREC = 1e-3


def _symmetry(atoms):
    """(space group label, number of symmetry operations of the cell) at REPORT_SYMPREC."""
    import spglib
    cell = (np.array(atoms.cell), atoms.get_scaled_positions(), atoms.numbers)
    data = spglib.get_symmetry_dataset(cell, symprec=REPORT_SYMPREC)
    if data is None:
        return "P1 (1)", 1
    return f"{data.international} ({data.number})", int(len(data.rotations))


def _evaluate(atoms, what, potential, source):
    """Run the calculator, turning its failures into one clear error."""
    try:
        return what(atoms)
    except MemoryError:
        raise UmlipError(f"{source}: the potential {potential} ran out of memory on "
                         f"{len(atoms)} atoms; use a smaller supercell_length") from None
    except (KeyError, ValueError, IndexError, RuntimeError) as exc:
        raise InputError(f"{source}: the potential {potential} could not compute this "
                         f"structure ({type(exc).__name__}: {str(exc).strip()[:200]})") from None


def _relax(atoms, calc, settings, source, report):
    """Relax in place; fills report['relaxation']."""
    from ase.constraints import FixSymmetry
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    before, ops_before = _symmetry(atoms)
    volume0 = atoms.get_volume()
    atoms.calc = calc
    steps, converged = 0, True
    target = atoms
    if settings.relax != "none":
        atoms.set_constraint(FixSymmetry(atoms, symprec=FIX_SYMPREC))
        target = FrechetCellFilter(atoms) if settings.relax == "cell" else atoms
        opt = BFGS(target, logfile=None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            converged = bool(_evaluate(atoms, lambda a: opt.run(fmax=settings.fmax,
                                                               steps=settings.max_steps),
                                       settings.potential, source))
        steps = int(opt.nsteps)
        atoms.set_constraint()
    forces = _evaluate(target, lambda a: a.get_forces(), settings.potential, source)
    residual = float(np.linalg.norm(forces, axis=1).max()) if len(forces) else 0.0
    after, ops_after = _symmetry(atoms)
    report["relaxation"] = {
        "mode": settings.relax, "steps": steps, "converged": converged and (
            settings.relax == "none" or residual <= settings.fmax * (1 + 1e-6)),
        "residual_force": residual, "fmax": settings.fmax, "max_steps": settings.max_steps,
        "spacegroup_before": before, "spacegroup_after": after,
        "symmetry_operations_before": ops_before, "symmetry_operations_after": ops_after,
        "symmetry_lost": ops_after < ops_before,
        "volume_change_percent": float(100.0 * (atoms.get_volume() / volume0 - 1.0)),
        "lattice": np.array(atoms.cell).tolist()}
    relax = report["relaxation"]
    if settings.relax != "none" and not relax["converged"]:
        message = (f"{source}: the relaxation with {settings.potential} did not converge in "
                   f"{steps} steps (largest residual force {residual:.3g} eV/A > fmax "
                   f"{settings.fmax:g})")
        if not settings.allow_unconverged:
            raise UmlipError(message + "; raise max_steps or fmax, or allow an unconverged "
                             "relaxation")
        report["warnings"].append(message)
    if ops_after < ops_before:
        message = (f"{source}: the relaxation lost symmetry: space group {before} -> {after} "
                   f"({ops_before} -> {ops_after} operations)")
        if not settings.allow_symmetry_change:
            raise UmlipError(message + " (allow a symmetry change to go on)")
        report["warnings"].append(message)
    elif before != after:
        report["warnings"].append(
            f"{source}: symmetrised from {before} to {after} (sites within "
            f"{FIX_SYMPREC:g} A of a higher symmetry were moved onto it)")


def _forces_on_displacements(phonon, calc, settings, source, progress):
    from ase import Atoms
    cells = phonon.supercells_with_displacements
    forces = []
    for i, cell in enumerate(cells):
        atoms = Atoms(symbols=list(cell.symbols), cell=np.array(cell.cell),
                      scaled_positions=np.array(cell.scaled_positions), pbc=True)
        atoms.calc = calc
        f = np.array(_evaluate(atoms, lambda a: a.get_forces(), settings.potential, source),
                     dtype=float)
        if not np.all(np.isfinite(f)):
            raise UmlipError(f"{source}: the potential {settings.potential} gave non-finite "
                             f"forces on displaced supercell {i + 1}")
        forces.append(f - f.mean(axis=0))  # remove the (tiny) drift
        progress(0.4 + 0.5 * (i + 1) / len(cells), f"forces {i + 1}/{len(cells)}")
    return np.array(forces)


def gamma_frequencies(phonon):
    """Frequencies at Gamma, THz (imaginary ones negative), shape (3 n_atoms,)."""
    phonon.run_qpoints([[0.0, 0.0, 0.0]])
    return np.array(phonon.qpoints.frequencies[0], dtype=float)


def _gamma_report(phonon):
    """Lowest optical frequency at Gamma (meV) and whether Gamma has imaginary modes."""
    from insnet_core.phonons import IMAGINARY_TOLERANCE_MEV
    from insnet_core.units import MEV_PER_THZ
    freqs = np.sort(gamma_frequencies(phonon)) * MEV_PER_THZ
    optical = freqs[3:] if len(freqs) > 3 else np.array([])
    lowest = float(optical.min()) if len(optical) else 0.0
    return {"gamma_lowest_optical_meV": lowest,
            "imaginary_at_gamma": bool(lowest < -IMAGINARY_TOLERANCE_MEV)}


def default_frequency_scale(potential, settings, structure):
    """(scale, note): the scale the route applies (an explicit one, else the potential's).

    The note is empty except for structures with hydrogen, where it says that the general
    scale was applied and where that was measured.
    """
    if settings.frequency_scale is not None:
        return float(settings.frequency_scale), ""
    scale = potential.frequency_scale(settings.relax)
    note = ""
    if scale != 1.0 and "H" in structure.species:
        note = (f"{structure.source or 'structure'}: contains hydrogen; the default frequency "
                f"scale of {potential.name} ({scale:g}) is applied as to any structure (measured "
                "on hydrogen-containing test crystals: docs/umlip.md); set frequency_scale to "
                "change it")
    return scale, note


def _check_supercell(dims, n_atoms, settings, source):
    n_super = int(np.prod(dims)) * int(n_atoms)
    if n_super > settings.max_supercell_atoms:
        raise UmlipError(f"{source}: a supercell at least {settings.supercell_length:g} A wide "
                         f"is {'x'.join(map(str, dims))} cells = {n_super} atoms, more than "
                         f"max_supercell_atoms ({settings.max_supercell_atoms}); lower "
                         "supercell_length or raise the limit")


def _cache_key(structure, settings, version):
    text = json.dumps({"format": CACHE_FORMAT, "structure": structure.hash(),
                       "potential_version": version, "settings": settings.cache_fields()},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def run_route(structure, settings=None, cache_dir=None, use_cache=True, progress=None):
    """Relax, displace and compute force sets with a universal potential.

    Parameters
    ----------
    structure : Structure
        Validated (see :func:`insnet_core.structure.read_structure`).
    settings : RouteSettings, optional
        Checked here (:func:`check_settings`).
    cache_dir : path, optional
        Where results are kept (:func:`default_cache_dir` by default).
    use_cache : bool
        Reuse a cached result of the same key (and write the new one).
    progress : callable, optional
        ``progress(fraction, message)``.

    Returns
    -------
    RouteResult

    Raises
    ------
    InputError
        Bad settings, the extra not installed, an element the potential cannot treat.
    UmlipError
        Relaxation not converged or space group changed (unless allowed).
    """
    import phonopy

    from insnet_core.phonons import _set_periodictable_masses

    report_progress = progress or (lambda fraction, message: None)
    settings = check_settings(settings)
    potential = POTENTIALS[settings.potential]
    version = _require(potential)
    scale, scale_note = default_frequency_scale(potential, settings, structure)
    source = structure.source or "structure"
    cache_root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = _cache_key(structure, replace(settings, frequency_scale=scale), version)
    folder = cache_root / key
    if use_cache and (folder / "route.json").is_file() and \
            (folder / "phonopy_params.yaml").is_file():
        report = json.loads((folder / "route.json").read_text())
        _check_cached(report, settings, source)
        report_progress(1.0, "cached force constants")
        return RouteResult(folder / "phonopy_params.yaml", report, cached=True)

    # the supercell of the input cell must fit before anything slow runs
    _check_supercell(supercell_for_length(structure.lattice, settings.supercell_length),
                     structure.n_atoms, settings, source)
    timings = {}
    t0 = time.perf_counter()
    report_progress(0.02, f"loading {settings.potential}")
    calc = _calculator(settings.potential)
    timings["load_s"] = time.perf_counter() - t0
    report = {"insnet_version": __version__, "potential": settings.potential,
              "potential_version": version, "potential_description": potential.description,
              "structure_hash": structure.hash(), "source": str(structure.source),
              "settings": asdict(settings), "frequency_scale": scale,
              "warnings": [scale_note] if scale_note else []}

    t = time.perf_counter()
    report_progress(0.05, f"relaxing ({settings.relax})")
    atoms = _to_atoms(structure)
    _relax(atoms, calc, settings, source, report)
    timings["relax_s"] = time.perf_counter() - t

    t = time.perf_counter()
    from phonopy.structure.atoms import PhonopyAtoms
    unit = PhonopyAtoms(symbols=list(atoms.get_chemical_symbols()), cell=np.array(atoms.cell),
                        scaled_positions=atoms.get_scaled_positions())
    dims = supercell_for_length(np.array(atoms.cell), settings.supercell_length)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        phonon = phonopy.Phonopy(unit, supercell_matrix=np.diag(dims), primitive_matrix="auto",
                                 log_level=0)
    _check_supercell(dims, len(atoms), settings, source)
    phonon.generate_displacements(distance=settings.displacement)
    report["supercell"] = list(dims)
    report["supercell_atoms"] = int(len(phonon.supercell))
    report["displacements"] = int(len(phonon.supercells_with_displacements))
    report_progress(0.4, f"forces on {report['displacements']} displaced supercells")
    forces = _forces_on_displacements(phonon, calc, settings, source, report_progress)
    phonon.forces = forces * scale ** 2
    timings["forces_s"] = time.perf_counter() - t

    t = time.perf_counter()
    phonon.produce_force_constants(fc_calculator="traditional")
    phonon.symmetrize_force_constants()
    _set_periodictable_masses(phonon)
    report.update(_gamma_report(phonon))
    timings["force_constants_s"] = time.perf_counter() - t
    report["timings"] = timings

    cache_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=cache_root))
    try:
        phonon.save(str(staging / "phonopy_params.yaml"))
        (staging / "route.json").write_text(json.dumps(report, indent=1))
        if folder.exists():
            shutil.rmtree(folder)
        staging.replace(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report_progress(1.0, "force constants ready")
    return RouteResult(folder / "phonopy_params.yaml", report, cached=False)


def _check_cached(report, settings, source):
    """A cached result obeys this run's allow_* settings too."""
    relax = report["relaxation"]
    if not relax["converged"] and not settings.allow_unconverged and relax["mode"] != "none":
        raise UmlipError(f"{source}: the cached relaxation with {settings.potential} did not "
                         f"converge (residual force {relax['residual_force']:.3g} eV/A); allow "
                         "an unconverged relaxation or change the settings")
    if relax["symmetry_lost"] and not settings.allow_symmetry_change:
        raise UmlipError(f"{source}: the relaxation lost symmetry: space group "
                         f"{relax['spacegroup_before']} -> {relax['spacegroup_after']} (cached "
                         "result; allow a symmetry change to go on)")


def simulate_with_potential(structure_path, settings=None, cache_dir=None, use_cache=True,
                            progress=None, max_atoms=None, **simulate_kwargs):
    """The uMLIP route end to end: structure file -> instrument spectrum.

    Parameters
    ----------
    structure_path : str or Path
        CIF or POSCAR file.
    settings : RouteSettings, optional
    cache_dir, use_cache : see :func:`run_route`
    progress : callable, optional
        ``progress(fraction, message)``: the route takes 0-80 %, the engine the rest.
    max_atoms : int, optional
        Largest cell accepted (default :data:`insnet_core.structure.DEFAULT_MAX_ATOMS`).
    **simulate_kwargs
        Passed to :func:`insnet_core.simulate.simulate` (instrument, temperature, bins...).

    Returns
    -------
    (SimulationResult, RouteResult)
        Every spectrum's metadata carries :meth:`RouteResult.metadata` and the imaginary
        modes at Gamma.
    """
    from insnet_core.simulate import Settings
    from insnet_core.structure import DEFAULT_MAX_ATOMS, read_structure

    report = progress or (lambda fraction, message: None)
    # every setting is checked before the (slow) route runs
    engine_keys = ("instrument", "temperature", "orders", "energy_edges", "q_edges",
                   "include_elastic")
    instrument_settings = {k: v for k, v in simulate_kwargs.items()
                           if k not in engine_keys + ("mesh", "mesh_spacing", "grouping",
                                                      "bin_width", "isotropic")}
    Settings.check(**{k: simulate_kwargs[k] for k in engine_keys if k in simulate_kwargs},
                   **instrument_settings)
    settings = check_settings(settings)
    structure = read_structure(structure_path, max_atoms=max_atoms or DEFAULT_MAX_ATOMS)
    result, route = simulate_structure(structure, settings, cache_dir=cache_dir,
                                       use_cache=use_cache, progress=report, **simulate_kwargs)
    for spectrum in [result.total, *result.by_element.values(), *result.by_order.values()]:
        spectrum.metadata["source"] = str(structure_path)
    return result, route


def simulate_structure(structure, settings=None, cache_dir=None, use_cache=True, progress=None,
                       **simulate_kwargs):
    """Route then engine for a checked Structure: (SimulationResult, RouteResult).

    The one place both callers (:func:`simulate_with_potential` for the CLI,
    :func:`insnet_core.predict.run_request` for ``predict`` and the Mantid algorithms) go
    through. ``progress``: the route takes 0-80 %, the engine the rest. Every spectrum's
    metadata carries :meth:`RouteResult.metadata`.
    """
    from insnet_core.simulate import simulate

    report = progress or (lambda fraction, message: None)
    route = run_route(structure, check_settings(settings), cache_dir=cache_dir,
                      use_cache=use_cache, progress=lambda f, m: report(0.8 * f, m))
    result = simulate(route.params_file, progress=lambda f, m: report(0.8 + 0.2 * f, m),
                      **simulate_kwargs)
    extra = route.metadata()
    for spectrum in [result.total, *result.by_element.values(), *result.by_order.values()]:
        spectrum.metadata.update(extra)
    return result, route
