"""Figures of a geometry sweep (:func:`xrdflow.sweep`): 2theta and transmission vs energy.

matplotlib object API only (``matplotlib.figure.Figure``, no pyplot state), so the figures
work headless and in threads. Save with ``fig.savefig("name.pdf")``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import xarray as xr

from ..options import positive_int

__all__ = ["plot_two_theta", "plot_transmission"]


def _figure(fig, size=(7.0, 4.5)):
    from matplotlib.figure import Figure

    if fig is None:
        fig = Figure(figsize=size, layout="constrained")
    if fig.axes:
        raise ValueError("fig: pass an empty Figure (or none)")
    return fig


def plot_two_theta(
    ds: xr.Dataset,
    *,
    reflections: Sequence[str] | None = None,
    max_reflections: int = 12,
    two_theta_range: tuple[float, float] | None = None,
    fig=None,
):
    """2theta against energy, one line per reflection, the instrument's range shaded.

    Parameters
    ----------
    ds
        A dataset from :func:`xrdflow.sweep`.
    reflections
        Labels to draw; default the ``max_reflections`` strongest (by their largest
        relative intensity over the sweep).
    two_theta_range
        The instrument's range to shade; default the sweep's ``two_theta_range`` attribute.
    fig
        An empty :class:`matplotlib.figure.Figure` to draw into; default a new one.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np, xrdflow
    >>> ds = xrdflow.sweep("Mg", energy_kev=np.linspace(30, 90, 31), two_theta_range=(2, 10))
    >>> fig = plot_two_theta(ds, max_reflections=5)
    >>> [t.get_text() for t in fig.axes[0].get_legend().get_texts()][:2]
    ['Mg 10-10', 'Mg 0002']
    """
    if "two_theta" not in ds or "energy" not in ds.dims:
        raise ValueError("ds: expected a sweep dataset with two_theta(energy, reflection)")
    positive_int(max_reflections, "max_reflections")
    if reflections is None:
        strength = ds.intensity.max("energy").compute()
        order = np.argsort(-np.nan_to_num(strength.values, nan=-1.0), kind="stable")
        labels = [str(v) for v in ds.reflection.values[np.sort(order[:max_reflections])]]
    else:
        labels = list(reflections)
        missing = [lab for lab in labels if lab not in ds.reflection.values]
        if missing:
            raise ValueError(f"reflections: not in the sweep: {missing}")
    rng = two_theta_range if two_theta_range is not None else ds.attrs.get("two_theta_range")
    sub = ds.sel(reflection=labels)[["two_theta"]].compute()
    fig = _figure(fig)
    ax = fig.add_subplot()
    energy = ds.energy.values
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(labels) <= 10 else "tab20"]
    for n, lab in enumerate(labels):
        ax.plot(energy, sub.two_theta.sel(reflection=lab).values, label=lab, lw=1.3,
                color=cmap(n % cmap.N))
    if rng is not None:
        lo, hi = float(rng[0]), float(rng[1])
        ax.axhspan(lo, hi, color="tab:green", alpha=0.12, lw=0, label="instrument range",
                   zorder=0)
        ax.axhline(lo, color="tab:green", lw=0.8, ls="--")
        ax.axhline(hi, color="tab:green", lw=0.8, ls="--")
    finite = sub.two_theta.values[np.isfinite(sub.two_theta.values)]
    if finite.size:
        top = max(finite.max(), float(rng[1]) if rng is not None and rng[1] < 180 else 0)
        ax.set_ylim(0, min(180.0, 1.05 * top))
    ax.set_xlabel("energy (keV)")
    ax.set_ylabel("2θ (deg)")
    ax.set_title(f"{ds.attrs.get('phase', '')}: scattering angle against energy")
    ax.legend(fontsize="small", ncols=2 if len(labels) > 6 else 1)
    ax.grid(alpha=0.3)
    return fig


def plot_transmission(ds: xr.Dataset, *, fig=None):
    """Transmission against energy (one line per thickness, or a map for many thicknesses).

    With no ``transmission`` in the sweep (no thickness given), the attenuation length is
    drawn instead. The sweep's ``transmission_range`` window is marked.

    Examples
    --------
    >>> import numpy as np, xrdflow
    >>> ds = xrdflow.sweep("CeO2", energy_kev=np.linspace(20, 100, 41), thickness_mm=[0.1, 1.0])
    >>> fig = plot_transmission(ds)
    >>> fig.axes[0].get_ylabel()
    'transmission'
    """
    if "attenuation_length" not in ds:
        raise ValueError("ds: expected a sweep dataset with attenuation_length(energy)")
    fig = _figure(fig)
    ax = fig.add_subplot()
    energy = ds.energy.values
    window = ds.attrs.get("transmission_range")
    phase = ds.attrs.get("phase", "")
    if "transmission" not in ds:
        ax.semilogy(energy, ds.attenuation_length.values, color="k")
        ax.set_ylabel("attenuation length (mm)")
        ax.set_title(f"{phase}: attenuation length")
    elif "thickness" in ds.transmission.dims and ds.sizes["thickness"] >= 5:
        t = ds.transmission.transpose("thickness", "energy").compute()
        mesh = ax.pcolormesh(energy, ds.thickness.values, t.values, shading="auto",
                             vmin=0, vmax=1, cmap="viridis")
        fig.colorbar(mesh, ax=ax, label="transmission")
        if window is not None:
            cs = ax.contour(energy, ds.thickness.values, t.values, levels=sorted(set(window) - {1.0}),
                            colors="w", linewidths=1.0)
            ax.clabel(cs, fmt="%.2g", fontsize="small")
        ax.set_ylabel("thickness (mm)")
        ax.set_title(f"{phase}: transmission against energy and thickness")
    else:
        t = ds.transmission.compute()
        if "thickness" in t.dims:
            for th in ds.thickness.values:
                ax.plot(energy, t.sel(thickness=th).values, label=f"{th:g} mm")
        else:
            ax.plot(energy, t.values, label=f"{float(ds.thickness):g} mm")
        if window is not None:
            ax.axhspan(float(window[0]), float(window[1]), color="tab:green", alpha=0.12, lw=0,
                       label="accepted window", zorder=0)
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("transmission")
        ax.set_title(f"{phase}: transmission against energy")
        ax.legend(fontsize="small")
    ax.set_xlabel("energy (keV)")
    ax.grid(alpha=0.3)
    return fig
