"""asv benchmarks of xrdflow.integrate against a plain sequential pyFAI loop (bbox/csr/cython)."""

from __future__ import annotations

NPT = 2000


def _geometry(size):
    from xrdflow.geometry import Geometry

    pix = 200e-6 * 2048 / size
    return Geometry(dist=1.2, poni1=size * pix * 0.52, poni2=size * pix * 0.47, rot1=0.004,
                    wavelength=1.4235e-11, detector="Detector", pixel1=pix, pixel2=pix,
                    max_shape=(size, size))


class IntegrateFrames:
    """Integrate n frames of size x size (uint16) with bbox/csr/cython."""

    params = ([20, 40], [1024, 2048], ["xrdflow_threads2", "pyfai_loop"])
    param_names = ["n_frames", "size", "engine"]
    timeout = 600
    processes = 1
    repeat = (1, 3, 20.0)
    number = 1

    def setup_cache(self):
        from benchmarks.common import cache_dir, cached_frames

        for size in self.params[1]:
            cached_frames(max(self.params[0]), size)
        return str(cache_dir())  # asv passes setup_cache's value only when it is not None

    def setup(self, _, n_frames, size, engine):
        import dask.array as da
        import xarray as xr

        from benchmarks.common import cached_frames

        self.geom = _geometry(size)
        self.frames = cached_frames(max(self.params[0]), size)[:n_frames]
        self.arr = xr.DataArray(da.from_array(self.frames, chunks=(2, -1, -1)), dims=("frame", "y", "x"))
        self.method = ("bbox", "csr", "cython")
        if engine == "pyfai_loop":
            self.frames = self.frames[:]
            self.ai = self.geom.to_pyfai()
            self.ai.integrate1d(self.frames[0], NPT, method=self.method)
        else:
            self._run(engine, self.arr[:2])  # warm: matrix, radial axis, numba

    def _run(self, engine, arr=None):
        if engine == "pyfai_loop":
            return [self.ai.integrate1d(f, NPT, method=self.method).intensity for f in self.frames]
        import dask

        from xrdflow import integrate

        with dask.config.set(scheduler="threads", num_workers=2):
            return integrate(self.arr if arr is None else arr, self.geom, npt=NPT, method=self.method,
                             mask_negative=False).compute()

    def time_integrate(self, _, n_frames, size, engine):
        self._run(engine)

    def peakmem_integrate(self, _, n_frames, size, engine):
        self._run(engine)
