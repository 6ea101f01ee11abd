"""Starting values of a fit from the data: moments of the excess over the window-end line,
and the interior of a window that a neighbour's tail rises into."""

from __future__ import annotations

import math

import numpy as np

from .base import jit_kernel


_UNIFORM_RTOL = 1e-9  # grid counted uniform if every point is within this * step of the line


@jit_kernel
def grid_info(x, i0, i1):
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


@jit_kernel
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


@jit_kernel
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


@jit_kernel
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


@jit_kernel
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


@jit_kernel
def interior(y, i0, i1):
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


@jit_kernel
def interior_guess(x, y, i0, i1, linear, p):
    """Starting values from the interior of the window (:func:`interior`); c0 at the
    centre of the whole window. False if there is no such interior or no peak in it."""
    kl, kr = interior(y, i0, i1)
    if kl < 0:
        return False
    if not initial_guess(x, y, kl, kr, linear, p):
        return False
    p[3] += p[4] * (0.5 * (x[i0] + x[i1 - 1]) - 0.5 * (x[kl] + x[kr - 1]))
    return True
