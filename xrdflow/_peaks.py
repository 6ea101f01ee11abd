"""Batch peak fitting of diffraction patterns: peak windows and fit_peaks.

``fit_peaks`` maps a numba kernel over the patterns with ``xr.apply_ufunc(dask="parallelized")``:
one task per chunk of whole frames, the kernel single-threaded inside each task. Nothing is
computed until asked. It runs in four steps: validate the options (:mod:`xrdflow.options`),
build the windows (:func:`peak_windows`), map the kernel, label the result (units from
:mod:`xrdflow.units`). The kernel is the Gaussian one of :mod:`xrdflow._kernels` for the
notebook's model (one Gaussian per window on a constant or linear background, the default
and the fastest), and the general one of :mod:`xrdflow._profile_fit` for every other shape,
joint fits, Chebyshev backgrounds and tracked windows.
"""

from __future__ import annotations

import warnings
from typing import Any, Mapping, NamedTuple

import numpy as np
import xarray as xr

from . import _kernels as K
from . import _profile_fit as PF
from . import options as O
from . import profiles as PR
from . import units as U

__all__ = [
    "STATUS",
    "STATUS_MEANINGS",
    "fit_peaks",
    "peak_windows",
    "radial_unit_of",
]

#: fit status codes (int8 ``status`` variable)
STATUS = {
    "ok": K.OK,
    "not_converged": K.NOT_CONVERGED,
    "no_peak": K.NO_PEAK,
    "peak_at_edge": K.PEAK_AT_EDGE,
    "bad_input": K.BAD_INPUT,
    "peak_absent": K.PEAK_ABSENT,
}
STATUS_MEANINGS = " ".join(sorted(STATUS, key=STATUS.get))

#: relative reduction of chi2 below which a fit has converged (kernel ``ftol``)
_FTOL = 1e-12


# --------------------------------------------------------------------------- units
def radial_unit_of(patterns: xr.DataArray) -> tuple[str, str]:
    """(radial dim name, pyFAI unit string) of a patterns DataArray.

    Taken from ``attrs["radial_unit"]`` if present, else from the radial dim name and its
    ``units`` attribute (:data:`xrdflow.units.RADIAL_UNITS`).

    >>> radial_unit_of(xr.DataArray(np.zeros(3), dims="two_theta",
    ...                             coords={"two_theta": ("two_theta", [1., 2, 3], {"units": "deg"})}))
    ('two_theta', '2th_deg')
    """
    dims = [d for d in patterns.dims if d in U.RADIAL_DIMS]
    if len(dims) != 1:
        raise ValueError(
            f"patterns: expected exactly one radial dim among {U.RADIAL_DIMS}, got dims {patterns.dims}"
        )
    dim = dims[0]
    unit = patterns.attrs.get("radial_unit")
    if unit is None:
        units = patterns[dim].attrs.get("units") if dim in patterns.coords else None
        unit = U.radial_unit_from_dim(dim, units)
        if unit is None:
            raise ValueError(
                f"patterns: cannot tell the radial unit; set attrs['radial_unit'] (pyFAI unit "
                f"string such as 'q_nm^-1' or '2th_deg') or the units of coord {dim!r}"
            )
    if unit not in U.RADIAL_UNITS:
        raise ValueError(f"patterns: radial_unit {unit!r} is not one of {sorted(U.RADIAL_UNITS)}")
    if U.RADIAL_UNITS[unit].dim != dim:
        raise ValueError(f"patterns: radial_unit {unit!r} does not match radial dim {dim!r}")
    return dim, unit


def _needs_wavelength(unit: str) -> bool:
    return unit.startswith("2th")


# --------------------------------------------------------------------------- windows
def _is_reflections(peaks: Any) -> bool:
    return isinstance(peaks, xr.Dataset) and "reflection" in peaks.dims


def _text_or_blank(peaks: xr.Dataset, name: str, n: int) -> np.ndarray:
    if name in peaks.coords or name in peaks:
        return np.asarray(peaks[name].values).astype(str)
    return np.full(n, "")


def _reflection_peaks(peaks: xr.Dataset, x: np.ndarray, unit: str, half_width: float | None,
                      wavelength_a: float | None) -> dict[str, np.ndarray]:
    """Peaks from a reflections Dataset: centres from ``d_spacing``, outside ones flagged."""
    if "d_spacing" not in peaks:
        raise ValueError("peaks: a reflections Dataset needs a 'd_spacing' variable (Angstrom)")
    if half_width is None:
        raise ValueError("half_width: needed to build windows around reflections")
    labels = np.asarray(peaks["reflection"].values).astype(str)
    d0 = np.asarray(peaks["d_spacing"].values, dtype=float)
    if unit.startswith("r_"):
        raise ValueError(f"peaks: reflections cannot be placed on a {unit!r} axis; give centres or windows")
    centre = np.asarray(U.d_to_radial(d0, unit, wavelength_a), dtype=float)
    out = {
        "label": labels,
        "center": centre,
        "low": centre - half_width,
        "high": centre + half_width,
        "hkl": _text_or_blank(peaks, "hkl", labels.size),
        "phase": _text_or_blank(peaks, "phase", labels.size),
        "d0": d0,
    }
    for name in ("h", "k", "l"):
        if name in peaks.coords or name in peaks:
            out[name] = np.asarray(peaks[name].values).astype(np.int64)
    inside = np.isfinite(centre) & (centre >= x[0]) & (centre <= x[-1])
    if not inside.all():
        warnings.warn(
            f"peaks: {int((~inside).sum())} reflection(s) outside the pattern range "
            f"[{x[0]:g}, {x[-1]:g}] {unit} dropped: {', '.join(labels[~inside][:10])}",
            UserWarning,
            stacklevel=4,
        )
    out["inside"] = inside
    return out


def _listed_peaks(peaks: Any, x: np.ndarray, unit: str,
                  half_width: float | None) -> dict[str, np.ndarray]:
    """Peaks given as centres or windows (a sequence, an (n, 2) array or a mapping)."""
    if isinstance(peaks, Mapping):
        labels = np.asarray([str(k) for k in peaks], dtype=str)
        values = [peaks[k] for k in peaks]
    else:
        if isinstance(peaks, (str, bytes)) or peaks is None:
            raise ValueError("peaks: expected a reflections Dataset, centres, a mapping or (n, 2) windows")
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
    blank = np.full(labels.shape, "")
    return {"label": labels, "center": centre, "low": low, "high": high, "hkl": blank, "phase": blank,
            "d0": np.full(labels.shape, np.nan), "inside": np.ones(labels.shape, bool)}


def _overlaps(labels, centre, low, high, inside) -> np.ndarray:
    """For each window: the labels of the other (inside) peaks whose centre lies in it."""
    overlaps = []
    for j in range(len(labels)):
        if not inside[j]:
            overlaps.append("")
            continue
        others = [labels[i] for i in range(len(labels))
                  if i != j and inside[i] and low[j] < centre[i] < high[j]]
        overlaps.append(", ".join(others))
    return np.asarray(overlaps, dtype=str)


def _apply_overlap_policy(labels, overlaps, inside, overlap: str) -> None:
    """Warn, raise or drop (``inside`` updated in place) where windows hold other peaks."""
    has_overlap = (overlaps != "") & inside
    if not has_overlap.any():
        return
    text = "; ".join(f"{labels[j]} window holds {overlaps[j]}" for j in np.flatnonzero(has_overlap))
    if overlap == "joint":
        return  # fitted together (fit_peaks' joint groups)
    if overlap == "raise":
        raise ValueError(f"peaks: overlapping reflections would be mis-fitted: {text}")
    if overlap == "drop":
        warnings.warn(f"peaks: overlapping reflections dropped: {text}", UserWarning, stacklevel=4)
        inside &= ~has_overlap
    else:
        warnings.warn(
            f"peaks: overlapping reflections, fitted as one peak (see the 'overlaps' "
            f"coord; use overlap='joint', overlap='drop' or narrower windows): {text}",
            UserWarning,
            stacklevel=4,
        )


def peak_windows(
    peaks: Any,
    x: np.ndarray,
    *,
    unit: str,
    half_width: float | None = None,
    wavelength_a: float | None = None,
    overlap: str = O.DEFAULT_OVERLAP,
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

    >>> win = peak_windows({"a": 2.0}, np.linspace(1, 3, 21), unit="q_nm^-1", half_width=0.25)
    >>> win["lo"], win["hi"], win["label"]
    (array([8]), array([13]), array(['a'], dtype='<U1'))
    """
    O.choice(overlap, "overlap", O.OVERLAP_POLICIES)
    if _is_reflections(peaks):
        found = _reflection_peaks(peaks, x, unit, half_width, wavelength_a)
    else:
        found = _listed_peaks(peaks, x, unit, half_width)
    if half_width is not None and not (half_width > 0):
        raise ValueError(f"half_width: must be > 0, got {half_width!r}")
    labels, inside = found.pop("label"), found.pop("inside")
    if len(set(labels.tolist())) != len(labels):
        raise ValueError("peaks: labels must be unique")
    overlaps = _overlaps(labels, found["center"], found["low"], found["high"], inside)
    _apply_overlap_policy(labels, overlaps, inside, overlap)
    if not inside.any():
        raise ValueError("peaks: no peak left to fit inside the pattern range")
    out = {
        "label": labels,
        "lo": np.searchsorted(x, found["low"], side="left").astype(np.int64),
        "hi": np.searchsorted(x, found["high"], side="right").astype(np.int64),
        **{k: found.pop(k) for k in ("center", "low", "high", "hkl", "phase", "d0")},
        "overlaps": overlaps,
        **found,  # h, k, l when known
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
    "cov_amplitude_sigma",
]


#: variables fit_peaks returns, in the order of the last axis of each block's output
_OUT_NAMES = _FIELD_NAMES[:-2] + ["fwhm", "fwhm_error", "d_spacing", "d_spacing_error", "area", "area_error",
                                  "integral_breadth", "integral_breadth_error"]
_SQRT_2PI = float(np.sqrt(2.0 * np.pi))
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
    for i, name in enumerate(_FIELD_NAMES[:-2]):
        out[..., i] = f[name]
    out[..., _OUT_NAMES.index("fwhm")] = U.FWHM_FACTOR * f["sigma"]
    out[..., _OUT_NAMES.index("fwhm_error")] = U.FWHM_FACTOR * f["sigma_error"]
    with np.errstate(divide="ignore", invalid="ignore"):
        d = U.radial_to_d(f["position"], unit, wavelength_a)
        if d is None:
            d = np.full_like(f["position"], np.nan)
            d_err = d
        else:
            d_err = U.radial_d_derivative(f["position"], d, unit) * f["position_error"]
    out[..., _OUT_NAMES.index("d_spacing")] = d
    out[..., _OUT_NAMES.index("d_spacing_error")] = d_err
    # area = A sigma sqrt(2 pi), its error with the covariance of A and sigma
    amp, sig = f["amplitude"], f["sigma"]
    out[..., _OUT_NAMES.index("area")] = _SQRT_2PI * amp * sig
    var_area = (sig * f["amplitude_error"]) ** 2 + (amp * f["sigma_error"]) ** 2 \
        + 2.0 * amp * sig * f["cov_amplitude_sigma"]
    out[..., _OUT_NAMES.index("area_error")] = _SQRT_2PI * np.sqrt(np.maximum(var_area, 0.0))
    out[..., _OUT_NAMES.index("integral_breadth")] = _SQRT_2PI * sig
    out[..., _OUT_NAMES.index("integral_breadth_error")] = _SQRT_2PI * f["sigma_error"]
    bad = f["status"] != K.OK
    for i, name in enumerate(_OUT_NAMES):
        if name not in _UNMASKED:
            out[..., i][bad] = np.nan
    return out.reshape(shape[:-1] + (lo.shape[0], len(_OUT_NAMES)))


class _FitOptions(NamedTuple):
    """fit_peaks' options, validated."""

    half_width: float | None
    background: str  #: canonical name: constant, linear, chebyshevN
    nbg: int  #: number of background coefficients
    shape: str
    share: tuple
    link: str | None
    track: bool
    track_every: int | None
    warm_start: bool
    wavelength_a: float | None
    max_iter: int
    xtol: float
    min_snr: float
    min_points: int
    overlap: str
    error_model: str | None
    ftol: float = _FTOL

    @property
    def general(self) -> bool:
        """Needs the general kernel (anything but Gaussians on a constant or linear line)."""
        return (self.shape != "gaussian" or self.nbg > 2 or self.overlap == "joint" or self.track
                or self.link is not None)


def _error_model(error_model: str | None, weights: str | None) -> str | None:
    """The error model, from ``error_model`` or its deprecated alias ``weights``."""
    if weights is None:
        return O.optional_choice(error_model, "error_model", O.ERROR_MODELS)
    warnings.warn("fit_peaks: 'weights' is deprecated; use 'error_model' instead", DeprecationWarning,
                  stacklevel=4)
    if error_model is not None:
        raise ValueError("error_model: give error_model or its deprecated alias weights, not both")
    return O.optional_choice(weights, "weights", O.ERROR_MODELS)


def _validate(patterns: xr.DataArray, *, half_width, background, warm_start, wavelength_a, max_iter,
              xtol, min_snr, min_points, overlap, error_model, weights, shape="gaussian", share=None,
              link=None, track=False, track_every=None) -> _FitOptions:
    """Check every option eagerly (before a graph is built); ValueError names the parameter."""
    if not isinstance(patterns, xr.DataArray):
        raise ValueError(f"patterns: expected an xarray.DataArray, got {type(patterns).__name__}")
    if half_width is not None:
        half_width = O.positive(half_width, "half_width")
    if wavelength_a is None:
        wavelength_a = patterns.attrs.get("wavelength_a")
    if wavelength_a is not None:
        wavelength_a = O.positive(float(wavelength_a), "wavelength_a")
    shape = O.choice(shape, "shape", O.SHAPES)
    background, nbg = O.background(background)
    if link is not None:
        link = O.choice(link, "link", O.LINKS)
    if track_every is not None:
        track_every = O.positive_int(track_every, "track_every")
    elif track:
        track_every = max(1, min(10, patterns.sizes.get("frame", 1) // 20))
    if track and "frame" not in patterns.dims:
        raise ValueError("track: needs patterns with a 'frame' dim (the windows follow the peaks along it)")
    return _FitOptions(
        half_width=half_width,
        background=background,
        nbg=nbg,
        shape=shape,
        share=O.share(share, shape),
        link=link,
        track=bool(track),
        track_every=track_every if track else None,
        warm_start=bool(warm_start),
        wavelength_a=wavelength_a,
        max_iter=O.positive_int(max_iter, "max_iter"),
        xtol=O.positive(xtol, "xtol"),
        min_snr=O.positive(min_snr, "min_snr", allow_zero=True),
        min_points=O.positive_int(min_points, "min_points"),
        overlap=O.choice(overlap, "overlap", O.OVERLAP_POLICIES),
        error_model=_error_model(error_model, weights),
    )


def _radial_axis(patterns: xr.DataArray, dim: str) -> tuple[xr.DataArray, np.ndarray]:
    """(patterns, x) with the radial coordinate ``x`` increasing (patterns flipped if needed)."""
    if dim not in patterns.coords:
        raise ValueError(f"patterns: the radial dim {dim!r} needs a coordinate")
    x = np.asarray(patterns[dim].values, dtype=np.float64)
    if x.ndim != 1 or x.size < 3 or not np.all(np.isfinite(x)):
        raise ValueError(f"patterns: coord {dim!r} must be 1-D, finite, with >= 3 points")
    dx = np.diff(x)
    if np.all(dx < 0):
        return patterns.isel({dim: slice(None, None, -1)}), x[::-1].copy()
    if not np.all(dx > 0):
        raise ValueError(f"patterns: coord {dim!r} must be strictly monotonic")
    return patterns, x


def _map_kernel(patterns: xr.DataArray, dim: str, unit: str, x: np.ndarray, win: dict,
                opts: _FitOptions) -> xr.DataArray:
    """The lazy kernel map: DataArray (loop dims..., peak, field) of :data:`_OUT_NAMES`."""
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
        dask_gufunc_kwargs={"output_sizes": {"peak": len(win["label"]), "field": len(_OUT_NAMES)}},
        kwargs=dict(
            x=x,
            lo=win["lo"],
            hi=win["hi"],
            linear=opts.nbg == 2,
            warm_start=opts.warm_start,
            max_iter=opts.max_iter,
            xtol=opts.xtol,
            ftol=_FTOL,
            min_snr=opts.min_snr,
            min_points=opts.min_points,
            poisson=opts.error_model == "poisson",
            unit=unit,
            wavelength_a=opts.wavelength_a,
        ),
        keep_attrs=False,
    )
    return raw.drop_vars([c for c in raw.coords if dim in raw[c].dims], errors="ignore")


def _shape_variables(opts: _FitOptions) -> tuple[str, ...]:
    """The variables of a fit besides the ones every shape has."""
    names = PR.SHAPE_PARAMETERS[opts.shape]
    if opts.shape == "gaussian":
        names = ("sigma",) + names
    if opts.link is not None:
        names = names + ("d_ratio",)
    return names


def _fit_variables(raw: xr.DataArray, names: list[str], dim: str, unit: str, iunit: str,
                   opts: _FitOptions) -> xr.Dataset:
    """The labelled fit variables (units and long names) from the kernel map's fields."""

    def field(name):
        return raw.isel(field=names.index(name), drop=True)

    runit = U.RADIAL_UNITS[unit].units
    described = {
        "position": (f"peak centre ({dim})", runit),
        "position_error": ("standard error of the peak centre", runit),
        "fwhm": ("full width at half maximum" + (", 2 sqrt(2 ln 2) sigma" if opts.shape == "gaussian" else ""),
                 runit),
        "fwhm_error": ("standard error of the FWHM", runit),
        "amplitude": ("peak height above background", iunit),
        "amplitude_error": ("standard error of the peak height", iunit),
        "area": ("integrated intensity of the peak (above background)", f"({iunit}) ({runit})"),
        "area_error": ("standard error of the integrated intensity", f"({iunit}) ({runit})"),
        "integral_breadth": ("integral breadth, area / amplitude", runit),
        "integral_breadth_error": ("standard error of the integral breadth", runit),
    }
    optional = {
        "sigma": ("Gaussian standard deviation", runit),
        "eta": ("pseudo-Voigt Lorentzian fraction eta", U.DIMENSIONLESS),
        "m": ("Pearson VII exponent m (1: Lorentzian, large: Gaussian)", U.DIMENSIONLESS),
        "asymmetry": ("split profile asymmetry (right - left) / (right + left) half widths", U.DIMENSIONLESS),
        "d_ratio": ("d / d0 of the peak's phase in its joint group (link='strain')", U.DIMENSIONLESS),
    }
    for name in _shape_variables(opts):
        long_name, units = optional[name]
        described[name] = (long_name, units)
        described[name + "_error"] = (f"standard error of {name}", units)
    described |= {
        "background": ("background at the peak centre", iunit),
        "background_error": ("standard error of the background at the peak centre", iunit),
        "background_slope": ("background slope at the peak centre", f"({iunit}) / ({runit})"),
        "residual": ("root-mean-square fit residual, sqrt(chi2 / (n - p))", iunit),
    }
    ds = xr.Dataset({name: field(name).assign_attrs(U.attrs(*desc)) for name, desc in described.items()})
    ds["n_iter"] = field("n_iter").astype(np.int32).assign_attrs(
        U.attrs("Levenberg-Marquardt trial steps (all attempts)", U.DIMENSIONLESS)
    )
    ds["status"] = field("status").astype(np.int8).assign_attrs(
        U.attrs("fit status", U.DIMENSIONLESS, flag_values=np.arange(len(STATUS), dtype=np.int8),
                flag_meanings=STATUS_MEANINGS)
    )
    if U.radial_to_d(1.0, unit, opts.wavelength_a) is not None:
        ds["d_spacing"] = field("d_spacing").assign_attrs(U.attrs("d-spacing of the peak centre", U.ANGSTROM))
        ds["d_spacing_error"] = field("d_spacing_error").assign_attrs(
            U.attrs("standard error of the d-spacing", U.ANGSTROM))
    else:
        warnings.warn(
            f"fit_peaks: no d_spacing: the radial unit {unit!r} does not convert to d"
            + (" without a wavelength (pass wavelength_a)" if _needs_wavelength(unit) else ""),
            UserWarning,
            stacklevel=3,
        )
    return ds


def _peak_coords(win: dict, x: np.ndarray, runit: str) -> dict[str, tuple]:
    """Coords along ``peak``: labels, Miller indices, phase, d0, overlaps, window limits."""
    coords = {
        "peak": ("peak", win["label"]),
        "label": ("peak", win["label"], {"long_name": "reflection label"}),
        "hkl": ("peak", win["hkl"], {"long_name": "Miller(-Bravais) indices"}),
        "phase": ("peak", win["phase"], {"long_name": "phase name"}),
        "d0": ("peak", win["d0"], U.attrs("reference d-spacing of the reflection", U.ANGSTROM)),
        "overlaps": ("peak", win["overlaps"], {"long_name": "other listed peaks inside the window"}),
        "window_low": ("peak", x[np.minimum(win["lo"], x.size - 1)], U.attrs("window start", runit)),
        "window_high": ("peak", x[np.clip(win["hi"] - 1, 0, x.size - 1)], U.attrs("window end", runit)),
    }
    for name in ("h", "k", "l"):
        if name in win:
            coords[name] = ("peak", win[name], {"long_name": f"Miller index {name}"})
    return coords


def _provenance(opts: _FitOptions, dim: str, unit: str, patterns: xr.DataArray) -> dict[str, Any]:
    """The Dataset attrs: program, model and every option of the fit."""
    from . import __version__

    error_model = opts.error_model or "none"
    if opts.general:
        model = ("sum_k c_k T_k(u) + sum_i A_i P_i((x - x0_i) / fwhm_i), u = (2 x - x_lo - x_hi) / "
                 f"(x_hi - x_lo), P = {opts.shape} (xrdflow.profiles)")
    else:
        model = "c0 + c1 (x - xc) + A exp(-(x - x0)^2 / (2 sigma^2))"
    attrs = {
        "title": ("Gaussian" if opts.shape == "gaussian" else opts.shape.replace("_", "-")) + " peak fits",
        "program": "xrdflow",
        "version": __version__,
        "model": model,
        "shape": opts.shape,
        "kernel": "profile" if opts.general else "gaussian",
        "background_model": opts.background,
        "overlap": opts.overlap,
        "share": ",".join(opts.share),
        "link": opts.link or "none",
        "track": int(opts.track),
        "track_every": opts.track_every or 0,
        "radial_dim": dim,
        "radial_unit": unit,
        "wavelength_a": opts.wavelength_a if opts.wavelength_a is not None else np.nan,
        "warm_start": int(opts.warm_start),
        "max_iter": opts.max_iter,
        "xtol": opts.xtol,
        "min_snr": opts.min_snr,
        "min_points": opts.min_points,
        "half_width": opts.half_width if opts.half_width is not None else np.nan,
        "weights": error_model,  # the name before error_model, kept for readers of old files
        "error_model": error_model,
    }
    for key in ("energy_kev", "source", "source_file"):
        if key in patterns.attrs and isinstance(patterns.attrs[key], (str, int, float)):
            attrs[key] = patterns.attrs[key]
    return attrs


def fit_peaks(
    patterns: xr.DataArray,
    peaks: Any,
    *,
    half_width: float | None = None,
    background: str = O.DEFAULT_BACKGROUND,
    warm_start: bool = False,
    wavelength_a: float | None = None,
    max_iter: int = O.DEFAULT_MAX_ITER,
    xtol: float = O.DEFAULT_XTOL,
    min_snr: float = O.DEFAULT_MIN_SNR,
    min_points: int = O.DEFAULT_MIN_POINTS,
    overlap: str = O.DEFAULT_OVERLAP,
    error_model: str | None = None,
    weights: str | None = None,
    shape: str = O.DEFAULT_SHAPE,
    share: Any = None,
    link: str | None = None,
    track: bool = False,
    track_every: int | None = None,
) -> xr.Dataset:
    """Fit a peak on a background to every peak window of every pattern, lazily.

    The default model in each window is the notebook's, ``y = b0 + b1 (x - xc) + A exp(-(x -
    x0)^2 / (2 sigma^2))``; ``shape`` picks another profile (:mod:`xrdflow.profiles`: every
    shape in its height ``amplitude`` and full width ``fwhm``), ``background`` a Chebyshev
    polynomial, ``overlap="joint"`` one fit of overlapping peaks on one background. Fitted by
    least squares (Levenberg-Marquardt, analytic Jacobian, ``A >= 0``, ``x0`` inside the
    window, the width between a tenth of a bin and the window). A bad window never raises:
    its ``status`` says why (``ok``, ``not_converged``, ``no_peak``, ``peak_at_edge``,
    ``bad_input``, ``peak_absent``) and its values are NaN. Non-finite points (masked bins)
    are left out of a fit; a window with fewer than ``min_points`` (or less than half)
    finite points is ``bad_input``.

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
    background : {"linear", "constant"}, ("chebyshev", n) or "chebyshevN"
        Background model under each peak (or joint group): Chebyshev polynomials of order
        ``n`` <= 4 in the window's reduced coordinate; constant and linear are orders 0 and 1.
    shape : {"gaussian", "lorentzian", "pseudo_voigt", "pearson7", "split_pseudo_voigt"}
        Peak profile. Every shape reports ``position``, ``fwhm``, ``amplitude`` (height),
        ``area`` (integrated intensity), ``integral_breadth`` and its own parameters
        (``eta`` for the pseudo-Voigts, ``m`` for Pearson VII, ``asymmetry`` for the split
        pseudo-Voigt; ``sigma`` for the Gaussian), each with its ``_error``.
    share : str or sequence of str, optional
        Parameters shared by the peaks of a joint group: ``"fwhm"``, ``"eta"``, ``"m"``,
        ``"asymmetry"`` (those the shape has).
    link : {None, "strain"}
        ``"strain"``: the positions of the peaks of one phase in a group are tied by one
        ratio ``d / d0`` (the variable ``d_ratio``), their reference positions being the
        window centres (from the reflections' d0). Needs a radial unit that converts to d.
    track : bool
        Windows follow peaks that drift across the run (see :mod:`xrdflow._profile_fit`):
        every ``track_every``-th frame is fitted first, its positions interpolated over the
        frames re-centre each frame's windows. Needs a ``frame`` dim.
    track_every : int, optional
        Frame step of tracking's first pass (default: ``n_frames // 20``, between 1 and 10).
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
    overlap : {"warn", "raise", "drop", "joint"}
        What to do when another listed peak's centre lies inside a window: fit it as one
        peak with a warning (the ``overlaps`` peak coord names the culprits), raise, drop
        those peaks, or fit every group of peaks whose windows overlap jointly, on one
        background over the union of their windows (the ``group`` peak coord). A peak of a
        group that the fit finds absent is ``peak_absent`` (NaN) and the others are fitted
        again without it.
    error_model : {None, "poisson"}
        ``None``: unweighted least squares. ``"poisson"``: each point weighted by
        ``1 / max(y, 1)``, the inverse variance of counts, for honest errors on counting
        data (unweighted errors on the centre are too small when the noise is largest at the
        peak). Errors are scaled by ``sqrt(chi2 / dof)`` in both cases.
    weights : {None, "poisson"}
        Deprecated alias of ``error_model`` (same effect, with a DeprecationWarning).

    Returns
    -------
    xr.Dataset
        Dims ``(frame, [azimuth,] peak)``; variables ``position``, ``fwhm``, ``amplitude``,
        ``area``, ``integral_breadth``, the shape's parameters (``sigma`` for the Gaussian,
        ``eta``, ``m``, ``asymmetry``), ``d_ratio`` (``link="strain"``), each with its
        ``_error``; ``background``, ``background_error``, ``background_slope``,
        ``residual``, ``n_iter``, ``status`` and ``d_spacing``, ``d_spacing_error`` (when
        the radial unit converts to d); peak coords ``label``, ``hkl``, ``phase``, ``d0``,
        ``overlaps``, window limits ``window_low``/``window_high`` (and ``group`` for the
        general kernel); the frame coords of ``patterns`` are carried over; the options in
        the attrs (``shape``, ``kernel``, ``background_model``, ``overlap``, ``share``,
        ``link``, ``track``, ``error_model``...).

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
    opts = _validate(patterns, half_width=half_width, background=background, warm_start=warm_start,
                     wavelength_a=wavelength_a, max_iter=max_iter, xtol=xtol, min_snr=min_snr,
                     min_points=min_points, overlap=overlap, error_model=error_model, weights=weights,
                     shape=shape, share=share, link=link, track=track, track_every=track_every)
    dim, unit = radial_unit_of(patterns)
    patterns, x = _radial_axis(patterns, dim)
    if _needs_wavelength(unit) and _is_reflections(peaks) and opts.wavelength_a is None:
        raise ValueError("wavelength_a: needed to place reflections on a 2theta axis")
    win = peak_windows(peaks, x, unit=unit, half_width=opts.half_width, wavelength_a=opts.wavelength_a,
                       overlap=opts.overlap)
    iunit = patterns.attrs.get("units", U.INTENSITY)
    if opts.general:
        grp = PF.groups(win, opts.overlap == "joint")
        if opts.link is not None:
            PF.link_of(unit, opts.link)  # the unit error now, not in a task
        raw = PF.map_fits(patterns, dim, unit, x, win, opts, grp)
        ds = _fit_variables(raw, PF.OUT_NAMES, dim, unit, iunit, opts)
    else:
        grp = None
        raw = _map_kernel(patterns, dim, unit, x, win, opts)
        ds = _fit_variables(raw, _OUT_NAMES, dim, unit, iunit, opts)
    ds = ds.assign_coords(_peak_coords(win, x, U.RADIAL_UNITS[unit].units))
    if grp is not None:
        ds = ds.assign_coords(group=("peak", grp["group"], {"long_name": "joint fit group of the peak"}))
    ds.attrs = _provenance(opts, dim, unit, patterns)
    return ds
