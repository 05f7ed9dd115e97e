"""Where work runs: in this process, on a dask LocalCluster, or on a running scheduler.

One place for the choice the database build and batch prediction share.
"""
from __future__ import annotations

import os

__all__ = ["SerialExecutor", "make_client", "close_client"]


class SerialExecutor:
    """In-process stand-in for a dask client (workers=0): ``submit`` runs at once."""

    def submit(self, func, *args, **kwargs):
        kwargs.pop("pure", None)
        kwargs.pop("key", None)
        return func(*args, **kwargs)


def make_client(workers, scheduler=None):
    """(client, cluster): a dask client on ``scheduler``, a LocalCluster, or in-process.

    Parameters
    ----------
    workers : int
        LocalCluster worker processes (one thread each); 0 runs in this process.
    scheduler : str, optional
        Address of a running dask scheduler; overrides ``workers``.
    """
    if scheduler:
        from dask.distributed import Client
        return Client(scheduler), None
    if workers == 0:
        return SerialExecutor(), None
    # one BLAS / torch thread per worker process so workers don't oversubscribe the cores
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    from dask.distributed import Client, LocalCluster
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           dashboard_address=":0", silence_logs=40)
    return Client(cluster), cluster


def close_client(client, cluster):
    """Close what :func:`make_client` opened."""
    if not isinstance(client, SerialExecutor):
        client.close()
    if cluster is not None:
        cluster.close()
