"""The one home of units (numpy only, cheap to import).

- unit strings written into ``units`` attributes (``ANGSTROM``, ``INTENSITY``...) and the
  ``attrs()`` helper that pairs them with a ``long_name``;
- the radial-unit table (pyFAI unit string -> dimension name, units, long name);
- conversions: energy <-> wavelength, q / 2theta / d, any radial unit <-> d-spacing;
- the Gaussian ``FWHM_FACTOR``.

Conventions: energy in keV, wavelength and d-spacing in Angstrom, q in 1/nm, 2theta in
degrees. Scalars in give floats out; arrays broadcast. Non-physical inputs (zero,
negative, non-finite) raise ValueError naming the argument.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from .options import positive_array as _positive

#: h*c in keV*Angstrom (CODATA 2018)
HC_KEV_A = 12.398419843320026

#: FWHM of a Gaussian in units of its sigma: 2 sqrt(2 ln 2)
FWHM_FACTOR = 2.0 * math.sqrt(2.0 * math.log(2.0))

# ---------------------------------------------------------------- unit strings (UDUNITS)
ANGSTROM = "angstrom"
INV_NM = "1/nm"
INV_ANGSTROM = "1/A"
DEGREE = "deg"
RADIAN = "rad"
KEV = "keV"
MM = "mm"
METRE = "m"
SECOND = "s"
DIMENSIONLESS = "1"
#: integrated or fitted intensity: the detector's counts after pyFAI's normalisation
INTENSITY = "arbitrary units"


def attrs(long_name: str, units: str | None = None, **extra: Any) -> dict[str, Any]:
    """``{"long_name": ..., "units": ...}`` (plus ``extra``) for a variable's attrs.

    >>> attrs("d-spacing", ANGSTROM)
    {'long_name': 'd-spacing', 'units': 'angstrom'}
    """
    out: dict[str, Any] = {"long_name": long_name}
    if units is not None:
        out["units"] = units
    out.update(extra)
    return out


class RadialUnit(NamedTuple):
    """A pyFAI radial unit as xrdflow labels it."""

    dim: str  #: dimension name of the radial axis
    units: str  #: ``units`` attribute
    long_name: str  #: ``long_name`` attribute
    nexus_name: str  #: short name written as the NeXus axis long_name


#: pyFAI radial unit string -> how xrdflow labels it
RADIAL_UNITS: dict[str, RadialUnit] = {
    "q_nm^-1": RadialUnit("q", INV_NM, "scattering vector q", "q"),
    "q_A^-1": RadialUnit("q", INV_ANGSTROM, "scattering vector q", "q"),
    "2th_deg": RadialUnit("two_theta", DEGREE, "scattering angle 2theta", "2theta"),
    "2th_rad": RadialUnit("two_theta", RADIAN, "scattering angle 2theta", "2theta"),
    "r_mm": RadialUnit("r", MM, "radius on the detector", "r"),
    "r_m": RadialUnit("r", METRE, "radius on the detector", "r"),
    "d*2_A^-2": RadialUnit("d_star_squared", "1/A^2", "squared reciprocal d-spacing", "d*2"),
    "d*2_nm^-2": RadialUnit("d_star_squared", "1/nm^2", "squared reciprocal d-spacing", "d*2"),
}

#: radial dimension names, in a fixed order
RADIAL_DIMS = tuple(dict.fromkeys(u.dim for u in RADIAL_UNITS.values()))


def radial_unit_from_dim(dim: str, units: str | None) -> str | None:
    """The pyFAI unit string of a radial axis named ``dim`` with ``units`` (None if unknown).

    >>> radial_unit_from_dim("two_theta", "deg")
    '2th_deg'
    """
    for key, u in RADIAL_UNITS.items():
        if u.dim == dim and u.units == units:
            return key
    return None

__all__ = [
    "HC_KEV_A",
    "FWHM_FACTOR",
    "RADIAL_UNITS",
    "RadialUnit",
    "attrs",
    "radial_to_d",
    "d_to_radial",
    "energy_to_wavelength",
    "wavelength_to_energy",
    "q_to_d",
    "d_to_q",
    "two_theta_to_q",
    "q_to_two_theta",
    "d_to_two_theta",
    "two_theta_to_d",
]


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


# ------------------------------------------------------------- any radial unit <-> d
def radial_to_d(x, unit: str, wavelength_a: float | None = None):
    """d-spacing in Angstrom from a radial position in the pyFAI ``unit``.

    Returns ``None`` when the unit cannot be converted (``r_mm`` without a distance, or
    2theta without a wavelength).

    Examples
    --------
    >>> round(float(radial_to_d(2 * np.pi, "q_nm^-1")), 6)
    10.0
    >>> round(float(radial_to_d(2 * np.pi, "q_A^-1")), 6)
    1.0
    """
    if unit == "q_nm^-1":
        return 20.0 * np.pi / x
    if unit == "q_A^-1":
        return 2.0 * np.pi / x
    if unit == "d*2_A^-2":
        return 1.0 / np.sqrt(x)
    if unit == "d*2_nm^-2":
        return 10.0 / np.sqrt(x)
    if unit in ("2th_deg", "2th_rad") and wavelength_a is not None:
        theta = np.deg2rad(x) / 2 if unit == "2th_deg" else x / 2
        return wavelength_a / (2.0 * np.sin(theta))
    return None


def radial_d_derivative(x, d, unit: str):
    """|dd/dx| at radial position ``x`` (d-spacing ``d``), for error propagation.

    >>> round(float(radial_d_derivative(2 * np.pi, 10.0, "q_nm^-1")), 6)
    1.591549
    """
    if unit.startswith("q_"):
        return d / x
    if unit.startswith("d*2"):
        return d / (2.0 * x)
    k = np.pi / 180.0 if unit == "2th_deg" else 1.0
    return d * (k / 2.0) / np.tan(k * x / 2.0)


def d_to_radial(d, unit: str, wavelength_a: float | None = None):
    """Radial position in the pyFAI ``unit`` of a d-spacing in Angstrom (NaN if unreachable).

    Examples
    --------
    >>> round(float(d_to_radial(1.0, "q_A^-1")), 6)
    6.283185
    >>> round(float(d_to_radial(1.0, "2th_deg", wavelength_a=1.0)), 6)
    60.0
    """
    d = np.asarray(d, dtype=float)
    if unit == "q_nm^-1":
        return 20.0 * np.pi / d
    if unit == "q_A^-1":
        return 2.0 * np.pi / d
    if unit == "d*2_A^-2":
        return 1.0 / d**2
    if unit == "d*2_nm^-2":
        return 100.0 / d**2
    if unit in ("2th_deg", "2th_rad"):
        if wavelength_a is None:
            raise ValueError("wavelength_a: needed to place reflections on a 2theta axis")
        s = wavelength_a / (2.0 * d)
        with np.errstate(invalid="ignore"):
            tth = 2.0 * np.arcsin(np.where(s <= 1, s, np.nan))
        return np.rad2deg(tth) if unit == "2th_deg" else tth
    raise ValueError(f"unit: reflections cannot be placed on a {unit!r} axis; give centres or windows")
