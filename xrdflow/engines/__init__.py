"""Integration engines behind :func:`xrdflow.integrate`.

- :mod:`.spec`: :class:`IntegrationSpec`, the frozen description of one integration;
- :mod:`.pyfai`: pyFAI's ``integrate1d`` frame by frame (every method pyFAI has);
- :mod:`.fused`: xrdflow's fused engine, numba kernels that apply pyFAI's sparse matrix to
  raw frames in their own dtype, in one pass (:func:`integrate_frames`);
- :mod:`.sparse`: building that matrix from pyFAI and converting it to the engine's
  pixel-major layout (:func:`build_sparse`, :class:`SparseIntegrator`);
- :mod:`.matrix`: the fused engine applied to a dask block;
- :mod:`.cache`: the per-process matrix cache and shipping a matrix to dask.distributed
  workers (:func:`get_sparse`, :func:`share_with_workers`).
"""

from __future__ import annotations

from .cache import (adopt_sparse, clear_engine_cache, engine_cache_info, get_sparse, held_matrices,
                    share_with_workers)
from .fused import MODE_DUMMY, MODE_FINITE, MODE_NEGATIVE, SPLITS, integrate_frames
from .sparse import SparseIntegrator, array_digest, build_sparse, to_ell
from .spec import IntegrationSpec

__all__ = [
    "IntegrationSpec",
    "SparseIntegrator",
    "build_sparse",
    "to_ell",
    "array_digest",
    "get_sparse",
    "adopt_sparse",
    "share_with_workers",
    "engine_cache_info",
    "clear_engine_cache",
    "held_matrices",
    "integrate_frames",
    "SPLITS",
    "MODE_FINITE",
    "MODE_NEGATIVE",
    "MODE_DUMMY",
]
