"""Peak profiles, as numpy functions: the reference definitions of every ``fit_peaks`` shape.

Every profile is written in its FWHM ``fwhm`` and peak height ``amplitude`` (the value at
the centre ``x0``, above the background), so the fitted parameters mean the same for every
shape. With ``t = (x - x0) / fwhm``:

================  ==========================================================================
shape             profile (height 1 at the centre)
================  ==========================================================================
``gaussian``      ``G(t) = exp(-4 ln2 t^2)``
``lorentzian``    ``L(t) = 1 / (1 + 4 t^2)``
``pseudo_voigt``  ``eta L(t) + (1 - eta) G(t)``, one FWHM for both, ``0 <= eta <= 1``
``pearson7``      ``(1 + 4 (2^(1/m) - 1) t^2)^(-m)``: ``m = 1`` Lorentzian, ``m -> inf``
                  Gaussian
``split_pseudo_   a pseudo-Voigt whose half width differs on the two sides: FWHM
voigt``           ``fwhm (1 - asymmetry)`` left of ``x0`` and ``fwhm (1 + asymmetry)`` right
                  of it, so that ``fwhm`` is still the full width at half maximum and
                  ``asymmetry > 0`` is a tail towards larger ``x``
================  ==========================================================================

The integrated intensity (``area``) and integral breadth (``area / amplitude``) follow in
closed form (:func:`area`); the numba fit kernels (:mod:`xrdflow._kernels.profile`) use the
same formulas with analytic derivatives, and the tests compare the two.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["SHAPES", "SHAPE_PARAMETERS", "profile", "peak", "area", "integral_breadth",
           "G_AREA", "L_AREA", "chebyshev_background"]

#: the peak shapes fit_peaks knows
SHAPES = ("gaussian", "lorentzian", "pseudo_voigt", "pearson7", "split_pseudo_voigt")
#: the shape parameters of each (besides amplitude, position, fwhm)
SHAPE_PARAMETERS = {
    "gaussian": (),
    "lorentzian": (),
    "pseudo_voigt": ("eta",),
    "pearson7": ("m",),
    "split_pseudo_voigt": ("eta", "asymmetry"),
}

FOUR_LN2 = 4.0 * math.log(2.0)
#: area of the unit-height Gaussian of unit FWHM, sqrt(pi / (4 ln 2))
G_AREA = math.sqrt(math.pi / FOUR_LN2)
#: area of the unit-height Lorentzian of unit FWHM, pi / 2
L_AREA = 0.5 * math.pi


def _pv(t, eta):
    return eta / (1.0 + 4.0 * t * t) + (1.0 - eta) * np.exp(-FOUR_LN2 * t * t)


def profile(x, x0, fwhm, shape: str = "gaussian", *, eta: float = 0.5, m: float = 2.0,
            asymmetry: float = 0.0):
    """Unit-height profile of ``shape`` centred at ``x0`` with full width ``fwhm``.

    >>> float(profile(1.0, 1.0, 0.1, "pseudo_voigt", eta=0.3))
    1.0
    >>> round(float(profile(1.05, 1.0, 0.1, "pearson7", m=3.0)), 12)
    0.5
    """
    x = np.asarray(x, dtype=float)
    if shape == "gaussian":
        return _pv((x - x0) / fwhm, 0.0)
    if shape == "lorentzian":
        return _pv((x - x0) / fwhm, 1.0)
    if shape == "pseudo_voigt":
        return _pv((x - x0) / fwhm, eta)
    if shape == "pearson7":
        t = (x - x0) / fwhm
        return (1.0 + 4.0 * (2.0 ** (1.0 / m) - 1.0) * t * t) ** (-m)
    if shape == "split_pseudo_voigt":
        side = np.where(x < x0, 1.0 - asymmetry, 1.0 + asymmetry)
        return _pv((x - x0) / (fwhm * side), eta)
    raise ValueError(f"shape: expected one of {SHAPES}, got {shape!r}")


def peak(x, amplitude, x0, fwhm, shape: str = "gaussian", **shape_parameters):
    """``amplitude * profile(x, ...)``: a peak of height ``amplitude`` above 0."""
    return amplitude * profile(x, x0, fwhm, shape, **shape_parameters)


def _unit_area(shape, eta, m):
    if shape == "gaussian":
        return G_AREA
    if shape == "lorentzian":
        return L_AREA
    if shape in ("pseudo_voigt", "split_pseudo_voigt"):
        return eta * L_AREA + (1.0 - eta) * G_AREA
    if shape == "pearson7":
        c = 2.0 ** (1.0 / m) - 1.0
        return math.sqrt(math.pi) * math.exp(math.lgamma(m - 0.5) - math.lgamma(m)) / (2.0 * math.sqrt(c))
    raise ValueError(f"shape: expected one of {SHAPES}, got {shape!r}")


def integral_breadth(fwhm, shape: str = "gaussian", *, eta: float = 0.5, m: float = 2.0,
                     asymmetry: float = 0.0):
    """Integral breadth (area / height) of a profile; independent of ``asymmetry``.

    >>> round(integral_breadth(1.0, "lorentzian"), 12) == round(np.pi / 2, 12)
    True
    """
    return fwhm * _unit_area(shape, eta, m)


def area(amplitude, fwhm, shape: str = "gaussian", **shape_parameters):
    """Integrated intensity of a peak: ``amplitude * integral_breadth``.

    >>> x = np.linspace(-50, 50, 200001)
    >>> y = peak(x, 2.0, 0.3, 0.7, "pearson7", m=2.5)
    >>> bool(abs(np.trapezoid(y, x) / area(2.0, 0.7, "pearson7", m=2.5) - 1) < 1e-4)
    True
    """
    return amplitude * integral_breadth(fwhm, shape, **shape_parameters)


def chebyshev_background(x, coefficients, low, high):
    """``sum_k c_k T_k(u)``, ``u = (2 x - low - high) / (high - low)`` in [-1, 1] on the window.

    The background model of ``fit_peaks(background=("chebyshev", n))`` (``n + 1``
    coefficients); ``constant`` and ``linear`` are its orders 0 and 1.
    """
    u = (2.0 * np.asarray(x, dtype=float) - low - high) / (high - low)
    return np.polynomial.chebyshev.chebval(u, np.asarray(coefficients, dtype=float))
