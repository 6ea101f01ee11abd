"""End to end: `xrdflow run` (raw TIFFs -> strain dataset) against the sum of its stages run
one by one in the same session, and peak memory at 100 vs 400 frames.

    python benchmarks/ratio_run.py [--frames 100 400] [--size 2048]

Frames are 16 distinct synthetic Mg frames (2048x2048 uint16) hard-linked under as many
numbered names as needed, with a matching strain log: every frame is still read, hashed,
stored, integrated and fitted. Each measurement runs in a fresh subprocess so that its peak
RSS (threaded scheduler: everything in one process) is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

N_DISTINCT = 16

_STAGES = r"""
import json, sys, time
from pathlib import Path
import xrdflow
from xrdflow.workflow import load_config
cfg = load_config(sys.argv[1])
out = cfg.output; out.mkdir(parents=True, exist_ok=True)
inp, integ, pk = cfg["input"], cfg["integration"], cfg["peaks"]
import dask
dask.config.set(scheduler="threads")
t = {}
t0 = time.perf_counter()
xrdflow.ingest(inp["frames"][0], out / "raw.nxs", energy_kev=inp["energy_kev"], strain_log=inp["log"])
t["ingest"] = time.perf_counter() - t0
t0 = time.perf_counter()
geometry = xrdflow.Geometry.from_poni(cfg["geometry"]["poni"])
frames = xrdflow.open_frames(out / "raw.nxs")
patterns = xrdflow.integrate(frames, geometry, npt=integ["npt"], radial_range=integ["radial_range"],
                             polarization_factor=integ["polarization_factor"]).compute()
t["integrate"] = time.perf_counter() - t0
t0 = time.perf_counter()
xrdflow.write_patterns(patterns, out / "patterns.nxs")
t["write patterns"] = time.perf_counter() - t0
t0 = time.perf_counter()
peaks = xrdflow.reflections(pk["phase"], energy_kev=inp["energy_kev"]).sel(
    reflection=[f"{pk['phase']} {h}" for h in pk["reflections"]])
fits = xrdflow.fit_peaks(patterns, peaks, half_width=pk["half_width"]).compute()
t["fit"] = time.perf_counter() - t0
t0 = time.perf_counter()
xrdflow.write_result(xrdflow.lattice_strain(fits, reference="first"), out / "result.nxs")
t["strain + write"] = time.perf_counter() - t0
print(json.dumps(t))
"""

_RUN = r"""
import json, sys, time
from xrdflow.workflow import load_config, run_workflow
t0 = time.perf_counter()
res = run_workflow(load_config(sys.argv[1]), echo=None)
print(json.dumps({"total": time.perf_counter() - t0, **res.timings}))
"""


def make_inputs(folder: Path, n_frames: int, size: int) -> dict[str, Path]:
    """Synthetic Mg frames (hard-linked beyond the distinct ones), a log and a PONI."""
    from xrdflow.synthetic import write_tensile_run

    distinct = folder / "distinct"
    if not (distinct / "mg.poni").exists():
        write_tensile_run(distinct, N_DISTINCT, shape=(size, size) if size != 2048 else None)
    frames = folder / f"frames_{n_frames}"
    frames.mkdir(exist_ok=True)
    src = sorted(distinct.glob("mg_*.tif"))
    log = ["frame,applied_strain,load_N,time_s"]
    for i in range(1, n_frames + 1):
        target = frames / f"mg_{i:05d}.tif"
        if not target.exists():
            os.link(src[(i - 1) % len(src)], target)
        log.append(f"{i},{0.1 * (i - 1) / max(1, n_frames - 1)},{10.0 * i},{2.0 * i}")
    (frames / "log.csv").write_text("\n".join(log) + "\n")
    return {"frames": frames, "log": frames / "log.csv", "poni": distinct / "mg.poni"}


def write_config(folder: Path, inputs: dict[str, Path], out: Path) -> Path:
    cfg = folder / f"{out.name}.toml"
    cfg.write_text(f"""
[run]
output = "{out}"
[input]
frames = "{inputs['frames']}"
log = "{inputs['log']}"
energy_kev = 87.1
[geometry]
poni = "{inputs['poni']}"
[integration]
npt = 1000
radial_range = [21.0, 27.0]
polarization_factor = 0.99
[peaks]
phase = "Mg"
reflections = ["10-10", "0002", "10-11"]
half_width = 0.35
[output]
figures = false
[compute]
scheduler = "threads"
""")
    return cfg


def measure(script: str, config: Path) -> tuple[dict, float]:
    """Run ``script`` on ``config`` in a fresh process: (its JSON output, its own peak RSS in MB)."""
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen([sys.executable, "-c", script, str(config)], stdout=out,
                                stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            raise RuntimeError(f"benchmark child failed ({proc.returncode}) on {config}")
        out.seek(0)
        result = json.loads(out.read().strip().splitlines()[-1])
    return result, usage.ru_maxrss / 1024


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, nargs="+", default=[100, 400])
    ap.add_argument("--size", type=int, default=2048)
    args = ap.parse_args(argv)
    from benchmarks.common import report

    with tempfile.TemporaryDirectory(prefix="xrdflow-e2e-") as tmp:
        tmp = Path(tmp)
        for n in sorted(args.frames):
            inputs = make_inputs(tmp, n, args.size)
            ours, rss = measure(_RUN, write_config(tmp, inputs, tmp / f"run_{n}"))
            stages, _ = measure(_STAGES, write_config(tmp, inputs, tmp / f"stages_{n}"))
            total_stages = sum(stages.values())
            print(f"   {n} frames {args.size}x{args.size}: xrdflow run {ours['total']:.1f} s "
                  f"(ingest {ours['ingest']:.1f}, integrate+fit {ours['integrate+fit']:.1f}), "
                  f"peak RSS {rss:.0f} MB")
            print("   stages one by one: " + ", ".join(f"{k} {v:.1f} s" for k, v in stages.items()))
            report(f"end to end, {n} frames", n / ours["total"], n / total_stages, "frames/s",
                   "stages 1 by 1")


if __name__ == "__main__":
    main()
