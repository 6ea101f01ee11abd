"""Figures of a reduced run: patterns against frame, fit overlays, d-spacing, lattice
strain and FWHM against applied strain, and the strain tensor components against it.

All functions build a :class:`matplotlib.figure.Figure` with the object API (no pyplot
global state, safe in workers and headless) and return it; :func:`save` writes PNG and PDF.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np

from ..units import INTENSITY

__all__ = ["patterns_map", "fit_overlay", "strain_curves", "tensor_curves", "save"]


def _figure(**kwargs):
    from matplotlib.figure import Figure

    return Figure(layout="constrained", **kwargs)


def _radial(patterns):
    dim = patterns.dims[-1]
    coord = patterns[dim]
    units = coord.attrs.get("units", "")
    return dim, coord.values, f"{coord.attrs.get('long_name', dim)} ({units})" if units else dim


def _strain_axis(obj):
    """Applied strain where the run has it (in %), else the frame number."""
    if "applied_strain" in obj.coords:
        return np.asarray(obj["applied_strain"].values, float) * 100, "applied strain (%)"
    return np.asarray(obj["frame"].values), "frame"


def patterns_map(patterns, *, azimuth=None, log_scale: bool = True):
    """Integrated intensity against frame (rows) and radial position (columns), as a heat map.

    ``azimuth`` picks one sector of a (frame, azimuth, radial) array (by index); by
    default the sectors are averaged.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> q = xr.Variable("q", np.linspace(21, 27, 50), {"units": "1/nm", "long_name": "q"})
    >>> pat = xr.DataArray(np.ones((3, 50)), dims=("frame", "q"), coords={"q": q})
    >>> fig = patterns_map(pat)
    >>> fig.axes[0].get_xlabel(), fig.axes[0].get_ylabel()
    ('q (1/nm)', 'frame')
    """
    from matplotlib.colors import LogNorm

    pat = patterns
    if "azimuth" in pat.dims:
        pat = pat.isel(azimuth=azimuth) if azimuth is not None else pat.mean("azimuth")
    values = np.asarray(pat.values, float)
    dim, x, xlabel = _radial(pat)
    y, ylabel = _strain_axis(pat)
    fig = _figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    positive = values[np.isfinite(values) & (values > 0)]
    norm = LogNorm(vmin=max(positive.min(), np.percentile(positive, 1)), vmax=positive.max()) \
        if log_scale and positive.size else None
    mesh = ax.pcolormesh(x, y, values, shading="nearest", norm=norm, cmap="viridis", rasterized=True)
    fig.colorbar(mesh, ax=ax, label=f"intensity ({pat.attrs.get('units', INTENSITY)})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title("integrated patterns")
    return fig


def _profile(fit, x, shape):
    from ..profiles import SHAPE_PARAMETERS, peak

    extra = {name: float(fit[name]) for name in SHAPE_PARAMETERS[shape]}
    return peak(x, float(fit["amplitude"]), float(fit["position"]), float(fit["fwhm"]), shape, **extra)


def _model(fit, x, shape="gaussian", group=None):
    """The fitted model near a peak: its background line at the centre (the tangent of a
    Chebyshev background) plus its profile and, in a joint fit, those of its group's others."""
    pos = float(fit["position"])
    slope = float(fit["background_slope"]) if "background_slope" in fit else 0.0
    slope = 0.0 if not np.isfinite(slope) else slope
    y = float(fit["background"]) + slope * (x - pos)
    peaks = [fit] if group is None else [group.isel(peak=k) for k in range(group.sizes["peak"])]
    for one in peaks:
        if int(one["status"]) == 0:
            y = y + _profile(one, x, shape)
    return y


def fit_overlay(patterns, fits, *, frames: Iterable[int] | None = None, azimuth: int | None = None):
    """Data and fitted model in each peak window for a few frames (default first and last).

    This is the notebook's comparison of frame 1 with frame 60: under load the peak moves
    and broadens. ``frames`` are positions along the frame dimension.
    """
    pat, fit = patterns, fits
    if "azimuth" in pat.dims:
        pat = pat.isel(azimuth=azimuth or 0)
        fit = fit.isel(azimuth=azimuth or 0)
    n = pat.sizes["frame"]
    frames = list(frames) if frames is not None else sorted({0, n - 1})
    peaks = list(fit["peak"].values)
    dim, x, xlabel = _radial(pat)
    fig = _figure(figsize=(3.4 * len(peaks), 3.6))
    axes = fig.subplots(1, len(peaks), squeeze=False)[0]
    colors = ["tab:blue", "tab:red", "tab:green", "tab:purple"]
    for ax, label in zip(axes, peaks):
        one = fit.sel(peak=label)
        lo, hi = float(one["window_low"]), float(one["window_high"])
        sel = (x >= lo) & (x <= hi)
        fine = np.linspace(lo, hi, 400)
        for k, i in enumerate(frames):
            color = colors[k % len(colors)]
            tag = f"frame {pat['frame'].values[i]}"
            if "applied_strain" in pat.coords:
                tag += f" ({100 * float(pat['applied_strain'][i]):.1f}%)"
            ax.plot(x[sel], np.asarray(pat.isel(frame=i).values)[sel], ".", ms=3, color=color, label=tag)
            fi = one.isel(frame=i)
            if int(fi["status"]) == 0:
                group = None
                if "group" in fit.coords:
                    group = fit.isel(frame=i).where(fit["group"] == one["group"], drop=True)
                ax.plot(fine, _model(fi, fine, fit.attrs.get("shape", "gaussian"), group), "-", lw=1.2,
                        color=color)
        ax.set_title(str(label))
        ax.set_xlabel(xlabel)
    axes[0].set_ylabel(f"intensity ({pat.attrs.get('units', INTENSITY)})")
    axes[0].legend(fontsize="small", loc="upper right")  # peaks move to lower q under load
    return fig


_SHORT = {"d_spacing": "d-spacing", "lattice_strain": "lattice strain", "fwhm": "FWHM",
          "position": "peak position"}


def strain_curves(result, *, variables=("d_spacing", "lattice_strain", "fwhm")):
    """d-spacing, lattice strain and FWHM against applied strain, per peak (and sector)."""
    variables = [v for v in variables if v in result]
    fig = _figure(figsize=(4.2 * len(variables), 3.8))
    axes = fig.subplots(1, len(variables), squeeze=False)[0]
    x, xlabel = _strain_axis(result)
    sectors = [None]
    if "azimuth" in result.dims:
        names = result["sector"].values if "sector" in result.coords else result["azimuth"].values
        sectors = list(range(result.sizes["azimuth"]))
        if len(sectors) > 4:  # many equal sectors: show the one nearest 0 and 90 deg
            az = np.asarray(result["azimuth"].values, float)
            sectors = sorted({int(np.argmin(np.abs(((az - a + 180) % 360) - 180))) for a in (0.0, 90.0)})
    markers = ["o", "s", "^", "v", "D"]
    for ax, var in zip(axes, variables):
        for p, label in enumerate(result["peak"].values):
            for s_i, s in enumerate(sectors):
                sub = result[var].sel(peak=label)
                tag = str(label)
                if s is not None:
                    sub = sub.isel(azimuth=s)
                    tag += f" {names[s]}" if "sector" in result.coords else f" {float(names[s]):.0f} deg"
                y = np.asarray(sub.values, float) * (100 if var == "lattice_strain" else 1)
                ax.plot(x, y, marker=markers[s_i % len(markers)], ms=3, lw=1, color=f"C{p}",
                        ls="-" if s_i == 0 else "--", label=tag)
        units = result[var].attrs.get("units", "")
        name = _SHORT.get(var, result[var].attrs.get("long_name", var))
        ax.set_ylabel(f"{name} (%)" if var == "lattice_strain" else (f"{name} ({units})" if units else name))
        ax.set_xlabel(xlabel)
    axes[0].legend(fontsize="x-small")
    return fig


_COMPONENTS = {"strain_axial": "axial strain E11", "strain_transverse": "transverse strain E22",
               "strain_shear": "shear strain E12", "stress_axial": "axial stress"}


def tensor_curves(tensor, *, components=("strain_axial", "strain_transverse", "strain_shear")):
    """Each strain-tensor component against applied strain, one line per hkl, with error bars.

    ``tensor`` is :func:`xrdflow.strain_tensor` output (frame, peak); strains are shown in
    microstrain (1e-6), ``stress_axial`` (when asked for) in MPa. Points whose fit is not
    ok are NaN and left out.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> v = (("frame", "peak"), np.ones((3, 2)) * 1e-3)
    >>> t = xr.Dataset({n: v for n in ("strain_axial", "strain_axial_error")},
    ...                coords={"peak": ["Mg 10-10", "Mg 0002"], "applied_strain": ("frame", [0, .01, .02])})
    >>> fig = tensor_curves(t, components=["strain_axial"])
    >>> fig.axes[0].get_ylabel(), len(fig.axes[0].containers)
    ('axial strain E11 (microstrain)', 2)
    """
    components = [c for c in components if c in tensor]
    if not components:
        raise ValueError("components: none of them is in the tensor Dataset")
    fig = _figure(figsize=(4.2 * len(components), 3.8))
    axes = fig.subplots(1, len(components), squeeze=False)[0]
    x, xlabel = _strain_axis(tensor)
    markers = ["o", "s", "^", "v", "D", "<", ">", "p"]
    for ax, var in zip(axes, components):
        scale, unit = (1.0, "MPa") if var.startswith("stress") else (1e6, "microstrain")
        for p, label in enumerate(tensor["peak"].values):
            y = np.asarray(tensor[var].sel(peak=label).values, float) * scale
            err = tensor.get(var + "_error")
            e = None if err is None else np.asarray(err.sel(peak=label).values, float) * scale
            ax.errorbar(x, y, yerr=e, marker=markers[p % len(markers)], ms=3, lw=1, capsize=2,
                        color=f"C{p}", label=str(label))
        ax.axhline(0.0, color="0.7", lw=0.5)
        ax.set_ylabel(f"{_COMPONENTS.get(var, var)} ({unit})")
        ax.set_xlabel(xlabel)
    axes[0].legend(fontsize="x-small", title=tensor.attrs.get("strain_model"))
    return fig


def save(fig, path: str | os.PathLike, *, formats=("png", "pdf"), dpi: int = 150) -> list[Path]:
    """Write ``fig`` as ``path`` with each suffix in ``formats``; returns the files written.

    Each file is written under a temporary name and renamed, so a killed run never leaves a
    half-written figure under its final name.
    """
    from ..nexus import atomic_output

    path = Path(path)
    out = []
    for fmt in formats:
        target = path.with_suffix(f".{fmt}")
        with atomic_output(target, lock=False) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi)
        out.append(target)
    return out
