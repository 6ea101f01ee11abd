"""The entry points: every window of every pattern, the retries, warm starts, scratch buffers."""

from __future__ import annotations

import numba
import numpy as np

from .base import (F_NITER, F_STATUS, NFIELD, NO_PEAK, NOT_CONVERGED, NPMAX, OK, PEAK_AT_EDGE,
                   FitOptions, jit, jit_kernel)
from .gaussian import NACC
from .lm import FROM_DATA, FROM_INTERIOR, FROM_P, fit_window
from .start import grid_info, interior


@jit_kernel
def _retry_inside(x, yrow, i0, i1, uniform, h, opts, p, buf, acc, mats, vecs, res, keep):
    """Retry a window that ended at its edge, found no peak or did not converge.

    A neighbour's tail may have misled the start: retry from the interior maximum, then by
    fitting the interior alone; keep the retry only if it is ok (else the first result and
    its parameters come back). ``F_NITER`` counts every attempt.
    """
    keep_p = keep[NFIELD:]
    for i in range(NFIELD):
        keep[i] = res[i]
    for i in range(NPMAX):
        keep_p[i] = p[i]
    fit_window(x, yrow, i0, i1, uniform, h, opts, p, np.int64(FROM_INTERIOR), buf, acc, mats, vecs, res)
    niter = res[F_NITER]
    if res[F_STATUS] != OK:
        # no peak inside with the tail included: fit the interior alone
        kl, kr = interior(yrow, i0, i1)
        if kl >= 0:
            fit_window(x, yrow, kl, kr, uniform, h, opts, p, np.int64(FROM_DATA), buf, acc, mats, vecs, res)
            niter += res[F_NITER]
            res[F_NITER] = niter
            # c0 at the centre of the whole window (warm start)
            p[3] += p[4] * (0.5 * (x[i0] + x[i1 - 1]) - 0.5 * (x[kl] + x[kr - 1]))
    if res[F_STATUS] != OK:
        for i in range(NFIELD):
            res[i] = keep[i]
        for i in range(NPMAX):
            p[i] = keep_p[i]
    res[F_NITER] = keep[F_NITER] + niter


@jit_kernel
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
                    for i in range(NPMAX):
                        p[i] = prev[b, j, i]
                    use_p = True
                start = np.int64(FROM_P if use_p else FROM_DATA)
                fit_window(x, yrow, lo[j], hi[j], uniform[j], step[j], opts, p, start, buf, acc, mats, vecs,
                            res)
                if use_p and res[F_STATUS] != OK:
                    # the warm start led astray (or the peak vanished): start afresh
                    fit_window(x, yrow, lo[j], hi[j], uniform[j], step[j], opts, p, np.int64(FROM_DATA),
                                buf, acc, mats, vecs, res)
                st = res[F_STATUS]
                if st == PEAK_AT_EDGE or st == NO_PEAK or st == NOT_CONVERGED:
                    _retry_inside(x, yrow, lo[j], hi[j], uniform[j], step[j], opts, p, buf, acc, mats,
                                  vecs, res, keep)
                if warm_start:
                    prev_ok[b, j] = res[F_STATUS] == OK
                    for i in range(NPMAX):
                        prev[b, j, i] = p[i]


@jit
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
    mats = np.zeros((6, NPMAX, NPMAX))
    vecs = np.zeros((8, NPMAX))
    p = np.zeros(NPMAX)
    keep = np.zeros(NFIELD + NPMAX)
    uniform = np.zeros(npk, dtype=np.bool_)
    step = np.zeros(npk)
    for j in range(npk):
        if hi[j] - lo[j] >= 2:
            uniform[j], step[j] = grid_info(x, lo[j], hi[j])
    prev = np.zeros((nb if warm_start else 1, npk if warm_start else 1, NPMAX))
    prev_ok = np.zeros((nb if warm_start else 1, npk if warm_start else 1), dtype=np.bool_)
    _fit_range(x, y, lo, hi, warm_start, opts, out, f_start, f_stop, uniform, step, buf, acc, mats, vecs,
               p, prev, prev_ok, keep)


@jit
def _options(linear, poisson, max_iter, xtol, ftol, min_snr, min_points):
    """FitOptions with fixed field types (bool, bool, int64, float64 x3, int64), whatever
    the types of the arguments: one specialization of every kernel below the entry points."""
    return FitOptions(bool(linear), bool(poisson), np.int64(max_iter), np.float64(xtol), np.float64(ftol),
                      np.float64(min_snr), np.int64(min_points))


@jit
def _fit_frames(x, y, lo, hi, linear, warm_start, max_iter, xtol, ftol, min_snr, min_points, out, f_start,
                f_stop, poisson):
    """:func:`_fit_rows` from the entry points' scalar arguments."""
    opts = _options(linear, poisson, max_iter, xtol, ftol, min_snr, min_points)
    _fit_rows(x, y, lo, hi, warm_start, opts, out, f_start, f_stop)


@jit
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
    >>> from xrdflow._kernels import F_POSITION, F_STATUS, NFIELD, OK
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
