"""Numba kernels for batch Gaussian peak fitting (numbers only: no dask, xarray or h5py).

Model, fitted to each window ``x[i0:i1]`` of a pattern by (optionally weighted) least squares::

    y = c0 + c1 * (x - xc) + A * exp(-(x - x0)**2 / (2 * sigma**2))

with ``xc`` the centre of the window (so that c0 and c1 are nearly uncorrelated) and
``c1 = 0`` unless a linear background is asked for. Weights are 1, or ``1 / max(y, 1)``
(Poisson counting statistics).

Minimiser: a damped Newton method (Levenberg-Marquardt with Marquardt's ``diag(J^T W J)``
scaling and Nielsen's gain-ratio update of the damping). The Hessian is the exact one,
``J^T W J - sum(w r d2f)``: the second derivatives of the Gaussian cost two more sums per
point, and they make the fit converge quadratically also where the model misses the data
(a neighbour's tail in the window, a curved background), where Gauss-Newton only creeps
along in an oscillation. When that Hessian is not positive definite at the current damping
the step falls back to Gauss-Newton (``J^T W J``, always positive semi-definite).
Box constraints (``A >= 0``, ``x0`` inside the window, ``0.1 h <= sigma <= window width``)
are applied by projecting every trial step; a parameter on its bound with the descent
direction pointing out is held there (active set) while the others converge. Converged
when a step (relative to sigma for the centre and width, to the peak height plus background
for intensities) is below ``xtol``,
when the actual and predicted reductions of chi2 are both below ``ftol * chi2``, or when no
downhill step exists at any damping (the minimum to machine precision).
Starting values come from the data (background line through the window ends, height and
centroid of the part above half maximum, width from the half maximum crossings), or from
the fit of the previous frame (warm start).

Windows where that fit ends at the window edge, finds no peak or does not converge are
retried, since a neighbour's tail rising into one end of the window can mislead the start:
first from the maximum of the interior (the window without the monotonic runs at its ends),
then, if that fails too, by fitting that interior alone. The retry is kept only if it is
ok; ``F_NITER`` counts the steps of every attempt.

Speed (~2 us per 60-point fit on one core): per evaluation, the Gaussian values are computed
in one loop and the sums over the points (J^T W J, J^T W r, the second-order terms and
chi2, 19 of them) in a second; both are branch-free, compiled with reassociation allowed,
and LLVM vectorises them (SIMD over points; masked, non-finite points have weight 0).
Numba >= 0.62 has no SVML, so ``exp`` is written out (range reduction to ``2**m exp(r)``,
a degree-13 polynomial, ``2**m`` from its bits). The kernels below the allocating entry
points are compiled without the numba runtime (no reference counting of array views), and
nothing is allocated per fit: scratch buffers are made once per call (per thread block in
the parallel entry).

Each fit writes one row of ``NFIELD`` float64 numbers (see the ``F_*`` indices) and never
raises: a bad window gets a status code instead.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba
import numpy as np

__all__ = [
    "NFIELD",
    "F_POSITION",
    "F_POSITION_ERR",
    "F_SIGMA",
    "F_SIGMA_ERR",
    "F_AMPLITUDE",
    "F_AMPLITUDE_ERR",
    "F_BACKGROUND",
    "F_BACKGROUND_ERR",
    "F_SLOPE",
    "F_RESIDUAL",
    "F_NITER",
    "F_STATUS",
    "F_CHI2",
    "OK",
    "NOT_CONVERGED",
    "NO_PEAK",
    "PEAK_AT_EDGE",
    "BAD_INPUT",
    "FitOptions",
    "fit_batch",
    "fit_batch_parallel",
    "initial_guess",
]

# status codes (int8 in the public Dataset)
OK = 0
NOT_CONVERGED = 1
NO_PEAK = 2
PEAK_AT_EDGE = 3
BAD_INPUT = 4

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
NFIELD = 13

_NPMAX = 5
_UNIFORM_RTOL = 1e-9  # grid counted uniform if every point is within this * step of the line

_jit = numba.njit(cache=True, nogil=True, fastmath=False, error_model="numpy")
# Kernels that allocate nothing are compiled without the numba runtime (NRT): no atomic
# reference counting of every array view and argument, which otherwise costs more than the
# arithmetic of a 60-point fit. ``_nrt`` is an internal numba option (0.59-0.68 at least):
# where a numba release drops it, the kernels compile with the runtime, just slower.
try:
    from numba.core.cpu import CPUTargetOptions

    _NO_NRT = {"_nrt": False} if hasattr(CPUTargetOptions, "_nrt") else {}
except ImportError:  # pragma: no cover - numba internals moved
    _NO_NRT = {}
_jit_k = numba.njit(cache=True, nogil=True, fastmath=False, error_model="numpy", **_NO_NRT)


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


_READY = -1  # _start_values: the window is loaded and the start values are set
# starting values of a fit (_fit_window's ``start``)
_FROM_DATA = 0
_FROM_P = 1
_FROM_INTERIOR = 2


# FMA contraction, no signed zeros, reciprocal approximation allowed, but no reassociation
# and no "no NaN/inf" assumptions. Reassociation lets LLVM vectorize the sums (~20 % faster)
# but the order it picks differed between a kernel compiled fresh and the same kernel loaded
# from numba's cache (1e-13 in amplitudes), so a run split between processes was not
# bit-identical to a threaded one. Results must not depend on where they were computed.
_FASTMATH = {"contract", "nsz", "arcp"}
_jit_fm = numba.njit(cache=True, nogil=True, fastmath=_FASTMATH, error_model="numpy", **_NO_NRT)
NACC = 22
# indices into the sums array
_G0, _G1, _G2, _G3, _G4 = 0, 1, 2, 3, 4  # sum w g^2 t^k
_P0, _P1, _P2 = 5, 6, 7  # sum w g t^k
_Q0, _Q1, _Q2 = 8, 9, 10  # sum w g t^k u
_M0, _M1, _M2, _M3, _M4 = 11, 12, 13, 14, 15  # sum w r g t^k
_R0, _R1 = 16, 17  # sum w r, sum w r u
_CHI2 = 18
_W0, _W1, _W2 = 19, 20, 21  # sum w, sum w u, sum w u^2 (constant per window)


@_jit_k
def _load_window(x, y, i0, i1, uniform, h, xc, poisson, yb, wb, ub, acc):
    """Copy a window into the local buffers: y (0 where masked), weights, u = x - xc.

    Returns (number of finite points, min, max of the finite y). Fills acc[_W0:_W2+1].
    """
    n = i1 - i0
    nfinite = 0
    ymin = np.inf
    ymax = -np.inf
    u_first = x[i0] - xc
    w0 = w1 = w2 = 0.0
    for k in range(n):
        yk = y[i0 + k]
        u = u_first + k * h if uniform else x[i0 + k] - xc
        ub[k] = u
        if math.isfinite(yk):
            nfinite += 1
            if yk < ymin:
                ymin = yk
            if yk > ymax:
                ymax = yk
            yb[k] = yk
            w = 1.0 / max(yk, 1.0) if poisson else 1.0
            wb[k] = w
            w0 += w
            w1 += w * u
            w2 += w * u * u
        else:
            yb[k] = 0.0
            wb[k] = 0.0
    acc[_W0] = w0
    acc[_W1] = w1
    acc[_W2] = w2
    return nfinite, ymin, ymax


_LOG2E = 1.4426950408889634
_LN2 = 0.6931471805599453
_EXP_FLOOR = -300.0  # exp(-300) ~ 5e-131: below anything that matters, far above subnormals


@_jit_fm
def _gauss_values(ub, n, u0, s, gb, sb, ib):
    """gb[k] = exp(-(ub[k] - u0)**2 / (2 s**2)), SIMD over points.

    Numba has no vector ``exp`` (no SVML since numba 0.62), so it is written out:
    ``exp(a) = 2**m exp(r)``, ``m = round(a / ln 2)``, ``|r| <= ln(2) / 2``, ``exp(r)`` by its
    Taylor polynomial of degree 13 (relative error < 1e-16 on that range, ~1e-15 overall),
    ``2**m`` built from its bits through ``ib`` (an int64 view of ``sb``). The argument is
    floored at -300, so nothing is subnormal (that would slow every later product down).
    """
    inv_s = 1.0 / s
    for k in range(n):
        t = (ub[k] - u0) * inv_s
        a = max(-0.5 * t * t, _EXP_FLOOR)
        mf = math.floor(a * _LOG2E + 0.5)
        r = a - mf * _LN2
        e = 1.0 / 6227020800.0
        e = e * r + 1.0 / 479001600.0
        e = e * r + 1.0 / 39916800.0
        e = e * r + 1.0 / 3628800.0
        e = e * r + 1.0 / 362880.0
        e = e * r + 1.0 / 40320.0
        e = e * r + 1.0 / 5040.0
        e = e * r + 1.0 / 720.0
        e = e * r + 1.0 / 120.0
        e = e * r + 1.0 / 24.0
        e = e * r + 1.0 / 6.0
        e = e * r + 0.5
        e = e * r + 1.0
        e = e * r + 1.0
        gb[k] = e
        ib[k] = (np.int64(mf) + 1023) << 52
    for k in range(n):
        gb[k] *= sb[k]


@_jit_fm
def _sums(n, yb, wb, ub, gb, amp, u0, s, c0, c1, acc):
    """The 19 per-point sums at (amp, u0, s, c0, c1): one branch-free, vectorisable loop."""
    inv_s = 1.0 / s
    g0 = g1 = g2 = g3 = g4 = 0.0
    p0 = p1 = p2 = 0.0
    q0 = q1 = q2 = 0.0
    m0 = m1 = m2 = m3 = m4 = 0.0
    r0 = r1 = 0.0
    chi2 = 0.0
    for k in range(n):
        u = ub[k]
        w = wb[k]
        g = gb[k]
        t = (u - u0) * inv_s
        t2 = t * t
        r = yb[k] - (amp * g + c0 + c1 * u)
        wr = w * r
        wg = w * g
        wgg = wg * g
        wrg = wr * g
        g0 += wgg
        g1 += wgg * t
        g2 += wgg * t2
        g3 += wgg * t2 * t
        g4 += wgg * t2 * t2
        p0 += wg
        p1 += wg * t
        p2 += wg * t2
        q0 += wg * u
        q1 += wg * t * u
        q2 += wg * t2 * u
        m0 += wrg
        m1 += wrg * t
        m2 += wrg * t2
        m3 += wrg * t2 * t
        m4 += wrg * t2 * t2
        r0 += wr
        r1 += wr * u
        chi2 += wr * r
    acc[_G0] = g0
    acc[_G1] = g1
    acc[_G2] = g2
    acc[_G3] = g3
    acc[_G4] = g4
    acc[_P0] = p0
    acc[_P1] = p1
    acc[_P2] = p2
    acc[_Q0] = q0
    acc[_Q1] = q1
    acc[_Q2] = q2
    acc[_M0] = m0
    acc[_M1] = m1
    acc[_M2] = m2
    acc[_M3] = m3
    acc[_M4] = m4
    acc[_R0] = r0
    acc[_R1] = r1
    acc[_CHI2] = chi2


@_jit_k
def _evaluate(n, yb, wb, ub, gb, sb, ib, p, acc, jtj, jtr, hess):
    """chi2 at p = (A, u0, sigma, c0, c1) and J^T W J, J^T W r, the exact Hessian of chi2/2."""
    amp = p[0]
    u0 = p[1]
    s = p[2]
    _gauss_values(ub, n, u0, s, gb, sb, ib)
    _sums(n, yb, wb, ub, gb, amp, u0, s, p[3], p[4], acc)
    a = amp / s
    jtj[0, 0] = acc[_G0]
    jtj[0, 1] = jtj[1, 0] = a * acc[_G1]
    jtj[0, 2] = jtj[2, 0] = a * acc[_G2]
    jtj[0, 3] = jtj[3, 0] = acc[_P0]
    jtj[0, 4] = jtj[4, 0] = acc[_Q0]
    jtj[1, 1] = a * a * acc[_G2]
    jtj[1, 2] = jtj[2, 1] = a * a * acc[_G3]
    jtj[1, 3] = jtj[3, 1] = a * acc[_P1]
    jtj[1, 4] = jtj[4, 1] = a * acc[_Q1]
    jtj[2, 2] = a * a * acc[_G4]
    jtj[2, 3] = jtj[3, 2] = a * acc[_P2]
    jtj[2, 4] = jtj[4, 2] = a * acc[_Q2]
    jtj[3, 3] = acc[_W0]
    jtj[3, 4] = jtj[4, 3] = acc[_W1]
    jtj[4, 4] = acc[_W2]
    jtr[0] = acc[_M0]
    jtr[1] = a * acc[_M1]
    jtr[2] = a * acc[_M2]
    jtr[3] = acc[_R0]
    jtr[4] = acc[_R1]
    # Hessian of chi2/2: J^T W J - sum w r d2f/dp2 (f is linear in A, c0, c1)
    for i in range(5):
        for j in range(5):
            hess[i, j] = jtj[i, j]
    inv_s = 1.0 / s
    inv_s2 = inv_s * inv_s
    m0 = acc[_M0]
    m1 = acc[_M1]
    m2 = acc[_M2]
    m3 = acc[_M3]
    m4 = acc[_M4]
    hess[0, 1] -= m1 * inv_s
    hess[1, 0] = hess[0, 1]
    hess[0, 2] -= m2 * inv_s
    hess[2, 0] = hess[0, 2]
    hess[1, 1] -= amp * (m2 - m0) * inv_s2
    hess[1, 2] -= amp * (m3 - 2.0 * m1) * inv_s2
    hess[2, 1] = hess[1, 2]
    hess[2, 2] -= amp * (m4 - 3.0 * m2) * inv_s2
    return acc[_CHI2]


@_jit_k
def _cholesky(a, npar, lower):
    """lower <- Cholesky factor of the SPD matrix a[:npar, :npar]; False if not SPD."""
    for i in range(npar):
        for j in range(i + 1):
            acc = a[i, j]
            for k in range(j):
                acc -= lower[i, k] * lower[j, k]
            if i == j:
                if not (acc > 0.0):
                    return False
                lower[i, i] = math.sqrt(acc)
            else:
                lower[i, j] = acc / lower[j, j]
    return True


@_jit_k
def _cholesky_solve(lower, b, npar, out):
    """out <- a^-1 b with ``lower`` the Cholesky factor of a."""
    for i in range(npar):
        acc = b[i]
        for k in range(i):
            acc -= lower[i, k] * out[k]
        out[i] = acc / lower[i, i]
    for i in range(npar - 1, -1, -1):
        acc = out[i]
        for k in range(i + 1, npar):
            acc -= lower[k, i] * out[k]
        out[i] = acc / lower[i, i]


@_jit_k
def _inverse_diag(lower, npar, col, e, diag):
    """Diagonal of a^-1 from the Cholesky factor of a."""
    for j in range(npar):
        for i in range(npar):
            e[i] = 0.0
        e[j] = 1.0
        _cholesky_solve(lower, e, npar, col)
        diag[j] = col[j]


@_jit_k
def _grid_info(x, i0, i1):
    """(uniform, step) of the grid x[i0:i1]."""
    n = i1 - i0
    h = (x[i1 - 1] - x[i0]) / (n - 1)
    if not (h > 0.0):
        return False, h
    tol = _UNIFORM_RTOL * h
    for k in range(i0, i1):
        if abs(x[k] - (x[i0] + (k - i0) * h)) > tol:
            return False, h
    return True, h


@_jit_k
def _end_means(x, y, i0, i1):
    """(xa, ya, xb, yb): means of the first and of the last three finite points of x[i0:i1]."""
    na = 0
    xa = 0.0
    ya = 0.0
    for k in range(i0, i1):
        if math.isfinite(y[k]):
            xa += x[k]
            ya += y[k]
            na += 1
            if na == 3:
                break
    nb = 0
    xb = 0.0
    yb = 0.0
    for k in range(i1 - 1, i0 - 1, -1):
        if math.isfinite(y[k]):
            xb += x[k]
            yb += y[k]
            nb += 1
            if nb == 3:
                break
    xa /= na
    ya /= na
    xb /= nb
    yb /= nb
    return xa, ya, xb, yb


@_jit_k
def _left_crossing(x, y, i0, kmax, amax, half, xa, ya, slope):
    """(position, index) where the excess over the line falls below ``half`` left of kmax."""
    left = x[i0]
    kl = kmax
    while kl > i0:
        yk = y[kl - 1]
        if math.isfinite(yk):
            e = yk - (ya + slope * (x[kl - 1] - xa))
            if e < half:
                ek = y[kl] - (ya + slope * (x[kl] - xa)) if math.isfinite(y[kl]) else amax
                frac = (ek - half) / (ek - e) if ek != e else 0.5
                left = x[kl] - frac * (x[kl] - x[kl - 1])
                break
        kl -= 1
    return left, kl


@_jit_k
def _right_crossing(x, y, i1, kmax, amax, half, xa, ya, slope):
    """(position, index) where the excess over the line falls below ``half`` right of kmax."""
    right = x[i1 - 1]
    kr = kmax
    while kr < i1 - 1:
        yk = y[kr + 1]
        if math.isfinite(yk):
            e = yk - (ya + slope * (x[kr + 1] - xa))
            if e < half:
                ek = y[kr] - (ya + slope * (x[kr] - xa)) if math.isfinite(y[kr]) else amax
                frac = (ek - half) / (ek - e) if ek != e else 0.5
                right = x[kr] + frac * (x[kr + 1] - x[kr])
                break
        kr += 1
    return right, kr


@_jit_k
def initial_guess(x, y, i0, i1, linear, p):
    """Moment-based starting values into ``p`` (A, x0, sigma, c0, c1). Returns False if flat.

    Background: the line through the means of the first and last three finite points.
    Height: the largest excess over that line. Centre: centroid of the excess over the
    points above half maximum. Width: the distance between the half-maximum crossings
    (linearly interpolated) divided by 2 sqrt(2 ln 2).
    """
    xc = 0.5 * (x[i0] + x[i1 - 1])
    xa, ya, xb, yb = _end_means(x, y, i0, i1)
    slope = (yb - ya) / (xb - xa) if xb != xa else 0.0
    if not linear:
        slope = 0.0
        base = min(ya, yb)
        ya = base
    kmax = -1
    amax = -np.inf
    for k in range(i0, i1):
        yk = y[k]
        if math.isfinite(yk):
            e = yk - (ya + slope * (x[k] - xa))
            if e > amax:
                amax = e
                kmax = k
    if kmax < 0 or not (amax > 0.0):
        return False
    half = 0.5 * amax
    left, kl = _left_crossing(x, y, i0, kmax, amax, half, xa, ya, slope)
    right, kr = _right_crossing(x, y, i1, kmax, amax, half, xa, ya, slope)
    sw = 0.0
    sx = 0.0
    for k in range(kl, kr + 1):
        yk = y[k]
        if math.isfinite(yk):
            e = yk - (ya + slope * (x[k] - xa))
            if e > 0.0:
                sw += e
                sx += e * x[k]
    x0 = sx / sw if sw > 0.0 else x[kmax]
    h = (x[i1 - 1] - x[i0]) / (i1 - i0 - 1)
    sigma = (right - left) / 2.3548200450309493
    if sigma < 0.5 * h:
        sigma = 0.5 * h
    width = x[i1 - 1] - x[i0]
    if sigma > 0.5 * width:
        sigma = 0.5 * width
    p[0] = amax
    p[1] = x0
    p[2] = sigma
    p[3] = ya + slope * (xc - xa)
    p[4] = slope
    return True


@_jit_k
def _interior(y, i0, i1):
    """(kl, kr): the window x[i0:i1] without the monotonic runs at its ends.

    A neighbour's tail entering the window makes the data rise monotonically towards that
    end. Cutting such runs off (from each end inwards while the data keep falling) leaves the
    interior, ``x[kl:kr]``. ``kl = -1`` if nothing was cut or less than a third is left.
    """
    kl = i0
    while kl < i1 - 1:
        a = y[kl]
        b = y[kl + 1]
        if math.isfinite(a) and math.isfinite(b) and b > a:
            break
        kl += 1
    kr = i1 - 1
    while kr > kl:
        a = y[kr]
        b = y[kr - 1]
        if math.isfinite(a) and math.isfinite(b) and b > a:
            break
        kr -= 1
    if 3 * (kr + 1 - kl) < i1 - i0 or (kl == i0 and kr == i1 - 1) or kr - kl < 6:
        return -1, -1
    return kl, kr + 1


@_jit_k
def _interior_guess(x, y, i0, i1, linear, p):
    """Starting values from the interior of the window (:func:`_interior`); c0 at the
    centre of the whole window. False if there is no such interior or no peak in it."""
    kl, kr = _interior(y, i0, i1)
    if kl < 0:
        return False
    if not initial_guess(x, y, kl, kr, linear, p):
        return False
    p[3] += p[4] * (0.5 * (x[i0] + x[i1 - 1]) - 0.5 * (x[kl] + x[kr - 1]))
    return True


@_jit_k
def _project(p, xlo, xhi, smin, smax):
    if p[0] < 0.0:
        p[0] = 0.0
    if p[1] < xlo:
        p[1] = xlo
    elif p[1] > xhi:
        p[1] = xhi
    if p[2] < smin:
        p[2] = smin
    elif p[2] > smax:
        p[2] = smax


@_jit_k
def _active_set(p, jtr, ulo, uhi, smin, smax, active):
    """Flag (1.0) A, u0, sigma where on a bound with the descent direction ``jtr`` outwards."""
    active[0] = 1.0 if (p[0] <= 0.0 and jtr[0] <= 0.0) else 0.0
    out1 = (p[1] <= ulo and jtr[1] <= 0.0) or (p[1] >= uhi and jtr[1] >= 0.0)
    active[1] = 1.0 if out1 else 0.0
    out2 = (p[2] <= smin and jtr[2] <= 0.0) or (p[2] >= smax and jtr[2] >= 0.0)
    active[2] = 1.0 if out2 else 0.0
    return int(active[0] + active[1] + active[2])


@_jit_k
def _step_size(p, ptry, linear, width):
    """Largest parameter change relative to its natural scale."""
    scale_y = abs(ptry[0]) + abs(ptry[3]) + 1e-300
    rel = abs(ptry[0] - p[0]) / scale_y
    rel = max(rel, abs(ptry[1] - p[1]) / ptry[2])
    rel = max(rel, abs(ptry[2] - p[2]) / ptry[2])
    rel = max(rel, abs(ptry[3] - p[3]) / scale_y)
    if linear:
        rel = max(rel, abs(ptry[4] - p[4]) * width / scale_y)
    return rel


@_jit_k
def _start_values(x, y, i0, i1, uniform, h, opts, p, start, buf, acc):
    """Load the window into ``buf`` and put the starting values in ``p``.

    ``p`` gets (A, u0, sigma, c0, c1) with the centre as ``u0 = x0 - xc`` (better
    conditioned). Returns ``(status, nfinite)``: ``status`` is ``_READY`` when the fit can
    iterate, else the final status of the window (``BAD_INPUT``, ``NO_PEAK``).
    """
    npar = 5 if opts.linear else 4
    n = i1 - i0
    if n < 2 or not (x[i1 - 1] > x[i0]):
        return BAD_INPUT, 0
    xlo = x[i0]
    xhi = x[i1 - 1]
    xc = 0.5 * (xlo + xhi)
    nfinite, ymin, ymax = _load_window(x, y, i0, i1, uniform, h, xc, opts.poisson, buf[0], buf[1], buf[2],
                                       acc)
    if nfinite < max(opts.min_points, npar + 1) or 2 * nfinite < n:
        return BAD_INPUT, nfinite
    if not (ymax > ymin):
        return NO_PEAK, nfinite
    smin = 0.1 * h  # narrower is a one-bin spike (zinger), not a resolvable peak
    smax = xhi - xlo
    if start == _FROM_DATA:
        if not initial_guess(x, y, i0, i1, opts.linear, p):
            return NO_PEAK, nfinite
    elif start == _FROM_INTERIOR:
        if not _interior_guess(x, y, i0, i1, opts.linear, p):
            return NO_PEAK, nfinite
    if not opts.linear:
        p[4] = 0.0
    _project(p, xlo, xhi, smin, smax)
    if p[0] <= 0.0:
        p[0] = ymax - ymin
    p[1] -= xc
    return _READY, nfinite


@_jit_k
def _newton_step(jtj, hess, jtr, p, npar, lam, maxdiag, ulo, uhi, smin, smax, m, lower, rhs, active, dp):
    """The damped Newton step ``dp``, parameters on an active bound held.

    Gauss-Newton (``J^T W J``) if the exact Hessian is not positive definite, then more
    damping until solvable. Returns ``(lam, use_hess)``; ``lam > 1e16`` if nothing is.
    """
    for i in range(npar):
        rhs[i] = jtr[i]
    # bounds: a parameter on its bound with the descent direction pointing out is held
    # there (active set), so the other parameters converge instead of being dragged
    nact = _active_set(p, jtr, ulo, uhi, smin, smax, active)
    use_hess = True
    while True:
        hm = hess if use_hess else jtj
        for i in range(npar):
            for j in range(npar):
                m[i, j] = hm[i, j]
            m[i, i] = hm[i, i] + lam * (jtj[i, i] + 1e-12 * maxdiag)
        if nact > 0:
            for i in range(3):
                if active[i]:
                    for j in range(npar):
                        m[i, j] = 0.0
                        m[j, i] = 0.0
                    m[i, i] = 1.0
                    rhs[i] = 0.0
        if _cholesky(m, npar, lower):
            _cholesky_solve(lower, rhs, npar, dp)
            break
        if use_hess:
            use_hess = False
        else:
            lam *= 10.0
            if lam > 1e16:
                break
    return lam, use_hess


@_jit_k
def _predicted_reduction(hm, jtr, p, ptry, npar):
    """Reduction of chi2 the quadratic model predicts for the step p -> ptry: 2 h.J^T r - h.H.h."""
    pred = 0.0
    for i in range(npar):
        hi_ = ptry[i] - p[i]
        acc_i = 0.0
        for j in range(npar):
            acc_i += hm[i, j] * (ptry[j] - p[j])
        pred += hi_ * (2.0 * jtr[i] - acc_i)
    return pred


@_jit_k
def _accept(p, ptry, jtr, jtr2, jtj, jtj2, hess, hess2):
    """The trial point becomes the current one (parameters, gradient, J^T W J, Hessian)."""
    for i in range(5):
        p[i] = ptry[i]
        jtr[i] = jtr2[i]
        for j in range(5):
            jtj[i, j] = jtj2[i, j]
            hess[i, j] = hess2[i, j]


@_jit_k
def _iterate(n, npar, width, ulo, uhi, smin, smax, opts, p, buf, acc, mats, vecs):
    """Levenberg-Marquardt from ``p`` (centre as u0); ``p`` holds the optimum on return.

    Returns ``(chi2, n_iter, converged)``; ``mats[0]`` is then J^T W J at ``p``.
    """
    yb = buf[0]
    wb = buf[1]
    ub = buf[2]
    gb = buf[3]
    sb = buf[4]
    ib = sb.view(np.int64)
    jtj = mats[0]
    hess = mats[1]
    jtj2 = mats[2]
    hess2 = mats[3]
    jtr = vecs[0]
    jtr2 = vecs[1]
    dp = vecs[2]
    ptry = vecs[3]
    chi2 = _evaluate(n, yb, wb, ub, gb, sb, ib, p, acc, jtj, jtr, hess)
    lam = 1e-3
    nu = 2.0
    converged = False
    it = 0
    while it < opts.max_iter:
        maxdiag = 0.0
        for i in range(npar):
            maxdiag = max(maxdiag, jtj[i, i])
        if not (maxdiag > 0.0) or not math.isfinite(chi2):
            break
        lam, use_hess = _newton_step(jtj, hess, jtr, p, npar, lam, maxdiag, ulo, uhi, smin, smax,
                                     mats[4], mats[5], vecs[6], vecs[7], dp)
        if lam > 1e16:
            converged = True  # nothing solvable: flat to machine precision
            break
        for i in range(npar):
            ptry[i] = p[i] + dp[i]
        if not opts.linear:
            ptry[4] = 0.0
        _project(ptry, ulo, uhi, smin, smax)
        rel = _step_size(p, ptry, opts.linear, width)
        if rel <= opts.xtol:
            if lam > 1e-2:
                # tiny only because heavily damped: look again with less damping
                lam = 1e-2
                continue
            # the next (nearly undamped) step is below tolerance: take it, no evaluation
            for i in range(5):
                p[i] = ptry[i]
            converged = True
            break
        it += 1
        chi2_try = _evaluate(n, yb, wb, ub, gb, sb, ib, ptry, acc, jtj2, jtr2, hess2)
        pred = _predicted_reduction(hess if use_hess else jtj, jtr, p, ptry, npar)
        actual = chi2 - chi2_try
        if actual >= 0.0 and math.isfinite(chi2_try):
            rho = actual / pred if pred > 0.0 else 1.0
            _accept(p, ptry, jtr, jtr2, jtj, jtj2, hess, hess2)
            chi2 = chi2_try
            c = 2.0 * rho - 1.0
            lam *= max(1.0 / 3.0, 1.0 - c * c * c)
            if lam < 1e-12:
                lam = 1e-12
            nu = 2.0
            if actual <= opts.ftol * chi2 and 0.0 <= pred <= opts.ftol * chi2:
                converged = True
                break
        else:
            lam *= nu
            nu *= 2.0
            if lam > 1e16:
                converged = True  # no downhill step at any damping: the minimum
                break
    return chi2, it, converged


@_jit_k
def _finish(xlo, xhi, h, smin, smax, nfinite, npar, chi2, it, converged, opts, p, mats, vecs, res):
    """Values, errors and status of a fit into ``res``; ``p`` at the optimum (centre x0).

    Errors from the covariance ``(J^T W J)^-1 * chi2 / dof`` (as scipy's curve_fit with
    ``absolute_sigma=False``), with J^T W J in ``mats[0]``.
    """
    xc = 0.5 * (xlo + xhi)
    jtj = mats[0]
    lower = mats[5]
    dp = vecs[2]
    work = vecs[4]
    diag = vecs[5]
    res[F_NITER] = it
    res[F_CHI2] = chi2
    dof = nfinite - npar
    var = chi2 / dof if dof > 0 else np.nan
    have_cov = _cholesky(jtj, npar, lower)
    if have_cov:
        _inverse_diag(lower, npar, dp, work, diag)
    amp = p[0]
    res[F_POSITION] = p[1]
    res[F_SIGMA] = p[2]
    res[F_AMPLITUDE] = amp
    res[F_SLOPE] = p[4]
    res[F_BACKGROUND] = p[3] + p[4] * (p[1] - xc)
    res[F_RESIDUAL] = math.sqrt(var) if dof > 0 else np.nan
    if have_cov:
        res[F_AMPLITUDE_ERR] = math.sqrt(max(diag[0], 0.0) * var)
        res[F_POSITION_ERR] = math.sqrt(max(diag[1], 0.0) * var)
        res[F_SIGMA_ERR] = math.sqrt(max(diag[2], 0.0) * var)
        if opts.linear:
            # background at x0: var(c0) + 2 (x0-xc) cov(c0,c1) + (x0-xc)^2 var(c1) (x0 held fixed)
            for i in range(5):
                work[i] = 0.0
            work[3] = 1.0
            work[4] = p[1] - xc
            _cholesky_solve(lower, work, npar, dp)
            vb = work[3] * dp[3] + work[4] * dp[4]
            res[F_BACKGROUND_ERR] = math.sqrt(max(vb, 0.0) * var)
        else:
            res[F_BACKGROUND_ERR] = math.sqrt(max(diag[3], 0.0) * var)
    # classification
    if (
        not (amp > 0.0)
        or not have_cov
        or p[2] >= smax * (1.0 - 1e-9)
        or p[2] <= smin * (1.0 + 1e-9)
        or amp < opts.min_snr * res[F_AMPLITUDE_ERR]
    ):
        status = NO_PEAK
    elif p[1] - xlo < h or xhi - p[1] < h:
        status = PEAK_AT_EDGE
    elif not converged:
        status = NOT_CONVERGED
    else:
        status = OK
    res[F_STATUS] = status


@_jit_k
def _fit_window(x, y, i0, i1, uniform, h, opts, p, start, buf, acc, mats, vecs, res):
    """Fit one window; ``p`` holds (A, x0, sigma, c0, c1) on return. Fills ``res``.

    ``start`` (int64): ``_FROM_DATA`` data-based starting values (:func:`initial_guess`),
    ``_FROM_P`` the values in ``p`` (warm start), ``_FROM_INTERIOR`` the interior guess
    (:func:`_interior_guess`). Three steps: starting
    values (:func:`_start_values`), iterations (:func:`_iterate`), values, errors and
    status (:func:`_finish`).

    ``buf`` is float64[5, nmax] scratch (y, w, u, g, spare), ``acc`` float64[NACC],
    ``mats`` float64[6, 5, 5], ``vecs`` float64[8, 5]. Nothing is allocated here.
    """
    for f in range(NFIELD):
        res[f] = np.nan
    res[F_NITER] = 0.0
    status, nfinite = _start_values(x, y, i0, i1, uniform, h, opts, p, start, buf, acc)
    if status != _READY:
        res[F_STATUS] = status
        return
    npar = 5 if opts.linear else 4
    xlo = x[i0]
    xhi = x[i1 - 1]
    xc = 0.5 * (xlo + xhi)
    smin = 0.1 * h
    smax = xhi - xlo
    chi2, it, converged = _iterate(i1 - i0, npar, xhi - xlo, xlo - xc, xhi - xc, smin, smax, opts, p, buf,
                                   acc, mats, vecs)
    p[1] += xc
    _finish(xlo, xhi, h, smin, smax, nfinite, npar, chi2, it, converged, opts, p, mats, vecs, res)


@_jit_k
def _retry_inside(x, yrow, i0, i1, uniform, h, opts, p, buf, acc, mats, vecs, res, keep):
    """Retry a window that ended at its edge, found no peak or did not converge.

    A neighbour's tail may have misled the start: retry from the interior maximum, then by
    fitting the interior alone; keep the retry only if it is ok (else the first result and
    its parameters come back). ``F_NITER`` counts every attempt.
    """
    keep_p = keep[NFIELD:]
    for i in range(NFIELD):
        keep[i] = res[i]
    for i in range(_NPMAX):
        keep_p[i] = p[i]
    _fit_window(x, yrow, i0, i1, uniform, h, opts, p, np.int64(_FROM_INTERIOR), buf, acc, mats, vecs, res)
    niter = res[F_NITER]
    if res[F_STATUS] != OK:
        # no peak inside with the tail included: fit the interior alone
        kl, kr = _interior(yrow, i0, i1)
        if kl >= 0:
            _fit_window(x, yrow, kl, kr, uniform, h, opts, p, np.int64(_FROM_DATA), buf, acc, mats, vecs, res)
            niter += res[F_NITER]
            res[F_NITER] = niter
            # c0 at the centre of the whole window (warm start)
            p[3] += p[4] * (0.5 * (x[i0] + x[i1 - 1]) - 0.5 * (x[kl] + x[kr - 1]))
    if res[F_STATUS] != OK:
        for i in range(NFIELD):
            res[i] = keep[i]
        for i in range(_NPMAX):
            p[i] = keep_p[i]
    res[F_NITER] = keep[F_NITER] + niter


@_jit_k
def _fit_range(x, y, lo, hi, warm_start, opts, out, f_start, f_stop, uniform, step, buf, acc, mats, vecs,
               p, prev, prev_ok, keep):
    """Fit frames f_start..f_stop-1 with the given scratch (no NRT, no allocation)."""
    nb = y.shape[1]
    npk = lo.shape[0]
    for fi in range(f_start, f_stop):
        for b in range(nb):
            yrow = y[fi, b]
            for j in range(npk):
                res = out[fi, b, j]
                use_p = False
                if warm_start and prev_ok[b, j]:
                    for i in range(_NPMAX):
                        p[i] = prev[b, j, i]
                    use_p = True
                start = np.int64(_FROM_P if use_p else _FROM_DATA)
                _fit_window(x, yrow, lo[j], hi[j], uniform[j], step[j], opts, p, start, buf, acc, mats, vecs,
                            res)
                if use_p and res[F_STATUS] != OK:
                    # the warm start led astray (or the peak vanished): start afresh
                    _fit_window(x, yrow, lo[j], hi[j], uniform[j], step[j], opts, p, np.int64(_FROM_DATA),
                                buf, acc, mats, vecs, res)
                st = res[F_STATUS]
                if st == PEAK_AT_EDGE or st == NO_PEAK or st == NOT_CONVERGED:
                    _retry_inside(x, yrow, lo[j], hi[j], uniform[j], step[j], opts, p, buf, acc, mats,
                                  vecs, res, keep)
                if warm_start:
                    prev_ok[b, j] = res[F_STATUS] == OK
                    for i in range(_NPMAX):
                        prev[b, j, i] = p[i]


@_jit
def _fit_rows(x, y, lo, hi, warm_start, opts, out, f_start, f_stop):
    """Fit frames f_start..f_stop-1 of y[frame, batch, radial] (serial)."""
    nb = y.shape[1]
    npk = lo.shape[0]
    nmax = 2
    for j in range(npk):
        nmax = max(nmax, hi[j] - lo[j])
    # scratch, made once per call: nothing is allocated per fit
    buf = np.zeros((5, nmax))
    acc = np.zeros(NACC)
    mats = np.zeros((6, _NPMAX, _NPMAX))
    vecs = np.zeros((8, _NPMAX))
    p = np.zeros(_NPMAX)
    keep = np.zeros(NFIELD + _NPMAX)
    uniform = np.zeros(npk, dtype=np.bool_)
    step = np.zeros(npk)
    for j in range(npk):
        if hi[j] - lo[j] >= 2:
            uniform[j], step[j] = _grid_info(x, lo[j], hi[j])
    prev = np.zeros((nb if warm_start else 1, npk if warm_start else 1, _NPMAX))
    prev_ok = np.zeros((nb if warm_start else 1, npk if warm_start else 1), dtype=np.bool_)
    _fit_range(x, y, lo, hi, warm_start, opts, out, f_start, f_stop, uniform, step, buf, acc, mats, vecs,
               p, prev, prev_ok, keep)


@_jit
def _options(linear, poisson, max_iter, xtol, ftol, min_snr, min_points):
    """FitOptions with fixed field types (bool, bool, int64, float64 x3, int64), whatever
    the types of the arguments: one specialization of every kernel below the entry points."""
    return FitOptions(bool(linear), bool(poisson), np.int64(max_iter), np.float64(xtol), np.float64(ftol),
                      np.float64(min_snr), np.int64(min_points))


@_jit
def _fit_frames(x, y, lo, hi, linear, warm_start, max_iter, xtol, ftol, min_snr, min_points, out, f_start,
                f_stop, poisson):
    """:func:`_fit_rows` from the entry points' scalar arguments."""
    opts = _options(linear, poisson, max_iter, xtol, ftol, min_snr, min_points)
    _fit_rows(x, y, lo, hi, warm_start, opts, out, f_start, f_stop)


@_jit
def fit_batch(x, y, lo, hi, linear, warm_start, max_iter, xtol, ftol, min_snr, min_points, out,
              poisson=False):
    """Fit every window of every pattern, single-threaded (use this inside dask tasks).

    Parameters
    ----------
    x : float64[nx]
        Radial grid, strictly increasing.
    y : float[nframe, nbatch, nx]
        Patterns; the warm start goes along axis 0.
    lo, hi : int64[npeak]
        Window ``j`` is ``x[lo[j]:hi[j]]``.
    linear : bool
        Fit a linear (else constant) background.
    warm_start : bool
        Start each fit from the previous frame's result when that was ok.
    max_iter : int
        Maximum number of trial steps (model evaluations after the first).
    xtol, ftol : float
        Converged when the next step changes every parameter by less than ``xtol``
        (relative to sigma for the centre and width, to the peak height plus background for
        intensities), or when an accepted step reduced the sum of squares, and the quadratic
        model predicted it would, by less than ``ftol`` relatively.
    min_snr : float
        ``amplitude < min_snr * amplitude_error`` is reported as ``NO_PEAK``.
    min_points : int
        Fewer finite points than this (or than half the window) is ``BAD_INPUT``.
    out : float64[nframe, nbatch, npeak, NFIELD]
        Results (see ``F_*``).
    poisson : bool, optional
        Weight each point by ``1 / max(y, 1)`` (counting statistics); ``F_CHI2`` is then the
        weighted sum of squares and the errors are scaled by ``sqrt(chi2 / dof)`` as with
        unit weights (that factor is ~1 for Poisson data).

    Examples
    --------
    >>> x = np.linspace(0.0, 2.0, 201)
    >>> y = (10 + 100 * np.exp(-((x - 1.02) ** 2) / (2 * 0.05**2)))[None, None, :]
    >>> out = np.empty((1, 1, 1, NFIELD))
    >>> fit_batch(x, y, np.array([50]), np.array([151]), True, False, 100, 1e-8, 1e-12, 3.0, 7, out)
    >>> round(float(out[0, 0, 0, F_POSITION]), 9), int(out[0, 0, 0, F_STATUS]) == OK
    (1.02, True)
    """
    _fit_frames(x, y, lo, hi, linear, warm_start, max_iter, xtol, ftol, min_snr, min_points, out,
                np.int64(0), y.shape[0], poisson)


@numba.njit(cache=False, nogil=True, parallel=True, error_model="numpy")
def fit_batch_parallel(x, y, lo, hi, linear, warm_start, max_iter, xtol, ftol, min_snr,
                       min_points, out, poisson=False):
    """Same as :func:`fit_batch`, threads over blocks of frames (``numba.set_num_threads``).

    For one big eager call with dask off; never call it from inside a dask task.
    With ``warm_start`` each block of frames starts cold. Blocks are contiguous runs of
    frames (each thread writes its own part of ``out``), 4 per thread for load balance.
    """
    nf = y.shape[0]
    nblocks = min(nf, 4 * numba.get_num_threads())
    for ib in numba.prange(nblocks):
        f0 = (ib * nf) // nblocks
        f1 = ((ib + 1) * nf) // nblocks
        # scalars only into the parallel body (a named tuple there is not typed by parfors)
        _fit_frames(x, y, lo, hi, linear, warm_start, max_iter, xtol, ftol, min_snr, min_points, out,
                    f0, f1, poisson)
