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
        text += (f"; straight through {float(row.thickness):g} mm: transmission "
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


def _plan_row(plan: xr.Dataset, scene) -> tuple[xr.Dataset, str | None]:
    """The plan at its one energy and at the thickness the scene draws (or the first), and
    a note when the plan holds several thicknesses."""
    row = plan.isel(energy=0).compute()
    if "thickness" not in row.dims:
        return row, None
    if scene is not None and "sample_size_mm" in scene.info:
        row = row.sel(thickness=float(scene.info["sample_size_mm"][2]), method="nearest")
    else:
        row = row.isel(thickness=0)
    return row, (f"the plan holds {plan.sizes['thickness']} thicknesses; this page reports "
                 f"{float(row.thickness):g} mm")


def _energy_curve(plan: xr.Dataset, row: xr.Dataset, phase: Any,
                  energy_sweep: xr.Dataset | None):
    """(energies keV, values, label, thickness or None) for the absorption plot."""
    e0 = float(row.energy)
    thick = float(row.thickness) if "thickness" in row.coords else None
    if energy_sweep is None:
        from ._sweep import sweep

        lo, hi = max(5.0, 0.5 * e0), min(200.0, 2.0 * e0)
        kw: dict[str, Any] = {}
        if thick is not None:
            kw["thickness_mm"] = thick
        if "density_g_cm3" in plan.attrs:  # the density the plan's absorption used
            kw["density"] = float(plan.attrs["density_g_cm3"])
        energy_sweep = sweep(phase, energy_kev=np.linspace(min(lo, e0), max(hi, e0), 241),
                             reflections=[str(plan.hkl.values[0])], **kw)
    sw = energy_sweep
    if "transmission" in sw:
        t = sw.transmission
        if "thickness" in t.dims:
            t = t.sel(thickness=thick, method="nearest") if thick is not None else t.isel(
                thickness=0)
        return (sw.energy.values, np.asarray(t.values, float), "transmission",
                float(np.asarray(t.thickness.values).reshape(-1)[0]))
    return sw.energy.values, np.asarray(sw.attenuation_length.values, float), \
        "attenuation length (mm)", None


# page geometry (figure fractions of an A4 page) and text metrics
_LEFT, _RIGHT, _TOP = 0.05, 0.95, 0.975
_H_IN = A4_IN[1]


def _text_height(lines: int, size_pt: float, spacing: float = 1.4) -> float:
    """Height of ``lines`` lines of ``size_pt`` text, as a fraction of the page height."""
    return lines * size_pt * spacing / 72.0 / _H_IN


def _crystal_lines(a: dict) -> list[str]:
    return [f"{a.get('phase', '')}: {a.get('composition', '')}, {a.get('space_group', '')}, "
            f"ρ = {float(a.get('density_g_cm3', math.nan)):.4g} g/cm³",
            f"a b c = {a.get('lattice_abc_angstrom', '')} Å",
            f"α β γ = {a.get('lattice_angles_deg', '')}°"]


def _input_lines(row: xr.Dataset, a: dict, scene, inputs: dict | None) -> list[str]:
    """The inputs column: the crystal, then the caller's labelled inputs (a session's), or,
    without them, what the plan and the scene were made with."""
    lines = _crystal_lines(a)
    if inputs:
        return lines + [f"{k}: {v}" for k, v in inputs.items()]
    lines.append(f"energy {float(row.energy):g} keV, λ = {float(row.wavelength):.5f} Å")
    if "thickness" in row.coords:
        lines.append(f"plate thickness (along its normal): {float(row.thickness):g} mm")
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
        lines.append(f"3D view: solution {info.get('solution', 0)}")
    return lines


def _figure(plan: xr.Dataset, *, phase: Any, scene=None, energy_sweep=None,
            inputs: dict | None = None, created: _dt.datetime | None = None):
    """The page, laid out top-down: each block starts below the measured height of the one
    above, so long inputs, lens descriptions or tables push the next block down instead of
    drawing over it; what cannot fit is cut with a note."""
    from matplotlib.figure import Figure

    from . import __version__

    if plan.sizes.get("energy", 1) != 1:
        raise ValueError("plan: the report is for one energy (xrdflow.plan), got "
                         f"{plan.sizes['energy']} energies")
    row, thickness_note = _plan_row(plan, scene)
    created = created or _dt.datetime.now(_dt.timezone.utc)
    a = plan.attrs
    fig = Figure(figsize=A4_IN)

    # title
    fig.text(0.5, _TOP, "xrdflow experiment plan", ha="center", va="top", fontsize=15,
             weight="bold")
    subtitle = scene.title if scene is not None else (
        f"{a.get('phase', '')} at {float(row.energy):g} keV")
    sub = _wrap(subtitle, 95)
    y = _TOP - _text_height(1, 15, 1.3)
    fig.text(0.5, y, sub, ha="center", va="top", fontsize=9.5, linespacing=1.3)
    y -= _text_height(sub.count("\n") + 1, 9.5, 1.3) + 0.012

    # inputs (left) and the 3D view (right): one band
    band = 0.36
    fig.text(_LEFT, y, "Inputs", fontsize=10, weight="bold", va="top")
    text_top = y - _text_height(1, 10, 1.5)
    lines = [_wrap(line, 46) for line in _input_lines(row, a, scene, inputs)]
    size = 7.0
    while size > 5.5 and _text_height(sum(t.count("\n") + 1 for t in lines), size) > band - 0.03:
        size -= 0.25
    n_lines, kept = 0, []
    for t in lines:
        n = t.count("\n") + 1
        if _text_height(n_lines + n + 1, size) > band - 0.03:
            kept.append(f"… ({len(lines) - len(kept)} more inputs not shown)")
            break
        kept.append(t)
        n_lines += n
    fig.text(_LEFT, text_top, "\n".join(kept), fontsize=size, va="top", linespacing=1.4)
    if scene is not None:
        from .scene.mpl import draw

        ax3 = fig.add_axes((0.37, y - band, 0.62, band), projection="3d")
        draw(scene, ax=ax3, legend=True, title=False, notes=False)
        ax3.set_rasterized(True)  # thousands of triangles: an image in the PDF, drawn fast
    else:
        fig.text(0.68, y - band / 2, "no 3D view: it needs a mount\n(the crystal's orientation) and one reflection",
                 ha="center", va="center", fontsize=9, color="0.4")
    y -= band + 0.008
    notes = list(scene.notes) if scene is not None else []
    if thickness_note:
        notes.append(thickness_note)
    if notes:
        text = _wrap("; ".join(notes), 165)
        fig.text(_LEFT, y, text, fontsize=6, color="0.35", va="top", linespacing=1.3)
        y -= _text_height(text.count("\n") + 1, 6, 1.3)
    y -= 0.015

    # absorption and optics
    fig.text(_LEFT, y, "Absorption and optics", fontsize=10, weight="bold", va="top")
    y -= _text_height(1, 10, 1.6)
    lens = _lens_text(row, a)
    text = _wrap(_absorption_text(row), 125) + ("\n" + _wrap(lens, 125) if lens else "")
    fig.text(_LEFT, y, text, fontsize=7.2, va="top", linespacing=1.4)
    y -= _text_height(text.count("\n") + 1, 7.2) + 0.015

    # the table, as many rows as fit above the energy plot
    curve_top = 0.235
    fig.text(_LEFT, y, "Reflections and stage angles", fontsize=10, weight="bold", va="top")
    y -= _text_height(1, 10, 1.6)
    stage_angles = [n for n in a.get("stage_angles", []) if n in row]
    cols, rows = _table(row, stage_angles)
    row_h = _text_height(1, 7, 1.9)
    fit = max(int((y - curve_top - 0.02) / row_h) - 1, 1)
    note = None
    if len(rows) > fit:
        note = (f"first {fit - 1} of {len(rows)} rows: the full table is in the plan dataset "
                f"(xrdflow plan ... -o plan.nc)")
        rows = rows[:fit - 1]
    if rows:
        height = row_h * (len(rows) + 1)
        axt = fig.add_axes((_LEFT, y - height, _RIGHT - _LEFT, height))
        axt.axis("off")
        table = axt.table(cellText=rows, colLabels=cols, loc="upper center", cellLoc="center",
                          bbox=(0.0, 0.0, 1.0, 1.0))
        table.auto_set_font_size(False)
        table.set_fontsize(7)
        for (r, _), cell in table.get_celld().items():
            cell.set_linewidth(0.3)
            if r == 0:
                cell.set_facecolor("0.9")
        y -= height
    if note:
        fig.text(_LEFT, y - 0.004, note, fontsize=6.5, color="0.35", va="top")

    # transmission (or attenuation length) against energy
    e, values, label, thick = _energy_curve(plan, row, phase, energy_sweep)
    fig.text(_LEFT, curve_top, f"{label.split(' (')[0].capitalize()} against energy"
             + (f" through {thick:g} mm" if thick is not None else ""),
             fontsize=10, weight="bold", va="top")
    axe = fig.add_axes((0.1, 0.06, 0.85, 0.15))
    axe.plot(e, values, color="C0", lw=1.4)
    e0 = float(row.energy)
    y0 = float(np.interp(e0, e, values))
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

    fig.text(_LEFT, 0.012, f"xrdflow {__version__} · {created:%Y-%m-%d %H:%M} UTC",
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
    meta = {"Title": "xrdflow experiment plan", "Subject": fig.texts[1].get_text().replace("\n", " "),
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
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path}: output folder {path.parent} does not exist")
    data = report_pdf_bytes(plan, phase=phase, scene=scene, energy_sweep=energy_sweep,
                            inputs=inputs)
    with atomic_output(path) as tmp:
        Path(tmp).write_bytes(data)
    return path
