"""Synthetic 1-D patterns (frame, azimuth, q) with exact peak parameters, for fit tests.

:func:`pattern_run` makes what an azimuthal integration of a run hands to
``fit_peaks``: rows ``I(q) = background(q) + sum_p amplitude_p * profile(q; position_p,
fwhm_p, shape, eta_p, m_p, asymmetry_p)`` (:func:`xrdflow.profiles.profile`, the reference
definitions of the fit shapes), optionally Poisson-sampled, and the exact parameters as an
:class:`xarray.Dataset` on (frame, azimuth, peak), so that a fit can be scored by its
z-scores against the truth.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import options
from ..profiles import SHAPE_PARAMETERS, SHAPES, area, profile

__all__ = ["pattern_run"]

_DEFAULT_WAVELENGTH_A = 0.14235  # 87.1 keV


def _grid(value: Any, name: str, n_frames: int, n_azimuth: int, n_peak: int) -> np.ndarray:
    """``value`` broadcast to (frame, azimuth, peak) as a float array (ValueError naming it)."""
    arr = np.asarray(value, dtype=float)
    try:
        out = np.broadcast_to(arr, (n_frames, n_azimuth, n_peak)).astype(float)
    except ValueError:
        raise ValueError(f"{name}: shape {arr.shape} does not broadcast to (frame, azimuth, peak) = "
                         f"{(n_frames, n_azimuth, n_peak)}") from None
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{name}: must be finite")
    return out


def _per_peak(value: Any, name: str, n_peak: int, dtype=float) -> np.ndarray:
    arr = np.asarray(value, dtype=dtype)
    try:
        return np.broadcast_to(arr, (n_peak,)).astype(dtype)
    except ValueError:
        raise ValueError(f"{name}: must be a scalar or one value per peak ({n_peak}), "
                         f"got shape {arr.shape}") from None


def pattern_run(
    n_frames: int = 10,
    *,
    q: Any = None,
    azimuth: Any = None,
    positions: Any = (25.0,),
    heights: Any = 1000.0,
    fwhm: Any = 0.1,
    shape: str = "gaussian",
    eta: Any = 0.5,
    m: Any = 2.0,
    asymmetry: Any = 0.0,
    background: Any = 100.0,
    background_range: tuple[float, float] | None = None,
    drift: Any = 0.0,
    vanish: Any = None,
    noise: bool = True,
    seed: int = 0,
    wavelength_a: float = _DEFAULT_WAVELENGTH_A,
):
    """Synthetic 1-D patterns of known peaks on a Chebyshev background, and their truth.

    Parameters
    ----------
    n_frames
        Number of frames.
    q
        Radial grid (1/nm, 1D increasing); default ``linspace(20, 30, 1001)``.
    azimuth
        Azimuth bin centres (deg), or an int ``n``: ``n`` equal sectors of -180..180;
        default one (full-ring) azimuth at 0.
    positions, heights, fwhm
        Peak centre (1/nm), height above the background (counts; ``amplitude`` in the
        truth) and FWHM (1/nm), each broadcastable to (frame, azimuth, peak); the number of
        peaks is the last axis of ``positions``.
    shape
        Profile of every peak, one of :data:`xrdflow.profiles.SHAPES`.
    eta, m, asymmetry
        Shape parameters (as :func:`xrdflow.profiles.profile`), broadcastable to
        (frame, azimuth, peak): ``eta`` in [0, 1], ``m > 0.5``, ``|asymmetry| < 1``. They are
        recorded in the truth for every shape (those the shape does not use are ignored).
    background
        A constant (counts), or Chebyshev coefficients ``c_0..c_n`` (last axis; leading axes
        broadcastable to (frame, azimuth)) of :func:`xrdflow.profiles.chebyshev_background`
        on ``background_range``.
    background_range
        ``(low, high)`` mapped to [-1, 1] by the Chebyshev background; default the q range.
    drift
        Shift of each peak's position (1/nm, broadcastable to (azimuth, peak) or per peak)
        from the first frame to the last, linear in the frame index: ``position(k) =
        positions + drift * k / (n_frames - 1)``. A drift of many peak widths makes a peak
        walk out of any fixed fit window.
    vanish
        Peaks (indices, or a boolean per peak) whose height falls linearly to 0 over the run:
        ``height(k) = heights * (1 - k / (n_frames - 1))``, exactly 0 in the last frame.
    noise
        Poisson-sample the expected counts (``numpy.random.default_rng(seed)``); False: the
        expected counts themselves.
    seed
        Seed of the noise.
    wavelength_a
        Recorded in the attributes (Angstrom; default 87.1 keV).

    Returns
    -------
    (xarray.DataArray, xarray.Dataset)
        ``patterns`` (frame, azimuth, q), float counts, attrs ``radial_unit="q_nm^-1"``,
        ``wavelength_a``, ``units="counts"``, ``shape``, ``noise``, ``seed``; coords
        ``frame`` (0..n-1), ``azimuth`` (deg), ``q`` (units ``1/nm``). ``truth`` with
        ``position``, ``fwhm``, ``amplitude``, ``area`` (:func:`xrdflow.profiles.area`),
        ``eta``, ``m``, ``asymmetry`` on (frame, azimuth, peak), ``background_coefficients``
        on (frame, azimuth, order), ``expected`` (the noise-free patterns), attrs ``shape``,
        ``background_low``, ``background_high``, ``noise``, ``seed``.

    Examples
    --------
    >>> patterns, truth = pattern_run(3, positions=[24.0, 25.0], heights=[500.0, 200.0],
    ...                               fwhm=0.2, shape="pseudo_voigt", eta=0.4,
    ...                               background=[50.0, -10.0], drift=[0.0, 1.0], vanish=[1])
    >>> patterns.dims, patterns.shape, patterns.attrs["radial_unit"]
    (('frame', 'azimuth', 'q'), (3, 1, 1001), 'q_nm^-1')
    >>> truth.position.sel(peak=1).values.ravel().tolist(), truth.amplitude[:, 0, 1].values.tolist()
    ([25.0, 25.5, 26.0], [200.0, 100.0, 0.0])
    >>> row = truth.expected.isel(frame=0, azimuth=0)  # at q = 24: peak 0 + background 50 - 10 u
    >>> round(float(row.sel(q=24.0)) - 500.0 - 52.0, 2)  # + the tail of peak 1, 5 FWHM away
    0.79
    >>> bool(np.all(patterns.values == np.round(patterns.values)))  # Poisson counts
    True
    """
    import xarray as xr

    n_frames = options.positive_int(n_frames, "n_frames")
    if not isinstance(shape, str) or shape not in SHAPES:
        raise ValueError(f"shape: must be one of {SHAPES}, got {shape!r}")
    qg = np.linspace(20.0, 30.0, 1001) if q is None else np.asarray(q, dtype=float)
    if qg.ndim != 1 or qg.size < 2 or not np.all(np.isfinite(qg)) or np.any(np.diff(qg) <= 0):
        raise ValueError("q: must be a 1D increasing array of finite q (1/nm) with >= 2 points")
    if azimuth is None:
        az = np.array([0.0])
    elif isinstance(azimuth, (int, np.integer)) and not isinstance(azimuth, bool):
        n_az = options.positive_int(azimuth, "azimuth")
        az = -180.0 + (np.arange(n_az) + 0.5) * (360.0 / n_az)
    else:
        az = np.atleast_1d(np.asarray(azimuth, dtype=float))
        if az.ndim != 1 or not np.all(np.isfinite(az)):
            raise ValueError("azimuth: must be None, an int or a 1D array of finite azimuths (deg)")
    n_az = az.size
    pos0 = np.asarray(positions, dtype=float)
    n_peak = int(pos0.shape[-1]) if pos0.ndim else 1
    grid = {name: _grid(v, name, n_frames, n_az, n_peak) for name, v in (
        ("positions", positions), ("heights", heights), ("fwhm", fwhm), ("eta", eta), ("m", m),
        ("asymmetry", asymmetry))}
    if np.any(grid["fwhm"] <= 0):
        raise ValueError("fwhm: must be > 0")
    if np.any(grid["heights"] < 0):
        raise ValueError("heights: must be >= 0")
    if np.any((grid["eta"] < 0) | (grid["eta"] > 1)):
        raise ValueError("eta: must be in [0, 1]")
    if np.any(grid["m"] <= 0.5):
        raise ValueError("m: must be > 0.5 (Pearson VII exponent)")
    if np.any(np.abs(grid["asymmetry"]) >= 1):
        raise ValueError("asymmetry: must be in (-1, 1)")
    ramp = np.arange(n_frames) / (n_frames - 1) if n_frames > 1 else np.zeros(1)
    d = np.asarray(drift, dtype=float)
    try:
        d = np.broadcast_to(d, (n_az, n_peak))
    except ValueError:
        raise ValueError(f"drift: shape {d.shape} does not broadcast to (azimuth, peak) = "
                         f"{(n_az, n_peak)}") from None
    if not np.all(np.isfinite(d)):
        raise ValueError("drift: must be finite")
    position = grid["positions"] + ramp[:, None, None] * d[None, :, :]
    amplitude = grid["heights"].copy()
    if vanish is not None:
        v = np.asarray(vanish)
        if v.dtype == bool:
            gone = _per_peak(v, "vanish", n_peak, bool)
        else:
            idx = np.atleast_1d(v).astype(int)
            if idx.ndim != 1 or np.any((idx < -n_peak) | (idx >= n_peak)):
                raise ValueError(f"vanish: peak indices must be in 0..{n_peak - 1}, got {vanish!r}")
            gone = np.zeros(n_peak, bool)
            gone[idx] = True
        amplitude[:, :, gone] *= (1.0 - ramp)[:, None, None]
    # background: Chebyshev coefficients (frame, azimuth, order)
    b = np.asarray(background, dtype=float)
    if b.ndim == 0:
        b = b[None]
    try:
        coef = np.broadcast_to(b, (n_frames, n_az, b.shape[-1])).astype(float)
    except ValueError:
        raise ValueError(f"background: shape {b.shape} does not broadcast to (frame, azimuth, "
                         f"order) = {(n_frames, n_az, b.shape[-1])}") from None
    if not np.all(np.isfinite(coef)):
        raise ValueError("background: must be finite")
    low, high = (float(qg[0]), float(qg[-1])) if background_range is None else map(float, background_range)
    if not (math.isfinite(low) and math.isfinite(high) and high > low):
        raise ValueError(f"background_range: must be (low, high) with high > low, got {background_range!r}")
    u = (2.0 * qg - low - high) / (high - low)
    cheb = np.polynomial.chebyshev.chebvander(u, coef.shape[-1] - 1)  # (q, order)
    expected = coef @ cheb.T  # (frame, azimuth, q)
    for p in range(n_peak):  # one peak at a time keeps memory at (frame, azimuth, q)
        sl = (slice(None), slice(None), slice(p, p + 1))
        expected += amplitude[sl] * profile(qg[None, None, :], position[sl], grid["fwhm"][sl], shape,
                                            eta=grid["eta"][sl], m=grid["m"][sl],
                                            asymmetry=grid["asymmetry"][sl])
    seed = options.positive_int(seed, "seed", allow_zero=True)
    if noise:
        if np.any(expected < 0):
            raise ValueError("background: the expected counts must be >= 0 for Poisson noise")
        data = np.random.default_rng(seed).poisson(expected).astype(float)
    else:
        data = expected.copy()
    if shape == "pearson7":  # its closed form uses math.lgamma: one call per distinct m
        mu, inverse = np.unique(grid["m"], return_inverse=True)
        unit = np.array([area(1.0, 1.0, shape, m=float(v)) for v in mu])[inverse.reshape(grid["m"].shape)]
        areas = amplitude * grid["fwhm"] * unit
    else:
        areas = area(amplitude, grid["fwhm"], shape, eta=grid["eta"])
    coords = {"frame": np.arange(n_frames), "azimuth": ("azimuth", az, {"units": "deg"}),
              "q": ("q", qg, {"units": "1/nm"})}
    attrs = dict(radial_unit="q_nm^-1", wavelength_a=float(wavelength_a), units="counts",
                 shape=shape, noise=int(bool(noise)), seed=seed)
    patterns = xr.DataArray(data, dims=("frame", "azimuth", "q"), coords=coords, name="intensity",
                            attrs=attrs)
    dims = ("frame", "azimuth", "peak")
    truth = xr.Dataset(
        {
            "position": (dims, position, {"units": "1/nm"}),
            "fwhm": (dims, grid["fwhm"], {"units": "1/nm"}),
            "amplitude": (dims, amplitude, {"units": "counts", "long_name": "height above background"}),
            "area": (dims, areas, {"units": "counts * 1/nm"}),
            "eta": (dims, grid["eta"]),
            "m": (dims, grid["m"]),
            "asymmetry": (dims, grid["asymmetry"]),
            "background_coefficients": (("frame", "azimuth", "order"), coef,
                                        {"long_name": "Chebyshev coefficients on "
                                                      "[background_low, background_high]"}),
            "expected": (("frame", "azimuth", "q"), expected, {"units": "counts"}),
        },
        coords={"frame": np.arange(n_frames), "azimuth": ("azimuth", az, {"units": "deg"}),
                "peak": np.arange(n_peak), "order": np.arange(coef.shape[-1]),
                "q": ("q", qg, {"units": "1/nm"})},
        attrs=dict(shape=shape, shape_parameters=",".join(SHAPE_PARAMETERS[shape]),
                   background_low=low, background_high=high, noise=int(bool(noise)), seed=seed,
                   wavelength_a=float(wavelength_a)),
    )
    return patterns, truth
