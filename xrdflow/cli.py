"""The ``xrdflow`` command: argument parsing and calls to the public functions only.

Every error a user can cause (a missing file, a bad parameter, a bad frame) becomes one
line on stderr naming the file or parameter, and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from pathlib import Path

from . import options as O

EXIT_USAGE = 2
EXIT_FAILED = 1


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one clear line, exit 2 (argparse's convention)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


class _DeprecatedAlias(argparse.Action):
    """An option with an old spelling kept as an alias: the old one warns (DeprecationWarning)."""

    def __init__(self, *args, deprecated: tuple[str, ...] = (), **kwargs):
        self.deprecated = deprecated
        super().__init__(*args, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string in self.deprecated:
            message = f"{option_string}: deprecated; use '{self.option_strings[0]}' instead"
            warnings.warn(message, DeprecationWarning, stacklevel=2)
            print(f"xrdflow: warning: {message}", file=sys.stderr)  # Python hides DeprecationWarning
        setattr(namespace, self.dest, values)


def _add_ingest(sub) -> None:
    p = sub.add_parser("ingest", help="store detector frames in one raw NeXus file (bit-exact)",
                       description="Store detector frames (any format fabio reads) in one raw "
                                   "NeXus file: bit-exact, compressed, resumable.")
    p.add_argument("sources", nargs="+", help="a folder, a glob pattern or frame files")
    p.add_argument("-o", "--output", required=True, type=Path, help="raw NeXus file to write")
    p.add_argument("--energy", dest="energy_kev", required=True, type=float, help="X-ray energy in keV")
    p.add_argument("--log", dest="strain_log", type=Path, help="CSV log (frame, applied_strain, ...)")
    p.add_argument("--compression", default=O.DEFAULT_COMPRESSION, choices=O.COMPRESSIONS)
    p.add_argument("--skip-bad", action="store_true", help="record bad frames and go on")
    p.add_argument("--detector", help="detector name (e.g. Perkin), stored as its description")
    p.add_argument("--workers", type=int, help="reader threads (default: CPU count)")
    p.add_argument("--overwrite", action="store_true", help="ingest again from scratch")
    p.set_defaults(func=_cmd_ingest)


def _cmd_ingest(args) -> int:
    from . import ingest

    sources = args.sources[0] if len(args.sources) == 1 else args.sources
    report = ingest(sources, args.output, energy_kev=args.energy_kev, strain_log=args.strain_log,
                    compression=args.compression, skip_bad=args.skip_bad, detector=args.detector,
                    n_workers=args.workers, overwrite=args.overwrite, progress=sys.stderr.isatty())
    print(report)
    return 0


def _add_run(sub) -> None:
    p = sub.add_parser("run", help="run a whole reduction from a TOML config",
                       description="Run ingest -> calibrate -> integrate -> fit -> strain -> write "
                                   "from one config file (see workflows/tensile_test.toml).")
    p.add_argument("config", type=Path, help="workflow TOML file")
    p.add_argument("--scheduler", help="override [compute] scheduler: local, threads, "
                                       "synchronous, processes or tcp://host:port")
    p.set_defaults(func=_cmd_run)


def _cmd_run(args) -> int:
    from .workflow import load_config, run_workflow

    # a --scheduler replaces the config's [compute] jobqueue (load_config logs it)

    overrides = {"compute": {"scheduler": args.scheduler}} if args.scheduler else None
    run_workflow(load_config(args.config, overrides=overrides), progress=sys.stderr.isatty())
    return 0


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="the whole workflow on a synthetic Mg tensile test",
                       description="Make a synthetic LaB6 image and Mg tensile test with known truth, "
                                   "run the full workflow on them, and answer the notebook's questions.")
    p.add_argument("--out", type=Path, default=Path("xrdflow-demo"), help="output folder (default xrdflow-demo)")
    p.add_argument("--frames", type=int, default=60, help="frames of the tensile test (default 60)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=None,
                   help="detector size in pixels (default the full 2048; smaller bins the same panel)")
    p.add_argument("--scheduler", help="override the demo's scheduler (default: dask's threads; 'local' for a "
                   "local cluster with the dashboard)")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args) -> int:
    from .workflow.demo import run_demo

    shape = (args.size, args.size) if args.size else None
    run_demo(args.out, n_frames=args.frames, seed=args.seed, shape=shape, scheduler=args.scheduler,
             progress=sys.stderr.isatty())
    return 0


def _add_calibrate(sub) -> None:
    p = sub.add_parser("calibrate", help="refine the detector geometry on a calibrant image",
                       description="Automatic, headless calibration from a rough guess: rings found "
                                   "and assigned, six geometry parameters refined.")
    p.add_argument("image", type=Path, help="calibrant image (any format fabio reads)")
    p.add_argument("calibrant", help="calibrant name (LaB6, CeO2, Si...) or a .D file")
    p.add_argument("--energy", dest="energy_kev", type=float, required=True, help="X-ray energy in keV")
    p.add_argument("--detector", required=True, help="pyFAI detector name (e.g. Perkin, Pilatus1M)")
    p.add_argument("--distance-mm", type=float, required=True, help="rough sample-detector distance")
    p.add_argument("--center", nargs=2, type=float, metavar=("X", "Y"), help="rough beam centre (px)")
    p.add_argument("--flipud", action="store_true", help="the geometry applies to the image flipped "
                                                         "up-down (Dioptas convention)")
    p.add_argument("--mask", help="mask file (fabio-readable; non-zero = masked)")
    p.add_argument("--d-min", type=float, help="leave out calibrant rings below this d-spacing (A)")
    p.add_argument("--max-rings", type=int, help="use at most this many rings")
    p.add_argument("-o", "--poni", type=Path, required=True, help="PONI file to write")
    p.add_argument("--report", type=Path, help="text report to write")
    p.add_argument("--figure", type=Path, help="diagnostic figure to write (PNG/PDF)")
    p.set_defaults(func=_cmd_calibrate)


def _cmd_calibrate(args) -> int:
    from . import calibrate

    result = calibrate(str(args.image), args.calibrant, energy_kev=args.energy_kev, detector=args.detector,
                       distance_mm=args.distance_mm, beam_center_px=tuple(args.center) if args.center else None,
                       orientation="flipud" if args.flipud else "as_read", mask=args.mask,
                       d_min=args.d_min, max_rings=args.max_rings, poni=args.poni, report=args.report,
                       figure=args.figure)
    print(result.report())
    return 0


def _sectors_arg(text: str | None):
    if text is None:
        return None
    if text.isdigit():
        return int(text)
    if text.startswith("axial-transverse"):
        from . import sectors_around_axis

        parts = text.split(":")[1:]
        return sectors_around_axis(*(float(p) for p in parts))
    raise argparse.ArgumentTypeError(f"--sectors: expected N or axial-transverse[:AXIS[:HALFWIDTH]], got {text!r}")


def _add_integrate(sub) -> None:
    p = sub.add_parser("integrate", help="azimuthally integrate a raw NeXus file into patterns",
                       description="Integrate every frame of a raw NeXus file with pyFAI, in parallel, "
                                   "and write the patterns as NXazint1d/NXazint2d.")
    p.add_argument("raw", type=Path, help="raw NeXus file (from xrdflow ingest)")
    p.add_argument("--poni", type=Path, required=True, help="geometry (PONI file)")
    p.add_argument("--flipud", action="store_true", help="the PONI applies to the image flipped up-down")
    p.add_argument("--npt", type=int, required=True, help="radial bins")
    p.add_argument("--unit", default=O.DEFAULT_UNIT, choices=O.INTEGRATION_UNITS,
                   help=f"radial unit (default {O.DEFAULT_UNIT})")
    p.add_argument("--range", nargs=2, type=float, metavar=("LOW", "HIGH"), help="radial range")
    p.add_argument("--mask", help="mask file (fabio-readable; non-zero = masked)")
    p.add_argument("--sectors", type=_sectors_arg, help="N equal sectors, or axial-transverse[:AXIS[:HALFWIDTH]]")
    p.add_argument("--method", default=",".join(O.DEFAULT_METHOD),
                   help="pyFAI method split,algorithm,implementation (default %(default)s)")
    p.add_argument("--polarization", type=float, default=O.DEFAULT_POLARIZATION,
                   help="polarization factor, -1..1 (default: no correction, as pyFAI; 0.99 for a "
                        "horizontally polarised synchrotron beam)")
    p.add_argument("--dark", help="dark image subtracted from every frame (fabio-readable)")
    p.add_argument("--flat", help="flat field every frame is divided by (fabio-readable)")
    p.add_argument("--error-model", choices=O.ERROR_MODELS,
                   help="also write the Poisson error of every bin (coordinate I_errors)")
    p.add_argument("--engine", choices=O.ENGINES, default=O.DEFAULT_ENGINE,
                   help="auto (default): xrdflow's fused engine where it is equivalent, else pyFAI")
    p.add_argument("-o", "--output", type=Path, required=True, help="patterns file to write")
    p.add_argument("--scheduler", default="threads", help="dask scheduler (threads, local, tcp://...)")
    p.set_defaults(func=_cmd_integrate)


def _cmd_integrate(args) -> int:
    from . import Geometry, integrate, open_frames, write_patterns
    from .cluster import ComputeConfig, compute_context

    geometry = Geometry.from_poni(args.poni, orientation="flipud" if args.flipud else None)
    patterns = integrate(open_frames(args.raw), geometry, npt=args.npt, unit=args.unit,
                         radial_range=tuple(args.range) if args.range else None, mask=args.mask,
                         azimuth_sectors=args.sectors, method=tuple(args.method.split(",")),
                         polarization_factor=args.polarization, dark=args.dark, flat=args.flat,
                         error_model=args.error_model, engine=args.engine)
    with compute_context(ComputeConfig(scheduler=args.scheduler), echo=print):
        write_patterns(patterns, args.output)
    print(f"{args.output}: {patterns.sizes['frame']} frames x {patterns.shape[-1]} bins")
    return 0


def _add_fit(sub) -> None:
    p = sub.add_parser("fit", help="fit peaks (Gaussian or other shapes) to integrated patterns",
                       description="Fit every peak of every pattern (from xrdflow integrate, or Dioptas "
                                   ".xy / xrdfit .dat files) and write the result as NeXus.")
    p.add_argument("patterns", nargs="+", help="patterns file (NXazint) or text patterns (.xy, .dat)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--phase", help="phase for --reflections (Mg, Ti-hcp, CeO2, a CIF...)")
    src.add_argument("--centers", "--centres", dest="centers", type=float, nargs="+", action=_DeprecatedAlias,
                     deprecated=("--centres",), help="peak centers in the radial unit (--centres: deprecated)")
    p.add_argument("--reflections", nargs="+", help="hkl of the reflections to fit (with --phase)")
    p.add_argument("--half-width", type=float, help="half width of each window (radial unit)")
    p.add_argument("--shape", choices=O.SHAPES, default=O.DEFAULT_SHAPE,
                   help="peak profile (default gaussian, the notebook's model)")
    p.add_argument("--background", default=O.DEFAULT_BACKGROUND,
                   help="background under each peak or group: constant, linear (default) or chebyshevN "
                        f"(Chebyshev polynomial of order N <= {O.MAX_CHEBYSHEV_ORDER})")
    p.add_argument("--share", nargs="+", choices=list(O.SHAREABLE),
                   help="parameters the peaks of a joint group share (with --overlap joint)")
    p.add_argument("--link", choices=O.LINKS,
                   help="strain: the positions of one phase's peaks in a joint group tied by one d/d0")
    p.add_argument("--track", action="store_true",
                   help="windows follow peaks that drift across the frames")
    p.add_argument("--track-every", type=int, help="frame step of tracking's first pass")
    p.add_argument("--error-model", choices=O.ERROR_MODELS,
                   help="fit weights: poisson = 1/max(y, 1), counting statistics (default: none)")
    p.add_argument("--overlap", choices=O.OVERLAP_POLICIES, default=O.DEFAULT_OVERLAP,
                   help="a window holding another listed peak's center: warn (default), raise, drop, "
                        "or joint (fit overlapping peaks together on one background)")
    p.add_argument("--unit", help="radial unit of text patterns if their header does not say")
    p.add_argument("--wavelength-a", type=float, help="wavelength (A) of text patterns in 2theta")
    p.add_argument("--reference", default=O.STRAIN_REFERENCES[0], choices=O.STRAIN_REFERENCES,
                   help="strain reference: the first frame, or the reflections' own d0")
    p.add_argument("-o", "--output", type=Path, required=True, help="result file (NeXus) to write")
    p.set_defaults(func=_cmd_fit)


def _cmd_fit(args) -> int:
    from . import fit_peaks, lattice_strain, open_patterns, read_patterns, write_result

    first = Path(args.patterns[0])
    if len(args.patterns) == 1 and first.suffix in (".nxs", ".h5", ".hdf5", ".nx5"):
        patterns = open_patterns(first)
    else:
        patterns = read_patterns(args.patterns if len(args.patterns) > 1 else args.patterns[0],
                                 unit=args.unit, wavelength_a=args.wavelength_a)
    if args.phase:
        if not args.reflections:
            raise ValueError("--reflections: give the hkl of the reflections to fit with --phase")
        energy = patterns.attrs.get("energy_kev")
        if energy is None:
            raise ValueError("--wavelength-a: the patterns do not say their energy")
        from .crystal import select_reflections  # the selection the workflow's [peaks] uses too

        peaks = select_reflections(args.phase, args.reflections, energy_kev=float(energy))
    else:
        if args.half_width is None:
            raise ValueError("--half-width: needed with --centers")
        peaks = args.centers
    fits = fit_peaks(patterns, peaks, half_width=args.half_width, background=args.background,
                     error_model=args.error_model, overlap=args.overlap, shape=args.shape, share=args.share,
                     link=args.link, track=args.track, track_every=args.track_every)
    result = lattice_strain(fits.compute(), reference=args.reference)
    write_result(result, args.output)
    status = result["status"].values
    print(f"{args.output}: {status.size} fits, {int((status == 0).sum())} ok")
    return 0


def _add_strain(sub) -> None:
    p = sub.add_parser("strain", help="strain tensor of each reflection from sector fits",
                       description="Fit the strain tensor of each reflection (axial, transverse, shear, with "
                                   "errors) to the lattice strains of the azimuthal sectors of a result file "
                                   "(xrdflow fit or run with sectors), frame by frame.")
    p.add_argument("result", type=Path, help="result file (NeXus) with an azimuth dimension")
    p.add_argument("--load-azimuth", type=float, default=0.0,
                   help="azimuth (pyFAI chi, degrees) of the load axis on the detector (default 0)")
    p.add_argument("--model", choices=O.STRAIN_TENSOR_MODELS, default=O.STRAIN_TENSOR_MODELS[0])
    p.add_argument("--reference", choices=O.TENSOR_REFERENCES, default=O.TENSOR_REFERENCES[0],
                   help="strain-free d0: the first frame (default), the fits' d0, fitted, or the unstrained direction")
    p.add_argument("--poisson", type=float, default=0.3,
                   help="Poisson-like ratio of the plane-stress out-of-plane assumption (default 0.3)")
    p.add_argument("--min-sectors", type=int, default=4, help="good sectors a frame needs (default 4)")
    p.add_argument("--wavelength-a", type=float, help="wavelength (A) if the result does not say it")
    p.add_argument("--elastic", help="single-crystal elastic constants by name (Fe, Ni, Cu, Al, Ti, Mg): adds stress")
    p.add_argument("--approximation", choices=O.DEC_APPROXIMATIONS, default="kroner",
                   help="diffraction elastic constants for --elastic (default kroner)")
    p.add_argument("-o", "--output", type=Path,
                   help="write the tensor to this file; default: into RESULT, as its entry 'strain_tensor'")
    p.add_argument("--figure", type=Path, help="also draw the components against applied strain (.png, .pdf)")
    p.set_defaults(func=_cmd_strain)


def _cmd_strain(args) -> int:
    from . import open_result, strain_tensor, write_result

    fits = open_result(args.result)
    tensor = strain_tensor(fits, reference=args.reference, load_azimuth_deg=args.load_azimuth, model=args.model,
                           poisson_ratio=args.poisson, min_sectors=args.min_sectors, wavelength_a=args.wavelength_a,
                           elastic=args.elastic, approximation=args.approximation).compute()
    if args.output is None:  # next to the fits, as `xrdflow run` does
        out = write_result(tensor, args.result, entry="strain_tensor", append=True)
        where = f"{out}::/strain_tensor"
    else:
        out = write_result(tensor, args.output)
        where = str(out)
    if args.figure is not None:
        from .plot.run import tensor_curves

        tensor_curves(tensor).savefig(args.figure, dpi=150)
    ok = int((tensor["status"].values == 0).sum())
    print(f"{where}: {tensor.sizes['frame']} frames x {tensor.sizes['peak']} reflections, {ok} tensors ok")
    last = tensor.isel(frame=-1)
    for peak in tensor["peak"].values:
        row = last.sel(peak=peak)
        print(f"  {peak}: last frame axial {float(row.strain_axial):+.3e} +- {float(row.strain_axial_error):.1e}, "
              f"transverse {float(row.strain_transverse):+.3e} +- {float(row.strain_transverse_error):.1e}, "
              f"shear {float(row.strain_shear):+.3e} +- {float(row.strain_shear_error):.1e}")
    return 0


def _add_sweep(sub) -> None:
    from .cli_plan import add_sweep

    add_sweep(sub)


def _add_plan(sub) -> None:
    from .cli_plan import add_plan

    add_plan(sub)


def _add_app(sub) -> None:
    from .cli_app import add_app

    add_app(sub)


_COMMANDS = [_add_demo, _add_run, _add_ingest, _add_calibrate, _add_integrate, _add_fit, _add_strain,
             _add_sweep, _add_plan, _add_app]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(prog="xrdflow", description="Lazy, parallel reduction of in-situ X-ray diffraction.")
    parser.add_argument("--version", action="version", version=f"xrdflow {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in _COMMANDS:
        add(sub)
    return parser


#: set once Ctrl-C (SIGINT) has reached this process: whatever fails after it is part of
#: the interruption (a teardown the interrupt cut short), and the exit status stays 130
_INTERRUPTED = False


def _on_sigint(signum, frame) -> None:
    global _INTERRUPTED
    _INTERRUPTED = True
    raise KeyboardInterrupt


def _default_sigint() -> None:
    """Ctrl-C raises KeyboardInterrupt (exit 130), whatever an imported library installed
    (dask-jobqueue replaces the handler on import with one that exits with status 0), and
    is remembered: an error that follows it (a cluster's teardown cut short) still exits 130."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread() \
            and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, _on_sigint)


def _raised_by_sigint_lambda(exc: BaseException) -> bool:
    """Whether ``exc`` comes from a signal handler of dask-jobqueue's (its ``sys.exit()``)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and "dask_jobqueue" in tb.tb_frame.f_code.co_filename


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # dask.distributed logs every connection at INFO; only -vv shows that. silx (under
    # pyFAI) warns on every start that the optional pyopencl is missing; we never use it.
    distributed_level = level if args.verbose >= 2 else logging.WARNING
    logging.getLogger("distributed").setLevel(distributed_level)
    import dask  # distributed sets its loggers from dask's config when imported (later, by a command)

    dask.config.set({"distributed.logging.distributed": logging.getLevelName(distributed_level).lower()})
    logging.getLogger("silx.opencl").setLevel(level if args.verbose >= 2 else logging.ERROR)
    _default_sigint()
    # distributed warns when the dashboard's port is taken and binds another; the CLI prints
    # the addresses it bound, so the warning would only add lines to a one-line error
    warnings.filterwarnings("ignore", message=r"Port \d+ is already in use", category=UserWarning)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("xrdflow: interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:  # dask-jobqueue's SIGINT handler is `lambda *_: sys.exit()`
        if exc.code in (None, 0) and _raised_by_sigint_lambda(exc):
            print("xrdflow: interrupted", file=sys.stderr)
            return 130
        raise
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, OSError, KeyError, RuntimeError, ImportError) as exc:
        if _INTERRUPTED:  # raised while Ctrl-C was being handled: the run was interrupted
            logging.getLogger("xrdflow").debug("after Ctrl-C", exc_info=True)
            print("xrdflow: interrupted", file=sys.stderr)
            return 130
        if args.verbose:
            raise
        print(f"xrdflow {args.command}: error: {exc}", file=sys.stderr)
        from .nexus import disk_full_errno

        if disk_full_errno(exc):
            # HDF5 cannot close a file whose last write failed, and freeing its ids later
            # crashes the interpreter (h5py#914, #1775, #2160). The error is reported and
            # the partial file handled (removed, or kept for a resume); leave at once.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_FAILED)
        return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
