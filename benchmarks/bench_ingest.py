"""asv: raw NeXus ingest of TIFF series (time and peak memory), and reading frames back.

The TIFF series and raw files are made once and kept on disk (benchmarks/common.py); each
benchmark writes only its own output.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from benchmarks.common import cached_raw, cached_tiffs, warm_page_cache

SERIES = 60


class Ingest:
    params = ([20, 60], ["bitshuffle", "gzip", "none"])
    param_names = ["n_frames", "compression"]
    timeout = 600
    processes = 1
    repeat = (1, 3, 20.0)
    number = 1

    def setup_cache(self):
        return [str(p) for p in cached_tiffs(SERIES)]

    def setup(self, paths, n_frames, compression):
        self.tmp = Path(tempfile.mkdtemp(prefix="xrdflow-asv-"))
        self.paths = paths[:n_frames]
        warm_page_cache(self.paths)

    def teardown(self, paths, n_frames, compression):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _ingest(self, compression):
        import xrdflow

        xrdflow.ingest(self.paths, self.tmp / "raw.nxs", energy_kev=87.1,
                       compression=compression, overwrite=True)

    def time_ingest(self, paths, n_frames, compression):
        self._ingest(compression)

    def peakmem_ingest(self, paths, n_frames, compression):
        self._ingest(compression)


class OpenFrames:
    """Reading frames back through open_frames (decompression bound)."""

    params = [["bitshuffle", "none"]]
    param_names = ["compression"]
    repeat = (1, 5, 10.0)

    def setup_cache(self):
        return {c: str(cached_raw(40, compression=c)) for c in self.params[0]}

    def setup(self, raws, compression):
        warm_page_cache([raws[compression]])
        self.time_read_all(raws, compression)  # warm: imports, dask's thread pool, codec library

    def time_read_all(self, raws, compression):
        """Every frame read and decompressed on dask's threads; only a corner of each kept,
        so the figure is the read, not a reduction over the pixels."""
        import xrdflow

        data = xrdflow.open_frames(raws[compression]).data
        data.map_blocks(lambda b: b[:, :1, :1], chunks=(data.chunks[0], (1,), (1,))).compute(
            scheduler="threads")
