"""Ingest throughput against plain fabio read + h5py write of the same frames, same run.

    python benchmarks/ratio_ingest.py [n_frames]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import best_of, cpu_count, realistic_frames, report, warm_page_cache, write_tiff_series


def baseline(paths, out: Path, shape, dtype) -> None:
    """The notebook way: fabio.open(...).data, then h5py with the same bitshuffle-LZ4 filter."""
    import fabio

    with h5py.File(out, "w") as f:
        ds = f.create_dataset("data", shape=(len(paths), *shape), dtype=dtype, chunks=(1, *shape),
                              **hdf5plugin.Bitshuffle(cname="lz4"))
        for i, p in enumerate(paths):
            ds[i] = fabio.open(str(p)).data


def main(n_frames: int = 120) -> None:
    import xrdflow

    with tempfile.TemporaryDirectory(prefix="xrdflow-bench-") as tmp:
        tmp = Path(tmp)
        frames = realistic_frames(n_frames)
        paths = write_tiff_series(tmp / "src", frames)
        warm_page_cache(paths)
        shape, dtype = frames.shape[1:], frames.dtype
        t_base = best_of(lambda: baseline(paths, tmp / "base.h5", shape, dtype), repeat=2)
        t_ours = best_of(lambda: xrdflow.ingest(paths, tmp / "ours.nxs", energy_kev=87.1, overwrite=True), repeat=2)
        print(f"   {n_frames} frames {shape[0]}x{shape[1]} {dtype}, bitshuffle-LZ4, page cache, {cpu_count()} cores")
        report("ingest frames/s", n_frames / t_ours, n_frames / t_base, "frames/s", "fabio+h5py")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 120)
