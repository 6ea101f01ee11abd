"""Unit conversions shared by every module (numpy only, cheap to import).

Conventions: energy in keV, wavelength and d-spacing in Angstrom, q in 1/nm, 2theta in
degrees. Scalars in give floats out; arrays broadcast. Non-physical inputs (zero,
negative, non-finite) raise ValueError naming the argument.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: h*c in keV*Angstrom (CODATA 2018)
HC_KEV_A = 12.398419843320026

__all__ = [
    "HC_KEV_A",
    "energy_to_wavelength",
    "wavelength_to_energy",
    "q_to_d",
    "d_to_q",
    "two_theta_to_q",
    "q_to_two_theta",
    "d_to_two_theta",
    "two_theta_to_d",
]


def _positive(value: Any, name: str) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    if arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    return arr


def _out(arr: np.ndarray):
    return arr if arr.ndim else float(arr)


def energy_to_wavelength(energy_kev: Any):
    """Photon energy (keV) -> wavelength (Angstrom), ``lambda = hc / E``.

    >>> round(energy_to_wavelength(12.398419843320026), 12)
    1.0
    """
    return _out(HC_KEV_A / _positive(energy_kev, "energy_kev"))


def wavelength_to_energy(wavelength_a: Any):
    """Wavelength (Angstrom) -> photon energy (keV).

    >>> round(wavelength_to_energy(0.4066), 3)
    30.493
    """
    return _out(HC_KEV_A / _positive(wavelength_a, "wavelength_a"))


def q_to_d(q_nm: Any):
    """q (1/nm) -> d-spacing (Angstrom): d = 2*pi/q, converted nm -> Angstrom.

    >>> round(q_to_d(2 * np.pi), 12)
    10.0
    """
    return _out(20.0 * np.pi / _positive(q_nm, "q_nm"))


def d_to_q(d_a: Any):
    """d-spacing (Angstrom) -> q (1/nm).

    >>> round(d_to_q(10.0), 6)
    6.283185
    """
    return _out(20.0 * np.pi / _positive(d_a, "d_a"))


def two_theta_to_q(two_theta_deg: Any, wavelength_a: Any):
    """Scattering angle 2theta (deg) -> q (1/nm) at ``wavelength_a`` (Angstrom).

    >>> round(two_theta_to_q(7.4615, 0.4066), 3)
    20.11
    """
    theta = np.deg2rad(np.asarray(two_theta_deg, dtype=float)) / 2.0
    return _out(4.0 * np.pi * np.sin(theta) / (_positive(wavelength_a, "wavelength_a") / 10.0))


def q_to_two_theta(q_nm: Any, wavelength_a: Any):
    """q (1/nm) -> 2theta (deg); NaN where out of reach (q > 4 pi / lambda).

    >>> round(q_to_two_theta(two_theta_to_q(10.0, 0.5), 0.5), 9)
    10.0
    """
    s = np.asarray(q_nm, dtype=float) * (_positive(wavelength_a, "wavelength_a") / 10.0) / (4 * np.pi)
    with np.errstate(invalid="ignore"):
        return _out(np.rad2deg(2.0 * np.arcsin(np.where(np.abs(s) <= 1, s, np.nan))))


def d_to_two_theta(d_a: Any, wavelength_a: Any):
    """d-spacing (Angstrom) -> 2theta (deg) by Bragg's law; NaN where lambda > 2d.

    >>> round(d_to_two_theta(3.12441816, 0.4066), 4)
    7.4615
    >>> d_to_two_theta([1.0, 0.4], 1.0)
    array([60., nan])
    """
    s = _positive(wavelength_a, "wavelength_a") / (2.0 * _positive(d_a, "d_a"))
    with np.errstate(invalid="ignore"):
        return _out(np.where(s <= 1.0, 2.0 * np.degrees(np.arcsin(np.minimum(s, 1.0))), np.nan))


def two_theta_to_d(two_theta_deg: Any, wavelength_a: Any):
    """2theta (deg) -> d-spacing (Angstrom) by Bragg's law.

    >>> round(two_theta_to_d(7.4615, 0.4066), 4)
    3.1244
    """
    tt = np.asarray(two_theta_deg, dtype=float)
    if tt.size == 0 or np.any(~np.isfinite(tt)) or np.any(tt <= 0) or np.any(tt > 180):
        raise ValueError(f"two_theta_deg must be in (0, 180], got {two_theta_deg!r}")
    return _out(_positive(wavelength_a, "wavelength_a") / (2.0 * np.sin(np.radians(tt) / 2.0)))
