"""fit_peaks beyond the single Gaussian: peak shapes, joint fits of overlapping peaks,
Chebyshev backgrounds, shared parameters, strain-linked positions and tracked windows.

The numbers are computed by :mod:`xrdflow._kernels.profile`; this module builds its inputs
(the groups of peaks, the position link of the radial unit, the tracked shifts) and maps
it over the patterns lazily, as :mod:`xrdflow._peaks` does for the Gaussian kernel.

Tracking (``track=True``): a peak that drifts by more than a window's half width over a
run would leave a fixed window. Every ``track_every``-th frame (and the last) is fitted
first, in frame order, each from the windows re-centred on the previous such frame's fitted
positions: one task, on a few frames. Its positions, interpolated linearly over the frames
(constant beyond the first and last), give every frame's shift of each peak's expected
centre and window (a group's window moves by the mean shift of its peaks). The fits of the
frames then run chunk by chunk in parallel as without tracking: the graph stays parallel,
with one small task in front. A peak is followed as long as it moves by less than about a
half width between two of the sampled frames; choose ``track_every`` accordingly.
"""

from __future__ import annotations

import math
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr

from . import units as U
from ._kernels import profile as KP

#: the kernel's fields, in the order of the P_* indices
KERNEL_FIELDS = [
    "position", "position_error", "fwhm", "fwhm_error", "amplitude", "amplitude_error", "area",
    "area_error", "integral_breadth", "integral_breadth_error", "eta", "eta_error", "m", "m_error",
    "asymmetry", "asymmetry_error", "background", "background_error", "background_slope", "d_ratio",
    "d_ratio_error", "residual", "n_iter", "status", "chi2",
]
assert len(KERNEL_FIELDS) == KP.NPF
#: the fields of one block's output: the kernel's, then those derived from them
OUT_NAMES = KERNEL_FIELDS + ["sigma", "sigma_error", "d_spacing", "d_spacing_error"]
_UNMASKED = ("n_iter", "status")


def groups(win: dict, joint: bool) -> dict[str, np.ndarray]:
    """The kernel's groups: peaks whose windows overlap form one group (``joint``), else
    every peak is its own. Returns the group windows, the members (peak indices, grouped)
    and each member's expected centre and phase code, and ``group`` (per peak, its group)."""
    low = np.asarray(win["low"], float)
    high = np.asarray(win["high"], float)
    centre = np.asarray(win["center"], float)
    npk = low.size
    order = np.argsort(centre, kind="stable")
    found: list[list[int]] = []
    if joint:
        for j in order:
            if found and low[j] < max(high[i] for i in found[-1]):
                found[-1].append(int(j))
            else:
                found.append([int(j)])
    else:
        found = [[int(j)] for j in range(npk)]
    too_big = [g for g in found if len(g) > KP.MAXPK]
    if too_big:
        labels = ", ".join(str(win["label"][i]) for i in too_big[0])
        raise ValueError(f"overlap: a joint group holds more than {KP.MAXPK} peaks ({labels}); "
                         "use narrower windows (half_width)")
    phases = np.asarray(win["phase"]).astype(str)
    codes = {name: k for k, name in enumerate(dict.fromkeys(phases.tolist()))}
    members = np.asarray([i for g in found for i in g], np.int64)
    group = np.empty(npk, np.int64)
    for k, g in enumerate(found):
        group[g] = k
    return {
        "g_low": np.asarray([low[g].min() for g in found]),
        "g_high": np.asarray([high[g].max() for g in found]),
        "g_first": np.cumsum([0] + [len(g) for g in found[:-1]]).astype(np.int64),
        "g_n": np.asarray([len(g) for g in found], np.int64),
        "members": members,
        "centre0": centre[members].copy(),
        "phase": np.asarray([codes[phases[i]] for i in members], np.int64),
        "group": group,
    }


def link_of(unit: str, link: str | None) -> tuple[int, float]:
    """(kernel link code, its constant) for positions tied by one d/d0 on a ``unit`` axis."""
    if link is None:
        return KP.LINK_NONE, 1.0
    if unit.startswith("q_"):
        return KP.LINK_POWER, 1.0
    if unit.startswith("d*2"):
        return KP.LINK_POWER, 2.0
    if unit == "2th_deg":
        return KP.LINK_TWO_THETA, 180.0 / math.pi
    if unit == "2th_rad":
        return KP.LINK_TWO_THETA, 1.0
    raise ValueError(f"link: 'strain' needs a radial unit that converts to d (q, 2theta, d*^2), "
                     f"got {unit!r}")


def _run_kernel(y3: np.ndarray, shifts3: np.ndarray, x: np.ndarray, grp: dict, cfg: dict) -> np.ndarray:
    out = np.full(y3.shape[:2] + (grp["group"].size, KP.NPF), np.nan)
    KP.fit_groups(x, y3, grp["g_low"], grp["g_high"], grp["g_first"], grp["g_n"], grp["members"],
                  grp["centre0"], grp["centre0"], grp["phase"], shifts3, cfg["shape"], cfg["nbg"],
                  cfg["share_fwhm"], cfg["share_shape"], cfg["share_asym"], cfg["link"], cfg["link_k"],
                  cfg["poisson"], cfg["warm_start"], cfg["max_iter"], cfg["xtol"], cfg["ftol"], cfg["min_snr"],
                  cfg["min_points"], out)
    return out


def _as3(a: np.ndarray, last: int) -> np.ndarray:
    shape = a.shape
    a3 = a.reshape(1, 1, last) if len(shape) == 1 else a.reshape(shape[0], -1, last)
    return np.array(a3, dtype=np.float64, order="C")


def fit_block(y, shifts=None, *, x, grp, cfg, unit, wavelength_a):
    """apply_ufunc callback: y[..., nx] (and shifts[..., npeak]) -> out[..., npeak, len(OUT_NAMES)]."""
    shape = y.shape
    npk = grp["group"].size
    y3 = _as3(y, shape[-1])
    s3 = np.zeros((1, 1, npk)) if shifts is None else _as3(shifts, npk)
    raw = _run_kernel(y3, s3, np.ascontiguousarray(x, dtype=np.float64), grp, cfg)
    out = np.empty(raw.shape[:-1] + (len(OUT_NAMES),))
    out[..., :KP.NPF] = raw
    pos = raw[..., KP.P_POSITION]
    out[..., OUT_NAMES.index("sigma")] = raw[..., KP.P_FWHM] / U.FWHM_FACTOR
    out[..., OUT_NAMES.index("sigma_error")] = raw[..., KP.P_FWHM_ERR] / U.FWHM_FACTOR
    with np.errstate(divide="ignore", invalid="ignore"):
        d = U.radial_to_d(pos, unit, wavelength_a)
        if d is None:
            d = np.full_like(pos, np.nan)
            d_err = d
        else:
            d_err = U.radial_d_derivative(pos, d, unit) * raw[..., KP.P_POSITION_ERR]
    out[..., OUT_NAMES.index("d_spacing")] = d
    out[..., OUT_NAMES.index("d_spacing_error")] = d_err
    bad = raw[..., KP.P_STATUS] != KP.OK
    for i, name in enumerate(OUT_NAMES):
        if name not in _UNMASKED:
            out[..., i][bad] = np.nan
    return out.reshape(shape[:-1] + (npk, len(OUT_NAMES)))


def _coarse_trajectory(yc: np.ndarray, frames_c: np.ndarray, nframes: int, x: np.ndarray, grp: dict,
                       cfg: dict) -> np.ndarray:
    """Shifts [frame, batch, peak] from the serial fit of the sampled frames (see the module doc)."""
    yc3 = yc.reshape(yc.shape[0], -1, yc.shape[-1]).astype(np.float64)
    nb = yc3.shape[1]
    npk = grp["group"].size
    centre = np.empty(npk)
    centre[grp["members"]] = grp["centre0"]
    current = np.zeros((1, nb, npk))
    samples = np.full((yc3.shape[0], nb, npk), np.nan)
    one = dict(cfg, warm_start=False)
    for i in range(yc3.shape[0]):
        out = _run_kernel(np.ascontiguousarray(yc3[i:i + 1]), current, x, grp, one)[0]
        ok = out[..., KP.P_STATUS] == KP.OK
        shift = out[..., KP.P_POSITION] - centre
        samples[i][ok] = shift[ok]
        current[0][ok] = shift[ok]
    shifts = np.zeros((nframes, nb, npk))
    frames = np.arange(nframes)
    for b in range(nb):
        for j in range(npk):
            good = np.isfinite(samples[:, b, j])
            if good.any():
                shifts[:, b, j] = np.interp(frames, frames_c[good], samples[good, b, j])
    return shifts


def tracked_shifts(patterns: xr.DataArray, dim: str, x: np.ndarray, grp: dict, cfg: dict,
                   every: int) -> xr.DataArray:
    """Lazy (with dask patterns) shifts [loop dims..., peak] of every frame's windows."""
    nframes = patterns.sizes["frame"]
    frames_c = np.unique(np.r_[np.arange(0, nframes, every), nframes - 1])
    sampled = patterns.isel(frame=frames_c).data
    other = [d for d in patterns.dims if d != dim]
    shape = tuple(patterns.sizes[d] for d in other) + (grp["group"].size,)
    if isinstance(sampled, da.Array):
        traj = dask.delayed(_coarse_trajectory, pure=True)(sampled, frames_c, nframes, x, grp, cfg)
        data = da.from_delayed(traj, shape=(nframes, int(np.prod(shape[1:-1], dtype=int)), shape[-1]),
                               dtype=np.float64).reshape(shape)
        data = data.rechunk(patterns.chunks[:-1] + ((shape[-1],),))
    else:
        data = _coarse_trajectory(np.asarray(sampled), frames_c, nframes, x, grp, cfg).reshape(shape)
    return xr.DataArray(data, dims=other + ["peak"])


def map_fits(patterns: xr.DataArray, dim: str, unit: str, x: np.ndarray, win: dict, opts: Any,
             grp: dict) -> xr.DataArray:
    """The lazy kernel map: DataArray (frame, loop dims..., peak, field) of :data:`OUT_NAMES`."""
    link, link_k = link_of(unit, opts.link)
    cfg = {
        "shape": KP.SHAPE_CODES[opts.shape], "nbg": opts.nbg, "share_fwhm": "fwhm" in opts.share,
        "share_shape": "eta" in opts.share or "m" in opts.share, "share_asym": "asymmetry" in opts.share,
        "link": link, "link_k": link_k, "poisson": opts.error_model == "poisson", "warm_start": opts.warm_start,
        "max_iter": opts.max_iter, "xtol": opts.xtol, "ftol": opts.ftol, "min_snr": opts.min_snr,
        "min_points": opts.min_points,
    }
    added_frame = "frame" not in patterns.dims
    if added_frame:
        patterns = patterns.expand_dims("frame")
    loop_dims = ["frame"] + [d for d in patterns.dims if d not in ("frame", dim)]
    patterns = patterns.transpose(*loop_dims, dim)
    if patterns.chunks is not None:
        # whole frames in each chunk: the warm start and the tracked windows run along frames
        patterns = patterns.chunk({d: -1 for d in loop_dims[1:]} | {dim: -1})
    inputs = [patterns]
    core = [[dim]]
    if opts.track:
        inputs.append(tracked_shifts(patterns, dim, x, grp, cfg, opts.track_every))
        core.append(["peak"])
    raw = xr.apply_ufunc(
        fit_block,
        *inputs,
        input_core_dims=core,
        output_core_dims=[["peak", "field"]],
        dask="parallelized",
        output_dtypes=[np.float64],
        dask_gufunc_kwargs={"output_sizes": {"peak": grp["group"].size, "field": len(OUT_NAMES)}},
        kwargs=dict(x=x, grp=grp, cfg=cfg, unit=unit, wavelength_a=opts.wavelength_a),
        keep_attrs=False,
    )
    raw = raw.drop_vars([c for c in raw.coords if dim in raw[c].dims], errors="ignore")
    return raw.isel(frame=0, drop=True) if added_frame else raw
