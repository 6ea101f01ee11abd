"""Batch Gaussian peak fitting of diffraction patterns: windows, fit_peaks, read_patterns.

``fit_peaks`` maps the numba kernel of :mod:`xrdflow._kernels` over the patterns with
``xr.apply_ufunc(dask="parallelized")``: one task per chunk of whole frames, the kernel
single-threaded inside each task. Nothing is computed until asked.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Mapping

import numpy as np
import xarray as xr

from . import _kernels as K

__all__ = [
    "STATUS",
    "STATUS_MEANINGS",
    "fit_peaks",
    "peak_windows",
    "radial_unit_of",
    "to_d_spacing",
    "from_d_spacing",
]

#: fit status codes (int8 ``status`` variable)
STATUS = {
    "ok": K.OK,
    "not_converged": K.NOT_CONVERGED,
    "no_peak": K.NO_PEAK,
    "peak_at_edge": K.PEAK_AT_EDGE,
    "bad_input": K.BAD_INPUT,
}
STATUS_MEANINGS = " ".join(sorted(STATUS, key=STATUS.get))

FWHM_FACTOR = 2.0 * math.sqrt(2.0 * math.log(2.0))

# pyFAI radial unit -> (dim name, units attr)
_UNITS = {
    "q_nm^-1": ("q", "1/nm"),
    "q_A^-1": ("q", "1/A"),
    "2th_deg": ("two_theta", "deg"),
    "2th_rad": ("two_theta", "rad"),
    "r_mm": ("r", "mm"),
    "r_m": ("r", "m"),
    "d*2_A^-2": ("d_star_squared", "1/A^2"),
    "d*2_nm^-2": ("d_star_squared", "1/nm^2"),
}
_RADIAL_DIMS = ("q", "two_theta", "r", "d_star_squared")


# --------------------------------------------------------------------------- units
def radial_unit_of(patterns: xr.DataArray) -> tuple[str, str]:
    """(radial dim name, pyFAI unit string) of a patterns DataArray.

    Taken from ``attrs["radial_unit"]`` if present, else from the radial dim name and its
    ``units`` attribute.
    """
    dims = [d for d in patterns.dims if d in _RADIAL_DIMS]
    if len(dims) != 1:
        raise ValueError(
            f"patterns: expected exactly one radial dim among {_RADIAL_DIMS}, got dims {patterns.dims}"
        )
    dim = dims[0]
    unit = patterns.attrs.get("radial_unit")
    if unit is None:
        units = patterns[dim].attrs.get("units") if dim in patterns.coords else None
        for key, (name, u) in _UNITS.items():
            if name == dim and u == units:
                unit = key
                break
        if unit is None:
            raise ValueError(
                f"patterns: cannot tell the radial unit; set attrs['radial_unit'] (pyFAI unit "
                f"string such as 'q_nm^-1' or '2th_deg') or the units of coord {dim!r}"
            )
    if unit not in _UNITS:
        raise ValueError(f"patterns: radial_unit {unit!r} is not one of {sorted(_UNITS)}")
    if _UNITS[unit][0] != dim:
        raise ValueError(f"patterns: radial_unit {unit!r} does not match radial dim {dim!r}")
    return dim, unit


def _needs_wavelength(unit: str) -> bool:
    return unit.startswith("2th")


def to_d_spacing(x, unit: str, wavelength_a: float | None = None):
    """d-spacing in Angstrom from a radial position in the pyFAI ``unit``.

    Returns ``None`` when the unit cannot be converted (``r_mm`` without a distance, or
    2theta without a wavelength).

    Examples
    --------
    >>> round(float(to_d_spacing(2 * np.pi, "q_nm^-1")), 6)
    10.0
    >>> round(float(to_d_spacing(2 * np.pi, "q_A^-1")), 6)
    1.0
    """
    if unit == "q_nm^-1":
        return 20.0 * np.pi / x
    if unit == "q_A^-1":
        return 2.0 * np.pi / x
    if unit == "d*2_A^-2":
        return 1.0 / np.sqrt(x)
    if unit == "d*2_nm^-2":
        return 10.0 / np.sqrt(x)
    if unit in ("2th_deg", "2th_rad") and wavelength_a is not None:
        theta = np.deg2rad(x) / 2 if unit == "2th_deg" else x / 2
        return wavelength_a / (2.0 * np.sin(theta))
    return None


def _d_derivative(x, d, unit: str, wavelength_a: float | None):
    """|dd/dx| for error propagation."""
    if unit.startswith("q_"):
        return d / x
    if unit.startswith("d*2"):
        return d / (2.0 * x)
    k = np.pi / 180.0 if unit == "2th_deg" else 1.0
    return d * (k / 2.0) / np.tan(k * x / 2.0)


def from_d_spacing(d, unit: str, wavelength_a: float | None = None):
    """Radial position in the pyFAI ``unit`` of a d-spacing in Angstrom (NaN if unreachable).

    Examples
    --------
    >>> round(float(from_d_spacing(1.0, "q_A^-1")), 6)
    6.283185
    """
    d = np.asarray(d, dtype=float)
    if unit == "q_nm^-1":
        return 20.0 * np.pi / d
    if unit == "q_A^-1":
        return 2.0 * np.pi / d
    if unit == "d*2_A^-2":
        return 1.0 / d**2
    if unit == "d*2_nm^-2":
        return 100.0 / d**2
    if unit in ("2th_deg", "2th_rad"):
        if wavelength_a is None:
            raise ValueError("wavelength_a: needed to place reflections on a 2theta axis")
        s = wavelength_a / (2.0 * d)
        with np.errstate(invalid="ignore"):
            tth = 2.0 * np.arcsin(np.where(s <= 1, s, np.nan))
        return np.rad2deg(tth) if unit == "2th_deg" else tth
    raise ValueError(f"peaks: reflections cannot be placed on a {unit!r} axis; give centres or windows")


# --------------------------------------------------------------------------- windows
def _is_reflections(peaks: Any) -> bool:
    return isinstance(peaks, xr.Dataset) and "reflection" in peaks.dims


def peak_windows(
    peaks: Any,
    x: np.ndarray,
    *,
    unit: str,
    half_width: float | None = None,
    wavelength_a: float | None = None,
    overlap: str = "warn",
) -> dict[str, Any]:
    """Windows (index ranges into ``x``) and peak metadata from any accepted ``peaks`` form.

    ``peaks`` may be

    - a reflections Dataset (dim ``reflection``, vars ``d_spacing`` [, ``q``], coords
      ``hkl``, ``phase`` [, ``h``, ``k``, ``l``]): centres from ``d_spacing`` in ``unit``,
      reflections outside the pattern dropped (with a warning);
    - centres in the radial unit: a sequence of numbers or a mapping label -> number
      (needs ``half_width``);
    - explicit windows: an (n, 2) array or a mapping label -> (low, high).

    Returns a dict of numpy arrays: ``label``, ``lo``, ``hi`` (indices, ``x[lo:hi]``),
    ``center``, ``low``, ``high`` (window limits in the radial unit), ``hkl``, ``phase``,
    ``d0`` (Angstrom, NaN when unknown), ``overlaps`` (labels of other listed peaks whose
    centre lies in the window), and ``h``, ``k``, ``l`` when known.
    """
    if overlap not in ("warn", "raise", "drop"):
        raise ValueError(f"overlap: must be 'warn', 'raise' or 'drop', got {overlap!r}")
    extra: dict[str, np.ndarray] = {}
    if _is_reflections(peaks):
        if "d_spacing" not in peaks:
            raise ValueError("peaks: a reflections Dataset needs a 'd_spacing' variable (Angstrom)")
        if half_width is None:
            raise ValueError("half_width: needed to build windows around reflections")
        labels = np.asarray(peaks["reflection"].values).astype(str)
        d0 = np.asarray(peaks["d_spacing"].values, dtype=float)
        if unit.startswith("r_"):
            raise ValueError(
                f"peaks: reflections cannot be placed on a {unit!r} axis; give centres or windows"
            )
        centre = np.asarray(from_d_spacing(d0, unit, wavelength_a), dtype=float)
        hkl = (
            np.asarray(peaks["hkl"].values).astype(str)
            if "hkl" in peaks.coords or "hkl" in peaks
            else np.full(labels.shape, "")
        )
        phase = (
            np.asarray(peaks["phase"].values).astype(str)
            if "phase" in peaks.coords or "phase" in peaks
            else np.full(labels.shape, "")
        )
        for name in ("h", "k", "l"):
            if name in peaks.coords or name in peaks:
                extra[name] = np.asarray(peaks[name].values).astype(np.int64)
        low = centre - half_width
        high = centre + half_width
        inside = np.isfinite(centre) & (centre >= x[0]) & (centre <= x[-1])
        if not inside.all():
            warnings.warn(
                f"peaks: {int((~inside).sum())} reflection(s) outside the pattern range "
                f"[{x[0]:g}, {x[-1]:g}] {unit} dropped: {', '.join(labels[~inside][:10])}",
                UserWarning,
                stacklevel=3,
            )
    else:
        if isinstance(peaks, Mapping):
            labels = np.asarray([str(k) for k in peaks], dtype=str)
            values = [peaks[k] for k in peaks]
        else:
            if isinstance(peaks, (str, bytes)) or peaks is None:
                raise ValueError(
                    "peaks: expected a reflections Dataset, centres, a mapping or (n, 2) windows"
                )
            values = list(np.asarray(peaks, dtype=float))
            labels = None
        arr = np.asarray(values, dtype=float)
        if arr.ndim == 1:
            if half_width is None:
                raise ValueError("half_width: needed when peaks are given as centres")
            centre = arr
            low = centre - half_width
            high = centre + half_width
        elif arr.ndim == 2 and arr.shape[1] == 2:
            low, high = arr[:, 0], arr[:, 1]
            if np.any(~(high > low)):
                raise ValueError("peaks: every window must have high > low")
            centre = 0.5 * (low + high)
        else:
            raise ValueError(f"peaks: cannot interpret an array of shape {arr.shape}")
        if arr.shape[0] == 0:
            raise ValueError("peaks: no peaks given")
        if labels is None:
            labels = np.asarray([f"{c:.6g}" for c in centre], dtype=str)
        if not np.all(np.isfinite(centre)):
            raise ValueError("peaks: centres and windows must be finite")
        outside = (centre < x[0]) | (centre > x[-1])
        if outside.any():
            raise ValueError(
                f"peaks: centre(s) {centre[outside].tolist()} outside the pattern range "
                f"[{x[0]:g}, {x[-1]:g}] {unit}"
            )
        hkl = np.full(labels.shape, "")
        phase = np.full(labels.shape, "")
        d0 = np.full(labels.shape, np.nan)
        inside = np.ones(labels.shape, bool)
    if half_width is not None and not (half_width > 0):
        raise ValueError(f"half_width: must be > 0, got {half_width!r}")
    if len(set(labels.tolist())) != len(labels):
        raise ValueError("peaks: labels must be unique")

    # overlaps: another listed peak whose centre falls inside this window
    overlaps = []
    for j in range(len(labels)):
        if not inside[j]:
            overlaps.append("")
            continue
        others = [
            labels[i]
            for i in range(len(labels))
            if i != j and inside[i] and low[j] < centre[i] < high[j]
        ]
        overlaps.append(", ".join(others))
    overlaps = np.asarray(overlaps, dtype=str)
    has_overlap = (overlaps != "") & inside
    if has_overlap.any():
        text = "; ".join(f"{labels[j]} window holds {overlaps[j]}" for j in np.flatnonzero(has_overlap))
        if overlap == "raise":
            raise ValueError(f"peaks: overlapping reflections would be mis-fitted: {text}")
        if overlap == "drop":
            warnings.warn(f"peaks: overlapping reflections dropped: {text}", UserWarning, stacklevel=3)
            inside &= ~has_overlap
        else:
            warnings.warn(
                f"peaks: overlapping reflections, fitted as one Gaussian (see the 'overlaps' "
                f"coord; use overlap='drop' or narrower windows): {text}",
                UserWarning,
                stacklevel=3,
            )
    if not inside.any():
        raise ValueError("peaks: no peak left to fit inside the pattern range")
    lo = np.searchsorted(x, low, side="left").astype(np.int64)
    hi = np.searchsorted(x, high, side="right").astype(np.int64)
    out = {
        "label": labels,
        "lo": lo,
        "hi": hi,
        "center": centre,
        "low": low,
        "high": high,
        "hkl": hkl,
        "phase": phase,
        "d0": d0,
        "overlaps": overlaps,
        **extra,
    }
    return {k: np.asarray(v)[inside] for k, v in out.items()}


# --------------------------------------------------------------------------- fitting
_FIELD_NAMES = [
    "position",
    "position_error",
    "sigma",
    "sigma_error",
    "amplitude",
    "amplitude_error",
    "background",
    "background_error",
    "background_slope",
    "residual",
    "n_iter",
    "status",
    "chi2",
]


#: variables fit_peaks returns, in the order of the last axis of each block's output
_OUT_NAMES = _FIELD_NAMES[:-1] + ["fwhm", "fwhm_error", "d_spacing", "d_spacing_error"]
_UNMASKED = ("n_iter", "status")


def _fit_block(y, *, x, lo, hi, linear, warm_start, max_iter, xtol, ftol, min_snr, min_points,
               poisson=False, unit="q_nm^-1", wavelength_a=None):
    """apply_ufunc callback: y[..., nx] -> out[..., npeak, len(_OUT_NAMES)] (one dask block).

    Everything derived from the fit (FWHM, d-spacing, their errors, NaN where a fit is not
    ok) is computed here, so each output variable is a plain slice of one block: the graph
    stays small and holds no intermediates shared between variables.
    """
    shape = y.shape
    if len(shape) == 1:
        y3 = y.reshape(1, 1, shape[0])
    else:
        y3 = y.reshape(shape[0], -1, shape[-1])
    # One argument type for every caller (numba compiles one specialization per type:
    # read-only or not, float32 or float64): one compilation per process, and the same
    # machine code whether the block came from a thread, a process or a distributed worker.
    y3 = np.array(y3, dtype=np.float64, order="C")
    x = np.array(x, dtype=np.float64, order="C")
    lo = np.array(lo, dtype=np.int64, order="C")
    hi = np.array(hi, dtype=np.int64, order="C")
    raw = np.empty(y3.shape[:2] + (lo.shape[0], K.NFIELD))
    K.fit_batch(x, y3, lo, hi, linear, warm_start, max_iter, xtol, ftol, min_snr, min_points, raw,
                poisson)
    f = {name: raw[..., i] for i, name in enumerate(_FIELD_NAMES)}
    out = np.empty(raw.shape[:-1] + (len(_OUT_NAMES),))
    for i, name in enumerate(_FIELD_NAMES[:-1]):
        out[..., i] = f[name]
    out[..., _OUT_NAMES.index("fwhm")] = FWHM_FACTOR * f["sigma"]
    out[..., _OUT_NAMES.index("fwhm_error")] = FWHM_FACTOR * f["sigma_error"]
    with np.errstate(divide="ignore", invalid="ignore"):
        d = to_d_spacing(f["position"], unit, wavelength_a)
        if d is None:
            d = np.full_like(f["position"], np.nan)
            d_err = d
        else:
            d_err = _d_derivative(f["position"], d, unit, wavelength_a) * f["position_error"]
    out[..., _OUT_NAMES.index("d_spacing")] = d
    out[..., _OUT_NAMES.index("d_spacing_error")] = d_err
    bad = f["status"] != K.OK
    for i, name in enumerate(_OUT_NAMES):
        if name not in _UNMASKED:
            out[..., i][bad] = np.nan
    return out.reshape(shape[:-1] + (lo.shape[0], len(_OUT_NAMES)))


def _attrs(long_name: str, units: str, **kw) -> dict[str, Any]:
    return {"long_name": long_name, "units": units, **kw}


def fit_peaks(
    patterns: xr.DataArray,
    peaks: Any,
    *,
    half_width: float | None = None,
    background: str = "linear",
    warm_start: bool = False,
    wavelength_a: float | None = None,
    max_iter: int = 100,
    xtol: float = 1e-8,
    min_snr: float = 3.0,
    min_points: int = 7,
    overlap: str = "warn",
    weights: str | None = None,
) -> xr.Dataset:
    """Fit a Gaussian on a background to every peak window of every pattern, lazily.

    The model in each window is ``y = b0 + b1 (x - xc) + A exp(-(x - x0)^2 / (2 sigma^2))``
    fitted by least squares (Levenberg-Marquardt, analytic Jacobian, ``A >= 0``, ``x0``
    inside the window, ``sigma > 0``). A bad window never raises: its ``status`` says why
    (``ok``, ``not_converged``, ``no_peak``, ``peak_at_edge``, ``bad_input``) and its values
    are NaN. Non-finite points (masked bins) are left out of a fit; a window with fewer than
    ``min_points`` (or less than half) finite points is ``bad_input``.

    Parameters
    ----------
    patterns : xr.DataArray
        Dims ``(frame, [azimuth,] radial)`` (any other dims are looped over too) with the
        radial dim ``q``, ``two_theta``, ``r`` or ``d_star_squared`` and its unit in
        ``attrs["radial_unit"]`` (pyFAI unit string) or in the coord's ``units``. Numpy or
        dask backed; with dask each chunk of frames is one task (the radial dim is put in
        one chunk).
    peaks : xr.Dataset, sequence or mapping
        A reflections Dataset (dim ``reflection``, var ``d_spacing`` in Angstrom, coords
        ``hkl`` and ``phase``), centres in the radial unit (list, or mapping label -> centre),
        or windows (an ``(n, 2)`` array, or mapping label -> ``(low, high)``).
    half_width : float, optional
        Half width of the windows around reflections or centres, in the radial unit.
    background : {"linear", "constant"}
        Background model under each peak.
    warm_start : bool
        Start each fit from the previous frame's result (within a chunk) when that was ok,
        falling back to data-based starting values if the warm-started fit fails.
    wavelength_a : float, optional
        Wavelength in Angstrom, overriding ``patterns.attrs["wavelength_a"]``; needed for
        d-spacings (and to place reflections) on a 2theta axis.
    max_iter, xtol : int, float
        Iteration limit and step tolerance (relative to sigma for position and width).
    min_snr : float
        Fits with ``amplitude < min_snr * amplitude_error`` are ``no_peak``.
    min_points : int
        Minimum number of finite points in a window.
    overlap : {"warn", "raise", "drop"}
        What to do when another listed peak's centre lies inside a window: fit it as one
        Gaussian with a warning (the ``overlaps`` peak coord names the culprits), raise, or
        drop those peaks.
    weights : {None, "poisson"}
        ``None``: unweighted least squares. ``"poisson"``: each point weighted by
        ``1 / max(y, 1)``, the inverse variance of counts, for honest errors on counting
        data (unweighted errors on the centre are too small when the noise is largest at the
        peak). Errors are scaled by ``sqrt(chi2 / dof)`` in both cases.

    Returns
    -------
    xr.Dataset
        Dims ``(frame, [azimuth,] peak)``; variables ``position``, ``position_error``,
        ``sigma``, ``sigma_error``, ``fwhm``, ``fwhm_error``, ``amplitude``,
        ``amplitude_error``, ``background``, ``background_error``, ``background_slope``,
        ``residual``, ``n_iter``, ``status`` and ``d_spacing``, ``d_spacing_error`` (when
        the radial unit converts to d); peak coords ``label``, ``hkl``, ``phase``, ``d0``,
        ``overlaps``, window limits ``window_low``/``window_high``; the frame coords of
        ``patterns`` are carried over.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> q = np.linspace(20, 30, 1001)
    >>> y = 5 + 100 * np.exp(-((q - 25.02) ** 2) / (2 * 0.05**2))
    >>> pat = xr.DataArray(np.stack([y, y]), dims=("frame", "q"), coords={"q": q},
    ...                    attrs={"radial_unit": "q_nm^-1"})
    >>> fits = fit_peaks(pat, {"p1": 25.0}, half_width=0.3)
    >>> round(float(fits.position[0, 0]), 6), int(fits.status[0, 0])
    (25.02, 0)
    """
    if not isinstance(patterns, xr.DataArray):
        raise ValueError(f"patterns: expected an xarray.DataArray, got {type(patterns).__name__}")
    dim, unit = radial_unit_of(patterns)
    if background not in ("linear", "constant"):
        raise ValueError(f"background: must be 'linear' or 'constant', got {background!r}")
    if not (isinstance(max_iter, (int, np.integer)) and max_iter > 0):
        raise ValueError(f"max_iter: must be a positive integer, got {max_iter!r}")
    if not (xtol > 0):
        raise ValueError(f"xtol: must be > 0, got {xtol!r}")
    if not (min_snr >= 0):
        raise ValueError(f"min_snr: must be >= 0, got {min_snr!r}")
    if not (isinstance(min_points, (int, np.integer)) and min_points >= 1):
        raise ValueError(f"min_points: must be a positive integer, got {min_points!r}")
    if weights not in (None, "poisson"):
        raise ValueError(f"weights: must be None or 'poisson', got {weights!r}")
    if half_width is not None and not (np.isfinite(half_width) and half_width > 0):
        raise ValueError(f"half_width: must be a finite number > 0, got {half_width!r}")
    if wavelength_a is None:
        wavelength_a = patterns.attrs.get("wavelength_a")
    if wavelength_a is not None:
        wavelength_a = float(wavelength_a)
        if not (np.isfinite(wavelength_a) and wavelength_a > 0):
            raise ValueError(f"wavelength_a: must be > 0 Angstrom, got {wavelength_a!r}")
    if dim not in patterns.coords:
        raise ValueError(f"patterns: the radial dim {dim!r} needs a coordinate")
    x = np.asarray(patterns[dim].values, dtype=np.float64)
    if x.ndim != 1 or x.size < 3 or not np.all(np.isfinite(x)):
        raise ValueError(f"patterns: coord {dim!r} must be 1-D, finite, with >= 3 points")
    dx = np.diff(x)
    if np.all(dx < 0):
        patterns = patterns.isel({dim: slice(None, None, -1)})
        x = x[::-1].copy()
    elif not np.all(dx > 0):
        raise ValueError(f"patterns: coord {dim!r} must be strictly monotonic")
    if _needs_wavelength(unit) and _is_reflections(peaks) and wavelength_a is None:
        raise ValueError("wavelength_a: needed to place reflections on a 2theta axis")

    win = peak_windows(
        peaks, x, unit=unit, half_width=half_width, wavelength_a=wavelength_a, overlap=overlap
    )
    npk = len(win["label"])

    # frame first (the warm start runs along the first axis), radial dim in one chunk
    loop_dims = [d for d in patterns.dims if d != dim]
    if "frame" in loop_dims:
        loop_dims.remove("frame")
        loop_dims.insert(0, "frame")
    patterns = patterns.transpose(*loop_dims, dim)
    if patterns.chunks is not None:
        patterns = patterns.chunk({dim: -1})

    raw = xr.apply_ufunc(
        _fit_block,
        patterns,
        input_core_dims=[[dim]],
        output_core_dims=[["peak", "field"]],
        dask="parallelized",
        output_dtypes=[np.float64],
        dask_gufunc_kwargs={"output_sizes": {"peak": npk, "field": len(_OUT_NAMES)}},
        kwargs=dict(
            x=x,
            lo=win["lo"],
            hi=win["hi"],
            linear=background == "linear",
            warm_start=bool(warm_start),
            max_iter=int(max_iter),
            xtol=float(xtol),
            ftol=1e-12,
            min_snr=float(min_snr),
            min_points=int(min_points),
            poisson=weights == "poisson",
            unit=unit,
            wavelength_a=wavelength_a,
        ),
        keep_attrs=False,
    )
    raw = raw.drop_vars([c for c in raw.coords if dim in raw[c].dims], errors="ignore")

    def field(name):
        return raw.isel(field=_OUT_NAMES.index(name), drop=True)

    runit = _UNITS[unit][1]
    iunit = patterns.attrs.get("units", "arb. units")
    described = {
        "position": (f"peak centre ({dim})", runit),
        "position_error": ("standard error of the peak centre", runit),
        "sigma": ("Gaussian standard deviation", runit),
        "sigma_error": ("standard error of sigma", runit),
        "fwhm": ("full width at half maximum, 2 sqrt(2 ln 2) sigma", runit),
        "fwhm_error": ("standard error of the FWHM", runit),
        "amplitude": ("peak height above background", iunit),
        "amplitude_error": ("standard error of the peak height", iunit),
        "background": ("background at the peak centre", iunit),
        "background_error": ("standard error of the background at the peak centre", iunit),
        "background_slope": ("background slope", f"({iunit}) / ({runit})"),
        "residual": ("root-mean-square fit residual, sqrt(chi2 / (n - p))", iunit),
    }
    ds = xr.Dataset({name: field(name).assign_attrs(_attrs(*desc)) for name, desc in described.items()})
    ds["n_iter"] = field("n_iter").astype(np.int32).assign_attrs(
        _attrs("Levenberg-Marquardt trial steps (all attempts)", "1")
    )
    ds["status"] = field("status").astype(np.int8).assign_attrs(
        long_name="fit status",
        units="1",
        flag_values=np.arange(len(STATUS), dtype=np.int8),
        flag_meanings=STATUS_MEANINGS,
    )
    if to_d_spacing(1.0, unit, wavelength_a) is not None:
        ds["d_spacing"] = field("d_spacing").assign_attrs(_attrs("d-spacing of the peak centre", "Angstrom"))
        ds["d_spacing_error"] = field("d_spacing_error").assign_attrs(
            _attrs("standard error of the d-spacing", "Angstrom"))
    else:
        warnings.warn(
            f"fit_peaks: no d_spacing: the radial unit {unit!r} does not convert to d"
            + (" without a wavelength (pass wavelength_a)" if _needs_wavelength(unit) else ""),
            UserWarning,
            stacklevel=2,
        )

    coords = {
        "peak": ("peak", win["label"]),
        "label": ("peak", win["label"], {"long_name": "reflection label"}),
        "hkl": ("peak", win["hkl"], {"long_name": "Miller(-Bravais) indices"}),
        "phase": ("peak", win["phase"], {"long_name": "phase name"}),
        "d0": ("peak", win["d0"], _attrs("reference d-spacing of the reflection", "Angstrom")),
        "overlaps": ("peak", win["overlaps"], {"long_name": "other listed peaks inside the window"}),
        "window_low": ("peak", x[np.minimum(win["lo"], x.size - 1)], _attrs("window start", runit)),
        "window_high": ("peak", x[np.clip(win["hi"] - 1, 0, x.size - 1)], _attrs("window end", runit)),
    }
    for name in ("h", "k", "l"):
        if name in win:
            coords[name] = ("peak", win[name], {"long_name": f"Miller index {name}"})
    ds = ds.assign_coords(coords)
    from . import __version__

    ds.attrs = {
        "title": "Gaussian peak fits",
        "program": "xrdflow",
        "version": __version__,
        "model": "c0 + c1 (x - xc) + A exp(-(x - x0)^2 / (2 sigma^2))",
        "background_model": background,
        "radial_dim": dim,
        "radial_unit": unit,
        "wavelength_a": float(wavelength_a) if wavelength_a is not None else np.nan,
        "warm_start": int(bool(warm_start)),
        "max_iter": int(max_iter),
        "xtol": float(xtol),
        "min_snr": float(min_snr),
        "min_points": int(min_points),
        "half_width": float(half_width) if half_width is not None else np.nan,
        "weights": weights or "none",
    }
    for key in ("energy_kev", "source", "source_file"):
        if key in patterns.attrs and isinstance(patterns.attrs[key], (str, int, float)):
            ds.attrs[key] = patterns.attrs[key]
    return ds
