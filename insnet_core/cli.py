"""Command-line interface: ``insnet simulate ...``.

Every user error (bad file, bad setting) is reported as one line
``insnet: error: <message>`` with exit status 2 and no traceback; no output
file is written unless the whole calculation succeeded.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from insnet_core import InputError, InsnetError, __version__
from insnet_core.defaults import DEFAULT_ORDERS, DEFAULT_TEMPERATURE_K, VISION_ROUTES

__all__ = ["main", "build_parser"]

_WRITERS = {".nxs": "nexus", ".csv": "csv"}


def build_parser():
    parser = argparse.ArgumentParser(
        prog="insnet",
        description="Inelastic neutron scattering spectra from crystal structures.")
    parser.add_argument("--version", action="version", version=f"insnet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser(
        "simulate", help="physics route: force constants -> instrument spectrum",
        description=("Compute the incoherent INS spectrum (one-phonon + multiphonon, "
                     "Debye-Waller, Bose factor) of a crystal from phonopy force constants "
                     "and write it as a Mantid processed-NeXus (.nxs) or CSV file."))
    sim.add_argument("source", help="phonondb folder (POSCAR-unitcell, phonopy.conf, FORCE_SETS"
                                    "[, BORN]) or a phonopy.yaml; with --potential a CIF or "
                                    "POSCAR file")
    _add_spectrum_options(sim)
    _add_route_options(sim, required=False)
    mesh = sim.add_mutually_exclusive_group()
    mesh.add_argument("--mesh", type=int, nargs=3, default=None, metavar="N",
                      help="explicit Gamma-centred q-point mesh, e.g. --mesh 20 20 20")
    mesh.add_argument("--mesh-spacing", type=float, default=None, metavar="DQ",
                      help="q-point spacing bound in 1/A, used alone (0.1 = the reference "
                           "work's mesh); default: spacing < 0.1 1/A and at least "
                           "4e6/n_atoms^3 q-points, whichever is denser")
    sim.add_argument("--isotropic", action="store_true",
                     help="isotropic Debye-Waller factor for the fundamentals too (default: "
                          "each site's full tensor, exact powder average), for comparisons")
    sim.add_argument("--elastic", action="store_true", help="include the elastic line")

    _add_subtract_parser(sub)
    _add_train_parser(sub)
    _add_predict_parser(sub)
    _add_evaluate_parser(sub)
    _add_ensemble_parser(sub)
    _add_neighbours_parser(sub)
    _add_serve_parser(sub)
    _add_phonons_parser(sub)
    _add_maps_parser(sub)

    ds = sub.add_parser("dataset", help="the INS training database built from phonondb")
    dsub = ds.add_subparsers(dest="dataset_command", required=True)
    b = dsub.add_parser("build", help="build or resume the database (dask)",
                        description="Compute every crystal of a phonondb folder and store "
                                    "ingredients, targets and flags, one HDF5 file per shard.")
    b.add_argument("--source", required=True, help="phonondb folder (index.csv + *.tar.xz)")
    b.add_argument("--out", required=True, help="database folder")
    b.add_argument("--workers", type=int, default=2,
                   help="LocalCluster worker processes (0 = no dask, in-process)")
    b.add_argument("--scheduler", default=None, help="address of an existing dask scheduler")
    b.add_argument("--limit", type=int, default=None, help="only the first N crystals")
    b.add_argument("--only", default=None, help="comma-separated material ids")
    b.add_argument("--resume", action="store_true", help="continue a build; skip finished "
                                                         "crystals")
    b.add_argument("--consolidate-every", type=int, default=50,
                   help="merge staged records into the shard file every N records")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    show = dsub.add_parser("show", help="plot one crystal's VISION spectrum and map (PNG)")
    show.add_argument("material_id")
    show.add_argument("--db", required=True, help="database folder")
    show.add_argument("-o", "--output", required=True, help="PNG file")
    cmp_ = dsub.add_parser("compare", help="how much the VISION targets of two builds differ "
                                          "(1 - cosine), by class")
    cmp_.add_argument("old", help="database folder (any format)")
    cmp_.add_argument("new", help="database folder (any format)")
    cmp_.add_argument("--threshold", type=float, default=0.01,
                      help="count crystals whose 1 - cosine exceeds this (default 0.01)")
    info = dsub.add_parser("info", help="counts, flags and failures of a database")
    info.add_argument("--db", required=True, help="database folder")
    info.add_argument("--card", default=None, help="also write the data card (Markdown) here")
    info.add_argument("--source", default=None, help="phonondb folder (for the planned count)")
    info.add_argument("--compare-with", default=None, metavar="OLD_DB",
                      help="with --card: add how the VISION targets changed from this "
                           "earlier build (any format)")
    return parser


def _add_spectrum_options(p):
    """Instrument, temperature, orders, bins and output options of simulate and predict."""
    p.add_argument("--instrument", default="VISION",
                     help="VISION (1D, banks), SEQUOIA (|Q|-E map, needs --ei) or ideal2d "
                          "(0-15 1/A x 0-150 meV, 1.5 meV FWHM); default VISION")
    p.add_argument("--ei", type=float, default=None, help="SEQUOIA incident energy, meV")
    p.add_argument("--chopper-package", default=None, help="SEQUOIA Fermi chopper package")
    p.add_argument("--chopper-frequency", type=float, default=None,
                     help="SEQUOIA Fermi chopper frequency, Hz")
    p.add_argument("--final-energy", type=float, default=None,
                     help="VISION final energy, meV (default 3.5; OCLIMAX uses 32 cm-1 = "
                          "3.97 meV)")
    p.add_argument("--bank-angles", default=None, metavar="DEG[,DEG...]",
                     help="VISION analyser bank scattering angles, degrees (default 135,45)")
    p.add_argument("--resolution-poly", default=None, metavar="A,B,C",
                     help="VISION resolution as FWHM = A + B*E + C*E^2 in cm-1 instead of the "
                          "propagated instrument model; 2.5,0.005,1e-7 reproduces OCLIMAX")
    p.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE_K,
                     help=f"sample temperature, K (default {DEFAULT_TEMPERATURE_K:g})")
    p.add_argument("--orders", default=DEFAULT_ORDERS,
                     help="highest phonon order, 1..10 (1 = fundamentals only), or auto "
                          "(default): up to 10, stopping where the next order carries < 0.1 %% "
                          "of the intensity in the output bins")
    p.add_argument("--bins", "--ebins", dest="ebins", default=None,
                     help="energy bins, Rebin style 'start,step,end' (negative step = "
                          "logarithmic); units from --bin-unit. Write --bins=-80,0.5,150 "
                          "when the start is negative")
    p.add_argument("--bin-unit", default=None, choices=["meV", "cm-1"],
                     help="unit of --bins (default: cm-1 for VISION, meV otherwise)")
    p.add_argument("--qbins", default=None, help="|Q| bins for maps, 'start,step,end' in 1/A")
    p.add_argument("--match", default=None, metavar="REDUCED.nxs",
                     help="take the energy (and, for maps, |Q|) bin edges from a reduced "
                          "Mantid file (processed NeXus or NXSPE) and give the result exactly "
                          "those edges and its energy unit; excludes --bins/--qbins")
    p.add_argument("--contributions", choices=["total", "element", "order"], default="total",
                     help="also write partial spectra by element or by phonon order "
                          "(extra files named <output>_<part>.<ext>)")
    p.add_argument("-o", "--output", required=True, help="output file: .nxs or .csv")
    p.add_argument("--plot", default=None, help="also write a PNG plot here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_route_options(p, required):
    """Options of the uMLIP route (simulate --potential, phonons)."""
    from insnet_core.umlip import DEFAULT_POTENTIAL, POTENTIALS, RELAX_MODES, RouteSettings
    d = RouteSettings()
    g = p.add_argument_group("uMLIP route (force constants from a universal ML potential)")
    g.add_argument("--potential", default=DEFAULT_POTENTIAL if required else None,
                   choices=list(POTENTIALS),
                   help="relax the structure and compute force constants with this potential "
                        + (f"(default {DEFAULT_POTENTIAL})" if required else
                           "(the source is then a CIF/POSCAR file)"))
    g.add_argument("--relax", choices=RELAX_MODES, default=d.relax,
                   help="atoms: atoms only, in the input cell (default); cell: cell and "
                        "atoms, space group kept; none: the input structure as it is")
    g.add_argument("--fmax", type=float, default=d.fmax,
                   help=f"relaxation converged below this force, eV/A (default {d.fmax:g})")
    g.add_argument("--max-steps", type=int, default=d.max_steps,
                   help=f"most relaxation steps (default {d.max_steps})")
    g.add_argument("--supercell-length", type=float, default=d.supercell_length,
                   help="smallest supercell width, A (default "
                        f"{d.supercell_length:g})")
    g.add_argument("--displacement", type=float, default=d.displacement,
                   help=f"finite displacement, A (default {d.displacement:g})")
    g.add_argument("--frequency-scale", type=float, default=None,
                   help="multiply all frequencies by this (default: the potential's "
                        "softening correction, docs/umlip.md)")
    g.add_argument("--max-supercell-atoms", type=int, default=d.max_supercell_atoms,
                   help=f"largest supercell the potential runs on (default "
                        f"{d.max_supercell_atoms})")
    g.add_argument("--allow-unconverged", action="store_true",
                   help="go on (with a warning) when the relaxation does not converge")
    g.add_argument("--allow-symmetry-change", action="store_true",
                   help="go on (with a warning) when the relaxation changes the space group")
    g.add_argument("--cache-dir", default=None,
                   help="where force constants are kept (default $INSNET_CACHE_DIR/umlip or "
                        "~/.cache/insnet/umlip)")
    g.add_argument("--no-cache", action="store_true", help="recompute even when cached")


def _route_settings(args):
    from insnet_core.umlip import RouteSettings, check_settings
    return check_settings(RouteSettings(
        potential=args.potential, relax=args.relax, fmax=args.fmax, max_steps=args.max_steps,
        supercell_length=args.supercell_length, displacement=args.displacement,
        frequency_scale=args.frequency_scale, max_supercell_atoms=args.max_supercell_atoms,
        allow_unconverged=args.allow_unconverged,
        allow_symmetry_change=args.allow_symmetry_change))


def _add_phonons_parser(sub):
    ph = sub.add_parser(
        "phonons", help="uMLIP route: structure -> relaxed cell and force constants "
                        "(phonopy_params.yaml)",
        description=("Relax a crystal with a universal ML potential (space group kept), compute "
                     "its force sets in a phonopy supercell and write phonopy_params.yaml, "
                     "which insnet simulate and PredictINSFromCIF's ForceConstantsFile read."))
    ph.add_argument("structure", help="CIF or POSCAR file")
    _add_route_options(ph, required=True)
    ph.add_argument("-o", "--output", required=True, help="phonopy_params.yaml to write")
    ph.add_argument("--quiet", action="store_true", help="no progress bar")


def _progress_bar(args, name):
    """(progress callback, close) with a tqdm bar on stderr unless --quiet."""
    if args.quiet:
        return (lambda fraction, message: None), (lambda: None)
    from tqdm import tqdm
    bar = tqdm(total=100, desc=name, unit="%", file=sys.stderr, disable=None,
               bar_format="{l_bar}{bar}| {elapsed}<{remaining} {postfix}")

    def progress(fraction, message):
        bar.set_postfix_str(message)
        bar.update(max(0, int(round(100 * fraction)) - bar.n))
    return progress, bar.close


def _print_route(route):
    r = route.report
    relax = r["relaxation"]
    print(f"{r['potential']} {r['potential_version']}: relaxation ({relax['mode']}) "
          f"{relax['steps']} steps, residual force {relax['residual_force']:.3g} eV/A, "
          f"space group {relax['spacegroup_before']} -> {relax['spacegroup_after']}, volume "
          f"{relax['volume_change_percent']:+.2f} %; supercell {'x'.join(map(str, r['supercell']))}"
          f" ({r['displacements']} displacements)" + (" [cached]" if route.cached else ""),
          file=sys.stderr)
    for w in r["warnings"]:
        print(f"insnet: warning: {w}", file=sys.stderr)
    if r["imaginary_at_gamma"]:
        print(f"insnet: warning: imaginary modes at Gamma (lowest optical "
              f"{r['gamma_lowest_optical_meV']:.2f} meV)", file=sys.stderr)


def run_phonons(args):
    import shutil

    from insnet_core.structure import read_structure
    from insnet_core.umlip import run_route
    output = Path(args.output)
    if output.suffix not in (".yaml", ".yml"):
        raise InputError(f"{output}: the output must be a .yaml file (phonopy_params.yaml)")
    if not output.parent.is_dir():
        raise InputError(f"{output.parent}: no such folder for the output")
    settings = _route_settings(args)
    structure = read_structure(args.structure)
    progress, close = _progress_bar(args, "insnet phonons")
    try:
        route = run_route(structure, settings, cache_dir=args.cache_dir,
                          use_cache=not args.no_cache, progress=progress)
    finally:
        close()
    _print_route(route)
    shutil.copyfile(route.params_file, output)
    print(f"wrote {output}")
    return 0


def _add_predict_parser(sub):
    pr = sub.add_parser(
        "predict", help="ML route: crystal structure (CIF/POSCAR) -> instrument spectrum",
        description=("Predict the INS spectrum of a crystal from its structure alone: a trained "
                     "model predicts each element's partial phonon DOS and the physics engine "
                     "turns it into the instrument's spectrum (errors: the ensemble's spread). "
                     "Several files or a folder of them make a batch; -o is then a folder."))
    pr.add_argument("structures", nargs="+", help="CIF or POSCAR files, or folders of them")
    pr.add_argument("--model", default=None,
                    help="model name in models/ or a model folder (default: the shipped default)")
    pr.add_argument("--vision-route", choices=VISION_ROUTES, default=None,
                    help="VISION from the engine on the predicted partial DOS, from the "
                         "network's VISION head, or the head blended with the nearest "
                         "database crystals' spectra (default: the model card's choice)")
    pr.add_argument("--route", dest="map_route", choices=("partials", "ae"), default=None,
                    help="maps (SEQUOIA, ideal2d): the engine on the predicted partial DOS, or "
                         "the autoencoder route (latent heads + ONNX decoder; total only). "
                         "Default: the better one measured (partials)")
    pr.add_argument("--max-atoms", type=int, default=None,
                    help="largest cell accepted (default 500; the model's own limit is 1000 "
                         "unless this is larger)")
    pr.add_argument("--workers", type=int, default=0,
                    help="batches: dask worker processes (default 0: in this process)")
    pr.add_argument("--scheduler", default=None,
                    help="batches: address of a running dask scheduler (overrides --workers)")
    pr.add_argument("--chunk-size", type=int, default=16,
                    help="batches: structures per network batch / dask task")
    _add_spectrum_options(pr)


def _add_train_parser(sub):
    t = sub.add_parser("train", help="train a predictor on the INS database (torch)",
                       description="Train an e3nn predictor; checkpoints every few minutes, "
                                   "--resume continues, early stopping on the validation part.")
    t.add_argument("--db", required=True, help="database folder")
    t.add_argument("--out", required=True, help="run / model folder (models/NAME)")
    t.add_argument("--kind", choices=("insnet", "reference"), default="insnet",
                   help="insnet: VISION + partial-DOS heads; reference: the reference work's "
                        "architecture and settings (VISION only)")
    t.add_argument("--heads", default=None,
                   help="comma-separated heads of the insnet kind (vision,dos)")
    for name, typ, default, text in (
            ("--em-dim", int, 64, "element embedding size"),
            ("--mul", int, 32, "channels per irrep"), ("--lmax", int, 1, "highest l"),
            ("--layers", int, 2, "gated convolutions"),
            ("--radial-neurons", int, 100, "radial MLP width"),
            ("--out-dim", int, 64, "final scalars per atom (insnet kind)"),
            ("--epochs", int, 200, "most epochs"), ("--batch-size", int, 16, "crystals per batch"),
            ("--lr", float, 0.005, "AdamW learning rate"),
            ("--weight-decay", float, 0.05, "AdamW weight decay"),
            ("--gamma", float, 0.96, "learning rate factor per epoch"),
            ("--patience", int, 12, "early stopping: epochs without a better validation loss"),
            ("--seed", int, 0, "initialisation and batch order seed"),
            ("--checkpoint-minutes", float, 5.0, "checkpoint interval"),
            ("--max-hours", float, 0.0, "stop resumably after this long (0: no limit)"),
            ("--max-train", int, 0, "only the first N training crystals (0: all)"),
            ("--threads", int, 0, "torch threads (0: default)")):
        t.add_argument(name, type=typ, default=default, help=f"{text} (default {default})")
    t.add_argument("--unstable", choices=("keep", "downweight", "drop"), default="keep",
                   help="crystals with modes below -1 THz: keep, weight 0.3, or drop")
    t.add_argument("--vision-loss", choices=("mse", "rmse"), default="mse",
                   help="VISION head loss per crystal: squared error, or its root (aims at "
                        "the median crystal)")
    t.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu",
                   help="where to train: cpu (default), cuda, or auto (cuda when torch sees a "
                        "GPU); checkpoints and weights are written the same either way")
    t.add_argument("--init", default="",
                   help="start from this trained model folder's weights (fine-tuning)")
    t.add_argument("--graph-cache", default=None, help="folder for the cached graphs")
    t.add_argument("--resume", action="store_true", help="continue the run in --out")
    t.add_argument("--compact", action="store_true",
                   help="checkpoints without optimiser moments (smaller, for committing)")
    t.add_argument("--average-weights", action="store_true",
                   help="the model is the mean of the weights at the end of every epoch "
                        "(weight averaging; for fine-tuning with --init and --gamma 1)")


def run_train(args):
    try:
        from insnet_core.nn.model import ModelConfig
        from insnet_core.nn.train import TrainSettings, train
    except ImportError as exc:
        raise InsnetError(f"training needs the ML extra (pip install 'insnet[ml]'): {exc}") \
            from None
    from insnet_core.dataset.reader import Database

    heads = (("vision",) if args.kind == "reference" else
             tuple(h.strip() for h in (args.heads or "vision,dos").split(",") if h.strip()))
    try:
        config = ModelConfig(kind=args.kind, heads=heads, em_dim=args.em_dim, mul=args.mul,
                             lmax=args.lmax, layers=args.layers,
                             radial_neurons=args.radial_neurons, out_dim=args.out_dim)
    except ValueError as exc:
        raise InputError(f"model settings: {exc}") from None
    settings = TrainSettings(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                             weight_decay=args.weight_decay, gamma=args.gamma,
                             patience=args.patience, seed=args.seed,
                             checkpoint_minutes=args.checkpoint_minutes, unstable=args.unstable,
                             max_train=args.max_train, max_hours=args.max_hours,
                             threads=args.threads, compact=args.compact,
                             vision_loss=args.vision_loss, init=args.init,
                             device=args.device, average_weights=args.average_weights)
    card = train(Database(args.db), args.out, config, settings, resume=args.resume,
                 graph_cache=args.graph_cache, log=lambda m: print(m, flush=True))
    if card is not None:
        print(f"wrote model {args.out} ({card['training']['weights']})")
    return 0


def _check_output(path, what):
    path = Path(path)
    if not path.parent.exists():
        raise InsnetError(f"{what} {path}: folder {path.parent} does not exist")
    return path


def _write(spectrum, path):
    from insnet_core.io.nexus import save_nexus_processed
    from insnet_core.io.text import save_csv
    kind = _WRITERS[path.suffix.lower()]
    if kind == "nexus":
        save_nexus_processed(spectrum, path, workspace_name=path.stem)
    else:
        save_csv(spectrum, path)


def _match_binning(args, instrument):
    """Bin edges (meV, 1/A or None) and energy unit of the file given to --match."""
    from insnet_core.instruments import INSTRUMENTS
    from insnet_core.io.nexus import read_binning
    if args.ebins is not None or args.qbins is not None:
        raise InsnetError("--match takes the bins from the file; do not combine it with "
                          "--bins or --qbins")
    energy_edges, q_edges, unit = read_binning(args.match)
    cls = {name.lower(): c for name, c in INSTRUMENTS.items()}.get(str(instrument).lower())
    if cls is not None and q_edges is not None and not cls.is_map:
        raise InsnetError(f"--match {args.match}: the file is a |Q|-E map but {cls.name} "
                          "gives 1D spectra; use SEQUOIA or ideal2d, or a 1D file")
    if cls is not None and not cls.is_map:
        q_edges = None
    return energy_edges, q_edges, unit


def _onto_edges(result, energy_edges, q_edges, display_unit, source):
    """The result rebinned (flux conserving) onto exactly these edges, shown in display_unit."""
    from insnet_core.predict import rebin_result
    moved = rebin_result(result, energy_edges, q_edges)
    for spec in [moved.total, *moved.by_element.values(), *moved.by_order.values()]:
        spec.display_energy_unit = display_unit
        spec.metadata["binning_matched_to"] = str(source)
    return moved


def _check_outputs(args):
    """The checked ``-o`` (.nxs or .csv) and optional ``--plot`` (.png) paths."""
    output = _check_output(args.output, "output file")
    if output.suffix.lower() not in _WRITERS:
        raise InsnetError(f"output file {output}: unknown extension {output.suffix!r}; "
                          "use .nxs (Mantid processed NeXus) or .csv")
    plot = _check_output(args.plot, "plot file") if args.plot else None
    if plot is not None and plot.suffix.lower() != ".png":
        raise InsnetError(f"plot file {plot}: must end in .png")
    return output, plot


def _spectrum_request(args):
    """Instrument settings, energy and |Q| edges and display unit from the shared options."""
    from insnet_core.binning import energy_edges_from_params, rebin_edges

    instrument = args.instrument
    settings = {}
    for key in ("ei", "chopper_package", "chopper_frequency", "final_energy", "bank_angles",
                "resolution_poly"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    energy_edges = None
    if args.ebins is not None:
        unit = args.bin_unit or ("cm-1" if str(instrument).lower() == "vision" else "meV")
        energy_edges = energy_edges_from_params(args.ebins, unit, "--bins")
    q_edges = rebin_edges(args.qbins, "--qbins") if args.qbins is not None else None
    display_unit = None
    if args.match is not None:
        energy_edges, q_edges, display_unit = _match_binning(args, instrument)
    return settings, energy_edges, q_edges, display_unit


_STRUCTURE_PATTERNS = ("*.cif", "*.CIF", "POSCAR*", "*.vasp", "*.poscar")


def _structure_files(items):
    files = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted({f for pat in _STRUCTURE_PATTERNS for f in p.glob(pat) if f.is_file()})
            if not found:
                raise InputError(f"{p}: folder holds no CIF or POSCAR file")
            files.extend(found)
        else:
            files.append(p)  # read_structure reports a missing file by name
    return files


def _write_outputs(result, output, plot, contributions):
    _write(result.total, output)
    written = [output]
    if contributions != "total":
        parts = result.by_element if contributions == "element" else result.by_order
        if not parts:
            raise InsnetError(f"--contributions {contributions}: this result has the total "
                              "only (the AE map route); use --route partials for contributions")
        for key, spectrum in parts.items():
            path = output.with_name(f"{output.stem}_{contributions}_{key}{output.suffix}")
            _write(spectrum, path)
            written.append(path)
    if plot is not None:
        from insnet_core.plotting import plot_spectrum
        plot_spectrum(result.total, plot)
        written.append(plot)
    return written


def run_predict(args):
    from insnet_core.predict import predict

    files = _structure_files(args.structures)
    batch = len(files) > 1
    if batch:
        out_dir = Path(args.output)
        if out_dir.suffix.lower() in _WRITERS or not (out_dir.is_dir() or out_dir.parent.is_dir()):
            raise InsnetError(f"output {out_dir}: with {len(files)} structures -o must be a "
                              "folder (one <name>.nxs per structure)")
        out_dir.mkdir(exist_ok=True)
        plot_dir = Path(args.plot) if args.plot else None
        if plot_dir is not None:
            plot_dir.mkdir(exist_ok=True)
        jobs = [(f, out_dir / f"{f.stem}.nxs",
                 plot_dir / f"{f.stem}.png" if plot_dir is not None else None) for f in files]
    else:
        output, plot = _check_outputs(args)
        jobs = [(files[0], output, plot)]
    settings, energy_edges, q_edges, display_unit = _spectrum_request(args)
    options = dict(method="ML", model=args.model, instrument=args.instrument,
                   temperature=args.temperature, energy_edges=energy_edges, q_edges=q_edges,
                   display_energy_unit=display_unit, orders=args.orders,
                   max_atoms=args.max_atoms, map_route=args.map_route, **settings)

    def finish(result, output, plot):
        if args.match is not None:
            result = _onto_edges(result, energy_edges, q_edges, display_unit, args.match)
        for w in str(result.total.metadata.get("warnings", "")).split(" | "):
            if w:
                print(f"insnet: warning: {w}", file=sys.stderr)
        for path in _write_outputs(result, output, plot, args.contributions):
            print(f"wrote {path}")

    if not batch:
        structure_file, output, plot = jobs[0]
        finish(predict(structure_file, vision_route=args.vision_route, **options), output,
               plot)
        return 0
    from insnet_core.batch import predict_batch
    targets = {str(f): (o, p) for f, o, p in jobs}
    bar = None
    if not args.quiet:
        from tqdm import tqdm
        bar = tqdm(total=len(jobs), desc="insnet predict", unit="crystal", file=sys.stderr,
                   disable=None)
    failures = 0
    try:
        for chunk in predict_batch([f for f, _, _ in jobs], options, args.vision_route,
                                   workers=args.workers, scheduler=args.scheduler,
                                   chunk_size=args.chunk_size):
            for structure_file, result, error in chunk:
                if error is not None:
                    failures += 1
                    print(f"insnet: error: {structure_file}: {error}", file=sys.stderr)
                else:
                    finish(result, *targets[structure_file])
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    if failures:
        print(f"insnet: {failures} of {len(jobs)} structures failed", file=sys.stderr)
        return 2 if failures == len(jobs) else 1
    return 0


def _add_evaluate_parser(sub):
    ev = sub.add_parser("evaluate", help="metrics of models and baselines on the test split",
                        description="One run: every model's routes, the mean training spectrum "
                                    "and the true-DOS ceiling on the same crystals.")
    ev.add_argument("--db", required=True, help="database folder")
    ev.add_argument("--models", nargs="+", required=True, help="model folders")
    ev.add_argument("--part", default="test", choices=("train", "validation", "test"))
    ev.add_argument("--limit", type=int, default=0, help="only the first N crystals (0: all)")
    ev.add_argument("--graph-cache", default=None, help="folder for the cached graphs")
    ev.add_argument("--json", default=None, help="write per-crystal metrics and the summary")
    ev.add_argument("--markdown", default=None, help="write the summary table (Markdown)")
    ev.add_argument("--write-cards", action="store_true",
                    help="store the summary in each model's card.json (test_metrics) and choose "
                         "its default VISION route (lower median MSE)")


def _add_neighbours_parser(sub):
    nb = sub.add_parser("neighbours",
                        help="nearest-database-crystal data of a model (VISION route "
                             "'neighbours')",
                        description="Stores the database crystals' network features and "
                                    "spectra in MODEL/neighbours.npz and fits the blend of the "
                                    "VISION head with the nearest crystals' spectra on the "
                                    "validation split, each validation crystal searched among "
                                    "the others (insnet_core.nn.neighbours).")
    nb.add_argument("--db", required=True, help="database folder")
    nb.add_argument("--model", required=True, help="model folder")
    nb.add_argument("--graph-cache", default=None, help="folder for the cached graphs")
    nb.add_argument("--pool", default="all", choices=["all", "train+validation", "train"],
                    help="parts of the split the set holds (default all: every reference "
                         "spectrum; fitting and evaluation leave each crystal out of its own "
                         "search)")
    nb.add_argument("--default", action="store_true",
                    help="make 'neighbours' the card's default VISION route when its validation "
                         "median MSE is below the head's")


def run_neighbours(args):
    from insnet_core.dataset.reader import Database
    from insnet_core.nn.card import read_card, write_card
    from insnet_core.nn.neighbours import build
    card = build(Database(args.db), args.model, graph_cache=args.graph_cache,
                 log=lambda m: print(m, flush=True), pool=args.pool)
    med = {r: v["mse_median"] for r, v in card["neighbours"]["validation_medians"].items()}
    if args.default and med["neighbours"] < med["head"]:
        card = read_card(args.model)
        card["default_vision_route"] = "neighbours"
        card["default_vision_route_reason"] = (
            f"median MSE on the validation split: neighbours {med['neighbours']:.4f}, head "
            f"{med['head']:.4f} (test split: test_metrics); maps and other instruments always "
            "use the partials route")
        card.pop("format_version", None)
        write_card(args.model, card)
        print(f"{args.model}: default VISION route 'neighbours'")
    return 0


def _add_ensemble_parser(sub):
    en = sub.add_parser("ensemble", help="one model folder from several finished training runs",
                        description="Members must share model settings, elements and database; "
                                    "their spread becomes the predictions' errors.")
    en.add_argument("runs", nargs="+", help="finished run folders (card.json + weights)")
    en.add_argument("--out", required=True, help="new model folder")


def _add_serve_parser(sub):
    sv = sub.add_parser("serve", help="the analysis-server page: upload a CIF, see and "
                                      "download the predicted spectra",
                        description="A web page and JSON API (OpenAPI at /openapi.json) on "
                                    "the default ML model; everything it needs is served by "
                                    "itself (works offline).")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on")
    sv.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    sv.add_argument("--model", default=None, help="default model (a models/ folder name)")
    sv.add_argument("--max-upload-kb", type=int, default=1024,
                    help="largest upload, KiB (at most 1024)")
    sv.add_argument("--max-atoms", type=int, default=500, help="largest cell, atoms")
    sv.add_argument("--timeout", type=float, default=60.0, help="time limit per prediction, s")
    sv.add_argument("--workers", type=int, default=2, help="predictions at the same time")
    sv.add_argument("--queue", type=int, default=8,
                    help="requests that may wait for a worker (more get 503)")


def run_serve(args):
    try:
        import uvicorn

        from insnet_core.server.app import create_app
    except ModuleNotFoundError as exc:
        raise InsnetError(f"insnet serve needs the server extra ({exc.name} is missing): "
                          "pip install 'insnet[server]'") from None
    from insnet_core.server.service import Limits
    limits = Limits(max_upload_bytes=args.max_upload_kb * 1024, max_atoms=args.max_atoms,
                    timeout_s=args.timeout, workers=args.workers, queue=args.queue)
    app = create_app(limits, model=args.model)
    print(f"insnet serve: http://{args.host}:{args.port}/  (Ctrl-C stops)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


def run_ensemble(args):
    from insnet_core.nn.card import assemble_ensemble
    card = assemble_ensemble(args.runs, args.out)
    print(f"wrote {args.out} ({len(card['members'])} members)")
    return 0


def run_evaluate(args):
    from insnet_core.dataset.reader import Database
    from insnet_core.nn.evaluate import evaluate, markdown_table, summarise, write_report

    result = evaluate(Database(args.db), args.models, part=args.part, limit=args.limit,
                      graph_cache=args.graph_cache, log=lambda m: print(m, flush=True))
    table = markdown_table(summarise(result))
    print(table)
    if args.json:
        write_report(result, args.json)
        print(f"wrote {args.json}")
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
        print(f"wrote {args.markdown}")
    if args.write_cards:
        from insnet_core.nn.evaluate import update_cards
        for folder in update_cards(result, args.models):
            print(f"updated {folder}/card.json")
    return 0


def run_simulate(args):
    from insnet_core.simulate import simulate

    output, plot = _check_outputs(args)
    instrument = args.instrument
    settings, energy_edges, q_edges, display_unit = _spectrum_request(args)
    route_settings = _route_settings(args) if args.potential else None
    if route_settings is None:
        _refuse_structure_source(args.source)
    progress, close = _progress_bar(args, "insnet simulate")
    kwargs = dict(instrument=instrument, temperature=args.temperature, orders=args.orders,
                  energy_edges=energy_edges, q_edges=q_edges, isotropic=args.isotropic,
                  include_elastic=args.elastic, mesh=args.mesh, mesh_spacing=args.mesh_spacing,
                  progress=progress, **settings)
    try:
        if route_settings is not None:
            from insnet_core.umlip import simulate_with_potential
            result, route = simulate_with_potential(
                args.source, route_settings, cache_dir=args.cache_dir,
                use_cache=not args.no_cache, **kwargs)
        else:
            result, route = simulate(args.source, **kwargs), None
    finally:
        close()
    if route is not None:
        _print_route(route)
    if args.match is not None:
        result = _onto_edges(result, energy_edges, q_edges, display_unit, args.match)
    if result.stability.get("has_imaginary"):
        print(f"insnet: warning: {result.total.metadata['stability']}", file=sys.stderr)
    written = _write_outputs(result, output, plot, args.contributions)
    for path in written:
        print(f"wrote {path}")
    return 0


def _refuse_structure_source(source):
    """A CIF/POSCAR given to simulate without --potential: say what to do."""
    path = Path(source)
    if path.is_file() and (path.suffix.lower() in (".cif", ".vasp", ".poscar")
                           or path.name.upper().startswith(("POSCAR", "CONTCAR"))):
        raise InputError(f"{source}: a crystal structure, not force constants; add --potential "
                         "chgnet|7net-0 (force constants from a universal ML potential) or use "
                         "insnet predict (the ML route)")


def run_dataset(args):
    if args.dataset_command == "build":
        from insnet_core.dataset.build import build
        only = [x.strip() for x in args.only.split(",") if x.strip()] if args.only else None
        counts = build(args.source, args.out, workers=args.workers, scheduler=args.scheduler,
                       limit=args.limit, only=only, resume=args.resume,
                       consolidate_every=args.consolidate_every, progress=not args.quiet)
        print("planned {planned}, already done {skipped}, computed {computed} "
              "(failed {failed})".format(**counts))
        return 0
    if args.dataset_command == "compare":
        from insnet_core.dataset.compare import compare_targets, format_comparison
        print(format_comparison(compare_targets(args.old, args.new, args.threshold)))
        return 0
    from insnet_core.dataset.reader import Database
    db = Database(args.db)
    if args.dataset_command == "show":
        from insnet_core.dataset.plots import plot_record
        output = _check_output(args.output, "plot file")
        plot_record(db, args.material_id, output)
        print(f"wrote {output}")
        return 0
    ok, failed = db.ids(), db.ids(status="failed")
    unstable = [m for m in ok if db.record(m)["has_imaginary"]]
    print(f"{len(db)} crystals: {len(ok)} computed, {len(failed)} failed, "
          f"{len(unstable)} with imaginary modes")
    for reason, ids in sorted(db.failures().items(), key=lambda kv: -len(kv[1])):
        print(f"  {len(ids):5d} failed: {reason[:100]}")
    if args.card:
        from insnet_core.dataset.card import write_datacard
        comparison = None
        if args.compare_with:
            from insnet_core.dataset.compare import compare_targets, format_comparison
            comparison = format_comparison(compare_targets(args.compare_with, args.db))
        write_datacard(db, args.card, args.source, comparison)
        print(f"wrote {args.card}")
    return 0


# ---------------------------------------------------------------------------
# insnet subtract: phonon-subtracted residual of measured data
# ---------------------------------------------------------------------------
def _add_subtract_parser(sub):
    sb = sub.add_parser(
        "subtract", help="scale a predicted phonon spectrum to measured data and subtract it",
        description=("Fit the scale of the predicted phonon spectrum to a measured |Q|-E map "
                     "(or 1D spectra) where magnetic scattering is negligible, subtract it "
                     "and write the residual with propagated errors (see README, "
                     "SubtractPredictedPhonons)."))
    sb.add_argument("data", help="measured data: Mantid processed NeXus or NXSPE (SofQW map "
                                 "or 1D spectra in energy transfer)")
    src = sb.add_mutually_exclusive_group(required=True)
    src.add_argument("--predicted", default=None, metavar="PRED.nxs",
                     help="a prediction file (rebinned onto the data when its bins differ)")
    src.add_argument("--cif", default=None, metavar="STRUCTURE",
                     help="crystal structure (CIF/POSCAR): predict on the data's own bins")
    sb.add_argument("--force-constants", default=None,
                    help="phonopy force constants for --method Physics (phonopy.yaml or a "
                         "phonondb folder)")
    sb.add_argument("--method", default=None,
                    help="Physics or ML (default: Physics with --force-constants, ML without)")
    sb.add_argument("--model", default=None, help="ML model name")
    sb.add_argument("--instrument", default="SEQUOIA",
                    help="instrument of the prediction: SEQUOIA (default), ideal2d, VISION")
    sb.add_argument("--ei", type=float, default=None,
                    help="SEQUOIA incident energy, meV (default: the data's Ei log)")
    sb.add_argument("--chopper-package", default=None, help="SEQUOIA Fermi chopper package")
    sb.add_argument("--chopper-frequency", type=float, default=None,
                    help="SEQUOIA Fermi chopper frequency, Hz")
    sb.add_argument("--temperature", type=float, default=5.0, help="K (default 5)")
    sb.add_argument("--scale-method", choices=["FitHighQ", "Fixed"], default="FitHighQ")
    sb.add_argument("--scale", type=float, default=1.0, help="scale for --scale-method Fixed")
    sb.add_argument("--scale-error", type=float, default=0.0, help="its error (Fixed)")
    sb.add_argument("--fit-background", action="store_true",
                    help="also fit (and subtract) a flat background")
    sb.add_argument("--weighting", choices=["auto", "data", "poisson"], default="auto",
                    help="fit weights (default auto: poisson unless the data have negative "
                         "bins)")
    sb.add_argument("--fit-q-range", default="4,",
                    help="|Q| range of the fit, 'min,max' in 1/A, a side may be empty "
                         "(default '4,')")
    sb.add_argument("--fit-energy-range", default="",
                    help="energy range of the fit, 'min,max' in meV (default: all)")
    sb.add_argument("--magnetic-q-range", default="0,2",
                    help="|Q| range integrated for the magnetic intensity (default '0,2'); "
                         "written next to the output as <output>_magnetic.<ext> for maps")
    sb.add_argument("-o", "--output", required=True, help="residual: .nxs or .csv")
    sb.add_argument("--plot", default=None,
                    help="PNG: data, scaled prediction, residual and magnetic intensity")


def run_subtract(args):
    """``insnet subtract``: residual = data - (s * prediction + b), written with its fit logs."""
    from insnet_core.io.nexus import load_nexus_processed
    from insnet_core.subtraction import (DEFAULT_FIT_Q_MIN, FitRegion, parse_range,
                                         subtract_prediction)

    output, plot = _check_outputs(args)
    region = FitRegion(q_range=parse_range(args.fit_q_range, "--fit-q-range",
                                           (DEFAULT_FIT_Q_MIN, float("inf"))),
                       energy_range=parse_range(args.fit_energy_range, "--fit-energy-range"))
    magnetic_range = parse_range(args.magnetic_q_range, "--magnetic-q-range", (0.0, 2.0))
    data = load_nexus_processed(args.data)
    if args.predicted is not None:
        pred = load_nexus_processed(args.predicted)
    else:
        from insnet_core.predict import predict
        ei = args.ei if args.ei is not None else data.metadata.get("Ei")
        is_sequoia = str(args.instrument).lower() == "sequoia"
        method = args.method or ("Physics" if args.force_constants else "ML")
        pred = predict(structure_file=args.cif, method=method,
                       force_constants=args.force_constants, model=args.model,
                       instrument=args.instrument, temperature=args.temperature,
                       energy_edges=data.energy_edges,
                       q_edges=data.q_edges if data.is_map else None,
                       display_energy_unit=data.display_energy_unit,
                       ei=ei if is_sequoia else None,
                       chopper_package=args.chopper_package if is_sequoia else None,
                       chopper_frequency=args.chopper_frequency if is_sequoia else None).total
    result = subtract_prediction(data, pred, method=args.scale_method, region=region,
                                 background=args.fit_background, weighting=args.weighting,
                                 scale=args.scale, scale_error=args.scale_error,
                                 magnetic_q_range=magnetic_range if data.is_map else None)
    fit = result.fit
    result.residual.metadata["subtracted_data_file"] = str(args.data)
    _write(result.residual, output)
    written = [output]
    if result.magnetic is not None:
        path = output.with_name(f"{output.stem}_magnetic{output.suffix}")
        _write(result.magnetic, path)
        written.append(path)
    if plot is not None:
        from insnet_core.plotting import plot_subtraction
        plot_subtraction(data, result, plot)
        written.append(plot)
    print(f"scale {fit.scale:.6g} +- {fit.scale_error:.3g}, background {fit.background:.4g} "
          f"+- {fit.background_error:.3g}, chi2/dof {fit.chi2_dof:.4g} over {fit.n_bins} bins "
          f"({fit.region}; weighting {fit.weighting or 'none'}; {fit.n_zero_error} zero-error "
          "bins floored)")
    for path in written:
        print(f"wrote {path}")
    return 0


def _add_maps_parser(sub):
    mp = sub.add_parser("maps", help="the 2D route's data and autoencoders (S(|Q|,E) maps)")
    msub = mp.add_subparsers(dest="maps_command", required=True)
    b = msub.add_parser("build", help="regenerate every database map into a cache (resumable)")
    b.add_argument("--db", required=True, help="database folder")
    b.add_argument("--out", required=True, help="cache folder (about 1.7 GB for 9,534 maps)")
    b.add_argument("--limit", type=int, default=None, help="only the first N crystals")
    b.add_argument("--max-minutes", type=float, default=None,
                   help="stop (resumably) after this long")
    pca = msub.add_parser("pca", help="fit the PCA baseline on the training maps")
    pca.add_argument("--cache", required=True, help="map cache folder")
    pca.add_argument("--out", required=True, help="output .npz")
    pca.add_argument("--components", type=int, default=50)
    pca.add_argument("--max-maps", type=int, default=4000,
                     help="fit on at most this many training maps (seeded subsample)")
    pca.add_argument("--onnx", default=None, metavar="FOLDER",
                     help="also write the PCA as an ONNX coder folder (encoder/decoder + card)")
    pca.add_argument("--storage", choices=("float32", "float16"), default="float16",
                     help="ONNX constants' storage (default float16: half the bytes)")
    ro = msub.add_parser("route", help="train the AE route's latent heads (structure -> "
                                       "latents of a coder) and write the route folder")
    ro.add_argument("--cache", required=True, help="map cache folder")
    ro.add_argument("--db", required=True, help="database folder (the structures)")
    ro.add_argument("--model", default=None, help="predictor model (default: the shipped one)")
    ro.add_argument("--coder", required=True,
                    help="coder folder: an autoencoder's or a PCA's (maps pca --onnx)")
    ro.add_argument("--out", required=True, help="route folder (models/maps/NAME)")
    ro.add_argument("--max-train", type=int, default=None,
                    help="at most this many training crystals (seeded subsample)")
    ro.add_argument("--heads", type=int, default=3, help="latent heads (their spread: errors)")
    ro.add_argument("--threads", type=int, default=None, help="torch threads")
    t = msub.add_parser("train", help="train an autoencoder on the training maps")
    t.add_argument("--cache", required=True, help="map cache folder")
    t.add_argument("--out", required=True, help="run / model folder")
    t.add_argument("--kind", choices=("conv", "dense"), default="conv")
    t.add_argument("--channels", default=None, help="conv stages, e.g. 8,16,32,48,48")
    for flag, typ, default, text in (
            ("--epochs", int, 60, "most epochs"), ("--batch-size", int, 16, "maps per batch"),
            ("--lr", float, 1e-3, "Adam learning rate"), ("--seed", int, 0, "seed"),
            ("--patience", int, 8, "early stopping patience (epochs)"),
            ("--max-hours", float, None, "stop (resumably) after this long"),
            ("--threads", int, None, "torch threads"),
            ("--max-maps", int, None, "train on at most this many maps (seeded subsample)"),
            ("--checkpoint-minutes", float, 5.0, "minutes between checkpoints")):
        t.add_argument(flag, type=typ, default=default, help=text)
    t.add_argument("--resume", action="store_true")
    ev = msub.add_parser("evaluate", help="reconstruction error of autoencoders and PCA on "
                                          "held-out maps (one table)")
    ev.add_argument("--cache", required=True, help="map cache folder")
    ev.add_argument("--models", nargs="*", default=[], help="autoencoder folders (ONNX halves)")
    ev.add_argument("--pca", nargs="*", default=[], help="PCA .npz files")
    ev.add_argument("--part", default="test", choices=("test", "validation", "predictor-test"))
    ev.add_argument("--threads", type=int, default=2, help="onnxruntime threads")
    ev.add_argument("--json", default=None)
    ev.add_argument("--markdown", default=None)
    rt = msub.add_parser("routes", help="end-to-end map routes from the structure on the "
                                        "predictor's test crystals (one table)")
    rt.add_argument("--cache", required=True, help="map cache folder")
    rt.add_argument("--db", required=True, help="database folder (the structures)")
    rt.add_argument("--model", default=None, help="predictor model (default: the shipped one)")
    rt.add_argument("--limit", type=int, default=None, help="only the first N test crystals")
    rt.add_argument("--json", default=None)
    rt.add_argument("--markdown", default=None)
    rt.add_argument("--routes", nargs="*", default=[],
                    help="AE route folders (maps route) to score next to the partials route")
    rt.add_argument("--write-cards", action="store_true",
                    help="write the table and the default map route into each route's card")
    rt.add_argument("--graph-cache", default=None, help="folder for the cached graphs")


def _run_maps_evaluate(args, cache):
    import json as _json

    from insnet_core.nn.mapdata import (PCABaseline, reconstruction_markdown,
                                        reconstruction_table)
    coders = {}
    for path in args.pca:
        pca = PCABaseline.load(path)
        coders[f"PCA-{len(pca.components)} ({Path(path).name})"] = (
            pca.project, pca.decode, pca.nbytes, pca.components.size + pca.mean.size)
    for folder in args.models:
        from insnet_core.nn.autoencoder import read_ae_card
        from insnet_core.nn.onnx_export import OnnxHalf
        card = read_ae_card(folder)
        enc = OnnxHalf(Path(folder) / "encoder.onnx", args.threads)
        dec = OnnxHalf(Path(folder) / "decoder.onnx", args.threads)
        size = sum((Path(folder) / f).stat().st_size for f in ("encoder.onnx", "decoder.onnx"))
        coders[f"{card['name']} ({card['model']['kind']} AE, ONNX)"] = (enc, dec, size,
                                                                         card["parameters"])
    ids = cache.part(args.part)
    rows = reconstruction_table(cache.get(ids), coders, log=lambda m: print(m, flush=True))
    text = reconstruction_markdown(rows)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    if args.json:
        Path(args.json).write_text(_json.dumps({"part": args.part, "ids": ids, "rows": rows}))
    return 0


def _roundtrip(route, maps, chunk=64):
    """The route's coder applied to max-normalised maps (encode, decode, unbrighten)."""
    from insnet_core.nn.mapdata import unbrighten
    for s in range(0, len(maps), chunk):
        yield from unbrighten(route.decoder(route.encode(maps[s:s + chunk])))


def _run_maps_routes(args, cache):
    import json as _json

    import numpy as np

    from insnet_core.dataset.reader import Database
    from insnet_core.nn.map_routes import (mean_map, partials_route_maps, route_markdown,
                                           route_table)
    from insnet_core.predict import load_predictor, resolve_model
    from insnet_core.nn.card import read_card
    db = Database(args.db)
    folder = resolve_model(args.model)
    card = read_card(folder)
    known = set(card["elements"])
    ids = [m for m in cache.part("predictor-test")
           if set(map(str, db.record(m)["species"])) <= known][:args.limit]
    true = cache.get(ids)
    train = cache.part("train")
    mean = mean_map(cache.maps[[cache.index[m] for m in train]])
    partials, seconds = partials_route_maps(db, folder, ids, log=lambda m: print(m, flush=True))
    rows = route_table(true, {f"partials ({folder.name})": partials,
                              f"mean of {len(train)} training maps": mean})
    partials_name = rows[0]["name"]
    recorded = []
    for route_folder in args.routes:
        from insnet_core.nn.map_route import MapRoute, route_maps
        route = MapRoute(route_folder)
        same = card.get("name", folder.name) == route.predictor_name
        predictor = load_predictor(folder if same else resolve_model(route.predictor_name))
        maps, sec = route_maps(db, route, predictor, ids, log=lambda m: print(m, flush=True))
        ceiling = np.stack(list(_roundtrip(route, true)))
        coder = route.card["coder"]
        name = f"AE route {route.name} ({coder['kind']} coder, {coder['bytes'] / 1e6:.1f} MB)"
        rows = route_table(true, {
            name: maps,
            f"{route.name}'s coder on the true map (the route's ceiling)": ceiling}) + rows
        recorded.append((route_folder, name))
        print(f"AE route {route.name}: {sec / max(len(ids), 1) * 1e3:.0f} ms per crystal")
    if args.write_cards:
        from insnet_core.nn.map_route import record_route_table
        command = (f"insnet maps routes --cache {args.cache} --db {args.db} --model "
                   f"{folder.name} --routes {' '.join(map(str, args.routes))}"
                   + (f" --limit {args.limit}" if args.limit else ""))
        for route_folder, name in recorded:
            choice = record_route_table(route_folder, rows, name, partials_name, command)
            print(f"{route_folder}: default map route {choice}")
    text = route_markdown(rows)
    print(text)
    print(f"partials route: {seconds / max(len(ids), 1) * 1e3:.0f} ms per crystal")
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    if args.json:
        Path(args.json).write_text(_json.dumps({"ids": ids, "rows": rows,
                                                "partials_seconds": seconds}))
    return 0


def run_maps(args):
    import numpy as np

    from insnet_core.nn.mapdata import MapCache, build_map_cache
    if args.maps_command == "build":
        from insnet_core.dataset.reader import Database
        db = Database(args.db)
        ids = db.ids()[:args.limit] if args.limit else None
        cache = build_map_cache(db, args.out, ids=ids, log=lambda m: print(m, flush=True),
                                limit_seconds=60 * args.max_minutes if args.max_minutes else None)
        print(f"{int(cache.done.sum())} of {len(cache.ids)} maps in {args.out}")
        return 0
    cache = MapCache(args.cache)

    def subsample(ids, n, seed=0):
        if n and len(ids) > n:
            keep = np.sort(np.random.default_rng(seed).choice(len(ids), n, replace=False))
            ids = [ids[i] for i in keep]
        return ids
    if args.maps_command == "evaluate":
        return _run_maps_evaluate(args, cache)
    if args.maps_command == "routes":
        return _run_maps_routes(args, cache)
    if args.maps_command == "pca":
        from insnet_core.nn.mapdata import PCABaseline
        ids = subsample(cache.part("train"), args.max_maps)
        pca = PCABaseline.fit(cache.get(ids), n=args.components)
        pca.save(args.out)
        print(f"PCA-{args.components} fitted on {len(ids)} training maps -> {args.out} "
              f"({pca.nbytes / 1e6:.1f} MB)")
        if args.onnx:
            from insnet_core.nn.map_route import write_pca_coder
            write_pca_coder(pca, args.onnx, storage=args.storage,
                            fitted_on=f"{len(ids)} training maps")
            print(f"wrote {args.onnx} (ONNX coder, {args.storage})")
        return 0
    if args.maps_command == "route":
        from insnet_core.dataset.reader import Database
        from insnet_core.nn.map_route import fit_route
        from insnet_core.predict import resolve_model
        if args.threads:
            import torch
            torch.set_num_threads(args.threads)
        card = fit_route(Database(args.db), cache, resolve_model(args.model), args.coder,
                         args.out, max_train=args.max_train, heads=args.heads,
                         log=lambda m: print(m, flush=True))
        print(f"wrote {args.out} (errors: heads' spread x {card['sigma_scale']:.3g})")
        return 0
    if args.maps_command == "train":
        from insnet_core.nn.autoencoder import AEConfig, AETrainSettings, train_autoencoder
        cfg = {"kind": args.kind}
        if args.channels:
            cfg["channels"] = tuple(int(c) for c in args.channels.split(","))
        train_ids = subsample(cache.part("train"), args.max_maps, args.seed)
        val_ids = cache.part("validation")
        info = {"database_sha256": cache.meta["database_sha256"],
                "split": {"train": len(train_ids), "validation": len(val_ids),
                          "rule": "insnet_core.nn.mapdata.ae_part (94/5/1 of the crystals "
                                  "outside the predictor's test part)"}}
        card = train_autoencoder(
            cache.get(train_ids).astype(np.float16), cache.get(val_ids), args.out,
            AEConfig(**cfg), AETrainSettings(epochs=args.epochs, batch_size=args.batch_size,
                                             lr=args.lr, seed=args.seed, patience=args.patience,
                                             max_hours=args.max_hours, threads=args.threads,
                                             checkpoint_minutes=args.checkpoint_minutes),
            resume=args.resume, log=lambda m: print(m, flush=True), info=info)
        if card is not None:
            from insnet_core.nn.autoencoder import load_autoencoder
            from insnet_core.nn.onnx_export import OPSET, export_autoencoder
            model, card = load_autoencoder(args.out)
            export_autoencoder(model, args.out)
            from insnet_core.nn.autoencoder import write_ae_card
            write_ae_card(args.out, dict(card, onnx={"opset": OPSET, "encoder": "encoder.onnx",
                                                     "decoder": "decoder.onnx"}))
            print(f"wrote {args.out} (best epoch {card['training']['best_epoch']})")
        return 0
    return 2


def main(argv=None):
    """Entry point of the ``insnet`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="insnet: %(levelname)s: %(message)s")
    try:
        if args.command == "simulate":
            return run_simulate(args)
        if args.command == "dataset":
            return run_dataset(args)
        if args.command == "subtract":
            return run_subtract(args)
        if args.command == "train":
            return run_train(args)
        if args.command == "predict":
            return run_predict(args)
        if args.command == "evaluate":
            return run_evaluate(args)
        if args.command == "ensemble":
            return run_ensemble(args)
        if args.command == "neighbours":
            return run_neighbours(args)
        if args.command == "serve":
            return run_serve(args)
        if args.command == "phonons":
            return run_phonons(args)
        if args.command == "maps":
            return run_maps(args)
    except InsnetError as exc:
        print(f"insnet: error: {exc}", file=sys.stderr)
        return 2
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
