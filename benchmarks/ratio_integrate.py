"""Same-run ratio: xrdflow.integrate (dask threaded, 2 workers) vs a plain sequential pyFAI loop.

Both use the same method, options and frames (2048 x 2048 uint16 by default, >= 40 frames).
The pyFAI loop builds its integrator once (as a careful user would); the integrator set-up
(CSR build) is excluded from both by a warm-up on one frame.

    python benchmarks/ratio_integrate.py [--frames 40] [--size 2048] [--npt 2000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _frames(n, size, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    r = np.hypot(yy - size * 0.52, xx - size * 0.47)
    base = 100 + 2000 * np.exp(-0.5 * ((r % 150) - 75) ** 2 / 4.0)
    return np.stack([rng.poisson(base * (1 + 0.01 * i)).astype(np.uint16) for i in range(n)])


def main(argv=None) -> float:
    import dask
    import dask.array as da
    import xarray as xr

    from xrdflow.geometry import Geometry
    from xrdflow import integrate

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--npt", type=int, default=2000)
    ap.add_argument("--chunk", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    size, n = args.size, args.frames
    pix = 200e-6 * 2048 / size
    geom = Geometry(dist=1.2, poni1=size * pix * 0.52, poni2=size * pix * 0.47, rot1=0.004, rot2=-0.003,
                    wavelength=1.4235e-11, detector="Detector", pixel1=pix, pixel2=pix, max_shape=(size, size))
    method = ("bbox", "csr", "cython")
    frames = _frames(n, size)
    opts = dict(unit="q_nm^-1", method=method, polarization_factor=0.99)

    # plain pyFAI loops, one integrator, warmed: truly sequential (OpenMP on one thread),
    # and as a user gets it by default (pyFAI's CSR engine spreads over the cores with OpenMP)
    from threadpoolctl import threadpool_limits

    ai = geom.to_pyfai()
    ai.integrate1d(frames[0], args.npt, **opts)
    with threadpool_limits(1, user_api="openmp"):
        t0 = time.perf_counter()
        ref = [ai.integrate1d(f, args.npt, **opts).intensity for f in frames]
        t_pyfai = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref_omp = [ai.integrate1d(f, args.npt, **opts).intensity for f in frames]
    t_pyfai_omp = time.perf_counter() - t0
    assert np.array_equal(np.array(ref), np.array(ref_omp))

    arr = xr.DataArray(da.from_array(frames, chunks=(args.chunk, -1, -1)), dims=("frame", "y", "x"))
    with dask.config.set(scheduler="threads", num_workers=args.workers):
        integrate(arr[: args.workers * args.chunk], geom, npt=args.npt, method=method,
                  polarization_factor=0.99, mask_negative=False).compute()  # warm each thread
        p = integrate(arr, geom, npt=args.npt, method=method, polarization_factor=0.99, mask_negative=False)
        t0 = time.perf_counter()
        out = p.compute()
        t_ours = time.perf_counter() - t0
    err = np.abs(out.values - np.array(ref)).max() / np.abs(ref).max()
    ratio = t_pyfai / t_ours
    print(f"frames {n} x {size}x{size}, npt {args.npt}, method {method}")
    print(f"pyFAI sequential loop (1 thread)  : {n / t_pyfai:8.2f} frames/s")
    print(f"pyFAI loop with its OpenMP threads: {n / t_pyfai_omp:8.2f} frames/s")
    print(f"xrdflow dask threads={args.workers} ({out.attrs.get('engine', '?')} engine): {n / t_ours:8.2f} frames/s")
    print(f"ratio vs sequential loop: {ratio:.2f}x   vs pyFAI+OpenMP: {t_pyfai_omp / t_ours:.2f}x   "
          f"max rel difference {err:.1e}")
    return ratio


if __name__ == "__main__":
    main()
