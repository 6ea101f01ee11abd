"""asv benchmarks of xrdflow.integrate against a plain sequential pyFAI loop (bbox/csr/cython)."""

from __future__ import annotations

import numpy as np

NPT = 2000


def _geometry(size):
    from xrdflow.geometry import Geometry

    pix = 200e-6 * 2048 / size
    return Geometry(dist=1.2, poni1=size * pix * 0.52, poni2=size * pix * 0.47, rot1=0.004,
                    wavelength=1.4235e-11, detector="Detector", pixel1=pix, pixel2=pix,
                    max_shape=(size, size))


def _array(frames):
    import dask.array as da
    import xarray as xr

    return xr.DataArray(da.from_array(frames, chunks=(2, -1, -1)), dims=("frame", "y", "x"))


class IntegrateFrames:
    """Integrate n frames of size x size (uint16) with bbox/csr/cython."""

    params = ([20], [1024, 2048], ["xrdflow_threads2", "pyfai_loop"])
    param_names = ["n_frames", "size", "engine"]
    timeout = 600
    processes = 1
    repeat = (1, 3, 20.0)
    number = 1

    def setup_cache(self):
        from benchmarks.common import cached_frames, cached_matrices

        n = max(self.params[0])
        return {size: str(cached_matrices(f"fused-matrix-integrate-{size}-{NPT}.pkl", lambda size=size: self._integrate(
            _array(cached_frames(n, size)[:2]), _geometry(size)))) for size in self.params[1]}

    @staticmethod
    def _integrate(arr, geom):
        import dask

        from xrdflow import integrate

        with dask.config.set(scheduler="threads", num_workers=2):
            return integrate(arr, geom, npt=NPT, method=("bbox", "csr", "cython"), mask_negative=False).compute()

    def setup(self, matrices, n_frames, size, engine):
        from benchmarks.common import adopt_matrices, cached_frames

        self.geom = _geometry(size)
        self.frames = cached_frames(max(self.params[0]), size)[:n_frames]
        self.arr = _array(self.frames)
        self.method = ("bbox", "csr", "cython")
        if engine == "pyfai_loop":
            self.frames = np.array(self.frames)  # in memory, not the memory map
            self.ai = self.geom.to_pyfai()
            self.ai.integrate1d(self.frames[0], NPT, method=self.method)
        else:
            adopt_matrices(matrices[size])
            self._run(engine, self.arr[:2])  # warm: radial axis, numba

    def _run(self, engine, arr=None):
        if engine == "pyfai_loop":
            return [self.ai.integrate1d(f, NPT, method=self.method).intensity for f in self.frames]
        return self._integrate(self.arr if arr is None else arr, self.geom)

    def time_integrate(self, matrices, n_frames, size, engine):
        self._run(engine)

    def peakmem_integrate(self, matrices, n_frames, size, engine):
        self._run(engine)
