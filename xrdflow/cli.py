"""The ``xrdflow`` command: argument parsing and calls to the public functions only.

Every error a user can cause (a missing file, a bad parameter, a bad frame) becomes one
line on stderr naming the file or parameter, and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

EXIT_USAGE = 2
EXIT_FAILED = 1


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one clear line, exit 2 (argparse's convention)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _add_ingest(sub) -> None:
    p = sub.add_parser("ingest", help="store detector frames in one raw NeXus file (bit-exact)",
                       description="Store detector frames (any format fabio reads) in one raw "
                                   "NeXus file: bit-exact, compressed, resumable.")
    p.add_argument("sources", nargs="+", help="a folder, a glob pattern or frame files")
    p.add_argument("-o", "--output", required=True, type=Path, help="raw NeXus file to write")
    p.add_argument("--energy", dest="energy_kev", required=True, type=float, help="X-ray energy in keV")
    p.add_argument("--log", dest="strain_log", type=Path, help="CSV log (frame, applied_strain, ...)")
    p.add_argument("--compression", default="bitshuffle", choices=["bitshuffle", "gzip", "none"])
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
                    workers=args.workers, overwrite=args.overwrite, progress=sys.stderr.isatty())
    print(report)
    return 0


_COMMANDS = [_add_ingest]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(prog="xrdflow", description="Lazy, parallel reduction of in-situ X-ray diffraction.")
    parser.add_argument("--version", action="version", version=f"xrdflow {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING - 10 * min(args.verbose, 2),
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("xrdflow: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, KeyError, RuntimeError) as exc:
        if args.verbose:
            raise
        print(f"xrdflow {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
