"""Helpers shared by the Mantid tests: build reduced-looking workspaces with Mantid's API.

They use only calls real Mantid has (WorkspaceFactory, axes, units, logs), so the tests run
unchanged against a real Mantid or the stand-in in tests/mantid_standin.
"""
import importlib.util
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
PLUGIN = REPO_ROOT / "plugins" / "algorithms" / "PredictINSFromCIF.py"


def using_standin():
    import mantid
    return bool(getattr(mantid, "__insnet_standin__", False))


def load_plugin():
    """Import the plugin file (subscribes the algorithm) and return its module."""
    spec = importlib.util.spec_from_file_location("PredictINSFromCIF", PLUGIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def algorithm_function(name="PredictINSFromCIF"):
    """The simpleapi function of a subscribed algorithm."""
    load_plugin()
    import mantid.simpleapi as simpleapi
    return getattr(simpleapi, name)


def make_workspace(x, n_rows, x_unit="DeltaE", vertical=None, vertical_unit="MomentumTransfer",
                   values=None, name=None, logs=None):
    """A Workspace2D with the same X on every row and an optional numeric vertical axis.

    ``vertical``: None (spectrum numbers), n_rows values (centres) or n_rows+1 (edges).
    """
    from mantid.api import AnalysisDataService, BinEdgeAxis, NumericAxis, WorkspaceFactory
    x = np.asarray(x, dtype=float)
    n_y = x.size - 1 if values is None else np.shape(values)[1]
    ws = WorkspaceFactory.create("Workspace2D", NVectors=n_rows, XLength=x.size, YLength=n_y)
    rng = np.random.default_rng(1)
    for i in range(n_rows):
        ws.setX(i, x)
        ws.setY(i, rng.random(n_y) if values is None else np.asarray(values[i], dtype=float))
        ws.setE(i, np.full(n_y, 0.1))
    ws.getAxis(0).setUnit(x_unit)
    if vertical is not None:
        vertical = np.asarray(vertical, dtype=float)
        axis = (BinEdgeAxis.create(vertical.size) if vertical.size == n_rows + 1
                else NumericAxis.create(vertical.size))
        for i, v in enumerate(vertical):
            axis.setValue(i, float(v))
        axis.setUnit(vertical_unit)
        ws.replaceAxis(1, axis)
    ws.setDistribution(True)
    for key, value in (logs or {}).items():
        ws.mutableRun().addProperty(key, value, True)
    if name:
        AnalysisDataService.addOrReplace(name, ws)
    return ws


def axis_values(ws, index):
    return np.asarray(ws.getAxis(index).extractValues(), dtype=float)


def x_of(ws):
    return np.array(ws.readX(0), dtype=float)
