# insnet: inelastic neutron scattering spectra from crystal structures.
# SPDX-License-Identifier: GPL-3.0-or-later
"""Mantid algorithm PredictINSFromCIF: a thin wrapper of insnet_core.predict."""
from mantid.api import (AlgorithmFactory, FileAction, FileProperty, MatrixWorkspaceProperty,
                        Progress, PropertyMode, PythonAlgorithm, WorkspaceProperty)
from mantid.kernel import (Direction, FloatBoundedValidator, IntBoundedValidator,
                           StringListValidator)

from insnet_core import mantid_algorithms as support


class PredictINSFromCIF(PythonAlgorithm):
    """Predict the INS spectrum of a crystal on VISION, SEQUOIA or an ideal grid."""

    def category(self):
        return "Inelastic\\Simulation"

    def summary(self):
        return ("Predicts the inelastic neutron scattering spectrum of a crystal (CIF or POSCAR) "
                "for VISION (1D) or SEQUOIA / Ideal2D (|Q|-E map), optionally on the binning "
                "of a reduced workspace.")

    def seeAlso(self):
        return ["Abins", "Abins2D", "SofQW", "Rebin"]

    # ------------------------------------------------------------------ properties
    def PyInit(self):
        self.declareProperty(
            FileProperty("InputFile", "", action=FileAction.Load,
                         extensions=[".cif", ".vasp", "POSCAR"]),
            doc="Crystal structure: CIF, or VASP POSCAR (e.g. POSCAR-unitcell, *.vasp).")
        self.declareProperty(
            "Instrument", "VISION", validator=StringListValidator(support.INSTRUMENTS),
            doc="VISION: 1D spectra per bank (backward, forward, average); SEQUOIA: powder "
                "|Q|-E map for IncidentEnergy; Ideal2D: 0-15 1/A x 0-150 meV map with "
                "1.5 meV resolution.")
        self.declareProperty(
            "IncidentEnergy", 0.0,
            doc="SEQUOIA incident energy Ei in meV (> 0). 0 (default): taken from the 'Ei' "
                "sample log of BinningWorkspace.")
        self.declareProperty(
            "ChopperPackage", "High-Resolution",
            validator=StringListValidator(support.chopper_packages()),
            doc="SEQUOIA Fermi chopper package (default High-Resolution).")
        self.declareProperty(
            "ChopperFrequency", 0, validator=IntBoundedValidator(lower=0),
            doc="SEQUOIA Fermi chopper frequency in Hz (a multiple of 60 up to 600). 0 "
                "(default): the frequency with the best transmission at Ei.")
        # VISION settings (empty / 0: the instrument's documented defaults); shared defaults
        from insnet_core.defaults import DEFAULT_TEMPERATURE_K
        self.declareProperty(
            "FinalEnergy", 0.0, validator=FloatBoundedValidator(lower=0.0),
            doc="VISION final energy in meV. 0 (default): 3.5 meV. OCLIMAX uses 32 cm-1 "
                "(3.97 meV).")
        self.declareProperty(
            "BankAngles", "",
            doc="VISION analyser bank scattering angles in degrees, comma separated. Empty "
                "(default): 135,45 (backward, forward).")
        self.declareProperty(
            "ResolutionPolynomial", "",
            doc="VISION resolution as FWHM = a + b*E + c*E^2 in cm-1, given as 'a,b,c'. "
                "Empty (default): the propagated instrument model. 2.5,0.005,1e-7 "
                "reproduces OCLIMAX's VISION resolution.")
        self.declareProperty(
            "Temperature", DEFAULT_TEMPERATURE_K,
            validator=FloatBoundedValidator(lower=0.0),
            doc="Sample temperature in K (>= 0; Bose and Debye-Waller factors). Default "
                f"{DEFAULT_TEMPERATURE_K:g} K.")
        self.declareProperty(
            MatrixWorkspaceProperty("BinningWorkspace", "", direction=Direction.Input,
                                    optional=PropertyMode.Optional),
            doc="Optional reduced workspace whose binning the output copies exactly: a "
                "SofQW map (X = DeltaE, vertical |Q| axis, bin edges or centres) or a 1D "
                "workspace in DeltaE or DeltaE_inWavenumber. Overrides EnergyBinning, "
                "QBinning and EnergyUnit.")
        self.declareProperty(
            "EnergyBinning", "",
            doc="Energy-transfer bins as for Rebin, 'start,step,end' (negative step = "
                "logarithmic), in EnergyUnit. Empty: the instrument's default bins.")
        self.declareProperty(
            "QBinning", "",
            doc="|Q| bins in 1/Angstrom as for Rebin, 'start,step,end' (maps only). Empty: "
                "the instrument's default bins.")
        self.declareProperty(
            "EnergyUnit", "Default", validator=StringListValidator(support.ENERGY_UNITS),
            doc="Unit of EnergyBinning and of the output X axis: meV (DeltaE) or cm-1 "
                "(DeltaE_inWavenumber). Default: cm-1 for VISION, meV otherwise.")
        self.declareProperty(
            "Method", support.default_method(), validator=StringListValidator(support.METHODS),
            doc="ML: machine-learned prediction from the structure alone (a model predicts "
                "each element's partial phonon DOS, the physics engine makes the instrument "
                "spectrum; errors = the ensemble's spread). Physics: incoherent multiphonon "
                "spectrum from phonopy force constants (ForceConstantsFile; given with Method "
                "left at its default, it selects Physics). uMLIP: the same engine on force "
                "constants from a universal ML potential (Potential). Default: ML when a "
                "model ships.")
        self.declareProperty(
            FileProperty("ForceConstantsFile", "", action=FileAction.OptionalLoad,
                         extensions=[".yaml", ".conf", "FORCE_SETS", "FORCE_CONSTANTS"]),
            doc="phonopy force constants (required for Physics): a phonopy.yaml, or a "
                "phonondb folder given by its phonopy.conf or FORCE_SETS file. Must be for "
                "the same compound as InputFile.")
        self.declareProperty(
            "Model", "", doc="ML model: a name in insnet's models/ folder or a model folder "
                             "(Method ML only; empty: the shipped default).")
        self.declareProperty(
            "MapRoute", "Default", validator=StringListValidator(support.MAP_ROUTE_CHOICES),
            doc="Method ML, maps (SEQUOIA, Ideal2D): Partials = the physics engine on the "
                "predicted partial DOS; AE = the autoencoder route (latent heads + ONNX "
                "decoder of the 0 K ideal map, then the instrument; Total only). Default: "
                "the route measured better (Partials).")
        self.declareProperty(
            "VisionRoute", "Default", validator=StringListValidator(support.VISION_ROUTE_CHOICES),
            doc="Method ML, VISION: Neighbours = the network's VISION head blended with the "
                "spectra of the nearest database crystals (the log nearest_database_crystal "
                "names the one it leans on); Head = the VISION head alone; Partials = the "
                "physics engine on the predicted partial DOS. Default: the model card's "
                "choice (the lowest median MSE measured).")
        names, default = support.potentials()
        self.declareProperty(
            "Potential", default, validator=StringListValidator(names),
            doc="Universal ML potential for Method uMLIP: the structure is relaxed with it "
                "(space group kept) and its force constants computed in a >= 10 A supercell "
                "(seconds to minutes; cached, kept as phonopy_params.yaml), then the physics "
                f"engine runs. Default {default}.")
        self.declareProperty(
            "Contributions", "Total", validator=StringListValidator(support.CONTRIBUTIONS),
            doc="Total: one workspace. ByElement / ByOrder: a WorkspaceGroup with the total "
                "and one workspace per element / per phonon order.")
        self.declareProperty(
            WorkspaceProperty("OutputWorkspace", "", direction=Direction.Output),
            doc="The predicted S(Q,E) (barn/sr/meV per cell; distribution), or a group.")

        # ------------------------------------------------------------------ checks
    def validateInputs(self):
        problems, _, _ = support.property_problems(self)
        return problems

    # ------------------------------------------------------------------ execution
    def PyExec(self):
        from insnet_core import InsnetError
        from insnet_core.predict import plan, run_request

        progress = Progress(self, start=0.0, end=1.0, nreports=8)

        # 1. check everything again (cheap) and build the request
        progress.report("checking inputs")
        problems, kwargs, template = support.property_problems(self)
        if problems:
            raise ValueError("; ".join(f"{k}: {v}" for k, v in problems.items()))
        request = plan(**kwargs)

        # 2. predict (physics engine or model) on the requested bins
        try:
            result = run_request(request, progress=lambda _, message: progress.report(message))
        except InsnetError as exc:
            raise ValueError(str(exc)) from None
        for warning in support.result_warnings(result):  # also in the output's sample logs
            self.log().warning(f"PredictINSFromCIF: {warning}")

        # 3. spectra -> workspaces (axes copied from BinningWorkspace when given)
        progress.report("creating workspaces")
        contributions = self.getPropertyValue("Contributions")
        parts = support.output_parts(result, contributions, template)

        # 4. output: one workspace, or a group whose members are named <output>_<part>
        progress.report("storing output")
        self.setProperty("OutputWorkspace", support.store_outputs(
            self.getPropertyValue("OutputWorkspace"), parts, contributions != "Total"))


AlgorithmFactory.subscribe(PredictINSFromCIF)
