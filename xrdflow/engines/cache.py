"""Per-process cache of integration matrices, bounded by ``XRDFLOW_ENGINE_CACHE_MB``, and
shipping a matrix once to each dask.distributed worker process (never inside a graph).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Any


from .sparse import SparseIntegrator

# --------------------------------------------------------------------------- per-process cache
_cache: "OrderedDict[Any, SparseIntegrator]" = OrderedDict()
_cache_lock = threading.Lock()
_key_locks: dict[Any, threading.Lock] = {}
_stats = {"builds": 0, "pid": os.getpid()}


def _cache_limit_bytes() -> int:
    return int(float(os.environ.get("XRDFLOW_ENGINE_CACHE_MB", "3072")) * 2**20)


def _check_pid() -> None:
    if _stats["pid"] != os.getpid():  # forked: start afresh (locks may be held by dead threads)
        global _cache_lock
        _cache.clear()
        _key_locks.clear()
        _cache_lock = threading.Lock()
        _stats.update(builds=0, pid=os.getpid())


def get_sparse(key, build) -> SparseIntegrator:
    """This process's SparseIntegrator for ``key`` (hashable), built once by ``build()``.

    Threads asking for the same key while it is being built wait for that one build; the
    cache keeps the most recently used matrices within ``XRDFLOW_ENGINE_CACHE_MB``
    (default 3072 MB) and always at least the one just asked for.
    """
    _check_pid()
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
        lock = _key_locks.setdefault(key, threading.Lock())
    with lock:
        with _cache_lock:
            hit = _cache.get(key)
            if hit is not None:
                return hit
        sparse = build()
        with _cache_lock:
            _store(key, sparse)
            _stats["builds"] += 1
            _key_locks.pop(key, None)
        return sparse


def _store(key, sparse: SparseIntegrator) -> None:
    """Put ``sparse`` in the cache (caller holds ``_cache_lock``), evicting the oldest beyond the limit."""
    _cache[key] = sparse
    limit = _cache_limit_bytes()
    while len(_cache) > 1 and sum(s.nbytes for s in _cache.values()) > limit:
        _cache.popitem(last=False)


def adopt_sparse(key, sparse: SparseIntegrator) -> bool:
    """Take a matrix built in another process into this one's cache; False if already held."""
    _check_pid()
    for a in (sparse.ebins, sparse.ecoef, sparse.opix, sparse.obin, sparse.ocoef, sparse.pixw,
              sparse.norm, sparse.count, sparse.radial) + ((sparse.active,) if sparse.active is not None else ()):
        a.setflags(write=False)  # shared read-only by this process's threads, as if built here
    with _cache_lock:
        if key in _cache:
            return False
        _store(key, sparse)
        return True


def share_with_workers(client, latest: int | None = 1) -> int:
    """Send the matrices this process used last (``latest`` of them; None: all it holds) to
    the worker processes of a dask.distributed ``client`` that do not hold them yet; returns
    how many workers took one.

    ``integrate`` builds the matrix in the client (its radial axis labels the result);
    shipping it once per worker process (a one-off transfer, ~72 MB for bbox at 2048^2)
    spares every worker its own build (4 s of pyFAI and layout work, and its transient
    memory). Workers that join later, or miss it, still build their own on first use.
    Never part of a task graph.
    """
    taken = 0
    for key, sparse in held_matrices(latest):
        result = client.run(adopt_sparse, key, sparse)
        taken += sum(bool(v) for v in result.values())
    return taken


def held_matrices(latest: int | None = None) -> list[tuple[Any, SparseIntegrator]]:
    """The (key, matrix) pairs this process holds, most recently used last (``latest`` of
    them; None: all), to hand to :func:`adopt_sparse` in another process (a worker, or a
    benchmark that should not pay the build again)."""
    _check_pid()
    with _cache_lock:
        items = list(_cache.items())
    if latest is not None:
        items = items[len(items) - min(int(latest), len(items)):]
    return items


def engine_cache_info() -> dict[str, Any]:
    """Matrices held by this process: count, total bytes, builds so far, limit, descriptions."""
    _check_pid()
    with _cache_lock:
        return {"entries": len(_cache), "nbytes": sum(s.nbytes for s in _cache.values()),
                "builds": _stats["builds"], "limit_bytes": _cache_limit_bytes(),
                "matrices": [s.description for s in _cache.values()]}


def clear_engine_cache() -> None:
    """Drop this process's matrices."""
    with _cache_lock:
        _cache.clear()
