# insnet: inelastic neutron scattering spectra from crystal structures.
# SPDX-License-Identifier: GPL-3.0-or-later
"""Mantid algorithm SubtractPredictedPhonons: a thin wrapper of insnet_core.subtraction."""
from mantid.api import (AlgorithmFactory, FileAction, FileProperty, MatrixWorkspaceProperty,
                        Progress, PropertyMode, PythonAlgorithm)
from mantid.kernel import (Direction, FloatBoundedValidator, IntBoundedValidator,
                           StringListValidator)

from insnet_core import mantid_algorithms as predict_support
from insnet_core import mantid_subtraction as support
from insnet_core.defaults import DEFAULT_TEMPERATURE_K


class SubtractPredictedPhonons(PythonAlgorithm):
    """Scale a predicted phonon spectrum to measured data and subtract it."""

    def category(self):
        return "Inelastic\\Simulation"

    def summary(self):
        return ("Scales the predicted phonon spectrum of a crystal to a measured |Q|-E map "
                "or VISION spectrum (fitted where magnetic scattering is negligible, or "
                "fixed) and subtracts it, with propagated errors: the magnetic residual.")

    def seeAlso(self):
        return ["PredictINSFromCIF", "SofQW", "Minus"]

    # ------------------------------------------------------------------ properties
    def PyInit(self):
        self.declareProperty(
            MatrixWorkspaceProperty("InputWorkspace", "", direction=Direction.Input),
            doc="Measured data: a SofQW-style map (X = DeltaE, vertical |Q| axis) or a 1D "
                "workspace in DeltaE / DeltaE_inWavenumber (e.g. VISION). Only read.")
        self.declareProperty(
            MatrixWorkspaceProperty("PredictedWorkspace", "", direction=Direction.Input,
                                    optional=PropertyMode.Optional),
            doc="A prediction (e.g. PredictINSFromCIF output). Rebinned onto the data when "
                "its bins differ. Empty: predicted here from InputFile on the data's bins.")
        self.declareProperty(
            FileProperty("InputFile", "", action=FileAction.OptionalLoad,
                         extensions=[".cif", ".vasp", "POSCAR"]),
            doc="Crystal structure (CIF or POSCAR), when no PredictedWorkspace is given.")
        self.declareProperty(
            "Instrument", "SEQUOIA", validator=StringListValidator(predict_support.INSTRUMENTS),
            doc="Instrument of the prediction (as PredictINSFromCIF): SEQUOIA or Ideal2D for "
                "maps, VISION for 1D spectra.")
        self.declareProperty(
            "IncidentEnergy", 0.0,
            doc="SEQUOIA Ei in meV (> 0); 0: the 'Ei' log of InputWorkspace.")
        self.declareProperty(
            "ChopperPackage", "High-Resolution",
            validator=StringListValidator(predict_support.chopper_packages()),
            doc="SEQUOIA Fermi chopper package.")
        self.declareProperty(
            "ChopperFrequency", 0, validator=IntBoundedValidator(lower=0),
            doc="SEQUOIA Fermi chopper frequency in Hz; 0: best transmission at Ei.")
        self.declareProperty(
            "Temperature", DEFAULT_TEMPERATURE_K, validator=FloatBoundedValidator(lower=0.0),
            doc=f"Sample temperature in K (default {DEFAULT_TEMPERATURE_K:g}).")
        self.declareProperty(
            "Method", predict_support.default_method(),
            validator=StringListValidator(predict_support.METHODS),
            doc="Physics (force constants), ML or uMLIP, as in PredictINSFromCIF.")
        self.declareProperty(
            FileProperty("ForceConstantsFile", "", action=FileAction.OptionalLoad,
                         extensions=[".yaml", ".conf", "FORCE_SETS", "FORCE_CONSTANTS"]),
            doc="phonopy force constants for Method Physics (as PredictINSFromCIF).")
        self.declareProperty("Model", "", doc="ML model name (Method ML only).")
        names, default = predict_support.potentials()
        self.declareProperty(
            "Potential", default, validator=StringListValidator(names),
            doc="Universal ML potential for Method uMLIP (as PredictINSFromCIF).")
        self.declareProperty(
            "ScaleMethod", "FitHighQ", validator=StringListValidator(support.SCALE_METHODS),
            doc="FitHighQ: fit the scale (weighted least squares) over FitQRange x "
                "FitEnergyRange or FitRegionWorkspace. Fixed: use ScaleFactor.")
        self.declareProperty("ScaleFactor", 1.0, doc="The scale for ScaleMethod Fixed.")
        self.declareProperty(
            "ScaleFactorError", 0.0, validator=FloatBoundedValidator(lower=0.0),
            doc="Error of ScaleFactor (Fixed), propagated into the residual.")
        self.declareProperty(
            "FitBackground", False,
            doc="FitHighQ: also fit a flat background, which is then subtracted too.")
        self.declareProperty(
            "Weighting", "Auto", validator=StringListValidator(support.WEIGHTING_CHOICES),
            doc="Data: 1/error^2 of the data. Poisson: each bin's variance taken at the "
                "fitted model (unbiased for counting data with few counts). Auto: Poisson "
                "when no data bin is negative, else Data.")
        self.declareProperty(
            "FitQRange", "4,",
            doc="|Q| range of the fit in 1/Angstrom, 'min,max' (an empty side is open). "
                "Default 4 and above, where magnetic form factors are small.")
        self.declareProperty(
            "FitEnergyRange", "",
            doc="Energy-transfer range of the fit in meV, 'min,max'; empty: all.")
        self.declareProperty(
            MatrixWorkspaceProperty("FitRegionWorkspace", "", direction=Direction.Input,
                                    optional=PropertyMode.Optional),
            doc="Optional workspace with the data's shape: bins with a non-zero value form "
                "the fit region (replaces FitQRange and FitEnergyRange).")
        self.declareProperty(
            "MagneticQRange", "0,2",
            doc="|Q| range (1/Angstrom) integrated for OutputMagneticIntensity.")
        self.declareProperty(
            MatrixWorkspaceProperty("OutputWorkspace", "", direction=Direction.Output),
            doc="Residual: data - (scale * prediction + background) on the data's bins, a "
                "distribution, NaN where data or prediction are missing; fit logs attached.")
        self.declareProperty(
            MatrixWorkspaceProperty("OutputMagneticIntensity", "", direction=Direction.Output,
                                    optional=PropertyMode.Optional),
            doc="Optional: the residual integrated over MagneticQRange vs energy transfer.")
        self.declareProperty("OutputScaleFactor", 0.0, direction=Direction.Output,
                             doc="The scale applied to the prediction.")
        self.declareProperty("OutputScaleFactorError", 0.0, direction=Direction.Output,
                             doc="Its one-sigma error.")
        self.declareProperty("OutputChiSquared", 0.0, direction=Direction.Output,
                             doc="chi^2 per degree of freedom of the fit (NaN for Fixed).")

    # ------------------------------------------------------------------ checks
    def validateInputs(self):
        problems, _ = support.subtraction_problems(self)
        return problems

    # ------------------------------------------------------------------ execution
    def PyExec(self):
        from insnet_core import InsnetError
        from insnet_core.mantid_adapter import spectrum_to_workspace
        from insnet_core.predict import plan, run_request
        from insnet_core.subtraction import subtract_prediction

        progress = Progress(self, start=0.0, end=1.0, nreports=6)

        # 1. check everything again (cheap); read the data (never modified)
        progress.report("checking inputs")
        problems, kwargs = support.subtraction_problems(self)
        if problems:
            raise ValueError("; ".join(f"{k}: {v}" for k, v in problems.items()))
        data_ws = self.getProperty("InputWorkspace").value
        try:
            data = support.read_data(self)

            # 2. the prediction: given, or computed on the data's own bins
            progress.report("prediction")
            pred = support.read_prediction(self, data)
            if pred is None:
                result = run_request(plan(**kwargs))
                if result.stability.get("has_imaginary"):
                    self.log().warning("SubtractPredictedPhonons: "
                                       f"{result.total.metadata.get('stability')}")
                pred = result.total

            # 3. scale (fitted or fixed) and subtract
            progress.report("fitting the scale")
            method = self.getPropertyValue("ScaleMethod")
            want_magnetic = bool(self.getPropertyValue("OutputMagneticIntensity"))
            out = subtract_prediction(
                data, pred, method=method,
                region=support.fit_region(self, data) if method == "FitHighQ" else None,
                background=bool(self.getProperty("FitBackground").value),
                weighting=self.getPropertyValue("Weighting").lower(),
                scale=float(self.getProperty("ScaleFactor").value),
                scale_error=float(self.getProperty("ScaleFactorError").value),
                magnetic_q_range=support.magnetic_range(self) if want_magnetic else None)
        except InsnetError as exc:
            raise ValueError(str(exc)) from None

        # 4. report the fit
        fit = out.fit
        self.log().notice(
            f"SubtractPredictedPhonons: scale {fit.scale:.6g} +- {fit.scale_error:.3g}, "
            f"background {fit.background:.6g} +- {fit.background_error:.3g}, chi2/dof "
            f"{fit.chi2_dof:.4g} over {fit.n_bins} bins ({fit.region}, weighting "
            f"{fit.weighting or 'none'}); {fit.n_zero_error} zero-error bins floored at "
            f"{fit.zero_error_floor:.3g}")
        if fit.inflated:
            self.log().warning("SubtractPredictedPhonons: chi2/dof > 1, the scale error is "
                               "multiplied by sqrt(chi2/dof)")

        # 5. outputs: the residual on the data's axes, the magnetic intensity, the numbers
        progress.report("storing output")
        self.setProperty("OutputWorkspace", spectrum_to_workspace(out.residual, like=data_ws))
        if out.magnetic is not None:
            self.setProperty("OutputMagneticIntensity", spectrum_to_workspace(out.magnetic))
        self.setProperty("OutputScaleFactor", float(fit.scale))
        self.setProperty("OutputScaleFactorError", float(fit.scale_error))
        self.setProperty("OutputChiSquared", float(fit.chi2_dof))


AlgorithmFactory.subscribe(SubtractPredictedPhonons)
