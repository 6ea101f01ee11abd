"""strain_tensor and diffraction_elastic_constants: synthetic truth, real data, laziness, files."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from xrdflow import Geometry, fit_peaks, integrate, strain_tensor
from xrdflow import synthetic as S

#: 20 keV needs a short distance to keep the Mg rings (2theta ~ 13-15 deg) on the Perkin
GEOMETRY_20KEV = dict(dist=0.35, poni1=0.2148, poni2=0.1988, rot1=0.003, rot2=-0.002)
STRAINS = [0.0, 0.002, 0.004, 0.02]  # unloaded, elastic, at yield, plastic (yield 0.004)


def _synthetic_fits(energy_kev, geometry=None):
    kw = dict(applied_strain=STRAINS, shape=(1024, 1024), seed=5, instrument_sigma_mm=0.4,
              ring_counts=20000.0, energy_kev=energy_kev)
    if geometry is not None:
        kw["geometry"] = geometry
    run = S.tensile_run(**kw)
    frames = np.stack([run.frame(k) for k in range(len(run))])
    pat = integrate(frames, Geometry.from_pyfai(run.integrator()), npt=2000, unit="q_nm^-1",
                    azimuth_sectors=36, polarization_factor=0.99, radial_range=(20, 27))
    fits = fit_peaks(pat, run.reflections.isel(reflection=slice(0, 3)), half_width=0.35).compute()
    return run, fits.assign_coords(frame=run.frame_numbers, applied_strain=("frame", run.applied_strain))


@pytest.fixture(scope="module")
def synthetic():
    return {87.1: _synthetic_fits(87.1), 20.0: _synthetic_fits(20.0, GEOMETRY_20KEV)}


def _truth(run, reference):
    """Truth components [frame, peak] from the run's truth JSON (relative to frame 0 for 'first')."""
    frames = run.truth(ring_average=False)["frames"]
    out = {}
    for name in ("strain_axial", "strain_transverse", "strain_shear"):
        v = np.asarray(frames[name])[:, :3]
        out[name] = v - v[0] if reference == "first" else v
    return out


def _z(t, truth):
    return {name: (t[name].values - truth[name]) / t[name + "_error"].values for name in truth}


@pytest.mark.parametrize("energy", [87.1, 20.0])
@pytest.mark.parametrize("reference", ["d0", "first", "fit"])
@pytest.mark.parametrize("model", ["in-plane", "sin2psi"])
def test_components_equal_truth_within_errors(synthetic, energy, reference, model):
    run, fits = synthetic[energy]
    t = strain_tensor(fits, reference=reference, model=model, poisson_ratio=run.params["poisson_ratio"]).compute()
    assert (t.status == 0).all() and (t.n_sectors == 36).all()
    for name, z in _z(t, _truth(run, reference)).items():
        if reference == "first":
            z = z[1:]  # frame 0 is 0 by construction
        assert np.all(np.isfinite(z)), name
        assert np.abs(z).max() < 4.5, (name, np.round(z, 1))
        assert np.sqrt(np.mean(z ** 2)) < 2.0, (name, np.round(z, 1))
    # the errors are those of a few-1e-6 strain measurement, not vacuous
    assert float(t.strain_axial_error.max()) < 3e-5
    assert "applied_strain" in t.coords and t.strain_axial.dims == ("frame", "peak")


def test_exact_geometry_beats_theta_zero_at_20kev(synthetic):
    """At 20 keV sin^2 theta ~ 0.012-0.016: the theta = 0 model misreads the axial strain by
    ~(E11 - E33) sin^2 theta, many errors; the exact model stays within its errors."""
    run, fits = synthetic[20.0]
    truth = _truth(run, "d0")
    z_exact = _z(strain_tensor(fits, reference="d0", poisson_ratio=0.35).compute(), truth)
    z_flat = _z(strain_tensor(fits, reference="d0", poisson_ratio=0.35, exact_geometry=False).compute(), truth)
    assert np.abs(z_exact["strain_axial"]).max() < 4.5
    assert np.abs(z_flat["strain_axial"][1:]).max() > 10  # loaded frames
    rms = {k: np.sqrt(np.mean(v["strain_axial"] ** 2)) for k, v in (("exact", z_exact), ("flat", z_flat))}
    assert rms["flat"] > 5 * rms["exact"], rms
    # at 87.1 keV (sin^2 theta ~ 7e-4) both agree to well within the errors
    run87, fits87 = synthetic[87.1]
    a = strain_tensor(fits87, reference="d0")
    b = strain_tensor(fits87, reference="d0", exact_geometry=False)
    assert float((np.abs(a.strain_axial - b.strain_axial) / a.strain_axial_error).max()) < 1.0


def test_fitted_d0_equals_truth(synthetic):
    run, fits = synthetic[20.0]
    t = strain_tensor(fits, reference="fit", poisson_ratio=0.35).compute()
    d0_true = np.asarray(run.truth(ring_average=False)["reflections"]["d0"])[:3]
    z = (t.d0.values - d0_true) / t.d0_error.values
    assert np.abs(z).max() < 4.5, z
    u = strain_tensor(fits, reference="unstrained", poisson_ratio=0.35).compute()
    assert u.d0.dims == ("peak",) and np.abs((u.d0.values - d0_true) / u.d0_error.values).max() < 4.5


def test_wrong_load_axis_shows_shear(synthetic):
    """Rotating the load axis by 10 deg rotates the tensor: E12 = -(E11 - E22) sin(20 deg) / 2."""
    run, fits = synthetic[87.1]
    t = strain_tensor(fits, reference="d0", load_azimuth_deg=10.0, poisson_ratio=0.35).compute()
    truth = _truth(run, "d0")
    dev = truth["strain_axial"] - truth["strain_transverse"]
    expected = -0.5 * dev * np.sin(np.radians(20.0))
    z = (t.strain_shear.values - expected) / t.strain_shear_error.values
    assert np.abs(z).max() < 4.5 and np.abs(t.strain_shear.values[-1]).min() > 5e-4


def test_too_few_sectors_nan_and_status(synthetic):
    _, fits = synthetic[87.1]
    fits = fits.copy()
    status = fits.status.values.copy()
    status[2, 3:, 1] = 1  # frame 2, peak 1: only 3 good sectors left
    fits["status"] = (fits.status.dims, status)
    t = strain_tensor(fits, reference="d0").compute()
    assert int(t.status[2, 1]) == 1 and np.isnan(float(t.strain_axial[2, 1]))
    assert int(t.n_sectors[2, 1]) == 3 and int(t.status[2, 0]) == 0
    assert t.status.attrs["flag_meanings"].split()[1] == "too_few_sectors"


def test_lazy(synthetic, raise_if_dask_computes):
    _, fits = synthetic[87.1]
    lazy = fits.copy()
    for name in lazy.data_vars:  # as integrate + fit_peaks give it: dask data, numpy coords
        lazy[name] = lazy[name].chunk({"frame": 2})
    with raise_if_dask_computes(0):
        t = strain_tensor(lazy, reference="first")
        u = strain_tensor(lazy, reference="unstrained")
    assert t.strain_axial.chunks is not None and u.d0.chunks is not None
    xr.testing.assert_allclose(t.compute(), strain_tensor(fits, reference="first").compute())


def test_bad_input_names_the_parameter(synthetic):
    _, fits = synthetic[87.1]
    cases = [(dict(model="tensor"), "model"), (dict(reference="last"), "reference"),
             (dict(load_azimuth_deg="x"), "load_azimuth_deg"), (dict(poisson_ratio=0.6), "poisson_ratio"),
             (dict(out_of_plane="free"), "out_of_plane"), (dict(min_sectors=2), "min_sectors"),
             (dict(wavelength_a=-1.0), "wavelength_a"), (dict(exact_geometry="yes"), "exact_geometry")]
    for kw, name in cases:
        with pytest.raises(ValueError, match=f"^{name}"):
            strain_tensor(fits, **kw)
    with pytest.raises(ValueError, match="^fits"):
        strain_tensor(fits.isel(azimuth=0))
    with pytest.raises(ValueError, match="^wavelength_a"):
        strain_tensor(fits.assign_attrs(wavelength_a=np.nan))
    assert strain_tensor(fits.assign_attrs(wavelength_a=np.nan), exact_geometry=False) is not None


def test_round_trip_result_file(synthetic, tmp_path):
    from xrdflow import open_result, write_result

    _, fits = synthetic[87.1]
    t = strain_tensor(fits, reference="fit").compute()
    back = open_result(write_result(t, tmp_path / "tensor.nxs"))
    xr.testing.assert_identical(back, t)
    assert back.attrs["strain_model"] == "in-plane" and "plane stress" in back.attrs["assumption"]
