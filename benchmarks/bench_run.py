"""asv: the whole run (raw TIFFs -> strain dataset) on a small synthetic tensile test."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from benchmarks.ratio_run import make_inputs, write_config


class WholeRun:
    params = [[20, 80]]
    param_names = ["n_frames"]
    timeout = 900

    def setup(self, n_frames):
        self.tmp = Path(tempfile.mkdtemp(prefix="xrdflow-asv-run-"))
        inputs = make_inputs(self.tmp, n_frames, 512)
        self.config = write_config(self.tmp, inputs, self.tmp / "out")

    def teardown(self, n_frames):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _run(self):
        from xrdflow.workflow import load_config, run_workflow

        shutil.rmtree(self.tmp / "out", ignore_errors=True)
        run_workflow(load_config(self.config), echo=None)

    def time_run(self, n_frames):
        self._run()

    def peakmem_run(self, n_frames):
        self._run()
