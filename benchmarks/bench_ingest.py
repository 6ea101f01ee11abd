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


class DecodeMar345:
    """One MAR2300-sized (2300 x 2300) packed image decoded: xrdflow's bounded decoder
    against fabio's (which writes past its buffer on some streams; this one it reads)."""

    timeout = 120
    repeat = (3, 10, 10.0)
    params = (["xrdflow", "fabio"],)
    param_names = ["decoder"]

    def setup(self, decoder):
        import numpy as np
        from fabio.mar345image import mar345image

        from xrdflow import _formats

        data = np.random.default_rng(0).poisson(300, (2300, 2300)).astype(np.int32)
        data[1000:1010] = 20000  # a ring-like band
        self.tmp = Path(tempfile.mkdtemp(prefix="xrdflow-asv-"))
        self.path = self.tmp / "frame.mar2300"
        image = mar345image(data=data)
        image.byteorder = "<"
        image.write(str(self.path))
        self.blob = self.path.read_bytes()
        _formats.decode(self.path, self.blob)  # compiled before timing

    def teardown(self, decoder):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def time_decode(self, decoder):
        if decoder == "xrdflow":
            from xrdflow import _formats

            _formats.decode(self.path, self.blob)
        else:
            import fabio

            fabio.open(str(self.path)).data
