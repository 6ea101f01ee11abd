"""Peak-shape and joint fit throughput through fit_peaks vs scipy loops, measured in one run.

Run: ``python benchmarks/ratio_shapes.py [n_windows]``. For each shape, fits/s of
``fit_peaks`` on dask's threads (2 workers, the whole machine here), best of 3 runs after a
warm-up; the two-peak joint pseudo-Voigt in groups/s; then the baselines on subsamples of
the same windows: a ``scipy.optimize.least_squares`` loop (the same model, bounds and
analytic-free 2-point Jacobian, as a careful scipy user writes it) and the notebook's
``scipy.optimize.minimize`` loop on the squared residuals; the ratios; the load average.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

try:
    from ratio_fit import _best_rate
except ImportError:  # asv imports benchmarks as a package
    from .ratio_fit import _best_rate

SHAPE_KW = {"gaussian": {}, "lorentzian": {}, "pseudo_voigt": {"eta": 0.4}, "pearson7": {"m": 2.0},
            "split_pseudo_voigt": {"eta": 0.4, "asymmetry": 0.2}}


def make(nframe, shape="pseudo_voigt", npeak=8, npts=60, seed=0, pair=False):
    """Patterns (frame, q) with ``npeak`` windows of ``npts`` points (or ``npeak`` pairs of
    peaks 1.5 FWHM apart in one window each, ``pair``), Poisson noise."""
    from xrdflow.profiles import peak

    rng = np.random.default_rng(seed)
    h = 0.01
    x = np.arange(npeak * (npts + 20)) * h + 10.0
    centres = x[0] + (np.arange(npeak) + 0.5) * (npts + 20) * h
    fw = 0.12
    y = np.empty((nframe, x.size))
    for f in range(nframe):
        mu = 30.0 + 0.3 * (x - x[0])
        c = centres + 0.02 * rng.standard_normal(npeak)
        a = rng.uniform(100, 1000, npeak)
        for i in range(npeak):
            if pair:
                mu = mu + peak(x, a[i], c[i] - 0.75 * fw, fw, shape, **SHAPE_KW[shape])
                mu = mu + peak(x, 0.6 * a[i], c[i] + 0.75 * fw, fw, shape, **SHAPE_KW[shape])
            else:
                mu = mu + peak(x, a[i], c[i], fw, shape, **SHAPE_KW[shape])
        y[f] = rng.poisson(mu)
    return x, y, centres, npts * h / 2


def _scipy_rates(x, y, centres, hw, shape, nsub=200):
    from scipy.optimize import least_squares, minimize

    from xrdflow.profiles import SHAPE_PARAMETERS, peak

    names = SHAPE_PARAMETERS[shape]
    start = {"eta": 0.5, "m": 2.0, "asymmetry": 0.0}
    lo_b = {"eta": 0.0, "m": 0.6, "asymmetry": -0.9}
    hi_b = {"eta": 1.0, "m": 60.0, "asymmetry": 0.9}
    jobs = [(f, j) for f in range(y.shape[0]) for j in range(centres.size)][:nsub]

    def window(f, j):
        sel = (x >= centres[j] - hw) & (x <= centres[j] + hw)
        return x[sel], y[f, sel]

    def model(q, xs):
        c0, c1, a, x0, fw = q[:5]
        u = (2 * xs - xs[0] - xs[-1]) / (xs[-1] - xs[0])
        return c0 + c1 * u + peak(xs, a, x0, fw, shape, **dict(zip(names, q[5:])))

    def p0(xs, ys):
        return [ys.min(), 0.0, ys.max() - ys.min(), xs[np.argmax(ys)], 0.1] + [start[n] for n in names]

    t = time.perf_counter()
    for f, j in jobs:
        xs, ys = window(f, j)
        lb = [-np.inf, -np.inf, 0.0, xs[0], 0.0024] + [lo_b[n] for n in names]
        ub = [np.inf, np.inf, np.inf, xs[-1], xs[-1] - xs[0]] + [hi_b[n] for n in names]
        least_squares(lambda q: model(q, xs) - ys, p0(xs, ys), bounds=(lb, ub), x_scale="jac")
    ls = len(jobs) / (time.perf_counter() - t)
    t = time.perf_counter()
    for f, j in jobs[: nsub // 2]:
        xs, ys = window(f, j)
        with np.errstate(invalid="ignore", over="ignore"):  # unbounded: m < 0 tried on the way
            minimize(lambda q: np.sum((ys - model(q, xs)) ** 2), p0(xs, ys))
    mini = (nsub // 2) / (time.perf_counter() - t)
    return ls, mini


def main(n_windows: int = 80_000, repeat: int = 3) -> dict:
    import dask
    import xarray as xr

    from xrdflow import fit_peaks

    load0 = os.getloadavg()[0]
    npeak = 8
    nframe = max(2, n_windows // npeak)
    res = {}
    print(f"{nframe * npeak} windows of 60 points per shape, fit_peaks on dask threads (2), best of {repeat}; "
          f"os.cpu_count {os.cpu_count()}, load average {load0:.2f}")
    for label, shape, pair in [(s, s, False) for s in SHAPE_KW] + [("joint pseudo_voigt pairs", "pseudo_voigt",
                                                                       True)]:
        x, y, centres, hw = make(nframe, shape, npeak, pair=pair)
        pat = xr.DataArray(y, dims=("frame", "q"), coords={"q": x},
                           attrs={"radial_unit": "q_nm^-1"}).chunk({"frame": max(1, nframe // 16)})
        if pair:
            peaks = {f"p{j}{s}": c + d for j, c in enumerate(centres) for s, d in (("a", -0.09), ("b", 0.09))}
            kw = dict(half_width=hw - 0.09, overlap="joint", shape=shape)
            n = nframe * npeak  # groups
        else:
            peaks = list(centres)
            kw = dict(half_width=hw, shape=shape)
            n = nframe * npeak
        fit_peaks(pat.isel(frame=slice(0, 2)), peaks, **kw).status.compute()  # compile / load
        fits = fit_peaks(pat, peaks, **kw)
        with dask.config.set(scheduler="threads", num_workers=2):
            rate = _best_rate(lambda: fits.status.compute(), n, repeat)
        st = fits.status.compute().values
        ls, mini = _scipy_rates(x, y, centres, hw, shape) if not pair else (np.nan, np.nan)
        res[label] = dict(rate=rate, ok=float(np.mean(st == 0)), least_squares=ls, minimize=mini)
        unit = "groups/s" if pair else "fits/s"
        base = "" if pair else (f"   least_squares loop {ls:8.1f}/s ({rate / ls:6.0f}x)   minimize loop "
                                f"{mini:7.1f}/s ({rate / mini:6.0f}x)")
        print(f"{label:26s} {rate:10.0f} {unit}  ok {100 * res[label]['ok']:5.1f}%{base}")
    print(f"load average {load0:.2f} -> {os.getloadavg()[0]:.2f}")
    return res


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 80_000)
