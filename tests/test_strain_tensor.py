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
    first = strain_tensor(fits, reference="first", model="sin2psi", elastic="Mg").compute()
    assert first.d0_reference.dims == ("azimuth", "peak")
    xr.testing.assert_identical(open_result(write_result(first, tmp_path / "first.nxs")), first)


def test_given_and_dataset_references_agree_with_d0(synthetic):
    run, fits = synthetic[87.1]
    by_d0 = strain_tensor(fits, reference="d0")
    given = strain_tensor(fits, reference=dict(zip(fits.peak.values, fits.d0.values)))
    xr.testing.assert_allclose(by_d0.strain_axial, given.strain_axial)
    ds = strain_tensor(fits, reference=fits.isel(frame=[0]))
    assert float(np.abs(ds.strain_axial.isel(frame=0)).max()) < 3 * float(ds.strain_axial_error.max())


# --------------------------------------------------------------------------- elastic constants
def _cubic_reuss(c11, c12, c44, hkl):
    """Closed-form Reuss DECs of a cubic crystal (Hauk 1997, eq. for S1, S2/2 with Gamma)."""
    h, k, l = hkl
    gamma = (h * h * k * k + k * k * l * l + l * l * h * h) / (h * h + k * k + l * l) ** 2
    det = (c11 - c12) * (c11 + 2 * c12)
    s11, s12, s44 = (c11 + c12) / det, -c12 / det, 1 / c44
    s0 = s11 - s12 - s44 / 2
    return 1e3 * (s12 + s0 * gamma), 1e3 * (s11 - s12 - 3 * s0 * gamma)


def test_dec_cubic_reuss_voigt_kroner_iron():
    from xrdflow import diffraction_elastic_constants as dec

    c = dict(c11=231.4, c12=134.7, c44=116.4)  # alpha-Fe, GPa
    hkl = ["200", "110", "211", "222", "310", "420"]
    reuss = dec("Fe", hkl, approximation="reuss")
    voigt = dec(c, hkl, approximation="voigt")
    kroner = dec("Fe", hkl, approximation="kroner")
    for j, h in enumerate([(2, 0, 0), (1, 1, 0), (2, 1, 1), (2, 2, 2), (3, 1, 0), (4, 2, 0)]):
        s1, hs2 = _cubic_reuss(**c, hkl=h)
        assert float(reuss.s1[j]) == pytest.approx(s1, rel=1e-9)
        assert float(reuss.half_s2[j]) == pytest.approx(hs2, rel=1e-9)
    # Voigt: isotropic with G_V = (c11 - c12 + 3 c44) / 5, K = (c11 + 2 c12) / 3
    K, GV = (c["c11"] + 2 * c["c12"]) / 3, (c["c11"] - c["c12"] + 3 * c["c44"]) / 5
    np.testing.assert_allclose(voigt.half_s2, 1e3 / (2 * GV), rtol=1e-9)
    np.testing.assert_allclose(voigt.s1, 1e3 * (1 / (9 * K) - 1 / (6 * GV)), rtol=1e-9)
    # every model: a hydrostatic stress strains the cubic crystal exactly: 3 S1 + S2/2 = 1/(3K)
    for d in (reuss, voigt, kroner):
        np.testing.assert_allclose(3 * d.s1 + d.half_s2, 1e3 / (3 * K), rtol=1e-9)
    # Kroner's effective shear modulus is the root of G^3 + a G^2 + b G + g = 0 (Kroner 1958;
    # Hauk 1997). Kroner's cubic DECs are linear in Gamma and equal the bulk ones, 1/(2G), at
    # Gamma = 1/5 (the orientation average): interpolate 200 (Gamma 0) and 222 (Gamma 1/3)
    a = (5 * c["c11"] + 4 * c["c12"]) / 8
    b = -c["c44"] * (7 * c["c11"] - 4 * c["c12"]) / 8
    g = -c["c44"] * (c["c11"] - c["c12"]) * (c["c11"] + 2 * c["c12"]) / 8
    G = max(r.real for r in np.roots([1, a, b, g]) if abs(r.imag) < 1e-9)
    h200, h222, h310 = (float(kroner.half_s2[hkl.index(h)]) for h in ("200", "222", "310"))
    assert h200 + 0.6 * (h222 - h200) == pytest.approx(1e3 / (2 * G), rel=1e-6)
    assert h200 + 0.27 * (h222 - h200) == pytest.approx(h310, rel=1e-6)  # Gamma(310) = 0.09
    E, nu = 9 * K * G / (3 * K + G), (3 * K - 2 * G) / (2 * (3 * K + G))
    assert E == pytest.approx(211, rel=0.01) and nu == pytest.approx(0.29, abs=0.005)  # Hauk: iron, Kroner
    # Kroner lies between Reuss and Voigt
    assert np.all((kroner.half_s2 - reuss.half_s2) * (kroner.half_s2 - voigt.half_s2) <= 1e-12)
    # Published Eshelby-Kroner DECs of ferrite {211} (Hauk, "Structural and Residual Stress
    # Analysis by Nondestructive Methods", Elsevier 1997; the values used by EN 15305 practice):
    # S1 = -1.25e-6 /MPa, S2/2 = 5.76e-6 /MPa; they depend on the Cij set used (here Simmons
    # & Wang), hence 3 %.
    j = hkl.index("211")
    assert float(kroner.s1[j]) == pytest.approx(-1.25, rel=0.03)
    assert float(kroner.half_s2[j]) == pytest.approx(5.76, rel=0.03)
    assert kroner.s1.attrs["units"] == "1/TPa"


def test_dec_hexagonal_titanium():
    from xrdflow import diffraction_elastic_constants as dec
    from xrdflow._elastic import stiffness

    C, sym, _ = stiffness("Ti")
    S = np.linalg.inv(C) * 1e3  # 1/TPa, Voigt notation
    reuss = dec("Ti", ["0002", "10-10", (1, 1, -2, 0)], approximation="reuss")
    assert sym == "hexagonal"
    # along c: S1 + S2/2 = s33, S1 = s13; in the basal plane the crystal is isotropic
    assert float(reuss.s1[0] + reuss.half_s2[0]) == pytest.approx(S[2, 2], rel=1e-9)
    assert float(reuss.s1[0]) == pytest.approx(S[0, 2], rel=1e-9)
    assert float(reuss.half_s2[1]) == pytest.approx(float(reuss.half_s2[2]), rel=1e-9)
    assert float(reuss.s1[1] + reuss.half_s2[1]) == pytest.approx(S[0, 0], rel=1e-9)
    kroner = dec("Ti", ["0002", "10-10"], approximation="kroner")
    voigt = dec("Ti", ["0002", "10-10"], approximation="voigt")
    assert np.all((kroner.half_s2 - reuss.half_s2[:2]) * (kroner.half_s2 - voigt.half_s2) <= 1e-12)
    with pytest.raises(ValueError, match="^c_over_a"):
        dec(dict(c11=162.4, c12=92.0, c13=69.0, c33=180.7, c44=46.7), ["10-11"])


def test_dec_bad_input():
    from xrdflow import diffraction_elastic_constants as dec

    with pytest.raises(ValueError, match="^elastic"):
        dec("unobtainium", ["200"])
    with pytest.raises(ValueError, match="^approximation"):
        dec("Fe", ["200"], approximation="hill")
    with pytest.raises(ValueError, match="^hkl"):
        dec("Fe", ["000"])
    with pytest.raises(ValueError, match="^elastic"):
        dec(dict(c11=100.0, c12=200.0, c44=10.0), ["200"])


def test_stress_from_elastic(synthetic):
    run, fits = synthetic[87.1]
    t = strain_tensor(fits, reference="d0", elastic="Mg", approximation="kroner").compute()
    dec = t.s1 + t.half_s2
    np.testing.assert_allclose(t.stress_axial, t.strain_axial / dec * 1e6)
    assert t.stress_axial.attrs["units"] == "MPa"
    # elastic frames: the hkl stresses bracket the model's E e (45 GPa x 0.002 = 90 MPa) loosely
    assert 50 < float(t.stress_axial[1].mean()) < 150


# --------------------------------------------------------------------------- real data
@pytest.fixture(scope="module")
def ti64_fits():
    """The six LightForm Ti-6Al-4V frames (Diamond 2017, Pixium, 0.1393 A, probably the first
    frames of a hot-loading test: barely loaded), 36 sectors, three alpha-Ti rings."""
    import fabio

    from conftest import shared

    folder = shared("lightform-i12-ti64-pixium")
    frames = np.stack([fabio.open(str(folder / f"pixium_{i:05d}.tif")).data for i in range(3150, 3156)])
    geom = Geometry.from_poni(folder / "DLS_CeO2_1200mm_pyFAI.poni", orientation="as_read")
    pat = integrate(frames, geom, npt=1500, unit="2th_deg", radial_range=(2.9, 4.8), azimuth_sectors=36,
                    polarization_factor=0.99)
    return fit_peaks(pat, [3.123, 3.437, 4.604], half_width=0.04).compute()


@pytest.mark.parametrize("reference", ["first", "fit"])
def test_real_ti64_components_finite_and_unloaded_near_zero(ti64_fits, reference):
    t = strain_tensor(ti64_fits, reference=reference, load_azimuth_deg=90.0).compute()
    assert t.attrs["wavelength_a"] == pytest.approx(0.1393, rel=1e-3)
    ok = t.status == 0
    assert bool(ok.all()) and int(t.n_sectors.min()) >= 30
    for name in ("strain_axial", "strain_transverse", "strain_shear"):
        v, e = t[name].values, t[name + "_error"].values
        assert np.all(np.isfinite(v)) and np.all(np.isfinite(e)) and np.all(e > 0), name
        assert np.all(e < 5e-4), (name, e.max())
        if reference == "first":  # nearly unloaded frames relative to the first: ~0
            assert np.all(np.abs(v[1:]) < 5 * e[1:] + 1e-4), (name, v)
        else:  # absolute strains of a barely loaded sample (d0 fitted, uniaxial): small
            assert np.all(np.abs(v) < 2e-3), (name, v)
    if reference == "fit":
        assert np.all(np.isfinite(t.d0.values))


def test_tensor_figure(synthetic, tmp_path):
    from xrdflow.plot.run import save, tensor_curves

    run, fits = synthetic[87.1]
    t = strain_tensor(fits, reference="first", elastic="Mg").compute()
    fig = tensor_curves(t)
    axes = fig.axes
    assert [a.get_ylabel() for a in axes] == ["axial strain E11 (microstrain)",
                                              "transverse strain E22 (microstrain)",
                                              "shear strain E12 (microstrain)"]
    assert all(a.get_xlabel() == "applied strain (%)" for a in axes)
    for a in axes:  # one line (errorbar container) per hkl, with error bars
        assert len(a.containers) == t.sizes["peak"]
        assert all(c.has_yerr for c in a.containers)
    assert [txt.get_text() for txt in axes[0].get_legend().get_texts()] == [str(p) for p in t.peak.values]
    line = axes[0].containers[0].lines[0]
    np.testing.assert_allclose(line.get_ydata(), t.strain_axial.isel(peak=0) * 1e6)
    fig2 = tensor_curves(t, components=["stress_axial"])
    assert fig2.axes[0].get_ylabel() == "axial stress (MPa)"
    paths = save(fig, tmp_path / "tensor", formats=("png",))
    assert paths[0].stat().st_size > 10_000
    with pytest.raises(ValueError, match="^components"):
        tensor_curves(t, components=["nothing"])
