#!/usr/bin/env python
"""ML example: Ba3ZnRu2O9 at SEQUOIA, Ei = 160 meV, 5 K, from its CIF alone (SofQW bins).

Ba3ZnRu2O9 (the reference work's magnetic example) has no force constants in phonondb, so
only the ML route can predict its phonons: the shipped model predicts each element's
partial DOS and the engine makes the SEQUOIA map on SofQW-style bins (energy -0.5 Ei to
0.95 Ei in 0.5 meV steps, |Q| from 0 in 0.05 1/A steps). With Mantid importable it runs
through PredictINSFromCIF + SaveNexusProcessed, otherwise through insnet_core; the folder
gets ``sequoia_Ba3ZnRu2O9_Ei160.nxs`` and ``.png``.

Usage::

    python examples/predict_ba3znru2o9.py OUTPUT_FOLDER [--model NAME]
"""
import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CIF = REPO / "examples" / "data" / "Ba3ZnRu2O9.cif"
EI, TEMPERATURE, E_STEP, Q_STEP = 160.0, 5.0, 0.5, 0.05   # meV, K, meV, 1/A


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_folder")
    parser.add_argument("--model", default=None, help="model name or folder (default: shipped)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from insnet_core.binning import rebin_edges
    from insnet_core.instruments import get_instrument
    from insnet_core.io.nexus import load_nexus_processed, save_nexus_processed
    from insnet_core.plotting import plot_spectrum

    out = Path(args.output_folder)
    out.mkdir(parents=True, exist_ok=True)
    nxs, png = out / "sequoia_Ba3ZnRu2O9_Ei160.nxs", out / "sequoia_Ba3ZnRu2O9_Ei160.png"
    q_max = get_instrument("SEQUOIA", ei=EI).default_q_edges()[-1]
    energy, q = f"{-0.5 * EI:g},{E_STEP:g},{0.95 * EI:g}", f"0,{Q_STEP:g},{q_max:g}"
    try:
        import mantid  # noqa: F401
        have_mantid = not getattr(mantid, "__insnet_standin__", False)
    except ImportError:
        have_mantid = False
    if have_mantid:
        import importlib.util

        import mantid.simpleapi as simpleapi
        if not hasattr(simpleapi, "PredictINSFromCIF"):
            path = REPO / "plugins" / "algorithms" / "PredictINSFromCIF.py"
            spec = importlib.util.spec_from_file_location("PredictINSFromCIF", path)
            spec.loader.exec_module(importlib.util.module_from_spec(spec))
        ws = simpleapi.PredictINSFromCIF(
            InputFile=str(CIF), Instrument="SEQUOIA", IncidentEnergy=EI, Temperature=TEMPERATURE,
            EnergyBinning=energy, QBinning=q, Method="ML", Model=args.model or "",
            OutputWorkspace=nxs.stem)
        simpleapi.SaveNexusProcessed(InputWorkspace=ws, Filename=str(nxs))
        route = "Mantid (PredictINSFromCIF, Method ML)"
    else:
        from insnet_core.predict import predict
        result = predict(CIF, method="ML", model=args.model, instrument="SEQUOIA", ei=EI,
                         temperature=TEMPERATURE, energy_edges=rebin_edges(energy, "energy"),
                         q_edges=rebin_edges(q, "|Q|"))
        save_nexus_processed(result.total, nxs, workspace_name=nxs.stem)
        route = "insnet_core (no Mantid found), Method ML"
    spectrum = load_nexus_processed(nxs)
    plot_spectrum(spectrum, png)
    print(f"route: {route}; model {spectrum.metadata.get('model')}")
    print(f"{spectrum.values.shape[0]} |Q| x {spectrum.values.shape[1]} E bins; measurable "
          f"{np.isfinite(spectrum.values).mean():.0%}")
    print(f"wrote {nxs}\nwrote {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
