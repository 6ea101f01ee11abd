"""strain_tensor throughput vs a per-frame numpy.linalg.lstsq loop, measured in one run.

Run: ``python benchmarks/ratio_strain.py [n_frames]``. Fits of 2000 frames x 36 sectors x
8 peaks (random tensors, 1e-5 noise, 2 % of the sectors failed) through the public
:func:`xrdflow.strain_tensor` (numpy, and dask with 2 threads; best of 3) and through the
straightforward loop a user writes: for every frame and peak, build the design matrix of the
good sectors and call ``numpy.linalg.lstsq`` (same model: exact q, plane stress). Prints
frames/s of each, the ratio, the agreement of the two answers, and the load average (the
machine may be shared). Goal: >= 5000 frames/s on 2 cores.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np


def make(n_frames=2000, n_sectors=36, n_peaks=8, seed=0):
    """A fits Dataset (frame, azimuth, peak) of rings strained by random in-plane tensors."""
    import xarray as xr

    rng = np.random.default_rng(seed)
    chi = np.arange(-180.0, 180.0, 360.0 / n_sectors) + 180.0 / n_sectors
    d0 = np.linspace(1.2, 2.6, n_peaks)
    lam = 0.1424
    theta = np.arcsin(lam / (2 * d0))
    e11, e22, e12 = (rng.normal(0, s, (n_frames, 1, n_peaks)) for s in (3e-3, 1e-3, 3e-4))
    c, s = np.cos(np.radians(chi))[None, :, None], np.sin(np.radians(chi))[None, :, None]
    ct2, st2 = np.cos(theta) ** 2, np.sin(theta) ** 2
    nu = 0.3
    e33 = -nu / (1 - nu) * (e11 + e22)
    eps = ct2 * (e11 * c * c + e22 * s * s + 2 * e12 * c * s) + e33 * st2
    d = d0 * (1 + eps + 1e-5 * rng.standard_normal(eps.shape))
    status = (rng.random(d.shape) < 0.02).astype(np.int8)
    dims = ("frame", "azimuth", "peak")
    fits = xr.Dataset({"d_spacing": (dims, d), "d_spacing_error": (dims, np.full(d.shape, 1e-5) * d0),
                       "status": (dims, status)},
                      coords={"azimuth": chi, "peak": [f"p{i}" for i in range(n_peaks)],
                              "d0": ("peak", d0), "sector_half_width": ("azimuth", np.full(n_sectors, 180.0 / n_sectors))},
                      attrs={"wavelength_a": lam})
    return fits


def lstsq_loop(fits, nu=0.3):
    """The per-frame reference: numpy.linalg.lstsq for each frame and peak."""
    d = fits.d_spacing.values
    err = fits.d_spacing_error.values
    ok = fits.status.values == 0
    d0 = fits.d0.values
    lam = fits.attrs["wavelength_a"]
    chi = np.radians(fits.azimuth.values)
    h2 = 2 * np.radians(fits.sector_half_width.values)
    f = np.sin(h2) / h2
    k = nu / (1 - nu)
    out = np.empty(d.shape[:1] + d.shape[2:] + (3,))
    for i in range(d.shape[0]):
        for p in range(d.shape[2]):
            g = ok[i, :, p]
            eps = d[i, g, p] / d0[p] - 1
            w = d0[p] / err[i, g, p]
            th = np.arcsin(lam / (2 * d[i, g, p].mean()))
            ct2, st2 = np.cos(th) ** 2, np.sin(th) ** 2
            c2 = f[g] * np.cos(2 * chi[g])
            X = np.c_[ct2 * 0.5 * (1 + c2) - k * st2, ct2 * 0.5 * (1 - c2) - k * st2, ct2 * f[g] * np.sin(2 * chi[g])]
            out[i, p] = np.linalg.lstsq(X * w[:, None], eps * w, rcond=None)[0]
    return out


def _best(fn, repeat):
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main(n_frames: int = 2000, repeat: int = 3) -> dict:
    import dask

    from xrdflow import strain_tensor

    load0 = os.getloadavg()[0]
    fits = make(n_frames)
    strain_tensor(fits.isel(frame=slice(0, 2)), reference="d0").compute()  # warm imports
    t_np = _best(lambda: strain_tensor(fits, reference="d0").compute(), repeat)
    lazy = fits.chunk({"frame": max(1, n_frames // 4)})
    with dask.config.set(scheduler="threads", num_workers=2):
        t_dask = _best(lambda: strain_tensor(lazy, reference="d0").compute(), repeat)
    n_loop = min(n_frames, 200)
    t_loop = _best(lambda: lstsq_loop(fits.isel(frame=slice(0, n_loop))), 1) * n_frames / n_loop
    ours = strain_tensor(fits.isel(frame=slice(0, n_loop)), reference="d0", scale_errors=False).compute()
    ref = lstsq_loop(fits.isel(frame=slice(0, n_loop)))
    diff = max(float(np.nanmax(np.abs(ours[name].values - ref[..., j])))
               for j, name in enumerate(("strain_axial", "strain_transverse", "strain_shear")))
    res = {"frames": n_frames, "sectors": fits.sizes["azimuth"], "peaks": fits.sizes["peak"],
           "numpy_s": t_np, "numpy_frames_per_s": n_frames / t_np,
           "dask2_s": t_dask, "dask2_frames_per_s": n_frames / t_dask,
           "lstsq_loop_s": t_loop, "lstsq_loop_frames_per_s": n_frames / t_loop,
           "ratio_vs_loop": t_loop / min(t_np, t_dask), "max_abs_diff": diff,
           "load_before": load0, "load_after": os.getloadavg()[0]}
    for key, value in res.items():
        print(f"{key:26s} {value:.4g}" if isinstance(value, float) else f"{key:26s} {value}")
    return res


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
