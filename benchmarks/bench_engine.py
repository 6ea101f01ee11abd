"""asv benchmarks of the fused integration engine vs pyFAI's integrate1d, per method.

``time_*`` integrate n frames of size x size uint16 (bbox/no splitting, npt 2000): the fused
engine through ``integrate(engine="xrdflow")`` on 2 dask threads, and a plain pyFAI
``integrate1d`` loop (OpenMP on 1 thread). ``integrate(engine="pyfai")`` on dask is measured by
``benchmarks/ratio_engine.py`` (seconds a call: too slow to repeat here). Set-up costs
are paid once for the whole suite: the frames and the fused matrices are made in
``setup_cache`` and kept on disk (benchmarks/common.py), each benchmark process adopts the
matrix instead of building it; pyFAI's own CSR engine is warmed in ``setup``.
``MatrixBuild`` times the one-time matrix build itself.
"""

from __future__ import annotations

import numpy as np

N_FRAMES, SIZE, NPT = 16, 2048, 2000
SPLITS = ["no", "bbox"]


def _arr(frames):
    import dask.array as da
    import xarray as xr

    from xrdflow.nexus import frames_per_chunk_for

    fpc = frames_per_chunk_for(frames[0].nbytes)  # as open_frames chunks a raw file
    return xr.DataArray(da.from_array(frames, chunks=(fpc, -1, -1)), dims=("frame", "y", "x"))


def _integrate(arr, geom, split, engine):
    import dask

    from xrdflow import integrate

    with dask.config.set(scheduler="threads", num_workers=2):
        return integrate(arr, geom, npt=NPT, method=(split, "csr", "cython"), polarization_factor=0.99,
                         engine=engine).compute()


def _matrices(split):
    """The fused engine's matrix for ``split``, built once and kept on disk."""
    from benchmarks.common import cached_frames, cached_matrices
    from benchmarks.ratio_engine import _geometry

    return cached_matrices(f"fused-matrix-{SIZE}-{NPT}-{split}.pkl", lambda: _integrate(
        _arr(cached_frames(N_FRAMES, SIZE)[:2]), _geometry(SIZE), split, "xrdflow"))


class IntegrateEngine:
    params = (["no", "bbox"], ["xrdflow", "pyfai_loop"])
    param_names = ["split", "engine"]
    timeout = 600
    processes = 1
    repeat = (1, 3, 20.0)
    number = 1

    def setup_cache(self):
        from benchmarks.common import cached_frames

        cached_frames(N_FRAMES, SIZE)
        return {split: str(_matrices(split)) for split in SPLITS}

    def setup(self, matrices, split, engine):
        from benchmarks.common import cached_frames
        from benchmarks.ratio_engine import _geometry

        self.geom = _geometry(SIZE)
        self.frames = cached_frames(N_FRAMES, SIZE)
        self.arr = _arr(self.frames)
        self.method = (split, "csr", "cython")
        if engine == "pyfai_loop":
            self.frames = np.array(self.frames)  # in memory (not the memory map), as a loop over files has them
            self.ai = self.geom.to_pyfai()
            self.ai.integrate1d(self.frames[0], NPT, method=self.method, polarization_factor=0.99)
        else:
            if engine == "xrdflow":
                from benchmarks.common import adopt_matrices

                adopt_matrices(matrices[split])
            _integrate(self.arr[:2], self.geom, split, "xrdflow")  # warm: radial axis, numba

    def _run(self, split, engine):
        if engine == "pyfai_loop":
            from threadpoolctl import threadpool_limits

            with threadpool_limits(1, user_api="openmp"):
                return [self.ai.integrate1d(f, NPT, method=self.method, polarization_factor=0.99).intensity
                        for f in self.frames]
        return _integrate(self.arr, self.geom, split, "xrdflow")

    def time_integrate(self, matrices, split, engine):
        self._run(split, engine)

    def peakmem_integrate(self, matrices, split, engine):
        self._run(split, engine)


class FusedMatrixSize:
    """Memory the fused engine holds per worker process for one matrix."""

    params = [SPLITS]
    param_names = ["split"]
    timeout = 600

    def setup_cache(self):
        return {split: str(_matrices(split)) for split in SPLITS}

    def track_matrix_mb(self, matrices, split):
        from benchmarks.common import adopt_matrices
        from xrdflow import engines

        engines.clear_engine_cache()
        adopt_matrices(matrices[split])
        return engines.engine_cache_info()["nbytes"] / 2**20

    track_matrix_mb.unit = "MB"


class MatrixBuild:
    """One-time cost per worker process: pyFAI's CSR matrix and its pixel-major layout."""

    params = ([2048], SPLITS)
    param_names = ["size", "split"]
    timeout = 600
    processes = 1
    repeat = (1, 3, 30.0)
    number = 1

    def setup(self, size, split):
        from benchmarks.ratio_engine import _geometry
        from xrdflow import engines

        self.geom = _geometry(size)
        engines.build_sparse(_geometry(64), (64, 64), npt=50, unit="q_nm^-1", split=split)  # numba cache

    def _build(self, size, split):
        from xrdflow import engines

        return engines.build_sparse(self.geom, (size, size), npt=NPT, unit="q_nm^-1", split=split,
                                    polarization_factor=0.99)

    def time_build(self, size, split):
        self._build(size, split)

    def peakmem_build(self, size, split):
        self._build(size, split)
