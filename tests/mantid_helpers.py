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


def load_plugin(name="PredictINSFromCIF"):
    """Import a plugin file (subscribes the algorithm) and return its module."""
    path = PLUGIN.with_name(f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def algorithm_function(name="PredictINSFromCIF"):
    """The simpleapi function of a subscribed algorithm."""
    load_plugin(name)
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


def run_python_script(code, input=None, output=None):
    """Run ``code`` the way Mantid's RunPythonScript does (as LoadLiveData runs a
    post-processing script), and return the output workspace or None.

    RunPythonScript unifies the line endings, indents the user code into the body
    of ``PyExec(self, input=None, output=None)`` of a throw-away PythonAlgorithm,
    executes that with the ``__main__`` namespace as globals and a dict holding
    ``input`` and ``output`` as locals, then reads ``output`` back from the locals:
    None gives no workspace, a workspace is taken as is, and a name must then
    exist in the AnalysisDataService. A fresh ``__main__``-like namespace stands
    in for Mantid's here, so a script cannot rely on globals the test defined.
    """
    import builtins
    import re

    from mantid.api import AnalysisDataService, Workspace

    indent = "    "
    lines = re.sub(r"\r\n|\r", "\n", code).split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # getline() yields no empty line after a final newline
    wrapped = ("import mantid\n"
               "from mantid.simpleapi import *\n"
               "class _DUMMY_ALG(mantid.api.PythonAlgorithm):\n"
               f"{indent}def PyExec(self, input=None,output=None):\n"
               + "".join(f"{indent}{indent}{line}\n" for line in lines)
               + f"{indent}{indent}return input,output\n"
               "input,output = _DUMMY_ALG().PyExec(input,output)")
    script_globals = {"__name__": "__main__", "__builtins__": builtins}
    script_locals = {"input": input, "output": output}
    exec(compile(wrapped, "<RunPythonScript>", "exec"), script_globals, script_locals)
    result = script_locals.get("output")
    if result is None:
        return None
    if isinstance(result, Workspace):
        return result
    if not isinstance(result, str):
        raise RuntimeError("Invalid type assigned to 'output' variable. Must be a string or a "
                           "Workspace object")
    return AnalysisDataService.retrieve(result)
