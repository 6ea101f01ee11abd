"""Shared by the fit kernels: the numba flavours, the output layout, status codes, options."""

from __future__ import annotations

from typing import NamedTuple

import numba

# status codes (int8 in the public Dataset)
OK = 0
NOT_CONVERGED = 1
NO_PEAK = 2
PEAK_AT_EDGE = 3
BAD_INPUT = 4
PEAK_ABSENT = 5  # general kernel: a listed peak that the fit finds absent (too weak, or no width)

# output fields, last axis of ``out``
F_POSITION = 0
F_POSITION_ERR = 1
F_SIGMA = 2
F_SIGMA_ERR = 3
F_AMPLITUDE = 4
F_AMPLITUDE_ERR = 5
F_BACKGROUND = 6  # background at the fitted centre
F_BACKGROUND_ERR = 7
F_SLOPE = 8  # background slope (0 for a constant background)
F_RESIDUAL = 9  # root-mean-square residual, sqrt(chi2 / (n - p))
F_NITER = 10
F_STATUS = 11
F_CHI2 = 12  # sum of squared residuals
F_COV_AS = 13  # covariance of amplitude and sigma (for the area's error)
NFIELD = 14

#: most parameters of a peak model (A, x0, sigma, c0, c1)
NPMAX = 5

jit = numba.njit(cache=True, nogil=True, fastmath=False, error_model="numpy")
# Kernels that allocate nothing are compiled without the numba runtime (NRT): no atomic
# reference counting of every array view and argument, which otherwise costs more than the
# arithmetic of a 60-point fit. ``_nrt`` is an internal numba option (0.59-0.68 at least):
# where a numba release drops it, the kernels compile with the runtime, just slower.
try:
    from numba.core.cpu import CPUTargetOptions

    NO_NRT = {"_nrt": False} if hasattr(CPUTargetOptions, "_nrt") else {}
except ImportError:  # pragma: no cover - numba internals moved
    NO_NRT = {}
jit_kernel = numba.njit(cache=True, nogil=True, fastmath=False, error_model="numpy", **NO_NRT)

# FMA contraction, no signed zeros, reciprocal approximation allowed, but no reassociation
# and no "no NaN/inf" assumptions. Reassociation lets LLVM vectorize the sums (~20 % faster)
# but the order it picks differed between a kernel compiled fresh and the same kernel loaded
# from numba's cache (1e-13 in amplitudes), so a run split between processes was not
# bit-identical to a threaded one. Results must not depend on where they were computed.
_FASTMATH = {"contract", "nsz", "arcp"}
jit_fastmath = numba.njit(cache=True, nogil=True, fastmath=_FASTMATH, error_model="numpy", **NO_NRT)


class FitOptions(NamedTuple):
    """The options of every fit in a batch: a named tuple (numba types it), made by the entry
    points from their scalar arguments with fixed field types, so the kernels below them
    have one specialization."""

    linear: bool  #: linear (else constant) background
    poisson: bool  #: weights 1 / max(y, 1), else 1
    max_iter: int  #: maximum number of trial steps
    xtol: float  #: step tolerance (relative)
    ftol: float  #: chi2 reduction tolerance (relative)
    min_snr: float  #: amplitude < min_snr * error is NO_PEAK
    min_points: int  #: fewer finite points is BAD_INPUT

