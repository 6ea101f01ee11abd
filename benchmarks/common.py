"""Shared helpers for the asv suites and the ratio scripts (no timing logic of their own)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def realistic_frames(n: int, shape=(2048, 2048), *, seed: int = 0, dtype=np.uint16) -> np.ndarray:
    """Frames with powder rings on a smooth background and Poisson noise.

    Cheap to make (no pyFAI): rings about a centre off the middle; compressibility close to
    real area-detector data, unlike uniform noise.
    """
    rng = np.random.default_rng(seed)
    y, x = np.indices(shape, dtype=np.float32)
    r = np.hypot(y - shape[0] * 0.47, x - shape[1] * 0.52)
    base = 40.0 * np.exp(-r / (0.6 * max(shape))) + 5.0
    for radius, amp in ((0.15, 400.0), (0.16, 250.0), (0.17, 300.0), (0.25, 120.0), (0.33, 90.0)):
        base += amp * np.exp(-0.5 * ((r - radius * max(shape)) / 2.0) ** 2)
    return np.stack([rng.poisson(base).astype(dtype) for _ in range(n)])


def write_tiff_series(folder: Path, frames: np.ndarray, prefix: str = "frame_") -> list[Path]:
    import fabio

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, frame in enumerate(frames, start=1):
        path = folder / f"{prefix}{i:05d}.tif"
        fabio.tifimage.TifImage(data=frame).write(str(path))
        paths.append(path)
    return paths


def warm_page_cache(paths) -> None:
    """Flush pending writes (so write-back does not run during timing), then read every file
    once so it is served from the page cache."""
    os.sync()
    for p in paths:
        Path(p).read_bytes()


def best_of(fn, repeat: int = 3, setup=None) -> float:
    """Best wall time of ``repeat`` calls of ``fn()`` in seconds (``setup()`` untimed before each)."""
    best = float("inf")
    for _ in range(repeat):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def report(name: str, ours: float, baseline: float, unit: str, baseline_name: str) -> str:
    """One line: our figure, the baseline's and the ratio (higher is better for rates)."""
    line = (f"{name:<34} ours {ours:12.1f} {unit}   {baseline_name} {baseline:12.1f} {unit}"
            f"   ratio {ours / baseline:8.2f}x")
    print(line, flush=True)
    return line


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# --------------------------------------------------------------------------- on-disk inputs
def cache_dir() -> Path:
    """Where the benchmark inputs are kept between benchmarks and runs (``XRDFLOW_BENCH_CACHE``,
    default a folder in the temporary directory): frames, TIFF series, raw files and matrices
    are made once, not in every benchmark's ``setup``."""
    path = Path(os.environ.get("XRDFLOW_BENCH_CACHE", Path(tempfile.gettempdir()) / "xrdflow-bench-cache"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def cached(name: str, make) -> Path:
    """``cache_dir() / name``, made by ``make(tmp_path)`` the first time (atomically: under a
    temporary name, renamed when complete, so an interrupted build is not reused)."""
    path = cache_dir() / name
    if not path.exists():
        tmp = cache_dir() / f".{name}.{os.getpid()}.partial"
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
        make(tmp)
        try:
            os.rename(tmp, path)
        except OSError:  # another process made it meanwhile
            shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
    return path


def cached_frames(n: int, size: int = 2048, *, seed: int = 0) -> np.ndarray:
    """:func:`realistic_frames` kept on disk, opened memory-mapped (read-only)."""
    def make(tmp):
        with open(tmp, "wb") as fh:
            np.save(fh, realistic_frames(n, (size, size), seed=seed))

    return np.load(cached(f"frames-{n}x{size}-s{seed}.npy", make), mmap_mode="r")


def cached_tiffs(n: int, size: int = 2048) -> list[Path]:
    """A series of ``n`` TIFF frames kept on disk."""
    folder = cached(f"tiffs-{n}x{size}", lambda tmp: write_tiff_series(tmp, np.asarray(cached_frames(n, size))))
    return sorted(folder.glob("*.tif"))


def cached_raw(n: int, size: int = 2048, compression: str = "bitshuffle") -> Path:
    """A raw NeXus file of ``n`` frames written by ``xrdflow.ingest``, kept on disk."""
    import xrdflow

    def make(tmp):
        tmp.mkdir()
        xrdflow.ingest(cached_tiffs(n, size), tmp / "raw.nxs", energy_kev=87.1, compression=compression)

    return cached(f"raw-{n}x{size}-{compression}", make) / "raw.nxs"


def cached_matrices(name: str, build) -> Path:
    """The fused engine's matrices that ``build()`` makes (it runs one small ``integrate``),
    pickled once as the (key, matrix) pairs of ``xrdflow.engines.held_matrices``: each benchmark
    process adopts them (:func:`adopt_matrices`) instead of paying the build again. Our own
    file, written and read by this suite only."""
    import pickle

    from xrdflow import engines

    def make(tmp):
        engines.clear_engine_cache()
        build()
        with open(tmp, "wb") as fh:
            pickle.dump(engines.held_matrices(), fh, protocol=pickle.HIGHEST_PROTOCOL)

    return cached(name, make)


def adopt_matrices(path) -> None:
    import pickle

    from xrdflow import engines

    with open(path, "rb") as fh:
        for key, sparse in pickle.load(fh):
            engines.adopt_sparse(key, sparse)
