"""xrdflow.units: the one home of units, against textbook formulas and numerical derivatives."""

from __future__ import annotations

import math

import numpy as np
import pytest

from xrdflow import units as U


def test_fwhm_factor_is_two_sqrt_two_ln_two():
    # the half maximum of exp(-x^2 / 2 sigma^2) lies at x = sigma sqrt(2 ln 2)
    sigma = 0.37
    half = sigma * U.FWHM_FACTOR / 2
    assert math.exp(-(half**2) / (2 * sigma**2)) == pytest.approx(0.5, rel=1e-14)
    assert U.FWHM_FACTOR == pytest.approx(2.3548200450309493, rel=1e-15)


def test_energy_wavelength_round_trip_and_known_values():
    # 87.1 keV (the notebook's beam) is 0.14235 Angstrom
    assert U.energy_to_wavelength(87.1) == pytest.approx(0.142347, abs=2e-6)
    e = np.array([8.048, 17.479, 87.1])  # Cu K-alpha, Mo K-alpha, the notebook
    np.testing.assert_allclose(U.wavelength_to_energy(U.energy_to_wavelength(e)), e, rtol=1e-15)
    assert U.energy_to_wavelength(8.048) == pytest.approx(1.5406, abs=2e-4)


def test_bragg_law_and_q():
    lam, d = 0.5, 2.0
    tth = U.d_to_two_theta(d, lam)
    assert lam == pytest.approx(2 * d * math.sin(math.radians(tth) / 2), rel=1e-14)
    q = U.two_theta_to_q(tth, lam)  # q = 4 pi sin(theta) / lambda, lambda in nm
    assert q == pytest.approx(2 * math.pi / (d / 10), rel=1e-13)
    assert U.q_to_d(q) == pytest.approx(d, rel=1e-13)
    assert U.q_to_two_theta(q, lam) == pytest.approx(tth, rel=1e-12)
    assert math.isnan(U.d_to_two_theta(0.2, lam))  # lambda > 2d: no reflection


@pytest.mark.parametrize("unit", ["q_nm^-1", "q_A^-1", "2th_deg", "2th_rad", "d*2_A^-2", "d*2_nm^-2"])
def test_radial_to_d_and_back_for_every_convertible_unit(unit):
    lam = 0.3344
    d = np.array([0.8, 1.5, 2.8])
    x = U.d_to_radial(d, unit, wavelength_a=lam)
    np.testing.assert_allclose(U.radial_to_d(x, unit, wavelength_a=lam), d, rtol=1e-13)
    # by hand
    expect = {
        "q_nm^-1": 2 * np.pi / (d / 10), "q_A^-1": 2 * np.pi / d,
        "2th_deg": np.degrees(2 * np.arcsin(lam / (2 * d))), "2th_rad": 2 * np.arcsin(lam / (2 * d)),
        "d*2_A^-2": 1 / d**2, "d*2_nm^-2": 1 / (d / 10) ** 2,
    }[unit]
    np.testing.assert_allclose(x, expect, rtol=1e-13)


@pytest.mark.parametrize("unit", ["q_nm^-1", "q_A^-1", "2th_deg", "2th_rad", "d*2_A^-2"])
def test_d_derivative_matches_a_numerical_derivative(unit):
    lam = 0.5
    x = U.d_to_radial(np.array([1.3]), unit, wavelength_a=lam)
    h = 1e-6 * x
    numeric = (U.radial_to_d(x + h, unit, lam) - U.radial_to_d(x - h, unit, lam)) / (2 * h)
    d = U.radial_to_d(x, unit, lam)
    np.testing.assert_allclose(U.radial_d_derivative(x, d, unit), np.abs(numeric), rtol=1e-6)


def test_radial_to_d_says_none_where_it_cannot_convert():
    assert U.radial_to_d(1.0, "r_mm") is None
    assert U.radial_to_d(1.0, "2th_deg") is None  # no wavelength
    with pytest.raises(ValueError, match="wavelength_a"):
        U.d_to_radial(1.0, "2th_deg")
    with pytest.raises(ValueError, match="unit"):
        U.d_to_radial(1.0, "r_mm")


def test_radial_table_is_consistent():
    for key, u in U.RADIAL_UNITS.items():
        assert U.radial_unit_from_dim(u.dim, u.units) == key
        assert u.dim in U.RADIAL_DIMS
    assert set(U.RADIAL_DIMS) == {"q", "two_theta", "r", "d_star_squared"}


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), [], [1.0, -2.0]])
def test_conversions_name_the_bad_argument(bad):
    with pytest.raises(ValueError, match="energy_kev"):
        U.energy_to_wavelength(bad)
    with pytest.raises(ValueError, match="wavelength_a"):
        U.d_to_two_theta(1.0, bad)


def test_attrs_helper():
    assert U.attrs("lattice strain", U.DIMENSIONLESS) == {"long_name": "lattice strain", "units": "1"}
    assert U.attrs("status", flag_values=[0, 1]) == {"long_name": "status", "flag_values": [0, 1]}
