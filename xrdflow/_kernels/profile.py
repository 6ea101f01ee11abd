"""The general profile kernel: any peak shape, groups of overlapping peaks fitted jointly on
one Chebyshev background, shared widths and shape parameters, positions tied by one lattice
strain, windows that follow moving peaks.

Model of a group (one window ``x[i0:i1]`` holding ``n`` peaks)::

    y = sum_k c_k T_k(u) + sum_i A_i P((x - x0_i) / fwhm_i; eta_i | m_i, asymmetry_i)

``T_k`` the Chebyshev polynomials of ``u = (2 x - x_lo - x_hi) / (x_hi - x_lo)`` (order 0:
constant, 1: linear, up to 4), ``P`` the unit-height profile of the shape
(:mod:`xrdflow.profiles`: Gaussian, Lorentzian, pseudo-Voigt, Pearson VII, split
pseudo-Voigt). Parameters may be shared inside a group (one ``fwhm``, one ``eta``/``m``, one
``asymmetry`` for all its peaks) and the positions of one phase's peaks may be tied by one
ratio ``s = d / d0``: ``x0_i = X(d0_i s)`` with ``X`` the radial unit's function of d (``c_i
s^-p`` for q (p = 1) and d*^2 (p = 2), ``2 asin(sin(c_i / 2) / s)`` for 2theta).

Minimiser: Levenberg-Marquardt (Gauss-Newton Hessian ``J^T W J``, or the exact Hessian for a
lone pseudo-Voigt/Gaussian/Lorentzian on a constant or linear background, with Marquardt's
diagonal damping and Nielsen's update), analytic Jacobian, box constraints by projection
with an active set (``A >= 0``, positions inside the window, ``fwhm`` between 2.35 h / 10
and the window width, ``0 <= eta <= 1``, ``0.6 <= m <= 60``, ``|asymmetry| <= 0.9``), the
same step and chi2 tolerances as the Gaussian kernel. Errors from ``(J^T W J)^-1 chi2 /
dof``; the errors of derived values (area, integral breadth, background at the centre) by
propagating that full covariance.

A peak that is not there (``A < min_snr * error``, or its width on a bound: collapsed onto
a point or spread over the window) gets ``PEAK_ABSENT``; the group is then fitted again
without it, from the current values of the others, until every remaining peak is present.

Output per peak: one row of ``NPF`` numbers (``P_*`` indices). Nothing here raises.
"""

from __future__ import annotations

import math

import numpy as np

from .base import (BAD_INPUT, NO_PEAK, NOT_CONVERGED, OK, PEAK_ABSENT, PEAK_AT_EDGE, jit, jit_fastmath,
                   jit_kernel)
from .lm import _cholesky, _cholesky_solve, _predicted_reduction, hold
from .gaussian import _gauss_values
from .start import _end_means

# shapes
GAUSSIAN = 0
LORENTZIAN = 1
PSEUDO_VOIGT = 2
PEARSON7 = 3
SPLIT_PSEUDO_VOIGT = 4
SHAPE_CODES = {"gaussian": GAUSSIAN, "lorentzian": LORENTZIAN, "pseudo_voigt": PSEUDO_VOIGT,
               "pearson7": PEARSON7, "split_pseudo_voigt": SPLIT_PSEUDO_VOIGT}

# position links
LINK_NONE = 0
LINK_POWER = 1  # x = c s^-p
LINK_TWO_THETA = 2  # x = 2 k asin(sin(c / (2 k)) / s), k = 180/pi (deg) or 1 (rad)

MAXPK = 8  #: most peaks in one group
MAXBG = 5  #: most background coefficients (Chebyshev order 4)
NPARMAX = MAXBG + 5 * MAXPK

# output fields per peak
P_POSITION, P_POSITION_ERR = 0, 1
P_FWHM, P_FWHM_ERR = 2, 3
P_AMPLITUDE, P_AMPLITUDE_ERR = 4, 5
P_AREA, P_AREA_ERR = 6, 7
P_BREADTH, P_BREADTH_ERR = 8, 9
P_ETA, P_ETA_ERR = 10, 11
P_M, P_M_ERR = 12, 13
P_ASYM, P_ASYM_ERR = 14, 15
P_BACKGROUND, P_BACKGROUND_ERR = 16, 17
P_SLOPE = 18
P_RATIO, P_RATIO_ERR = 19, 20
P_RESIDUAL = 21
P_NITER = 22
P_STATUS = 23
P_CHI2 = 24
NPF = 25

# parameter kinds
K_BG, K_AMP, K_POS, K_FWHM, K_ETA, K_M, K_ASYM, K_RATIO = 0, 1, 2, 3, 4, 5, 6, 7

_FOUR_LN2 = 4.0 * math.log(2.0)
_LN2 = math.log(2.0)
_G_AREA = math.sqrt(math.pi / _FOUR_LN2)
_L_AREA = 0.5 * math.pi
_M_MIN = 0.6
_M_MAX = 60.0
_ASYM_MAX = 0.9
_SQRT_PI = math.sqrt(math.pi)


@jit_kernel
def _p7_unit_area(m):
    c = 2.0 ** (1.0 / m) - 1.0
    return _SQRT_PI * math.exp(math.lgamma(m - 0.5) - math.lgamma(m)) / (2.0 * math.sqrt(c))


@jit_kernel
def unit_area(shape, eta, m):
    """Area of the unit-height profile of unit FWHM."""
    if shape == GAUSSIAN:
        return _G_AREA
    if shape == LORENTZIAN:
        return _L_AREA
    if shape == PEARSON7:
        return _p7_unit_area(m)
    return eta * _L_AREA + (1.0 - eta) * _G_AREA


@jit_kernel
def _link_position(link, c, s, k):
    """(x0, dx0/ds) of a peak of reference position ``c`` at ratio ``s``."""
    if link == LINK_POWER:
        x0 = c * s ** (-k)
        return x0, -k * x0 / s
    # two-theta, k = unit per radian
    a = math.sin(0.5 * c / k) / s
    if not (a < 1.0):
        a = 1.0 - 1e-15
    x0 = 2.0 * k * math.asin(a)
    return x0, 2.0 * k * (-a / s) / math.sqrt(1.0 - a * a)


@jit_kernel
def _link_ratio(link, c, x0, k):
    """The ratio s that puts a peak of reference ``c`` at ``x0``."""
    if link == LINK_POWER:
        return (c / x0) ** (1.0 / k)
    return math.sin(0.5 * c / k) / math.sin(0.5 * x0 / k)


@jit_kernel
def _layout(nslot, live, phase, nbg, shape, share_fwhm, share_shape, share_asym, link, imap, kind):
    """Fill ``imap`` and ``kind`` for the live peaks; returns the number of parameters.

    ``imap[f, i]``: the parameter index of field ``f`` of the peak in slot ``i`` (0
    amplitude, 1 position, or its phase's ratio when linked, 2 fwhm, 3 shape parameter eta
    or m, 4 asymmetry; -1 where the shape has none or the peak is absent; shared
    parameters have one index). The background coefficients are parameters 0 .. nbg-1.
    """
    for f in range(5):
        for i in range(MAXPK):
            imap[f, i] = -1
    for j in range(nbg):
        kind[j] = K_BG
    npar = nbg
    has_shape = shape == PSEUDO_VOIGT or shape == PEARSON7 or shape == SPLIT_PSEUDO_VOIGT
    first_w = -1
    first_s = -1
    first_a = -1
    for i in range(nslot):
        if not live[i]:
            continue
        imap[0, i] = npar
        kind[npar] = K_AMP
        npar += 1
        if link != LINK_NONE:
            found = -1
            for i2 in range(i):
                if live[i2] and phase[i2] == phase[i]:
                    found = imap[1, i2]
                    break
            if found >= 0:
                imap[1, i] = found
            else:
                imap[1, i] = npar
                kind[npar] = K_RATIO
                npar += 1
        else:
            imap[1, i] = npar
            kind[npar] = K_POS
            npar += 1
        if share_fwhm and first_w >= 0:
            imap[2, i] = first_w
        else:
            imap[2, i] = npar
            kind[npar] = K_FWHM
            first_w = npar
            npar += 1
        if has_shape:
            if share_shape and first_s >= 0:
                imap[3, i] = first_s
            else:
                imap[3, i] = npar
                kind[npar] = K_M if shape == PEARSON7 else K_ETA
                first_s = npar
                npar += 1
        if shape == SPLIT_PSEUDO_VOIGT:
            if share_asym and first_a >= 0:
                imap[4, i] = first_a
            else:
                imap[4, i] = npar
                kind[npar] = K_ASYM
                first_a = npar
                npar += 1
    return npar


@jit_kernel
def _peak_x0(i, p, imap, link, ref, link_k):
    """(x0, dx0/dparam) of slot ``i``."""
    v = p[imap[1, i]]
    if link == LINK_NONE:
        return v, 1.0
    return _link_position(link, ref[i], v, link_k)


_SIGMA_OF_UNIT_FWHM = 1.0 / math.sqrt(8.0 * math.log(2.0))


@jit_kernel
def _gauss_of_t(tt, n, gg, sb, ib):
    """gg[k] = exp(-4 ln2 tt[k]^2): the Gaussian kernel's vectorised exp, for unit FWHM."""
    _gauss_values(tt, n, 0.0, _SIGMA_OF_UNIT_FWHM, gg, sb, ib)


@jit_fastmath
def _pv_columns(n, xb, x0, inv_fw, dxds, amp, eta, asym, split, rb, tt, gg, sb, ib, ja, jx, jw, js, jas,
                has_s, has_as):
    """Model and Jacobian columns of one (split) pseudo-Voigt peak (Gaussian: eta = 0,
    Lorentzian: eta = 1), added into ``rb`` and the rows ``ja, jx, jw[, js, jas]``."""
    if split:
        for k in range(n):
            d = xb[k] - x0
            side = 1.0 + asym if d >= 0.0 else 1.0 - asym
            tt[k] = d * inv_fw / side
    else:
        for k in range(n):
            tt[k] = (xb[k] - x0) * inv_fw
    if eta < 1.0 or has_s:  # d/d eta needs the Gaussian also at eta = 1
        _gauss_of_t(tt, n, gg, sb, ib)
    else:
        for k in range(n):
            gg[k] = 0.0
    one_eta = 1.0 - eta
    cx = -amp * inv_fw * dxds
    cw = -amp * inv_fw
    if split:
        for k in range(n):
            right = xb[k] >= x0
            side = 1.0 + asym if right else 1.0 - asym
            sgn = 1.0 if right else -1.0
            t = tt[k]
            g = gg[k]
            lo = 1.0 / (1.0 + 4.0 * t * t)
            pv = eta * lo + one_eta * g
            dpdt = -8.0 * t * (eta * lo * lo + one_eta * _LN2 * g)
            rb[k] += amp * pv
            ja[k] += pv
            jx[k] += cx * dpdt / side
            jw[k] += cw * dpdt * t
            js[k] += amp * (lo - g)
            jas[k] += -amp * dpdt * t * sgn / side
    elif has_s:
        for k in range(n):
            t = tt[k]
            g = gg[k]
            lo = 1.0 / (1.0 + 4.0 * t * t)
            pv = eta * lo + one_eta * g
            dpdt = -8.0 * t * (eta * lo * lo + one_eta * _LN2 * g)
            rb[k] += amp * pv
            ja[k] += pv
            jx[k] += cx * dpdt
            jw[k] += cw * dpdt * t
            js[k] += amp * (lo - g)
    else:
        for k in range(n):
            t = tt[k]
            g = gg[k]
            lo = 1.0 / (1.0 + 4.0 * t * t)
            pv = eta * lo + one_eta * g
            dpdt = -8.0 * t * (eta * lo * lo + one_eta * _LN2 * g)
            rb[k] += amp * pv
            ja[k] += pv
            jx[k] += cx * dpdt
            jw[k] += cw * dpdt * t



@jit_fastmath
def _eval_single(n, xb, yb, wb, tb, nbg, has_eta, amp, x0, fw, eta, c0, c1, tt, gg, sb, ib, jtj, jtr, hess):
    """chi2, J^T W J and J^T W r of one (pseudo-Voigt, Gaussian: eta = 0, Lorentzian: eta = 1)
    peak on a constant or linear background in one pass over the points, every sum in a
    register (the general path's column dot products cost twice as much). Parameter order
    as :func:`_layout` makes it: c0[, c1], A, x0, fwhm[, eta].

    Also the exact Hessian of chi2 / 2, ``J^T W J - sum w r d2f/dp2`` (8 more sums), into
    ``hess``: with it the fit converges quadratically where the model misses the data
    (Poisson noise, a neighbour's tail), where Gauss-Newton converges only linearly.
    """
    inv_fw = 1.0 / fw
    for k in range(n):
        tt[k] = (xb[k] - x0) * inv_fw
    _gauss_of_t(tt, n, gg, sb, ib)
    one_eta = 1.0 - eta
    lin = nbg > 1
    # columns: b0 = 1, b1 = u, a = P, x = dF/dx0, f = dF/dfwhm, e = dF/deta
    s_bb = s_bu = s_uu = 0.0
    s_ab = s_au = s_aa = 0.0
    s_xb = s_xu = s_xa = s_xx = 0.0
    s_fb = s_fu = s_fa = s_fx = s_ff = 0.0
    s_eb = s_eu = s_ea = s_ex = s_ef = s_ee = 0.0
    r_b = r_u = r_a = r_x = r_f = r_e = 0.0
    q1 = q2 = q3 = q4 = q5 = q6 = q7 = q8 = 0.0  # second-order sums, see below
    chi2 = 0.0
    cx = -amp * inv_fw
    ln2 = 0.6931471805599453
    for k in range(n):
        w = wb[k]
        u = tb[1, k] if lin else 0.0
        t = tt[k]
        g = gg[k]
        t2 = t * t
        lo = 1.0 / (1.0 + 4.0 * t2)
        lo2 = lo * lo
        pv = eta * lo + one_eta * g
        dl = -8.0 * t * lo2
        dg = -8.0 * ln2 * t * g
        dpdt = eta * dl + one_eta * dg
        d2l = -8.0 * lo2 + 128.0 * t2 * lo2 * lo
        d2g = 8.0 * ln2 * g * (8.0 * ln2 * t2 - 1.0)
        d2p = eta * d2l + one_eta * d2g
        jx = cx * dpdt
        jf = jx * t
        je = amp * (lo - g) if has_eta else 0.0
        r = yb[k] - (c0 + c1 * u + amp * pv)
        wr = w * r
        wu = w * u
        wa = w * pv
        wx = w * jx
        wf = w * jf
        we = w * je
        chi2 += wr * r
        s_bb += w
        s_bu += wu
        s_uu += wu * u
        s_ab += wa
        s_au += wa * u
        s_aa += wa * pv
        s_xb += wx
        s_xu += wx * u
        s_xa += wx * pv
        s_xx += wx * jx
        s_fb += wf
        s_fu += wf * u
        s_fa += wf * pv
        s_fx += wf * jx
        s_ff += wf * jf
        s_eb += we
        s_eu += we * u
        s_ea += we * pv
        s_ex += we * jx
        s_ef += we * jf
        s_ee += we * je
        r_b += wr
        r_u += wr * u
        r_a += wr * pv
        r_x += wr * jx
        r_f += wr * jf
        r_e += wr * je
        q1 += wr * dpdt
        q2 += wr * dpdt * t
        q3 += wr * (lo - g)
        q4 += wr * d2p
        q5 += wr * d2p * t
        q6 += wr * d2p * t2
        q7 += wr * (dl - dg)
        q8 += wr * (dl - dg) * t
    # scatter into the layout: b0, [u], a, x, f, [e]
    ib0 = 0
    iu = 1
    ia = 1 + (1 if lin else 0)
    ix = ia + 1
    iff = ia + 2
    ie = ia + 3
    jtr[ib0] = r_b
    jtr[ia] = r_a
    jtr[ix] = r_x
    jtr[iff] = r_f
    _sym(jtj, ib0, ib0, s_bb)
    _sym(jtj, ia, ib0, s_ab)
    _sym(jtj, ia, ia, s_aa)
    _sym(jtj, ix, ib0, s_xb)
    _sym(jtj, ix, ia, s_xa)
    _sym(jtj, ix, ix, s_xx)
    _sym(jtj, iff, ib0, s_fb)
    _sym(jtj, iff, ia, s_fa)
    _sym(jtj, iff, ix, s_fx)
    _sym(jtj, iff, iff, s_ff)
    if lin:
        jtr[iu] = r_u
        _sym(jtj, iu, ib0, s_bu)
        _sym(jtj, iu, iu, s_uu)
        _sym(jtj, ia, iu, s_au)
        _sym(jtj, ix, iu, s_xu)
        _sym(jtj, iff, iu, s_fu)
    if has_eta:
        jtr[ie] = r_e
        _sym(jtj, ie, ib0, s_eb)
        _sym(jtj, ie, ia, s_ea)
        _sym(jtj, ie, ix, s_ex)
        _sym(jtj, ie, iff, s_ef)
        _sym(jtj, ie, ie, s_ee)
        if lin:
            _sym(jtj, ie, iu, s_eu)
    # Hessian: J^T W J - sum w r d2f (f is linear in A and the background; d2f/deta2 = 0)
    npar = ie + 1 if has_eta else ie
    for i in range(npar):
        for j in range(npar):
            hess[i, j] = jtj[i, j]
    inv_f2 = inv_fw * inv_fw
    _sym(hess, ia, ix, hess[ia, ix] + q1 * inv_fw)
    _sym(hess, ia, iff, hess[ia, iff] + q2 * inv_fw)
    _sym(hess, ix, ix, hess[ix, ix] - amp * q4 * inv_f2)
    _sym(hess, ix, iff, hess[ix, iff] - amp * (q5 + q1) * inv_f2)
    _sym(hess, iff, iff, hess[iff, iff] - amp * (q6 + 2.0 * q2) * inv_f2)
    if has_eta:
        _sym(hess, ia, ie, hess[ia, ie] - q3)
        _sym(hess, ix, ie, hess[ix, ie] + amp * q7 * inv_fw)
        _sym(hess, iff, ie, hess[iff, ie] + amp * q8 * inv_fw)
    return chi2


@jit_kernel
def _sym(m, i, j, v):
    m[i, j] = v
    m[j, i] = v


@jit_kernel
def _evaluate(n, xb, yb, wb, tb, nbg, nslot, live, shape, imap, link, ref, link_k, p, npar, jac, rbuf,
              jtj, jtr, hess):
    """chi2 at ``p``; fills the Jacobian rows ``jac[npar, n]`` (background rows from ``tb``),
    the weighted residuals ``rbuf[0]``, and J^T W J, J^T W r (``rbuf[1]`` scratch).

    Returns ``(chi2, exact)``: ``exact`` when ``hess`` holds the exact Hessian (a lone
    pseudo-Voigt on a line, :func:`_eval_single`); else steps use J^T W J."""
    rb = rbuf[0]
    wj = rbuf[1]
    tt = rbuf[2]
    gg = rbuf[3]
    sb = rbuf[4]
    ib = sb.view(np.int64)
    if nslot == 1 and nbg <= 2 and link == LINK_NONE and (shape == GAUSSIAN or shape == LORENTZIAN
                                                          or shape == PSEUDO_VOIGT):
        eta = p[imap[3, 0]] if shape == PSEUDO_VOIGT else (1.0 if shape == LORENTZIAN else 0.0)
        chi2 = _eval_single(n, xb, yb, wb, tb, nbg, shape == PSEUDO_VOIGT, p[imap[0, 0]], p[imap[1, 0]],
                            p[imap[2, 0]], eta, p[0], p[1] if nbg > 1 else 0.0, tt, gg, sb, ib, jtj, jtr, hess)
        return chi2, True
    for k in range(n):
        acc = 0.0
        for j in range(nbg):
            acc += p[j] * tb[j, k]
        rb[k] = acc
    for j in range(nbg, npar):
        for k in range(n):
            jac[j, k] = 0.0
    for i in range(nslot):
        if not live[i]:
            continue
        ia = imap[0, i]
        ix = imap[1, i]
        iw = imap[2, i]
        is_ = imap[3, i]
        ias = imap[4, i]
        amp = p[ia]
        x0, dxds = _peak_x0(i, p, imap, link, ref, link_k)
        fw = p[iw]
        inv_fw = 1.0 / fw
        eta = 0.0
        mm = 2.0
        asym = 0.0
        if shape == PSEUDO_VOIGT or shape == SPLIT_PSEUDO_VOIGT:
            eta = p[is_]
        elif shape == GAUSSIAN:
            eta = 0.0
        elif shape == LORENTZIAN:
            eta = 1.0
        if shape == SPLIT_PSEUDO_VOIGT:
            asym = p[ias]
        if shape == PEARSON7:
            mm = p[is_]
            r_m = 2.0 ** (1.0 / mm)
            cc = 4.0 * (r_m - 1.0)
            dcc = -4.0 * r_m * _LN2 / (mm * mm)
            for k in range(n):
                t = (xb[k] - x0) * inv_fw
                t2 = t * t
                b = 1.0 + cc * t2
                lb = math.log(b)
                pv = math.exp(-mm * lb)
                dpdt = -2.0 * mm * cc * t * pv / b
                rb[k] += amp * pv
                jac[ia, k] += pv
                dfx = -amp * dpdt * inv_fw
                jac[ix, k] += dfx * dxds
                jac[iw, k] += dfx * t
                jac[is_, k] += amp * pv * (-lb - mm * dcc * t2 / b)
        else:
            _pv_columns(n, xb, x0, inv_fw, dxds, amp, eta, asym, shape == SPLIT_PSEUDO_VOIGT, rb, tt, gg,
                        sb, ib, jac[ia], jac[ix], jac[iw], jac[is_] if is_ >= 0 else wj,
                        jac[ias] if ias >= 0 else wj, is_ >= 0, ias >= 0)
    for j in range(nbg):
        for k in range(n):
            jac[j, k] = tb[j, k]
    chi2 = 0.0
    for i in range(npar):
        jtr[i] = 0.0
        for j in range(npar):
            jtj[i, j] = 0.0
    for k in range(n):
        r = yb[k] - rb[k]
        w = wb[k]
        rb[k] = r
        chi2 += w * r * r
    for k in range(n):
        rb[k] *= wb[k]  # w r from here on
    for i in range(npar):
        ji = jac[i]
        jtr[i] = _dot(ji, rb, n)
        for k in range(n):
            wj[k] = wb[k] * ji[k]
        for j in range(i + 1):
            acc2 = _dot(wj, jac[j], n)
            jtj[i, j] = acc2
            jtj[j, i] = acc2
    return chi2, False


@jit_fastmath
def _dot(a, b, n):
    """sum a[k] b[k] in four interleaved partial sums (a fixed order, so the result does not
    depend on how the kernel was compiled, and four times the throughput of one chain)."""
    s0 = s1 = s2 = s3 = 0.0
    k = 0
    while k + 4 <= n:
        s0 += a[k] * b[k]
        s1 += a[k + 1] * b[k + 1]
        s2 += a[k + 2] * b[k + 2]
        s3 += a[k + 3] * b[k + 3]
        k += 4
    while k < n:
        s0 += a[k] * b[k]
        k += 1
    return (s0 + s1) + (s2 + s3)


@jit_kernel
def _project(p, npar, blo, bhi):
    for i in range(npar):
        if p[i] < blo[i]:
            p[i] = blo[i]
        elif p[i] > bhi[i]:
            p[i] = bhi[i]


@jit_kernel
def _bounds(npar, kind, p, xlo, xhi, fwmin, fwmax, link, ref, link_k, nslot, live, imap, blo, bhi):
    for j in range(npar):
        kd = kind[j]
        if kd == K_BG:
            blo[j] = -np.inf
            bhi[j] = np.inf
        elif kd == K_AMP:
            blo[j] = 0.0
            bhi[j] = np.inf
        elif kd == K_POS:
            blo[j] = xlo
            bhi[j] = xhi
        elif kd == K_FWHM:
            blo[j] = fwmin
            bhi[j] = fwmax
        elif kd == K_ETA:
            blo[j] = 0.0
            bhi[j] = 1.0
        elif kd == K_M:
            blo[j] = _M_MIN
            bhi[j] = _M_MAX
        elif kd == K_ASYM:
            blo[j] = -_ASYM_MAX
            bhi[j] = _ASYM_MAX
        else:
            blo[j] = 0.0
            bhi[j] = np.inf
    if link != LINK_NONE:
        # every linked position inside the window: s in the intersection over the phase's peaks
        for i in range(nslot):
            if not live[i]:
                continue
            j = imap[1, i]
            s_a = _link_ratio(link, ref[i], xlo, link_k)
            s_b = _link_ratio(link, ref[i], xhi, link_k)
            lo_s = min(s_a, s_b)
            hi_s = max(s_a, s_b)
            if lo_s > blo[j]:
                blo[j] = lo_s
            if hi_s < bhi[j]:
                bhi[j] = hi_s


@jit_kernel
def _solve_step(jtj, hess, exact, jtr, p, npar, lam, blo, bhi, m, lower, rhs, dp):
    """Damped Newton step (exact Hessian when ``exact``, falling back to Gauss-Newton's
    J^T W J where it is not positive definite) with parameters on an outward-pushing bound
    held. Returns ``(lam, used_hessian)``; ``lam > 1e16`` if nothing is solvable."""
    maxdiag = 0.0
    for i in range(npar):
        maxdiag = max(maxdiag, jtj[i, i])
    use_hess = exact
    while True:
        hm = hess if use_hess else jtj
        for i in range(npar):
            rhs[i] = jtr[i]
            for j in range(npar):
                m[i, j] = hm[i, j]
            m[i, i] = hm[i, i] + lam * jtj[i, i] + 1e-12 * maxdiag
        for i in range(npar):
            held = (p[i] <= blo[i] and jtr[i] <= 0.0) or (p[i] >= bhi[i] and jtr[i] >= 0.0)
            if held:
                hold(m, rhs, i, npar)
        if _cholesky(m, npar, lower):
            _cholesky_solve(lower, rhs, npar, dp)
            return lam, use_hess
        if use_hess:
            use_hess = False
            continue
        lam *= 10.0
        if lam > 1e16:
            return lam, False


@jit_kernel
def _lm(n, xb, yb, wb, tb, nbg, nslot, live, shape, imap, kind, link, ref, link_k, p, npar, blo, bhi,
        max_iter, xtol, ftol, jac, rb, mats, vecs):
    """Levenberg-Marquardt from ``p``; returns (chi2, n_iter, converged); mats[0] = J^T W J."""
    jtj = mats[0]
    jtj2 = mats[1]
    mm = mats[2]
    lower = mats[3]
    hess = mats[4]
    hess2 = mats[5]
    jtr = vecs[0]
    jtr2 = vecs[1]
    dp = vecs[2]
    ptry = vecs[3]
    rhs = vecs[4]
    chi2, exact = _evaluate(n, xb, yb, wb, tb, nbg, nslot, live, shape, imap, link, ref, link_k, p, npar, jac,
                            rb, jtj, jtr, hess)
    lam = 1e-3
    nu = 2.0
    it = 0
    converged = False
    while it < max_iter:
        if not math.isfinite(chi2):
            break
        lam, used_hess = _solve_step(jtj, hess, exact, jtr, p, npar, lam, blo, bhi, mm, lower, rhs, dp)
        if lam > 1e16:
            converged = True
            break
        for i in range(npar):
            ptry[i] = p[i] + dp[i]
        _project(ptry, npar, blo, bhi)
        scale_y = abs(p[0]) + 1e-300
        for i in range(nslot):
            if live[i]:
                scale_y = max(scale_y, abs(p[imap[0, i]]) + abs(p[0]))
        rel = 0.0
        fw_min = np.inf
        for i in range(nslot):
            if live[i]:
                fw_min = min(fw_min, ptry[imap[2, i]])
        for j in range(npar):
            dj = abs(ptry[j] - p[j])
            kd = kind[j]
            if kd == K_BG or kd == K_AMP:
                r = dj / scale_y
            elif kd == K_POS or kd == K_FWHM:
                r = dj / fw_min
            elif kd == K_RATIO:
                r = dj * abs(xb[n - 1]) / fw_min
            elif kd == K_M:
                r = dj / ptry[j]
            else:
                r = dj
            rel = max(rel, r)
        if rel <= xtol:
            if lam > 1e-2:
                lam = 1e-2
                continue
            for i in range(npar):
                p[i] = ptry[i]
            converged = True
            break
        it += 1
        chi2_try, exact2 = _evaluate(n, xb, yb, wb, tb, nbg, nslot, live, shape, imap, link, ref, link_k, ptry,
                                     npar, jac, rb, jtj2, jtr2, hess2)
        pred = _predicted_reduction(hess if used_hess else jtj, jtr, p, ptry, npar)
        actual = chi2 - chi2_try
        if actual >= 0.0 and math.isfinite(chi2_try):
            rho = actual / pred if pred > 0.0 else 1.0
            for i in range(npar):
                p[i] = ptry[i]
                jtr[i] = jtr2[i]
                for j in range(npar):
                    jtj[i, j] = jtj2[i, j]
                    hess[i, j] = hess2[i, j]
            exact = exact2
            chi2 = chi2_try
            c = 2.0 * rho - 1.0
            lam *= max(1.0 / 3.0, 1.0 - c * c * c)
            if lam < 1e-12:
                lam = 1e-12
            nu = 2.0
            if actual <= ftol * chi2 and 0.0 <= pred <= ftol * chi2:
                converged = True
                break
        else:
            lam *= nu
            nu *= 2.0
            if lam > 1e16:
                converged = True
                break
    return chi2, it, converged


@jit_kernel
def _search(x, v):
    """First index with x[i] >= v (x increasing)."""
    lo = 0
    hi = x.shape[0]
    while lo < hi:
        mid = (lo + hi) // 2
        if x[mid] < v:
            lo = mid + 1
        else:
            hi = mid
    return lo


@jit_kernel
def _load(x, y, i0, i1, poisson, nbg, xb, yb, wb, tb):
    """Window buffers: x, y (0 where not finite), weights, Chebyshev rows. Returns
    (nfinite, ymin, ymax)."""
    n = i1 - i0
    xlo = x[i0]
    xhi = x[i1 - 1]
    scale = 2.0 / (xhi - xlo)
    nfinite = 0
    ymin = np.inf
    ymax = -np.inf
    for k in range(n):
        xk = x[i0 + k]
        yk = y[i0 + k]
        xb[k] = xk
        u = (xk - xlo) * scale - 1.0
        tb[0, k] = 1.0
        if nbg > 1:
            tb[1, k] = u
        for j in range(2, nbg):
            tb[j, k] = 2.0 * u * tb[j - 1, k] - tb[j - 2, k]
        if math.isfinite(yk):
            nfinite += 1
            ymin = min(ymin, yk)
            ymax = max(ymax, yk)
            yb[k] = yk
            wb[k] = 1.0 / max(yk, 1.0) if poisson else 1.0
        else:
            yb[k] = 0.0
            wb[k] = 0.0
    return nfinite, ymin, ymax


@jit_kernel
def _start(x, y, i0, i1, nbg, nslot, live, centre, phase, shape, imap, link, ref, link_k, fwmin, fwmax,
           p, at_centres):
    """Starting values from the data. False if the window holds no excess over its ends.

    A peak of a group starts at the data's maximum in its part of the window (half way to
    its neighbours) unless that maximum is on the part's edge (a shoulder), or
    ``at_centres``: then at its expected centre."""
    xlo = x[i0]
    xhi = x[i1 - 1]
    xa, ya, xb_, yb_ = _end_means(x, y, i0, i1)
    slope = (yb_ - ya) / (xb_ - xa) if xb_ != xa else 0.0
    if nbg == 1:
        slope = 0.0
        ya = min(ya, yb_)
    xc = 0.5 * (xlo + xhi)
    p[0] = ya + slope * (xc - xa)
    if nbg > 1:
        p[1] = slope * 0.5 * (xhi - xlo)
    for j in range(2, nbg):
        p[j] = 0.0
    h = (xhi - xlo) / (i1 - i0 - 1)
    any_peak = False
    nlive = 0
    for i in range(nslot):
        if live[i]:
            nlive += 1
    best_amp = -np.inf
    best_i = -1
    best_x0 = 0.0
    for i in range(nslot):
        if not live[i]:
            continue
        # search radius: the whole window for a lone peak, else half way to the neighbours
        a_lo = xlo
        a_hi = xhi
        if nlive > 1:
            for i2 in range(nslot):
                if i2 != i and live[i2]:
                    mid = 0.5 * (centre[i] + centre[i2])
                    if centre[i2] > centre[i]:
                        a_hi = min(a_hi, mid)
                    elif centre[i2] < centre[i]:
                        a_lo = max(a_lo, mid)
        kmax = -1
        emax = -np.inf
        for k in range(i0, i1):
            if x[k] < a_lo or x[k] > a_hi:
                continue
            yk = y[k]
            if math.isfinite(yk):
                e = yk - (ya + slope * (x[k] - xa))
                if e > emax:
                    emax = e
                    kmax = k
        at_edge = kmax >= 0 and ((kmax == i0 or x[kmax - 1] < a_lo) or (kmax == i1 - 1 or x[kmax + 1] > a_hi))
        if kmax < 0 or (nlive > 1 and (at_edge or at_centres)):
            # no maximum of its own (a shoulder of its neighbour, or nothing): start at the
            # expected centre, with the excess there
            kmax = min(max(_search(x, centre[i]), i0), i1 - 1)
            yk = y[kmax]
            emax = yk - (ya + slope * (x[kmax] - xa)) if math.isfinite(yk) else 0.0
        x0 = x[kmax]
        amp = emax if emax > 0.0 else 0.0
        if amp > 0.0:
            any_peak = True
        half = 0.5 * amp
        # half-maximum crossings, not beyond the search range
        left = a_lo
        kl = kmax
        while kl > i0 and x[kl - 1] >= a_lo:
            yk = y[kl - 1]
            if math.isfinite(yk) and yk - (ya + slope * (x[kl - 1] - xa)) < half:
                left = x[kl - 1]
                break
            kl -= 1
        right = a_hi
        kr = kmax
        while kr < i1 - 1 and x[kr + 1] <= a_hi:
            yk = y[kr + 1]
            if math.isfinite(yk) and yk - (ya + slope * (x[kr + 1] - xa)) < half:
                right = x[kr + 1]
                break
            kr += 1
        hl = x0 - left
        hr = right - x0
        fw = hl + hr
        if nlive > 1:
            fw = 2.0 * min(hl, hr) if min(hl, hr) > 0.0 else fw
        fw = min(max(fw - h, fwmin), 0.5 * (xhi - xlo))
        if not (fw > fwmin):
            fw = max(fwmin, 2.0 * h)
        p[imap[0, i]] = amp
        if link == LINK_NONE:
            p[imap[1, i]] = x0
        elif amp > best_amp:
            best_amp = amp
            best_i = i
            best_x0 = x0
        p[imap[2, i]] = fw
        if imap[3, i] >= 0:
            p[imap[3, i]] = 2.0 if shape == PEARSON7 else 0.5
        if imap[4, i] >= 0:
            p[imap[4, i]] = 0.0
    if link != LINK_NONE:
        # one ratio per phase, from that phase's strongest peak
        for i in range(nslot):
            if not live[i]:
                continue
            j = imap[1, i]
            best = -1.0
            s = 1.0
            for i2 in range(nslot):
                if live[i2] and imap[1, i2] == j:
                    a2 = p[imap[0, i2]]
                    if a2 > best:
                        best = a2
                        s = _link_ratio(link, ref[i2], centre[i2], link_k)
                        if a2 > 0.0 and i2 == best_i:
                            s = _link_ratio(link, ref[i2], best_x0, link_k)
            p[j] = s
    return any_peak


@jit_kernel
def _covariance(jtj, npar, lower, cov, e, col):
    """cov <- (J^T W J)^-1; False if singular."""
    if not _cholesky(jtj, npar, lower):
        return False
    for j in range(npar):
        for i in range(npar):
            e[i] = 0.0
        e[j] = 1.0
        _cholesky_solve(lower, e, npar, col)
        for i in range(npar):
            cov[i, j] = col[i]
    return True


@jit_kernel
def _var2(cov, ia, ga, ib, gb, ic, gc):
    """Variance of a function of up to three parameters with gradient (ga, gb, gc)."""
    v = 0.0
    for u in range(3):
        iu = ia if u == 0 else (ib if u == 1 else ic)
        gu = ga if u == 0 else (gb if u == 1 else gc)
        if iu < 0 or gu == 0.0:
            continue
        for w in range(3):
            iw = ia if w == 0 else (ib if w == 1 else ic)
            gw = ga if w == 0 else (gb if w == 1 else gc)
            if iw < 0 or gw == 0.0:
                continue
            v += gu * gw * cov[iu, iw]
    return v


@jit_kernel
def _finish(x, i0, i1, nfinite, npar, nbg, nslot, live, shape, imap, link, ref, link_k, fwmin, fwmax,
            chi2, it, converged, min_snr, p, mats, vecs, res, members, kind, blo, bhi):
    """Values, errors and status of every live peak of the group into res[members[i]].

    A shape parameter (eta, m, asymmetry) that ends on its bound is held there: it gets
    error 0 and the other errors are those with it fixed (left free in the covariance it
    would inflate them, and a clear peak whose best eta is 1 would look absent).
    """
    xlo = x[i0]
    xhi = x[i1 - 1]
    h = (xhi - xlo) / (i1 - i0 - 1)
    jtj = mats[0]
    lower = mats[3]
    cov = mats[2]
    e = vecs[5]
    col = vecs[6]
    dof = nfinite - npar
    var = chi2 / dof if dof > 0 else np.nan
    for j in range(npar):
        kd = kind[j]
        if (kd == K_ETA or kd == K_M or kd == K_ASYM) and (p[j] <= blo[j] or p[j] >= bhi[j]):
            for k in range(npar):
                jtj[j, k] = 0.0
                jtj[k, j] = 0.0
            jtj[j, j] = 1.0
            vecs[9, j] = 1.0  # held
        else:
            vecs[9, j] = 0.0
    have_cov = _covariance(jtj, npar, lower, cov, e, col)
    if have_cov:
        for j in range(npar):
            if vecs[9, j] == 1.0:
                cov[j, j] = 0.0
    nabsent = 0
    for i in range(nslot):
        if not live[i]:
            continue
        r = res[members[i]]
        ia = imap[0, i]
        ix = imap[1, i]
        iw = imap[2, i]
        is_ = imap[3, i]
        ias = imap[4, i]
        amp = p[ia]
        x0, dxds = _peak_x0(i, p, imap, link, ref, link_k)
        fw = p[iw]
        eta = p[is_] if (is_ >= 0 and shape != PEARSON7) else (1.0 if shape == LORENTZIAN else 0.0)
        mm = p[is_] if shape == PEARSON7 else np.nan
        asym = p[ias] if ias >= 0 else 0.0
        ua = unit_area(shape, eta, mm)
        r[P_POSITION] = x0
        r[P_FWHM] = fw
        r[P_AMPLITUDE] = amp
        r[P_AREA] = amp * fw * ua
        r[P_BREADTH] = fw * ua
        r[P_ETA] = eta if (shape == PSEUDO_VOIGT or shape == SPLIT_PSEUDO_VOIGT) else np.nan
        r[P_M] = mm
        r[P_ASYM] = asym if shape == SPLIT_PSEUDO_VOIGT else np.nan
        r[P_RATIO] = p[ix] if link != LINK_NONE else np.nan
        r[P_NITER] = it
        r[P_CHI2] = chi2
        r[P_RESIDUAL] = math.sqrt(var) if dof > 0 else np.nan
        # background and its slope at x0
        u0 = (2.0 * x0 - xlo - xhi) / (xhi - xlo)
        t_prev = 1.0
        t_cur = u0
        d_prev = 0.0
        d_cur = 1.0
        bg = p[0]
        dbg = 0.0
        col[0] = 1.0
        if nbg > 1:
            bg += p[1] * u0
            dbg += p[1]
            col[1] = u0
        for j in range(2, nbg):
            t_next = 2.0 * u0 * t_cur - t_prev
            d_next = 2.0 * t_cur + 2.0 * u0 * d_cur - d_prev
            bg += p[j] * t_next
            dbg += p[j] * d_next
            col[j] = t_next
            t_prev, t_cur = t_cur, t_next
            d_prev, d_cur = d_cur, d_next
        r[P_BACKGROUND] = bg
        r[P_SLOPE] = dbg * 2.0 / (xhi - xlo)
        if have_cov:
            r[P_AMPLITUDE_ERR] = math.sqrt(max(cov[ia, ia], 0.0) * var)
            r[P_POSITION_ERR] = abs(dxds) * math.sqrt(max(cov[ix, ix], 0.0) * var)
            r[P_FWHM_ERR] = math.sqrt(max(cov[iw, iw], 0.0) * var)
            if link != LINK_NONE:
                r[P_RATIO_ERR] = math.sqrt(max(cov[ix, ix], 0.0) * var)
            # area = A fw U(eta | m), breadth = fw U
            if shape == PEARSON7:
                dm = 1e-6 * mm
                dua = (unit_area(shape, eta, mm + dm) - unit_area(shape, eta, mm - dm)) / (2.0 * dm)
            elif shape == PSEUDO_VOIGT or shape == SPLIT_PSEUDO_VOIGT:
                dua = _L_AREA - _G_AREA
            else:
                dua = 0.0
            va = _var2(cov, ia, fw * ua, iw, amp * ua, is_, amp * fw * dua)
            r[P_AREA_ERR] = math.sqrt(max(va, 0.0) * var)
            vb = _var2(cov, iw, ua, is_, fw * dua, -1, 0.0)
            r[P_BREADTH_ERR] = math.sqrt(max(vb, 0.0) * var)
            if shape == PSEUDO_VOIGT or shape == SPLIT_PSEUDO_VOIGT or shape == PEARSON7:
                se = math.sqrt(max(cov[is_, is_], 0.0) * var)
                if shape == PEARSON7:
                    r[P_M_ERR] = se
                else:
                    r[P_ETA_ERR] = se
            if ias >= 0:
                r[P_ASYM_ERR] = math.sqrt(max(cov[ias, ias], 0.0) * var)
            vbg = 0.0
            for a in range(nbg):
                for b in range(nbg):
                    vbg += col[a] * col[b] * cov[a, b]
            r[P_BACKGROUND_ERR] = math.sqrt(max(vbg, 0.0) * var)
        confirmed = vecs[14, i] == 1.0  # its group's chi2 says it is there (fit_group)
        absent = (not (amp > 0.0) or not have_cov or fw <= fwmin * (1.0 + 1e-9) or fw >= fwmax * (1.0 - 1e-9)
                  or (amp < min_snr * r[P_AMPLITUDE_ERR] and not confirmed))
        if absent:
            st = PEAK_ABSENT
            nabsent += 1
        elif x0 - xlo < h or xhi - x0 < h:
            st = PEAK_AT_EDGE
        elif not converged:
            st = NOT_CONVERGED
        else:
            st = OK
        r[P_STATUS] = st
    return nabsent


@jit_kernel
def _blank(res, members, nslot, status, it):
    for i in range(nslot):
        r = res[members[i]]
        for f in range(NPF):
            r[f] = np.nan
        r[P_NITER] = it
        r[P_STATUS] = status


@jit_kernel
def fit_group(x, y, low, high, shift, nslot, members, centre0, ref0, phase, shape, nbg, share_fwhm,
              share_shape, share_asym, link, link_k, poisson, max_iter, xtol, ftol, min_snr, min_points,
              p, use_p, res, live, centre, ref, imap, kind, blo, bhi, xb, yb, wb, tb, jac, rb, mats, vecs):
    """Fit one group of ``nslot`` peaks (output rows ``res[members[i]]``) in one pattern ``y``.

    ``low``/``high``: the group window (radial units) before the shifts ``shift[i]`` of its
    peaks (tracking; the window moves by their mean). ``p`` holds the parameters on return
    (warm start: ``use_p``, with ``live`` as left by the previous fit). Returns True if every
    live peak is ``OK``.
    """
    sh = 0.0
    for i in range(nslot):
        sh += shift[i]
    sh /= nslot
    for i in range(nslot):
        centre[i] = centre0[i] + shift[i]
        ref[i] = ref0[i]
        if not use_p:
            live[i] = True
    i0 = _search(x, low + sh)
    i1 = _search(x, high + sh)
    if i1 < x.shape[0] and x[i1] <= high + sh:
        i1 += 1
    i1 = min(i1, x.shape[0])
    n = i1 - i0
    if n < 3:
        _blank(res, members, nslot, BAD_INPUT, 0)
        return False
    nfinite, ymin, ymax = _load(x, y, i0, i1, poisson, nbg, xb, yb, wb, tb)
    npar = _layout(nslot, live, phase, nbg, shape, share_fwhm, share_shape, share_asym, link, imap, kind)
    if nfinite < max(min_points, npar + 1) or 2 * nfinite < n:
        _blank(res, members, nslot, BAD_INPUT, 0)
        return False
    if not (ymax > ymin):
        _blank(res, members, nslot, NO_PEAK, 0)
        return False
    xlo = x[i0]
    xhi = x[i1 - 1]
    h = (xhi - xlo) / (n - 1)
    fwmin = 0.1 * h * 2.3548200450309493
    fwmax = xhi - xlo
    if not use_p:
        if not _start(x, y, i0, i1, nbg, nslot, live, centre, phase, shape, imap, link, ref, link_k, fwmin,
                      fwmax, p, False):
            _blank(res, members, nslot, NO_PEAK, 0)
            return False
    total_it = 0
    retried = False
    testing = -1  # the peak dropped on trial (its chi2 test pending)
    chi2_full = 0.0
    var_full = 0.0
    it_full = 0
    conv_full = False
    for i in range(MAXPK):
        vecs[14, i] = 0.0
    for i in range(nslot):
        if not live[i]:
            r = res[members[i]]
            for f in range(NPF):
                r[f] = np.nan
            r[P_STATUS] = PEAK_ABSENT
    while True:
        _bounds(npar, kind, p, xlo, xhi, fwmin, fwmax, link, ref, link_k, nslot, live, imap, blo, bhi)
        _project(p, npar, blo, bhi)
        chi2, it, converged = _lm(n, xb, yb, wb, tb, nbg, nslot, live, shape, imap, kind, link, ref, link_k, p,
                                  npar, blo, bhi, max_iter, xtol, ftol, jac, rb, mats, vecs)
        total_it += it
        nabsent = _finish(x, i0, i1, nfinite, npar, nbg, nslot, live, shape, imap, link, ref, link_k, fwmin,
                          fwmax, chi2, it, converged, min_snr, p, mats, vecs, res, members, kind, blo, bhi)
        if testing >= 0:
            if chi2 - chi2_full > min_snr * min_snr * var_full:
                # without it chi2 rose by more than min_snr^2 of the noise variance: the peak is
                # there, only poorly separated from its neighbours (large, correlated errors).
                # Back to the fit with it, and it stays in.
                live[testing] = True
                vecs[14, testing] = 1.0
                npar = _layout(nslot, live, phase, nbg, shape, share_fwhm, share_shape, share_asym, link, imap,
                               kind)
                for f in range(npar):
                    p[f] = vecs[13, f]
                _bounds(npar, kind, p, xlo, xhi, fwmin, fwmax, link, ref, link_k, nslot, live, imap, blo, bhi)
                chi2, _ = _evaluate(n, xb, yb, wb, tb, nbg, nslot, live, shape, imap, link, ref, link_k, p, npar,
                                    jac, rb, mats[0], vecs[0], mats[4])
                nabsent = _finish(x, i0, i1, nfinite, npar, nbg, nslot, live, shape, imap, link, ref, link_k,
                                  fwmin, fwmax, chi2, it_full, conv_full, min_snr, p, mats, vecs, res, members,
                                  kind, blo, bhi)
            testing = -1
        nlive = 0
        for i in range(nslot):
            if live[i]:
                nlive += 1
        if nabsent > 0 and nlive > 1 and not retried:
            # a peak of the group absent: maybe the fit merged two peaks into one. Start
            # again from the expected centres and keep whichever minimum is lower.
            retried = True
            for f in range(npar):
                vecs[13, f] = p[f]
            if _start(x, y, i0, i1, nbg, nslot, live, centre, phase, shape, imap, link, ref, link_k, fwmin,
                      fwmax, p, True):
                _project(p, npar, blo, bhi)
                chi2b, itb, convb = _lm(n, xb, yb, wb, tb, nbg, nslot, live, shape, imap, kind, link, ref, link_k,
                                        p, npar, blo, bhi, max_iter, xtol, ftol, jac, rb, mats, vecs)
                total_it += itb
            else:
                chi2b = np.inf
            if chi2b < chi2 * (1.0 - 1e-12):
                chi2, it, converged = chi2b, itb, convb
            else:
                for f in range(npar):
                    p[f] = vecs[13, f]
                chi2, _ = _evaluate(n, xb, yb, wb, tb, nbg, nslot, live, shape, imap, link, ref, link_k, p, npar,
                                    jac, rb, mats[0], vecs[0], mats[4])
            nabsent = _finish(x, i0, i1, nfinite, npar, nbg, nslot, live, shape, imap, link, ref, link_k, fwmin,
                              fwmax, chi2, it, converged, min_snr, p, mats, vecs, res, members, kind, blo, bhi)
        if nabsent == 0 or nlive == 1:
            break
        # drop the most clearly absent peak (a width on its bound, else the lowest amplitude
        # over error: an absent peak's collapse also inflates its neighbours' errors, which
        # are then found present once it is gone) and fit the others again from here
        worst = -1
        worst_score = np.inf
        amp_max = 0.0
        for i in range(nslot):
            if live[i] and res[members[i], P_AMPLITUDE] > amp_max:
                amp_max = res[members[i], P_AMPLITUDE]
        for i in range(nslot):
            if live[i] and res[members[i], P_STATUS] == PEAK_ABSENT:
                r = res[members[i]]
                fw_i = r[P_FWHM]
                snr = r[P_AMPLITUDE] / r[P_AMPLITUDE_ERR]
                if not (r[P_AMPLITUDE] > 0.0) or fw_i <= fwmin * (1.0 + 1e-9) or fw_i >= fwmax * (1.0 - 1e-9):
                    score = -3.0  # no height, or a width on its bound
                elif not math.isfinite(snr):
                    score = -2.0 + r[P_AMPLITUDE] / amp_max  # singular: the weakest first
                elif fw_i < h:
                    score = -1.0 + fw_i / h  # narrower than a bin: the narrowest first
                else:
                    score = snr
                if score < worst_score:
                    worst_score = score
                    worst = i
        if worst_score >= 0.0:
            # only weak against its error, which overlap inflates: drop it on trial, and
            # decide by the chi2 of the fit without it (above)
            testing = worst
            chi2_full = chi2
            var_full = chi2 / (nfinite - npar) if nfinite > npar else np.inf
            it_full = it
            conv_full = converged
            for f in range(npar):
                vecs[13, f] = p[f]
        for f in range(NPARMAX):
            vecs[7, f] = p[f]
        old = imap  # read below before _layout rewrites it
        live[worst] = False
        r = res[members[worst]]
        for f in range(NPF):
            r[f] = np.nan
        r[P_STATUS] = PEAK_ABSENT
        # remap the kept values into the new layout
        for f in range(5):
            for i in range(nslot):
                vecs[8 + f, i] = vecs[7, old[f, i]] if old[f, i] >= 0 else np.nan
        npar = _layout(nslot, live, phase, nbg, shape, share_fwhm, share_shape, share_asym, link, imap, kind)
        for f in range(5):
            for i in range(nslot):
                if imap[f, i] >= 0:
                    p[imap[f, i]] = vecs[8 + f, i]
    ok = True
    for i in range(nslot):
        r = res[members[i]]
        r[P_NITER] = total_it
        if r[P_STATUS] != OK:
            ok = False
    return ok


@jit
def fit_groups(x, y, g_low, g_high, g_first, g_n, members, centre0, ref0, phase, shifts, shape, nbg,
               share_fwhm, share_shape, share_asym, link, link_k, poisson, warm_start, max_iter, xtol, ftol,
               min_snr, min_points, out):
    """Fit every group of every pattern ``y[frame, batch, nx]`` into ``out[frame, batch, npeak, NPF]``.

    ``shifts[frame, batch, npeak]`` (or shape (1, 1, npeak) for none) moves each peak's
    expected centre, and each group's window by the mean of its peaks' shifts.
    """
    nf = y.shape[0]
    nbatch = y.shape[1]
    ng = g_low.shape[0]
    nmax = x.shape[0]  # a tracked window may be anywhere
    xb = np.zeros(nmax)
    yb = np.zeros(nmax)
    wb = np.zeros(nmax)
    rb = np.zeros((5, nmax))
    tb = np.zeros((MAXBG, nmax))
    jac = np.zeros((NPARMAX, nmax))
    mats = np.zeros((6, NPARMAX, NPARMAX))
    vecs = np.zeros((16, NPARMAX))
    blo = np.zeros(NPARMAX)
    bhi = np.zeros(NPARMAX)
    imap = np.zeros((5, MAXPK), dtype=np.int64)
    kind = np.zeros(NPARMAX, dtype=np.int64)
    centre = np.zeros(MAXPK)
    ref = np.zeros(MAXPK)
    prev = np.zeros((nbatch, ng, NPARMAX))
    prev_live = np.ones((nbatch, ng, MAXPK), dtype=np.bool_)
    prev_ok = np.zeros((nbatch, ng), dtype=np.bool_)
    p = np.zeros(NPARMAX)
    live = np.ones(MAXPK, dtype=np.bool_)
    for f in range(nf):
        for b in range(nbatch):
            yrow = y[f, b]
            res = out[f, b]
            sf = f if shifts.shape[0] > 1 else 0
            sb = b if shifts.shape[1] > 1 else 0
            for g in range(ng):
                k0 = g_first[g]
                nslot = g_n[g]
                mem = members[k0:k0 + nslot]
                sh = shifts[sf, sb]
                shg = vecs[15, :nslot]  # scratch row
                for i in range(nslot):
                    shg[i] = sh[mem[i]]
                use_p = warm_start and prev_ok[b, g]
                if use_p:
                    for i in range(NPARMAX):
                        p[i] = prev[b, g, i]
                    for i in range(nslot):
                        live[i] = prev_live[b, g, i]
                ok = fit_group(x, yrow, g_low[g], g_high[g], shg, nslot, mem, centre0[k0:k0 + nslot],
                               ref0[k0:k0 + nslot], phase[k0:k0 + nslot], shape, nbg, share_fwhm, share_shape,
                               share_asym, link, link_k, poisson, max_iter, xtol, ftol, min_snr, min_points, p,
                               use_p, res, live, centre, ref, imap, kind, blo, bhi, xb, yb, wb, tb, jac, rb,
                               mats, vecs)
                if use_p and not ok:
                    ok = fit_group(x, yrow, g_low[g], g_high[g], shg, nslot, mem, centre0[k0:k0 + nslot],
                                   ref0[k0:k0 + nslot], phase[k0:k0 + nslot], shape, nbg, share_fwhm,
                                   share_shape, share_asym, link, link_k, poisson, max_iter, xtol, ftol, min_snr,
                                   min_points, p, False, res, live, centre, ref, imap, kind, blo, bhi, xb, yb,
                                   wb, tb, jac, rb, mats, vecs)
                if warm_start:
                    prev_ok[b, g] = ok
                    for i in range(NPARMAX):
                        prev[b, g, i] = p[i]
                    for i in range(nslot):
                        prev_live[b, g, i] = live[i]
