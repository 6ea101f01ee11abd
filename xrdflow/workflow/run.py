""":func:`run_workflow`: the stages in order under the output folder's lock, and the
one-screen :func:`summarize`."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .config import RunConfig, load_config
from .stages import Run, figures_stage, geometry_stage, ingest_stage, reduce_stage, tensor_stage

__all__ = ["RunResult", "run_workflow", "summarize"]


@dataclasses.dataclass
class RunResult:
    """What :func:`run_workflow` produced."""

    result: Any  # xr.Dataset (frame, [azimuth,] peak)
    outputs: dict[str, Path]
    timings: dict[str, float]
    summary: str
    reused: list[str]
    calibration: Any = None


def run_workflow(
    config: RunConfig | str | os.PathLike | dict,
    *,
    echo: Callable[[str], None] | None = print,
    progress: bool = False,
) -> RunResult:
    """Run a whole experiment reduction from a config file; see ``workflows/tensile_test.toml``.

    Stages: ingest (if ``[input] frames``), calibrate (if ``[geometry] calibrant_image``),
    integrate + fit (one streaming dask graph), lattice strain, write (raw NeXus, NXazint
    patterns, NeXus result), the strain tensor (with sectors; ``[strain_tensor]``), figures. Returns a :class:`RunResult` with the result Dataset,
    the output paths, per-stage times and a one-screen summary (also echoed).
    """
    from ..nexus import output_lock

    cfg = config if isinstance(config, RunConfig) else load_config(config)
    say = echo or (lambda *_: None)
    cfg.output.mkdir(parents=True, exist_ok=True)
    t_run = time.perf_counter()
    with output_lock(cfg.output / "xrdflow-run"):
        run = Run(cfg, say, progress)
        raw = ingest_stage(run)
        geometry, calibration = geometry_stage(run)
        result, n_frames = reduce_stage(run, raw, geometry)
        tensor = tensor_stage(run, result)
        figures_stage(run, result, tensor)
    run.timings["total"] = time.perf_counter() - t_run
    summary = summarize(result, run.timings, run.outputs, run.reused, n_frames=n_frames,
                        name=cfg["run"]["name"], calibration=calibration)
    say(summary)
    return RunResult(result=result, outputs=run.outputs, timings=run.timings, summary=summary,
                     reused=run.reused, calibration=calibration)


def summarize(result, timings, outputs, reused, *, n_frames=None, name="run", calibration=None) -> str:
    """A one-screen summary: frames, peaks, fits by status, time per stage, throughput."""
    from .._peaks import STATUS

    n = result.sizes["frame"]
    status = np.asarray(result["status"].values)
    names = {v: k for k, v in STATUS.items()}
    counts = {names.get(int(v), str(v)): int((status == v).sum()) for v in np.unique(status)}
    peaks = ", ".join(map(str, result["peak"].values))
    sectors = f" x {result.sizes['azimuth']} sectors" if "azimuth" in result.dims else ""
    lines = [f"xrdflow run '{name}'",
             f"  frames       {n}",
             f"  peaks        {result.sizes['peak']}{sectors}: {peaks}",
             f"  fits         {status.size}: "
             + ", ".join(f"{v} {k}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))]
    flagged = [f"{int(np.count_nonzero(result[flag].values))} with {flag[2:]} pixels"
               for flag in ("n_saturated", "n_nonfinite", "n_negative")
               if flag in result.coords and np.count_nonzero(result[flag].values)]
    if flagged:
        lines.append(f"  flagged      frames: {', '.join(flagged)} (coords n_saturated, n_nonfinite, n_negative)")
    if calibration is not None:
        lines.append(f"  calibration  rms {calibration.rms_px:.3f} px on {calibration.n_rings} rings "
                     f"({calibration.n_points} points)")
    lines.append("  stage              seconds")
    for stage, sec in timings.items():
        extra = ""
        if stage in reused:
            extra = "   (reused)"
        elif stage == "integrate+fit" and n_frames:
            extra = f"   {n_frames / sec:.1f} frames/s"
        lines.append(f"    {stage:<16}{sec:8.2f}{extra}")
    lines.append("  outputs")
    for key, path in outputs.items():
        lines.append(f"    {key:<20}{path}")
    return "\n".join(lines)
