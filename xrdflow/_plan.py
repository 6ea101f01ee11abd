"""Reports of the planner: the sweep table and the one-experiment plan.

:func:`plan` is :func:`xrdflow.sweep` at one energy for the reflections a user names (the
exact members, not their families), with the shortest-path stage when a mount is given and
the objective lens when one is described; :func:`plan_table` prints it for a logbook:
the crystal (formula, space group, cell, density), absorption, every reflection, every
orientation solution with the stage's angles, the path through the plate, and the lens.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import xarray as xr

from .options import positive_array
from .units import HC_KEV_A

__all__ = ["sweep_table", "plan", "plan_table"]


def _columns(cols: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(c), *(len(v[j]) for v in rows)) if rows else len(c)
              for j, c in enumerate(cols)]
    fmt = lambda vals: "  ".join(v.rjust(w) if j else v.ljust(w)  # noqa: E731
                                 for j, (v, w) in enumerate(zip(vals, widths)))
    return [fmt(cols)] + [fmt(v) for v in rows]


def _f(value: float, digits: int) -> str:
    """``value`` to ``digits`` decimals, never printed as ``-0.000``."""
    return f"{round(float(value), digits) + 0.0:.{digits}f}"


def _reflection_row(r) -> list[str]:
    return [str(r.reflection.values), f"{float(r.d_spacing):.5f}", f"{float(r.q):.3f}",
            f"{float(r.two_theta):.4f}", f"{float(r.bragg_angle):.4f}",
            f"{int(r.multiplicity)}", f"{float(r.intensity):.2f}"]


def sweep_table(ds: xr.Dataset, energy_kev: float, *, thickness_mm: float | None = None,
                reachable_only: bool = True) -> str:
    """Plain-text table of the reflections at the sweep energy nearest ``energy_kev``.

    Parameters
    ----------
    ds
        A dataset from :func:`xrdflow.sweep`.
    energy_kev
        Energy (keV); the nearest energy of the sweep is used (stated in the header).
    thickness_mm
        For a sweep with a thickness dimension: the thickness to report (nearest).
    reachable_only
        List only reachable reflections.

    Examples
    --------
    >>> from xrdflow import sweep
    >>> ds = sweep("Mg", energy_kev=[87.1], two_theta_range=(2.5, 3.5))
    >>> print(sweep_table(ds, 87.1).splitlines()[0])
    Mg at 87.1 keV (lambda = 0.142347 A), 2theta range 2.5-3.5 deg: 3 of 3 reflections reachable
    """
    e = float(positive_array(energy_kev, "energy_kev"))
    row = ds.sel(energy=e, method="nearest")
    if "thickness" in row.dims:
        if thickness_mm is None:
            raise ValueError("thickness_mm: the sweep has several thicknesses, choose one")
        row = row.sel(thickness=thickness_mm, method="nearest")
    row = row.compute()
    reach = row.reachable.values.astype(bool)
    n_all = int(row.sizes["reflection"])
    lo, hi = ds.attrs.get("two_theta_range", [0.0, 180.0])
    head = (f"{ds.attrs.get('phase', '')} at {float(row.energy):g} keV "
            f"(lambda = {float(row.wavelength):.6f} A), 2theta range {lo:g}-{hi:g} deg: "
            f"{int(reach.sum())} of {n_all} reflections reachable")
    lines = [head]
    if "transmission" in row:
        lines.append(f"thickness {float(row.thickness):g} mm: transmission "
                     f"{float(row.transmission):.4g}, attenuation length "
                     f"{float(row.attenuation_length):.4g} mm")
    else:
        lines.append(f"attenuation length {float(row.attenuation_length):.4g} mm")
    cols = ["reflection", "d (A)", "q (1/nm)", "2theta", "theta", "mult", "I rel", "reach"]
    angle_names = [a for a in ds.attrs.get("stage_angles", []) if a in row]
    for a in angle_names:
        cols += [f"{a}1", f"{a}2"]
    if "path_factor" in row:
        cols += ["path/t 1", "path/t 2"]
    rows = []
    for i in range(n_all):
        if reachable_only and not reach[i]:
            continue
        r = row.isel(reflection=i)
        vals = _reflection_row(r) + ["yes" if reach[i] else "no"]
        for a in angle_names:
            vals += [_f(v, 3) for v in r[a].values]
        if "path_factor" in row:
            vals += [f"{v:.4f}" for v in r.path_factor.values]
        rows.append(vals)
    return "\n".join(lines + _columns(cols, rows))


def plan(phase: Any, *, energy_kev: Any = None, wavelength_a: Any = None,
         reflection: Any = None, mount: Any = None, stage: str | None = None,
         **kwargs: Any) -> xr.Dataset:
    """One planned experiment: :func:`xrdflow.sweep` at a single energy.

    Parameters
    ----------
    phase
        Built-in phase name, CIF path or pymatgen Structure.
    energy_kev, wavelength_a
        One energy (keV) or one wavelength (Angstrom).
    reflection
        The reflection(s) to plan, exact members (``"1 0 -2"``, ``"(1,0,-2)"``, a list):
        their own orientation, not their family representative's. ``None``: every
        family reachable inside ``two_theta_range``.
    mount
        As in :func:`xrdflow.sweep` (``{"vertical": "(104)"}``: the beam defaults to
        :func:`xrdflow._mounts.default_beam`).
    stage
        Default ``"shortest-path"`` with a mount (every circle free), else none.
    kwargs
        Anything else :func:`xrdflow.sweep` takes (``thickness_mm``, ``goniometer``,
        ``scattering_plane``, ``surface_normal``, ``lens``, ``two_theta_range``...).

    Examples
    --------
    >>> ds = plan("Al", energy_kev=17.0, reflection="111", mount={"vertical": "(111)"},
    ...           goniometer="dfxrm")
    >>> round(float(ds.phi[0, 0, 0]), 4), round(float(ds.bragg_angle[0, 0]), 4)
    (-8.9734, 8.9734)
    """
    from ._sweep import sweep

    if energy_kev is not None and np.ndim(energy_kev) > 0 and np.size(energy_kev) != 1:
        raise ValueError(f"energy_kev: plan takes one energy, got {energy_kev!r} "
                         f"(xrdflow.sweep takes ranges)")
    if wavelength_a is not None and np.ndim(wavelength_a) > 0 and np.size(wavelength_a) != 1:
        raise ValueError(f"wavelength_a: plan takes one wavelength, got {wavelength_a!r}")
    if isinstance(reflection, (str, tuple)) or (
            reflection is not None and np.ndim(reflection) == 1 and not isinstance(reflection, list)):
        reflection = [reflection]
    if stage is None:
        stage = "shortest-path" if mount is not None else "omega"
    ds = sweep(phase, energy_kev=energy_kev, wavelength_a=wavelength_a, reflections=reflection,
               mount=mount, stage=stage, **kwargs)
    if reflection is not None:
        _check_named(ds)
    ds.attrs["title"] = "xrdflow experiment plan"
    return ds


def _check_named(ds: xr.Dataset) -> None:
    """Named reflections must exist (not systematically absent) and diffract at the energy."""
    f2 = ds.structure_factor_sq.values.reshape(-1, ds.sizes["reflection"]).max(axis=0)
    lam = float(ds.wavelength.values[0])
    electrons = float(ds.attrs.get("electrons_per_cell", 0.0)) or float(np.nanmax(f2)) or 1.0
    for i, label in enumerate(ds.reflection.values):
        d = float(ds.d_spacing.values[i])
        if f2[i] < 1e-10 * electrons**2:
            raise ValueError(f"reflection: {label} is forbidden in {ds.attrs.get('space_group')} "
                             f"(|F|^2 = 0, a systematic absence)")
        if lam > 2.0 * d:
            raise ValueError(f"energy_kev: {float(ds.energy.values[0]):g} keV (lambda "
                             f"{lam:.4g} A) cannot diffract {label} (d = {d:.4g} A): it needs "
                             f"lambda <= 2d, an energy >= {HC_KEV_A / (2.0 * d):.4g} keV")


def _crystal_lines(ds: xr.Dataset) -> list[str]:
    a = ds.attrs
    return [
        f"{a.get('phase', '')}: {a.get('composition', '')}, space group {a.get('space_group', '')}"
        f", density {float(a.get('density_g_cm3', math.nan)):.4g} g/cm3",
        f"cell a b c = {a.get('lattice_abc_angstrom', '')} A; alpha beta gamma = "
        f"{a.get('lattice_angles_deg', '')} deg; volume {float(a.get('cell_volume_a3', math.nan)):.4f}"
        f" A^3",
    ]


def _orientation_lines(row: xr.Dataset, ds: xr.Dataset) -> list[str]:
    names = [n for n in ds.attrs.get("stage_angles", []) if n in row]
    if not names:
        return []
    cols = ["reflection", "sol"] + [f"{n} (deg)" for n in names] + ["eta"]
    has_path = "path_factor" in row
    if has_path:
        cols += ["entry", "exit", "path/t"]
        if "path_length" in row:
            cols += ["path (mm)", "T path"]
    rows = []
    for i in range(row.sizes["reflection"]):
        r = row.isel(reflection=i)
        for s in range(r.sizes["solution"]):
            q = r.isel(solution=s)
            if not np.isfinite(float(q[names[0]])):
                rows.append([str(r.reflection.values), str(s), "no solution"]
                            + [""] * (len(cols) - 3))
                continue
            vals = [str(r.reflection.values), str(s)] + [_f(q[n], 4) for n in names]
            vals.append(_f(q.eta, 2))
            if has_path:
                vals += [f"{float(q.entry_angle):.3f}", f"{float(q.exit_angle):.3f}",
                         f"{float(q.path_factor):.4f}"]
                if "path_length" in row:
                    vals += [f"{float(q.path_length):.4g}", f"{float(q.path_transmission):.4g}"]
            rows.append(vals)
    head = f"orientation: stage {ds.attrs.get('stage')}, {ds.attrs.get('scattering_plane')} scattering"
    if "goniometer" in ds.attrs:
        head += f"; goniometer {ds.attrs['goniometer']}"
    return [head] + _columns(cols, rows)


def _lens_lines(row: xr.Dataset) -> list[str]:
    if "focal_length_mm" not in row:
        return []
    return [f"objective lens ({row.attrs.get('lens', 'CRL')}): focal length "
            f"{float(row.focal_length_mm):.2f} mm (thin-lens sum {float(row.focal_length_thin_mm):.2f}),"
            f" sample-lens d1 {float(row.d1_mm):.2f} mm, lens length {float(row.lens_length_mm):.2f} mm,"
            f" lens-detector d2 {float(row.d2_mm):.1f} mm, magnification "
            f"{float(row.magnification):.3f}"]


def plan_table(ds: xr.Dataset) -> str:
    """The plan as text: crystal, absorption, reflections, orientations, lens.

    Examples
    --------
    >>> ds = plan("Al", energy_kev=17.0, reflection="111", mount={"vertical": "(111)"})
    >>> print(plan_table(ds).splitlines()[0])
    Al: Al, space group Fm-3m, density 2.698 g/cm3
    """
    if ds.sizes.get("energy", 1) != 1:
        raise ValueError("ds: plan_table reports one energy; use sweep_table for a sweep")
    row = ds.isel(energy=0).compute()
    if "thickness" in row.dims:
        row = row.isel(thickness=0)
    lines = _crystal_lines(ds)
    absn = (f"{float(row.energy):g} keV (lambda = {float(row.wavelength):.6f} A): attenuation "
            f"length {float(row.attenuation_length):.4g} mm")
    if "transmission" in row:
        absn += (f"; through {float(row.thickness):g} mm along the beam: transmission "
                 f"{float(row.transmission):.4g}")
    lines.append(absn)
    if "mount" in ds.attrs:
        lines.append(f"mount: {ds.attrs['mount']} (beam moved "
                     f"{float(ds.attrs.get('mount_beam_adjustment_deg', 0.0)):.3f} deg to be "
                     f"normal to the vertical)")
    cols = ["reflection", "d (A)", "q (1/nm)", "2theta", "theta", "mult", "I rel", "|F|^2",
            "reach"]
    rows = [_reflection_row(row.isel(reflection=i)) + [
        f"{float(row.structure_factor_sq.isel(reflection=i).squeeze()):.4g}",
        "yes" if bool(row.reachable.isel(reflection=i)) else "no"]
        for i in range(row.sizes["reflection"])]
    lines += _columns(cols, rows)
    lines += _orientation_lines(row, ds)
    lines += _lens_lines(row)
    return "\n".join(lines)
