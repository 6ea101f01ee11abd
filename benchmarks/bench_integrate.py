"""asv benchmarks of xrdflow.integrate against a plain sequential pyFAI loop."""

from __future__ import annotations



class IntegrateFrames:
    """Integrate n frames of size x size (uint16) with bbox/csr/cython."""

    params = ([20, 40], [1024, 2048], ["xrdflow_threads2", "pyfai_loop"])
    param_names = ["n_frames", "size", "engine"]
    timeout = 600

    def setup(self, n_frames, size, engine):
        import dask.array as da
        import xarray as xr

        from benchmarks.ratio_integrate import _frames
        from xrdflow.geometry import Geometry

        pix = 200e-6 * 2048 / size
        self.geom = Geometry(dist=1.2, poni1=size * pix * 0.52, poni2=size * pix * 0.47, rot1=0.004,
                             wavelength=1.4235e-11, detector="Detector", pixel1=pix, pixel2=pix,
                             max_shape=(size, size))
        self.frames = _frames(n_frames, size)
        self.arr = xr.DataArray(da.from_array(self.frames, chunks=(2, -1, -1)), dims=("frame", "y", "x"))
        self.method = ("bbox", "csr", "cython")
        self.ai = self.geom.to_pyfai()
        self.ai.integrate1d(self.frames[0], 2000, method=self.method)

    def _run(self, engine):
        if engine == "pyfai_loop":
            return [self.ai.integrate1d(f, 2000, method=self.method).intensity for f in self.frames]
        import dask

        from xrdflow import integrate

        with dask.config.set(scheduler="threads", num_workers=2):
            return integrate(self.arr, self.geom, npt=2000, method=self.method, mask_negative=False).compute()

    def time_integrate(self, n_frames, size, engine):
        self._run(engine)

    def peakmem_integrate(self, n_frames, size, engine):
        self._run(engine)
