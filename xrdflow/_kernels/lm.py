"""One window's fit: bounded Levenberg-Marquardt with the exact Hessian (see the package
docstring), then values, errors and status. Nothing is allocated here."""

from __future__ import annotations

import math

import numpy as np

from .base import (BAD_INPUT, F_AMPLITUDE, F_AMPLITUDE_ERR, F_BACKGROUND, F_BACKGROUND_ERR, F_CHI2,
                   F_NITER, F_POSITION, F_POSITION_ERR, F_RESIDUAL, F_SIGMA, F_SIGMA_ERR, F_SLOPE,
                   F_STATUS, F_COV_AS, NFIELD, NO_PEAK, NOT_CONVERGED, OK, PEAK_AT_EDGE, jit_kernel)
from .gaussian import evaluate, load_window
from .start import initial_guess, interior_guess


_READY = -1  # _start_values: the window is loaded and the start values are set
# starting values of a fit (fit_window's ``start``)
FROM_DATA = 0
FROM_P = 1
FROM_INTERIOR = 2


@jit_kernel
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


@jit_kernel
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


@jit_kernel
def _inverse_diag(lower, npar, col, e, diag):
    """Diagonal of a^-1 from the Cholesky factor of a."""
    for j in range(npar):
        for i in range(npar):
            e[i] = 0.0
        e[j] = 1.0
        _cholesky_solve(lower, e, npar, col)
        diag[j] = col[j]


@jit_kernel
def hold(m, rhs, i, npar):
    """Hold parameter ``i`` in the damped system ``m dp = rhs``: its row and column become the
    identity's, its right-hand side 0 (a parameter on a bound, the descent pushing out)."""
    for j in range(npar):
        m[i, j] = 0.0
        m[j, i] = 0.0
    m[i, i] = 1.0
    rhs[i] = 0.0


@jit_kernel
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


@jit_kernel
def _active_set(p, jtr, ulo, uhi, smin, smax, active):
    """Flag (1.0) A, u0, sigma where on a bound with the descent direction ``jtr`` outwards."""
    active[0] = 1.0 if (p[0] <= 0.0 and jtr[0] <= 0.0) else 0.0
    out1 = (p[1] <= ulo and jtr[1] <= 0.0) or (p[1] >= uhi and jtr[1] >= 0.0)
    active[1] = 1.0 if out1 else 0.0
    out2 = (p[2] <= smin and jtr[2] <= 0.0) or (p[2] >= smax and jtr[2] >= 0.0)
    active[2] = 1.0 if out2 else 0.0
    return int(active[0] + active[1] + active[2])


@jit_kernel
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


@jit_kernel
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
    nfinite, ymin, ymax = load_window(x, y, i0, i1, uniform, h, xc, opts.poisson, buf[0], buf[1], buf[2],
                                       acc)
    if nfinite < max(opts.min_points, npar + 1) or 2 * nfinite < n:
        return BAD_INPUT, nfinite
    if not (ymax > ymin):
        return NO_PEAK, nfinite
    smin = 0.1 * h  # narrower is a one-bin spike (zinger), not a resolvable peak
    smax = xhi - xlo
    if start == FROM_DATA:
        if not initial_guess(x, y, i0, i1, opts.linear, p):
            return NO_PEAK, nfinite
    elif start == FROM_INTERIOR:
        if not interior_guess(x, y, i0, i1, opts.linear, p):
            return NO_PEAK, nfinite
    if not opts.linear:
        p[4] = 0.0
    _project(p, xlo, xhi, smin, smax)
    if p[0] <= 0.0:
        p[0] = ymax - ymin
    p[1] -= xc
    return _READY, nfinite


@jit_kernel
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
                    hold(m, rhs, i, npar)
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


@jit_kernel
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


@jit_kernel
def _accept(p, ptry, jtr, jtr2, jtj, jtj2, hess, hess2):
    """The trial point becomes the current one (parameters, gradient, J^T W J, Hessian)."""
    for i in range(5):
        p[i] = ptry[i]
        jtr[i] = jtr2[i]
        for j in range(5):
            jtj[i, j] = jtj2[i, j]
            hess[i, j] = hess2[i, j]


@jit_kernel
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
    chi2 = evaluate(n, yb, wb, ub, gb, sb, ib, p, acc, jtj, jtr, hess)
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
        chi2_try = evaluate(n, yb, wb, ub, gb, sb, ib, ptry, acc, jtj2, jtr2, hess2)
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


@jit_kernel
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
    cov_as = np.nan
    if have_cov:
        _inverse_diag(lower, npar, dp, work, diag)
        for i in range(5):
            work[i] = 0.0
        work[0] = 1.0
        _cholesky_solve(lower, work, npar, dp)
        cov_as = dp[2] * var
    amp = p[0]
    res[F_POSITION] = p[1]
    res[F_SIGMA] = p[2]
    res[F_AMPLITUDE] = amp
    res[F_SLOPE] = p[4]
    res[F_BACKGROUND] = p[3] + p[4] * (p[1] - xc)
    res[F_RESIDUAL] = math.sqrt(var) if dof > 0 else np.nan
    res[F_COV_AS] = cov_as
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


@jit_kernel
def fit_window(x, y, i0, i1, uniform, h, opts, p, start, buf, acc, mats, vecs, res):
    """Fit one window; ``p`` holds (A, x0, sigma, c0, c1) on return. Fills ``res``.

    ``start`` (int64): ``FROM_DATA`` data-based starting values (:func:`initial_guess`),
    ``FROM_P`` the values in ``p`` (warm start), ``FROM_INTERIOR`` the interior guess
    (:func:`interior_guess`). Three steps: starting
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
