"""Tests of xrdflow.synthetic: the synthetic data must agree with pyFAI and with its own truth."""

from __future__ import annotations

import csv
import json

import fabio
import numpy as np
import pytest
from scipy.optimize import curve_fit

from xrdflow import synthetic as S

NOCORR = ("no", "histogram", "cython")  # pixel centres into bins: no footprint broadening


def _gauss_lin(x, a, mu, s, b0, b1):
    return a * np.exp(-0.5 * ((x - mu) / s) ** 2) + b0 + b1 * (x - mu)


def _fit_peak(x, y, center, half_width):
    sel = (x > center - half_width) & (x < center + half_width) & np.isfinite(y)
    xs, ys = x[sel], y[sel]
    p0 = [ys.max() - ys.min(), xs[np.argmax(ys)], half_width / 6, ys.min(), 0.0]
    p, _ = curve_fit(_gauss_lin, xs, ys, p0=p0, maxfev=20000)
    return p[1], abs(p[2])


@pytest.fixture(scope="module")
def run1024():
    # 0: unstrained, 0.002: elastic, 0.08: plastic. Broader optics and pixels than the default
    # (1024^2 = Perkin binned 2x2) keep sectors well sampled; truth is identical in q.
    return S.tensile_run(applied_strain=[0.0, 0.002, 0.08], shape=(1024, 1024), seed=5,
                         instrument_sigma_mm=0.4, broadening=0.1, ring_counts=20000.0)


def test_calibrant_rings_at_pyfai_two_theta():
    from pyFAI.calibrant import get_calibrant

    img, truth = S.calibrant_image(shape=(512, 512), seed=2)
    ai = truth.integrator()
    npt = 2000
    res = ai.integrate1d(img, npt, unit="2th_deg", method=NOCORR, polarization_factor=0.99,
                         radial_range=(0.5, 8.0))
    x, y = res.radial, res.intensity
    bin_width = x[1] - x[0]
    cal = get_calibrant("LaB6")
    cal.wavelength = truth["poni"]["wavelength"]
    expected = np.array(cal.get_2th()[:6]) * 180 / np.pi
    np.testing.assert_allclose(truth["rings"]["two_theta"][:6], expected, rtol=1e-9)
    for tth in expected:
        mu, _ = _fit_peak(x, y, tth, 0.08)
        assert abs(mu - tth) < 0.1 * bin_width, (tth, mu, bin_width)


def test_calibrant_image_values_and_geometry(tmp_path):
    img, truth = S.calibrant_image(shape=(512, 512), seed=0, ring_counts=90000.0)
    assert img.dtype == np.uint16 and img.shape == (512, 512)
    assert img.max() == 65535  # strongest ring saturates and is clipped, not wrapped
    poni = truth["poni"]
    assert poni["detector"] == "Perkin" and 1.0 <= poni["dist"] <= 1.5
    # beam 30-80 Perkin pixels (200 um) off centre, tilts of a few mrad
    off = np.abs(np.array([poni["poni1"], poni["poni2"]]) - 0.2048) / 200e-6
    assert np.all((off > 30) & (off < 80)), off
    assert 0 < max(abs(poni["rot1"]), abs(poni["rot2"])) < 0.01
    # background level: median of the image is near the modelled background
    bg = truth["background"]
    assert bg * 0.2 < np.median(img) < bg * 1.5
    # the PONI written by pyFAI reloads to the truth
    import pyFAI

    paths = S.write_calibrant(tmp_path, shape=(512, 512), seed=0, defects=True)
    ai = pyFAI.load(str(paths["poni"]))
    for key in ("dist", "poni1", "poni2", "rot1", "rot2", "rot3", "wavelength"):
        assert getattr(ai, key) == pytest.approx(poni[key], rel=1e-12, abs=1e-15)
    assert tuple(ai.detector.shape) == (512, 512)
    written = fabio.open(str(paths["image"])).data
    mask = fabio.open(str(paths["mask"])).data
    assert np.all(written[mask == 1] == 0) and np.all(written[mask == 2] == 65535)
    assert (mask == 1).sum() > 512  # a dead column and a gap at least


def test_mg_rings_at_frame0(run1024):
    run = run1024
    assert run.labels[:3] == ["Mg 10-10", "Mg 0002", "Mg 10-11"]
    np.testing.assert_allclose(run.q0[:3], [22.6, 24.1, 25.6], atol=0.03)
    t = run.truth(ring_average=False)
    qc = np.array(t["frames"]["q_center"][0])
    np.testing.assert_array_equal(qc, np.repeat(run.q0[:, None], qc.shape[1], axis=1))
    res = run.integrator().integrate1d(run.frame(0), 1500, unit="q_nm^-1", method=NOCORR,
                                       polarization_factor=0.99, radial_range=(20, 28))
    bw = res.radial[1] - res.radial[0]
    for q0 in run.q0[:3]:
        mu, _ = _fit_peak(res.radial, res.intensity, q0, 0.6)
        assert abs(mu - q0) < 0.25 * bw, (q0, mu)


def test_deterministic_and_order_independent():
    kw = dict(shape=(256, 256), seed=7, max_strain=0.05)
    a = S.tensile_run(3, **kw)
    b = S.tensile_run(3, **kw)
    f2 = b.frame(2)
    np.testing.assert_array_equal(a.frame(2), f2)  # same seed, other order
    np.testing.assert_array_equal(a.frame(0), b.frame(0))
    assert not np.array_equal(a.frame(0), S.tensile_run(3, **dict(kw, seed=8)).frame(0))
    c1, _ = S.calibrant_image(shape=(256, 256), seed=3)
    c2, _ = S.calibrant_image(shape=(256, 256), seed=3)
    np.testing.assert_array_equal(c1, c2)
    frames = list(a)
    assert len(frames) == 3 and np.array_equal(frames[2], f2)


def _sector_fit(run, k, chi0, half=5.0):
    ai = run.integrator()
    # pixel splitting: in a narrow sector along a detector axis, pixel centres sit at nearly
    # discrete radii and an unsplit histogram aliases (a few % of sigma); bbox splitting does not
    res = ai.integrate1d(run.frame(k), 300, unit="q_nm^-1", method=("bbox", "csr", "cython"),
                         polarization_factor=0.99,
                         radial_range=(21, 27), azimuth_range=(chi0 - half, chi0 + half))
    out = []
    chis = np.linspace(chi0 - half, chi0 + half, 201)
    truth = run.truth_at(k, chis)
    for i in range(3):
        mu, s = _fit_peak(res.radial, res.intensity, truth["q_center"][i].mean(), 0.65)
        out.append((mu, s, truth["q_center"][i].mean(), truth["lattice_strain"][i].mean()))
    return np.array(out)


def test_sector_positions_follow_strain_model(run1024):
    run = run1024
    nu = run.params["poisson_ratio"]
    for k in (1, 2):
        axial = _sector_fit(run, k, 0.0)
        trans = _sector_fit(run, k, 90.0)
        for fit in (axial, trans):
            # fitted q vs truth, to 1 % of the peak sigma
            assert np.all(np.abs(fit[:, 0] - fit[:, 2]) < 0.01 * run.sigma[k, :3]), fit
        eps_a = run.q0[:3] / axial[:, 0] - 1
        eps_t = run.q0[:3] / trans[:, 0] - 1
        assert np.all(eps_a > 0) and np.all(eps_t < 0)
        np.testing.assert_allclose(eps_t / eps_a, -nu, rtol=0.06)
        if k == 1:  # elastic: axial lattice strain = applied strain (within cos^2 theta)
            np.testing.assert_allclose(eps_a, 0.002, rtol=0.03)
    # plastic regime: grain families differ (0002 carries more than 10-10), as modelled
    eps = np.array(run.truth()["frames"]["eps_axial"])[2, :3]
    assert eps[1] > eps[2] > eps[0]
    fit = _sector_fit(run, 2, 0.0)
    measured = run.q0[:3] / fit[:, 0] - 1
    assert measured[1] > measured[2] > measured[0]


def test_load_axis_rotation():
    kw = dict(applied_strain=[0.002], shape=(256, 256))
    r0 = S.tensile_run(**kw)
    r90 = S.tensile_run(load_azimuth_deg=90.0, **kw)
    np.testing.assert_allclose(r0.truth_at(0, [0.0])["lattice_strain"],
                               r90.truth_at(0, [90.0])["lattice_strain"], rtol=1e-12)
    assert r90.truth_at(0, [0.0])["lattice_strain"][0, 0] < 0


def test_broadening_grows_with_plastic_strain(run1024):
    run = run1024
    sig = run.sigma[:, :3]
    np.testing.assert_allclose(sig[1], sig[0])  # elastic: no broadening
    assert np.all(sig[2] > 1.2 * sig[0])
    s0 = _sector_fit(run, 0, 0.0)[:, 1]
    s2 = _sector_fit(run, 2, 0.0)[:, 1]
    assert np.all(s2 > 1.15 * s0), (s0, s2)


def test_ring_average_truth_matches_full_azimuth_fit(run1024):
    run = run1024
    ra = run.ring_average(2)
    res = run.integrator().integrate1d(run.frame(2), 1200, unit="q_nm^-1", method=NOCORR,
                                       polarization_factor=0.99, radial_range=(21, 27))
    bw = res.radial[1] - res.radial[0]
    for i in range(3):
        mu, s = _fit_peak(res.radial, res.intensity, ra["ring_q_fit"][i], 0.6)
        # neighbouring rings' tails and noise: within 1 % of the width, a fraction of a bin
        assert abs(mu - ra["ring_q_fit"][i]) < min(0.01 * s, 0.3 * bw)
        # bins and pixel centres add at most ~a pixel footprint in quadrature
        assert 0.99 * ra["ring_sigma_fit"][i] <= s < 1.15 * ra["ring_sigma_fit"][i]
    # the ring average is a mixture: wider than each azimuth's sigma once strained
    assert np.all(ra["ring_sigma_rms"] > run.sigma[2])


def test_written_run_files(tmp_path):
    kw = dict(shape=(256, 256), seed=4, max_strain=0.05)
    paths = S.write_tensile_run(tmp_path, 3, **kw)
    run = S.tensile_run(3, **kw)
    assert [p.name for p in paths["frames"]] == ["mg_00001.tif", "mg_00002.tif", "mg_00003.tif"]
    for k, p in enumerate(paths["frames"]):
        data = fabio.open(str(p)).data
        assert data.dtype == np.uint16
        np.testing.assert_array_equal(data, run.frame(k))
    with open(paths["log"]) as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["frame", "applied_strain", "load_N", "time_s"]
    assert [int(r["frame"]) for r in rows] == [1, 2, 3]
    np.testing.assert_array_equal([float(r["applied_strain"]) for r in rows], run.applied_strain)
    loads = [float(r["load_N"]) for r in rows]
    assert loads[0] == 0 and loads[1] < loads[2]
    truth = json.loads(paths["truth"].read_text())
    fr = truth["frames"]
    n_refl, n_az = len(truth["reflections"]["label"]), len(truth["azimuth_deg"])
    assert np.shape(fr["q_center"]) == (3, n_refl, n_az)
    assert np.shape(fr["lattice_strain"]) == (3, n_refl, n_az)
    for key in ("sigma", "eps_axial", "eps_transverse", "ring_q_fit", "ring_sigma_fit",
                "ring_q_mean", "ring_sigma_rms"):
        assert np.shape(fr[key]) == (3, n_refl), key
    assert set(truth["poni"]) >= {"dist", "poni1", "poni2", "rot1", "rot2", "rot3", "wavelength",
                                  "detector", "detector_config", "shape"}
    assert truth["energy_kev"] == 87.1 and truth["model"]["poisson_ratio"] == 0.35
    # truth numbers are the model's: q = q0 / (1 + eps)
    q0 = np.array(truth["reflections"]["q0"])
    np.testing.assert_allclose(np.array(fr["q_center"]),
                               q0[None, :, None] / (1 + np.array(fr["lattice_strain"])), rtol=1e-14)
    assert truth["files"]["log"] == "mg_log.csv"
    assert paths["poni"].read_text().count("Distance:") == 1


def test_write_demo_layout(tmp_path):
    out = S.write_demo(tmp_path / "demo", n_frames=2, shape=(256, 256))
    assert out["calibrant"]["image"].is_file() and out["calibrant"]["poni"].is_file()
    assert len(out["tensile"]["frames"]) == 2 and out["tensile"]["log"].is_file()
    cal = json.loads(out["calibrant"]["truth"].read_text())
    run = json.loads(out["tensile"]["truth"].read_text())
    assert cal["poni"] == run["poni"]  # same geometry and energy


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(n_frames=0), "n_frames"),
        (dict(max_strain=-0.1), "max_strain"),
        (dict(poisson_ratio=0.7), "poisson_ratio"),
        (dict(shape=(300, 300)), "shape"),
        (dict(dtype="float32"), "dtype"),
        (dict(seed=-1), "seed"),
        (dict(geometry={"dist": 1.0, "tilt": 0.1}), "geometry"),
        (dict(detector="NoSuchDetector"), "detector"),
        (dict(energy_kev=0), "energy_kev"),
    ],
)
def test_validation(kwargs, name):
    with pytest.raises(ValueError, match=name):
        S.tensile_run(**kwargs)


def test_geometry_from_poni_and_other_energy(tmp_path):
    _, truth = S.calibrant_image(shape=(256, 256))
    p = tmp_path / "g.poni"
    truth.integrator().save(str(p))
    run = S.tensile_run(1, geometry=p)
    assert run.energy_kev == pytest.approx(87.1)
    assert run._pix.shape == (256, 256)
    with pytest.raises(ValueError, match="energy_kev"):
        S.tensile_run(1, geometry=p, energy_kev=60.0)
    run60 = S.tensile_run(1, geometry={"dist": 1.2, "poni1": 0.2, "poni2": 0.2}, energy_kev=60.0,
                          shape=(256, 256))
    # q of a reflection does not depend on energy; its 2theta does
    np.testing.assert_allclose(run60.q0[:3], run.q0[:3], rtol=1e-12)
    assert run60.reflections.two_theta.values[0] > run.reflections.two_theta.values[0]


def test_model_and_acquisition_dataclasses_match_keywords(tmp_path):
    """The dataclasses and the keywords of xrdflow 0.1 make the same data, bit for bit;
    keywords override the dataclasses' fields; one Acquisition serves calibrant and run."""
    acq = S.Acquisition(shape=(256, 256), seed=7, defects=True)
    model = S.TensileModel(max_strain=0.05, poisson_ratio=0.3)
    a = S.tensile_run(3, model=model, acquisition=acq)
    b = S.tensile_run(3, shape=(256, 256), seed=7, defects=True, max_strain=0.05, poisson_ratio=0.3)
    for k in range(3):
        np.testing.assert_array_equal(a.frame(k), b.frame(k))
    assert a.truth(ring_average=False) == b.truth(ring_average=False)
    assert a.model == S.TensileModel(3, max_strain=0.05, poisson_ratio=0.3) and a.acquisition == acq and a.params["poisson_ratio"] == 0.3
    c = S.tensile_run(3, model=model, acquisition=acq, poisson_ratio=0.25, seed=8)  # overrides
    assert c.params["poisson_ratio"] == 0.25 and c.params["seed"] == 8 and model.poisson_ratio == 0.3
    img1, t1 = S.calibrant_image(acquisition=acq, model=S.CalibrantModel(ring_counts=5000.0))
    img2, t2 = S.calibrant_image(shape=(256, 256), seed=7, defects=True, ring_counts=5000.0)
    np.testing.assert_array_equal(img1, img2)
    assert t1 == t2 and t1["poni"] == a.truth(ring_average=False)["poni"]
    # write_demo shares the acquisition; the writers leave no temporary file behind
    out = S.write_demo(tmp_path / "demo", n_frames=2, acquisition=acq)
    cal = json.loads(out["calibrant"]["truth"].read_text())
    assert cal["seed"] == 7 and cal["defects"] and "mask" in out["tensile"]
    assert not [p for p in (tmp_path / "demo").rglob("*") if p.name.endswith((".partial", ".lock"))]


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: S.Acquisition(dtype="float32"), "dtype"),
        (lambda: S.Acquisition(saturation=70000), "saturation"),
        (lambda: S.Acquisition(polarization_factor=2.0), "polarization_factor"),
        (lambda: S.Acquisition(shape=(10,)), "shape"),
        (lambda: S.TensileModel(hardening_ratio=1.5), "hardening_ratio"),
        (lambda: S.TensileModel(applied_strain=[0.1, -0.1]), "applied_strain"),
        (lambda: S.TensileModel(load_sharing={"0002": -1.0}), "load_sharing"),
        (lambda: S.CalibrantModel(calibrant=3), "calibrant"),
        (lambda: S.tensile_run(1, model=S.Acquisition()), "model"),
    ],
)
def test_dataclass_validation(make, name):
    with pytest.raises(ValueError, match=name):
        make()


def test_unknown_keyword_is_a_type_error():
    with pytest.raises(TypeError, match="poisson"):
        S.tensile_run(1, poisson=0.3)
    with pytest.raises(TypeError, match="max_strain"):
        S.calibrant_image(max_strain=0.1)  # a run's field, not a calibrant's


def test_truth_carries_the_strain_tensor():
    """The truth's tensor per frame and hkl (sample frame: 1 load, 2 across it, 3 beam)
    reproduces the truth's lattice strain at every azimuth as n.E.n with the exact q."""
    run = S.tensile_run(applied_strain=[0.0, 0.003, 0.02], shape=(128, 128), seed=1,
                        energy_kev=30.0, load_azimuth_deg=30.0)
    truth = run.truth(ring_average=False)
    fr = truth["frames"]
    E = {k: np.asarray(fr[k]) for k in ("strain_axial", "strain_transverse", "strain_shear",
                                        "strain_out_of_plane")}
    assert E["strain_axial"].shape == (3, len(truth["reflections"]["label"]))
    np.testing.assert_array_equal(E["strain_axial"], fr["eps_axial"])
    np.testing.assert_array_equal(E["strain_shear"], 0.0)
    theta = np.radians(np.asarray(truth["reflections"]["two_theta0"]) / 2)[:, None]
    chi = np.radians(np.asarray(truth["azimuth_deg"]) - 30.0)[None, :]
    n1, n2, n3 = np.cos(theta) * np.cos(chi), np.cos(theta) * np.sin(chi), -np.sin(theta) + 0 * chi
    for k in range(3):
        e = {key: v[k][:, None] for key, v in E.items()}
        eps = (e["strain_axial"] * n1 ** 2 + e["strain_transverse"] * n2 ** 2
               + 2 * e["strain_shear"] * n1 * n2 + e["strain_out_of_plane"] * n3 ** 2)
        np.testing.assert_allclose(eps, fr["lattice_strain"][k], rtol=1e-12, atol=1e-15)


def test_tensor_truth_leaves_images_unchanged():
    """Images are bit-identical for the same seed (the truth extension adds no randomness)."""
    import hashlib

    run = S.tensile_run(3, shape=(128, 128), seed=7)
    digest = hashlib.sha256(b"".join(run.frame(k).tobytes() for k in range(3))).hexdigest()
    run.truth(ring_average=False)
    again = S.tensile_run(3, shape=(128, 128), seed=7)
    assert hashlib.sha256(b"".join(again.frame(k).tobytes() for k in range(3))).hexdigest() == digest
