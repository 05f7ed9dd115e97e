#!/usr/bin/env python
"""SEQUOIA phonon subtraction: the magnetic residual of a synthetic "measured" map.

The showcase of the reference work is Ba3ZnRu2O9 at SEQUOIA (Ei = 160 meV, 5 K), whose
map has extra (magnetic) scattering below 2 1/A that the phonon prediction lacks.
Ba3ZnRu2O9 has no force constants in phonondb, so its prediction needs insnet's ML route
(a spectrum from the CIF alone), which is not shipped yet. Until it is, this example uses
a crystal that phonondb has, SiF4 (mp-1818), through the physics route:

1. predict SiF4's map at SEQUOIA, Ei = 160 meV, 5 K, on SofQW-style bins
   (1 meV x 0.1 1/A);
2. make a synthetic "measured" map: the phonons x 2.5 + a flat background + a magnetic
   peak at 15 meV x the squared Ru+ form factor (periodictable), with Poisson counts
   (5000 in the brightest bin);
3. subtract: fit the scale and background over |Q| >= 4 1/A, subtract, integrate the
   residual over 0-2 1/A — through the SubtractPredictedPhonons algorithm when Mantid is
   importable, through insnet_core.subtraction otherwise;
4. write ``sequoia_subtraction_residual.nxs`` (+ ``_magnetic.nxs``) and a PNG with the
   data, the scaled prediction, the residual and the magnetic intensity.

Usage::

    python examples/sequoia_subtraction_example.py OUTPUT_FOLDER
"""
import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CRYSTAL = REPO / "examples" / "data" / "phonondb" / "mp-1818-20180417"
EI, TEMPERATURE = 160.0, 5.0
SCALE, COUNTS = 2.5, 5000.0


def measured_map(pred, seed=1):
    """Synthetic measurement: scaled phonons + background + Ru+ magnetic peak, Poisson."""
    from insnet_core.subtraction import magnetic_form_factor_squared, poisson_measurement
    peak = np.nanmax(pred.values)
    e, q = pred.energy_centres, pred.q_centres
    magnetic = (0.3 * SCALE * peak * np.exp(-0.5 * ((e - 15.0) / 3.0) ** 2)[None, :]
                * magnetic_form_factor_squared("Ru1+", q)[:, None])
    expected = pred.replace(values=SCALE * pred.values + 0.01 * SCALE * peak + magnetic)
    data = poisson_measurement(expected, COUNTS / (SCALE * peak), np.random.default_rng(seed))
    data.metadata = {"Ei": EI, "temperature_K": TEMPERATURE, "formula": "synthetic SiF4 + Ru+"}
    return data, magnetic


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path)
    args = parser.parse_args(argv)
    args.outdir.mkdir(parents=True, exist_ok=True)
    from insnet_core.predict import predict
    from insnet_core.subtraction import FitRegion, subtract_prediction

    energy = np.arange(-20.0, 150.0 + 1e-9, 1.0)
    q = np.arange(0.0, 10.0 + 1e-9, 0.1)
    structure = str(CRYSTAL / "POSCAR-unitcell")
    pred = predict(structure, force_constants=str(CRYSTAL), instrument="SEQUOIA", ei=EI,
                   temperature=TEMPERATURE, energy_edges=energy, q_edges=q).total
    data, magnetic = measured_map(pred)
    out = args.outdir / "sequoia_subtraction_residual.nxs"
    try:
        import mantid  # noqa: F401
        has_mantid = not getattr(mantid, "__insnet_standin__", False)
    except ImportError:
        has_mantid = False
    result = subtract_prediction(data, pred, region=FitRegion(q_range=(4.0, np.inf)),
                                 background=True, magnetic_q_range=(0.0, 2.0))
    if has_mantid:   # the same through the algorithm, residual saved by Mantid
        from mantid.simpleapi import SaveNexusProcessed, SubtractPredictedPhonons
        from insnet_core.mantid_adapter import spectrum_to_workspace
        spectrum_to_workspace(data, name="measured")
        res = SubtractPredictedPhonons(InputWorkspace="measured", InputFile=structure,
                                       ForceConstantsFile=str(CRYSTAL / "FORCE_SETS"),
                                       Instrument="SEQUOIA", Temperature=TEMPERATURE,
                                       FitBackground=True, OutputWorkspace="residual",
                                       OutputMagneticIntensity="magnetic")
        SaveNexusProcessed(InputWorkspace="residual", Filename=str(out))
        print(f"algorithm: scale {res.OutputScaleFactor:.5g} +- {res.OutputScaleFactorError:.2g}")
    else:
        from insnet_core.io.nexus import save_nexus_processed
        save_nexus_processed(result.residual, out)
        save_nexus_processed(result.magnetic, out.with_name(out.stem + "_magnetic.nxs"))
    from insnet_core.plotting import plot_subtraction
    plot_subtraction(data, result, out.with_suffix(".png"))
    fit = result.fit
    width = np.clip(np.minimum(q[1:], 2.0) - q[:-1], 0, None)
    injected = np.nansum(np.where(np.isfinite(data.values), magnetic, 0) * width[:, None], 0)
    de = pred.energy_widths
    print(f"scale {fit.scale:.5g} +- {fit.scale_error:.2g} (truth {SCALE}), chi2/dof "
          f"{fit.chi2_dof:.3f}; magnetic intensity 0-2 1/A: "
          f"{np.nansum(result.magnetic.values[0] * de):.4g} (injected {np.sum(injected * de):.4g})")
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
