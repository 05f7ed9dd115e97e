# insnet: inelastic neutron scattering spectra from crystal structures.
# SPDX-License-Identifier: GPL-3.0-or-later
"""Mantid algorithm PredictINSFromCIF: a thin wrapper of insnet_core.predict."""
from mantid.api import (AlgorithmFactory, AnalysisDataService, FileAction, FileProperty,
                        MatrixWorkspaceProperty, Progress, PropertyMode, PythonAlgorithm,
                        WorkspaceGroup, WorkspaceProperty)
from mantid.kernel import (Direction, FloatBoundedValidator, IntBoundedValidator,
                           StringListValidator)

_INSTRUMENTS = ["VISION", "SEQUOIA", "Ideal2D"]
_METHODS = ["ML", "Physics"]
_CONTRIBUTIONS = ["Total", "ByElement", "ByOrder"]
_ENERGY_UNITS = ["Default", "meV", "cm-1"]
# insnet_core.predict input -> property reporting its problem (binning depends on the source)
_PROBLEM_PROPERTY = {
    "structure_file": "InputFile", "method": "Method", "model": "Model",
    "force_constants": "ForceConstantsFile", "instrument": "Instrument",
    "ei": "IncidentEnergy", "chopper_package": "ChopperPackage",
    "chopper_frequency": "ChopperFrequency", "temperature": "Temperature",
    "final_energy": "FinalEnergy", "bank_angles": "BankAngles",
    "resolution_poly": "ResolutionPolynomial",
    "orders": "Temperature", "display_energy_unit": "EnergyUnit",
}


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
            "Instrument", "VISION", validator=StringListValidator(_INSTRUMENTS),
            doc="VISION: 1D spectra per bank (backward, forward, average); SEQUOIA: powder "
                "|Q|-E map for IncidentEnergy; Ideal2D: 0-15 1/A x 0-150 meV map with "
                "1.5 meV resolution.")
        self.declareProperty(
            "IncidentEnergy", 0.0,
            doc="SEQUOIA incident energy Ei in meV (> 0). 0 (default): taken from the 'Ei' "
                "sample log of BinningWorkspace.")
        self.declareProperty(
            "ChopperPackage", "High-Resolution",
            validator=StringListValidator(_chopper_packages()),
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
            "EnergyUnit", "Default", validator=StringListValidator(_ENERGY_UNITS),
            doc="Unit of EnergyBinning and of the output X axis: meV (DeltaE) or cm-1 "
                "(DeltaE_inWavenumber). Default: cm-1 for VISION, meV otherwise.")
        self.declareProperty(
            "Method", "Physics", validator=StringListValidator(_METHODS),
            doc="Physics (default): incoherent multiphonon spectrum from phonopy force "
                "constants (ForceConstantsFile). ML: machine-learned prediction from the "
                "structure alone; no trained model is shipped yet, so ML reports that and "
                "stops. The default becomes ML once models ship.")
        self.declareProperty(
            FileProperty("ForceConstantsFile", "", action=FileAction.OptionalLoad,
                         extensions=[".yaml", ".conf", "FORCE_SETS", "FORCE_CONSTANTS"]),
            doc="phonopy force constants (required for Physics): a phonopy.yaml, or a "
                "phonondb folder given by its phonopy.conf or FORCE_SETS file. Must be for "
                "the same compound as InputFile.")
        self.declareProperty(
            "Model", "", doc="ML model name (Method ML only; none shipped yet).")
        self.declareProperty(
            "Contributions", "Total", validator=StringListValidator(_CONTRIBUTIONS),
            doc="Total: one workspace. ByElement / ByOrder: a WorkspaceGroup with the total "
                "and one workspace per element / per phonon order.")
        self.declareProperty(
            WorkspaceProperty("OutputWorkspace", "", direction=Direction.Output),
            doc="The predicted S(Q,E) (barn/sr/meV per cell; distribution), or a group.")

    # ------------------------------------------------------------------ checks
    def _binning(self):
        """(energy_edges_meV, q_edges, display_unit, template, problems)."""
        from insnet_core import InputError
        from insnet_core.binning import energy_edges_from_params, rebin_edges
        from insnet_core.mantid_adapter import binning_from_workspace

        problems = {}
        template = self.getProperty("BinningWorkspace").value
        if template is not None:
            try:
                energy, q, unit = binning_from_workspace(template)
                return energy, q, unit, template, problems
            except InputError as exc:
                problems["BinningWorkspace"] = str(exc)
                return None, None, None, None, problems
        unit = self.getPropertyValue("EnergyUnit")
        unit = None if unit == "Default" else unit
        energy = q = None
        text = self.getPropertyValue("EnergyBinning").strip()
        if text:
            if unit is None:
                unit = "cm-1" if self.getPropertyValue("Instrument") == "VISION" else "meV"
            try:
                energy = energy_edges_from_params(text, unit, "EnergyBinning")
            except InputError as exc:
                problems["EnergyBinning"] = str(exc)
        text = self.getPropertyValue("QBinning").strip()
        if text:
            try:
                q = rebin_edges(text, "QBinning")
            except InputError as exc:
                problems["QBinning"] = str(exc)
        return energy, q, unit, None, problems

    def _arguments(self):
        """(keyword arguments of insnet_core.predict, template workspace, problems)."""
        energy, q, unit, template, problems = self._binning()
        instrument = self.getPropertyValue("Instrument")
        ei = frequency = package = None
        if instrument == "SEQUOIA":
            ei = float(self.getProperty("IncidentEnergy").value)
            if ei == 0.0 and template is not None and template.getRun().hasProperty("Ei"):
                ei = float(template.getRun().getProperty("Ei").value)
            if ei <= 0.0:
                problems["IncidentEnergy"] = (
                    "SEQUOIA needs an incident energy > 0 meV (set IncidentEnergy, or give a "
                    "BinningWorkspace with an 'Ei' log)" if ei == 0.0 else
                    f"IncidentEnergy must be > 0 meV, got {ei:g}")
            package = self.getPropertyValue("ChopperPackage")
            frequency = int(self.getProperty("ChopperFrequency").value) or None
        kwargs = dict(structure_file=self.getPropertyValue("InputFile"),
                      method=self.getPropertyValue("Method"),
                      force_constants=self.getPropertyValue("ForceConstantsFile") or None,
                      model=self.getPropertyValue("Model") or None,
                      instrument=instrument,
                      temperature=float(self.getProperty("Temperature").value),
                      energy_edges=energy, q_edges=q, display_energy_unit=unit,
                      ei=ei, chopper_package=package, chopper_frequency=frequency)
        if instrument == "VISION":
            kwargs.update(
                final_energy=float(self.getProperty("FinalEnergy").value) or None,
                bank_angles=self.getPropertyValue("BankAngles").strip() or None,
                resolution_poly=self.getPropertyValue("ResolutionPolynomial").strip() or None)
        return kwargs, template, problems

    def _problems(self):
        from insnet_core.predict import find_problems
        kwargs, template, problems = self._arguments()
        source = "BinningWorkspace" if template is not None else None
        for key, message in find_problems(**kwargs).items():
            if key in ("energy_binning", "q_binning"):
                prop = source or ("EnergyBinning" if key == "energy_binning" else "QBinning")
            else:
                prop = _PROBLEM_PROPERTY.get(key, "InputFile")
            if prop not in problems:  # a property already reported keeps its first message
                problems[prop] = message
        return problems, kwargs, template

    def validateInputs(self):
        problems, _, _ = self._problems()
        return problems

    # ------------------------------------------------------------------ execution
    def PyExec(self):
        from insnet_core import InputError
        from insnet_core.mantid_adapter import spectrum_to_workspace
        from insnet_core.predict import plan, run_request

        progress = Progress(self, start=0.0, end=1.0, nreports=8)

        # 1. check everything again (cheap) and build the request
        progress.report("checking inputs")
        problems, kwargs, template = self._problems()
        if problems:
            raise ValueError("; ".join(f"{k}: {v}" for k, v in problems.items()))
        request = plan(**kwargs)

        # 2. predict (physics engine or model) on the requested bins
        def report(fraction, message):
            progress.report(message)
        try:
            result = run_request(request, progress=report)
        except InputError as exc:
            raise ValueError(str(exc)) from None
        if result.stability.get("has_imaginary"):
            self.log().warning(f"PredictINSFromCIF: {result.total.metadata.get('stability')}")

        # 3. spectra -> workspaces (axes copied from BinningWorkspace when given)
        progress.report("creating workspaces")
        parts = [("total", result.total)]
        contributions = self.getPropertyValue("Contributions")
        if contributions == "ByElement":
            parts += [(el, spec) for el, spec in result.by_element.items()]
        elif contributions == "ByOrder":
            parts += [(f"order{n}", spec) for n, spec in result.by_order.items()]
        workspaces = [(key, spectrum_to_workspace(spec, like=template)) for key, spec in parts]

        # 4. output: one workspace, or a group whose members are named <output>_<part>
        progress.report("storing output")
        if contributions == "Total":
            self.setProperty("OutputWorkspace", workspaces[0][1])
            return
        out = self.getPropertyValue("OutputWorkspace")
        group = WorkspaceGroup()
        stored = []
        try:
            for key, ws in workspaces:
                AnalysisDataService.addOrReplace(f"{out}_{key}", ws)
                stored.append(f"{out}_{key}")
                group.addWorkspace(ws)
            self.setProperty("OutputWorkspace", group)
        except Exception:
            for name in stored:
                if AnalysisDataService.doesExist(name):
                    AnalysisDataService.remove(name)
            raise


def _chopper_packages():
    from insnet_core.instruments import Sequoia
    return Sequoia.chopper_packages()


AlgorithmFactory.subscribe(PredictINSFromCIF)
