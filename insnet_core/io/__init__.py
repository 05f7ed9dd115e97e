"""Reading and writing :class:`~insnet_core.spectrum.Spectrum` objects.

* :mod:`insnet_core.io.nexus` -- Mantid processed-NeXus files (``.nxs``), the
  format Mantid's ``LoadNexusProcessed`` reads, and NXSPE files (read only).
* :mod:`insnet_core.io.text` -- plain CSV with a commented header.

Every writer is atomic: the data go to a temporary file in the destination
directory which replaces the destination only once it is complete, so a failed
write never leaves a partial file and never damages an existing one.
"""
from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from insnet_core import InputError

__all__ = [
    "atomic_output", "json_default",
    "save_nexus_processed", "load_nexus_processed", "read_binning",
    "save_csv", "load_csv",
]


def json_default(obj):
    """``json.dumps`` fallback for metadata: arrays, numpy scalars, sets, paths; else str."""
    import numpy as np

    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return str(obj)


@contextlib.contextmanager
def atomic_output(path):
    """Context manager giving a temporary path that replaces ``path`` on success.

    The temporary file lives in the same directory as ``path`` (so the final
    :func:`os.replace` is atomic), is created with the permissions a new file
    would get (umask applied), and is removed if the ``with`` block raises.

    Parameters
    ----------
    path : str or os.PathLike
        The destination file.

    Yields
    ------
    pathlib.Path
        An existing, empty temporary file to write to (writers may truncate it).
    """
    dest = Path(path)
    directory = dest.parent if str(dest.parent) else Path(".")
    if not directory.is_dir():
        raise InputError(f"cannot write {dest}: directory {directory} does not exist")
    if dest.is_dir():
        raise InputError(f"cannot write {dest}: it is a directory")
    while True:
        tmp = directory / f".{dest.name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        break
    try:
        yield tmp
        # Make sure the bytes are on disk before the rename makes them visible.
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# The submodules import atomic_output from here, so they come after it.
from insnet_core.io.nexus import load_nexus_processed, read_binning, save_nexus_processed  # noqa: E402
from insnet_core.io.text import load_csv, save_csv  # noqa: E402
