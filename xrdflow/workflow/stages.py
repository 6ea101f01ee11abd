"""The stages of a run, one function each: ingest, geometry, reduce (integration and peak
fits in one streaming graph, then lattice strain) and figures.

Each stage takes the :class:`Run` (the config, the manifest, what the run has produced so
far) and records its outputs, its time and whether it was reused.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .config import ConfigError, RunConfig, compute_config
from .manifest import BATCHES_NAME, MANIFEST_NAME, BatchCheckpoint, Manifest, fingerprint

log = logging.getLogger("xrdflow.workflow")

__all__ = ["Run", "ingest_stage", "geometry_stage", "reduce_stage", "figures_stage", "stream",
           "build_patterns", "build_fits", "peaks_spec"]


@dataclasses.dataclass
class Run:
    """A run in progress: its config, manifest and what the stages have produced so far."""

    cfg: RunConfig
    say: Callable[[str], None]
    progress: bool = False
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    reused: list[str] = dataclasses.field(default_factory=list)
    outputs: dict[str, Path] = dataclasses.field(default_factory=dict)
    manifest: Manifest | None = None

    def __post_init__(self):
        if self.manifest is None:
            self.manifest = Manifest(self.cfg.output / MANIFEST_NAME)

    @property
    def out(self) -> Path:
        return self.cfg.output

    def timed(self, stage: str, t0: float) -> None:
        self.timings[stage] = time.perf_counter() - t0


# ----------------------------------------------------------------------------- ingest
def ingest_stage(run: Run) -> Path:
    """Detector frames -> raw NeXus (resumed frame by frame), or the given raw file."""
    from .. import ingest

    t0 = time.perf_counter()
    inp = run.cfg["input"]
    if inp["frames"] is not None:
        raw = run.cfg.out("raw")
        frames_src = inp["frames"][0] if len(inp["frames"]) == 1 else inp["frames"]
        report = ingest(frames_src, raw, energy_kev=inp["energy_kev"], strain_log=inp["log"],
                        compression=inp["compression"], skip_bad=inp["skip_bad"],
                        detector=inp["detector"], progress=run.progress)
        if report.n_written == 0:
            run.reused.append("ingest")
        for name, reason in report.bad:
            run.say(f"xrdflow: bad frame {name}: {reason}")
    else:
        raw = Path(inp["raw"])
    run.outputs["raw"] = raw
    run.timed("ingest", t0)
    return raw


# --------------------------------------------------------------------------- geometry
def geometry_stage(run: Run):
    """The geometry from a PONI file, or calibrated on the calibrant image (reused when its
    inputs are unchanged) -> ``(geometry, calibration result or None)``."""
    from .. import Geometry, calibrate

    t0 = time.perf_counter()
    cfg, geo, inp = run.cfg, run.cfg["geometry"], run.cfg["input"]
    calibration = None
    if geo["poni"] is not None:
        geometry = Geometry.from_poni(geo["poni"], orientation=geo["orientation"])
    else:
        poni = run.out / "geometry.poni"
        fp = fingerprint(geo, inp["energy_kev"], inp["detector"])
        if run.manifest.done("calibrate", fp, poni):
            geometry = Geometry.from_poni(poni)
            run.reused.append("calibrate")
        else:
            figdir = run.out / "figures"
            figdir.mkdir(exist_ok=True)
            calibration = calibrate(
                geo["calibrant_image"], geo["calibrant"], energy_kev=inp["energy_kev"],
                detector=geo["detector"] or inp["detector"], distance_mm=geo["distance_mm"],
                beam_center_px=geo["beam_center_px"], orientation=geo["orientation"] or "as_read",
                d_min=geo["d_min"], max_rings=geo["max_rings"], poni=poni,
                report=run.out / "calibration.txt",
                figure=[figdir / "calibration.png", figdir / "calibration.pdf"]
                if cfg["output"]["figures"] else None)
            geometry = calibration.geometry
            run.manifest.record("calibrate", fp)
        run.outputs["geometry"] = poni
    run.timed("calibrate", t0)
    return geometry, calibration


# ----------------------------------------------------------------------------- reduce
def _sector_spec(integ: dict[str, Any]):
    from .. import sectors_around_axis

    sectors = integ["sectors"]
    if sectors == "axial-transverse":
        return sectors_around_axis(integ["load_axis_deg"], integ["sector_half_width_deg"])
    return sectors


def build_patterns(cfg: RunConfig, frames, geometry):
    """The lazy patterns of ``[integration]``."""
    from .. import integrate

    integ = cfg["integration"]
    return integrate(
        frames, geometry, npt=integ["npt"], unit=integ["unit"], radial_range=integ["radial_range"],
        mask=integ["mask"], mask_orientation=integ["mask_orientation"], mask_negative=integ["mask_negative"],
        azimuth_sectors=_sector_spec(integ), method=integ["method"],
        polarization_factor=integ["polarization_factor"], correct_solid_angle=integ["correct_solid_angle"],
        dark=integ["dark"], flat=integ["flat"], error_model=integ["error_model"], engine=integ["engine"])


def peaks_spec(cfg: RunConfig, energy_kev: float):
    """What ``[peaks]`` asks to fit: the centers, or the phase's reflections picked by label
    or hkl (``"Mg 10-10"`` or ``"10-10"``)."""
    p = cfg["peaks"]
    if p["centers"] is not None:
        return p["centers"]
    from .. import crystal

    select = getattr(crystal, "select_reflections", None)
    if select is not None:  # the one selection the CLI's fit uses too
        try:
            return select(p["phase"], p["reflections"], energy_kev=energy_kev)
        except ValueError as exc:  # "reflections: ..." names what is wrong
            raise ConfigError(f"{cfg.source}: [peaks] {exc}") from None
    refl = crystal.reflections(p["phase"], energy_kev=energy_kev)
    wanted = []
    labels = list(refl["reflection"].values)
    hkls = list(refl["hkl"].values)
    for item in p["reflections"]:
        if item in labels:
            wanted.append(item)
        elif item in hkls:
            wanted.append(labels[hkls.index(item)])
        else:
            raise ConfigError(f"{cfg.source}: [peaks] reflections: {item!r} is not a reflection of "
                              f"{p['phase']} (known: {', '.join(hkls[:12])}...)")
    return refl.sel(reflection=wanted)


def build_fits(cfg: RunConfig, patterns, energy_kev: float):
    """The lazy peak fits of ``[peaks]`` on ``patterns``."""
    from .. import fit_peaks

    pk = cfg["peaks"]
    kwargs = dict(half_width=pk["half_width"], background=pk["background"], warm_start=pk["warm_start"],
                  max_iter=pk["max_iter"], xtol=pk["xtol"], min_snr=pk["min_snr"],
                  min_points=pk["min_points"], overlap=pk["overlap"], error_model=pk["error_model"],
                  shape=pk["shape"], share=pk["share"], link=pk["link"], track=pk["track"],
                  track_every=pk["track_every"])
    try:
        return fit_peaks(patterns, peaks_spec(cfg, energy_kev), **kwargs)
    except ValueError as exc:  # "share: ..." names the option; say where it comes from
        raise ConfigError(f"{cfg.source}: [peaks] {exc}") from None


#: provenance of the patterns copied into the result's ``integration`` attribute
_INTEGRATION_KEYS = ("method", "engine", "npt", "radial_unit", "correct_solid_angle", "polarization_applied",
                     "polarization_factor", "mask_negative", "masked_pixels", "dark_subtracted",
                     "flat_applied", "error_model", "radial_range")


def reduce_stage(run: Run, raw: Path, geometry):
    """Integrate and fit in one streaming graph (patterns to disk a batch at a time, fits
    kept), then lattice strain; the result is written. Reused when nothing changed.
    -> ``(result Dataset, number of frames computed or None)``."""
    from .. import lattice_strain, open_frames, open_result, write_result
    from ..cluster import compute_context

    t0 = time.perf_counter()
    cfg = run.cfg
    result_path, patterns_path = cfg.out("result"), cfg.out("patterns")
    fp = fingerprint(raw, geometry.as_dict(), cfg["integration"], cfg["peaks"], cfg["strain"], cfg["output"])
    n_frames = None
    if run.manifest.done("reduce", fp, result_path, patterns_path):
        result = open_result(result_path)
        run.reused.append("integrate+fit")
    else:
        frames = open_frames(raw, frames_per_chunk=cfg["integration"]["frames_per_chunk"])
        n_frames = frames.sizes["frame"]
        energy = float(frames.attrs.get("energy_kev", cfg["input"]["energy_kev"]))
        patterns = build_patterns(cfg, frames, geometry)
        fits = build_fits(cfg, patterns, energy)
        with compute_context(compute_config(cfg["compute"]), echo=run.say) as client:
            if client is not None:  # the matrix integrate() built here: to each worker as it joins
                from ..cluster import ship_matrices

                ship_matrices(client, latest=1)
            checkpoint = BatchCheckpoint(run.manifest, "reduce", fp, run.out / BATCHES_NAME)
            fitted = stream(patterns, fits, patterns_path, batch_frames=cfg["compute"]["batch_frames"],
                            progress=run.progress, client=client, checkpoint=checkpoint)
        result = lattice_strain(fitted, reference=cfg["strain"]["reference"])
        result.attrs["run_config"] = json.dumps(cfg.sections, default=str)
        result.attrs["geometry"] = json.dumps(geometry.as_dict(), default=str)
        result.attrs["integration"] = json.dumps(
            {k: patterns.attrs[k] for k in _INTEGRATION_KEYS if k in patterns.attrs}, default=str)
        write_result(result, result_path)
        run.manifest.record("reduce", fp)
    run.outputs["patterns"], run.outputs["result"] = patterns_path, result_path
    run.timed("integrate+fit", t0)
    return result, n_frames


#: the NXentry of the result file that holds the strain tensor (``open_result(path, entry=...)``)
TENSOR_ENTRY = "strain_tensor"


def tensor_stage(run: Run, result):
    """The strain tensor of each reflection from the sectors (``[strain_tensor]``), written
    into the result file as the entry ``strain_tensor``; None when the run has no sectors
    or it is switched off."""
    from .. import open_result, strain_tensor, write_result

    opts = run.cfg["strain_tensor"]
    enabled = opts["enabled"]
    if enabled is None:  # auto: sectors enough to fix the in-plane components
        enabled = "azimuth" in result.dims and result.sizes["azimuth"] >= opts["min_sectors"]
    if not enabled:
        return None
    if "azimuth" not in result.dims:
        raise ValueError("[strain_tensor] enabled: needs [integration] sectors (the fits have no azimuth)")
    t0 = time.perf_counter()
    load = opts["load_azimuth_deg"]
    load = run.cfg["integration"]["load_axis_deg"] if load is None else load
    path = run.cfg.out("result")
    fp = fingerprint(opts, load)
    if "integrate+fit" in run.reused and run.manifest.done("strain tensor", fp, path) and _has_entry(path):
        tensor = open_result(path, entry=TENSOR_ENTRY)  # the fits and the options are those of last time
        run.reused.append("strain tensor")
    else:
        tensor = strain_tensor(
            result, reference=opts["reference"], model=opts["model"], poisson_ratio=opts["poisson_ratio"],
            load_azimuth_deg=load, min_sectors=opts["min_sectors"], elastic=opts["elastic"],
            approximation=opts["approximation"]).compute()
        write_result(tensor, path, entry=TENSOR_ENTRY, append=True)  # next to the fits, in the result file
        run.manifest.record("strain tensor", fp)
    run.outputs["strain_tensor"] = f"{path}::/{TENSOR_ENTRY}"
    run.timed("strain tensor", t0)
    return tensor


def _has_entry(path: Path) -> bool:
    import h5py

    with h5py.File(path, "r") as f:
        return TENSOR_ENTRY in f


def _batch_bounds(chunks, batch_frames: int | None) -> list[int]:
    """Frame positions where batches start and end, on chunk edges.

    >>> _batch_bounds((2, 2, 2, 1), 4)
    [0, 4, 7]
    """
    offsets = np.concatenate([[0], np.cumsum(chunks)])
    per_batch = batch_frames or max(4 * int(max(chunks)), 2 * _workers_hint() * int(max(chunks)))
    bounds = [0]
    for off in offsets[1:]:
        if off - bounds[-1] >= per_batch or off == offsets[-1]:
            bounds.append(int(off))
    return bounds


def stream(patterns, fits, patterns_path: Path, *, batch_frames: int | None = None, progress: bool = False,
           client=None, checkpoint=None):
    """Integrate and fit a batch of frames at a time, in one ``dask.compute`` per batch (the
    integration is computed once for both): patterns (and their errors) go to the NXazint
    file, fits are kept -> the fits of every frame, computed.

    With a distributed ``client``, each batch is waited for while its cluster is watched
    (:func:`xrdflow.cluster.wait_for`): lost workers past their timeout, or a job the batch
    system refused, end the run with an error instead of a hang.

    With a :class:`~xrdflow.workflow.manifest.BatchCheckpoint`, every complete batch is
    kept, and a later call with the same inputs computes only the batches not kept yet."""
    import h5py
    import xarray as xr

    from ..nexus import atomic_output
    from ..nexus.azint import PatternWriter

    bounds = _batch_bounds(patterns.chunks[0], batch_frames)
    stored = []
    if checkpoint is not None:
        old_bounds, stored = checkpoint.resume()
        if old_bounds and old_bounds[-1] == bounds[-1] and stored:
            bounds = old_bounds  # the batches of the interrupted run (same chunks: same inputs)
        else:
            stored = []
            checkpoint.begin(bounds)
    errors = patterns.coords.get("I_errors")
    err_values = np.empty(errors.shape, errors.dtype) if errors is not None else None
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=bounds[-1], unit="frame", desc="integrate+fit")
    parts = []
    complete = 0
    lazy = _lazy_names(fits)
    try:
        with atomic_output(patterns_path) as tmp:
            with h5py.File(tmp, "w") as fh:
                fh.attrs["default"] = "entry"
                writer = PatternWriter(patterns, fh, "entry", "NXentry")
                for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
                    sl = slice(lo, hi)
                    if i < len(stored):  # computed by an earlier, interrupted run
                        done = _from_arrays(stored[i], fits.isel(frame=sl), errors is not None)
                    else:
                        todo = [patterns.data[sl], fits.isel(frame=sl)]
                        if errors is not None:
                            todo.append(errors.data[sl])
                        done = _compute(todo, client)
                    writer.write(sl, done[0])
                    parts.append(done[1])
                    if errors is not None:
                        err_values[sl] = done[2]
                    if checkpoint is not None and i >= len(stored):
                        try:
                            checkpoint.store(i, _to_arrays(done, lazy))
                        except ValueError as exc:  # not storable as plain arrays: no resume
                            log.warning("integrate+fit: batches not kept for a resume (%s)", exc)
                            checkpoint.clear()
                            checkpoint = None
                    complete = i + 1
                    if bar is not None:
                        bar.update(hi - lo)
                if errors is not None:  # the errors computed with the patterns, not again
                    writer.patterns = patterns.assign_coords(I_errors=(errors.dims, err_values, errors.attrs))
                writer.finish()
    except BaseException as exc:
        from ..nexus import disk_full_errno

        if checkpoint is not None and (complete == 0 or disk_full_errno(exc)):
            checkpoint.clear()  # nothing worth resuming, or no room to keep it
        raise
    finally:
        if bar is not None:
            bar.close()
    if checkpoint is not None:
        checkpoint.clear()
    fitted = xr.concat(parts, dim="frame") if len(parts) > 1 else parts[0]
    fitted.attrs = dict(fits.attrs)
    return fitted


def _lazy_names(fits) -> list[str]:
    """The fits' variables dask computes (the others are the same numbers before and after)."""
    import dask.array as da

    return [str(name) for name, var in fits.variables.items() if isinstance(var.data, da.Array)]


def _to_arrays(done, names: list[str]) -> dict[str, Any]:
    """A computed batch ``(patterns, fits[, errors])`` as plain arrays for a checkpoint: the
    patterns, the errors, and the fits' variables ``names`` (those dask computed)."""
    arrays = {"patterns": np.asarray(done[0])}
    if len(done) > 2:
        arrays["errors"] = np.asarray(done[2])
    for i, name in enumerate(names):
        values = np.asarray(done[1][name].values)
        if values.dtype == object:  # labels: kept as fixed-width strings, read back as str objects
            if not all(isinstance(v, str) for v in values.flat):
                raise ValueError(f"{name}: values that are neither numbers nor strings")
            values = values.astype(str)
            arrays[f"object{i}"] = np.array(True)
        arrays[f"var{i}"] = values
        arrays[f"name{i}"] = np.array(name)
    return arrays


def _from_arrays(arrays: dict[str, Any], template, with_errors: bool):
    """A batch back from :func:`_to_arrays`: the lazy fits ``template`` filled in."""
    fits = template.copy()
    names = {str(arrays[k]): arrays[f"var{k[4:]}"].astype(object) if f"object{k[4:]}" in arrays
             else arrays[f"var{k[4:]}"] for k in arrays if k.startswith("name")}
    for name in _lazy_names(template):
        var = fits[name].variable.copy(data=names[name])
        if name in fits.coords:
            fits = fits.assign_coords({name: var})
        else:
            fits[name] = var
    done = [arrays["patterns"], fits]
    if with_errors:
        done.append(arrays["errors"])
    return tuple(done)


def _compute(todo, client):
    """``dask.compute(*todo)``; on a distributed client, as futures waited for under watch."""
    import dask

    if client is None:
        return dask.compute(*todo)
    from ..cluster import wait_for

    futures = client.compute(todo)
    try:
        return tuple(wait_for(futures, client))
    finally:
        for f in futures:
            f.release()


def _workers_hint() -> int:
    try:
        from distributed import get_client

        return max(1, len(get_client().scheduler_info()["workers"]))
    except (ImportError, ValueError):
        return os.cpu_count() or 1


# ---------------------------------------------------------------------------- figures
def figures_stage(run: Run, result, tensor=None) -> None:
    """Patterns map, fit overlays of the first and last frame, strain curves and, with
    sectors, the strain tensor's components (PNG + PDF)."""
    from .. import open_patterns
    from ..plot import run as plots

    t0 = time.perf_counter()
    if run.cfg["output"]["figures"]:
        figdir = run.out / "figures"
        figdir.mkdir(parents=True, exist_ok=True)
        patterns = open_patterns(run.outputs["patterns"])
        made = run.outputs
        made["figure_patterns"] = plots.save(plots.patterns_map(patterns), figdir / "patterns")[0]
        made["figure_fits"] = plots.save(plots.fit_overlay(patterns, result), figdir / "fits_first_last")[0]
        made["figure_strain"] = plots.save(plots.strain_curves(result), figdir / "strain")[0]
        if tensor is not None:
            made["figure_strain_tensor"] = plots.save(plots.tensor_curves(tensor), figdir / "strain_tensor")[0]
        if (figdir / "calibration.png").exists():
            made["figure_calibration"] = figdir / "calibration.png"
    run.timed("figures", t0)
