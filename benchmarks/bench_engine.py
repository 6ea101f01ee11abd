"""asv benchmarks of the fused integration engine vs pyFAI's integrate1d, per method.

``time_*`` integrate n frames of size x size uint16 (bbox/no/full splitting, npt 2000): the
fused engine through ``integrate(engine="xrdflow")`` on 2 dask threads, the same call with
``engine="pyfai"``, and a plain pyFAI ``integrate1d`` loop (OpenMP on 1 thread). Set-up costs
(matrix, CSR build, numba compilation) are paid in ``setup``. ``track_matrix_mb`` reports the
fused matrix held per worker process.
"""

from __future__ import annotations


class IntegrateEngine:
    params = ([24], [2048], ["no", "bbox", "full"], ["xrdflow", "pyfai_dask", "pyfai_loop"])
    param_names = ["n_frames", "size", "split", "engine"]
    timeout = 900

    def setup(self, n_frames, size, split, engine):
        import dask.array as da
        import xarray as xr

        from benchmarks.common import realistic_frames
        from benchmarks.ratio_engine import _geometry

        self.geom = _geometry(size)
        self.frames = realistic_frames(n_frames, (size, size))
        from xrdflow.nexus import frames_per_chunk_for

        fpc = frames_per_chunk_for(self.frames[0].nbytes)  # as open_frames chunks a raw file
        self.arr = xr.DataArray(da.from_array(self.frames, chunks=(fpc, -1, -1)), dims=("frame", "y", "x"))
        self.method = (split, "csr", "cython")
        self.ai = self.geom.to_pyfai()
        self.ai.integrate1d(self.frames[0], 2000, method=self.method, polarization_factor=0.99)
        if engine != "pyfai_loop":
            self._run(engine, self.arr[:4])  # warm: matrix / integrators, numba compilation

    def _run(self, engine, arr=None):
        if engine == "pyfai_loop":
            from threadpoolctl import threadpool_limits

            with threadpool_limits(1, user_api="openmp"):
                return [self.ai.integrate1d(f, 2000, method=self.method, polarization_factor=0.99).intensity
                        for f in self.frames]
        import dask

        from xrdflow import integrate

        with dask.config.set(scheduler="threads", num_workers=2):
            return integrate(self.arr if arr is None else arr, self.geom, npt=2000, method=self.method,
                             polarization_factor=0.99,
                             engine="xrdflow" if engine == "xrdflow" else "pyfai").compute()

    def time_integrate(self, n_frames, size, split, engine):
        self._run(engine)

    def peakmem_integrate(self, n_frames, size, split, engine):
        self._run(engine)

    def track_matrix_mb(self, n_frames, size, split, engine):
        from xrdflow import engines

        if engine != "xrdflow":
            return 0.0
        return engines.engine_cache_info()["nbytes"] / 2**20

    track_matrix_mb.unit = "MB"


class MatrixBuild:
    """One-time cost per worker process: pyFAI's CSR matrix and its pixel-major layout."""

    params = ([2048], ["no", "bbox"])
    param_names = ["size", "split"]
    timeout = 600

    def setup(self, size, split):
        from benchmarks.ratio_engine import _geometry
        from xrdflow import engines

        self.geom = _geometry(size)
        engines.build_sparse(_geometry(64), (64, 64), npt=50, unit="q_nm^-1", split=split)  # numba cache

    def _build(self, size, split):
        from xrdflow import engines

        return engines.build_sparse(self.geom, (size, size), npt=2000, unit="q_nm^-1", split=split,
                                    polarization_factor=0.99)

    def time_build(self, size, split):
        self._build(size, split)

    def peakmem_build(self, size, split):
        self._build(size, split)
