"""The planner's commands (part of :mod:`xrdflow.cli`): ``xrdflow plan`` (one experiment) and ``xrdflow sweep`` (ranges).

Argument parsing and calls to the public functions only (as :mod:`xrdflow.cli`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from . import options as O
from .units import HC_KEV_A


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


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-anomalous", action="store_true",
                   help="structure factors from f0 alone (no Chantler f', f'' at the energy)")
    p.add_argument("--no-debye-waller", action="store_true",
                   help="ignore the CIF's displacement parameters (no Debye-Waller factor)")


def _session_arg(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--session", type=Path, metavar="FILE",
                   help=f"a session TOML file saved by the planner app (`xrdflow app`): it gives "
                        f"every input of the {what}; then only output options may be added")


def add_plan(sub) -> None:
    p = sub.add_parser(
        "plan", help="plan one Bragg experiment: angles, path, lens, 3D scene, report",
        description="One energy, the reflections you name (exact members, e.g. 1 0 -2), the "
                    "crystal's mount: structure factors, Bragg angles, absorption, the goniometer "
                    "angles of every solution, the path through the plate, the objective lens; "
                    "a 3D scene (PNG/PDF figure, glTF) and a one-page report PDF on request.")
    p.add_argument("phase", nargs="?", help="built-in phase name, or a CIF file")
    _session_arg(p, "plan")
    e = p.add_mutually_exclusive_group()
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
    _model_args(p)
    p.add_argument("--lens", type=Path, metavar="FILE", help="objective lens (CRL) TOML file")
    lens = p.add_mutually_exclusive_group()
    lens.add_argument("--lens-distance-mm", type=float, metavar="MM",
                      help="sample-detector distance for the lens' imaging condition")
    lens.add_argument("--magnification", type=float, help="the lens' magnification")
    s = p.add_argument_group("3D scene and report (need --vertical, and one --reflection)")
    s.add_argument("--solution", type=int, default=None, choices=(0, 1),
                   help="solution shown in the 3D scene (default 0)")
    s.add_argument("--sample-size-mm", type=float, nargs=3, metavar=("W", "H", "T"),
                   help="the plate's width, height and thickness (mm); thickness along the plate "
                        "normal; default 1 x 1 x (--thickness-mm or 0.2)")
    s.add_argument("--beam-size-mm", type=float, nargs=2, metavar=("H", "V"),
                   help="beam cross-section, horizontal x vertical (mm); default 0.5 x 0.1")
    s.add_argument("--cells", type=int, nargs=3, metavar=("NA", "NB", "NC"),
                   help="unit cells drawn along a, b, c (default 1 1 1)")
    s.add_argument("--no-bonds", action="store_true", help="draw no bonds")
    s.add_argument("--polyhedra", action="store_true", help="draw coordination polyhedra")
    s.add_argument("--true-distances", action="store_true",
                   help="draw the lens and detector at their true distances (default: long "
                        "distances are drawn shortened, and the scene says so)")
    s.add_argument("--detector-distance-mm", type=float, metavar="MM",
                   help="sample-detector distance drawn without a lens")
    s.add_argument("--figure-3d", type=Path, metavar="PATH",
                   help="write the 3D scene as a figure (.png, .pdf or .svg)")
    s.add_argument("--gltf", type=Path, metavar="PATH",
                   help="write the 3D scene as glTF 2.0 (.gltf or .glb), for Blender")
    s.add_argument("--report", type=Path, metavar="PATH",
                   help="write the one-page report PDF for the logbook")
    p.add_argument("-o", "--output", type=Path, help="write the plan dataset (.nc or .nxs)")
    p.set_defaults(func=cmd_plan)


_SCENE_FLAGS = ("solution", "sample_size_mm", "beam_size_mm", "cells", "detector_distance_mm")


def _mount(args):
    if args.vertical is None:
        if args.beam is not None:
            raise ValueError("--beam: needs --vertical as well")
        return None
    return {"vertical": args.vertical, "beam": args.beam}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _refuse_with_session(args, names) -> None:
    given = [_flag(n) for n in names if getattr(args, n, None) not in (None, False)]
    if given:
        raise ValueError(f"--session: gives every input; do not add {', '.join(given)} "
                         f"(edit the session file instead)")


def _plan_inputs_from_args(args) -> tuple[dict, dict, dict]:
    """(plan kwargs, scene kwargs, report inputs) from the command line."""
    if args.phase is None:
        raise ValueError("phase: give a phase (a built-in name or a CIF file), or --session")
    if args.energy is None and args.wavelength is None:
        raise ValueError("--energy, --wavelength: give one (or --session)")
    mount = _mount(args)
    stage = args.stage or ("shortest-path" if mount is not None else "omega")
    sp = stage == "shortest-path"
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
    size = args.sample_size_mm
    thickness = args.thickness_mm
    if size is not None and thickness is not None and abs(size[2] - thickness) > 1e-12:
        raise ValueError(f"--sample-size-mm, --thickness-mm: the plate's thickness is given "
                         f"twice ({size[2]:g} and {thickness:g} mm)")
    if size is not None and thickness is None:
        thickness = size[2]
    plan_kw = dict(phase=args.phase, energy_kev=args.energy, wavelength_a=args.wavelength,
                   reflection=args.reflection, mount=mount, stage=stage if mount else "omega",
                   scattering_plane=args.scattering_plane,
                   goniometer=_goniometer(args.goniometer) if sp and mount else None,
                   surface_normal=args.surface_normal if sp and mount else None,
                   thickness_mm=thickness, density=args.density,
                   two_theta_range=tuple(args.two_theta_range) if args.two_theta_range else None,
                   anomalous=not args.no_anomalous,
                   debye_waller=None if args.no_debye_waller else "cif", **lens_kw)
    scene_kw = dict(solution=args.solution or 0,
                    sample_size_mm=tuple(size) if size else (1.0, 1.0, thickness or 0.2),
                    cells=tuple(args.cells) if args.cells else (1, 1, 1),
                    bonds=not args.no_bonds, polyhedra=args.polyhedra,
                    compact=not args.true_distances)
    if args.beam_size_mm:
        scene_kw["beam_size_mm"] = tuple(args.beam_size_mm)
    if args.detector_distance_mm is not None:
        scene_kw["detector_distance_mm"] = args.detector_distance_mm
    return plan_kw, scene_kw, {}


def _resolved(session):
    """The session with its reflection filled in as the app fills it (the strongest reachable
    one when the file names none), so the command line plans what the browser showed."""
    return session.resolved()


def _plan_inputs_from_session(args) -> tuple[dict, dict, dict, object]:
    from .session import load_session

    _refuse_with_session(args, (
        "phase", "energy", "wavelength", "reflection", "vertical", "beam", "stage",
        "goniometer", "surface_normal", "two_theta_range", "thickness_mm", "density",
        "no_anomalous", "no_debye_waller", "lens", "lens_distance_mm", "magnification",
        *_SCENE_FLAGS, "no_bonds", "polyhedra", "true_distances"))
    if args.scattering_plane != "vertical":
        raise ValueError("--session: gives every input; do not add --scattering-plane")
    if args.session.is_dir():
        raise ValueError(f"--session: {args.session} is a folder: give the session's TOML file")
    session = _resolved(load_session(args.session))
    return session.plan_kwargs(), session.scene_kwargs(), session.inputs(), session


def _check_outputs(args, plan_kw) -> None:
    """Every check of the scene outputs, before anything is computed or written."""
    scene_out = [f for f, v in (("--figure-3d", args.figure_3d), ("--gltf", args.gltf)) if v]
    for path, suffixes, flag in ((args.figure_3d, (".png", ".pdf", ".svg"), "--figure-3d"),
                                 (args.gltf, (".gltf", ".glb"), "--gltf"),
                                 (args.report, (".pdf",), "--report")):
        if path is not None and path.suffix.lower() not in suffixes:
            raise ValueError(f"{flag}: {path}: write {' or '.join(suffixes)}")
    mount = plan_kw.get("mount") is not None
    if scene_out and not mount:
        raise ValueError(f"{', '.join(scene_out)}: need a mount (--vertical) to orient the "
                         f"crystal")
    if not (scene_out or args.report) and args.session is None:
        given = [_flag(n) for n in ("solution", "sample_size_mm", "beam_size_mm", "cells",
                                    "detector_distance_mm", "no_bonds", "polyhedra",
                                    "true_distances") if getattr(args, n) not in (None, False)]
        given = [g for g in given if g != "--sample-size-mm"]  # it also sets the thickness
        if given:
            raise ValueError(f"{', '.join(given)}: options of the 3D scene: add --figure-3d, "
                             f"--gltf or --report")
    reflection = plan_kw.get("reflection")
    one = isinstance(reflection, str) or (isinstance(reflection, (list, tuple))
                                          and len(reflection) == 1)
    if mount and (scene_out or args.report) and not one:
        where = "[mount] reflection in the session" if args.session else "one --reflection"
        raise ValueError(f"{', '.join(scene_out + (['--report'] if args.report else []))}: "
                         f"the 3D scene shows one reflection: name {where}")
    if args.gltf is not None:
        import importlib.util

        if importlib.util.find_spec("trimesh") is None:
            raise ImportError('--gltf: needs trimesh: pip install trimesh (or pip install -e '
                              '".[viz]")')


def cmd_plan(args) -> int:
    from . import plan, plan_table, write_sweep

    session = None
    if args.session is not None:
        plan_kw, scene_kw, inputs, session = _plan_inputs_from_session(args)
    else:
        plan_kw, scene_kw, inputs = _plan_inputs_from_args(args)
    _check_outputs(args, plan_kw)
    phase = plan_kw.pop("phase")
    ds = plan(phase, **plan_kw)
    print(plan_table(ds))
    if args.output:
        print(f"wrote {write_sweep(ds, args.output)}")
    if args.figure_3d or args.gltf or args.report:
        _scene_outputs(args, ds, phase, plan_kw, scene_kw, inputs, session)
    return 0


def _scene_outputs(args, ds, phase, plan_kw, scene_kw, inputs, session) -> None:
    from .scene import scene_from_plan

    scene = scene_from_plan(ds, phase, **scene_kw) if plan_kw.get("mount") is not None else None
    if args.figure_3d:
        from .scene import save_image

        print(f"wrote {save_image(scene, args.figure_3d)}")
    if args.gltf:
        from .scene import write_gltf

        print(f"wrote {write_gltf(scene, args.gltf)}")
    if args.report:
        from . import sweep
        from .report import write_report

        # the session's energy range for the absorption plot, as the app draws it
        energy_sweep = None
        if session is not None:
            kw = session.sweep_kwargs()
            energy_sweep = sweep(kw.pop("phase"), **kw)
        print(f"wrote {write_report(args.report, ds, phase=phase, scene=scene, inputs=inputs, energy_sweep=energy_sweep)}")


def add_sweep(sub) -> None:
    p = sub.add_parser("sweep", help="plan an experiment: reflections against energy",
                       description="Bragg angles, reachability and transmission over an energy range "
                                   "(or one energy); prints the reachable reflections at one energy "
                                   "and writes the dataset.")
    p.add_argument("phase", nargs="?", help="built-in phase name, or a CIF file")
    _session_arg(p, "sweep")
    p.add_argument("--energy", nargs="+", type=float, metavar="KEV",
                   help="one energy E, or LOW HIGH N: a range in keV and its number of points")
    p.add_argument("--at", type=float, help="energy (keV) for the printed table (default: the middle)")
    p.add_argument("--thickness-mm", type=float, nargs="+", help="sample thickness(es) in mm")
    p.add_argument("--reflection", nargs="+", metavar="HKL",
                   help="reflections to sweep, exact members (default: every family reachable)")
    p.add_argument("--mount", nargs="+", metavar="DIR",
                   help="crystal direction along the goniometer axis (up), and optionally the one "
                        "along the beam, e.g. [0001] [2-1-10]")
    _orientation_args(p, default_stage="omega")
    _model_args(p)
    p.add_argument("-o", "--output", type=Path, help="write the dataset (.nc or .nxs)")
    p.set_defaults(func=cmd_sweep)


def cmd_sweep(args) -> int:
    import numpy as np

    from . import sweep, sweep_table, write_sweep

    if args.session is not None:
        from .session import load_session

        _refuse_with_session(args, ("phase", "energy", "thickness_mm", "reflection", "mount",
                                    "goniometer", "surface_normal", "two_theta_range",
                                    "no_anomalous", "no_debye_waller"))
        if args.stage != "omega" or args.scattering_plane != "vertical":
            raise ValueError("--session: gives every input; do not add --stage or "
                             "--scattering-plane")
        if args.session.is_dir():
            raise ValueError(f"--session: {args.session} is a folder: give the session's TOML "
                             f"file")
        session = load_session(args.session)
        kw = session.sweep_kwargs()
        ds = sweep(kw.pop("phase"), **kw)
        at = args.at
        if at is None:  # the session's own energy (given as one, or as a wavelength)
            at = (session.energy_kev if session.energy_kev is not None
                  else HC_KEV_A / session.wavelength_a)
        thick = kw.get("thickness_mm")
        print(sweep_table(ds, at, thickness_mm=None if thick is None else float(
            np.ravel(thick)[0])))
        if args.output:
            print(f"wrote {write_sweep(ds, args.output)}")
        return 0
    if args.phase is None:
        raise ValueError("phase: give a phase (a built-in name or a CIF file), or --session")
    if not args.energy:
        raise ValueError("--energy: give one energy E or LOW HIGH N (or --session)")
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
               surface_normal=args.surface_normal if sp else None,
               anomalous=not args.no_anomalous,
               debye_waller=None if args.no_debye_waller else "cif")
    at = args.at if args.at is not None else float(energy[len(energy) // 2]) if len(energy) % 2 \
        else float(energy.mean())
    print(sweep_table(ds, at, thickness_mm=args.thickness_mm[0] if args.thickness_mm else None))
    if args.output:
        print(f"wrote {write_sweep(ds, args.output)}")
    return 0
