"""Stand-in for ``mantid.simpleapi``: call a registered algorithm by name.

``Name(Prop=value, ..., OutputWorkspace='ws')`` creates the algorithm, sets
each property (a bad value raises ValueError, a value of the wrong type
TypeError, both worded 'Problem setting "Prop" in Name-v1: ...'), executes it (invalid inputs raise RuntimeError listing the
validateInputs messages) and returns its outputs as Mantid's
``simpleapi._gather_returns`` does (``Framework/PythonInterface/mantid/simpleapi.py``):
every output property in declaration order, a workspace property as its workspace
(an optional output workspace that was not set is left out), any other property as
its value; one output alone, several as a namedtuple ``<Name>_returns``. Only
algorithms subscribed through ``AlgorithmFactory.subscribe`` exist here.
"""
from __future__ import annotations

from collections import namedtuple

from mantid._strict import not_modelled
from mantid.api import (AlgorithmFactory, AnalysisDataService, PropertyMode,  # noqa: F401
                        WorkspaceProperty, mtd)
from mantid.kernel import Direction


def _make_function(name, cls):
    def run(*args, **kwargs):
        if args:
            raise NotImplementedError("mantid stand-in: pass properties by keyword "
                                      f"({name}(InputFile=..., OutputWorkspace=...))")
        alg = cls()
        alg.initialize()
        for key, value in kwargs.items():
            if not alg.existsProperty(key):
                raise ValueError(f'Unknown property "{key}" for {name}-v{alg.version()}')
            try:
                alg.setProperty(key, value)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f'Problem setting "{key}" in {name}-v{alg.version()}: '
                                f"{exc}") from None
        outputs = [p for p in alg.getProperties() if p.direction == Direction.Output]
        given = {key.lower() for key in kwargs}
        for p in outputs:
            if (isinstance(p, WorkspaceProperty) and p.optional != PropertyMode.Optional
                    and p.name.lower() not in given):
                raise NotImplementedError(
                    f"mantid stand-in: give {p.name} explicitly (real Mantid can take it "
                    "from the variable being assigned; the stand-in does not)")
        alg.execute()
        returns = {}
        for p in outputs:
            if not isinstance(p, WorkspaceProperty):
                returns[p.name] = p.value
            elif p.valueAsStr and AnalysisDataService.doesExist(p.valueAsStr):
                returns[p.name] = AnalysisDataService.retrieve(p.valueAsStr)
        if not returns:
            return None
        if len(returns) == 1:
            return next(iter(returns.values()))
        return namedtuple(f"{name}_returns", list(returns))(**returns)

    run.__name__ = name
    run.__doc__ = f"Run the {name} algorithm (mantid stand-in)."
    return run


def __getattr__(name):
    cls = AlgorithmFactory._get(name)
    if cls is None:
        not_modelled("mantid.simpleapi", name)
    return _make_function(name, cls)


def CloneWorkspace(InputWorkspace, OutputWorkspace):
    """Copy a MatrixWorkspace (data, axes, flags, labels, logs) under a new name."""
    import copy

    from mantid.api import MatrixWorkspace
    ws = InputWorkspace
    if isinstance(ws, str):
        ws = AnalysisDataService.retrieve(ws)
    if not isinstance(ws, MatrixWorkspace):
        raise NotImplementedError("mantid stand-in: CloneWorkspace is modelled for "
                                  "MatrixWorkspaces only")
    clone = copy.deepcopy(ws)
    clone._axes[0]._ws = clone
    clone._name = ""
    AnalysisDataService.addOrReplace(OutputWorkspace, clone)
    return clone
