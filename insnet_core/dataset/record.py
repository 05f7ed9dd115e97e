"""One crystal of the training database: from phonondb files to a stored record.

A record holds everything needed to reproduce every incoherent spectrum of
the crystal without phonopy (the *ingredients*: per-element one-phonon DOS on
a fine grid along the three principal axes of the element's Debye-Waller
tensor, masses, cross sections, atom counts), the paper's VISION target,
flags and provenance. The 300x300 map target is regenerated exactly from the
ingredients by :func:`regenerate`.

Records are plain dicts of numpy arrays and Python scalars, so they pickle
cheaply between dask workers and store column-wise in HDF5.
"""
from __future__ import annotations

import hashlib
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from insnet_core import InsnetError

__all__ = ["BuildConfig", "compute_record", "failure_record", "ingredients_from_record",
           "regenerate", "files_sha256"]

#: Version of the record layout; bump when fields change meaning.
#: 1: isotropic DOS per element. 2: DOS per element along the principal axes of
#: its Debye-Waller tensor (anisotropic fundamentals), principal msd per element.
RECORD_FORMAT = 2


@dataclass(frozen=True)
class BuildConfig:
    """Settings of a database build (stored in every shard file)."""

    # Gamma-centred mesh: None = the engine's default rule (phonons.default_mesh: spacing
    # < 0.1 1/A and >= 4e6/n_atoms^3 q-points); a number = that spacing alone (1/angstrom)
    mesh_spacing: float | None = None
    bin_width: float = 0.1         # meV, grid of the stored DOS
    orders: int = 10               # phonon orders of the targets
    temperature: float = 0.0       # K, of the targets (and of the Debye-Waller axes)
    grouping: str = "element"      # ingredients per element (see incoherent.build_ingredients)
    max_energy_flag: float = 150.0  # meV: flag crystals with modes above the map's range
    format: int = RECORD_FORMAT

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, data):
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def files_sha256(files):
    """sha256 over the sorted (name, bytes) pairs of a crystal's source files."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return h.hexdigest()


def failure_record(material_id, reason, source_sha256="", seconds=0.0):
    """Record of a crystal that could not be computed (kept, never dropped)."""
    return {"material_id": material_id, "status": "failed", "reason": str(reason)[:500],
            "source_sha256": source_sha256, "seconds": float(seconds)}


def compute_record(material_id, files, config=BuildConfig(), extra=None):
    """Compute one crystal's record from its phonondb files.

    Parameters
    ----------
    material_id : str
        E.g. ``"mp-1818"``.
    files : dict of str -> bytes
        The crystal's files (``POSCAR-unitcell``, ``phonopy.conf``, ``FORCE_SETS``,
        optional ``BORN``), as read from the source shard.
    config : BuildConfig
    extra : dict, optional
        Index columns copied into the record (e.g. ``spacegroup``).

    Returns
    -------
    dict
        ``status`` is ``"ok"`` or ``"failed"`` (with ``reason``); never raises
        for a bad crystal.
    """
    from insnet_core.incoherent import (build_ingredients, mean_square_displacement,
                                        principal_mean_square_displacements)
    from insnet_core.phonons import load_phonopy, run_mesh
    from insnet_core.simulate import Settings, simulate_ingredients

    start = time.perf_counter()
    sha = files_sha256(files)
    tmp = ""

    def fail(reason):
        # name the crystal's folder, not the worker's temporary copy of it
        text = str(reason).replace(str(Path(tmp)) + "/", "") if tmp else str(reason)
        return failure_record(material_id, text, sha, time.perf_counter() - start)

    try:
        with tempfile.TemporaryDirectory(prefix="insnet-") as tmp:
            folder = Path(tmp) / material_id
            folder.mkdir()
            for name, data in files.items():
                (folder / name).write_bytes(data)
            phonon = load_phonopy(folder)
        modes = run_mesh(phonon, spacing=config.mesh_spacing)
        ing = build_ingredients(modes, grouping=config.grouping, bin_width=config.bin_width,
                                temperature=config.temperature)
        vision = simulate_ingredients(ing, Settings.check(
            "VISION", orders=config.orders, temperature=config.temperature)).total
    except InsnetError as exc:
        return fail(exc)
    except MemoryError:
        return fail("out of memory")
    except Exception as exc:  # a crystal must never abort the build: record why it failed
        return fail(f"{type(exc).__name__}: {exc}")
    prim = phonon.primitive
    top = int(np.nonzero(ing.dos.any(axis=0))[0].max()) + 1 if ing.dos.any() else 1
    rec = {
        "material_id": material_id, "status": "ok", "reason": "",
        "source_sha256": sha, "seconds": time.perf_counter() - start,
        "formula": modes.formula, "n_atoms": int(modes.n_atoms),
        "lattice": np.asarray(prim.cell, dtype=float),
        "species": np.array(prim.symbols, dtype="U3"),
        "frac_coords": np.asarray(prim.scaled_positions, dtype=float),
        "mesh": np.array(modes.mesh, dtype=np.int32),
        "min_energy": modes.min_energy, "max_energy": modes.max_energy,
        "imaginary_fraction": modes.imaginary_fraction,
        "has_imaginary": bool(modes.has_imaginary),
        "above_max_energy": bool(modes.max_energy > config.max_energy_flag),
        "contains_h": bool("H" in prim.symbols),
        "has_born": bool("BORN" in files),
        "elements": np.array(ing.elements, dtype="U3"),
        "element_n_atoms": np.asarray(ing.n_atoms, dtype=float),
        "element_mass": np.asarray(ing.masses, dtype=float),
        "element_xs": np.asarray(ing.cross_sections, dtype=float),
        "dos_axes": np.asarray(ing.dos_axes[:, :, :top], dtype=np.float32),
        "msd_0K": mean_square_displacement(ing, 0.0),
        "msd_300K": mean_square_displacement(ing, 300.0),
        "principal_msd_0K": principal_mean_square_displacements(ing, 0.0),
        "vision": np.asarray(vision.values, dtype=np.float32),
    }
    for key, value in (extra or {}).items():
        rec.setdefault(key, value)
    return rec


def ingredients_from_record(record, config=BuildConfig()):
    """The engine's ingredients rebuilt from a stored record (float64)."""
    from insnet_core.incoherent import IncoherentIngredients

    if record.get("status") != "ok":
        raise InsnetError(f"{record.get('material_id')}: no ingredients, the record failed "
                          f"({record.get('reason')})")
    if "dos_axes" not in record:
        raise InsnetError(f"{record.get('material_id')}: record of an older database format "
                          f"(isotropic DOS only); rebuild the database with "
                          f"'insnet dataset build' (format {RECORD_FORMAT})")
    elements = [str(e) for e in record["elements"]]
    dos_axes = np.asarray(record["dos_axes"], dtype=np.float64)
    return IncoherentIngredients(
        group_labels=list(elements), elements=list(elements),
        n_atoms=np.asarray(record["element_n_atoms"], dtype=float),
        masses=np.asarray(record["element_mass"], dtype=float),
        cross_sections=np.asarray(record["element_xs"], dtype=float),
        bin_width=float(config.bin_width),
        dos=dos_axes.mean(axis=1), dos_axes=dos_axes)


def regenerate(record, target="map", config=BuildConfig(), temperature=0.0, **settings):
    """Regenerate a spectrum of a stored crystal from its ingredients.

    This is THE documented way to obtain the reference work's targets:

    * ``target="map"``: the 300 x 300 Ideal2D map (0-15 1/A x 0-150 meV, 1.5 meV
      FWHM) at ``temperature`` (default 0 K), orders ``config.orders``;
      the fundamentals use the element's principal-axis DOS (axes of the
      Debye-Waller tensor at ``config.temperature``), exact at that temperature;
    * ``target="vision"``: VISION banks + average, 10-1200 cm^-1 in 10 cm^-1 bins;
    * any instrument name with its settings (e.g. ``target="SEQUOIA", ei=160``).

    Returns
    -------
    insnet_core.spectrum.Spectrum
    """
    from insnet_core.simulate import Settings, simulate_ingredients

    name = {"map": "Ideal2D", "vision": "VISION"}.get(target, target)
    ing = ingredients_from_record(record, config)
    settings_obj = Settings.check(name, orders=config.orders, temperature=temperature, **settings)
    spectrum = simulate_ingredients(ing, settings_obj).total
    spectrum.metadata.update({"material_id": record["material_id"],
                              "formula": record.get("formula", "")})
    return spectrum
