"""Diagnostic figure of a calibration: the calibrant image with the fitted rings.

matplotlib object API only (``matplotlib.figure.Figure``, Agg canvas): no pyplot global
state, safe in headless workers.
"""

from __future__ import annotations

import numpy as np

__all__ = ["calibration_figure"]


def calibration_figure(image, result, *, max_rings: int | None = None, figsize=(8.0, 7.0)):
    """Figure of ``image`` (as read) with the rings of ``result.geometry`` and the control points.

    Parameters
    ----------
    image : numpy.ndarray
        Calibrant image as fabio reads it (it is flipped here when the geometry is
        ``"flipud"``, so rings and image are drawn in the geometry's orientation).
    result : CalibrationResult
        Output of :func:`xrdflow.calibrate` (its ``geometry``, ``rings``, ``control_points``,
        ``rms_px``, ``n_rings`` and ``calibrant`` are drawn; ``rings_found`` of
        ``rings_predicted`` and the ``problems`` too when it has them).
    max_rings : int, optional
        Draw at most this many expected rings (default: all rings used plus the next ones
        on the detector).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    A calibration takes seconds, so this example is not run (tests/test_plot.py draws one)::

        res = xrdflow.calibrate(img, "LaB6", energy_kev=87.1, detector="Perkin", distance_mm=1150)
        fig = calibration_figure(img, res)
        fig.savefig("calibration.png")
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    geom = result.geometry
    img = np.asarray(image, dtype=np.float64)
    if geom.orientation == "flipud":
        img = np.flipud(img)
    ai = geom.to_pyfai()
    ttha = np.degrees(ai.center_array(img.shape, unit="2th_rad"))
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    pos = img[np.isfinite(img) & (img > 0)]
    vmin, vmax = (np.percentile(pos, [5, 99.8]) if pos.size else (1, 10))
    shown = np.where(img > 0, img, np.nan)
    art = ax.imshow(shown, origin="upper", cmap="gray_r", norm=LogNorm(vmin=max(vmin, 1e-3), vmax=max(vmax, vmin * 10)),
                    interpolation="nearest")
    fig.colorbar(art, ax=ax, label="counts", shrink=0.8)
    levels = sorted({r[2] for r in result.rings})
    if max_rings:
        levels = levels[:max_rings]
    if levels:
        ax.contour(ttha, levels=levels, colors="tab:red", linewidths=0.6)
    cp = result.control_points
    if len(cp):
        ax.plot(cp[:, 1], cp[:, 0], ".", color="tab:cyan", ms=1.5, label=f"{len(cp)} control points")
    bx, by = geom.beam_center_px
    ax.plot([bx - 0.5], [by - 0.5], "+", color="tab:orange", ms=12, mew=1.5, label="beam centre")
    ax.set_xlim(-0.5, img.shape[1] - 0.5)
    ax.set_ylim(img.shape[0] - 0.5, -0.5)
    ax.set_xlabel("x (pixel)")
    ax.set_ylabel("y (pixel)" + (" (flipped up-down)" if geom.orientation == "flipud" else ""))
    title = f"{result.calibrant}: {geom.dist * 1e3:.3f} mm, rms {result.rms_px:.3f} px, {result.n_rings} rings"
    if getattr(result, "rings_predicted", 0):
        title += f" ({result.rings_found} of {result.rings_predicted} predicted found)"
    if getattr(result, "problems", ()):
        title += "\nNOT TRUSTWORTHY: " + "; ".join(result.problems)
    ax.set_title(title, fontsize=10, color="tab:red" if getattr(result, "problems", ()) else "black")
    ax.legend(loc="upper right", fontsize=8)
    return fig
