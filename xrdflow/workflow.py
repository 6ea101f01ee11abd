"""A whole tensile-test run from one config file: ingest -> calibrate -> integrate -> fit ->
strain -> write, with figures and a one-screen summary.

The expensive part (integration, then the peak fits on the patterns it produces) runs as
one dask graph that streams: a batch of frames at a time is integrated and fitted in one
``dask.compute`` (integration computed once, shared by both outputs), its patterns go to
the NXazint file and its fits are kept (they are small). Memory therefore stays flat as
the number of frames grows.

Every stage records a fingerprint of its inputs in ``<output>/xrdflow-run.json``; a
re-run reuses each stage whose inputs are unchanged and whose output is complete (ingest
also resumes frame by frame).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import logging
import os
import time
import tomllib
from pathlib import Path
from typing import Any, Callable

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["RunConfig", "RunResult", "load_config", "run_workflow", "ConfigError"]


class ConfigError(ValueError):
    """The run configuration is invalid; the message names the key."""


# --------------------------------------------------------------------------- schema

_REQUIRED = object()


def _where(section: str, key: str) -> str:
    return f"[{section}] {key}"


def _positive_number(value, where):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
        raise ConfigError(f"{where}: must be a positive number, got {value!r}")
    return float(value)


def _number(value, where):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise ConfigError(f"{where}: must be a number, got {value!r}")
    return float(value)


def _positive_int(value, where):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}: must be a positive integer, got {value!r}")
    return value


def _boolean(value, where):
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: must be true or false, got {value!r}")
    return value


def _string(value, where):
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: must be a non-empty string, got {value!r}")
    return value


def _choice(*options):
    def check(value, where):
        if value not in options:
            raise ConfigError(f"{where}: must be one of {', '.join(map(repr, options))}, got {value!r}")
        return value
    return check


def _range(value, where):
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value)):
        raise ConfigError(f"{where}: must be [low, high], got {value!r}")
    lo, hi = map(float, value)
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo >= hi:
        raise ConfigError(f"{where}: low must be below high, got {value!r}")
    return (lo, hi)


def _pair(value, where):
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value)):
        raise ConfigError(f"{where}: must be [x, y], got {value!r}")
    return (float(value[0]), float(value[1]))


def _strings(value, where):
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: must be a string or a list of strings, got {value!r}")
    return list(value)


def _numbers(value, where):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where}: must be a number or a list of numbers, got {value!r}")
    return [_positive_number(v, where) for v in value]


def _method(value, where):
    if isinstance(value, str):
        return value
    if isinstance(value, list) and len(value) == 3 and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ConfigError(f"{where}: must be a pyFAI method name or [split, algorithm, implementation], got {value!r}")


def _sectors(value, where):
    if isinstance(value, int) and not isinstance(value, bool):
        return _positive_int(value, where)
    if value == "axial-transverse":
        return value
    if isinstance(value, dict) and value:
        out = {}
        for name, spec in value.items():
            centre, half = _pair(spec, f"{where}.{name}")
            if half <= 0:
                raise ConfigError(f"{where}.{name}: half width must be positive, got {half}")
            out[name] = (centre, half)
        return out
    raise ConfigError(f"{where}: must be a number of equal sectors, \"axial-transverse\", or "
                      f"{{name = [centre_deg, half_width_deg]}}, got {value!r}")


def _reference(value, where):
    if value in ("first", "d0"):
        return value
    if isinstance(value, dict) and value:
        return {k: _positive_number(v, f"{where}.{k}") for k, v in value.items()}
    raise ConfigError(f"{where}: must be \"first\", \"d0\" or {{peak label = d0 in Angstrom}}, got {value!r}")


def _table(value, where):
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: must be a table, got {value!r}")
    return dict(value)


_RESERVED_NAMES = ("xrdflow-run.json", "xrdflow-run.lock", "geometry.poni", "calibration.txt", "figures")


def _file_name(value, where):
    value = _string(value, where)
    path = Path(value)
    # a plain name: no folder part (no '..', no absolute path, no folder that may not exist)
    if path.is_absolute() or len(path.parts) != 1 or path.name in (".", "..") or "/" in value or "\\" in value:
        raise ConfigError(f"{where}: must be a file name inside the output folder, got {value!r}")
    if path.name in _RESERVED_NAMES or path.name.endswith((".partial", ".lock")):
        raise ConfigError(f"{where}: {value!r} is a name xrdflow uses for its own files")
    return value


SCHEMA: dict[str, dict[str, tuple[Callable, Any]]] = {
    "run": {
        "name": (_string, "xrdflow-run"),
        "output": (_string, _REQUIRED),
    },
    "input": {
        "frames": (_strings, None),
        "raw": (_string, None),
        "energy_kev": (_positive_number, _REQUIRED),
        "log": (_string, None),
        "detector": (_string, None),
        "skip_bad": (_boolean, False),
        "compression": (_choice("bitshuffle", "gzip", "none"), "bitshuffle"),
    },
    "geometry": {
        "poni": (_string, None),
        "orientation": (_choice("as_read", "flipud"), None),
        "calibrant_image": (_string, None),
        "calibrant": (_string, None),
        "detector": (_string, None),
        "distance_mm": (_positive_number, None),
        "beam_center_px": (_pair, None),
        "d_min": (_positive_number, None),
        "max_rings": (_positive_int, None),
    },
    "integration": {
        "npt": (_positive_int, _REQUIRED),
        "unit": (_choice("q_nm^-1", "q_A^-1", "2th_deg", "2th_rad", "r_mm"), "q_nm^-1"),
        "radial_range": (_range, None),
        "method": (_method, ("bbox", "csr", "cython")),
        "polarization_factor": (_number, 0.99),
        "correct_solid_angle": (_boolean, True),
        "mask": (_string, None),
        "mask_orientation": (_choice("as_read", "flipud"), "as_read"),
        "sectors": (_sectors, None),
        "load_axis_deg": (_number, 0.0),
        "sector_half_width_deg": (_positive_number, 10.0),
        "frames_per_chunk": (_positive_int, None),
    },
    "peaks": {
        "phase": (_string, None),
        "reflections": (_strings, None),
        "centres": (_numbers, None),
        "half_width": (_positive_number, None),
        "background": (_choice("linear", "constant"), "linear"),
        "max_iter": (_positive_int, 100),
        "min_snr": (_positive_number, 3.0),
        "warm_start": (_boolean, False),
    },
    "strain": {
        "reference": (_reference, "first"),
    },
    "output": {
        "result": (_file_name, "result.nxs"),
        "patterns": (_file_name, "patterns.nxs"),
        "raw": (_file_name, "raw.nxs"),
        "figures": (_boolean, True),
    },
    "compute": {
        "scheduler": (_string, "local"),
        "n_workers": (_positive_int, None),
        "threads_per_worker": (_positive_int, 1),
        "memory_limit": (_string, "auto"),
        "dashboard": (_boolean, True),
        "host": (_string, "127.0.0.1"),
        "jobqueue": (_table, None),
        "batch_frames": (_positive_int, None),
    },
}
_REQUIRED_SECTIONS = ("run", "input", "integration", "peaks")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """A validated run configuration: ``sections[section][key]`` with defaults filled in and
    paths resolved against the config file's folder."""

    sections: dict[str, dict[str, Any]]
    source: str = "<dict>"

    def __getitem__(self, section: str) -> dict[str, Any]:
        return self.sections[section]

    @property
    def output(self) -> Path:
        return Path(self.sections["run"]["output"])

    def out(self, key: str) -> Path:
        return self.output / self.sections["output"][key]


def _unknown(key: str, known, where: str) -> ConfigError:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"
    return ConfigError(f"{where}: unknown key{hint}")


def load_config(
    config: str | os.PathLike | dict,
    *,
    base_dir: str | os.PathLike | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> RunConfig:
    """Read and validate a run configuration (a TOML file or an equivalent dict).

    Every error names the offending key, e.g. ``workflow.toml: [integration] npt: must be a
    positive integer, got 0``. Relative paths are taken from the config file's folder
    (``base_dir`` for a dict, default the current folder). ``overrides`` (``{section: {key:
    value}}``, e.g. from the command line) replace keys before validation.
    """
    if isinstance(config, dict):
        raw, source = config, "<dict>"
        base = Path(base_dir or ".")
    else:
        path = Path(config)
        source = str(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: config file not found")
        try:
            raw = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
        base = Path(base_dir) if base_dir else path.resolve().parent
    if overrides:
        raw = {**raw, **{sec: {**raw.get(sec, {}), **keys} for sec, keys in overrides.items()}}

    def fail(message: str) -> ConfigError:
        return ConfigError(f"{source}: {message}")

    for section in raw:
        if section not in SCHEMA:
            raise fail(str(_unknown(section, SCHEMA, f"[{section}]")).replace("unknown key", "unknown section"))
    sections: dict[str, dict[str, Any]] = {}
    for section, keys in SCHEMA.items():
        given = raw.get(section, {})
        if not isinstance(given, dict):
            raise fail(f"[{section}]: must be a table")
        if section in _REQUIRED_SECTIONS and section not in raw:
            raise fail(f"[{section}]: missing section")
        for key in given:
            if key not in keys:
                raise fail(str(_unknown(key, keys, _where(section, key))))
        values = {}
        for key, (check, default) in keys.items():
            if key in given:
                try:
                    values[key] = check(given[key], _where(section, key))
                except ConfigError as exc:
                    raise fail(str(exc)) from None
            elif default is _REQUIRED:
                raise fail(f"{_where(section, key)}: missing required key")
            else:
                values[key] = default
        sections[section] = values

    def resolve(section, key):
        value = sections[section][key]
        if value is None:
            return
        if isinstance(value, list):
            sections[section][key] = [v if Path(v).is_absolute() else str(base / v) for v in value]
        else:
            sections[section][key] = value if Path(value).is_absolute() else str(base / value)

    for section, key in [("run", "output"), ("input", "frames"), ("input", "raw"), ("input", "log"),
                         ("geometry", "poni"), ("geometry", "calibrant_image"), ("integration", "mask")]:
        resolve(section, key)

    inp, geo, peaks = sections["input"], sections["geometry"], sections["peaks"]
    if (inp["frames"] is None) == (inp["raw"] is None):
        raise fail("[input]: give exactly one of 'frames' (detector files) or 'raw' (a raw NeXus file)")
    if (geo["poni"] is None) == (geo["calibrant_image"] is None):
        raise fail("[geometry]: give exactly one of 'poni' or 'calibrant_image'")
    if geo["calibrant_image"] is not None:
        for key in ("calibrant", "distance_mm"):
            if geo[key] is None:
                raise fail(f"{_where('geometry', key)}: required with 'calibrant_image'")
        if geo["detector"] is None and inp["detector"] is None:
            raise fail("[geometry] detector: required with 'calibrant_image' (or set [input] detector)")
    if (peaks["reflections"] is None) == (peaks["centres"] is None):
        raise fail("[peaks]: give exactly one of 'reflections' (hkl labels, with 'phase') or 'centres'")
    if peaks["reflections"] is not None and peaks["phase"] is None:
        raise fail("[peaks] phase: required with 'reflections'")
    if peaks["centres"] is not None and peaks["half_width"] is None:
        raise fail("[peaks] half_width: required with 'centres'")
    outputs = [sections["output"][k] for k in ("result", "patterns", "raw")]
    if len(set(outputs)) != len(outputs):
        raise fail(f"[output]: result, patterns and raw must be different files, got {outputs}")
    try:
        from .cluster import ComputeConfig

        _compute_config(sections["compute"], ComputeConfig)
    except ValueError as exc:
        raise fail(str(exc).replace("compute.", "[compute] ")) from None
    return RunConfig(sections=sections, source=source)


def _compute_config(c: dict[str, Any], cls):
    return cls(scheduler=c["scheduler"], n_workers=c["n_workers"], threads_per_worker=c["threads_per_worker"],
               memory_limit=c["memory_limit"], dashboard=c["dashboard"], host=c["host"], jobqueue=c["jobqueue"])


# --------------------------------------------------------------------------- manifest


def _fingerprint(*parts: Any) -> str:
    def stat(value):
        if isinstance(value, (str, Path)) and Path(value).is_file():
            st = Path(value).stat()
            return [str(value), st.st_size, st.st_mtime_ns]
        return value
    blob = json.dumps([stat(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class _Manifest:
    def __init__(self, path: Path):
        self.path = path
        try:
            self.stages = json.loads(path.read_text()).get("stages", {})
        except (OSError, ValueError):
            self.stages = {}

    def done(self, stage: str, fingerprint: str, *outputs: Path) -> bool:
        return self.stages.get(stage) == fingerprint and all(Path(o).is_file() for o in outputs)

    def record(self, stage: str, fingerprint: str) -> None:
        from . import __version__

        self.stages[stage] = fingerprint
        tmp = self.path.with_name(self.path.name + ".partial")
        tmp.write_text(json.dumps({"xrdflow": __version__, "stages": self.stages}, indent=1))
        os.replace(tmp, self.path)


# --------------------------------------------------------------------------- run


@dataclasses.dataclass
class RunResult:
    """What :func:`run_workflow` produced."""

    result: Any  # xr.Dataset (frame, [azimuth,] peak)
    outputs: dict[str, Path]
    timings: dict[str, float]
    summary: str
    reused: list[str]
    calibration: Any = None


def _sector_spec(integ: dict[str, Any]):
    from ._integrate import sectors_around_axis

    sectors = integ["sectors"]
    if sectors == "axial-transverse":
        return sectors_around_axis(integ["load_axis_deg"], integ["sector_half_width_deg"])
    return sectors


def _peaks_spec(cfg: RunConfig, energy_kev: float):
    p = cfg["peaks"]
    if p["centres"] is not None:
        return p["centres"]
    from .crystal import reflections

    refl = reflections(p["phase"], energy_kev=energy_kev)
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


def run_workflow(
    config: RunConfig | str | os.PathLike | dict,
    *,
    echo: Callable[[str], None] | None = print,
    progress: bool = False,
) -> RunResult:
    """Run a whole experiment reduction from a config file; see ``workflows/tensile_test.toml``.

    Stages: ingest (if ``[input] frames``), calibrate (if ``[geometry] calibrant_image``),
    integrate + fit (one streaming dask graph), lattice strain, write (raw NeXus, NXazint
    patterns, NeXus result), figures. Returns a :class:`RunResult` with the result Dataset,
    the output paths, per-stage times and a one-screen summary (also echoed).
    """

    from .cluster import ComputeConfig, compute_context
    from .geometry import Geometry
    from ._ingest import ingest
    from ._integrate import integrate
    from .nexus.azint import PatternWriter
    from .nexus import atomic_output, open_frames, output_lock
    from ._peaks import fit_peaks
    from .nexus.peaks import open_result, write_result
    from ._strain import lattice_strain

    cfg = config if isinstance(config, RunConfig) else load_config(config)
    say = echo or (lambda *_: None)
    out = cfg.output
    out.mkdir(parents=True, exist_ok=True)
    manifest = _Manifest(out / "xrdflow-run.json")
    timings: dict[str, float] = {}
    reused: list[str] = []
    outputs: dict[str, Path] = {}
    inp, geo, integ, pk = cfg["input"], cfg["geometry"], cfg["integration"], cfg["peaks"]
    t_run = time.perf_counter()

    with output_lock(out / "xrdflow-run"):
        # ---- ingest
        t0 = time.perf_counter()
        if inp["frames"] is not None:
            raw = cfg.out("raw")
            frames_src = inp["frames"][0] if len(inp["frames"]) == 1 else inp["frames"]
            report = ingest(frames_src, raw, energy_kev=inp["energy_kev"], strain_log=inp["log"],
                            compression=inp["compression"], skip_bad=inp["skip_bad"],
                            detector=inp["detector"], progress=progress)
            if report.n_written == 0:
                reused.append("ingest")
            for name, reason in report.bad:
                say(f"xrdflow: bad frame {name}: {reason}")
        else:
            raw = Path(inp["raw"])
        outputs["raw"] = raw
        timings["ingest"] = time.perf_counter() - t0

        # ---- geometry
        t0 = time.perf_counter()
        calibration = None
        if geo["poni"] is not None:
            geometry = Geometry.from_poni(geo["poni"], orientation=geo["orientation"])
        else:
            poni = out / "geometry.poni"
            fp = _fingerprint(geo, inp["energy_kev"], inp["detector"])
            if manifest.done("calibrate", fp, poni):
                geometry = Geometry.from_poni(poni)
                reused.append("calibrate")
            else:
                from ._calibrate import calibrate

                figdir = out / "figures"
                figdir.mkdir(exist_ok=True)
                calibration = calibrate(
                    geo["calibrant_image"], geo["calibrant"], energy_kev=inp["energy_kev"],
                    detector=geo["detector"] or inp["detector"], distance_mm=geo["distance_mm"],
                    beam_center_px=geo["beam_center_px"], orientation=geo["orientation"] or "as_read",
                    d_min=geo["d_min"], max_rings=geo["max_rings"], poni=poni,
                    report=out / "calibration.txt",
                    figure=[figdir / "calibration.png", figdir / "calibration.pdf"]
                    if cfg["output"]["figures"] else None)
                geometry = calibration.geometry
                manifest.record("calibrate", fp)
            outputs["geometry"] = poni
        timings["calibrate"] = time.perf_counter() - t0

        # ---- integrate + fit, one streaming graph
        t0 = time.perf_counter()
        result_path, patterns_path = cfg.out("result"), cfg.out("patterns")
        fp = _fingerprint(raw, geometry.as_dict(), integ, pk, cfg["strain"], cfg["output"])
        n_frames = None
        if manifest.done("reduce", fp, result_path, patterns_path):
            result = open_result(result_path)
            reused.append("integrate+fit")
        else:
            frames = open_frames(raw, frames_per_chunk=integ["frames_per_chunk"])
            n_frames = frames.sizes["frame"]
            energy = float(frames.attrs.get("energy_kev", inp["energy_kev"]))
            patterns = integrate(
                frames, geometry, npt=integ["npt"], unit=integ["unit"], radial_range=integ["radial_range"],
                mask=integ["mask"], mask_orientation=integ["mask_orientation"],
                azimuth_sectors=_sector_spec(integ), method=integ["method"],
                polarization_factor=integ["polarization_factor"],
                correct_solid_angle=integ["correct_solid_angle"])
            fits = fit_peaks(patterns, _peaks_spec(cfg, energy), half_width=pk["half_width"],
                             background=pk["background"], warm_start=pk["warm_start"],
                             max_iter=pk["max_iter"], min_snr=pk["min_snr"])
            with compute_context(_compute_config(cfg["compute"], ComputeConfig), echo=say) as client:
                if client is not None:  # the matrix integrate() built here: once to each worker
                    from .engines import share_with_workers

                    share_with_workers(client, latest=1)
                parts = _stream(patterns, fits, patterns_path, PatternWriter, atomic_output,
                                batch_frames=cfg["compute"]["batch_frames"], progress=progress)
            import xarray as xr

            fitted = xr.concat(parts, dim="frame") if len(parts) > 1 else parts[0]
            fitted.attrs = dict(fits.attrs)
            result = lattice_strain(fitted, reference=cfg["strain"]["reference"])
            result.attrs["run_config"] = json.dumps(cfg.sections, default=str)
            result.attrs["geometry"] = json.dumps(geometry.as_dict(), default=str)
            write_result(result, result_path)
            manifest.record("reduce", fp)
        outputs["patterns"], outputs["result"] = patterns_path, result_path
        timings["integrate+fit"] = time.perf_counter() - t0

        # ---- figures
        t0 = time.perf_counter()
        if cfg["output"]["figures"]:
            outputs.update(_figures(result, patterns_path, out / "figures"))
        timings["figures"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_run
    summary = summarize(result, timings, outputs, reused, n_frames=n_frames, name=cfg["run"]["name"],
                        calibration=calibration)
    say(summary)
    return RunResult(result=result, outputs=outputs, timings=timings, summary=summary, reused=reused,
                     calibration=calibration)


def _stream(patterns, fits, patterns_path: Path, PatternWriter, atomic_output, *, batch_frames, progress):
    """Integrate and fit a batch of frames at a time; patterns to disk, fits kept."""
    import dask
    import h5py

    chunks = patterns.chunks[0]
    offsets = np.concatenate([[0], np.cumsum(chunks)])
    per_batch = batch_frames or max(4 * int(max(chunks)), 2 * _workers_hint() * int(max(chunks)))
    bounds = [0]
    for off in offsets[1:]:  # batch edges on chunk edges
        if off - bounds[-1] >= per_batch or off == offsets[-1]:
            bounds.append(int(off))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=int(offsets[-1]), unit="frame", desc="integrate+fit")
    parts = []
    with atomic_output(patterns_path) as tmp:
        with h5py.File(tmp, "w") as fh:
            fh.attrs["default"] = "entry"
            writer = PatternWriter(patterns, fh, "entry", "NXentry")
            for lo, hi in zip(bounds[:-1], bounds[1:]):
                sl = slice(lo, hi)
                values, fitted = dask.compute(patterns.data[sl], fits.isel(frame=sl))
                writer.write(sl, values)
                parts.append(fitted)
                if bar is not None:
                    bar.update(hi - lo)
            writer.finish()
    if bar is not None:
        bar.close()
    return parts


def _workers_hint() -> int:
    try:
        from distributed import get_client

        return max(1, len(get_client().scheduler_info()["workers"]))
    except (ImportError, ValueError):
        return os.cpu_count() or 1


def _figures(result, patterns_path: Path, figdir: Path) -> dict[str, Path]:
    from .nexus.azint import open_patterns
    from .plot import run as plots

    figdir.mkdir(parents=True, exist_ok=True)
    patterns = open_patterns(patterns_path)
    made = {}
    made["figure_patterns"] = plots.save(plots.patterns_map(patterns), figdir / "patterns")[0]
    made["figure_fits"] = plots.save(plots.fit_overlay(patterns, result), figdir / "fits_first_last")[0]
    made["figure_strain"] = plots.save(plots.strain_curves(result), figdir / "strain")[0]
    if (figdir / "calibration.png").exists():
        made["figure_calibration"] = figdir / "calibration.png"
    return made


def summarize(result, timings, outputs, reused, *, n_frames=None, name="run", calibration=None) -> str:
    """A one-screen summary: frames, peaks, fits by status, time per stage, throughput."""
    from ._peaks import STATUS

    n = result.sizes["frame"]
    status = np.asarray(result["status"].values)
    names = {v: k for k, v in STATUS.items()}
    counts = {names.get(int(v), str(v)): int((status == v).sum()) for v in np.unique(status)}
    peaks = ", ".join(map(str, result["peak"].values))
    sectors = f" x {result.sizes['azimuth']} sectors" if "azimuth" in result.dims else ""
    lines = [f"xrdflow run '{name}'",
             f"  frames       {n}",
             f"  peaks        {result.sizes['peak']}{sectors}: {peaks}",
             f"  fits         {status.size}: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))]
    flagged = [f"{int(np.count_nonzero(result[name].values))} with {name[2:]} pixels"
               for name in ("n_saturated", "n_nonfinite", "n_negative")
               if name in result.coords and np.count_nonzero(result[name].values)]
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
