"""Many structures at once: ``insnet predict`` on a folder or a list of files.

The structures are cut into chunks. A chunk is checked file by file (every check of
:func:`insnet_core.predict.plan`, so one bad file fails alone, with its message), its
ML requests go through the network as one graph batch, and the engine finishes each
structure. Chunks run in this process, or on dask workers (a LocalCluster of
``workers`` processes with one thread each, or a running ``scheduler``): the same path
the database build uses (:mod:`insnet_core.parallel`). A worker loads the model once.
Results come back chunk by chunk as they finish, for a progress bar.
"""
from __future__ import annotations

from pathlib import Path

from insnet_core import InsnetError
from insnet_core.parallel import SerialExecutor, close_client, make_client

__all__ = ["predict_chunk", "predict_batch", "DEFAULT_CHUNK"]

#: Structures per chunk: one network batch, one unit of work for a dask worker.
DEFAULT_CHUNK = 16


def predict_chunk(files, options, vision_route=None):
    """Predict a few structures; runs in this process or on a dask worker.

    Parameters
    ----------
    files : list of path
    options : dict
        Keyword arguments of :func:`insnet_core.predict.plan` (method, model,
        instrument, temperature, bins, ...), the same for every file.
    vision_route : {'partials', 'head', 'neighbours'}, optional
        Checked with the other options (:func:`insnet_core.predict.plan`).

    Returns
    -------
    list of (str, SimulationResult or None, str or None)
        Per file, in the order given: the file, the result, or the error message.
    """
    from insnet_core.predict import load_predictor, plan, run_request

    out, planned = {}, []
    for f in files:
        try:
            request = plan(f, **options, vision_route=vision_route)
        except InsnetError as exc:
            out[str(f)] = (None, str(exc))
            continue
        planned.append((str(f), request))
    raws = {}
    ml = [(f, r) for f, r in planned if r.method == "ML"]
    if len(ml) > 1:  # one network call for the chunk (plan has checked every structure)
        try:
            entries = load_predictor(ml[0][1].model).raw(
                [r.structure for _, r in ml], max_atoms=ml[0][1].model_max_atoms(),
                features=ml[0][1].map_route == "ae")
            raws = {f: e for (f, _), e in zip(ml, entries)}
        except InsnetError:
            raws = {}  # each structure alone below, so the one at fault is named
    for f, request in planned:
        try:
            out[f] = (run_request(request, raw_entry=raws.get(f)), None)
        except InsnetError as exc:
            out[f] = (None, str(exc))
    return [(str(f), *out[str(f)]) for f in files]


def predict_batch(files, options, vision_route=None, workers=0, scheduler=None,
                  chunk_size=DEFAULT_CHUNK):
    """Predict every file; yields one :func:`predict_chunk` list per finished chunk.

    Parameters
    ----------
    files : list of path
    options : dict
        See :func:`predict_chunk`.
    workers : int
        dask LocalCluster worker processes; 0 (default) runs in this process.
    scheduler : str, optional
        Address of a running dask scheduler (overrides ``workers``).
    chunk_size : int
        Structures per chunk.
    """
    if chunk_size < 1:
        raise InsnetError(f"chunk size must be at least 1, got {chunk_size}")
    if workers < 0:
        raise InsnetError(f"workers must be 0 (in-process) or more, got {workers}")
    files = [Path(f) for f in files]
    chunks = [files[i:i + chunk_size] for i in range(0, len(files), chunk_size)]
    client, cluster = make_client(workers, scheduler)
    try:
        if isinstance(client, SerialExecutor):
            for chunk in chunks:
                yield predict_chunk(chunk, options, vision_route)
            return
        from dask.distributed import as_completed
        futures = [client.submit(predict_chunk, chunk, options, vision_route, pure=False)
                   for chunk in chunks]
        for fut in as_completed(futures):
            try:
                yield fut.result()
            except Exception as exc:  # a worker lost (killed for memory...): name its files
                chunk = chunks[futures.index(fut)]
                yield [(str(f), None, f"worker failed: {type(exc).__name__}: {exc}")
                       for f in chunk]
    finally:
        close_client(client, cluster)
