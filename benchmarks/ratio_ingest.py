"""Ingest throughput against plain fabio read + h5py write of the same frames, same run.

    python benchmarks/ratio_ingest.py [n_frames]
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import best_of, cpu_count, realistic_frames, report, warm_page_cache, write_tiff_series


def baseline(paths, out: Path, shape, dtype, compression: str) -> None:
    """The notebook way: fabio.open(...).data, then h5py with the same compression."""
    import fabio

    kwargs = dict(hdf5plugin.Bitshuffle(cname="lz4")) if compression == "bitshuffle" else {}
    with h5py.File(out, "w") as f:
        ds = f.create_dataset("data", shape=(len(paths), *shape), dtype=dtype, chunks=(1, *shape), **kwargs)
        for i, p in enumerate(paths):
            ds[i] = fabio.open(str(p)).data


def cpu_cost_ms(frame: np.ndarray) -> dict[str, float]:
    """Single-thread CPU cost per frame of the two steps ingest cannot skip."""
    import hashlib
    import time

    import bitshuffle
    from threadpoolctl import threadpool_limits

    blob = frame.tobytes()
    out = {}
    with threadpool_limits(1, user_api="openmp"):
        for name, fn in (("sha256", lambda: hashlib.sha256(blob).digest()),
                         ("bitshuffle-lz4", lambda: bitshuffle.compress_lz4(frame.reshape(-1), 4096))):
            fn()
            t0 = time.perf_counter()
            for _ in range(10):
                fn()
            out[name] = (time.perf_counter() - t0) / 10 * 1e3
    return out


def work_only(paths, shape, dtype) -> None:
    """What every frame costs before any write: read, SHA-256, check, compress, CRC (ingest's
    own worker function on the same threads), with no HDF5, no writer and no fsync. Ingest
    cannot run faster than this on the machine."""
    import importlib
    from concurrent.futures import ThreadPoolExecutor

    ingest_mod = importlib.import_module("xrdflow._ingest")
    buffers = ingest_mod._Buffers()

    def one(i):
        frame = ingest_mod._read_one(ingest_mod._Frame(i, paths[i]), shape, dtype, "bitshuffle", buffers)
        buffers.give(*frame.buffers)

    with ThreadPoolExecutor(cpu_count(), initializer=ingest_mod._single_threaded_codecs) as pool:
        list(pool.map(one, range(len(paths))))


def main(n_frames: int = 120) -> None:
    import xrdflow

    with tempfile.TemporaryDirectory(prefix="xrdflow-bench-") as tmp:
        tmp = Path(tmp)
        frames = realistic_frames(n_frames)
        paths = write_tiff_series(tmp / "src", frames)
        warm_page_cache(paths)
        shape, dtype = frames.shape[1:], frames.dtype
        print(f"   {n_frames} frames {shape[0]}x{shape[1]} {dtype}, page cache, {cpu_count()} cores; "
              "ours includes the fsync that makes the file durable before its rename, the baseline has none")
        base, ours = tmp / "base.h5", tmp / "ours.nxs"

        def fresh():
            """Both start alike: no output yet, and no dirty pages left by the other (ingest's
            fsync would otherwise wait behind the baseline's write-back)."""
            for p in (base, ours):
                p.unlink(missing_ok=True)
            os.sync()

        for compression in ("bitshuffle", "none"):
            t_base = best_of(lambda: baseline(paths, base, shape, dtype, compression), repeat=3, setup=fresh)
            t_ours = best_of(lambda: xrdflow.ingest(paths, ours, energy_kev=87.1, compression=compression),
                             repeat=3, setup=fresh)
            report(f"ingest {compression} frames/s", n_frames / t_ours, n_frames / t_base, "frames/s",
                   "fabio+h5py")
        t_work = best_of(lambda: work_only(paths, shape, dtype), repeat=2)
        print(f"   the per-frame work alone (read, SHA-256, check, bitshuffle, CRC; no write, no fsync): "
              f"{n_frames / t_work:.1f} frames/s on {cpu_count()} cores")
        costs = cpu_cost_ms(frames[0])
        floor = sum(costs.values())
        print("   CPU per frame, one thread: " + ", ".join(f"{k} {v:.1f} ms" for k, v in costs.items())
              + f" -> at most {1e3 * cpu_count() / floor:.0f} frames/s with bitshuffle on {cpu_count()} cores")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 120)
