"""The Gaussian-on-a-line model: one window's buffers, chi2, gradient and exact Hessian.

Speed (~2 us per 60-point fit on one core): per evaluation, the Gaussian values are computed
in one loop and the sums over the points (J^T W J, J^T W r, the second-order terms and
chi2, 19 of them) in a second; both are branch-free, compiled with FMA contraction allowed
(``jit_fastmath``), and LLVM vectorises them (SIMD over points; masked, non-finite points
have weight 0). Numba >= 0.62 has no SVML, so ``exp`` is written out (range reduction to
``2**m exp(r)``, a degree-13 polynomial, ``2**m`` from its bits).
"""

from __future__ import annotations

import math

import numpy as np

from .base import jit_fastmath, jit_kernel


#: length of the sums array
NACC = 22
# indices into the sums array
_G0, _G1, _G2, _G3, _G4 = 0, 1, 2, 3, 4  # sum w g^2 t^k
_P0, _P1, _P2 = 5, 6, 7  # sum w g t^k
_Q0, _Q1, _Q2 = 8, 9, 10  # sum w g t^k u
_M0, _M1, _M2, _M3, _M4 = 11, 12, 13, 14, 15  # sum w r g t^k
_R0, _R1 = 16, 17  # sum w r, sum w r u
_CHI2 = 18
_W0, _W1, _W2 = 19, 20, 21  # sum w, sum w u, sum w u^2 (constant per window)


_LOG2E = 1.4426950408889634
_LN2 = 0.6931471805599453
_EXP_FLOOR = -300.0  # exp(-300) ~ 5e-131: below anything that matters, far above subnormals


@jit_kernel
def load_window(x, y, i0, i1, uniform, h, xc, poisson, yb, wb, ub, acc):
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


@jit_fastmath
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


@jit_fastmath
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


@jit_kernel
def evaluate(n, yb, wb, ub, gb, sb, ib, p, acc, jtj, jtr, hess):
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
