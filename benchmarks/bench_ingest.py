"""asv: raw NeXus ingest of TIFF series (time and peak memory)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from benchmarks.common import realistic_frames, warm_page_cache, write_tiff_series


class Ingest:
    params = ([20, 80], ["bitshuffle", "gzip", "none"])
    param_names = ["n_frames", "compression"]
    timeout = 600

    def setup(self, n_frames, compression):
        self.tmp = Path(tempfile.mkdtemp(prefix="xrdflow-asv-"))
        self.paths = write_tiff_series(self.tmp / "src", realistic_frames(n_frames))
        warm_page_cache(self.paths)

    def teardown(self, n_frames, compression):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def time_ingest(self, n_frames, compression):
        import xrdflow

        xrdflow.ingest(self.paths, self.tmp / "raw.nxs", energy_kev=87.1,
                       compression=compression, overwrite=True)

    def peakmem_ingest(self, n_frames, compression):
        import xrdflow

        xrdflow.ingest(self.paths, self.tmp / "raw.nxs", energy_kev=87.1,
                       compression=compression, overwrite=True)


class OpenFrames:
    """Reading frames back through open_frames (decompression bound)."""

    params = [["bitshuffle", "none"]]
    param_names = ["compression"]

    def setup(self, compression):
        import xrdflow

        self.tmp = Path(tempfile.mkdtemp(prefix="xrdflow-asv-"))
        paths = write_tiff_series(self.tmp / "src", realistic_frames(40))
        xrdflow.ingest(paths, self.tmp / "raw.nxs", energy_kev=87.1, compression=compression)
        self.time_read_all(compression)  # warm: imports, dask's thread pool, codec library

    def teardown(self, compression):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def time_read_all(self, compression):
        """Every frame read and decompressed on dask's threads; only a corner of each kept,
        so the figure is the read, not a reduction over the pixels."""
        import xrdflow

        data = xrdflow.open_frames(self.tmp / "raw.nxs").data
        data.map_blocks(lambda b: b[:, :1, :1], chunks=(data.chunks[0], (1,), (1,))).compute(
            scheduler="threads")
