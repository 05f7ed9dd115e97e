"""insnet prediction next to live data: a post-processing script for StartLiveData.

Use it as the PostProcessingScript (or PostProcessingScriptFilename) of
StartLiveData / MonitorLiveData. Mantid runs it through RunPythonScript, which
puts the whole script inside a method body and passes two *local* variables
(they are not globals, so the script looks them up with ``locals()``):

* ``input``  - the accumulated data (a workspace, or its name), already reduced
  to energy transfer: a SofQW-style |Q|-E map (SEQUOIA) or a 1D spectrum in
  DeltaE / DeltaE_inWavenumber (VISION);
* ``output`` - the name of the workspace the script must produce.

Because of that wrapping, everything the script uses is imported and defined
in the script itself (its functions see each other as closures).

The script copies ``input`` to ``output`` unchanged and writes the insnet
prediction, rebinned onto exactly the data's bins, next to it as
``<output>_insnet``. The first update computes the prediction (seconds); every
later update only rebins the cached fine-grid prediction (milliseconds), also
when the binning of the data changes.

Settings: edit SETTINGS below, or set the environment variables named in it
before starting Mantid. With ``INSNET_LIVE_SCALE=integral`` the prediction is
scaled to the data's integral over the bins both have (handy for a visual
comparison of absolute units against raw counts); default: absolute units.

Example (Mantid workbench)::

    StartLiveData(Instrument='SEQUOIA', ProcessingAlgorithm='SofQW', ...,
                  PostProcessingScriptFilename='/path/to/insnet_live_postprocess.py',
                  AccumulationWorkspace='live_acc', OutputWorkspace='live')
"""
import os

import numpy as np
from mantid.api import AnalysisDataService
from mantid.simpleapi import CloneWorkspace

from insnet_core.defaults import DEFAULT_TEMPERATURE_K
from insnet_core.live import shared_overlay
from insnet_core.mantid_adapter import binning_from_workspace, spectrum_to_workspace
from insnet_core.mantid_algorithms import log_as_float


def _float_or_none(text):
    return float(text) if text not in (None, "") else None


SETTINGS = dict(
    structure_file=os.environ.get("INSNET_LIVE_STRUCTURE", ""),
    force_constants=os.environ.get("INSNET_LIVE_FORCE_CONSTANTS", "") or None,
    method=os.environ.get("INSNET_LIVE_METHOD", "Physics"),
    instrument=os.environ.get("INSNET_LIVE_INSTRUMENT", "SEQUOIA"),
    ei=_float_or_none(os.environ.get("INSNET_LIVE_EI")),
    temperature=float(os.environ.get("INSNET_LIVE_TEMPERATURE", DEFAULT_TEMPERATURE_K)),
)
SCALE = os.environ.get("INSNET_LIVE_SCALE", "none").strip().lower()


def _scale_to(data, prediction):
    """Factor making the prediction's integral equal the data's over bins both have."""
    d = np.array([data.readY(i) for i in range(data.getNumberHistograms())])
    p = np.array([prediction.readY(i) for i in range(prediction.getNumberHistograms())])
    both = np.isfinite(d) & np.isfinite(p)
    total = float(np.sum(p[both]))
    return float(np.sum(d[both])) / total if total > 0 else 1.0


def postprocess(data, output_name):
    """Copy ``data`` to ``output_name``; write the prediction as ``<output_name>_insnet``."""
    ws = AnalysisDataService.retrieve(data) if isinstance(data, str) else data
    settings = dict(SETTINGS)
    if settings["instrument"].upper() == "SEQUOIA" and settings["ei"] is None:
        settings["ei"] = log_as_float(ws, "Ei")  # a time-series log gives its mean
    CloneWorkspace(InputWorkspace=ws, OutputWorkspace=output_name)
    overlay = shared_overlay(**settings)
    spectrum = overlay.overlay_for(binning_from_workspace(ws))
    prediction = spectrum_to_workspace(spectrum, like=ws)
    if SCALE == "integral":
        factor = _scale_to(ws, prediction)
        for i in range(prediction.getNumberHistograms()):
            prediction.setY(i, np.asarray(prediction.readY(i)) * factor)
            prediction.setE(i, np.asarray(prediction.readE(i)) * factor)
        prediction.mutableRun().addProperty("insnet_scale_factor", factor, True)
    prediction.mutableRun().addProperty("insnet_cache_hit", int(bool(overlay.last_was_hit)),
                                        True)
    AnalysisDataService.addOrReplace(f"{output_name}_insnet", prediction)
    return prediction


# Run by Mantid (RunPythonScript): 'input' and 'output' are locals of the wrapping method.
# Imported as a module, neither is defined and nothing runs.
_live_input, _live_output = locals().get("input"), locals().get("output")
if _live_output is not None:
    if not isinstance(_live_output, str) or not _live_output:
        raise ValueError("insnet live script: 'output' must be the name of the workspace to "
                         f"produce, got {_live_output!r}")
    if _live_input is None:
        raise ValueError("insnet live script: no input workspace ('input' is None); use it as "
                         "the post-processing script of StartLiveData")
    postprocess(_live_input, _live_output)
