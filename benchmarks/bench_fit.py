"""asv suite: batch Gaussian peak fits (kernel and fit_peaks)."""

import numpy as np

from xrdflow import _kernels as K

try:
    from ratio_fit import make
except ImportError:  # asv imports benchmarks as a package
    from .ratio_fit import make


class KernelFit:
    params = ([40, 80], [True, False])
    param_names = ["points", "linear_background"]

    def setup(self, points, linear):
        self.x, self.y, self.lo, self.hi = make(2000, 8, points)
        self.out = np.empty((self.y.shape[0], 1, 8, K.NFIELD))
        K.fit_batch(self.x, self.y[:1], self.lo, self.hi, linear, False, 100, 1e-8, 1e-12,
                    3.0, 7, self.out[:1])
        K.fit_batch(self.x, self.y[:1], self.lo, self.hi, linear, False, 100, 1e-8, 1e-12,
                    3.0, 7, self.out[:1], True)
        K.fit_batch_parallel(self.x, self.y[:1], self.lo, self.hi, linear, False, 100, 1e-8,
                             1e-12, 3.0, 7, self.out[:1])

    def time_fit_batch(self, points, linear):
        K.fit_batch(self.x, self.y, self.lo, self.hi, linear, False, 100, 1e-8, 1e-12, 3.0, 7,
                    self.out)

    def time_fit_batch_parallel(self, points, linear):
        K.fit_batch_parallel(self.x, self.y, self.lo, self.hi, linear, False, 100, 1e-8, 1e-12,
                             3.0, 7, self.out)

    def time_fit_batch_poisson(self, points, linear):
        K.fit_batch(self.x, self.y, self.lo, self.hi, linear, False, 100, 1e-8, 1e-12, 3.0, 7,
                    self.out, True)

    def peakmem_fit_batch(self, points, linear):
        K.fit_batch(self.x, self.y, self.lo, self.hi, linear, False, 100, 1e-8, 1e-12, 3.0, 7,
                    self.out)


class FitPeaks:
    params = [1, 4]
    param_names = ["chunks"]

    def setup(self, chunks):
        import xarray as xr

        x, y, lo, hi = make(800, 8, 60)
        self.pat = xr.DataArray(y[:, 0], dims=("frame", "q"), coords={"q": x},
                                attrs={"radial_unit": "q_nm^-1"}).chunk({"frame": 800 // chunks})
        self.windows = np.c_[x[lo], x[hi - 1]]

    def time_fit_peaks(self, chunks):
        from xrdflow import fit_peaks

        fit_peaks(self.pat, self.windows).compute(scheduler="threads", num_workers=2)

    def peakmem_fit_peaks(self, chunks):
        from xrdflow import fit_peaks

        fit_peaks(self.pat, self.windows).compute(scheduler="threads", num_workers=2)


class ShapeFits:
    """fit_peaks with each peak shape (and two-peak joint pseudo-Voigt groups), 8000
    windows of 60 points, dask threads (2): ``python benchmarks/ratio_shapes.py`` prints
    the same in fits/s beside scipy's loops."""

    params = (["gaussian", "lorentzian", "pseudo_voigt", "pearson7", "split_pseudo_voigt", "joint_pseudo_voigt"],)
    param_names = ["shape"]

    def setup(self, shape):
        import xarray as xr

        try:
            from ratio_shapes import make
        except ImportError:
            from .ratio_shapes import make
        from xrdflow import fit_peaks

        pair = shape.startswith("joint_")
        base = shape.removeprefix("joint_")
        x, y, centres, hw = make(1000, base, 8, pair=pair)
        pat = xr.DataArray(y, dims=("frame", "q"), coords={"q": x},
                           attrs={"radial_unit": "q_nm^-1"}).chunk({"frame": 125})
        if pair:
            peaks = {f"p{j}{s}": c + d for j, c in enumerate(centres) for s, d in (("a", -0.09), ("b", 0.09))}
            kw = dict(half_width=hw - 0.09, overlap="joint", shape=base)
        else:
            peaks, kw = list(centres), dict(half_width=hw, shape=base)
        self.fits = fit_peaks(pat, peaks, **kw)
        fit_peaks(pat.isel(frame=slice(0, 2)), peaks, **kw).status.compute()

    def time_fit_peaks(self, shape):
        self.fits.status.compute(scheduler="threads", num_workers=2)
