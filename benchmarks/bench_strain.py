"""asv suite: strain_tensor (small and quick; setup builds a synthetic fits Dataset)."""

try:
    from ratio_strain import make
except ImportError:  # asv imports benchmarks as a package
    from .ratio_strain import make


class StrainTensor:
    params = (["in-plane", "sin2psi"], ["d0", "fit"])
    param_names = ["model", "reference"]

    def setup(self, model, reference):
        from xrdflow import strain_tensor

        self.fits = make(500, 36, 8)
        self.strain_tensor = strain_tensor
        strain_tensor(self.fits.isel(frame=slice(0, 2)), model=model, reference=reference).compute()

    def time_strain_tensor(self, model, reference):
        self.strain_tensor(self.fits, model=model, reference=reference).compute()
