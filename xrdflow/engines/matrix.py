"""The fused engine applied to a dask block: this process's matrix for the integration
(built once, :mod:`.cache`), the invalid-pixel test pyFAI would use, and the kernels of
:mod:`.fused`.
"""

from __future__ import annotations

import numpy as np

from ..geometry import Geometry
from .pyfai import cached_integrator
from .cache import get_sparse
from .fused import MODE_DUMMY, MODE_FINITE, MODE_NEGATIVE, integrate_frames
from .sparse import build_sparse
from .spec import IntegrationSpec

__all__ = ["integrate_block", "process_sparse", "invalid_test"]


def invalid_test(geometry: Geometry, dtype, mask_negative: bool):
    """The fused engine's invalid-pixel test reproducing what the pyFAI path does for ``dtype``:
    negative pixels (``mask_negative`` on signed/float frames: pyFAI's dummy=-1 after clamping),
    else the detector's own dummy/delta_dummy if it has one (e.g. Pilatus: -2 +- 1.5), else
    non-finite values only. -> (mode, dummy, delta_dummy)"""
    dtype = np.dtype(dtype)
    if mask_negative and dtype.kind in "if":
        return MODE_NEGATIVE, None, None
    dummy, delta = cached_integrator(geometry).detector.get_dummies(dtype)
    if dummy is None:
        return MODE_FINITE, None, None
    return MODE_DUMMY, float(dummy), (None if delta is None else float(delta))


def process_sparse(geometry: Geometry, shape, spec: IntegrationSpec, sectors, mask, flat):
    """This process's matrix for the integration described by ``spec`` (built once)."""
    key = spec.engine_key
    if flat is not None and geometry.orientation == "flipud":
        flat = np.flipud(flat)  # build_sparse wants pyFAI's orientation (like the mask)

    def build():
        from .._threads import PYFAI_LOCK

        with PYFAI_LOCK:  # pyFAI's unit equations must not run in two threads at once
            return build_sparse(
                geometry, shape, npt=spec.npt, unit=spec.unit, radial_range=spec.radial_range,
                sectors=sectors, split=spec.method[0], mask=mask,
                correct_solid_angle=spec.correct_solid_angle,
                polarization_factor=spec.polarization_factor, flat=flat)

    return get_sparse(key, build)


def integrate_block(block, mask=None, dark=None, flat=None, *, geometry, spec: IntegrationSpec, sectors, out_dtype):
    """Integrate a block of whole frames with the fused engine (see :func:`.pyfai.integrate_block`)."""
    block = np.asarray(block)
    n = block.shape[0]
    npt = spec.npt
    nsec = len(sectors) if sectors else None
    sparse = process_sparse(geometry, block.shape[1:], spec, sectors, mask, flat)
    mode, dummy, delta = invalid_test(geometry, block.dtype, spec.mask_negative)
    errors = bool(spec.error_model)
    inten, err = integrate_frames(sparse, block, mode=mode, dummy=dummy, delta_dummy=delta,
                                          dark=dark, errors=errors)
    shape = (n, nsec, npt) if nsec else (n, npt)
    if errors:
        out = np.empty(shape + (2,), dtype=out_dtype)
        out[..., 0] = inten.reshape(shape)
        out[..., 1] = err.reshape(shape)
        return out
    return inten.reshape(shape).astype(out_dtype, copy=False)
