import logging

import numpy as np
import pytest
import xarray as xr

from xrdflow import fit_peaks
from xrdflow import open_result, write_result
from xrdflow import lattice_strain

from conftest import peak_patterns as _patterns
from conftest import peak_reflections as _reflections


@pytest.mark.parametrize("naz", [0, 3])
def test_round_trip_identical(tmp_path, naz):
    pat, _ = _patterns(use_dask=True, naz=naz, nframe=4)
    pat = pat.copy()
    pat[1] = 3.0  # a failed frame: NaN values, non-zero status
    ds = lattice_strain(fit_peaks(pat, _reflections(), half_width=0.4)).compute()
    out = write_result(ds, tmp_path / "fits.nxs")
    back = open_result(out)
    xr.testing.assert_identical(back, ds)
    assert back.status.dtype == np.int8
    # netCDF works too
    ds.to_netcdf(tmp_path / "fits.nc")
    xr.testing.assert_allclose(xr.open_dataset(tmp_path / "fits.nc").load(), ds)


def test_nexus_layout_and_validity(tmp_path):
    import h5py
    from nexusformat.nexus.validate import validate_file

    pat, _ = _patterns(use_dask=False, nframe=3)
    ds = fit_peaks(pat, _reflections(), half_width=0.4)
    path = write_result(ds, tmp_path / "fits.nxs")
    with h5py.File(path) as f:
        assert f.attrs["default"] == "entry"
        peaks = f["entry/peaks"]
        # NXstress's path and NXreflections terms, in an NXcollection: the file declares no
        # NXstress, and only NXstress allows NXreflections in an NXentry (issue 19, item 2)
        assert peaks.attrs["NX_class"] == "NXcollection"
        assert peaks.attrs["nxstress_class"] == "NXreflections"
        for name in ("center", "center_errors", "fwhm", "fwhm_errors", "height", "height_errors",
                     "background", "background_errors", "status", "h", "k", "l", "phase_name"):
            assert name in peaks, name
        np.testing.assert_array_equal(peaks["center"][()], ds.position.values)
        proc = f["entry"][f["entry"].attrs["default"]]
        data = proc[proc.attrs["default"]]
        assert data.attrs["signal"] == "center"
    logging.getLogger("NXValidate").setLevel(logging.ERROR)
    warnings_, errors = validate_file(str(path), path="/entry/peak_fit")
    assert errors == 0
    warnings_, errors = validate_file(str(path))  # the whole file, against the base classes
    assert errors == 0


def test_write_validation(tmp_path):
    with pytest.raises(ValueError, match="ds"):
        write_result(xr.DataArray([1.0]), tmp_path / "x.nxs")
    with pytest.raises(FileNotFoundError):
        write_result(xr.Dataset(), tmp_path / "no" / "x.nxs")
    with pytest.raises(FileNotFoundError):
        open_result(tmp_path / "absent.nxs")
