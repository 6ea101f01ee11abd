"""Unit conversions shared by every module (no heavy imports).

Conventions: energy in keV, wavelength and d-spacing in Angstrom, q in 1/nm,
2theta in degrees.
"""

from __future__ import annotations

import numpy as np

#: h*c in keV*Angstrom (CODATA 2018)
HC_KEV_A = 12.398419843320026

__all__ = [
    "HC_KEV_A",
    "wavelength_a_from_kev",
    "energy_kev_from_wavelength_a",
    "q_nm_from_d_a",
    "d_a_from_q_nm",
    "two_theta_deg_from_d_a",
    "d_a_from_two_theta_deg",
]


def wavelength_a_from_kev(energy_kev):
    """Wavelength (Angstrom) of X-rays of ``energy_kev`` keV.

    >>> round(float(wavelength_a_from_kev(87.1)), 6)
    0.142347
    """
    return HC_KEV_A / np.asarray(energy_kev, dtype=float)[()]


def energy_kev_from_wavelength_a(wavelength_a):
    """Energy (keV) of X-rays of wavelength ``wavelength_a`` Angstrom."""
    return HC_KEV_A / np.asarray(wavelength_a, dtype=float)[()]


def q_nm_from_d_a(d_a):
    """q (1/nm) = 2*pi/d, with d in Angstrom."""
    return 2 * np.pi / np.asarray(d_a, dtype=float) * 10.0


def d_a_from_q_nm(q_nm):
    """d (Angstrom) = 2*pi/q, with q in 1/nm."""
    return 2 * np.pi / np.asarray(q_nm, dtype=float) * 10.0


def two_theta_deg_from_d_a(d_a, wavelength_a):
    """Bragg angle 2theta (deg) for spacing ``d_a``; NaN where lambda > 2d (no reflection)."""
    s = np.asarray(wavelength_a, dtype=float) / (2 * np.asarray(d_a, dtype=float))
    with np.errstate(invalid="ignore"):
        return np.degrees(2 * np.arcsin(np.where(np.abs(s) <= 1, s, np.nan)))


def d_a_from_two_theta_deg(two_theta_deg, wavelength_a):
    """d-spacing (Angstrom) from the Bragg angle 2theta (deg)."""
    return np.asarray(wavelength_a, dtype=float) / (2 * np.sin(np.radians(np.asarray(two_theta_deg, dtype=float)) / 2))
