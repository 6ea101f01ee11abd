"""Thread discipline for native code.

1. One level of parallelism: native OpenMP code (pyFAI's engines, bitshuffle) runs on one
thread inside xrdflow's own threads and dask tasks.

2. pyFAI geometry set-up is serialised (:data:`PYFAI_LOCK`). pyFAI evaluates its units
(2theta, q, chi...) with compiled ``numexpr.NumExpr`` objects shared by the whole process;
calling one from two threads at once corrupts the heap ("double free or corruption",
numexpr issue #569, found through pyFAI issue #2948; fix not released as of numexpr 2.14).
Building an integrator's arrays or engine is where pyFAI evaluates them, so every build
takes this lock; integrating with a built engine does not and runs in parallel.

For 1: threadpoolctl's ``threadpool_limits`` is not thread-safe (it scans the loaded libraries
through ctypes; concurrent calls crashed the process with "double free or corruption",
see threadpoolctl issues #176 and #205), so every call goes through one lock. OpenMP's
thread count is per calling thread, so a limit set here does not affect other threads.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator

_LOCK = threading.Lock()

#: held while pyFAI computes geometry arrays or builds an engine (see the module doc)
PYFAI_LOCK = threading.RLock()

__all__ = ["openmp_single_thread", "limit_openmp_in_this_thread", "PYFAI_LOCK"]


def limit_openmp_in_this_thread() -> None:
    """Limit OpenMP to one thread in the calling thread, for the rest of its life.

    For threads xrdflow owns (e.g. ingest's pool, via its initializer).
    """
    from threadpoolctl import threadpool_limits

    with _LOCK:
        threadpool_limits(1, user_api="openmp")


@contextlib.contextmanager
def openmp_single_thread() -> Iterator[None]:
    """Run the block with OpenMP on one thread in the calling thread, then restore it.

    For code that runs on threads xrdflow does not own (dask's pools, the main thread).
    """
    from threadpoolctl import threadpool_limits

    with _LOCK:
        limiter = threadpool_limits(1, user_api="openmp")
    try:
        yield
    finally:
        with _LOCK:
            limiter.restore_original_limits()
