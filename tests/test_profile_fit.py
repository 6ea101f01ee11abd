"""fit_peaks beyond the single Gaussian (issue 14): peak shapes, Chebyshev backgrounds, joint
fits, shared parameters, strain-linked positions, absent peaks and tracked windows.

The truth is made with the reference numpy definitions of :mod:`xrdflow.profiles`; the
optimum is checked against ``scipy.optimize.least_squares`` on the same model, weights and
bounds, on synthetic and on real patterns."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from conftest import SHARED_DATA as DATA
from scipy.optimize import least_squares

from xrdflow import fit_peaks, read_patterns
from xrdflow import profiles as PR
from xrdflow._peaks import STATUS

needs_data = pytest.mark.skipif(not DATA.is_dir(),
                                reason=f"real data folder {DATA} absent (set XRDFLOW_SHARED_DATA)")

OK = STATUS["ok"]
Q = np.round(np.linspace(20.0, 30.0, 1001), 10)  # 1/nm, bin 0.01
TRUE_SHAPE = {"gaussian": {}, "lorentzian": {}, "pseudo_voigt": {"eta": 0.4}, "pearson7": {"m": 2.5},
              "split_pseudo_voigt": {"eta": 0.4, "asymmetry": 0.2}}
FIELD_OF = {"eta": "eta", "m": "m", "asymmetry": "asymmetry"}


def _pat(y, x=Q, dim="q", unit="q_nm^-1"):
    y = np.asarray(y, float)
    dims = (("frame",) if y.ndim == 2 else ()) + (dim,)
    return xr.DataArray(y, dims=dims, coords={dim: (dim, x)}, attrs={"radial_unit": unit, "units": "counts"})


def _window(x, low, high):
    lo = int(np.searchsorted(x, low, "left"))
    hi = int(np.searchsorted(x, high, "right"))
    return lo, hi


def _cheb_truth(x, lo, hi, coefs):
    return PR.chebyshev_background(x, coefs, x[lo], x[hi - 1])


# ---------------------------------------------------------------- the scipy reference fit
def _n_shape(shape):
    return len(PR.SHAPE_PARAMETERS[shape])


def _model(p, x, shape, nbg, npk, xlo, xhi):
    y = PR.chebyshev_background(x, p[:nbg], xlo, xhi) if nbg else np.zeros_like(x)
    k = nbg
    ns = _n_shape(shape)
    for _ in range(npk):
        a, x0, fw = p[k:k + 3]
        sp = dict(zip(PR.SHAPE_PARAMETERS[shape], p[k + 3:k + 3 + ns]))
        y = y + PR.peak(x, a, x0, fw, shape, **sp)
        k += 3 + ns
    return y


def _bounds(shape, nbg, npk, x):
    h = (x[-1] - x[0]) / (x.size - 1)
    lo = [-np.inf] * nbg
    hi = [np.inf] * nbg
    extra = {"eta": (0.0, 1.0), "m": (0.6, 60.0), "asymmetry": (-0.9, 0.9)}
    for _ in range(npk):
        lo += [0.0, x[0], 0.1 * h * 2.3548200450309493]
        hi += [np.inf, x[-1], x[-1] - x[0]]
        for name in PR.SHAPE_PARAMETERS[shape]:
            lo.append(extra[name][0])
            hi.append(extra[name][1])
    return np.array(lo), np.array(hi)


def _scipy_fit(xw, yw, shape, nbg, peaks, poisson, perturb=1e-3):
    """least_squares on the window ``xw, yw`` from ``peaks`` (list of (A, x0, fw, *shape)),
    the background coefficients started by linear least squares under those peaks."""
    npk = len(peaks)
    xlo, xhi = xw[0], xw[-1]
    w = 1.0 / np.maximum(yw, 1.0) if poisson else np.ones_like(yw)
    sw = np.sqrt(w)
    pk = np.concatenate([np.asarray(p, float) for p in peaks])
    lo, hi = _bounds(shape, nbg, npk, xw)
    start = pk * (1 + perturb * np.cos(np.arange(pk.size) + 1.0))
    start = np.clip(start, lo[nbg:] + 1e-9 * (hi[nbg:] - lo[nbg:]).clip(max=1),
                    hi[nbg:] - 1e-9 * (hi[nbg:] - lo[nbg:]).clip(max=1))
    u = (2 * xw - xlo - xhi) / (xhi - xlo)
    T = np.polynomial.chebyshev.chebvander(u, nbg - 1)
    under = _model(start, xw, shape, 0, npk, xlo, xhi)
    c0 = np.linalg.lstsq(T * sw[:, None], (yw - under) * sw, rcond=None)[0]
    p0 = np.r_[c0, start]

    def res(p):
        return sw * (yw - _model(p, xw, shape, nbg, npk, xlo, xhi))

    # restarted until chi2 stops falling: trf can stall on a flat valley far from the tolerances
    best = None
    for _ in range(8):
        sol = least_squares(res, p0, bounds=(lo, hi), xtol=1e-15, ftol=1e-15, gtol=1e-15, x_scale="jac",
                            max_nfev=20000)
        if best is not None and not sol.cost < best.cost * (1 - 1e-15):
            break
        best = sol
        p0 = sol.x
    # polished by MINPACK's Levenberg-Marquardt (no bounds): where no parameter sits on a
    # bound (the only cases compared) the bounded optimum is this local one
    lm = least_squares(res, best.x, method="lm", xtol=1e-15, ftol=1e-15, gtol=1e-15, x_scale="jac",
                       max_nfev=20000)
    x = lm.x if np.all((lm.x >= lo) & (lm.x <= hi)) and lm.cost <= best.cost else best.x
    # and by Gauss-Newton steps (central-difference Jacobian) while chi2 falls: scipy stops
    # early in flat valleys, a few 1e-13 of chi2 (1e-4 of an error) from the minimum
    cost = np.sum(res(x) ** 2)
    for _ in range(20):
        step = 1e-6 * np.maximum(np.abs(x), 1e-3 * (np.abs(x).max()))
        J = np.stack([(res(x + e) - res(x - e)) / (2 * e[i]) for i, e in enumerate(np.diag(step))], 1)
        trial = x - np.linalg.lstsq(J, res(x), rcond=None)[0]
        c = np.sum(res(trial) ** 2)
        if not (c < cost and np.all((trial >= lo) & (trial <= hi))):
            break
        x, cost = trial, c
    return x


def _peak_params(fits, shape, idx):
    """[(A, x0, fwhm, *shape params)] of xrdflow's fit at ``idx`` (dict of isel), per peak."""
    sel = fits.isel(idx)
    out = []
    for j in range(sel.sizes["peak"]):
        s = sel.isel(peak=j)
        row = [float(s.amplitude), float(s.position), float(s.fwhm)]
        row += [float(s[FIELD_OF[n]]) for n in PR.SHAPE_PARAMETERS[shape]]
        out.append(row)
    return out


def _on_bound(row, shape, xw, rel=1e-6):
    h = (xw[-1] - xw[0]) / (xw.size - 1)
    a, x0, fw = row[:3]
    span = xw[-1] - xw[0]
    if not (a > 0) or x0 - xw[0] < rel * span or xw[-1] - x0 < rel * span:
        return True
    if fw <= 0.1 * h * 2.3548200450309493 * (1 + 1e-6) or fw >= span * (1 - 1e-6):
        return True
    for name, v in zip(PR.SHAPE_PARAMETERS[shape], row[3:]):
        lim = {"eta": (0.0, 1.0), "m": (0.6, 60.0), "asymmetry": (-0.9, 0.9)}[name]
        if v - lim[0] < 1e-6 or lim[1] - v < 1e-6:
            return True
    return False


def _compare_with_scipy(fits, shape, nbg, x, y, low, high, idx, poisson):
    """Assert xrdflow's answer at ``idx`` is scipy's optimum; returns False when skipped
    (status not ok or a parameter on a bound)."""
    sel = fits.isel(idx)
    if not (sel.status == OK).all():
        return False
    lo, hi = _window(x, low, high)
    xw, yw = x[lo:hi], y[lo:hi]
    ours = _peak_params(fits, shape, idx)
    if any(_on_bound(r, shape, xw) for r in ours):
        return False
    ref = _scipy_fit(xw, yw, shape, nbg, ours, poisson)
    w = 1.0 / np.maximum(yw, 1.0) if poisson else np.ones_like(yw)
    chi2_ref = float(np.sum(w * (yw - _model(ref, xw, shape, nbg, len(ours), xw[0], xw[-1])) ** 2))
    npar = nbg + sum(len(r) for r in ours)
    chi2_ours = float(sel.residual.isel(peak=0)) ** 2 * (xw.size - npar)
    # xrdflow is at (or below) scipy's minimum
    assert chi2_ours <= chi2_ref * (1 + 1e-9), ("chi2", chi2_ours, chi2_ref, shape, idx)
    k = nbg
    for j, row in enumerate(ours):
        theirs = ref[k:k + len(row)]
        k += len(row)
        a, x0, fw = theirs[:3]
        where = f"{shape} {idx} peak {j}"
        s = sel.isel(peak=j)
        assert row[1] == pytest.approx(x0, rel=1e-6), ("position", where)
        assert row[2] == pytest.approx(fw, rel=1e-5), ("fwhm", where)
        assert row[0] == pytest.approx(a, rel=1e-5), ("amplitude", where)
        for name, mine, their in zip(PR.SHAPE_PARAMETERS[shape], row[3:], theirs[3:]):
            # a shape parameter may be a flat direction of chi2 (m = 13 +- 13): there the
            # optimum is only defined to a small fraction of its error
            err = float(s[name + "_error"])
            scale = abs(their) if name == "m" else 1.0
            assert abs(mine - their) <= max(1e-5 * scale, 1e-4 * err), (name, mine, their, err, where)
        # the background at the centre: the fitted Chebyshev polynomial there
        bg = PR.chebyshev_background(x0, ref[:nbg], xw[0], xw[-1])
        assert float(s.background) == pytest.approx(bg, abs=1e-5 * max(abs(a), abs(bg))), ("background", where)
    return True


# ----------------------------------------------------------------------- 1. honest errors
def _poisson_run(shape, nbg, n=300, seed=0, centre=25.0, hw=0.5, amp=400.0, fwhm=0.1):
    rng = np.random.default_rng(seed)
    lo, hi = _window(Q, centre - hw, centre + hw)
    coefs = [50.0, 10.0, 5.0][:nbg]
    bg = _cheb_truth(Q, lo, hi, coefs)
    x0 = centre + rng.uniform(-0.03, 0.03, n)
    mu = bg[None, :] + np.stack([PR.peak(Q, amp, c, fwhm, shape, **TRUE_SHAPE[shape]) for c in x0])
    return rng.poisson(mu).astype(float), x0, {"amplitude": amp, "fwhm": fwhm, **TRUE_SHAPE[shape]}


@pytest.mark.parametrize("background", ["constant", ("chebyshev", 2)])
@pytest.mark.parametrize("shape", PR.SHAPES)
def test_errors_are_honest_for_every_shape(shape, background):
    nbg = 1 if background == "constant" else 3
    y, x0, truth = _poisson_run(shape, nbg, seed=PR.SHAPES.index(shape) + 10 * nbg)
    fits = fit_peaks(_pat(y), [25.0], half_width=0.5, shape=shape, background=background,
                     error_model="poisson").compute().isel(peak=0)
    ok = fits.status.values == OK
    assert ok.mean() > 0.99, np.unique(fits.status.values, return_counts=True)
    n = int(ok.sum())
    checks = {"position": x0, "fwhm": truth["fwhm"], "amplitude": truth["amplitude"]}
    checks |= {name: truth[name] for name in PR.SHAPE_PARAMETERS[shape]}
    for name, true in checks.items():
        z = ((fits[name] - true) / fits[name + "_error"]).values[ok]
        assert abs(z.mean()) < 4 / np.sqrt(n), (name, z.mean())
        assert 0.8 < z.std() < 1.25, (name, z.std())
    # the area and integral breadth are the closed forms of the fitted parameters
    sp = {k: fits[k].values[ok] for k in PR.SHAPE_PARAMETERS[shape]}
    area = np.array([PR.area(a, f, shape, **{k: v[i] for k, v in sp.items()})
                     for i, (a, f) in enumerate(zip(fits.amplitude.values[ok], fits.fwhm.values[ok]))])
    np.testing.assert_allclose(fits.area.values[ok], area, rtol=1e-10)
    np.testing.assert_allclose(fits.integral_breadth.values[ok], area / fits.amplitude.values[ok], rtol=1e-10)


# ------------------------------------------------------------------ 2. same optimum as scipy
@pytest.mark.parametrize("background", ["constant", ("chebyshev", 2)])
@pytest.mark.parametrize("shape", PR.SHAPES)
def test_same_optimum_as_scipy_synthetic(shape, background):
    nbg = 1 if background == "constant" else 3
    y, _, _ = _poisson_run(shape, nbg, n=6, seed=99 + PR.SHAPES.index(shape))
    fits = fit_peaks(_pat(y), [25.0], half_width=0.5, shape=shape, background=background,
                     error_model="poisson").compute()
    compared = sum(_compare_with_scipy(fits, shape, nbg, Q, y[i], 24.5, 25.5, {"frame": i, "peak": [0]}, True)
                   for i in range(y.shape[0]))
    assert compared >= 4


def _ti64():
    path = DATA / "lightform-i12-ti64-pixium" / "reference" / "caked_xrdfit_pixium_03150.dat"
    if not path.exists():
        pytest.skip(f"real data {path} absent")
    return read_patterns(path, unit="2th_deg", wavelength_a=0.1393)


def _fe3o4():
    path = DATA / "dioptas-fe3o4-map-pilatus1m" / "xy"
    if not path.exists():
        pytest.skip(f"real data {path} absent")
    return read_patterns(path)


@needs_data
@pytest.mark.parametrize("shape", ["pseudo_voigt", "pearson7", "split_pseudo_voigt"])
def test_same_optimum_as_scipy_real_ti64(shape):
    pat = _ti64()
    sectors = [0, 5, 9, 14, 18, 27]
    pat = pat.isel(azimuth=sectors)
    x = pat.two_theta.values
    centres, hw = [3.123, 4.604], 0.04
    fits = fit_peaks(pat, centres, half_width=hw, shape=shape, background="linear").compute()
    compared = 0
    for a in range(len(sectors)):
        for j, c in enumerate(centres):
            compared += _compare_with_scipy(fits, shape, 2, x, pat.values[0, a], c - hw, c + hw,
                                            {"frame": 0, "azimuth": a, "peak": [j]}, False)
    assert compared >= 6


@needs_data
@pytest.mark.parametrize("shape, background", [("pseudo_voigt", "linear"), ("pearson7", "linear"),
                                               ("pseudo_voigt", ("chebyshev", 2)), ("lorentzian", ("chebyshev", 2))])
def test_same_optimum_as_scipy_real_fe3o4(shape, background):
    pat = _fe3o4()
    x = pat.two_theta.values
    nbg = 2 if background == "linear" else 3
    centres, hw = [10.114, 15.127], 0.3  # the strongest rings (FWHM ~0.2 deg)
    fits = fit_peaks(pat.chunk(frame=3), centres, half_width=hw, shape=shape, background=background).compute()
    compared = 0
    for f in range(pat.sizes["frame"]):
        for j, c in enumerate(centres):
            compared += _compare_with_scipy(fits, shape, nbg, x, pat.values[f], c - hw, c + hw,
                                            {"frame": f, "peak": [j]}, False)
    assert compared >= 4


# ----------------------------------------------------------------------------- 3. joint fits
def _two_peaks(c, amps, fwhm, shape="pseudo_voigt", bg=30.0, n=1, seed=0, noise=True, **sp):
    sp = {k: v for k, v in sp.items() if v is not None} if sp else {"eta": 0.5}
    mu = bg + sum(PR.peak(Q, a, x0, fwhm, shape, **sp) for a, x0 in zip(amps, c))
    if not noise:
        return np.repeat(mu[None], n, 0)
    return np.random.default_rng(seed).poisson(np.repeat(mu[None], n, 0)).astype(float)


FIT_VARS = ["position", "fwhm", "amplitude", "eta", "area", "background"]


def test_joint_far_apart_equals_separate_fits():
    c = [24.0, 25.0]
    hw = 0.6  # the windows [23.4, 24.6] and [24.4, 25.6] overlap: one group; the peaks do not
    kw = dict(shape="pseudo_voigt", background="constant")
    # noise-free Gaussians (a neighbour's tail is 1e-30 of its height in the other window),
    # both through the general kernel: joint and separate fits find the truth
    y0 = _two_peaks(c, [500.0, 300.0], 0.08, shape="gaussian", noise=False, eta=None)
    g = dict(shape="gaussian", background="constant", overlap="joint")
    joint0 = fit_peaks(_pat(y0), c, half_width=hw, **g).compute()
    assert (joint0.group.values == [0, 0]).all() and (joint0.status == OK).all()
    for j in range(2):
        alone = fit_peaks(_pat(y0), np.array([[c[j] - hw, c[j] + hw]]), **g).compute()
        assert (alone.status == OK).all()
        for name in ("position", "fwhm", "amplitude", "area", "background"):
            np.testing.assert_allclose(joint0[name].isel(peak=j), alone[name].isel(peak=0), rtol=1e-7, err_msg=name)
    np.testing.assert_allclose(joint0.position[0], c, rtol=1e-9)
    np.testing.assert_allclose(joint0.fwhm[0], 0.08, rtol=1e-7)
    np.testing.assert_allclose(joint0.amplitude[0], [500.0, 300.0], rtol=1e-7)
    # Poisson noise, eta = 0.5: the same values within the errors
    y = _two_peaks(c, [500.0, 300.0], 0.08, n=20, seed=3)
    joint = fit_peaks(_pat(y), c, half_width=hw, overlap="joint", error_model="poisson", **kw).compute()
    sep = fit_peaks(_pat(y), c, half_width=hw, error_model="poisson", **kw).compute()
    assert (joint.status == OK).all() and (sep.status == OK).all()
    # (not the background: a separate window holds 1-2 counts of the other peak's Lorentzian tail)
    for name in ("position", "fwhm", "amplitude", "eta", "area"):
        # the joint fit uses a superset of the data: the difference is below the separate error
        d = ((joint[name] - sep[name]) / sep[name + "_error"]).values
        assert np.abs(d).max() < 2.5 and d.std() < 1, (name, np.abs(d).max(), d.std())


def test_joint_resolves_peaks_one_fwhm_apart():
    c, fwhm, n = [25.0, 25.1], 0.1, 200
    y = _two_peaks(c, [500.0, 300.0], fwhm, n=n, seed=5)
    fits = fit_peaks(_pat(y), c, half_width=0.5, shape="pseudo_voigt", background="constant",
                     overlap="joint", error_model="poisson").compute()
    ok = (fits.status == OK).all("peak").values
    # every realisation resolves both peaks (the true minimum has chi2 ~ dof); a fit that
    # merges them into one peak of FWHM 0.17 (chi2 ~ 3 dof) is a local minimum
    assert ok.mean() > 0.97, {tuple(r): int(n) for r, n in zip(*np.unique(
        fits.status.values[~ok], axis=0, return_counts=True))}
    for j in range(2):
        for name, true in (("position", c[j]), ("fwhm", fwhm), ("amplitude", [500.0, 300.0][j])):
            z = ((fits[name].isel(peak=j) - true) / fits[name + "_error"].isel(peak=j)).values[ok]
            assert abs(z.mean()) < 4 / np.sqrt(ok.sum()), (j, name, z.mean())
            assert 0.8 < z.std() < 1.25, (j, name, z.std())


@pytest.mark.parametrize("share", ["eta", ("fwhm",), ("fwhm", "eta")])
def test_share_gives_identical_values(share):
    c = [25.0, 25.15]
    y = _two_peaks(c, [500.0, 300.0], 0.1, n=10, seed=7)
    fits = fit_peaks(_pat(y), c, half_width=0.5, shape="pseudo_voigt", overlap="joint", share=share,
                     error_model="poisson").compute()
    assert (fits.status == OK).all()
    names = (share,) if isinstance(share, str) else share
    for name in names:
        for var in (name, name + "_error"):
            np.testing.assert_array_equal(fits[var].isel(peak=0), fits[var].isel(peak=1))
    assert fits.attrs["share"] == ",".join(names)
    # an unshared width or eta differs between the peaks
    for name in {"fwhm", "eta"} - set(names):
        assert (fits[name].isel(peak=0) != fits[name].isel(peak=1)).all()


def test_link_strain_recovers_the_ratio():
    q0 = np.array([25.0, 25.6])
    s = 1.002
    n = 100
    y = _two_peaks(q0 / s, [400.0, 250.0], 0.08, n=n, seed=11)
    fits = fit_peaks(_pat(y), list(q0), half_width=0.4, shape="pseudo_voigt", overlap="joint", link="strain",
                     error_model="poisson").compute()
    assert (fits.group.values == [0, 0]).all()
    ok = (fits.status == OK).all("peak").values
    assert ok.mean() > 0.97
    np.testing.assert_array_equal(fits.d_ratio.isel(peak=0), fits.d_ratio.isel(peak=1))
    np.testing.assert_array_equal(fits.d_ratio_error.isel(peak=0), fits.d_ratio_error.isel(peak=1))
    # positions obey the one ratio
    np.testing.assert_allclose(fits.position.values[ok], (q0[None, :] / fits.d_ratio.values[ok]), rtol=1e-12)
    z = ((fits.d_ratio.isel(peak=0) - s) / fits.d_ratio_error.isel(peak=0)).values[ok]
    assert abs(z.mean()) < 4 / np.sqrt(ok.sum()), z.mean()
    assert 0.8 < z.std() < 1.25, z.std()
    # the position error is the ratio's, propagated
    np.testing.assert_allclose(fits.position_error.values[ok],
                               q0[None, :] / fits.d_ratio.values[ok] ** 2 * fits.d_ratio_error.values[ok],
                               rtol=1e-9)


# --------------------------------------------------------------------------- 4. absent peaks
def test_absent_peak_in_a_joint_group():
    c = [25.0, 25.5]
    hw = 0.4
    y = _two_peaks(c, [500.0, 0.0], 0.1, n=10, seed=13)
    joint = fit_peaks(_pat(y), c, half_width=hw, shape="pseudo_voigt", overlap="joint",
                      error_model="poisson").compute()
    assert (joint.group.values == [0, 0]).all()
    assert (joint.status.isel(peak=1) == STATUS["peak_absent"]).all(), joint.status.values
    assert joint.position.isel(peak=1).isnull().all() and joint.amplitude.isel(peak=1).isnull().all()
    # the present peak (500 counts, 40 sigma) stays ok even when the absent one collapses onto
    # a bin (its FWHM at the lower bound) or to zero height, i.e. J^T W J is singular
    assert (joint.status.isel(peak=0) == OK).all(), joint.status.values.tolist()
    # the kept peak is the single-peak fit over the group's window, on the same background
    single = fit_peaks(_pat(y), np.array([[c[0] - hw, c[1] + hw]]), shape="pseudo_voigt",
                       error_model="poisson").compute()
    assert (single.status == OK).all()
    for name in FIT_VARS:
        np.testing.assert_allclose(joint[name].isel(peak=0), single[name].isel(peak=0), rtol=1e-6, err_msg=name)
    # and agrees with the fit over its own window within the errors
    own = fit_peaks(_pat(y), [c[0]], half_width=hw, shape="pseudo_voigt", error_model="poisson").compute()
    for name in ("position", "fwhm", "amplitude"):
        d = (joint[name].isel(peak=0) - own[name].isel(peak=0)) / own[name + "_error"].isel(peak=0)
        assert float(np.abs(d).max()) < 2, name


@pytest.mark.parametrize("shape", PR.SHAPES)
def test_noise_only_window_is_not_ok(shape):
    # a flat window: no peak to start from
    flat = fit_peaks(_pat(np.full((2, Q.size), 50.0)), [25.0], half_width=0.5, shape=shape, overlap="joint")
    assert (flat.status == STATUS["no_peak"]).all() and flat.position.isnull().all()
    # Poisson noise only: peak_absent or no_peak, NaN values; a 3-sigma "peak" (min_snr=3)
    # of one or two bins somewhere among the 100 is a rare false positive
    y = np.random.default_rng(17).poisson(np.full((100, Q.size), 50.0)).astype(float)
    fits = fit_peaks(_pat(y), [25.0], half_width=0.5, shape=shape, overlap="joint",
                     error_model="poisson").compute()
    st = fits.status.values
    absent = np.isin(st, [STATUS["peak_absent"], STATUS["no_peak"]])
    assert absent.mean() >= 0.9, np.unique(st, return_counts=True)
    assert fits.position.values[absent].size and np.isnan(fits.position.values[absent]).all()
    # false positives: the rate of a 3-sigma threshold with the position free over the window
    assert (st == OK).mean() <= 0.06, np.unique(st, return_counts=True)


# ------------------------------------------------------------------------------ 5. tracking
def _drifting(n=200, seed=19):
    rng = np.random.default_rng(seed)
    hw = 0.3
    x0 = 24.0 + np.linspace(0, 6 * hw, n)
    mu = 40.0 + np.stack([PR.peak(Q, 600.0, c, 0.08, "pseudo_voigt", eta=0.3) for c in x0])
    return _pat(rng.poisson(mu).astype(float)), x0, hw


def test_tracking_follows_a_drifting_peak():
    pat, x0, hw = _drifting()
    kw = dict(half_width=hw, shape="pseudo_voigt", error_model="poisson")
    fits = fit_peaks(pat, [24.0], track=True, **kw).compute().isel(peak=0)
    ok = fits.status.values == OK
    assert ok.mean() >= 0.98, np.unique(fits.status.values, return_counts=True)
    z = ((fits.position - x0) / fits.position_error).values[ok]
    assert np.abs(z).max() < 5
    assert abs(z.mean()) < 4 / np.sqrt(ok.sum()) and 0.8 < z.std() < 1.25
    fixed = fit_peaks(pat, [24.0], **kw).compute().isel(peak=0)
    late = fixed.status.values[100:]
    assert (late != OK).mean() > 0.9, np.unique(late, return_counts=True)


def test_tracking_lazy_and_same_with_dask(raise_if_dask_computes):
    pat, x0, hw = _drifting()
    kw = dict(half_width=hw, shape="pseudo_voigt", error_model="poisson", track=True)
    with raise_if_dask_computes() as sched:
        lazy = fit_peaks(pat.chunk(frame=25), [24.0], **kw)
        assert sched.total == 0
    assert isinstance(lazy.position.data, da.Array)
    assert lazy.position.data.numblocks[0] == 8
    got = lazy.compute()
    ref = fit_peaks(pat, [24.0], **kw)
    assert not isinstance(ref.position.data, da.Array)
    for name in ref.data_vars:
        np.testing.assert_array_equal(got[name].values, ref[name].values, err_msg=name)


# ----------------------------------------------------------- 6. the two Gaussian kernels agree
@pytest.mark.parametrize("background", ["constant", "linear"])
@pytest.mark.parametrize("noise", [False, True])
def test_general_kernel_gaussian_equals_fast_kernel(background, noise):
    rng = np.random.default_rng(23)
    x0 = 25.0 + rng.uniform(-0.05, 0.05, 20)
    bg = 50.0 + (2.0 * (Q - 25.0) if background == "linear" else 0.0)
    mu = bg + np.stack([PR.peak(Q, 500.0, c, 0.09) for c in x0])
    y = rng.poisson(mu).astype(float) if noise else mu
    kw = dict(half_width=0.5, background=background, error_model="poisson" if noise else None)
    fast = fit_peaks(_pat(y), [25.0], **kw)
    general = fit_peaks(_pat(y), [25.0], overlap="joint", **kw)  # a lone peak, the general kernel
    assert fast.attrs["kernel"] == "gaussian" and general.attrs["kernel"] == "profile"
    assert (fast.status == OK).all() and (general.status == OK).all()
    for name in ("position", "fwhm", "sigma"):
        np.testing.assert_allclose(general[name], fast[name], rtol=1e-7, err_msg=name)
    for name in ("amplitude", "area", "integral_breadth", "background"):
        np.testing.assert_allclose(general[name], fast[name], rtol=1e-6, err_msg=name)
    if noise:
        for name in ("position_error", "fwhm_error", "amplitude_error", "area_error"):
            np.testing.assert_allclose(general[name], fast[name], rtol=1e-4, err_msg=name)
    else:
        np.testing.assert_allclose(general.position.isel(peak=0), x0, rtol=1e-9)


# ----------------------------------------------------------------------------- 7. bad options
@pytest.mark.parametrize("kwargs, name", [
    (dict(shape="voigt"), "shape"),
    (dict(background=("chebyshev", 7)), "background"),
    (dict(shape="pseudo_voigt", share="m"), "share"),
    (dict(link="strain", r_axis=True), "link"),
    (dict(track=True, no_frame=True), "track"),
])
def test_bad_options_name_the_parameter(kwargs, name):
    kwargs = dict(kwargs)
    y = _two_peaks([25.0], [500.0], 0.1, n=3)
    pat = _pat(y)
    if kwargs.pop("r_axis", False):
        pat = _pat(y, x=Q, dim="r", unit="r_mm")
    if kwargs.pop("no_frame", False):
        pat = pat.isel(frame=0)
    with pytest.raises(ValueError, match=rf"^{name}:"):
        fit_peaks(pat, [25.0], half_width=0.5, **kwargs)


# ------------------------------------------------------------------ 8. two-phase run, end to end
def test_two_phase_run_joint_fit_against_truth():
    """A synthetic duplex-steel tensile run (ferrite 110 and austenite 111 about 1 FWHM apart,
    pseudo-Voigt rings, the austenite fading from 60 % to 0): detector images integrated
    with pyFAI in two sectors, then one joint pseudo-Voigt fit of the pair per sector and
    frame. Both positions follow the truth while both phases are there, the separation
    changes with load as the truth says, and the vanished phase is peak_absent, not a
    broken doublet."""
    import xrdflow
    from xrdflow import synthetic as S

    strains = [0.0, 0.05, 0.1]
    run = S.tensile_run(applied_strain=strains, shape=(512, 512), seed=4, phase="Fe-bcc", second_phase="Fe-fcc",
                        instrument_sigma_mm=0.8, ring_counts=30000.0, second_phase_fraction=(0.6, 0.0),
                        peak_shape="pseudo_voigt", eta=0.4)
    truth = run.truth(ring_average=False)
    lab = list(truth["reflections"]["label"])
    ia, ig = lab.index("Fe-bcc 110"), lab.index("Fe-fcc 111")
    ai = run.integrator()
    sectors = (0.0, 90.0)
    rows = []
    for k in range(len(strains)):
        img = run.frame(k)
        rows.append([ai.integrate1d(img, 240, unit="q_nm^-1", method=("bbox", "csr", "cython"),
                                    polarization_factor=0.99, radial_range=(28.6, 32.6),
                                    azimuth_range=(c - 10, c + 10)) for c in sectors])
    q = rows[0][0].radial
    pat = xr.DataArray(np.array([[r.intensity for r in row] for row in rows]), dims=("frame", "azimuth", "q"),
                       coords={"q": q, "azimuth": list(sectors)},
                       attrs={"radial_unit": "q_nm^-1", "wavelength_a": run.wavelength_a})
    refl = xr.concat([xrdflow.reflections(p, energy_kev=run.energy_kev).sel(reflection=[name])
                      for p, name in (("Fe-bcc", "Fe-bcc 110"), ("Fe-fcc", "Fe-fcc 111"))], dim="reflection")
    # windows wide enough for the Lorentzian tails; one eta (one instrument) for the pair
    fits = fit_peaks(pat, refl, half_width=1.0, shape="pseudo_voigt", overlap="joint", share="eta",
                     error_model="poisson").compute()
    assert (fits.group == fits.group[0]).all()  # one joint group
    st = fits.status.values
    assert (st[:2] == OK).all(), st  # both phases there: both ok
    # the austenite gone: peak_absent (NaN), and where the pseudo-Voigt misfits the sector's
    # profile (pixel splitting and the azimuthal strain gradient are not in the model) at
    # most a residue, weak against the peak it was
    assert st[2, :, 0].tolist() == [OK, OK] and STATUS["peak_absent"] in st[2, :, 1]
    assert np.isnan(fits.position.values[2][st[2] != OK]).all()
    area = fits.area.values
    assert np.all(np.nan_to_num(area[2, :, 1]) < 0.1 * area[0, :, 1])
    # the area ratio of the pair follows the phase fractions while both are there
    for k in range(2):
        ratio = truth["frames"]["area"][k][ig] / truth["frames"]["area"][k][ia]
        np.testing.assert_allclose(area[k, :, 1] / area[k, :, 0], ratio, rtol=0.1,
                                   err_msg=f"frame {k}: {truth['frames']['phase_fraction'][k][ig]}")
    seps = {}
    for k in range(len(strains)):
        for j, c in enumerate(sectors):
            t = run.truth_at(k, np.linspace(c - 10, c + 10, 201))
            for pk, i in ((0, ia), (1, ig)):
                if st[k, j, pk] != OK or (pk == 1 and k == 2):  # (the austenite's residue, above)
                    continue
                sig = t["sigma"][i]
                assert abs(fits.position.values[k, j, pk] - t["q_center"][i].mean()) < 0.05 * sig, (k, c, pk)
            if st[k, j, 1] == OK and k < 2:
                seps[k, c] = fits.position.values[k, j, 0] - fits.position.values[k, j, 1]
                truth_sep = t["q_center"][ia].mean() - t["q_center"][ig].mean()
                assert abs(seps[k, c] - truth_sep) < 0.01, (k, c, seps[k, c], truth_sep)
    # along the load the pair separates, across it it closes up
    assert seps[1, 0.0] - seps[0, 0.0] > 0.02 and seps[1, 90.0] - seps[0, 90.0] < 0
