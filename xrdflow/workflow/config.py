"""The run-config schema and :func:`load_config`.

Vocabularies, defaults and validators come from :mod:`xrdflow.options` (the API and the
CLI use the same ones); each validator is wrapped so that its ``ValueError`` becomes a
:class:`ConfigError` naming ``[section] key``.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
import warnings
from pathlib import Path
from typing import Any, Callable

from .. import options as O

__all__ = ["ConfigError", "RunConfig", "SCHEMA", "load_config", "compute_config", "RESERVED_NAMES"]


class ConfigError(ValueError):
    """The run configuration is invalid; the message names the key."""


# ------------------------------------------------------------------------- validators
_REQUIRED = object()


def _where(section: str, key: str) -> str:
    return f"[{section}] {key}"


def _wrap(validator: Callable, *args, **kwargs) -> Callable:
    """An :mod:`xrdflow.options` validator as a config check ``(value, where)``: its
    ``ValueError`` (message starting with ``where``) becomes a :class:`ConfigError`."""

    def check(value, where):
        try:
            return validator(value, where, *args, **kwargs)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    check.__name__ = getattr(validator, "__name__", "check")
    return check


def _choice(options):
    return _wrap(O.choice, options)


def _optional_choice(options):
    return _wrap(O.optional_choice, options)


_positive = _wrap(O.positive)
_positive_int = _wrap(O.positive_int)
_boolean = _wrap(O.boolean)
_string = _wrap(O.string)
_pair = _wrap(O.pair)


def _range(value, where):
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value)):
        raise ConfigError(f"{where}: must be [low, high], got {value!r}")
    lo, hi = _pair(value, where)
    if lo >= hi:
        raise ConfigError(f"{where}: low must be below high, got {value!r}")
    return _wrap(O.value_range)(value, where)


def _polarization(value, where):
    value = _wrap(O.number)(value, where)
    if not -1.0 <= value <= 1.0:
        raise ConfigError(f"{where}: must be in [-1, 1], got {value!r}")
    return value


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
    return [_positive(v, where) for v in value]


def _background(value, where):
    """A background model: "constant", "linear", "chebyshevN" or ["chebyshev", N]; its canonical name."""
    return _wrap(O.background)(tuple(value) if isinstance(value, list) else value, where)[0]


def _share(value, where):
    """Parameters a joint fit shares: a name or a list of names (checked against the shape
    by fit_peaks, which knows it)."""
    names = _strings(value, where)
    for name in names:
        if name not in O.SHAREABLE:
            raise ConfigError(f"{where}: must name parameters among {', '.join(O.SHAREABLE)}, got {name!r}")
    return names


def _optional_link(value, where):
    if value in ("none", "", None):
        return None
    return _choice(O.LINKS)(value, where)


def _method(value, where):
    if isinstance(value, str):
        return value
    if isinstance(value, list) and len(value) == 3 and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ConfigError(f"{where}: must be a pyFAI method name or [split, algorithm, implementation], got {value!r}")


def _sectors(value, where):
    if isinstance(value, int) and not isinstance(value, bool):
        return _positive_int(value, where)
    if value in O.SECTOR_PRESETS:
        return value
    if isinstance(value, dict) and value:
        out = {}
        for name, spec in value.items():
            center, half = _pair(spec, f"{where}.{name}")
            if half <= 0:
                raise ConfigError(f"{where}.{name}: half width must be positive, got {half}")
            out[name] = (center, half)
        return out
    raise ConfigError(f"{where}: must be a number of equal sectors, \"axial-transverse\", or "
                      f"{{name = [center_deg, half_width_deg]}}, got {value!r}")


def _reference(value, where):
    if value in O.STRAIN_REFERENCES:
        return value
    if isinstance(value, dict) and value:
        return {k: _positive(v, f"{where}.{k}") for k, v in value.items()}
    raise ConfigError(f"{where}: must be \"first\", \"d0\" or {{peak label = d0 in Angstrom}}, got {value!r}")


def _optional_boolean(value, where):
    return None if value is None else _boolean(value, where)


def _optional_number(value, where):
    return None if value is None else _wrap(O.number)(value, where)


def _table(value, where):
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: must be a table, got {value!r}")
    return dict(value)


#: names of the files a run keeps for itself in its output folder
RESERVED_NAMES = ("xrdflow-run.json", "xrdflow-run.lock", "xrdflow-run.batches", "geometry.poni",
                  "calibration.txt", "figures")


def _file_name(value, where):
    value = _string(value, where)
    path = Path(value)
    # a plain name: no folder part (no '..', no absolute path, no folder that may not exist)
    if path.is_absolute() or len(path.parts) != 1 or path.name in (".", "..") or "/" in value or "\\" in value:
        raise ConfigError(f"{where}: must be a file name inside the output folder, got {value!r}")
    if path.name in RESERVED_NAMES or path.name.endswith((".partial", ".lock")):
        raise ConfigError(f"{where}: {value!r} is a name xrdflow uses for its own files")
    return value


# ----------------------------------------------------------------------------- schema
#: ``{section: {key: (check, default)}}``; defaults agree with the API's (``options``)
SCHEMA: dict[str, dict[str, tuple[Callable, Any]]] = {
    "run": {
        "name": (_string, "xrdflow-run"),
        "output": (_string, _REQUIRED),
    },
    "input": {
        "frames": (_strings, None),
        "raw": (_string, None),
        "energy_kev": (_positive, _REQUIRED),
        "log": (_string, None),
        "detector": (_string, None),
        "skip_bad": (_boolean, False),
        "compression": (_choice(O.COMPRESSIONS), O.DEFAULT_COMPRESSION),
    },
    "geometry": {
        "poni": (_string, None),
        "orientation": (_choice(O.ORIENTATIONS), None),
        "calibrant_image": (_string, None),
        "calibrant": (_string, None),
        "detector": (_string, None),
        "distance_mm": (_positive, None),
        "beam_center_px": (_pair, None),
        "d_min": (_positive, None),
        "max_rings": (_positive_int, None),
    },
    "integration": {
        "npt": (_positive_int, _REQUIRED),
        "unit": (_choice(O.INTEGRATION_UNITS), O.DEFAULT_UNIT),
        "radial_range": (_range, None),
        "method": (_method, O.DEFAULT_METHOD),
        "polarization_factor": (_polarization, O.DEFAULT_POLARIZATION),
        "correct_solid_angle": (_boolean, True),
        "mask": (_string, None),
        "mask_orientation": (_choice(O.ORIENTATIONS), O.DEFAULT_ORIENTATION),
        "mask_negative": (_boolean, True),
        "dark": (_string, None),
        "flat": (_string, None),
        "error_model": (_optional_choice(O.ERROR_MODELS), None),
        "engine": (_choice(O.ENGINES), O.DEFAULT_ENGINE),
        "sectors": (_sectors, None),
        "load_axis_deg": (_wrap(O.number), 0.0),
        "sector_half_width_deg": (_positive, 10.0),
        "frames_per_chunk": (_positive_int, None),
    },
    "peaks": {
        "phase": (_string, None),
        "reflections": (_strings, None),
        "centers": (_numbers, None),
        "half_width": (_positive, None),
        "shape": (_choice(O.SHAPES), O.DEFAULT_SHAPE),
        "background": (_background, O.DEFAULT_BACKGROUND),
        "error_model": (_optional_choice(O.ERROR_MODELS), None),
        "overlap": (_choice(O.OVERLAP_POLICIES), O.DEFAULT_OVERLAP),
        "share": (_share, None),
        "link": (_optional_link, None),
        "track": (_boolean, False),
        "track_every": (_positive_int, None),
        "max_iter": (_positive_int, O.DEFAULT_MAX_ITER),
        "xtol": (_positive, O.DEFAULT_XTOL),
        "min_snr": (_positive, O.DEFAULT_MIN_SNR),
        "min_points": (_positive_int, O.DEFAULT_MIN_POINTS),
        "warm_start": (_boolean, False),
    },
    "strain": {
        "reference": (_reference, O.STRAIN_REFERENCES[0]),
    },
    # the strain tensor of each reflection from the sectors' strains (xrdflow.strain_tensor)
    "strain_tensor": {
        "enabled": (_optional_boolean, None),  # None: whenever the integration has sectors
        "model": (_choice(O.STRAIN_TENSOR_MODELS), O.STRAIN_TENSOR_MODELS[0]),
        "reference": (_choice(O.TENSOR_REFERENCES), O.TENSOR_REFERENCES[0]),
        "load_azimuth_deg": (_optional_number, None),  # None: [integration] load_axis_deg
        "poisson_ratio": (_wrap(O.number), 0.3),
        "min_sectors": (_positive_int, 4),
        "elastic": (_string, None),
        "approximation": (_choice(O.DEC_APPROXIMATIONS), "kroner"),
    },
    "output": {
        "result": (_file_name, "result.nxs"),
        "patterns": (_file_name, "patterns.nxs"),
        "raw": (_file_name, "raw.nxs"),
        "figures": (_boolean, True),
    },
    "compute": {
        "scheduler": (_string, O.DEFAULT_SCHEDULER),
        "n_workers": (_positive_int, None),
        "threads_per_worker": (_positive_int, 1),
        "memory_limit": (_string, "auto"),
        "dashboard": (_boolean, True),
        "host": (_string, O.DEFAULT_HOST),
        "jobqueue": (_table, None),
        "batch_frames": (_positive_int, None),
    },
}
_REQUIRED_SECTIONS = ("run", "input", "integration", "peaks")
#: old key -> new key, accepted with a DeprecationWarning
_DEPRECATED_KEYS = {("peaks", "centres"): "centers"}
#: keys holding paths, resolved against the config file's folder
_PATH_KEYS = [("run", "output"), ("input", "frames"), ("input", "raw"), ("input", "log"),
              ("geometry", "poni"), ("geometry", "calibrant_image"), ("integration", "mask"),
              ("integration", "dark"), ("integration", "flat")]


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


# ------------------------------------------------------------------------ load_config
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

    Examples
    --------
    >>> cfg = load_config({"run": {"output": "out"},
    ...                    "input": {"raw": "raw.nxs", "energy_kev": 87.1},
    ...                    "geometry": {"poni": "g.poni"},
    ...                    "integration": {"npt": 300},
    ...                    "peaks": {"centers": [22.6], "half_width": 0.3}}, base_dir="/data")
    >>> cfg["integration"]["polarization_factor"] is None, cfg["peaks"]["background"]
    (True, 'linear')
    >>> cfg.out("result")
    PosixPath('/data/out/result.nxs')
    >>> load_config({"run": {"output": "out"}, "input": {"energy_kev": 0}})
    Traceback (most recent call last):
    ...
    xrdflow.workflow.config.ConfigError: <dict>: [input] energy_kev: must be a positive number, got 0
    """
    raw, source, base = _read(config, base_dir)
    if overrides:
        raw = _overridden(raw, overrides, source)
    try:
        sections = _validate(raw)
        _resolve_paths(sections, base)
        _check_consistency(sections)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return RunConfig(sections=sections, source=source)


def _overridden(raw: dict, overrides: dict[str, dict[str, Any]], source: str) -> dict:
    """``raw`` with ``overrides`` in; a scheduler given there replaces the config's
    ``[compute] jobqueue`` (the command line wins; the log says so)."""
    compute = raw.get("compute", {})
    over = overrides.get("compute", {})
    if (isinstance(compute, dict) and compute.get("jobqueue") is not None and over.get("scheduler")
            and "jobqueue" not in over):
        import logging

        logging.getLogger("xrdflow.workflow").warning(
            "%s: scheduler %s (given on the command line) replaces [compute] jobqueue",
            source, over["scheduler"])
        raw = {**raw, "compute": {k: v for k, v in compute.items() if k != "jobqueue"}}
    return {**raw, **{sec: {**raw.get(sec, {}), **keys} for sec, keys in overrides.items()}}


def _read(config, base_dir) -> tuple[dict, str, Path]:
    """A dict or a TOML file -> (raw dict, source name, folder of relative paths)."""
    if isinstance(config, dict):
        return config, "<dict>", Path(base_dir or ".")
    path = Path(config)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file not found")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    return raw, str(path), Path(base_dir) if base_dir else path.resolve().parent


def _unknown(key: str, known, where: str, what: str = "key") -> ConfigError:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"
    return ConfigError(f"{where}: unknown {what}{hint}")


def _renamed(section: str, given: dict) -> dict:
    """Deprecated keys -> their new names (with a DeprecationWarning)."""
    for (sec, old), new in _DEPRECATED_KEYS.items():
        if sec == section and old in given:
            if new in given:
                raise ConfigError(f"[{section}]: give {new!r} or its old name {old!r}, not both")
            warnings.warn(f"[{section}] {old}: deprecated; use '{new}' instead", DeprecationWarning,
                          stacklevel=4)
            given = {(new if k == old else k): v for k, v in given.items()}
    return given


def _validate(raw: dict) -> dict[str, dict[str, Any]]:
    """Every section and key checked, defaults filled in."""
    for section in raw:
        if section not in SCHEMA:
            raise _unknown(section, SCHEMA, f"[{section}]", what="section")
    sections: dict[str, dict[str, Any]] = {}
    for section, keys in SCHEMA.items():
        given = raw.get(section, {})
        if not isinstance(given, dict):
            raise ConfigError(f"[{section}]: must be a table")
        if section in _REQUIRED_SECTIONS and section not in raw:
            raise ConfigError(f"[{section}]: missing section")
        given = _renamed(section, given)
        for key in given:
            if key not in keys:
                raise _unknown(key, keys, _where(section, key))
        values = {}
        for key, (check, default) in keys.items():
            if key in given:
                values[key] = check(given[key], _where(section, key))
            elif default is _REQUIRED:
                raise ConfigError(f"{_where(section, key)}: missing required key")
            else:
                values[key] = default
        sections[section] = values
    return sections


def _resolve_paths(sections: dict[str, dict[str, Any]], base: Path) -> None:
    def resolve(value):
        return value if Path(value).is_absolute() else str(base / value)

    for section, key in _PATH_KEYS:
        value = sections[section][key]
        if isinstance(value, list):
            sections[section][key] = [resolve(v) for v in value]
        elif value is not None:
            sections[section][key] = resolve(value)


def _check_consistency(sections: dict[str, dict[str, Any]]) -> None:
    """The rules between keys: one source of frames, of geometry, of peaks..."""
    inp, geo, peaks = sections["input"], sections["geometry"], sections["peaks"]
    if (inp["frames"] is None) == (inp["raw"] is None):
        raise ConfigError("[input]: give exactly one of 'frames' (detector files) or 'raw' (a raw NeXus file)")
    if (geo["poni"] is None) == (geo["calibrant_image"] is None):
        raise ConfigError("[geometry]: give exactly one of 'poni' or 'calibrant_image'")
    if geo["calibrant_image"] is not None:
        for key in ("calibrant", "distance_mm"):
            if geo[key] is None:
                raise ConfigError(f"{_where('geometry', key)}: required with 'calibrant_image'")
        if geo["detector"] is None and inp["detector"] is None:
            raise ConfigError("[geometry] detector: required with 'calibrant_image' (or set [input] detector)")
    if (peaks["reflections"] is None) == (peaks["centers"] is None):
        raise ConfigError("[peaks]: give exactly one of 'reflections' (hkl labels, with 'phase') or 'centers'")
    if peaks["reflections"] is not None and peaks["phase"] is None:
        raise ConfigError("[peaks] phase: required with 'reflections'")
    if peaks["centers"] is not None and peaks["half_width"] is None:
        raise ConfigError("[peaks] half_width: required with 'centers'")
    outputs = [sections["output"][k] for k in ("result", "patterns", "raw")]
    if len(set(outputs)) != len(outputs):
        raise ConfigError(f"[output]: result, patterns and raw must be different files, got {outputs}")
    if sections["strain_tensor"]["enabled"] and sections["integration"]["sectors"] is None:
        raise ConfigError("[strain_tensor] enabled: needs [integration] sectors (a tensor needs several azimuths)")
    try:
        compute_config(sections["compute"])
    except ValueError as exc:
        raise ConfigError(str(exc).replace("compute.", "[compute] ")) from None


def compute_config(compute: dict[str, Any]):
    """The ``[compute]`` section as a :class:`xrdflow.cluster.ComputeConfig`."""
    from ..cluster import ComputeConfig

    return ComputeConfig(**{k: compute[k] for k in ("scheduler", "n_workers", "threads_per_worker",
                                                     "memory_limit", "dashboard", "host", "jobqueue")})
