"""xrdflow.calibrate: automatic calibration from a rough guess, against known geometries."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import shared
from xrdflow import calibrate
from xrdflow.geometry import Geometry


@pytest.fixture(scope="module")
def synthetic_lab6():
    synthetic = pytest.importorskip("xrdflow.synthetic")
    img, truth = synthetic.calibrant_image()  # LaB6, Perkin 2048x2048 200 um, 87.1 keV
    return img, truth, Geometry.from_pyfai(truth.integrator())


@pytest.mark.slow  # ~40 s; quick: test_small_image_flipud_d_min_outputs_reproducible
def test_synthetic_lab6_accuracy(tmp_path, synthetic_lab6):
    img, truth, tg = synthetic_lab6
    bx, by = tg.beam_center_px
    res = calibrate(img, "LaB6", energy_kev=truth["energy_kev"], detector=tg.to_pyfai().detector,
                    distance_mm=tg.fit2d["directDist"] * 1.05, beam_center_px=(bx + 30, by - 20),
                    poni=tmp_path / "lab6.poni", report=tmp_path / "lab6.txt",
                    figure=tmp_path / "lab6.png")
    g = res.geometry
    assert np.hypot(*np.subtract(g.beam_center_px, (bx, by))) < 0.05
    assert abs(g.dist / tg.dist - 1) < 2e-4
    assert g.wavelength == tg.wavelength  # fixed by default
    assert res.rms_px < 0.2 and res.n_rings >= 10 and res.n_points > 1000
    assert Geometry.from_poni(tmp_path / "lab6.poni") == g
    assert "rms residual" in (tmp_path / "lab6.txt").read_text()
    assert (tmp_path / "lab6.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow  # ~13 s; quick: test_small_image_flipud_d_min_outputs_reproducible
def test_d_min_leaves_out_rings(synthetic_lab6):
    img, truth, tg = synthetic_lab6
    res = calibrate(img, "LaB6", energy_kev=truth["energy_kev"], detector=tg.to_pyfai().detector,
                    distance_mm=tg.fit2d["directDist"], beam_center_px=tg.beam_center_px, d_min=1.0)
    assert min(d for _, d, _, _ in res.rings) >= 1.0
    assert np.hypot(*np.subtract(res.geometry.beam_center_px, tg.beam_center_px)) < 0.1


@pytest.mark.slow  # ~18 s; flipud quick: test_small_image_flipud_d_min_outputs_reproducible
def test_real_ceo2_pilatus_from_rough_guess():
    import fabio

    folder = shared("dioptas-ceo2-pilatus1m")
    ref = Geometry.from_poni(folder / "CeO2_Pilatus1M.poni", orientation="flipud")
    raw = fabio.open(str(folder / "CeO2_Pilatus1M.tif")).data
    bx, by = ref.beam_center_px
    res = calibrate(raw, "CeO2", wavelength_a=0.4066, detector="Pilatus1M",
                    distance_mm=ref.fit2d["directDist"] * 1.05, beam_center_px=(bx + 30, by),
                    orientation="flipud")
    g = res.geometry
    assert g.orientation == "flipud"
    assert np.hypot(*np.subtract(g.beam_center_px, (bx, by))) < 0.5
    assert abs(g.dist / ref.dist - 1) < 1e-3
    assert res.rms_px < 0.5 and res.n_rings >= 10


def test_validation():
    img = np.zeros((50, 60))
    with pytest.raises(ValueError, match="energy_kev"):
        calibrate(img, "LaB6", detector=1e-4, distance_mm=100)
    with pytest.raises(ValueError, match="distance_mm"):
        calibrate(img, "LaB6", energy_kev=30, detector=1e-4, distance_mm=-1)
    with pytest.raises(ValueError, match="calibrant"):
        calibrate(img, "Unobtainium", energy_kev=30, detector=1e-4, distance_mm=100)
    with pytest.raises(ValueError, match="fix"):
        calibrate(img, "LaB6", energy_kev=30, detector=1e-4, distance_mm=100, fix=("tilt",))
    with pytest.raises(ValueError, match="detector"):
        calibrate(img, "LaB6", energy_kev=30, detector="Pilatus1M", distance_mm=100)
    with pytest.raises(FileNotFoundError, match="nothing.tif"):
        calibrate("nothing.tif", "LaB6", energy_kev=30, detector=1e-4, distance_mm=100)


@pytest.mark.slow  # ~18 s; quick: test_small_image_flipud_d_min_outputs_reproducible
def test_calibration_is_reproducible_and_leaves_global_rng_alone(tmp_path):
    """pyFAI picks control points at random: the same image and guess must still give the
    same geometry every time (a run re-calibrated on another backend gave 0.04 mm apart)."""
    from xrdflow.synthetic import calibrant_image

    img, truth = calibrant_image(shape=(512, 512), seed=0)  # the demo image at 4x binning
    np.random.seed(123)
    before = np.random.random(3)
    np.random.seed(123)
    results = [calibrate(img, "LaB6", energy_kev=87.1, detector="Perkin", distance_mm=1150.0)
               for _ in range(2)]
    assert results[0].geometry == results[1].geometry
    np.testing.assert_array_equal(np.random.random(3), before)  # caller's RNG stream untouched


def test_small_image_flipud_d_min_outputs_reproducible(tmp_path):
    """The quick run's calibration check (~5 s, a Perkin binned 8 x 8): a flipped image with
    orientation="flipud", d_min, the PONI/report/figure outputs, and the same geometry twice
    with the caller's numpy.random stream untouched."""
    from xrdflow.synthetic import calibrant_image

    img, truth = calibrant_image(shape=(256, 256), seed=0)
    tg = Geometry.from_pyfai(truth.integrator())
    np.random.seed(123)
    before = np.random.random(3)
    np.random.seed(123)
    out = {"poni": tmp_path / "c.poni", "report": tmp_path / "c.txt", "figure": tmp_path / "c.png"}
    results = [calibrate(np.flipud(img), "LaB6", energy_kev=87.1, detector="Perkin", distance_mm=1150.0,
                         orientation="flipud", d_min=1.0, **out) for _ in range(2)]
    np.testing.assert_array_equal(np.random.random(3), before)
    res = results[0]
    g = res.geometry
    assert results[1].geometry == g and g.orientation == "flipud"
    assert min(d for _, d, _, _ in res.rings) >= 1.0 and res.n_rings >= 10
    assert np.hypot(*np.subtract(g.beam_center_px, tg.beam_center_px)) < 0.05
    assert abs(g.dist / tg.dist - 1) < 1e-4 and res.rms_px < 0.2
    assert Geometry.from_poni(out["poni"], orientation="flipud") == g
    assert "rms residual" in out["report"].read_text()
    assert out["figure"].read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png", "c.poni", "c.txt"]  # no partial files
