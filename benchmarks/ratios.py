"""Run every ratio script (benchmarks/ratio_*.py) and print our figures against the baselines
measured in the same run.

    python benchmarks/ratios.py            # all of them
    python benchmarks/ratios.py ingest fit # some
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    sys.path.insert(0, str(HERE.parent))
    names = argv or sorted(p.stem[len("ratio_"):] for p in HERE.glob("ratio_*.py"))
    failed = []
    for name in names:
        print(f"== {name}", flush=True)
        try:
            module = importlib.import_module(f"benchmarks.ratio_{name}")
            saved, sys.argv = sys.argv, [f"ratio_{name}.py"]  # each with its own defaults, not our names
            try:
                module.main()
            finally:
                sys.argv = saved
        except Exception as exc:  # report and go on with the others
            print(f"   failed: {type(exc).__name__}: {exc}", flush=True)
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
