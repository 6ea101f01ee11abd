"""Physics of the numba Gaussian fit kernel against ground truth, curve_fit and minimize."""

import numpy as np
import pytest
from scipy.optimize import curve_fit, minimize

from xrdflow import _kernels as K

X = np.linspace(10.0, 30.0, 2001)  # uniform grid, step 0.01
CENTRES = np.array([12.0, 15.3, 20.1, 26.7])
HW = 0.3


def _windows(x=X, centres=CENTRES, hw=HW):
    lo = np.searchsorted(x, centres - hw).astype(np.int64)
    hi = np.searchsorted(x, centres + hw, side="right").astype(np.int64)
    return lo, hi


def _synthetic(nframe, x=X, seed=0, noise=True):
    rng = np.random.default_rng(seed)
    y = np.empty((nframe, 1, x.size))
    truth = np.empty((nframe, len(CENTRES), 3))
    for f in range(nframe):
        s = 0.04 + 0.03 * rng.random(len(CENTRES))
        c = CENTRES + 0.05 * rng.standard_normal(len(CENTRES))
        a = rng.uniform(100, 1000, len(CENTRES))
        mu = 30 + 0.5 * (x - 20)
        for i in range(len(CENTRES)):
            mu = mu + a[i] * np.exp(-((x - c[i]) ** 2) / (2 * s[i] ** 2))
        y[f, 0] = rng.poisson(mu) if noise else mu
        truth[f, :, 0], truth[f, :, 1], truth[f, :, 2] = c, s, a
    return y, truth


def _fit(y, lo, hi, x=X, linear=True, warm=False, min_snr=3.0):
    out = np.empty(y.shape[:2] + (lo.size, K.NFIELD))
    K.fit_batch(x, y, lo, hi, linear, warm, 100, 1e-8, 1e-12, min_snr, 7, out)
    return out


def _model(linear, xc):
    def f(x, a, x0, s, c0, c1=0.0):
        return c0 + c1 * (x - xc) + a * np.exp(-((x - x0) ** 2) / (2 * s * s))

    def jac(x, a, x0, s, c0, c1=0.0):
        g = np.exp(-((x - x0) ** 2) / (2 * s * s))
        cols = [g, a * g * (x - x0) / s**2, a * g * (x - x0) ** 2 / s**3, np.ones_like(x)]
        if linear:
            cols.append(x - xc)
        return np.array(cols).T

    return f, jac


def test_noise_free_recovers_truth_exactly():
    y, truth = _synthetic(5, noise=False)
    lo, hi = _windows()
    out = _fit(y, lo, hi)
    assert np.all(out[..., K.F_STATUS] == K.OK)
    # the true background is linear: the fit must be exact (windows hold the whole peak)
    np.testing.assert_allclose(out[:, 0, :, K.F_POSITION], truth[..., 0], rtol=1e-9)
    np.testing.assert_allclose(out[:, 0, :, K.F_SIGMA], truth[..., 1], rtol=1e-7)
    np.testing.assert_allclose(out[:, 0, :, K.F_AMPLITUDE], truth[..., 2], rtol=1e-7)


@pytest.mark.parametrize("linear", [True, False])
def test_agrees_with_curve_fit(linear):
    y, _ = _synthetic(40, seed=1)
    lo, hi = _windows()
    out = _fit(y, lo, hi, linear=linear)
    assert np.all(out[..., K.F_STATUS] == K.OK)
    n_compared = 0
    for f in range(y.shape[0]):
        for j in range(lo.size):
            xs, ys = X[lo[j] : hi[j]], y[f, 0, lo[j] : hi[j]]
            xc = 0.5 * (xs[0] + xs[-1])
            model, jac = _model(linear, xc)
            # crude independent start: curve_fit must find the optimum on its own
            p0 = [ys.max() - ys.min(), xs[np.argmax(ys)], 0.05, ys.min()] + ([0.0] if linear else [])
            popt, pcov, info, msg, ier = curve_fit(
                model, xs, ys, p0=p0, jac=jac, full_output=True,
                ftol=1e-13, xtol=1e-13, gtol=1e-13,
            )
            if ier not in (1, 2, 3, 4):
                continue
            r = out[f, 0, j]
            n_compared += 1
            assert abs(r[K.F_POSITION] / popt[1] - 1) <= 1e-6
            assert abs(r[K.F_SIGMA] / popt[2] - 1) <= 1e-6
            assert abs(r[K.F_AMPLITUDE] / popt[0] - 1) <= 1e-5
            err = np.sqrt(np.diag(pcov))
            np.testing.assert_allclose(
                [r[K.F_AMPLITUDE_ERR], r[K.F_POSITION_ERR], r[K.F_SIGMA_ERR]], err[:3], rtol=1e-4
            )
    assert n_compared > 0.9 * y.shape[0] * lo.size


def test_reaches_minimize_l2_optimum():
    """The seed notebook's method: scipy.optimize.minimize of the L2 norm."""
    y, _ = _synthetic(10, seed=2)
    lo, hi = _windows()
    out = _fit(y, lo, hi)
    for f in range(y.shape[0]):
        for j in range(lo.size):
            xs, ys = X[lo[j] : hi[j]], y[f, 0, lo[j] : hi[j]]
            xc = 0.5 * (xs[0] + xs[-1])
            model, _ = _model(True, xc)
            r = out[f, 0, j]
            p0 = [ys.max() - ys.min(), xs[np.argmax(ys)], 0.05, ys.min(), 0.0]
            res = minimize(lambda p: np.sum((ys - model(xs, *p)) ** 2), p0, method="Nelder-Mead",
                           options={"xatol": 1e-10, "fatol": 1e-10, "maxiter": 20000, "maxfev": 40000})
            ours = r[K.F_CHI2]
            # our optimum is at least as low as minimize's, and minimize's optimum is ours
            assert ours <= res.fun * (1 + 1e-9)
            if res.fun <= ours * (1 + 1e-6):
                assert abs(res.x[1] - r[K.F_POSITION]) <= 0.05 * r[K.F_POSITION_ERR]


def test_noise_floor_on_truth():
    """At the noise floor: centre errors match the reported standard errors, no bias.

    Homoscedastic Gaussian noise, for which unweighted least squares is the maximum
    likelihood estimate and its covariance is exact (with Poisson noise the unweighted
    covariance underestimates the centre error, since the noise is largest at the peak).
    """
    y, truth = _synthetic(200, seed=3, noise=False)
    y = y + np.random.default_rng(33).normal(0, 10.0, y.shape)
    lo, hi = _windows()
    out = _fit(y, lo, hi)
    ok = out[..., K.F_STATUS][:, 0] == K.OK
    assert ok.mean() > 0.99
    z = (out[:, 0, :, K.F_POSITION] - truth[..., 0]) / out[:, 0, :, K.F_POSITION_ERR]
    z = z[ok]
    assert 0.8 < np.std(z) < 1.2  # reported errors are honest
    assert abs(np.mean(z)) < 0.2  # unbiased


def test_non_uniform_grid_matches_uniform_path():
    y, truth = _synthetic(3, noise=False)
    lo, hi = _windows()
    x2 = X.copy()
    x2[1::2] += 1e-4  # break uniformity: exercises the one-exp-per-point path
    ytrue = np.empty_like(y)
    for f in range(3):
        mu = 30 + 0.5 * (x2 - 20)
        for i in range(len(CENTRES)):
            c, s, a = truth[f, i]
            mu = mu + a * np.exp(-((x2 - c) ** 2) / (2 * s**2))
        ytrue[f, 0] = mu
    out = _fit(ytrue, lo, hi, x=x2)
    assert np.all(out[..., K.F_STATUS] == K.OK)
    np.testing.assert_allclose(out[:, 0, :, K.F_POSITION], truth[..., 0], rtol=1e-9)


def test_status_codes_for_bad_windows():
    x = np.linspace(0, 10, 1001)
    rng = np.random.default_rng(4)
    peak = 10 + 500 * np.exp(-((x - 5) ** 2) / (2 * 0.1**2))
    rows = {
        "ok": rng.poisson(peak).astype(float),
        "flat": np.full_like(x, 7.0),
        "nan": np.full_like(x, np.nan),
        "noise": rng.normal(100, 1, x.size),
        "spike": np.where(np.arange(x.size) == 480, 1000.0, 10.0),
        "edge": rng.poisson(10 + 500 * np.exp(-((x - 5.55) ** 2) / (2 * 0.1**2))).astype(float),
    }
    y = np.stack(list(rows.values()))[:, None, :]
    lo = np.array([np.searchsorted(x, 4.5)], dtype=np.int64)
    hi = np.array([np.searchsorted(x, 5.5, side="right")], dtype=np.int64)
    out = _fit(y, lo, hi, x=x)
    status = dict(zip(rows, out[:, 0, 0, K.F_STATUS].astype(int)))
    assert status == {"ok": K.OK, "flat": K.NO_PEAK, "nan": K.BAD_INPUT, "noise": K.NO_PEAK,
                      "spike": K.NO_PEAK, "edge": K.PEAK_AT_EDGE}
    # too few points
    out = _fit(y[:1], np.array([500]), np.array([504]), x=x)
    assert out[0, 0, 0, K.F_STATUS] == K.BAD_INPUT
    # a few NaN (masked bins) are left out, not fatal
    yy = y[:1].copy()
    yy[0, 0, 470:480] = np.nan
    out = _fit(yy, lo, hi, x=x)
    assert out[0, 0, 0, K.F_STATUS] == K.OK
    assert abs(out[0, 0, 0, K.F_POSITION] - 5) < 5 * out[0, 0, 0, K.F_POSITION_ERR]


def test_warm_start_same_optimum():
    y, _ = _synthetic(30, seed=5)
    lo, hi = _windows()
    cold = _fit(y, lo, hi)
    warm = _fit(y, lo, hi, warm=True)
    assert np.all(warm[..., K.F_STATUS] == K.OK)
    np.testing.assert_allclose(warm[..., K.F_POSITION], cold[..., K.F_POSITION], rtol=1e-7)


def _counting_data(nf=150, seed=7):
    """Poisson counts on a low background (the noise is largest at the peak), and the centres."""
    rng = np.random.default_rng(seed)
    y = np.empty((nf, 1, X.size))
    truth = np.empty((nf, len(CENTRES)))
    for f in range(nf):
        c = CENTRES + 0.05 * rng.standard_normal(len(CENTRES))
        s = 0.04 + 0.03 * rng.random(len(CENTRES))
        a = rng.uniform(100, 1000, len(CENTRES))
        mu = 5 + 0.2 * (X - 20)  # low background: the noise is largest at the peak
        for i in range(len(CENTRES)):
            mu = mu + a[i] * np.exp(-((X - c[i]) ** 2) / (2 * s[i] ** 2))
        y[f, 0] = rng.poisson(mu)
        truth[f] = c
    return y, truth


def test_parallel_entry_gives_the_serial_bits():
    """fit_batch_parallel (numba prange, compiled in each process: the slow part of this
    test) gives fit_batch's bits, unweighted and with Poisson weights."""
    y, _ = _synthetic(30, seed=5)
    lo, hi = _windows()
    cold = _fit(y, lo, hi)
    par = np.empty_like(cold)
    K.fit_batch_parallel(X, y, lo, hi, True, False, 100, 1e-8, 1e-12, 3.0, 7, par)
    np.testing.assert_array_equal(par, cold)
    y, _ = _counting_data()
    out = np.empty((y.shape[0], 1, lo.size, K.NFIELD))
    K.fit_batch(X, y, lo, hi, True, False, 100, 1e-8, 1e-12, 3.0, 7, out, True)
    par = np.empty_like(out)
    K.fit_batch_parallel(X, y, lo, hi, True, False, 100, 1e-8, 1e-12, 3.0, 7, par, True)
    np.testing.assert_array_equal(par, out)


def test_poisson_weights_give_honest_centre_errors():
    """Counting data: with weights 1/max(y, 1) the centre z-scores have unit spread."""
    y, truth = _counting_data()
    nf = y.shape[0]
    lo, hi = _windows()
    zs = {}
    for poisson in (False, True):
        out = np.empty((nf, 1, lo.size, K.NFIELD))
        K.fit_batch(X, y, lo, hi, True, False, 100, 1e-8, 1e-12, 3.0, 7, out, poisson)
        ok = out[:, 0, :, K.F_STATUS] == K.OK
        assert ok.mean() > 0.99
        zs[poisson] = ((out[:, 0, :, K.F_POSITION] - truth) / out[:, 0, :, K.F_POSITION_ERR])[ok]
    assert 0.85 < np.std(zs[True]) < 1.15  # weighted: honest errors
    assert abs(np.mean(zs[True])) < 0.2  # and unbiased
    assert np.std(zs[False]) > 1.3  # unweighted errors are too small on such data


def test_poisson_weights_agree_with_weighted_curve_fit():
    y, _ = _synthetic(5, seed=8)
    lo, hi = _windows()
    out = np.empty(y.shape[:2] + (lo.size, K.NFIELD))
    K.fit_batch(X, y, lo, hi, True, False, 100, 1e-8, 1e-12, 3.0, 7, out, True)
    for f in range(y.shape[0]):
        for j in range(lo.size):
            xs, ys = X[lo[j] : hi[j]], y[f, 0, lo[j] : hi[j]]
            model, jac = _model(True, 0.5 * (xs[0] + xs[-1]))
            r = out[f, 0, j]
            p0 = [r[K.F_AMPLITUDE], r[K.F_POSITION], r[K.F_SIGMA], r[K.F_BACKGROUND], r[K.F_SLOPE]]
            p0[3] -= p0[4] * (p0[1] - 0.5 * (xs[0] + xs[-1]))
            popt, pcov = curve_fit(model, xs, ys, p0=p0, jac=jac, sigma=np.sqrt(np.maximum(ys, 1)),
                                   ftol=1e-13, xtol=1e-13, gtol=1e-13)
            assert r[K.F_STATUS] == K.OK
            assert abs(r[K.F_POSITION] / popt[1] - 1) <= 1e-6
            assert abs(r[K.F_SIGMA] / popt[2] - 1) <= 1e-6
            np.testing.assert_allclose(r[K.F_POSITION_ERR], np.sqrt(pcov[1, 1]), rtol=1e-4)


def _weak_peak_with_neighbour_tail(nframe, seed):
    """A weak peak and the tail of a strong neighbour rising into the window's right end."""
    rng = np.random.default_rng(seed)
    x = np.arange(3.30, 3.46, 0.0012)
    y = np.empty((nframe, 1, x.size))
    truth = np.empty(nframe)
    for f in range(nframe):
        c = 3.377 + 0.002 * rng.standard_normal()
        mu = (12 + 30 * (x - 3.3)
              + rng.uniform(20, 120) * np.exp(-((x - c) ** 2) / (2 * 0.0095**2))
              + rng.uniform(300, 1500) * np.exp(-((x - 3.437) ** 2) / (2 * 0.011**2)))
        y[f, 0] = rng.poisson(mu * 20) / 20.0  # averaged counts, as in caked data
        truth[f] = c
    lo = np.array([np.searchsorted(x, 3.377 - 0.04)], dtype=np.int64)
    hi = np.array([np.searchsorted(x, 3.377 + 0.04, side="right")], dtype=np.int64)
    return x, y, lo, hi, truth


def test_weak_peak_next_to_strong_neighbour_converges():
    """The Ti64 (10-11)-shoulder case: a Gauss-Newton fit oscillates for 100 iterations or
    runs to the window edge; the exact-Hessian steps and the interior restart converge."""
    x, y, lo, hi, truth = _weak_peak_with_neighbour_tail(60, seed=9)
    out = _fit(y, lo, hi, x=x)
    st = out[:, 0, 0, K.F_STATUS]
    assert np.all(st == K.OK), np.bincount(st.astype(int))
    # n_iter counts the steps of every attempt (the first one runs to the window edge)
    assert np.median(out[:, 0, 0, K.F_NITER]) <= 15 and out[:, 0, 0, K.F_NITER].max() < 100
    # the tail biases a Gaussian + line model a little; the peak is still found where it is
    assert np.all(np.abs(out[:, 0, 0, K.F_POSITION] - truth) < 0.003)


def test_iterations_are_few_and_degenerate_windows_have_a_status():
    y, _ = _synthetic(40, seed=10)
    lo, hi = _windows()
    out = _fit(y, lo, hi)
    assert np.all(out[..., K.F_STATUS] == K.OK)
    assert out[..., K.F_NITER].max() <= 10
    # a window holding only a monotonic tail has no peak inside: not ok, and no endless loop
    x = np.linspace(0, 1, 101)
    tail = np.random.default_rng(11).poisson(10 + 900 * np.exp(-((x - 1.1) ** 2) / (2 * 0.1**2)))
    out = _fit(tail[None, None, :].astype(float), np.array([0]), np.array([101]), x=x)
    assert out[0, 0, 0, K.F_STATUS] in (K.PEAK_AT_EDGE, K.NO_PEAK)
    assert out[0, 0, 0, K.F_NITER] < 100


_FIT_SCRIPT = """
import sys, numpy as np, xarray as xr
from xrdflow import fit_peaks
rng = np.random.default_rng(0)
q = np.linspace(20, 30, 2001)
c = 25.02 + rng.normal(0, 0.01, (40, 1))
y = rng.poisson(50 + 1000 * np.exp(-((q[None, :] - c) ** 2) / (2 * 0.05**2))).astype(float)
pat = xr.DataArray(y, dims=("frame", "q"), coords={"q": q}, attrs={"radial_unit": "q_nm^-1"})
f = fit_peaks(pat, {"p": 25.0}, half_width=0.3)
np.save(sys.argv[1], np.stack([f[v].values for v in f.data_vars if f[v].dtype.kind == "f"]))
"""


@pytest.mark.slow
def test_fresh_and_cached_kernels_give_identical_bits(tmp_path):
    """A threaded run compiles the kernels in-process; distributed workers load them from
    numba's cache. Both must produce the same bits (they did not with fastmath reassoc)."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    script = tmp_path / "fit.py"
    script.write_text(_FIT_SCRIPT)
    for name in ("fresh", "cached"):
        subprocess.run([sys.executable, str(script), str(tmp_path / f"{name}.npy")], env=env, check=True,
                       capture_output=True)
    assert any((tmp_path / "numba-cache").rglob("*.nbc")), "the first run wrote no cache"
    np.testing.assert_array_equal(np.load(tmp_path / "fresh.npy"), np.load(tmp_path / "cached.npy"))
