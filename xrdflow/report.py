"""The one-page plan report for the logbook (A4 PDF).

One page holds everything a beamtime logbook needs about a planned Bragg experiment: the
inputs, the 3D scene (orthographic, so 2theta can be read off the page), the table of the
reflections with their d-spacing, 2theta, structure factor, transmission, attenuation
length, stage angles of every solution, path through the sample and the objective lens'
distances and magnification, the transmission against energy with the chosen energy
marked, and the xrdflow version and the date.

It is drawn with matplotlib only (no browser, no LaTeX), so it builds in about a second on
any machine, and the file is written atomically.
"""

from __future__ import annotations

import datetime as _dt
import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["report_pdf_bytes", "write_report"]

A4_IN = (8.27, 11.69)


def _num(x, digits=4) -> str:
    x = float(x)
    if not math.isfinite(x):
        return "–"
    return f"{x:.{digits}g}"


def _angle(x) -> str:
    x = float(x)
    return "–" if not math.isfinite(x) else f"{round(x, 3) + 0.0:.3f}"


def _row_values(row: xr.Dataset, name: str, solution: int | None = None) -> float:
    v = row[name]
    if solution is not None and "solution" in v.dims:
        v = v.isel(solution=solution)
    if "thickness" in v.dims:
        v = v.isel(thickness=0)
    return float(np.asarray(v.values).reshape(-1)[0])


def _table(row: xr.Dataset, stage_angles: list[str]) -> tuple[list[str], list[list[str]]]:
    """Column labels and rows: one row per reflection and orientation solution."""
    cols = ["reflection", "d (Å)", "2θ (°)", "|F|", "mult."]
    has_sol = "solution" in row.dims and stage_angles
    if has_sol:
        cols += ["sol."] + [f"{a} (°)" for a in stage_angles]
    if "path_length" in row:
        cols += ["path (mm)", "T path"]
    rows = []
    for i in range(row.sizes["reflection"]):
        r = row.isel(reflection=i)
        base = [str(r.reflection.values), f"{float(r.d_spacing):.5f}", _angle(r.two_theta),
                _num(math.sqrt(max(_row_values(r, "structure_factor_sq"), 0.0))),
                str(int(r.multiplicity))]
        sols = range(r.sizes["solution"]) if has_sol else [None]
        for s in sols:
            vals = list(base) if s in (None, 0) else [""] * len(base)
            if has_sol:
                vals += [str(s)] + [_angle(_row_values(r, a, s)) for a in stage_angles]
            if "path_length" in row:
                vals += [_num(_row_values(r, "path_length", s)),
                         _num(_row_values(r, "path_transmission", s))]
            rows.append(vals)
    return cols, rows


def _absorption_text(row: xr.Dataset) -> str:
    text = (f"{float(row.energy):g} keV (λ = {float(row.wavelength):.5f} Å): attenuation length "
            f"{_num(row.attenuation_length)} mm")
    if "transmission" in row:
        text += (f"; {float(row.thickness):g} mm along the beam: transmission "
                 f"{_num(_row_values(row, 'transmission'))}")
    return text


def _lens_text(row: xr.Dataset, attrs: dict) -> str | None:
    if "focal_length_mm" not in row:
        return None
    return (f"Objective lens: {attrs.get('lens', 'CRL')}\n"
            f"focal length {float(row.focal_length_mm):.2f} mm, sample–lens d1 "
            f"{float(row.d1_mm):.2f} mm, lens length {float(row.lens_length_mm):.2f} mm, "
            f"lens–detector d2 {float(row.d2_mm):.1f} mm, magnification "
            f"{float(row.magnification):.3f}")


def _energy_curve(plan: xr.Dataset, phase: Any, energy_sweep: xr.Dataset | None):
    """(energies keV, values, label) for the absorption plot."""
    e0 = float(plan.energy.values[0])
    if energy_sweep is None:
        from ._sweep import sweep

        lo, hi = max(5.0, 0.5 * e0), min(200.0, 2.0 * e0)
        kw: dict[str, Any] = {}
        if "thickness" in plan.coords:
            kw["thickness_mm"] = float(np.asarray(plan.thickness.values).reshape(-1)[0])
        if "density_g_cm3" in plan.attrs:  # the density the plan's absorption used
            kw["density"] = float(plan.attrs["density_g_cm3"])
        energy_sweep = sweep(phase, energy_kev=np.linspace(min(lo, e0), max(hi, e0), 241),
                             reflections=[str(plan.hkl.values[0])], **kw)
    sw = energy_sweep
    if "transmission" in sw:
        t = sw.transmission
        if "thickness" in t.dims:
            t = t.isel(thickness=0)
        return sw.energy.values, np.asarray(t.values, float), "transmission", float(
            np.asarray(sw.thickness.values).reshape(-1)[0])
    return sw.energy.values, np.asarray(sw.attenuation_length.values, float), \
        "attenuation length (mm)", None


def _figure(plan: xr.Dataset, *, phase: Any, scene=None, energy_sweep=None,
            inputs: dict | None = None, created: _dt.datetime | None = None):
    from matplotlib.figure import Figure

    from . import __version__

    if plan.sizes.get("energy", 1) != 1:
        raise ValueError("plan: the report is for one energy (xrdflow.plan), got "
                         f"{plan.sizes['energy']} energies")
    row = plan.isel(energy=0).compute()
    if "thickness" in row.dims:
        row = row.isel(thickness=0)
    created = created or _dt.datetime.now(_dt.timezone.utc)
    a = plan.attrs
    fig = Figure(figsize=A4_IN)
    fig.subplots_adjust(left=0.07, right=0.95)

    title = scene.title if scene is not None else (
        f"{a.get('phase', '')} at {float(row.energy):g} keV")
    fig.text(0.5, 0.972, "xrdflow experiment plan", ha="center", fontsize=15, weight="bold")
    fig.text(0.5, 0.952, title, ha="center", fontsize=9.5)

    # inputs (left column)
    lines = [f"{a.get('phase', '')}: {a.get('composition', '')}, {a.get('space_group', '')}, "
             f"ρ = {float(a.get('density_g_cm3', math.nan)):.4g} g/cm³",
             f"a b c = {a.get('lattice_abc_angstrom', '')} Å",
             f"α β γ = {a.get('lattice_angles_deg', '')}°",
             f"energy {float(row.energy):g} keV, λ = {float(row.wavelength):.5f} Å"]
    if "thickness" in row.coords:
        lines.append(f"thickness along the beam at zero angles: {float(row.thickness):g} mm")
    if "mount" in a:
        lines.append(f"mount: {a['mount']}")
    if "stage" in a:
        lines.append(f"stage: {a['stage']}, {a.get('scattering_plane', '')} scattering")
    if "goniometer" in a:
        lines.append(f"goniometer: {str(a['goniometer']).split(':')[0]}")
    if scene is not None:
        info = scene.info
        if "sample_size_mm" in info:
            lines.append("sample (w × h × t): " + " × ".join(
                f"{v:g}" for v in info["sample_size_mm"]) + " mm")
        if "beam_size_mm" in info:
            lines.append("beam (h × v): " + " × ".join(
                f"{v:g}" for v in info["beam_size_mm"]) + " mm")
        lines.append(f"scene: solution {info.get('solution', 0)}")
    for key, value in (inputs or {}).items():
        lines.append(f"{key}: {value}")
    fig.text(0.05, 0.93, "Inputs", fontsize=10, weight="bold", va="top")
    fig.text(0.05, 0.912, "\n".join(_wrap(line, 44) for line in lines), fontsize=7,
             va="top", linespacing=1.45)

    # 3D view (right, large); the scene's notes under it
    if scene is not None:
        from .scene.mpl import draw

        ax3 = fig.add_axes((0.36, 0.585, 0.63, 0.355), projection="3d")
        draw(scene, ax=ax3, legend=True, title=False, notes=False)
        ax3.set_rasterized(True)  # thousands of triangles: an image in the PDF, drawn fast
        if scene.notes:
            fig.text(0.05, 0.578, _wrap("; ".join(scene.notes), 150), fontsize=6,
                     color="0.35", va="top", linespacing=1.3)
    else:
        fig.text(0.67, 0.76, "no 3D view: give a mount\n(the crystal's orientation)",
                 ha="center", fontsize=9, color="0.4")

    # absorption and lens
    fig.text(0.05, 0.525, "Absorption and optics", fontsize=10, weight="bold", va="top")
    absorption = _absorption_text(row)
    lens = _lens_text(row, a)
    text = _wrap(absorption, 120) + ("\n" + _wrap(lens, 120) if lens else "")
    fig.text(0.05, 0.505, text, fontsize=7.2, va="top", linespacing=1.45)

    # table
    stage_angles = [n for n in a.get("stage_angles", []) if n in row]
    cols, rows = _table(row, stage_angles)
    max_rows = 14
    note = None
    if len(rows) > max_rows:
        note = f"(first {max_rows} of {len(rows)} rows; the full table is in the plan dataset)"
        rows = rows[:max_rows]
    fig.text(0.05, 0.425, "Reflections and stage angles", fontsize=10, weight="bold", va="top")
    axt = fig.add_axes((0.05, 0.265, 0.9, 0.14))
    axt.axis("off")
    if rows:
        table = axt.table(cellText=rows, colLabels=cols, loc="upper center", cellLoc="center")
        table.auto_set_font_size(False)
        table.set_fontsize(7)
        table.scale(1.0, 1.2)
        for (r, _), cell in table.get_celld().items():
            cell.set_linewidth(0.3)
            if r == 0:
                cell.set_facecolor("0.9")
    if note:
        axt.text(0.0, 0.0, note, fontsize=7, transform=axt.transAxes, va="top")

    # transmission (or attenuation length) against energy
    e, y, label, thick = _energy_curve(plan, phase, energy_sweep)
    axe = fig.add_axes((0.1, 0.06, 0.85, 0.15))
    axe.plot(e, y, color="C0", lw=1.4)
    e0 = float(row.energy)
    y0 = float(np.interp(e0, e, y))
    axe.axvline(e0, color="C3", lw=0.8, ls="--")
    axe.plot([e0], [y0], "o", color="C3")
    axe.annotate(f"{e0:g} keV: {y0:.3g}", (e0, y0), xytext=(6, 6), textcoords="offset points",
                 fontsize=8, color="C3")
    axe.set_xlabel("energy (keV)", fontsize=8)
    axe.set_ylabel(label, fontsize=8)
    if label != "transmission":
        axe.set_yscale("log")
    else:
        axe.set_ylim(0.0, 1.02)
    axe.tick_params(labelsize=7)
    axe.grid(alpha=0.3)
    fig.text(0.05, 0.235, f"{label.split(' (')[0].capitalize()} against energy"
             + (f" through {thick:g} mm" if thick is not None else ""),
             fontsize=10, weight="bold", va="top")

    fig.text(0.07, 0.012, f"xrdflow {__version__} · {created:%Y-%m-%d %H:%M} UTC",
             fontsize=7, color="0.35")
    return fig, created


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.fill(part, width, subsequent_indent="  ")
                     for part in str(text).split("\n"))


def report_pdf_bytes(plan: xr.Dataset, *, phase: Any, scene=None,
                     energy_sweep: xr.Dataset | None = None, inputs: dict | None = None) -> bytes:
    """The one-page A4 report of a plan, as PDF bytes.

    Parameters
    ----------
    plan
        A dataset from :func:`xrdflow.plan` (one energy).
    phase
        The phase the plan was made for (name, CIF path or Structure): used for the
        transmission curve when ``energy_sweep`` is not given.
    scene
        A :class:`xrdflow.scene.Scene` of the plan (:func:`xrdflow.scene.scene_from_plan`);
        ``None`` prints a note instead of the 3D view.
    energy_sweep
        A :func:`xrdflow.sweep` over energy to plot (``transmission`` if it has a
        thickness, else ``attenuation_length``); default 0.5-2x the plan's energy.
    inputs
        Extra labelled inputs to print (a session's inputs).
    """
    fig, created = _figure(plan, phase=phase, scene=scene, energy_sweep=energy_sweep,
                           inputs=inputs)
    buf = io.BytesIO()
    meta = {"Title": "xrdflow experiment plan", "Subject": fig.texts[1].get_text(),
            "Creator": f"xrdflow {plan.attrs.get('xrdflow_version', '')}",
            "CreationDate": created}
    fig.savefig(buf, format="pdf", metadata=meta, dpi=220)
    return buf.getvalue()


def write_report(path: str | Path, plan: xr.Dataset, *, phase: Any, scene=None,
                 energy_sweep: xr.Dataset | None = None, inputs: dict | None = None) -> Path:
    """Write the one-page report PDF of ``plan`` to ``path`` (atomically).

    Same parameters as :func:`report_pdf_bytes`. Returns the path written.
    """
    from .nexus import atomic_output

    path = Path(path)
    if path.suffix.lower() != ".pdf":
        raise ValueError(f"path: the report is a PDF, name it .pdf: {path}")
    data = report_pdf_bytes(plan, phase=phase, scene=scene, energy_sweep=energy_sweep,
                            inputs=inputs)
    with atomic_output(path) as tmp:
        Path(tmp).write_bytes(data)
    return path
