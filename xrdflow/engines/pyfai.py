"""The pyFAI engine: ``integrate1d`` frame by frame (and sector by sector), with this
thread's cached integrator (:func:`cached_integrator`).

Covers every method pyFAI has. What pyFAI has set up for a call (its arrays and engine)
is remembered in a keyed table of ours (:func:`_warm_keys`), never as attributes on
pyFAI's objects.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any

import numpy as np

from ..geometry import Geometry
from .spec import IntegrationSpec

__all__ = ["integrate_block", "integrate_frame", "sector_integrator", "cached_integrator",
           "clear_integrator_cache"]

# id(integrator) -> set of call keys it has been set up for (the first call of a key builds
# pyFAI's arrays and engine under PYFAI_LOCK; later ones run in parallel). pyFAI's
# integrators are not hashable, so they are keyed by id and dropped when collected.
_WARM: dict[int, set] = {}
_WARM_LOCK = threading.Lock()


def _warm_keys(ai) -> set:
    with _WARM_LOCK:
        keys = _WARM.get(id(ai))
        if keys is None:
            keys = _WARM[id(ai)] = set()
            weakref.finalize(ai, _WARM.pop, id(ai), None)
        return keys


# ------------------------------------------------------------ per-thread integrator cache
_local = threading.local()
def cached_integrator(geometry: Geometry, variant: Any = None):
    """This thread's AzimuthalIntegrator for ``geometry`` (built once, then reused).

    pyFAI's integrators keep per-engine scratch buffers, so one integrator must never be
    used by two threads at the same time. The cache lives in a ``threading.local`` (one
    dict per thread, per process) keyed by the geometry value and an optional hashable
    ``variant`` (e.g. an azimuthal sector: pyFAI keeps one engine per method, so each
    sector gets its own integrator). Variants are shallow copies of the base integrator of
    the same thread, so they share its geometry arrays.
    """
    cache = getattr(_local, "cache", None)
    if cache is None or getattr(_local, "pid", None) != os.getpid():
        cache = _local.cache = {}
        _local.pid = os.getpid()
    key = (geometry, variant)
    ai = cache.get(key)
    if ai is None:
        if variant is None:
            ai = geometry.to_pyfai()
        else:
            import copy

            ai = copy.copy(cached_integrator(geometry, None))
        cache[key] = ai
    return ai


def clear_integrator_cache() -> None:
    """Drop this thread's cached integrators (frees their memory)."""
    _local.cache = {}
    _local.pid = os.getpid()


def sector_integrator(geometry: Geometry, sector: dict[str, Any] | None, shape, spec, mask):
    """This thread's integrator for one sector (variants share the base's geometry arrays)."""
    if sector is None:
        return cached_integrator(geometry)
    base = cached_integrator(geometry)
    warm_key = (shape, spec.unit, spec.method)
    warmed = _warm_keys(base)
    if ("base",) + warm_key not in warmed:
        # compute the geometry arrays once in the base so that every sector copy shares them
        base.integrate1d(np.zeros(shape, np.float32), spec.npt, mask=mask, **spec.pyfai_kwargs())
        base.reset_engines()
        warmed.add(("base",) + warm_key)
    variant = ("sector", sector["lo"], sector["hi"], sector["disc_at_pi"], warm_key)
    ai = cached_integrator(geometry, variant)
    if not sector["disc_at_pi"] and ai.chiDiscAtPi:
        ai.setChiDiscAtZero()
    return ai


def _token(value):
    """Hashable stand-in for an integrate1d argument (arrays by identity: they are cached)."""
    if isinstance(value, np.ndarray):
        return ("array", id(value), value.shape)
    return repr(value)


def integrate_frame(ai, img, spec, mask, azimuth_range, dark=None, flat=None):
    kwargs = spec.pyfai_kwargs()
    if spec.mask_negative and img.dtype.kind in "if":
        img = np.where(img < 0, img.dtype.type(-1), img)
        kwargs.update(dummy=-1.0, delta_dummy=0.0)
    if spec.error_model:
        kwargs["error_model"] = spec.error_model
    call = dict(radial_range=spec.radial_range, azimuth_range=azimuth_range, mask=mask, dark=dark,
                flat=flat, **kwargs)
    # The first call on an integrator builds its arrays and engine, evaluating pyFAI's unit
    # equations, which must not run in two threads at once (_threads.PYFAI_LOCK); later
    # calls reuse the engine and run in parallel.
    warm = _warm_keys(ai)
    key = (spec.npt,) + tuple(sorted((k, _token(v)) for k, v in call.items()))
    if key in warm:
        return ai.integrate1d(img, spec.npt, **call)
    from .._threads import PYFAI_LOCK

    with PYFAI_LOCK:
        res = ai.integrate1d(img, spec.npt, **call)
    warm.add(key)
    return res


def integrate_block(block, mask=None, dark=None, flat=None, *, geometry: Geometry, spec: IntegrationSpec,
                    sectors, out_dtype):
    """Integrate a block of whole frames (n, y, x) -> (n, npt) or (n, nsectors, npt)
    (with a last axis (intensity, error) of size 2 when an error model is asked for).

    pyFAI's ``integrate1d`` frame by frame (per sector), with this thread's cached integrator.
    """
    block = np.asarray(block)
    n = block.shape[0]
    npt = spec.npt
    nsec = len(sectors) if sectors else None
    errors = bool(spec.error_model)
    out = np.empty(((n, nsec, npt) if nsec else (n, npt)) + ((2,) if errors else ()), dtype=out_dtype)
    shape = block.shape[1:]
    flip = geometry.orientation == "flipud"
    if flip:  # dark and flat come as read; pyFAI sees the flipped image
        dark = None if dark is None else np.flipud(dark)
        flat = None if flat is None else np.flipud(flat)
    # One level of parallelism: dask runs blocks in parallel, so pyFAI's own OpenMP loops run
    # on one thread here (two levels oversubscribe the cores; same results either way).
    from .._threads import openmp_single_thread

    with openmp_single_thread():
        for i in range(n):
            img = np.flipud(block[i]) if flip else block[i]
            if nsec:
                for j, sec in enumerate(sectors):
                    ai = sector_integrator(geometry, sec, shape, spec, mask)
                    res = integrate_frame(ai, img, spec, mask, (sec["lo"], sec["hi"]), dark, flat)
                    if errors:
                        out[i, j, :, 0] = res.intensity
                        out[i, j, :, 1] = res.sigma
                    else:
                        out[i, j] = res.intensity
            else:
                ai = cached_integrator(geometry)
                res = integrate_frame(ai, img, spec, mask, None, dark, flat)
                if errors:
                    out[i, :, 0] = res.intensity
                    out[i, :, 1] = res.sigma
                else:
                    out[i] = res.intensity
    return out
