"""xrdflow.geometry: PONI round trips (pyFAI readers too), orientation, helpers, cache."""

from __future__ import annotations

import pickle
import threading

import numpy as np
import pytest

from conftest import shared
from xrdflow.engines.pyfai import cached_integrator
from xrdflow.geometry import (
    Geometry,
    d_to_q,
    d_to_two_theta,
    energy_to_wavelength,
    q_to_d,
    q_to_two_theta,
    two_theta_to_d,
    two_theta_to_q,
    wavelength_to_energy,
)

G = Geometry(dist=1.2, poni1=0.2046, poni2=0.2073, rot1=-0.0029, rot2=0.0082, rot3=1e-6,
             wavelength=1.393e-11, detector="Detector", pixel1=296e-6, pixel2=296e-6,
             max_shape=(1441, 1440))


def test_helpers_against_bragg():
    # CeO2 (111) at 0.4066 A: 2theta = 7.4615 deg (PROVENANCE of the CeO2 image)
    assert d_to_two_theta(3.12441816, 0.4066) == pytest.approx(7.4615, abs=2e-4)
    assert two_theta_to_d(7.4615, 0.4066) == pytest.approx(3.12441816, rel=3e-5)
    assert q_to_d(d_to_q(2.5)) == pytest.approx(2.5)
    assert d_to_q(10.0) == pytest.approx(2 * np.pi / 1.0)  # 10 A = 1 nm
    q = two_theta_to_q(20.0, 0.7)
    assert q_to_two_theta(q, 0.7) == pytest.approx(20.0)
    assert np.isnan(q_to_two_theta(1e3, 1.0))
    assert wavelength_to_energy(energy_to_wavelength(87.1)) == pytest.approx(87.1)
    assert energy_to_wavelength(12.398419843320026) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="energy_kev"):
        energy_to_wavelength(0)


@pytest.mark.parametrize("version", [1, 2, 2.1])
@pytest.mark.parametrize("orientation", ["as_read", "flipud"])
def test_poni_round_trip_and_pyfai_reads_it(tmp_path, version, orientation):
    import pyFAI

    g = G.replace(orientation=orientation)
    path = tmp_path / "g.poni"
    g.to_poni(path, version=version)
    back = Geometry.from_poni(path)
    # PONI v1 has no detector shape
    assert back == (g.replace(max_shape=None) if version == 1 else g)
    ai = pyFAI.load(str(path))  # pyFAI's own reader ignores our orientation comment
    for name in ("dist", "poni1", "poni2", "rot1", "rot2", "rot3", "wavelength"):
        assert getattr(ai, name) == pytest.approx(getattr(g, name), rel=1e-15, abs=0)
    assert ai.detector.pixel1 == pytest.approx(296e-6)
    assert Geometry.from_pyfai(ai, orientation=orientation).replace(max_shape=g.max_shape) == g


def test_orientation_conflict_and_validation(tmp_path):
    path = tmp_path / "g.poni"
    G.replace(orientation="flipud").to_poni(path)
    with pytest.raises(ValueError, match="xrdflow_orientation"):
        Geometry.from_poni(path, orientation="as_read")
    with pytest.raises(FileNotFoundError, match="nope.poni"):
        Geometry.from_poni(tmp_path / "nope.poni")
    with pytest.raises(ValueError, match="orientation"):
        G.replace(orientation="upside")
    with pytest.raises(ValueError, match="wavelength"):
        G.replace(wavelength=1.393)  # Angstrom given instead of metres
    with pytest.raises(ValueError, match="detector"):
        Geometry(dist=1, poni1=0, poni2=0, wavelength=1e-10, detector="NoSuchDetector")


def test_dioptas_reference_poni_beam_centre():
    path = shared("dioptas-ceo2-pilatus1m", "CeO2_Pilatus1M.poni")
    g = Geometry.from_poni(path, orientation="flipud")
    assert g.orientation == "flipud"
    # Fit2D values quoted in PROVENANCE.md
    x, y = g.beam_center_px
    assert (x, y) == pytest.approx((487.259, 512.548), abs=2e-3)
    assert g.fit2d["directDist"] == pytest.approx(208.689, abs=2e-3)
    assert g.energy_kev == pytest.approx(30.49, abs=0.01)


def test_named_detector_and_pixels():
    g = Geometry(dist=0.2, poni1=0.09, poni2=0.08, wavelength=4.066e-11, detector="Pilatus1M")
    assert g.max_shape == (1043, 981) and g.pixel1 == pytest.approx(172e-6)
    assert Geometry.from_pyfai(g.to_pyfai()) == g


def test_hashable_picklable_and_small():
    assert pickle.loads(pickle.dumps(G)) == G
    assert hash(G) == hash(G.replace())
    assert len(pickle.dumps(G)) < 1000
    assert G != G.replace(rot3=0.0)


def test_integrator_cache_is_per_thread():
    got = {}

    def grab(name):
        got[name] = (cached_integrator(G), cached_integrator(G))

    threads = [threading.Thread(target=grab, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in got.values():
        assert a is b  # built once per thread
    ids = {id(a) for a, _ in got.values()}
    assert len(ids) == 3  # never shared between threads
    assert cached_integrator(G.replace(dist=1.3)) is not cached_integrator(G)
