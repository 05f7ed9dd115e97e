#!/usr/bin/env python
"""SEQUOIA example: predicted S(|Q|, E) of SiF4 at Ei = 160 meV and 5 K, binned like SofQW.

The bins are those of a typical direct-geometry reduction (SofQW): energy transfer
from -0.5 Ei to 0.95 Ei in 0.5 meV steps, |Q| from 0 in 0.05 1/A steps up to the
largest |Q| SEQUOIA reaches at the elastic line. The physics route is used, with
Togo's phonondb force constants of SiF4 (mp-1818) and its POSCAR-unitcell as the
structure file.

With Mantid importable, the prediction runs through the PredictINSFromCIF
algorithm and the workspace is saved with SaveNexusProcessed; without Mantid,
insnet_core is called directly and the same file is written by insnet's own
processed-NeXus writer. Either way the folder gets ``sequoia_SiF4_Ei160.nxs``
and ``sequoia_SiF4_Ei160.png``.

Usage::

    python examples/sequoia_reduction_example.py OUTPUT_FOLDER
"""
import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CRYSTAL = REPO / "examples" / "data" / "phonondb" / "mp-1818-20180417"
EI = 160.0          # meV
TEMPERATURE = 5.0   # K
E_STEP = 0.5        # meV
Q_STEP = 0.05       # 1/A


def binning():
    """Rebin strings for energy (meV) and |Q| (1/A), SofQW style."""
    from insnet_core.instruments import get_instrument
    q_max = get_instrument("SEQUOIA", ei=EI).default_q_edges()[-1]
    energy = f"{-0.5 * EI:g},{E_STEP:g},{0.95 * EI:g}"
    q = f"0,{Q_STEP:g},{q_max:g}"
    return energy, q


def with_mantid(nxs, energy, q):
    import importlib.util

    import mantid.simpleapi as simpleapi
    if not hasattr(simpleapi, "PredictINSFromCIF"):  # plugin folder not registered (cmake)
        path = REPO / "plugins" / "algorithms" / "PredictINSFromCIF.py"
        spec = importlib.util.spec_from_file_location("PredictINSFromCIF", path)
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    ws = simpleapi.PredictINSFromCIF(
        InputFile=str(CRYSTAL / "POSCAR-unitcell"), Instrument="SEQUOIA", IncidentEnergy=EI,
        Temperature=TEMPERATURE, EnergyBinning=energy, QBinning=q, Method="Physics",
        ForceConstantsFile=str(CRYSTAL / "FORCE_SETS"), OutputWorkspace="sequoia_SiF4_Ei160")
    simpleapi.SaveNexusProcessed(InputWorkspace=ws, Filename=str(nxs))
    return "Mantid (PredictINSFromCIF + SaveNexusProcessed)"


def without_mantid(nxs, energy, q):
    from insnet_core.binning import rebin_edges
    from insnet_core.io.nexus import save_nexus_processed
    from insnet_core.predict import predict
    result = predict(CRYSTAL / "POSCAR-unitcell", method="Physics", force_constants=CRYSTAL,
                     instrument="SEQUOIA", ei=EI, temperature=TEMPERATURE,
                     energy_edges=rebin_edges(energy, "energy"), q_edges=rebin_edges(q, "|Q|"))
    save_nexus_processed(result.total, nxs, workspace_name=nxs.stem)
    return "insnet_core (no Mantid found)"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_folder", help="folder for the .nxs and .png files")
    args = parser.parse_args(argv)
    out = Path(args.output_folder)
    out.mkdir(parents=True, exist_ok=True)
    nxs, png = out / "sequoia_SiF4_Ei160.nxs", out / "sequoia_SiF4_Ei160.png"
    energy, q = binning()
    try:
        import mantid  # noqa: F401
        have_mantid = not getattr(mantid, "__insnet_standin__", False)
    except ImportError:
        have_mantid = False
    route = with_mantid(nxs, energy, q) if have_mantid else without_mantid(nxs, energy, q)

    from insnet_core.io.nexus import load_nexus_processed
    from insnet_core.plotting import plot_spectrum
    spectrum = load_nexus_processed(nxs)
    plot_spectrum(spectrum, png)
    finite = np.isfinite(spectrum.values)
    print(f"route: {route}")
    print(f"energy bins {energy} meV -> {spectrum.values.shape[1]}; |Q| bins {q} 1/A -> "
          f"{spectrum.values.shape[0]}; measurable bins {finite.mean():.0%}")
    print(f"wrote {nxs}\nwrote {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
