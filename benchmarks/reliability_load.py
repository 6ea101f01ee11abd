"""Load figures for RELIABILITY.md: peak memory of whole runs as the frame count grows.

    python benchmarks/reliability_load.py [--frames 100 500 2000] [--size 2048] [--scheduler threads]
                                          [--workdir DIR]

Makes 6 synthetic Mg frames once (``xrdflow.synthetic.write_demo``), hard-links them under
N numbered names with an N-row strain log, and runs ``xrdflow run`` on each N in a fresh
process. The peak memory of the run's whole process tree (the run and any dask workers)
is sampled with psutil every 0.2 s. Prints one line per N: frames, seconds, peak RSS (MiB),
and the result's frame count and fit status counts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

CONFIG = """
[run]
name = "reliability load"
output = "{out}"
[input]
frames = "{frames}/mg_*.tif"
log = "{frames}/log.csv"
energy_kev = 87.1
[geometry]
poni = "{poni}"
[integration]
npt = 1000
radial_range = [21.0, 27.0]
[peaks]
phase = "Mg"
reflections = ["10-10", "0002", "10-11"]
half_width = 0.35
[output]
figures = false
[compute]
scheduler = "{scheduler}"
dashboard = false
"""


def link_frames(src: Path, dst: Path, n: int) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    tifs = sorted((src / "tensile").glob("mg_*.tif"))
    rows = ["frame,applied_strain"]
    for i in range(1, n + 1):
        os.link(tifs[(i - 1) % len(tifs)], dst / f"mg_{i:05d}.tif")
        rows.append(f"{i},{(i - 1) * 1e-5!r}")
    (dst / "log.csv").write_text("\n".join(rows) + "\n")


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[100, 500, 2000])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--scheduler", default="threads")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="xrdflow-load-"))
    inputs = work / "input"
    if not (inputs / "tensile" / "mg.poni").exists():
        from xrdflow.synthetic import write_demo

        write_demo(inputs, n_frames=6, shape=(args.size, args.size))
    print(f"# {args.size}x{args.size} frames, scheduler {args.scheduler}, in {work}")
    print("frames  seconds  peak_rss_MiB  result")
    for n in args.frames:
        frames = work / f"frames{n}"
        if not frames.exists():
            link_frames(inputs, frames, n)
        out = work / f"out{n}"
        cfg = work / f"run{n}.toml"
        cfg.write_text(CONFIG.format(out=out, frames=frames, poni=inputs / "tensile" / "mg.poni",
                                     scheduler=args.scheduler))
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "xrdflow.cli", "run", str(cfg)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ps = psutil.Process(proc.pid)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, tree_rss(ps))
            time.sleep(0.2)
        seconds = time.perf_counter() - t0
        _, err = proc.communicate()
        if proc.returncode:
            print(f"{n:6d}  failed rc {proc.returncode}: {err.strip()[-500:]}")
            continue
        import numpy as np

        import xrdflow

        res = xrdflow.open_result(out / "result.nxs")
        status = np.asarray(res["status"].values)
        counts = json.dumps({int(v): int((status == v).sum()) for v in np.unique(status)})
        print(f"{n:6d}  {seconds:7.1f}  {peak / 2**20:12.0f}  {res.sizes['frame']} frames, status {counts}",
              flush=True)
        (out / "raw.nxs").unlink()  # the raw file of 2000 frames is several GB


if __name__ == "__main__":
    main()
