"""Tests of the synthetic peak shapes, two-phase runs and 1-D pattern runs (issue 14): the
synthetic data must agree with pyFAI and with its own truth."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest
from scipy.optimize import curve_fit
from scipy.special import erfc

from xrdflow import profiles as P
from xrdflow import synthetic as S
from xrdflow.synthetic._acquisition import background_profile

NOCORR = ("no", "histogram", "cython")  # pixel centres into bins: no footprint broadening


def _digest(run) -> str:
    return hashlib.sha256(b"".join(run.frame(k).tobytes() for k in range(len(run)))).hexdigest()


# ------------------------------------------------------------------ gaussian default
# digests of the images and truth made by xrdflow before peak shapes were added
_OLD_128 = "61b7082bfac98c2ac38904d582944cef915e0f77d404905e571a902a4a266a6b"
_OLD_256 = "554db19848e607a44c4f7a16bf270b7a8ce57eb31c0adcbc811a06517420cdb2"
_OLD_256_FRAMES_TRUTH = "3daea853c7999c6da6c2108ff02955e4b5ef6d4f5425996e381b2e72129cf2a3"
_OLD_FRAME_KEYS = ("applied_strain", "eps_axial", "eps_transverse", "frame", "lattice_strain", "load_N",
                   "q_center", "ring_q_fit", "ring_q_mean", "ring_sigma_fit", "ring_sigma_rms", "sigma",
                   "strain_axial", "strain_out_of_plane", "strain_shear", "strain_transverse", "time_s")


def test_gaussian_default_is_bit_identical_to_before():
    assert _digest(S.tensile_run(3, shape=(128, 128), seed=7)) == _OLD_128
    kw = dict(applied_strain=[0.0, 0.002, 0.08], shape=(256, 256), seed=5, broadening=0.1, defects=True)
    run = S.tensile_run(**kw)
    assert _digest(run) == _OLD_256
    assert _digest(S.tensile_run(peak_shape="gaussian", eta=0.9, m=5.0, **kw)) == _OLD_256  # unused
    truth = run.truth()
    old = {k: truth["frames"][k] for k in _OLD_FRAME_KEYS}
    assert hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest() == _OLD_256_FRAMES_TRUTH
    assert truth["shape"] == "gaussian" and truth["phases"] == ["Mg"] and truth["second_phase"] is None
    fr = truth["frames"]
    np.testing.assert_allclose(fr["fwhm"], 2 * math.sqrt(2 * math.log(2)) * np.asarray(fr["sigma"]), rtol=1e-15)
    np.testing.assert_array_equal(fr["phase_fraction"], 1.0)
    # the strongest ring is ring_counts high at frame 0; area = height * sqrt(2 pi) sigma
    assert max(fr["height"][0]) == pytest.approx(run.params["ring_counts"], rel=1e-12)
    np.testing.assert_allclose(fr["area"], np.asarray(fr["height"]) * np.sqrt(2 * np.pi) * np.asarray(fr["sigma"]),
                               rtol=1e-12)
    # a different shape makes a different image
    assert _digest(S.tensile_run(peak_shape="pseudo_voigt", **kw)) != _OLD_256


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(peak_shape="voigt"), "peak_shape"),
        (dict(eta=1.5), "eta"),
        (dict(eta=-0.1), "eta"),
        (dict(m=0.5), "m"),
        (dict(asymmetry=1.0), "asymmetry"),
        (dict(asymmetry=-1.2), "asymmetry"),
        (dict(second_phase_fraction=(0.5, 1.2)), "second_phase_fraction"),
        (dict(second_phase_fraction=0.5), "second_phase_fraction"),
        (dict(second_phase_load_sharing=-1.0), "second_phase_load_sharing"),
        (dict(second_phase="Mg"), "second_phase"),
    ],
)
def test_shape_and_phase_validation(kwargs, name):
    with pytest.raises(ValueError, match=name):
        S.TensileModel(**kwargs)


# ------------------------------------------------------------------ non-gaussian rings
def _crossings(x, y, h, x0):
    """Half-maximum crossings left and right of x0 (linear interpolation)."""
    j = int(np.searchsorted(x, x0))
    lo = j - 1
    while y[lo] > h:
        lo -= 1
    hi = j
    while y[hi] > h:
        hi += 1
    xl = x[lo] + (h - y[lo]) * (x[lo + 1] - x[lo]) / (y[lo + 1] - y[lo])
    xr = x[hi - 1] + (h - y[hi - 1]) * (x[hi] - x[hi - 1]) / (y[hi] - y[hi - 1])
    return xl, xr


@pytest.mark.parametrize("shape, params", [
    ("lorentzian", {}),
    ("split_pseudo_voigt", dict(eta=0.3, asymmetry=0.3)),
    ("pearson7", dict(m=1.5)),
])
def test_non_gaussian_ring_matches_truth_after_pyfai(shape, params):
    """Unstrained frame (no azimuth dependence): pyFAI's full-ring pattern is the truth's
    B(q) + sum_i H_i profile(q; q0_i, fwhm_i) to Poisson noise, tails included (a Lorentzian's
    tail 5 FWHM out is still 1 % of the height), and each ring's half-maximum crossings lie at
    q0 - fwhm (1 - a) / 2 and q0 + fwhm (1 + a) / 2."""
    run = S.tensile_run(applied_strain=[0.0], shape=(512, 512), seed=1, peak_shape=shape,
                        instrument_sigma_mm=0.8, ring_counts=20000.0, **params)
    truth = run.truth(ring_average=False)
    assert truth["shape"] == shape and truth["shape_parameters_used"] == list(P.SHAPE_PARAMETERS[shape])
    res = run.integrator().integrate1d(run.frame(0), 800, unit="q_nm^-1", method=NOCORR,
                                       polarization_factor=0.99, radial_range=(18, 34),
                                       error_model="poisson")
    x, y, err = res.radial, res.intensity, res.sigma
    bw = x[1] - x[0]
    fw = np.asarray(truth["frames"]["fwhm"][0])
    height = np.asarray(truth["frames"]["height"][0])
    q0 = np.asarray(truth["reflections"]["q0"])
    kw = {k: truth[k] for k in ("eta", "m", "asymmetry")}
    rings = height[:, None] * P.profile(x[None, :], q0[:, None], fw[:, None], shape, **kw)
    background = truth["model"]["background"] * background_profile(x)
    model = background + rings.sum(axis=0)
    z = (y - model) / err
    assert abs(z.mean()) < 0.2 and z.std() < 1.5, (z.mean(), z.std())
    # the same rings as Gaussians of that FWHM (or truncated at 6 sigma) are far off: the test bites
    gauss = background + (height[:, None] * P.profile(x[None, :], q0[:, None], fw[:, None])).sum(axis=0)
    assert ((y - gauss) / err).std() > 5
    a = truth["asymmetry"] if shape == "split_pseudo_voigt" else 0.0
    for i in range(3):  # Mg 10-10, 0002, 10-11, about 2 FWHM apart
        alone = y - (model - rings[i])
        xl, xr = _crossings(x, alone, height[i] / 2, q0[i])
        assert abs((q0[i] - xl) - fw[i] * (1 - a) / 2) < 0.25 * bw, (i, q0[i] - xl, fw[i])
        assert abs((xr - q0[i]) - fw[i] * (1 + a) / 2) < 0.25 * bw, (i, xr - q0[i], fw[i])
        assert alone[np.abs(x - q0[i]) < bw].max() == pytest.approx(height[i], rel=0.02)


def test_non_gaussian_truth_and_ring_average():
    run = S.tensile_run(applied_strain=[0.0, 0.08], shape=(128, 128), peak_shape="pseudo_voigt", eta=0.4,
                        broadening=0.1)
    truth = run.truth()
    fr = truth["frames"]
    for key in ("ring_q_fit", "ring_sigma_fit", "ring_q_mean", "ring_sigma_rms"):
        assert key not in fr  # single-Gaussian quantities are not defined for this shape
    fw, h, area = (np.asarray(fr[k]) for k in ("fwhm", "height", "area"))
    np.testing.assert_allclose(area, h * fw * (0.4 * P.L_AREA + 0.6 * P.G_AREA), rtol=1e-12)
    assert h[0].max() == pytest.approx(run.params["ring_counts"], rel=1e-12)
    # the ring area does not change when a ring broadens (the height falls instead)
    np.testing.assert_allclose(area[1], area[0], rtol=1e-12)
    assert np.all(fw[1] > 1.5 * fw[0]) and np.all(h[1] < h[0])
    # unstrained: the chi-averaged profile is the profile itself
    np.testing.assert_allclose(fr["ring_fwhm"][0], fw[0], rtol=2e-3)
    np.testing.assert_allclose(fr["ring_q_peak"][0], truth["reflections"]["q0"], rtol=1e-5)
    np.testing.assert_allclose(fr["ring_q_center"][0], truth["reflections"]["q0"], rtol=1e-14)
    # strained: azimuths disagree, the average is wider and centred at the chi-mean of q_center
    assert np.all(np.asarray(fr["ring_fwhm"][1]) > fw[1])
    qc = np.asarray(fr["q_center"][1])  # (reflection, azimuth) at -180, -170, ... 170 deg
    np.testing.assert_allclose(fr["ring_q_center"][1], qc.mean(axis=1), rtol=1e-6)


# ------------------------------------------------------------------ two phases
def _two_gauss(x, a1, m1, s1, a2, m2, s2, b0, b1):
    return (a1 * np.exp(-0.5 * ((x - m1) / s1) ** 2) + a2 * np.exp(-0.5 * ((x - m2) / s2) ** 2)
            + b0 + b1 * (x - 30.6))


def test_two_phase_truth():
    run = S.tensile_run(applied_strain=[0.0, 0.002, 0.05, 0.1], shape=(128, 128), phase="Fe-bcc",
                        second_phase="Fe-fcc")
    truth = run.truth(ring_average=False)
    assert truth["phases"] == ["Fe-bcc", "Fe-fcc"] and truth["second_phase"] == "Fe-fcc"
    lab, ph = truth["reflections"]["label"], truth["reflections"]["phase"]
    assert set(ph) == {"Fe-bcc", "Fe-fcc"} and all(lb.startswith(p) for lb, p in zip(lab, ph))
    e = np.array([0.0, 0.002, 0.05, 0.1])
    f = 0.5 + (0.05 - 0.5) * e / 0.1  # the second phase fades linearly with applied strain
    np.testing.assert_allclose(truth["frames"]["second_phase_fraction"], f, rtol=1e-12)
    second = np.array([p == "Fe-fcc" for p in ph])
    frac = np.asarray(truth["frames"]["phase_fraction"])
    np.testing.assert_allclose(frac[:, second], np.repeat(f[:, None], second.sum(), 1), rtol=1e-12)
    np.testing.assert_allclose(frac[:, ~second], np.repeat(1 - f[:, None], (~second).sum(), 1), rtol=1e-12)
    area = np.asarray(truth["frames"]["area"])
    np.testing.assert_allclose(area / area[0], frac / frac[0], rtol=1e-12)  # area follows the fraction
    ia, ig = lab.index("Fe-bcc 110"), lab.index("Fe-fcc 111")
    q0 = np.asarray(truth["reflections"]["q0"])
    assert 0.6 < q0[ia] - q0[ig] < 0.8  # ferrite 110 / austenite 111, 0.69 1/nm apart
    # the phases strain alike while elastic and differently after yield: the separation changes
    ea = np.asarray(truth["frames"]["eps_axial"])
    np.testing.assert_allclose(ea[1, [ia, ig]], 0.002, rtol=1e-12)
    assert ea[3, ig] - ea[3, ia] == pytest.approx(0.02 * (2.5 - 1.0) * (0.1 - 0.004), rel=1e-9)
    qc = np.asarray(truth["frames"]["q_center"])
    j0 = truth["azimuth_deg"].index(0.0)
    sep = qc[:, ia, j0] - qc[:, ig, j0]
    assert sep[3] - sep[0] > 0.07 and np.all(np.diff(sep[1:]) > 0)
    # 1 - f for a first-phase model on its own is the fraction of the second phase's complement
    model = S.TensileModel(applied_strain=list(e), phase="Fe-bcc", second_phase="Fe-fcc",
                           second_phase_fraction=(0.2, 0.6))
    np.testing.assert_allclose(model.second_phase_fractions(), 0.2 + 0.4 * e / 0.1, rtol=1e-12)


def test_two_phase_image_has_the_truth_separation_and_fraction():
    """Sector fits of the overlapping ferrite 110 / austenite 111 pair (about 1 FWHM apart)
    recover the truth's positions, separation (which changes with load) and area ratio
    (= fraction ratio: both are their phase's strongest reflection)."""
    run = S.tensile_run(applied_strain=[0.0, 0.1], shape=(512, 512), seed=2, phase="Fe-bcc",
                        second_phase="Fe-fcc", instrument_sigma_mm=0.8, ring_counts=30000.0,
                        second_phase_fraction=(0.6, 0.25))
    truth = run.truth(ring_average=False)
    lab = truth["reflections"]["label"]
    ia, ig = lab.index("Fe-bcc 110"), lab.index("Fe-fcc 111")
    ai = run.integrator()
    seps = {}
    for k in (0, 1):
        img = run.frame(k)
        ratio = truth["frames"]["area"][k][ig] / truth["frames"]["area"][k][ia]
        fr = truth["frames"]["phase_fraction"][k]
        assert ratio == pytest.approx(fr[ig] / fr[ia], rel=1e-12)
        for chi0 in (0.0, 90.0):
            res = ai.integrate1d(img, 200, unit="q_nm^-1", method=("bbox", "csr", "cython"),
                                 polarization_factor=0.99, radial_range=(28.8, 32.5),
                                 azimuth_range=(chi0 - 10, chi0 + 10))
            x, y = res.radial, res.intensity
            t = run.truth_at(k, np.linspace(chi0 - 10, chi0 + 10, 201))
            qa, qg = t["q_center"][ia].mean(), t["q_center"][ig].mean()
            sa, sg = t["sigma"][ia], t["sigma"][ig]
            p, _ = curve_fit(_two_gauss, x, y, p0=[y.max(), qa, sa, y.max() / 2, qg, sg, y.min(), 0.0],
                             maxfev=20000)
            assert abs(p[1] - qa) < 0.05 * sa and abs(p[4] - qg) < 0.05 * sg, (k, chi0, p)
            assert abs((p[1] - p[4]) - (qa - qg)) < 0.01, (k, chi0, p[1] - p[4], qa - qg)
            fitted_ratio = abs(p[3] * p[5]) / abs(p[0] * p[2])
            assert fitted_ratio == pytest.approx(ratio, rel=0.05), (k, chi0, fitted_ratio, ratio)
            seps[k, chi0] = p[1] - p[4]
    # along the load the pair separates, across it it closes up (Poisson contraction)
    assert seps[1, 0.0] - seps[0, 0.0] > 0.06
    assert seps[1, 90.0] - seps[0, 90.0] < -0.015


def test_two_phase_non_gaussian_run_written(tmp_path):
    paths = S.write_tensile_run(tmp_path, 2, prefix="duplex", shape=(128, 128), phase="Fe-bcc",
                                second_phase="Fe-fcc", peak_shape="split_pseudo_voigt", eta=0.2,
                                asymmetry=-0.2)
    truth = json.loads(paths["truth"].read_text())
    n = len(truth["reflections"]["label"])
    assert truth["shape"] == "split_pseudo_voigt" and truth["asymmetry"] == -0.2 and truth["eta"] == 0.2
    for key in ("fwhm", "height", "area", "phase_fraction", "ring_fwhm", "ring_q_center", "ring_q_peak"):
        assert np.shape(truth["frames"][key]) == (2, n), key
    assert truth["frames"]["second_phase_fraction"] == [0.5, 0.05]
    assert truth["model"]["peak_shape"] == "split_pseudo_voigt" and truth["model"]["second_phase"] == "Fe-fcc"


# ------------------------------------------------------------------ pattern_run
def test_pattern_run_layout_and_truth():
    patterns, truth = S.pattern_run(4, azimuth=6, positions=[22.0, 25.0, 27.0], heights=[100.0, 50.0, 10.0],
                                    fwhm=[[0.1, 0.2, 0.3]], shape="pearson7", m=[1.5, 2.0, 4.0],
                                    background=[10.0, 2.0, 0.5], seed=3)
    assert patterns.dims == ("frame", "azimuth", "q") and patterns.shape == (4, 6, 1001)
    assert patterns.attrs["radial_unit"] == "q_nm^-1" and patterns.attrs["units"] == "counts"
    assert patterns.q.attrs["units"] == "1/nm" and patterns.attrs["wavelength_a"] > 0
    np.testing.assert_allclose(patterns.azimuth, np.arange(-150.0, 180.0, 60.0))
    for key in ("position", "fwhm", "amplitude", "area", "eta", "m", "asymmetry"):
        assert truth[key].dims == ("frame", "azimuth", "peak"), key
    np.testing.assert_array_equal(truth.m[2, 3], [1.5, 2.0, 4.0])
    np.testing.assert_allclose(truth.area, [[[P.area(a, w, "pearson7", m=m) for a, w, m in
                                              zip([100.0, 50.0, 10.0], [0.1, 0.2, 0.3], [1.5, 2.0, 4.0])]]]
                               * np.ones((4, 6, 1)), rtol=1e-12)
    bg = P.chebyshev_background(patterns.q.values, [10.0, 2.0, 0.5], 20.0, 30.0)
    np.testing.assert_allclose(truth.background_coefficients[1, 2], [10.0, 2.0, 0.5])
    far = np.abs(patterns.q.values - 24.0) < 0.2  # 2 .. 10 FWHM from every peak
    np.testing.assert_allclose(truth.expected[0, 0].values[far], bg[far], rtol=0.02)
    # Poisson noise, seeded: counts, reproducible, z-scores about 1
    again, _ = S.pattern_run(4, azimuth=6, positions=[22.0, 25.0, 27.0], heights=[100.0, 50.0, 10.0],
                             fwhm=[[0.1, 0.2, 0.3]], shape="pearson7", m=[1.5, 2.0, 4.0],
                             background=[10.0, 2.0, 0.5], seed=3)
    np.testing.assert_array_equal(patterns.values, again.values)
    z = (patterns.values - truth.expected.values) / np.sqrt(truth.expected.values)
    assert abs(z.mean()) < 0.02 and 0.97 < z.std() < 1.03
    quiet, qt = S.pattern_run(2, positions=[25.0], noise=False)
    np.testing.assert_array_equal(quiet.values, qt.expected.values)


@pytest.mark.parametrize("shape, params", [
    ("gaussian", {}),
    ("pearson7", dict(m=3.0)),
    ("lorentzian", {}),
    ("pseudo_voigt", dict(eta=0.6)),
    ("split_pseudo_voigt", dict(eta=0.5, asymmetry=0.4)),
])
def test_pattern_run_rows_integrate_to_the_truth_area(shape, params):
    """A noiseless row minus its background integrates (trapezoid) to the truth area, the part
    of a heavy tail outside the q range (closed form for the pseudo-Voigts) subtracted."""
    q = np.linspace(10.0, 40.0, 30001)
    patterns, truth = S.pattern_run(2, q=q, positions=[[24.0, 26.5]], heights=[300.0, 120.0],
                                    fwhm=[0.15, 0.3], shape=shape, background=[20.0, 5.0], noise=False,
                                    **params)
    bg = P.chebyshev_background(q, [20.0, 5.0], q[0], q[-1])
    got = np.trapezoid(patterns.values[0, 0] - bg, q)
    expected = 0.0
    eta = {"lorentzian": 1.0, "gaussian": 0.0}.get(shape, params.get("eta", 0.0))
    for p in range(2):
        a, x0, w = (float(truth[k][0, 0, p]) for k in ("amplitude", "position", "fwhm"))
        if shape == "pearson7":
            expected += float(truth.area[0, 0, p])  # m = 3: tail outside < 1e-8
            continue
        wl, wr = (w * (1 - params.get("asymmetry", 0.0)), w * (1 + params.get("asymmetry", 0.0)))
        outside = 0.0  # closed form of the tails beyond the q range, on each side
        for ww, dist in ((wl, x0 - q[0]), (wr, q[-1] - x0)):
            lor = 0.5 * ww * (0.5 * math.pi - math.atan(2 * dist / ww))  # int_dist^inf dt / (1 + 4 t^2 / ww^2)
            gau = 0.5 * ww * P.G_AREA * erfc(math.sqrt(P.FOUR_LN2) * dist / ww)
            outside += a * (eta * lor + (1 - eta) * gau)
        expected += float(truth.area[0, 0, p]) - outside
    assert got == pytest.approx(expected, rel=2e-6), (got, expected, float(truth.area[0, 0].sum()))


def test_pattern_run_drifting_and_vanishing_peaks():
    patterns, truth = S.pattern_run(11, positions=[22.0, 26.0], heights=[200.0, 80.0], fwhm=0.1,
                                    drift=[5.0, 0.0], vanish=[1], noise=False, background=0.0)
    pos = truth.position.values[:, 0, :]
    np.testing.assert_allclose(pos[:, 0], 22.0 + 5.0 * np.arange(11) / 10, rtol=1e-14)  # 100 half widths
    np.testing.assert_array_equal(pos[:, 1], 26.0)
    amp = truth.amplitude.values[:, 0, :]
    np.testing.assert_allclose(amp[:, 1], 80.0 * (1 - np.arange(11) / 10), rtol=1e-14, atol=1e-12)
    assert amp[-1, 1] == 0.0 and truth.area.values[-1, 0, 1] == 0.0
    np.testing.assert_array_equal(amp[:, 0], 200.0)
    rows = patterns.values[:, 0, :]
    q = patterns.q.values
    # the drifting peak's maximum follows the truth; the vanishing one's height does
    np.testing.assert_allclose(q[np.argmax(np.where(q < 27.5, rows, 0), axis=1)][[0, 5]], [22.0, 24.5])
    near = np.abs(q - 26.0) < 0.005
    np.testing.assert_allclose(rows[:, near].max(axis=1)[:5], amp[:5, 1], rtol=1e-3)
    assert rows[-1, near].max() < 1e-6


@pytest.mark.parametrize("kwargs, name", [
    (dict(shape="voigt"), "shape"),
    (dict(fwhm=0.0), "fwhm"),
    (dict(heights=-1.0), "heights"),
    (dict(eta=2.0), "eta"),
    (dict(m=0.4), "m"),
    (dict(asymmetry=1.0), "asymmetry"),
    (dict(positions=[24.0, 25.0], heights=[1.0, 2.0, 3.0]), "heights"),
    (dict(vanish=[3]), "vanish"),
    (dict(q=[1.0, 0.5]), "q"),
    (dict(background=[-10.0]), "background"),
    (dict(n_frames=0), "n_frames"),
])
def test_pattern_run_validation(kwargs, name):
    with pytest.raises(ValueError, match=name):
        S.pattern_run(**kwargs)
