import numpy as np
import pytest
import xarray as xr

from xrdflow import fit_peaks
from xrdflow import lattice_strain

from conftest import PEAKS_D_TRUE as D_TRUE
from conftest import peak_patterns as _patterns
from conftest import peak_reflections as _reflections


@pytest.mark.parametrize("use_dask", [True, False])
def test_lattice_strain_first_frame_truth(use_dask):
    pat, _ = _patterns(use_dask=use_dask, nframe=6, strain=1e-3)
    fits = fit_peaks(pat, _reflections(), half_width=0.4)
    out = lattice_strain(fits)
    assert ("lattice_strain" in out) and ("fwhm_change" in out)
    out = out.compute()
    # patterns were made with d(frame) = d0 * (1 + 1e-3 * frame)
    expected = (1 + 1e-3 * np.arange(6))[:, None] / 1.0 - 1
    err = out.lattice_strain_error.values
    assert np.all(np.abs(out.lattice_strain.values - expected) < 5 * np.sqrt(2) * err + 1e-12)
    assert "applied_strain" in out.lattice_strain.coords
    assert abs(float(out.fwhm_change[1:].mean())) < 0.05  # widths unchanged
    assert out.lattice_strain.attrs["units"] == "1"


def test_lattice_strain_references():
    pat, _ = _patterns(use_dask=False, nframe=3, strain=1e-3)
    fits = fit_peaks(pat, _reflections(), half_width=0.4)
    by_d0 = lattice_strain(fits, reference="d0")
    np.testing.assert_allclose(by_d0.d0_reference, D_TRUE)
    by_vals = lattice_strain(fits, reference=dict(zip(fits.peak.values, D_TRUE)))
    xr.testing.assert_allclose(by_d0.lattice_strain, by_vals.lattice_strain)
    by_ds = lattice_strain(fits, reference=fits.isel(frame=[0]))
    xr.testing.assert_allclose(by_ds.lattice_strain, lattice_strain(fits).lattice_strain)
    with pytest.raises(ValueError, match="reference"):
        lattice_strain(fits, reference=[1.0])
    with pytest.raises(ValueError, match="reference"):
        lattice_strain(fits, reference="last")
    with pytest.raises(ValueError, match="fits"):
        lattice_strain(fits.drop_vars("d_spacing"))
