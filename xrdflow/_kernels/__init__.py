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

Speed: ~2 us per 60-point fit on one core (see :mod:`.gaussian`). The kernels below the
allocating entry points are compiled without the numba runtime (no reference counting of
array views), and nothing is allocated per fit: scratch buffers are made once per call (per
thread block in the parallel entry). The options of a batch travel as one
:class:`FitOptions` named tuple with fixed field types: one specialization of each kernel.

Layout: :mod:`.base` (numba flavours, output fields, status codes, FitOptions),
:mod:`.gaussian` (the model: window buffers, chi2, gradient, exact Hessian), :mod:`.start`
(starting values), :mod:`.lm` (one window's fit: Levenberg-Marquardt, errors, status),
:mod:`.batch` (the entry points :func:`fit_batch` and :func:`fit_batch_parallel`: windows
x patterns, retries, warm starts). Every other shape, joint fits of overlapping peaks,
Chebyshev backgrounds and tracked windows: :mod:`.profile` (the general kernel).

Each fit writes one row of ``NFIELD`` float64 numbers (see the ``F_*`` indices) and never
raises: a bad window gets a status code instead.
"""

from __future__ import annotations

from .base import (BAD_INPUT, F_AMPLITUDE, F_AMPLITUDE_ERR, F_BACKGROUND, F_BACKGROUND_ERR, F_CHI2,
                   F_NITER, F_POSITION, F_POSITION_ERR, F_RESIDUAL, F_SIGMA, F_SIGMA_ERR, F_SLOPE,
                   F_STATUS, F_COV_AS, NFIELD, NO_PEAK, NOT_CONVERGED, OK, PEAK_ABSENT, PEAK_AT_EDGE,
                   FitOptions)
from .batch import fit_batch, fit_batch_parallel
from .start import initial_guess

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
    "F_COV_AS",
    "PEAK_ABSENT",
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
