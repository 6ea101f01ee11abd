"""Same-run ratio: the fused engine (engine="xrdflow") vs pyFAI's integrate1d, per method,
and an end-to-end breakdown from a bitshuffle-LZ4 raw NeXus file.

Per method (no split, bbox, full; 2048 x 2048 uint16 frames by default), in one run:

* pyFAI ``integrate1d`` loop, one warmed integrator, OpenMP limited to 1 thread, and the same
  loop with pyFAI's own OpenMP threads (what a user gets by default);
* xrdflow ``integrate(..., engine="pyfai")`` and ``engine="xrdflow"`` on dask threads;
* the fused engine called eagerly (``engines.integrate_frames(threads=N)``).

Set-up costs (pyFAI's CSR build, the fused matrix, numba compilation) are excluded from every
figure by a warm-up; each figure is the best of ``--repeat`` runs. The machine load is printed.

End to end (``--e2e``): frames written as TIFFs, ingested into a bitshuffle-LZ4 raw NeXus file
(:func:`xrdflow.ingest`), then read + decompressed alone, integrated from memory, read +
integrated streaming, peaks fitted, patterns written, and the whole chain in one graph; each
next to a plain sequential pyFAI loop over the TIFFs (fabio + integrate1d) in the same run, and
the public call ``integrate(open_frames(raw), ...)`` timed once as a user meets it: the first
call after a 2-frame warm-up.

    python -m benchmarks.ratio_engine [--frames 48] [--size 2048] [--npt 2000] [--workers 2]
                                      [--methods no,bbox,full] [--e2e-frames 64] [--no-e2e]
                                      [--e2e-methods bbox,no]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _best(fn, repeat):
    best = float("inf")
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _geometry(size):
    from xrdflow.geometry import Geometry

    pix = 200e-6 * 2048 / size
    return Geometry(dist=1.2, poni1=size * pix * 0.47, poni2=size * pix * 0.52, rot1=0.004, rot2=-0.003,
                    wavelength=1.4235e-11, detector="Detector", pixel1=pix, pixel2=pix, max_shape=(size, size))


def compare_methods(frames, geom, *, npt, workers, repeat, methods, pyfai_frames):
    import dask
    import dask.array as da
    import xarray as xr
    from threadpoolctl import threadpool_limits

    from xrdflow import engines
    from xrdflow import integrate

    n = frames.shape[0]
    opts = dict(unit="q_nm^-1", polarization_factor=0.99)
    from xrdflow.nexus import frames_per_chunk_for

    # chunked as open_frames chunks a raw file (4 frames of 2048^2 uint16)
    fpc = frames_per_chunk_for(frames[0].nbytes)
    arr = xr.DataArray(da.from_array(frames, chunks=(fpc, -1, -1)), dims=("frame", "y", "x"))
    rows = []
    for split in methods:
        method = (split, "csr", "cython")
        ai = geom.to_pyfai()
        sub = frames[:pyfai_frames]
        ai.integrate1d(sub[0], npt, method=method, **opts)  # CSR build excluded
        with threadpool_limits(1, user_api="openmp"):
            t_py1, ref = _best(lambda: [ai.integrate1d(f, npt, method=method, **opts).intensity for f in sub],
                               repeat)
        t_pyomp, _ = _best(lambda: [ai.integrate1d(f, npt, method=method, **opts).intensity for f in sub],
                           repeat)
        ref = np.array(ref)
        figures = {"pyfai_1thread": len(sub) / t_py1, "pyfai_openmp": len(sub) / t_pyomp}
        with dask.config.set(scheduler="threads", num_workers=workers):
            for engine in ("pyfai", "xrdflow"):
                if engine == "pyfai" and split != "bbox":
                    continue  # the dask+pyFAI figure is the old default: bbox only (slow)
                p = integrate(arr if engine == "xrdflow" else arr[:pyfai_frames], geom, npt=npt,
                              method=method, engine=engine, **opts)
                p.compute()  # warm: matrix/integrators per thread, numba compilation
                t, out = _best(lambda: p.compute(), repeat)
                figures[f"dask_{engine}"] = p.sizes["frame"] / t
                if engine == "xrdflow":
                    err = np.abs(out.values[:pyfai_frames] - ref).max() / np.abs(ref).max()
        key = (geom, frames.shape[1:], npt, opts["unit"], None, None, split, "", True, 0.99, "")
        sparse = engines.get_sparse(key, lambda: engines.build_sparse(
            geom, frames.shape[1:], npt=npt, unit=opts["unit"], split=split, polarization_factor=0.99))
        engines.integrate_frames(sparse, frames[:8], threads=workers)
        t, _ = _best(lambda: engines.integrate_frames(sparse, frames, threads=workers), repeat)
        figures["eager_xrdflow"] = n / t
        rows.append((split, figures, err, sparse))
        print(f"\n[{split}] {n} frames {frames.shape[1]}x{frames.shape[2]} {frames.dtype}, npt {npt}, "
              f"load {_load()}")
        print(f"  pyFAI integrate1d loop, OpenMP 1 thread : {figures['pyfai_1thread']:8.1f} frames/s")
        print(f"  pyFAI integrate1d loop, its OpenMP      : {figures['pyfai_openmp']:8.1f} frames/s")
        if "dask_pyfai" in figures:
            print(f"  xrdflow engine=pyfai, dask {workers} threads  : {figures['dask_pyfai']:8.1f} frames/s")
        print(f"  xrdflow engine=xrdflow, dask {workers} threads: {figures['dask_xrdflow']:8.1f} frames/s")
        print(f"  fused engine eager, {workers} threads         : {figures['eager_xrdflow']:8.1f} frames/s")
        print(f"  ratio ours(dask)/pyFAI 1 thread {figures['dask_xrdflow'] / figures['pyfai_1thread']:6.2f}x   "
              f"/pyFAI OpenMP {figures['dask_xrdflow'] / figures['pyfai_openmp']:6.2f}x   "
              f"max |diff|/max {err:.1e}   matrix {sparse.nbytes / 2**20:.0f} MB ({sparse.description})")
    return rows


def end_to_end(frames, geom, *, npt, workers, repeat, split="bbox"):
    import dask
    import h5py

    from benchmarks.common import warm_page_cache, write_tiff_series
    from xrdflow import engines
    from xrdflow import ingest
    from xrdflow import integrate, write_patterns
    from xrdflow import open_frames
    from xrdflow import fit_peaks

    n = frames.shape[0]
    tmp = Path(tempfile.mkdtemp(prefix="xrdflow_e2e_"))
    write_tiff_series(tmp / "tif", frames)
    raw = tmp / "raw.nxs"
    ingest(tmp / "tif", raw, energy_kev=geom.energy_kev, compression="bitshuffle")
    warm_page_cache([raw])
    with h5py.File(raw) as f:
        dset = f["/entry/instrument/detector/data"]
        comp = "HDF5 filters " + ",".join(str(k) for k in dset._filters)  # 32008 = bitshuffle(+LZ4)
        chunk = dset.chunks
        ratio = frames.nbytes / os.path.getsize(raw)
    opts = dict(npt=npt, polarization_factor=0.99, method=(split, "csr", "cython"))
    times = {}
    # the plain sequential pyFAI loop a user writes over the detector files (fabio + a
    # warmed integrate1d, pyFAI's own OpenMP threads), on up to 16 of the TIFFs
    import fabio

    tifs = sorted((tmp / "tif").glob("*.tif"))[:16]
    ai = geom.to_pyfai()
    ai.integrate1d(fabio.open(tifs[0]).data, npt, unit="q_nm^-1", method=opts["method"], polarization_factor=0.99)
    t_loop, _ = _best(lambda: [ai.integrate1d(fabio.open(t).data, npt, unit="q_nm^-1", method=opts["method"],
                                              polarization_factor=0.99) for t in tifs], repeat)
    pyfai_loop = len(tifs) / t_loop
    with dask.config.set(scheduler="threads", num_workers=workers):
        # the public call as a user makes it, timed once: the first after a 2-frame warm-up
        integrate(open_frames(raw).isel(frame=slice(0, 2)), geom, **opts).compute()
        t0 = time.perf_counter()
        integrate(open_frames(raw), geom, **opts).compute()
        times["public call, first after warm-up"] = time.perf_counter() - t0
        fr = open_frames(raw)
        # read + decompress every chunk, keep nothing (what the integration tasks pay)
        touch = fr.data.map_blocks(lambda b: np.asarray(b[:, :1, :1], np.float64), chunks=(
            fr.data.chunks[0], (1,), (1,)), dtype=np.float64)
        times["read+decompress"], _ = _best(lambda: touch.compute(), repeat)
        mem = fr.values
        p_mem = integrate(mem, geom, **opts)
        p_mem.compute()
        times["integrate (memory)"], patterns = _best(lambda: p_mem.compute(), repeat)
        p_stream = integrate(open_frames(raw), geom, **opts)
        times["read+decompress+integrate"], _ = _best(lambda: p_stream.compute(), repeat)
        mean = patterns.mean("frame").values
        q = patterns.q.values
        interior = np.arange(20, len(q) - 20)
        top = interior[np.argsort(mean[interior])[::-1]]
        centres = []
        for i in top:
            if all(abs(q[i] - c) > 0.3 for c in centres):
                centres.append(float(q[i]))
            if len(centres) == 4:
                break
        half = 10 * (q[1] - q[0])
        import warnings

        warnings.filterwarnings("ignore", message="peaks: overlapping")
        fit = (lambda: fit_peaks(patterns, sorted(centres), half_width=half).compute())
        fit()
        times["fit 4 peaks (memory)"], _ = _best(fit, repeat)
        times["write patterns"], _ = _best(lambda: write_patterns(patterns, tmp / "patterns.nxs"), repeat)

        def chain():
            p = integrate(open_frames(raw), geom, **opts)
            f = fit_peaks(p, sorted(centres), half_width=half)
            pc, fc = dask.compute(p, f)
            write_patterns(pc, tmp / "chain.nxs")
            return fc

        times["whole chain"], _ = _best(chain, repeat)
    print(f"\n[end to end] {n} frames {frames.shape[1]}x{frames.shape[2]} {frames.dtype} from {raw.name} "
          f"({comp}, chunks {chunk}, compression ratio {ratio:.2f}), dask {workers} threads, {split} split, "
          f"load {_load()}")
    print(f"  {'pyFAI loop over the TIFFs':<33}: {pyfai_loop:8.1f} frames/s   ({1e3 / pyfai_loop:6.2f} ms/frame)")
    for name, t in times.items():
        print(f"  {name:<33}: {n / t:8.1f} frames/s   ({1e3 * t / n:6.2f} ms/frame)   "
              f"{n / t / pyfai_loop:5.1f}x the pyFAI loop")
    print(f"  fused matrices held by this process: {engines.engine_cache_info()['nbytes'] / 2**20:.0f} MB")
    return times


def main(argv=None) -> dict:
    from benchmarks.common import realistic_frames

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--pyfai-frames", type=int, default=16)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--npt", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--methods", default="no,bbox,full")
    ap.add_argument("--e2e-frames", type=int, default=64)
    ap.add_argument("--no-e2e", action="store_true")
    ap.add_argument("--e2e-methods", default="bbox,no")
    args = ap.parse_args(argv)
    print(f"load average at start: {_load()}   cpus: {os.cpu_count()}")
    geom = _geometry(args.size)
    frames = realistic_frames(args.frames, (args.size, args.size))
    rows = compare_methods(frames, geom, npt=args.npt, workers=args.workers, repeat=args.repeat,
                           methods=args.methods.split(","), pyfai_frames=min(args.pyfai_frames, args.frames))
    out = {"methods": {r[0]: r[1] for r in rows}}
    if not args.no_e2e:
        frames = realistic_frames(args.e2e_frames, (args.size, args.size), seed=1)
        out["e2e"] = {split: end_to_end(frames, geom, npt=args.npt, workers=args.workers, repeat=args.repeat,
                                        split=split) for split in args.e2e_methods.split(",")}
    print(f"\nload average at end: {_load()}")
    return out


if __name__ == "__main__":
    main()
