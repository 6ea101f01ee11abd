"""The planner's commands (part of :mod:`xrdflow.cli`): ``xrdflow plan`` (one experiment) and ``xrdflow sweep`` (ranges).

Argument parsing and calls to the public functions only (as :mod:`xrdflow.cli`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from . import options as O


def _energy_values(values: list[float]):
    """``--energy E`` (one energy) or ``--energy LOW HIGH N`` (a range)."""
    import numpy as np

    if len(values) == 1:
        if not values[0] > 0:
            raise ValueError(f"--energy: must be > 0 keV, got {values[0]:g}")
        return np.array([values[0]])
    if len(values) != 3:
        raise ValueError(f"--energy: give one energy E or LOW HIGH N, got {len(values)} numbers")
    lo, hi, n = values
    if n != int(n) or n < 1:
        raise ValueError(f"--energy: N must be a positive integer, got {n:g}")
    if n == 1 and lo == hi and lo > 0:
        return np.array([lo])
    if not 0 < lo < hi:
        raise ValueError(f"--energy: need 0 < LOW < HIGH (keV), got {lo:g} {hi:g}")
    return np.linspace(lo, hi, int(n))


def _goniometer(value: str | None):
    """A preset name, or a TOML file with ``[[axes]]`` tables (name, direction, sense)."""
    if value is None or not value.lower().endswith(".toml"):
        return value
    import tomllib

    path = Path(value)
    try:
        with open(path, "rb") as fh:
            spec = tomllib.load(fh)
    except OSError as exc:
        raise ValueError(f"--goniometer: cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"--goniometer: {path} is not valid TOML: {exc}") from None
    from . import goniometer

    try:
        return goniometer({"name": spec.get("name", path.stem), "axes": spec.get("axes")})
    except ValueError as exc:
        raise ValueError(f"--goniometer: {path}: {exc}") from None


def _orientation_args(p: argparse.ArgumentParser, *, default_stage: str | None) -> None:
    p.add_argument("--stage", choices=O.STAGES, default=default_stage,
                   help="goniometer stage: omega (one circle), omega-chi / omega-phi (two), or "
                        "shortest-path (every circle free, shortest path through the plate)"
                        + (f"; default {default_stage}" if default_stage else
                           "; default shortest-path with --vertical, else none"))
    p.add_argument("--scattering-plane", choices=O.SCATTERING_PLANES, default="vertical",
                   help="plane of the diffracted beam: vertical (up) or horizontal (+y); "
                        "default vertical")
    p.add_argument("--goniometer", metavar="NAME|FILE",
                   help="stage whose angles are printed (shortest-path): omega-chi-phi "
                        "(default), dfxrm, or a TOML file with [[axes]] name/direction/sense")
    p.add_argument("--surface-normal", metavar="DIR",
                   help="plate normal (shortest-path), e.g. [001] or (100); default the beam "
                        "direction of the mount")
    p.add_argument("--two-theta-range", nargs=2, type=float, metavar=("LOW", "HIGH"),
                   help="2theta range the instrument reaches (deg)")


def add_plan(sub) -> None:
    p = sub.add_parser(
        "plan", help="plan one Bragg experiment: angles, path, lens, 3D scene",
        description="One energy, the reflections you name (exact members, e.g. 1 0 -2), the "
                    "crystal's mount: structure factors, Bragg angles, absorption, the goniometer "
                    "angles of every solution, the path through the plate, the objective lens; "
                    "a 3D figure (PNG/PDF) and a glTF scene on request.")
    p.add_argument("phase", help="built-in phase name, or a CIF file")
    e = p.add_mutually_exclusive_group(required=True)
    e.add_argument("--energy", type=float, metavar="KEV", help="photon energy (keV)")
    e.add_argument("--wavelength", type=float, metavar="A", help="wavelength (Angstrom)")
    p.add_argument("--reflection", nargs="+", metavar="HKL",
                   help="reflection(s) to plan, exact members: 111, 1-102, '1 0 -2', (1,0,-2)")
    p.add_argument("--vertical", metavar="DIR",
                   help="crystal direction [uvw] or plane normal (hkl) along lab z (up)")
    p.add_argument("--beam", metavar="DIR",
                   help="crystal direction along the beam at zero angles (the plate normal); "
                        "default vertical x [001]")
    _orientation_args(p, default_stage=None)
    p.add_argument("--thickness-mm", type=float, help="plate thickness (mm)")
    p.add_argument("--density", type=float, help="density (g/cm3) for the absorption; "
                                                 "default the crystal's")
    p.add_argument("--lens", type=Path, metavar="FILE", help="objective lens (CRL) TOML file")
    lens = p.add_mutually_exclusive_group()
    lens.add_argument("--lens-distance-mm", type=float, metavar="MM",
                      help="sample-detector distance for the lens' imaging condition")
    lens.add_argument("--magnification", type=float, help="the lens' magnification")
    p.add_argument("--solution", type=int, default=0, choices=(0, 1),
                   help="solution shown in the 3D scene (default 0)")
    p.add_argument("--sample-size-mm", type=float, nargs=3, metavar=("X", "Y", "Z"),
                   help="sample extent along its x (beam at zero), y, z axes, for the scene; "
                        "default a plate 0.2 x 1 x 1 (thickness-mm along x if given)")
    p.add_argument("--figure-3d", type=Path, metavar="PATH",
                   help="write the 3D scene as a figure (.png or .pdf)")
    p.add_argument("--gltf", type=Path, metavar="PATH", help="write the 3D scene as glTF (.gltf)")
    p.add_argument("-o", "--output", type=Path, help="write the plan dataset (.nc or .nxs)")
    p.set_defaults(func=cmd_plan)


def _mount(args):
    if args.vertical is None:
        if args.beam is not None:
            raise ValueError("--beam: needs --vertical as well")
        return None
    return {"vertical": args.vertical, "beam": args.beam}


def cmd_plan(args) -> int:
    from . import plan, plan_table, write_sweep

    mount = _mount(args)
    stage = args.stage or ("shortest-path" if mount is not None else "omega")
    sp = stage == "shortest-path"
    if mount is None and (args.figure_3d or args.gltf):
        raise ValueError("--figure-3d, --gltf: need a mount (--vertical) to orient the crystal")
    if not sp and (args.goniometer or args.surface_normal):
        raise ValueError("--goniometer, --surface-normal: only with --stage shortest-path")
    lens_kw = {}
    if args.lens is not None:
        if args.lens_distance_mm is None and args.magnification is None:
            raise ValueError("--lens: give --lens-distance-mm or --magnification as well")
        lens_kw = dict(lens=args.lens, lens_distance_mm=args.lens_distance_mm,
                       lens_magnification=args.magnification)
    elif args.lens_distance_mm is not None or args.magnification is not None:
        raise ValueError("--lens-distance-mm, --magnification: need --lens")
    ds = plan(args.phase, energy_kev=args.energy, wavelength_a=args.wavelength,
              reflection=args.reflection, mount=mount, stage=stage if mount else "omega",
              scattering_plane=args.scattering_plane,
              goniometer=_goniometer(args.goniometer) if sp and mount else None,
              surface_normal=args.surface_normal if sp and mount else None,
              thickness_mm=args.thickness_mm, density=args.density,
              two_theta_range=tuple(args.two_theta_range) if args.two_theta_range else None,
              **lens_kw)
    print(plan_table(ds))
    if args.output:
        print(f"wrote {write_sweep(ds, args.output)}")
    if args.figure_3d or args.gltf:
        _scene_outputs(args, ds, mount, stage)
    return 0


def _scene_outputs(args, ds, mount, stage) -> None:
    from .plot.geometry3d import experiment_scene, plot_experiment_3d, write_gltf

    if args.reflection is None or len(args.reflection) != 1:
        raise ValueError("--figure-3d, --gltf: name one --reflection for the scene")
    size = args.sample_size_mm or (args.thickness_mm or 0.2, 1.0, 1.0)
    energy = float(ds.energy[0])
    scene = experiment_scene(
        args.phase, energy_kev=energy, reflection=args.reflection[0], mount=mount, stage=stage,
        scattering_plane=args.scattering_plane,
        goniometer=_goniometer(args.goniometer) if stage == "shortest-path" else None,
        surface_normal=args.surface_normal if stage == "shortest-path" else None,
        solution=args.solution, sample_size_mm=size)
    if args.figure_3d:
        _save_figure(scene, args.figure_3d, plot_experiment_3d)
        print(f"wrote {args.figure_3d}")
    if args.gltf:
        print(f"wrote {write_gltf(scene, args.gltf)}")


def _save_figure(scene, path: Path, plot) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .nexus import atomic_output

    if path.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise ValueError(f"--figure-3d: {path}: write .png, .pdf or .svg")
    fig = plot(scene)
    try:
        with atomic_output(path) as tmp:
            fig.savefig(tmp, format=path.suffix[1:].lower(), dpi=150, bbox_inches="tight")
    finally:
        plt.close(fig)


def add_sweep(sub) -> None:
    p = sub.add_parser("sweep", help="plan an experiment: reflections against energy",
                       description="Bragg angles, reachability and transmission over an energy range "
                                   "(or one energy); prints the reachable reflections at one energy "
                                   "and writes the dataset.")
    p.add_argument("phase", help="built-in phase name, or a CIF file")
    p.add_argument("--energy", nargs="+", type=float, metavar="KEV", required=True,
                   help="one energy E, or LOW HIGH N: a range in keV and its number of points")
    p.add_argument("--at", type=float, help="energy (keV) for the printed table (default: the middle)")
    p.add_argument("--thickness-mm", type=float, nargs="+", help="sample thickness(es) in mm")
    p.add_argument("--reflection", nargs="+", metavar="HKL",
                   help="reflections to sweep, exact members (default: every family reachable)")
    p.add_argument("--mount", nargs="+", metavar="DIR",
                   help="crystal direction along the goniometer axis (up), and optionally the one "
                        "along the beam, e.g. [0001] [2-1-10]")
    _orientation_args(p, default_stage="omega")
    p.add_argument("-o", "--output", type=Path, help="write the dataset (.nc or .nxs)")
    p.set_defaults(func=cmd_sweep)


def cmd_sweep(args) -> int:
    from . import sweep, sweep_table, write_sweep

    energy = _energy_values(args.energy)
    mount = None
    if args.mount:
        if len(args.mount) > 2:
            raise ValueError(f"--mount: give VERTICAL [BEAM], got {len(args.mount)} directions")
        mount = {"vertical": args.mount[0], "beam": args.mount[1] if len(args.mount) == 2 else None}
    sp = args.stage == "shortest-path"
    if not sp and (args.goniometer or args.surface_normal):
        raise ValueError("--goniometer, --surface-normal: only with --stage shortest-path")
    ds = sweep(args.phase, energy_kev=energy, thickness_mm=args.thickness_mm,
               two_theta_range=tuple(args.two_theta_range) if args.two_theta_range else None,
               reflections=args.reflection, mount=mount, stage=args.stage,
               scattering_plane=args.scattering_plane,
               goniometer=_goniometer(args.goniometer) if sp else None,
               surface_normal=args.surface_normal if sp else None)
    at = args.at if args.at is not None else float(energy[len(energy) // 2]) if len(energy) % 2 \
        else float(energy.mean())
    print(sweep_table(ds, at, thickness_mm=args.thickness_mm[0] if args.thickness_mm else None))
    if args.output:
        print(f"wrote {write_sweep(ds, args.output)}")
    return 0
