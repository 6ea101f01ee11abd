"""Numba kernels for batch Gaussian peak fitting (numbers only: no dask, xarray or h5py).

Model, fitted to each window ``x[i0:i1]`` of a pattern by least squares::

    y = c0 + c1 * (x - xc) + A * exp(-(x - x0)**2 / (2 * sigma**2))

with ``xc`` the centre of the window (so that c0 and c1 are nearly uncorrelated) and
``c1 = 0`` unless a linear background is asked for. The minimiser is Levenberg-Marquardt
(Marquardt's diagonal scaling) with an analytic Jacobian and box constraints
(``A >= 0``, ``x0`` inside the window, ``0 < sigma_min <= sigma <= window width``) applied
by projecting every trial step. Starting values come from the data (background line through
the window ends, height and centroid of the part above half maximum, width from the half
maximum crossings), or from the fit of the previous frame (warm start).

On a uniform grid (what pyFAI produces) the Gaussian is evaluated with 4 ``exp`` calls per
window instead of one per point: going outwards from the point nearest ``x0`` the ratio of
successive values is itself a geometric sequence (``g[k+1]/g[k] = exp(-t_k d - d**2/2)``,
and that ratio is multiplied by ``exp(-d**2)`` at every step, ``d = h / sigma``). Values only
shrink going outwards, so the recurrence cannot overflow; its relative error is ~n**2 eps.
Non-uniform grids use one ``exp`` per point.

Each fit writes one row of ``NFIELD`` float64 numbers (see the ``F_*`` indices) and never
raises: a bad window gets a status code instead.
"""

from __future__ import annotations

import math

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
    "fit_batch",
    "fit_batch_parallel",
    "initial_guess",
    "gaussian",
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


@_jit
def gaussian(x, amplitude, center, sigma, c0, c1, xc):
    """Model values on ``x`` (for tests and plots)."""
    out = np.empty(x.shape[0])
    for k in range(x.shape[0]):
        u = (x[k] - center) / sigma
        out[k] = c0 + c1 * (x[k] - xc) + amplitude * math.exp(-0.5 * u * u)
    return out


@_jit
def _accumulate(x, y, i0, i1, p, linear, xc, uniform, h, jtj, jtr, want_jac):
    """Sum of squared residuals at ``p`` and, if ``want_jac``, J^T J and J^T r.

    Non-finite data points are skipped. Returns chi2.
    """
    amp = p[0]
    x0 = p[1]
    s = p[2]
    c0 = p[3]
    c1 = p[4]
    inv_s = 1.0 / s
    s00 = s01 = s02 = s03 = s04 = 0.0
    s11 = s12 = s13 = s14 = 0.0
    s22 = s23 = s24 = 0.0
    s33 = s34 = s44 = 0.0
    r0 = r1 = r2 = r3 = r4 = 0.0
    chi2 = 0.0
    if uniform:
        xs = x[i0]
        d = h * inv_s
        k0 = int(math.floor((x0 - xs) / h + 0.5)) + i0
        if k0 < i0:
            k0 = i0
        if k0 > i1 - 1:
            k0 = i1 - 1
        t0 = (xs + (k0 - i0) * h - x0) * inv_s
        g0 = math.exp(-0.5 * t0 * t0)
        q = math.exp(-d * d)
        # two passes: upwards from k0 (direction +1), then downwards from k0 - 1
        for direction in range(2):
            if direction == 0:
                g = g0
                ratio = math.exp(-t0 * d - 0.5 * d * d)
                k = k0
                kstop = i1
                step = 1
                t = t0
            else:
                ratio = math.exp(t0 * d - 0.5 * d * d)
                g = g0 * ratio
                ratio *= q
                k = k0 - 1
                kstop = i0 - 1
                step = -1
                t = t0 - d
            while k != kstop:
                yk = y[k]
                if math.isfinite(yk):
                    xk = xs + (k - i0) * h
                    dx = xk - xc
                    f = amp * g + c0
                    if linear:
                        f += c1 * dx
                    r = yk - f
                    chi2 += r * r
                    if want_jac:
                        j0 = g
                        j1 = amp * g * t * inv_s
                        j2 = j1 * t
                        s00 += j0 * j0
                        s01 += j0 * j1
                        s02 += j0 * j2
                        s03 += j0
                        s11 += j1 * j1
                        s12 += j1 * j2
                        s13 += j1
                        s22 += j2 * j2
                        s23 += j2
                        s33 += 1.0
                        r0 += j0 * r
                        r1 += j1 * r
                        r2 += j2 * r
                        r3 += r
                        if linear:
                            s04 += j0 * dx
                            s14 += j1 * dx
                            s24 += j2 * dx
                            s34 += dx
                            s44 += dx * dx
                            r4 += dx * r
                if direction == 0:
                    g *= ratio
                    ratio *= q
                    t += d
                else:
                    g *= ratio
                    ratio *= q
                    t -= d
                k += step
    else:
        for k in range(i0, i1):
            yk = y[k]
            if not math.isfinite(yk):
                continue
            xk = x[k]
            t = (xk - x0) * inv_s
            g = math.exp(-0.5 * t * t)
            dx = xk - xc
            f = amp * g + c0
            if linear:
                f += c1 * dx
            r = yk - f
            chi2 += r * r
            if want_jac:
                j0 = g
                j1 = amp * g * t * inv_s
                j2 = j1 * t
                s00 += j0 * j0
                s01 += j0 * j1
                s02 += j0 * j2
                s03 += j0
                s11 += j1 * j1
                s12 += j1 * j2
                s13 += j1
                s22 += j2 * j2
                s23 += j2
                s33 += 1.0
                r0 += j0 * r
                r1 += j1 * r
                r2 += j2 * r
                r3 += r
                if linear:
                    s04 += j0 * dx
                    s14 += j1 * dx
                    s24 += j2 * dx
                    s34 += dx
                    s44 += dx * dx
                    r4 += dx * r
    if want_jac:
        jtj[0, 0] = s00
        jtj[0, 1] = jtj[1, 0] = s01
        jtj[0, 2] = jtj[2, 0] = s02
        jtj[0, 3] = jtj[3, 0] = s03
        jtj[0, 4] = jtj[4, 0] = s04
        jtj[1, 1] = s11
        jtj[1, 2] = jtj[2, 1] = s12
        jtj[1, 3] = jtj[3, 1] = s13
        jtj[1, 4] = jtj[4, 1] = s14
        jtj[2, 2] = s22
        jtj[2, 3] = jtj[3, 2] = s23
        jtj[2, 4] = jtj[4, 2] = s24
        jtj[3, 3] = s33
        jtj[3, 4] = jtj[4, 3] = s34
        jtj[4, 4] = s44
        jtr[0] = r0
        jtr[1] = r1
        jtr[2] = r2
        jtr[3] = r3
        jtr[4] = r4
    return chi2


@_jit
def _cholesky_solve(a, b, npar, lower, out):
    """Solve a x = b for symmetric positive definite a (npar x npar). False if not SPD."""
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
    return True


@_jit
def _inverse_diag(a, npar, lower, col, e, diag):
    """Diagonal of the inverse of the SPD matrix a; False if singular."""
    for j in range(npar):
        for i in range(npar):
            e[i] = 0.0
        e[j] = 1.0
        if not _cholesky_solve(a, e, npar, lower, col):
            return False
        diag[j] = col[j]
    return True


@_jit
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


@_jit
def initial_guess(x, y, i0, i1, linear, p):
    """Moment-based starting values into ``p`` (A, x0, sigma, c0, c1). Returns False if flat.

    Background: the line through the means of the first and last three finite points.
    Height: the largest excess over that line. Centre: centroid of the excess over the
    points above half maximum. Width: the distance between the half-maximum crossings
    (linearly interpolated) divided by 2 sqrt(2 ln 2).
    """
    xc = 0.5 * (x[i0] + x[i1 - 1])
    # window ends
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
    # walk to the half-maximum crossings
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


@_jit
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


@_jit
def _fit_window(x, y, i0, i1, linear, p, use_p, max_iter, xtol, ftol, min_snr, min_points,
                jtj, jtr, m, lower, dp, ptry, work, jtj2, jtr2, res):
    """Fit one window; ``p`` holds (A, x0, sigma, c0, c1) on return. Fills ``res``."""
    for f in range(NFIELD):
        res[f] = np.nan
    res[F_NITER] = 0.0
    npar = 5 if linear else 4
    n = i1 - i0
    nfinite = 0
    ymin = np.inf
    ymax = -np.inf
    for k in range(i0, i1):
        if math.isfinite(y[k]):
            nfinite += 1
            ymin = min(ymin, y[k])
            ymax = max(ymax, y[k])
    if n < 2 or nfinite < max(min_points, npar + 1) or 2 * nfinite < n:
        res[F_STATUS] = BAD_INPUT
        return
    if not (x[i1 - 1] > x[i0]):
        res[F_STATUS] = BAD_INPUT
        return
    if not (ymax > ymin):
        res[F_STATUS] = NO_PEAK
        return
    uniform, h = _grid_info(x, i0, i1)
    xlo = x[i0]
    xhi = x[i1 - 1]
    xc = 0.5 * (xlo + xhi)
    width = xhi - xlo
    smin = 0.1 * h  # narrower is a one-bin spike (zinger), not a resolvable peak
    smax = width
    if not use_p:
        if not initial_guess(x, y, i0, i1, linear, p):
            res[F_STATUS] = NO_PEAK
            return
    if not linear:
        p[4] = 0.0
    _project(p, xlo, xhi, smin, smax)
    if p[0] <= 0.0:
        p[0] = ymax - ymin

    chi2 = _accumulate(x, y, i0, i1, p, linear, xc, uniform, h, jtj, jtr, True)
    lam = 1e-3
    converged = False
    it = 0
    while it < max_iter:
        it += 1
        # Marquardt-damped normal equations
        maxdiag = 0.0
        for i in range(npar):
            maxdiag = max(maxdiag, jtj[i, i])
        accepted = False
        while True:
            for i in range(npar):
                for j in range(npar):
                    m[i, j] = jtj[i, j]
                m[i, i] = jtj[i, i] * (1.0 + lam) + lam * 1e-12 * maxdiag
            ok = _cholesky_solve(m, jtr, npar, lower, dp)
            if ok:
                for i in range(npar):
                    ptry[i] = p[i] + dp[i]
                if not linear:
                    ptry[4] = 0.0
                _project(ptry, xlo, xhi, smin, smax)
                # evaluate the Jacobian with the trial: most trials are accepted
                chi2_try = _accumulate(x, y, i0, i1, ptry, linear, xc, uniform, h, jtj2, jtr2,
                                       True)
                if chi2_try <= chi2:
                    accepted = True
                    break
            lam *= 10.0
            if lam > 1e16:
                break
        if not accepted:
            # no downhill step at any damping: at the minimum to machine precision
            converged = True
            break
        # step size relative to natural scales
        rel = 0.0
        scale_y = abs(p[0]) + abs(p[3]) + 1e-300
        rel = max(rel, abs(ptry[0] - p[0]) / scale_y)
        rel = max(rel, abs(ptry[1] - p[1]) / ptry[2])
        rel = max(rel, abs(ptry[2] - p[2]) / ptry[2])
        rel = max(rel, abs(ptry[3] - p[3]) / scale_y)
        if linear:
            rel = max(rel, abs(ptry[4] - p[4]) * width / scale_y)
        dchi = chi2 - chi2_try
        for i in range(5):
            p[i] = ptry[i]
            jtr[i] = jtr2[i]
            for j in range(5):
                jtj[i, j] = jtj2[i, j]
        chi2 = chi2_try
        if lam > 1e-12:
            lam *= 0.1
        if rel <= xtol or dchi <= ftol * chi2:
            converged = True
            break
    res[F_NITER] = it
    res[F_CHI2] = chi2
    dof = nfinite - npar
    var = chi2 / dof if dof > 0 else np.nan
    # covariance: (J^T J)^-1 * chi2 / dof (like scipy curve_fit with absolute_sigma=False)
    have_cov = _inverse_diag(jtj, npar, lower, dp, work, ptry)
    amp = p[0]
    res[F_POSITION] = p[1]
    res[F_SIGMA] = p[2]
    res[F_AMPLITUDE] = amp
    res[F_SLOPE] = p[4]
    res[F_BACKGROUND] = p[3] + p[4] * (p[1] - xc)
    res[F_RESIDUAL] = math.sqrt(var) if dof > 0 else np.nan
    if have_cov:
        res[F_AMPLITUDE_ERR] = math.sqrt(max(ptry[0], 0.0) * var)
        res[F_POSITION_ERR] = math.sqrt(max(ptry[1], 0.0) * var)
        res[F_SIGMA_ERR] = math.sqrt(max(ptry[2], 0.0) * var)
        if linear:
            # background at x0: var(c0) + 2 (x0-xc) cov(c0,c1) + (x0-xc)^2 var(c1) (x0 held fixed)
            for i in range(5):
                work[i] = 0.0
            work[3] = 1.0
            work[4] = p[1] - xc
            _cholesky_solve(jtj, work, npar, lower, dp)
            vb = work[3] * dp[3] + work[4] * dp[4]
            res[F_BACKGROUND_ERR] = math.sqrt(max(vb, 0.0) * var)
        else:
            res[F_BACKGROUND_ERR] = math.sqrt(max(ptry[3], 0.0) * var)
    # classification
    if (
        not (amp > 0.0)
        or not have_cov
        or p[2] >= smax * (1.0 - 1e-9)
        or p[2] <= smin * (1.0 + 1e-9)
        or amp < min_snr * res[F_AMPLITUDE_ERR]
    ):
        status = NO_PEAK
    elif p[1] - xlo < h or xhi - p[1] < h:
        status = PEAK_AT_EDGE
    elif not converged:
        status = NOT_CONVERGED
    else:
        status = OK
    res[F_STATUS] = status


@_jit
def _fit_rows(x, y, lo, hi, linear, warm_start, max_iter, xtol, ftol, min_snr, min_points,
              out, f_start, f_stop):
    """Fit frames f_start..f_stop-1 of y[frame, batch, radial] (serial)."""
    nb = y.shape[1]
    npk = lo.shape[0]
    jtj = np.zeros((_NPMAX, _NPMAX))
    jtr = np.zeros(_NPMAX)
    m = np.zeros((_NPMAX, _NPMAX))
    lower = np.zeros((_NPMAX, _NPMAX))
    dp = np.zeros(_NPMAX)
    ptry = np.zeros(_NPMAX)
    work = np.zeros(_NPMAX)
    jtj2 = np.zeros((_NPMAX, _NPMAX))
    jtr2 = np.zeros(_NPMAX)
    p = np.zeros(_NPMAX)
    prev = np.zeros((nb, npk, _NPMAX))
    prev_ok = np.zeros((nb, npk), dtype=np.bool_)
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
                _fit_window(x, yrow, lo[j], hi[j], linear, p, use_p, max_iter, xtol, ftol,
                            min_snr, min_points, jtj, jtr, m, lower, dp, ptry, work, jtj2, jtr2,
                            res)
                if use_p and res[F_STATUS] != OK:
                    # the warm start led astray (or the peak vanished): start afresh
                    _fit_window(x, yrow, lo[j], hi[j], linear, p, False, max_iter, xtol,
                                ftol, min_snr, min_points, jtj, jtr, m, lower, dp, ptry,
                                work, jtj2, jtr2, res)
                if warm_start:
                    prev_ok[b, j] = res[F_STATUS] == OK
                    for i in range(_NPMAX):
                        prev[b, j, i] = p[i]


@_jit
def fit_batch(x, y, lo, hi, linear, warm_start, max_iter, xtol, ftol, min_snr, min_points, out):
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
        Maximum number of Levenberg-Marquardt iterations.
    xtol, ftol : float
        Converged when an accepted step changes every parameter by less than ``xtol``
        (relative to sigma for the centre and width, to the peak height for intensities)
        or the sum of squares by less than ``ftol`` relatively.
    min_snr : float
        ``amplitude < min_snr * amplitude_error`` is reported as ``NO_PEAK``.
    min_points : int
        Fewer finite points than this (or than half the window) is ``BAD_INPUT``.
    out : float64[nframe, nbatch, npeak, NFIELD]
        Results (see ``F_*``).
    """
    _fit_rows(x, y, lo, hi, linear, warm_start, max_iter, xtol, ftol, min_snr, min_points,
              out, 0, y.shape[0])


@numba.njit(cache=False, nogil=True, parallel=True, error_model="numpy")
def fit_batch_parallel(x, y, lo, hi, linear, warm_start, max_iter, xtol, ftol, min_snr,
                       min_points, out):
    """Same as :func:`fit_batch`, threads over blocks of frames (``numba.set_num_threads``).

    For one big eager call with dask off; never call it from inside a dask task.
    With ``warm_start`` each block of frames starts cold.
    """
    nf = y.shape[0]
    nblocks = min(nf, 8 * numba.get_num_threads())
    for ib in numba.prange(nblocks):
        f0 = (ib * nf) // nblocks
        f1 = ((ib + 1) * nf) // nblocks
        _fit_rows(x, y, lo, hi, linear, warm_start, max_iter, xtol, ftol, min_snr,
                  min_points, out, f0, f1)
