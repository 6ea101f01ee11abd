"""asv: the whole run (raw TIFFs -> strain dataset) on a small synthetic tensile test."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from benchmarks.common import cached
from benchmarks.ratio_run import make_inputs, write_config

SIZE = 512


class WholeRun:
    params = [[20, 80]]
    param_names = ["n_frames"]
    timeout = 900
    processes = 1
    repeat = (1, 2, 30.0)
    number = 1

    def setup_cache(self):
        def make(tmp, n):
            tmp.mkdir()
            make_inputs(tmp, n, SIZE)

        return {n: str(cached(f"run-inputs-{n}x{SIZE}", lambda tmp, n=n: make(tmp, n))) for n in self.params[0]}

    def setup(self, inputs, n_frames):
        base = Path(inputs[n_frames])
        found = {"frames": base / f"frames_{n_frames}", "log": base / f"frames_{n_frames}" / "log.csv",
                 "poni": base / "distinct" / "mg.poni"}
        self.tmp = Path(tempfile.mkdtemp(prefix="xrdflow-asv-run-"))
        self.config = write_config(self.tmp, found, self.tmp / "out")

    def teardown(self, inputs, n_frames):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _run(self):
        from xrdflow.workflow import load_config, run_workflow

        shutil.rmtree(self.tmp / "out", ignore_errors=True)
        run_workflow(load_config(self.config), echo=None)

    def time_run(self, inputs, n_frames):
        self._run()

    def peakmem_run(self, inputs, n_frames):
        self._run()
