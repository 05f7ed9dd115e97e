"""The INS training database built from Togo's phonondb with the physics engine.

* :mod:`.record` — one crystal: phonondb files -> ingredients, targets, flags;
  :func:`regenerate` rebuilds any spectrum from stored ingredients.
* :mod:`.store` — crash-safe staging and HDF5 shards.
* :mod:`.build` — the resumable dask build.
* :mod:`.reader` — reading the database for training (NumPy / torch).
"""
from insnet_core.dataset.record import BuildConfig, compute_record, regenerate  # noqa: F401
