"""Physically faithful synthetic experiments with exact ground truth.

Two kinds of synthetic data, both made with pyFAI's own geometry (pixel q, azimuth,
solid angle and polarization come from :class:`pyFAI.integrator.azimuthal.AzimuthalIntegrator`),
deterministic from a seed, and written as a beamline writes them:

* :func:`calibrant_image` / :func:`write_calibrant`: a powder calibrant (LaB6 by default, ring
  positions from pyFAI's calibrant, ring intensities from :func:`xrdflow.crystal.reflections`)
  on a flat panel (pyFAI ``"Perkin"``: PerkinElmer 2048 x 2048, 200 um) at 87.1 keV.
* :func:`tensile_run` / :func:`write_tensile_run`: an in-situ tensile test of hcp Mg
  (reflections and relative intensities from :func:`xrdflow.crystal.reflections`), N frames
  with an applied-strain schedule, azimuth-dependent lattice strain and plastic broadening.
* :func:`write_demo`: a complete demo input folder (calibrant + run).

Image model
-----------
For each pixel with centre scattering vector length ``q`` (1/nm) and azimuth ``chi``
(pyFAI ``center_array``), the expected counts are::

    lambda = [ B(q) + sum_i H_i * exp(-(q - q_i(chi))**2 / (2 sigma_i**2)) ] * Omega * P

``Omega`` is pyFAI's relative solid angle (``solidAngleArray``, 1 at the PONI) and ``P`` its
polarization factor (``polarization(factor=polarization_factor)``), so a pyFAI integration
with ``correctSolidAngle=True`` and ``polarization_factor=<truth polarization_factor>``
divides them out and recovers ``B(q) + rings`` exactly (up to binning). ``B(q) =
background * (0.2 + 0.8 * exp(-q / 30 nm^-1))`` models air/amorphous scatter decaying with q.
The rings are evaluated at pixel centres (the Gaussian sigma therefore includes the pixel
response) and only within ``band_sigmas`` (default 6) sigma of the ring, where the
truncated tail is below 1.6e-8 of the peak. ``H_i`` is the peak height; the ring's area in
q (counts * 1/nm, i.e. the area under a corrected, azimuthally averaged 1D pattern) is
proportional to the relative intensity from :func:`xrdflow.crystal.reflections` and does
not change when a ring broadens. The strongest ring has height ``ring_counts`` at frame 0.
Counts are Poisson draws (:class:`numpy.random.Generator`), clipped at ``saturation``
and stored as ``dtype`` (uint16 for the PerkinElmer, as a 16-bit panel writes them).

Strain model (tensile run)
--------------------------
Applied engineering strain ``e`` per frame (linear ramp 0 -> ``max_strain`` by default).
For each reflection ``i``::

    eps_axial_i(e)      = e                                        e <= yield_strain
                        = yield_strain + h * s_i * (e - yield_strain)  beyond
    eps_transverse_i(e) = -poisson_ratio * eps_axial_i(e)
    eps_i(psi)          = eps_axial_i cos^2 psi + eps_transverse_i sin^2 psi
    q_i(chi)            = q0_i / (1 + eps_i(psi))      (lattice strain = d/d0 - 1 = eps)

with ``h = hardening_ratio`` (tangent modulus / Young's modulus) and ``s_i`` the grain-family
load-sharing factor (``load_sharing``; Mg defaults: 10-10 0.6, 0002 1.5, 10-11 1.0, others 1.0:
prism-oriented grains relax by easy prismatic slip, the hard c-axis family takes more load).
``psi`` is the angle between the *exact* scattering vector of the ring and the load axis,
which lies in the sample plane normal to the beam at detector azimuth ``load_azimuth_deg``
(pyFAI chi convention: 0 deg along +x, the image's fast axis; 90 deg along +y, the rows):
``cos psi = cos(theta_i) cos(chi - load_azimuth)`` with ``theta_i`` the unstrained Bragg angle
(the scattering vector tilts by theta out of the detector plane; at 87 keV cos^2 theta =
0.9993). Peak width::

    sigma_i(e) = sqrt(sigma_inst_i**2 + (q0_i * broadening * max(e - yield_strain, 0))**2)

with ``sigma_inst_i`` the instrumental width ``instrument_sigma_mm`` (a radial length on the
detector: beam size, sample thickness, point spread; default 0.2 mm = one PerkinElmer pixel)
converted to q at the ring's 2theta and the PONI distance. The load (N) follows a bilinear
engineering stress-strain curve ``E min(e, e_y) + h E max(e - e_y, 0)`` times the
cross-section. Frames are independent: frame ``k`` uses ``default_rng([seed, k])`` so any
frame can be made alone, in any order, on any worker.

Truth is exact to this model: per frame x reflection x sampled azimuth ``q_center`` (1/nm),
``lattice_strain``; per frame x reflection ``sigma`` (1/nm, azimuth independent),
``eps_axial``, ``eps_transverse``, and the ring-averaged values that a full-azimuth 1D
integration (uniform weight in chi, corrections applied) followed by a single-Gaussian
least-squares fit would see (``ring_q_fit``, ``ring_sigma_fit``) and its first two moments
(``ring_q_mean``, ``ring_sigma_rms``). Pixel footprint (pixel splitting) and bin width
broaden a measured profile beyond ``sigma`` (a box of width w adds w**2/12 to sigma**2); they
do not shift the centres.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .units import HC_KEV_A

__all__ = [
    "DEFAULT_GEOMETRY",
    "MG_LOAD_SHARING",
    "CalibrantImage",
    "TensileRun",
    "calibrant_image",
    "defect_mask",
    "tensile_run",
    "write_calibrant",
    "write_tensile_run",
    "write_demo",
]

#: Default PONI (pyFAI units: metres, radians) relative to the detector centre: distance
#: 1.2 m, PONI 9.7 mm below / 11.8 mm left of the centre (+48.5 / -59 PerkinElmer pixels
#: of 200 um), rot1 = 4 mrad, rot2 = -3 mrad, rot3 = 0. For the PerkinElmer (409.6 mm square)
#: this is poni1 = 0.2145 m, poni2 = 0.1930 m.
DEFAULT_GEOMETRY: dict[str, float] = {
    "dist": 1.2,
    "poni1_from_center": 0.0097,
    "poni2_from_center": -0.0118,
    "rot1": 0.004,
    "rot2": -0.003,
    "rot3": 0.0,
}

#: Default post-yield load-sharing factors of Mg grain families (multiplying hardening_ratio).
MG_LOAD_SHARING: dict[str, float] = {"10-10": 0.6, "0002": 1.5, "10-11": 1.0}

_BG_FLOOR = 0.2
_BG_DECAY_Q = 30.0  # 1/nm
_FWHM = 2.0 * math.sqrt(2.0 * math.log(2.0))
_DTYPES = ("uint16", "uint32", "int32")


# ----------------------------------------------------------------------------- checks
def _check_positive(value: Any, name: str, *, allow_zero: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'} and finite, got {value!r}")
    return v


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _check_dtype(dtype: Any, saturation: Any) -> tuple[np.dtype, int]:
    dt = np.dtype(dtype)
    if dt.name not in _DTYPES:
        raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
    top = int(np.iinfo(dt).max)
    if saturation is None:
        return dt, top
    if isinstance(saturation, bool) or not isinstance(saturation, (int, np.integer)) or not 0 < saturation <= top:
        raise ValueError(f"saturation must be an integer in 1..{top} for {dt.name}, got {saturation!r}")
    return dt, int(saturation)


# --------------------------------------------------------------------------- geometry
def _make_detector(detector: Any, shape: Any):
    import copy

    import pyFAI
    from pyFAI.detectors import Detector

    if isinstance(detector, str):
        try:
            det = pyFAI.detector_factory(detector)
        except Exception as exc:  # pyFAI raises RuntimeError / KeyError for unknown names
            raise ValueError(f"detector: unknown pyFAI detector {detector!r} ({exc})") from None
    elif isinstance(detector, Detector):
        det = copy.deepcopy(detector)
    else:
        raise ValueError(f"detector must be a pyFAI detector name or Detector, got {detector!r}")
    if det.shape is None:
        raise ValueError(f"detector: {detector!r} has no shape")
    if shape is not None:
        try:
            shape = tuple(int(s) for s in shape)
        except (TypeError, ValueError):
            raise ValueError(f"shape must be (rows, columns), got {shape!r}") from None
        if len(shape) != 2 or min(shape) <= 0:
            raise ValueError(f"shape must be (rows, columns), got {shape!r}")
        if shape != tuple(det.shape):
            full = tuple(int(s) for s in det.max_shape)
            if full[0] % shape[0] or full[1] % shape[1]:
                raise ValueError(
                    f"shape {shape} must divide the unbinned detector shape {full} "
                    f"(the detector is binned to keep its physical size)")
            det.binning = (full[0] // shape[0], full[1] // shape[1])
            if tuple(det.shape) != shape:
                raise ValueError(f"shape: detector {det.name!r} cannot be binned to {shape}")
    return det


def _resolve_geometry(geometry: Any, detector: Any, shape: Any, energy_kev: Any):
    """Return a pyFAI AzimuthalIntegrator for the arguments (eager validation)."""
    from pyFAI.geometry import Geometry as PyFAIGeometry
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

    if energy_kev is not None:
        energy_kev = _check_positive(energy_kev, "energy_kev")
    src_det = None
    src_wl = None
    if geometry is None:
        values = None
    elif isinstance(geometry, (str, os.PathLike)):
        path = Path(geometry)
        if not path.is_file():
            raise FileNotFoundError(f"geometry: PONI file not found: {path}")
        import pyFAI

        ai0 = pyFAI.load(str(path))
        values = {k: getattr(ai0, k) for k in ("dist", "poni1", "poni2", "rot1", "rot2", "rot3")}
        src_det, src_wl = ai0.detector, ai0.wavelength
    elif isinstance(geometry, PyFAIGeometry):
        values = {k: getattr(geometry, k) for k in ("dist", "poni1", "poni2", "rot1", "rot2", "rot3")}
        src_det, src_wl = geometry.detector, geometry.wavelength
    elif hasattr(geometry, "to_pyfai") and hasattr(geometry, "orientation"):  # xrdflow Geometry
        if geometry.orientation != "as_read":
            raise ValueError("geometry: synthetic images are written as read; use an 'as_read' Geometry")
        ai0 = geometry.to_pyfai()
        values = {k: getattr(ai0, k) for k in ("dist", "poni1", "poni2", "rot1", "rot2", "rot3")}
        src_det, src_wl = ai0.detector, ai0.wavelength
    elif isinstance(geometry, Mapping):
        allowed = {"dist", "poni1", "poni2", "rot1", "rot2", "rot3"}
        unknown = set(geometry) - allowed
        if unknown:
            raise ValueError(f"geometry: unknown keys {sorted(unknown)} (allowed: {sorted(allowed)}, "
                             "in metres and radians as pyFAI)")
        values = {k: float(geometry.get(k, 0.0)) for k in allowed}
        if "dist" not in geometry or values["dist"] <= 0:
            raise ValueError("geometry: 'dist' (metres, > 0) is required")
        if not all(math.isfinite(v) for v in values.values()):
            raise ValueError(f"geometry: values must be finite, got {dict(geometry)}")
    else:
        raise ValueError("geometry must be None, a mapping of PONI values, a PONI file path, "
                         f"a pyFAI Geometry or an xrdflow Geometry; got {type(geometry).__name__}")

    if src_det is not None and detector is not None:
        raise ValueError("detector: the geometry already carries a detector; do not pass both")
    det = _make_detector(src_det if src_det is not None else (detector or "Perkin"), shape)
    if energy_kev is None:
        energy_kev = HC_KEV_A / (src_wl * 1e10) if src_wl else 87.1
    elif src_wl and abs(HC_KEV_A / (src_wl * 1e10) - energy_kev) > 1e-6 * energy_kev:
        raise ValueError(f"energy_kev={energy_kev} disagrees with the geometry's wavelength "
                         f"({HC_KEV_A / (src_wl * 1e10):.6f} keV)")
    if values is None:
        size1 = det.shape[0] * det.pixel1
        size2 = det.shape[1] * det.pixel2
        values = {
            "dist": DEFAULT_GEOMETRY["dist"],
            "poni1": size1 / 2 + DEFAULT_GEOMETRY["poni1_from_center"],
            "poni2": size2 / 2 + DEFAULT_GEOMETRY["poni2_from_center"],
            "rot1": DEFAULT_GEOMETRY["rot1"],
            "rot2": DEFAULT_GEOMETRY["rot2"],
            "rot3": DEFAULT_GEOMETRY["rot3"],
        }
    wavelength_m = HC_KEV_A / energy_kev * 1e-10
    return AzimuthalIntegrator(detector=det, wavelength=wavelength_m, **values), float(energy_kev)


def _poni_dict(ai) -> dict[str, Any]:
    cfg = ai.get_config()
    out = {k: float(cfg[k]) for k in ("dist", "poni1", "poni2", "rot1", "rot2", "rot3", "wavelength")}
    out["detector"] = cfg["detector"]
    dc = dict(cfg.get("detector_config") or {})
    out["detector_config"] = {k: (int(v) if k == "orientation" else v) for k, v in dc.items()}
    out["shape"] = [int(s) for s in ai.detector.shape]
    out["units"] = "dist, poni1, poni2, wavelength in m; rot1..3 in rad (pyFAI PONI)"
    f2d = ai.getFit2D()
    out["beam_center_px"] = [float(f2d["centerY"]), float(f2d["centerX"])]
    out["distance_mm"] = float(ai.dist * 1e3)
    return out


class _Pixels:
    """Per-geometry pixel arrays, sorted by q for band-limited ring evaluation."""

    def __init__(self, ai, polarization_factor: float):
        shape = tuple(ai.detector.shape)
        q = np.asarray(ai.center_array(shape, unit="q_nm^-1"), dtype=np.float64).ravel()
        chi = np.asarray(ai.center_array(shape, unit="chi_rad"), dtype=np.float64).ravel()
        corr = np.asarray(ai.solidAngleArray(shape), dtype=np.float64)
        if polarization_factor is not None:
            corr = corr * np.asarray(ai.polarization(shape, factor=polarization_factor), dtype=np.float64)
        corr = corr.ravel()
        self.shape = shape
        self.order = np.argsort(q, kind="stable").astype(np.intp)
        self.q = q[self.order]
        self.chi = chi[self.order]
        self.corr = corr[self.order]
        self.q_min = float(self.q[0])
        self.q_max = float(self.q[-1])
        self._bg = _background_profile(q) * corr  # image order, unit amplitude

    def background(self, amplitude: float) -> np.ndarray:
        return amplitude * self._bg

    def band(self, lo: float, hi: float) -> slice:
        return slice(int(np.searchsorted(self.q, lo, "left")), int(np.searchsorted(self.q, hi, "right")))


@lru_cache(maxsize=4)
def _pixels_cached(key: str, polarization_factor: float) -> _Pixels:
    import pyFAI

    cfg = json.loads(key)
    ai = pyFAI.load(cfg)
    return _Pixels(ai, polarization_factor)


def _pixels(ai, polarization_factor: float) -> _Pixels:
    cfg = ai.get_config()
    cfg["detector_config"] = {k: (int(v) if k == "orientation" else v)
                              for k, v in (cfg.get("detector_config") or {}).items()}
    pix = _pixels_cached(json.dumps(cfg, sort_keys=True, default=str), polarization_factor)
    if pix.shape != tuple(ai.detector.shape):  # config did not round-trip the binning
        pix = _Pixels(ai, polarization_factor)
    return pix


def _background_profile(q: np.ndarray) -> np.ndarray:
    return _BG_FLOOR + (1.0 - _BG_FLOOR) * np.exp(-q / _BG_DECAY_Q)


def _instrument_sigma_q(q0: np.ndarray, wavelength_a: float, dist_m: float, sigma_mm: float) -> np.ndarray:
    """sigma in q (1/nm) of a ring whose radial width on a flat detector is sigma_mm."""
    theta = np.arcsin(q0 * wavelength_a / (4 * np.pi * 10.0))
    tth = 2 * theta
    sigma_tth = sigma_mm * 1e-3 * np.cos(tth) ** 2 / dist_m  # rad
    return (2 * np.pi / (wavelength_a / 10.0)) * np.cos(theta) * sigma_tth


# --------------------------------------------------------------------------- defects
def defect_mask(shape: tuple[int, int], *, seed: int = 0, dead_fraction: float = 2e-4,
                n_hot: int = 8) -> np.ndarray:
    """Deterministic detector defects: dead pixels, a dead column, a gap and hot pixels.

    Parameters
    ----------
    shape
        Image shape (rows, columns).
    seed
        Seed of the random dead/hot pixel positions.
    dead_fraction
        Fraction of randomly placed dead pixels.
    n_hot
        Number of hot pixels (stuck at saturation).

    Returns
    -------
    numpy.ndarray
        int8 array: 0 good, 1 dead (reads 0), 2 hot (reads saturation). The dead column is
        at 3/4 of the width, the gap (4 rows, or fewer on tiny images) at 1/3 of the height.

    Examples
    --------
    >>> m = defect_mask((64, 64), seed=1)
    >>> int((m == 1).sum()) >= 64, int((m == 2).sum())
    (True, 8)
    """
    try:
        shape = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be (rows, columns), got {shape!r}") from None
    if len(shape) != 2 or min(shape) < 8:
        raise ValueError(f"shape must be (rows, columns) with both >= 8, got {shape!r}")
    seed = _check_seed(seed)
    if not 0 <= dead_fraction < 0.5:
        raise ValueError(f"dead_fraction must be in [0, 0.5), got {dead_fraction!r}")
    if isinstance(n_hot, bool) or not isinstance(n_hot, (int, np.integer)) or n_hot < 0:
        raise ValueError(f"n_hot must be a non-negative integer, got {n_hot!r}")
    rng = np.random.default_rng([seed, 0x6D61736B])
    m = np.zeros(shape, np.int8)
    n = shape[0] * shape[1]
    dead = rng.choice(n, size=int(round(dead_fraction * n)), replace=False)
    m.flat[dead] = 1
    m[:, (3 * shape[1]) // 4] = 1
    gap = max(1, min(4, shape[0] // 64))
    r0 = shape[0] // 3
    m[r0:r0 + gap, :] = 1
    good = np.flatnonzero(m.ravel() == 0)
    m.flat[rng.choice(good, size=min(int(n_hot), good.size), replace=False)] = 2
    return m


def _finish(lam: np.ndarray, rng: np.random.Generator, shape, dtype: np.dtype, saturation: int,
            mask: np.ndarray | None) -> np.ndarray:
    counts = rng.poisson(lam)
    np.minimum(counts, saturation, out=counts)
    img = counts.astype(dtype).reshape(shape)
    if mask is not None:
        img[mask == 1] = 0
        img[mask == 2] = saturation
    return img


# --------------------------------------------------------------------------- calibrant
class CalibrantImage(dict):
    """Truth of a synthetic calibrant image (a JSON-serialisable dict).

    Keys: ``kind``, ``calibrant``, ``energy_kev``, ``wavelength_a``, ``poni`` (pyFAI PONI
    values in m/rad + detector, shape, beam centre), ``rings`` (``d_spacing`` A, ``q`` 1/nm,
    ``two_theta`` deg, ``sigma_q`` 1/nm, ``intensity`` relative, ``height`` counts),
    ``polarization_factor``, ``ring_counts``, ``background``, ``dtype``, ``saturation``,
    ``seed``, ``defects``, ``model``. :meth:`integrator` rebuilds the pyFAI integrator.
    """

    def integrator(self):
        """A pyFAI AzimuthalIntegrator at the true geometry."""
        return _integrator_from_poni(self["poni"])


def _integrator_from_poni(poni: Mapping[str, Any]):
    import pyFAI

    cfg = {k: poni[k] for k in ("dist", "poni1", "poni2", "rot1", "rot2", "rot3", "wavelength")}
    cfg.update(detector=poni["detector"], detector_config=dict(poni["detector_config"]), poni_version=2.1)
    ai = pyFAI.load(cfg)
    if tuple(ai.detector.shape) != tuple(poni["shape"]):
        raise ValueError(f"poni: detector shape {ai.detector.shape} != {poni['shape']}")
    return ai


def _calibrant_rings(calibrant: str, energy_kev: float, q_hi: float):
    """Ring d-spacings from pyFAI's calibrant, intensities from xrdflow.crystal when known."""
    from pyFAI.calibrant import get_calibrant

    try:
        cal = get_calibrant(calibrant)
    except Exception:
        raise ValueError(f"calibrant: unknown pyFAI calibrant {calibrant!r}") from None
    d = np.asarray(cal.dspacing, dtype=float)
    q = 20 * np.pi / d
    keep = q <= q_hi
    d, q = d[keep], q[keep]
    intensity = np.full(d.size, np.nan)
    source = "equal integrated intensity per ring (calibrant unknown to xrdflow.crystal)"
    try:
        from .crystal import BUILTIN_PHASES, reflections
    except ImportError:  # pragma: no cover - crystal is part of the package
        BUILTIN_PHASES = ()
    if calibrant in BUILTIN_PHASES:
        ref = reflections(calibrant, energy_kev=energy_kev, q_range=(0.0, q_hi * 1.001))
        rd = ref.d_spacing.values
        ri = ref.intensity.values
        for n, dn in enumerate(d):
            close = np.abs(rd - dn) <= 2e-4 * dn
            if close.any():
                intensity[n] = ri[close].sum()
        source = "xrdflow.crystal.reflections (pymatgen, Lorentz-polarization), coincident families summed"
    missing = ~np.isfinite(intensity)
    if missing.all():
        intensity[:] = 100.0
        source = "equal integrated intensity per ring (calibrant unknown to xrdflow.crystal)"
    else:
        intensity[missing] = 0.0  # extinct in the structure model
        intensity *= 100.0 / intensity.max()
    return d, q, intensity, source


def calibrant_image(
    *,
    calibrant: str = "LaB6",
    energy_kev: float | None = None,
    detector: Any = None,
    geometry: Any = None,
    shape: tuple[int, int] | None = None,
    seed: int = 0,
    ring_counts: float = 20000.0,
    background: float = 400.0,
    instrument_sigma_mm: float = 0.2,
    polarization_factor: float = 0.99,
    dtype: str = "uint16",
    saturation: int | None = None,
    defects: bool = False,
    band_sigmas: float = 6.0,
) -> tuple[np.ndarray, CalibrantImage]:
    """A synthetic powder calibrant image at a known PONI, with its truth.

    Parameters
    ----------
    calibrant
        pyFAI calibrant name (ring d-spacings from :func:`pyFAI.calibrant.get_calibrant`);
        relative ring intensities from :func:`xrdflow.crystal.reflections` when it is a
        built-in phase there (LaB6, CeO2, Si...), otherwise equal.
    energy_kev
        Photon energy (keV); default 87.1, or the wavelength of a PONI ``geometry``.
    detector
        pyFAI detector name or instance; default ``"Perkin"`` (PerkinElmer 2048 x 2048, 200 um).
    geometry
        None (:data:`DEFAULT_GEOMETRY`: 1.2 m, PONI ~(+48.5, -59) px from the centre, rot1 4 mrad,
        rot2 -3 mrad), a mapping of PONI values (``dist, poni1, poni2, rot1, rot2, rot3`` in
        m and rad), a PONI file path, a pyFAI geometry or an :class:`xrdflow.geometry.Geometry`.
    shape
        Image shape; default the detector's. A smaller shape bins the detector (pyFAI
        binning) so that it keeps its physical size: ``(512, 512)`` is a Perkin at 800 um.
    seed
        Seed of the Poisson noise (and of the defects).
    ring_counts
        Peak height (counts before solid angle/polarization) of the strongest ring.
    background
        Background counts per pixel at q -> 0 (``B(q) = background (0.2 + 0.8 exp(-q/30))``).
    instrument_sigma_mm
        Radial Gaussian width of a ring on the detector (mm).
    polarization_factor
        pyFAI polarization factor applied to the image (0.99: horizontally polarized
        synchrotron beam); None for none.
    dtype, saturation
        Stored integer type and saturation level (default the type's maximum).
    defects
        Add :func:`defect_mask` defects (dead pixels read 0, hot pixels saturation).
    band_sigmas
        Rings are evaluated within this many sigma.

    Returns
    -------
    image : numpy.ndarray
        ``shape`` array of ``dtype``, as fabio would read the file.
    truth : CalibrantImage
        JSON-serialisable dict (see :class:`CalibrantImage`).

    Examples
    --------
    >>> img, truth = calibrant_image(shape=(256, 256), seed=1)
    >>> img.shape, img.dtype.name, truth["poni"]["detector"]
    ((256, 256), 'uint16', 'Perkin')
    >>> round(truth["rings"]["q"][0], 4)  # LaB6 100, 2 pi / 4.156826 A
    15.1153
    """
    seed = _check_seed(seed)
    ring_counts = _check_positive(ring_counts, "ring_counts")
    background = _check_positive(background, "background", allow_zero=True)
    instrument_sigma_mm = _check_positive(instrument_sigma_mm, "instrument_sigma_mm")
    band_sigmas = _check_positive(band_sigmas, "band_sigmas")
    if polarization_factor is not None and not -1 <= float(polarization_factor) <= 1:
        raise ValueError(f"polarization_factor must be in [-1, 1] or None, got {polarization_factor!r}")
    dt, sat = _check_dtype(dtype, saturation)
    if not isinstance(calibrant, str):
        raise ValueError(f"calibrant must be a pyFAI calibrant name, got {calibrant!r}")
    ai, energy = _resolve_geometry(geometry, detector, shape, energy_kev)
    wl_a = HC_KEV_A / energy
    pix = _pixels(ai, polarization_factor)
    d, q0, inten, source = _calibrant_rings(calibrant, energy, pix.q_max + 1.0)
    sig = _instrument_sigma_q(q0, wl_a, ai.dist, instrument_sigma_mm)
    strongest = int(np.argmax(inten))
    area = inten / 100.0 * ring_counts * math.sqrt(2 * math.pi) * sig[strongest]
    height = area / (math.sqrt(2 * math.pi) * sig)
    lam = pix.background(background)
    for i in range(q0.size):
        if height[i] <= 0:
            continue
        s = pix.band(q0[i] - band_sigmas * sig[i], q0[i] + band_sigmas * sig[i])
        if s.stop <= s.start:
            continue
        z = (pix.q[s] - q0[i]) / sig[i]
        lam[pix.order[s]] += height[i] * np.exp(-0.5 * z * z) * pix.corr[s]
    mask = defect_mask(pix.shape, seed=seed) if defects else None
    img = _finish(lam, np.random.default_rng([seed, 0xCA1B]), pix.shape, dt, sat, mask)
    tth = np.degrees(2 * np.arcsin(wl_a / (2 * d)))
    truth = CalibrantImage(
        kind="calibrant",
        calibrant=calibrant,
        energy_kev=energy,
        wavelength_a=wl_a,
        poni=_poni_dict(ai),
        rings=dict(d_spacing=d.tolist(), q=q0.tolist(), two_theta=tth.tolist(),
                   sigma_q=sig.tolist(), intensity=inten.tolist(), height=height.tolist()),
        intensity_source=source,
        polarization_factor=polarization_factor,
        ring_counts=ring_counts,
        background=background,
        background_model=f"background * ({_BG_FLOOR} + {1 - _BG_FLOOR} * exp(-q / {_BG_DECAY_Q}))",
        instrument_sigma_mm=instrument_sigma_mm,
        dtype=dt.name,
        saturation=sat,
        seed=seed,
        defects=bool(defects),
        model="counts ~ Poisson((B(q) + sum_i H_i exp(-(q-q_i)^2/2 s_i^2)) * solid_angle * polarization)",
        units=dict(q="1/nm", d_spacing="angstrom", two_theta="deg", sigma_q="1/nm", energy="keV"),
    )
    return img, truth


# --------------------------------------------------------------------------- tensile run
class TensileRun:
    """Lazy synthetic tensile test: frames are made on demand, truth is analytic.

    Made by :func:`tensile_run`. ``len(run)`` frames; ``run.frame(k)`` (k = 0..n-1) makes one
    image, iterating yields all images in order with flat memory. ``run.log`` holds the
    beamline log columns, ``run.truth()`` the JSON-serialisable truth, ``run.truth_at()`` the
    model at any azimuth, ``run.integrator()`` a pyFAI integrator at the true geometry.
    """

    def __init__(self, *, ai, energy_kev, reflections, applied_strain, frame_numbers, params,
                 pixels, dtype, saturation, mask, truth_azimuths_deg):
        self._ai = ai
        self.energy_kev = energy_kev
        self.wavelength_a = HC_KEV_A / energy_kev
        self.reflections = reflections
        self.labels = [str(v) for v in reflections.reflection.values]
        self.q0 = np.asarray(reflections.q.values, dtype=float)
        theta0 = np.arcsin(self.q0 * self.wavelength_a / (40 * np.pi))
        self._cos2theta = np.cos(theta0) ** 2
        self.applied_strain = np.asarray(applied_strain, dtype=float)
        self.frame_numbers = np.asarray(frame_numbers, dtype=np.int64)
        self.params = params
        self._pix = pixels
        self._dtype = dtype
        self._sat = saturation
        self.mask = mask
        self.truth_azimuths_deg = np.asarray(truth_azimuths_deg, dtype=float)
        p = params
        sig_inst = _instrument_sigma_q(self.q0, self.wavelength_a, ai.dist, p["instrument_sigma_mm"])
        self.sigma_instrument = sig_inst
        self.load_sharing = np.array([p["load_sharing"].get(h, p["load_sharing_default"])
                                      for h in reflections.hkl.values], dtype=float)
        inten = np.asarray(reflections.intensity.values, dtype=float)
        strongest = int(np.argmax(inten))
        self._area = inten / 100.0 * p["ring_counts"] * math.sqrt(2 * math.pi) * sig_inst[strongest]
        e = self.applied_strain
        ey = p["yield_strain"]
        plastic = np.maximum(e - ey, 0.0)
        self.eps_axial = (np.minimum(e, ey)[:, None]
                          + p["hardening_ratio"] * self.load_sharing[None, :] * plastic[:, None])
        self.eps_transverse = -p["poisson_ratio"] * self.eps_axial
        self.sigma = np.sqrt(sig_inst[None, :] ** 2
                             + (self.q0[None, :] * p["broadening"] * plastic[:, None]) ** 2)
        stress = p["youngs_modulus_gpa"] * 1e3 * (np.minimum(e, ey) + p["hardening_ratio"] * plastic)
        self.log = {
            "frame": self.frame_numbers.copy(),
            "applied_strain": e.copy(),
            "load_N": stress * p["cross_section_mm2"],
            "time_s": np.arange(e.size) * p["frame_period_s"],
        }

    # -------------------------------------------------------------- model
    def __len__(self) -> int:
        return int(self.applied_strain.size)

    def _index(self, k: Any) -> int:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not -len(self) <= k < len(self):
            raise ValueError(f"frame index must be an integer in 0..{len(self) - 1}, got {k!r}")
        return int(k) % len(self)

    def truth_at(self, k: int, azimuth_deg: Any) -> dict[str, np.ndarray]:
        """Model at frame index ``k`` and azimuths ``azimuth_deg`` (pyFAI chi, degrees).

        Returns a dict of arrays (reflection, azimuth): ``q_center`` (1/nm),
        ``lattice_strain`` (d/d0 - 1); and (reflection,): ``sigma`` (1/nm).

        Examples
        --------
        >>> run = tensile_run(3, shape=(256, 256))
        >>> t = run.truth_at(2, [0.0, 90.0])
        >>> bool(t["lattice_strain"][0, 0] > 0 > t["lattice_strain"][0, 1])
        True
        """
        k = self._index(k)
        chi = np.radians(np.atleast_1d(np.asarray(azimuth_deg, dtype=float)))
        eps = self._strain(k, chi[None, :], self._cos2theta[:, None])
        return {"q_center": self.q0[:, None] / (1.0 + eps), "lattice_strain": eps,
                "sigma": self.sigma[k].copy()}

    def _strain(self, k, chi, cos2theta):
        c2 = cos2theta * np.cos(chi - math.radians(self.params["load_azimuth_deg"])) ** 2
        ea = self.eps_axial[k]
        et = self.eps_transverse[k]
        if np.ndim(chi) == 2:
            ea, et = ea[:, None], et[:, None]
        return et + (ea - et) * c2

    def ring_average(self, k: int, *, n_azimuth: int = 32, n_q: int = 201) -> dict[str, np.ndarray]:
        """What a full-azimuth 1D integration + single-Gaussian fit sees (per reflection).

        The noise-free ring profile averaged uniformly over chi (solid angle and
        polarization corrected) is computed on a fine q grid (``n_q`` points over the ring
        +- 6 rms); returns its first moment ``ring_q_mean`` and rms width ``ring_sigma_rms``
        and the least-squares Gaussian fit (no background) ``ring_q_fit``,
        ``ring_sigma_fit`` (1/nm). The chi average uses the midpoint rule on
        ``n_azimuth`` points of a quarter period (q depends on cos^2(chi - load axis)), which
        converges exponentially for this smooth periodic integrand.
        """
        k = self._index(k)
        if isinstance(n_azimuth, bool) or not isinstance(n_azimuth, int) or n_azimuth < 4:
            raise ValueError(f"n_azimuth must be an integer >= 4, got {n_azimuth!r}")
        if isinstance(n_q, bool) or not isinstance(n_q, int) or n_q < 21:
            raise ValueError(f"n_q must be an integer >= 21, got {n_q!r}")
        dchi = (np.arange(n_azimuth) + 0.5) * (0.5 * np.pi / n_azimuth)
        lsa = math.radians(self.params["load_azimuth_deg"])
        qc = self.q0[:, None] / (1.0 + self._strain(k, dchi[None, :] + lsa, self._cos2theta[:, None]))
        sig = self.sigma[k]
        mean = qc.mean(axis=1)
        rms = np.sqrt(sig ** 2 + qc.var(axis=1))
        half = 6 * rms
        x = mean[:, None] + np.linspace(-1, 1, n_q)[None, :] * half[:, None]
        z = (x[:, :, None] - qc[:, None, :]) / sig[:, None, None]
        y = np.exp(-0.5 * z * z).mean(axis=2)
        q_fit, s_fit = _fit_gaussians(x, y, mean, rms)
        return {"ring_q_mean": mean, "ring_sigma_rms": rms, "ring_q_fit": q_fit, "ring_sigma_fit": s_fit}

    # -------------------------------------------------------------- images
    def frame(self, k: int) -> np.ndarray:
        """Image of frame index ``k`` (0-based position in the run), as fabio reads it."""
        k = self._index(k)
        p = self.params
        pix = self._pix
        lam = pix.background(p["background"])
        eps_lo = min(self.eps_axial[k].min(), self.eps_transverse[k].min())
        eps_hi = max(self.eps_axial[k].max(), self.eps_transverse[k].max())
        nb = p["band_sigmas"]
        lsa = math.radians(p["load_azimuth_deg"])
        for i in range(self.q0.size):
            sig = self.sigma[k, i]
            ea, et = self.eps_axial[k, i], self.eps_transverse[k, i]
            lo = self.q0[i] / (1.0 + max(ea, et, eps_hi)) - nb * sig
            hi = self.q0[i] / (1.0 + min(ea, et, eps_lo)) + nb * sig
            s = pix.band(lo, hi)
            if s.stop <= s.start:
                continue
            c2 = self._cos2theta[i] * np.cos(pix.chi[s] - lsa) ** 2
            qc = self.q0[i] / (1.0 + (et + (ea - et) * c2))
            z = (pix.q[s] - qc) / sig
            h = self._area[i] / (math.sqrt(2 * math.pi) * sig)
            lam[pix.order[s]] += h * np.exp(-0.5 * z * z) * pix.corr[s]
        rng = np.random.default_rng([p["seed"], int(self.frame_numbers[k])])
        return _finish(lam, rng, pix.shape, self._dtype, self._sat, self.mask)

    def __iter__(self) -> Iterator[np.ndarray]:
        for k in range(len(self)):
            yield self.frame(k)

    def integrator(self):
        """A pyFAI AzimuthalIntegrator at the true geometry."""
        return _integrator_from_poni(_poni_dict(self._ai))

    # -------------------------------------------------------------- truth
    def truth(self, *, ring_average: bool = True) -> dict[str, Any]:
        """JSON-serialisable truth of the whole run (no images are made).

        Keys: ``kind``, ``phase``, ``energy_kev``, ``wavelength_a``, ``poni``, ``model``
        (all parameters), ``reflections`` (label, hkl, q0, d0, two_theta0, intensity,
        load_sharing, sigma_instrument), ``azimuth_deg`` (truth samples, pyFAI chi),
        ``frames``: ``frame``, ``applied_strain``, ``load_N``, ``time_s`` (per frame),
        ``eps_axial``, ``eps_transverse``, ``sigma`` [frame][reflection], ``q_center``,
        ``lattice_strain`` [frame][reflection][azimuth], and with ``ring_average`` the
        :meth:`ring_average` values [frame][reflection].
        """
        az = self.truth_azimuths_deg
        qc, eps = [], []
        for k in range(len(self)):
            t = self.truth_at(k, az)
            qc.append(t["q_center"].tolist())
            eps.append(t["lattice_strain"].tolist())
        frames = {key: np.asarray(v).tolist() for key, v in self.log.items()}
        frames.update(eps_axial=self.eps_axial.tolist(), eps_transverse=self.eps_transverse.tolist(),
                      sigma=self.sigma.tolist(), q_center=qc, lattice_strain=eps)
        if ring_average:
            ra = [self.ring_average(k) for k in range(len(self))]
            for key in ("ring_q_mean", "ring_sigma_rms", "ring_q_fit", "ring_sigma_fit"):
                frames[key] = [r[key].tolist() for r in ra]
        refl = self.reflections
        return {
            "kind": "tensile_run",
            "phase": str(refl.attrs.get("phase", "")),
            "energy_kev": self.energy_kev,
            "wavelength_a": self.wavelength_a,
            "poni": _poni_dict(self._ai),
            "model": dict(self.params, load_sharing=dict(self.params["load_sharing"]),
                          image_model="counts ~ Poisson((B(q) + sum_i H_i exp(-(q-q_i(chi))^2/2 s_i^2))"
                                      " * solid_angle * polarization)",
                          strain_model="eps(psi) = eps_axial cos^2 psi + eps_transverse sin^2 psi, "
                                       "cos psi = cos(theta0) cos(chi - load_azimuth); q = q0/(1+eps)",
                          background_model=f"background * ({_BG_FLOOR} + {1 - _BG_FLOOR} * exp(-q / {_BG_DECAY_Q}))"),
            "reflections": {
                "label": self.labels,
                "hkl": [str(v) for v in refl.hkl.values],
                "q0": self.q0.tolist(),
                "d0": refl.d_spacing.values.tolist(),
                "two_theta0": refl.two_theta.values.tolist(),
                "intensity": refl.intensity.values.tolist(),
                "load_sharing": self.load_sharing.tolist(),
                "sigma_instrument": self.sigma_instrument.tolist(),
            },
            "azimuth_deg": az.tolist(),
            "frames": frames,
            "units": dict(q="1/nm", sigma="1/nm", d="angstrom", two_theta="deg", azimuth="deg (pyFAI chi)",
                          lattice_strain="1 (d/d0 - 1)", load="N", time="s", energy="keV"),
        }

    def __repr__(self) -> str:
        return (f"TensileRun({len(self)} frames, shape={self._pix.shape}, {len(self.labels)} reflections, "
                f"{self.energy_kev} keV, strain {self.applied_strain[0]:.4g}..{self.applied_strain[-1]:.4g})")


def _fit_gaussians(x, y, mu0, s0, n_iter: int = 50):
    """Batched Gauss-Newton least-squares fit of A exp(-(x-mu)^2/2s^2) to rows of y."""
    mu = mu0.astype(float).copy()
    s = s0.astype(float).copy()
    amp = y.max(axis=1)
    for _ in range(n_iter):
        u = (x - mu[:, None]) / s[:, None]
        g = np.exp(-0.5 * u * u)
        f = amp[:, None] * g
        r = y - f
        jac = np.stack([g, f * u / s[:, None], f * u * u / s[:, None]], axis=-1)  # d/dA, d/dmu, d/ds
        jtj = np.einsum("bni,bnj->bij", jac, jac)
        jtr = np.einsum("bni,bn->bi", jac, r)
        step = np.linalg.solve(jtj, jtr[..., None])[..., 0]
        amp = amp + step[:, 0]
        mu = mu + step[:, 1]
        s = np.abs(s + step[:, 2])
        if np.all(np.abs(step[:, 1]) < 1e-12 * np.abs(mu)) and np.all(np.abs(step[:, 2]) < 1e-12 * s):
            break
    return mu, s


def tensile_run(
    n_frames: int = 60,
    *,
    phase: str = "Mg",
    energy_kev: float | None = None,
    detector: Any = None,
    geometry: Any = None,
    shape: tuple[int, int] | None = None,
    seed: int = 0,
    max_strain: float = 0.10,
    applied_strain: Any = None,
    yield_strain: float = 0.004,
    poisson_ratio: float = 0.35,
    hardening_ratio: float = 0.02,
    load_sharing: Mapping[str, float] | None = None,
    broadening: float = 0.03,
    load_azimuth_deg: float = 0.0,
    youngs_modulus_gpa: float = 45.0,
    cross_section_mm2: float = 4.0,
    frame_period_s: float = 2.0,
    first_frame: int = 1,
    ring_counts: float = 8000.0,
    background: float = 300.0,
    min_intensity: float = 0.5,
    instrument_sigma_mm: float = 0.2,
    polarization_factor: float | None = 0.99,
    dtype: str = "uint16",
    saturation: int | None = None,
    defects: bool = False,
    truth_azimuths_deg: Any = None,
    band_sigmas: float = 6.0,
) -> TensileRun:
    """A lazy synthetic in-situ tensile test (frames made on demand) with exact truth.

    Parameters
    ----------
    n_frames
        Number of frames (ignored when ``applied_strain`` is given: its length).
    phase
        Phase for :func:`xrdflow.crystal.reflections` (default hcp Mg, a = 3.2094, c = 5.2108 A).
    energy_kev, detector, geometry, shape
        As :func:`calibrant_image` (default 87.1 keV, Perkin, :data:`DEFAULT_GEOMETRY`).
    seed
        Noise seed; frame ``k`` uses ``numpy.random.default_rng([seed, frame_number])``.
    max_strain
        Final applied engineering strain of the default linear ramp from 0.
    applied_strain
        Explicit applied-strain schedule (1D, >= 0), overriding ``n_frames``/``max_strain``.
    yield_strain
        Applied strain at yield (Mg alloys: ~0.3-0.5 %).
    poisson_ratio
        Ratio -eps_transverse/eps_axial of the lattice strains. Bulk Mg's elastic value is
        about 0.29; the default 0.35 is the project's reference value; set 0.29 for bulk Mg.
    hardening_ratio
        Post-yield slope of the macroscopic stress-strain curve relative to Young's modulus,
        and the mean post-yield slope of the axial lattice strain.
    load_sharing
        Post-yield lattice-strain slope factor per hkl label (``"10-10"``...), multiplying
        ``hardening_ratio``; unlisted reflections use 1.0. Default :data:`MG_LOAD_SHARING`
        for Mg, else all 1.0.
    broadening
        Microstrain per unit plastic strain: sigma grows as q0 * broadening * (e - yield_strain).
    load_azimuth_deg
        Azimuth (pyFAI chi, degrees) of the load axis on the detector; 0 = horizontal (+x).
    youngs_modulus_gpa, cross_section_mm2
        For the logged load (N) of the bilinear stress-strain curve.
    frame_period_s
        Time between frames (s) in the log.
    first_frame
        Number of the first frame (file numbers, log ``frame`` column).
    ring_counts, background
        Peak height of the strongest ring at zero strain and background at q -> 0 (counts).
    min_intensity
        Reflections weaker than this (relative, strongest = 100) are left out.
    instrument_sigma_mm, polarization_factor, dtype, saturation, defects, band_sigmas
        As :func:`calibrant_image`.
    truth_azimuths_deg
        Azimuths (pyFAI chi, deg) sampled in the truth; default -180, -170, ..., 170.

    Returns
    -------
    TensileRun
        Lazy run: ``len(run)``, ``run.frame(k)``, ``iter(run)``, ``run.log``, ``run.truth()``.

    Examples
    --------
    >>> run = tensile_run(4, shape=(256, 256), seed=3)
    >>> img = run.frame(0)
    >>> img.shape, img.dtype.name, len(run)
    ((256, 256), 'uint16', 4)
    >>> [round(float(q), 1) for q in run.q0[:3]]  # Mg 10-10, 0002, 10-11
    [22.6, 24.1, 25.6]
    >>> sorted(run.log)
    ['applied_strain', 'frame', 'load_N', 'time_s']
    """
    from .crystal import reflections as _reflections

    seed = _check_seed(seed)
    if applied_strain is None:
        if isinstance(n_frames, bool) or not isinstance(n_frames, (int, np.integer)) or n_frames < 1:
            raise ValueError(f"n_frames must be a positive integer, got {n_frames!r}")
        max_strain = _check_positive(max_strain, "max_strain", allow_zero=True)
        if max_strain >= 1:
            raise ValueError(f"max_strain must be < 1 (engineering strain), got {max_strain!r}")
        strain = np.linspace(0.0, max_strain, int(n_frames))
    else:
        strain = np.asarray(applied_strain, dtype=float)
        if strain.ndim != 1 or strain.size < 1 or not np.all(np.isfinite(strain)) or np.any(strain < 0) \
                or np.any(strain >= 1):
            raise ValueError("applied_strain must be a non-empty 1D array of strains in [0, 1)")
    yield_strain = _check_positive(yield_strain, "yield_strain")
    poisson_ratio = float(poisson_ratio)
    if not 0 <= poisson_ratio <= 0.5:
        raise ValueError(f"poisson_ratio must be in [0, 0.5], got {poisson_ratio!r}")
    hardening_ratio = _check_positive(hardening_ratio, "hardening_ratio", allow_zero=True)
    if hardening_ratio >= 1:
        raise ValueError(f"hardening_ratio must be < 1, got {hardening_ratio!r}")
    broadening = _check_positive(broadening, "broadening", allow_zero=True)
    load_azimuth_deg = float(load_azimuth_deg)
    if not math.isfinite(load_azimuth_deg):
        raise ValueError(f"load_azimuth_deg must be finite, got {load_azimuth_deg!r}")
    youngs_modulus_gpa = _check_positive(youngs_modulus_gpa, "youngs_modulus_gpa")
    cross_section_mm2 = _check_positive(cross_section_mm2, "cross_section_mm2")
    frame_period_s = _check_positive(frame_period_s, "frame_period_s")
    if isinstance(first_frame, bool) or not isinstance(first_frame, (int, np.integer)) or first_frame < 0:
        raise ValueError(f"first_frame must be a non-negative integer, got {first_frame!r}")
    ring_counts = _check_positive(ring_counts, "ring_counts")
    background = _check_positive(background, "background", allow_zero=True)
    min_intensity = _check_positive(min_intensity, "min_intensity", allow_zero=True)
    instrument_sigma_mm = _check_positive(instrument_sigma_mm, "instrument_sigma_mm")
    band_sigmas = _check_positive(band_sigmas, "band_sigmas")
    if polarization_factor is not None and not -1 <= float(polarization_factor) <= 1:
        raise ValueError(f"polarization_factor must be in [-1, 1] or None, got {polarization_factor!r}")
    dt, sat = _check_dtype(dtype, saturation)
    if load_sharing is None:
        load_sharing = MG_LOAD_SHARING if phase == "Mg" else {}
    if not isinstance(load_sharing, Mapping) or not all(
            isinstance(k, str) and math.isfinite(float(v)) and float(v) >= 0 for k, v in load_sharing.items()):
        raise ValueError(f"load_sharing must map hkl labels to non-negative factors, got {load_sharing!r}")
    if truth_azimuths_deg is None:
        truth_azimuths_deg = np.arange(-180.0, 180.0, 10.0)
    truth_az = np.atleast_1d(np.asarray(truth_azimuths_deg, dtype=float))
    if truth_az.ndim != 1 or not np.all(np.isfinite(truth_az)):
        raise ValueError("truth_azimuths_deg must be a 1D array of finite azimuths (deg)")

    ai, energy = _resolve_geometry(geometry, detector, shape, energy_kev)
    pix = _pixels(ai, polarization_factor)
    refl = _reflections(phase, energy_kev=energy, q_range=(0.0, pix.q_max + 1.0))
    refl = refl.isel(reflection=np.flatnonzero(refl.intensity.values >= min_intensity))
    if refl.sizes["reflection"] == 0:
        raise ValueError(f"phase {phase!r}: no reflection on the detector above min_intensity={min_intensity}")
    ls = {str(k).split(" ")[-1]: float(v) for k, v in load_sharing.items()}
    params = dict(
        seed=seed, yield_strain=yield_strain, poisson_ratio=poisson_ratio, hardening_ratio=hardening_ratio,
        load_sharing=ls, load_sharing_default=1.0, broadening=broadening,
        load_azimuth_deg=load_azimuth_deg, youngs_modulus_gpa=youngs_modulus_gpa,
        cross_section_mm2=cross_section_mm2, frame_period_s=frame_period_s, ring_counts=ring_counts,
        background=background, min_intensity=min_intensity, instrument_sigma_mm=instrument_sigma_mm,
        polarization_factor=polarization_factor, dtype=dt.name, saturation=sat, defects=bool(defects),
        band_sigmas=band_sigmas, phase=str(phase),
    )
    mask = defect_mask(pix.shape, seed=seed) if defects else None
    return TensileRun(ai=ai, energy_kev=energy, reflections=refl, applied_strain=strain,
                      frame_numbers=first_frame + np.arange(strain.size), params=params, pixels=pix,
                      dtype=dt, saturation=sat, mask=mask, truth_azimuths_deg=truth_az)


# --------------------------------------------------------------------------- writers
def _write_tif(path: Path, data: np.ndarray) -> None:
    import fabio.tifimage

    fabio.tifimage.TifImage(data=data).write(str(path))


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".part")
    with open(tmp, "w") as fh:
        json.dump(obj, fh, indent=1, allow_nan=True)
    os.replace(tmp, path)


def _prepare_folder(folder: Any, name: str) -> Path:
    if not isinstance(folder, (str, os.PathLike)):
        raise ValueError(f"{name} must be a path, got {folder!r}")
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{name}: {path} exists and is not a folder")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _check_prefix(prefix: Any) -> str:
    if not isinstance(prefix, str) or not prefix or any(c in prefix for c in "/\\"):
        raise ValueError(f"prefix must be a non-empty file name prefix, got {prefix!r}")
    return prefix


def write_calibrant(folder: str | os.PathLike, *, prefix: str = "LaB6", **kwargs: Any) -> dict[str, Path]:
    """Write a synthetic calibrant image as a beamline does, with its PONI and truth.

    Files: ``<prefix>_00001.tif`` (fabio TIFF), ``<prefix>.poni`` (the true geometry,
    written by pyFAI), ``<prefix>_truth.json`` (:class:`CalibrantImage`) and, with
    ``defects=True``, ``<prefix>_mask.tif`` (uint8, 1 = dead, 2 = hot).

    Parameters
    ----------
    folder
        Output folder (created).
    prefix
        File name prefix.
    **kwargs
        Passed to :func:`calibrant_image`.

    Returns
    -------
    dict
        ``{"image", "poni", "truth"[, "mask"]}`` -> path.

    Examples
    --------
    >>> import tempfile
    >>> paths = write_calibrant(tempfile.mkdtemp(), shape=(256, 256))
    >>> sorted(paths)
    ['image', 'poni', 'truth']
    """
    prefix = _check_prefix(prefix)
    img, truth = calibrant_image(**kwargs)
    out = _prepare_folder(folder, "folder")
    paths = {"image": out / f"{prefix}_00001.tif", "poni": out / f"{prefix}.poni",
             "truth": out / f"{prefix}_truth.json"}
    _write_tif(paths["image"], img)
    if paths["poni"].exists():  # pyFAI appends to an existing PONI file
        paths["poni"].unlink()
    truth.integrator().save(str(paths["poni"]))
    if truth["defects"]:
        paths["mask"] = out / f"{prefix}_mask.tif"
        _write_tif(paths["mask"], defect_mask(img.shape, seed=truth["seed"]).astype(np.uint8))
    _write_json(paths["truth"], dict(truth, files={k: p.name for k, p in paths.items()}))
    return paths


def write_tensile_run(folder: str | os.PathLike, n_frames: int = 60, *, prefix: str = "mg",
                      digits: int = 5, progress: bool = False, **kwargs: Any) -> dict[str, Any]:
    """Write a synthetic tensile run as a beamline does: numbered TIFFs, a CSV log, truth.

    Files: ``<prefix>_00001.tif`` ... (zero-padded, numbered from ``first_frame``),
    ``<prefix>_log.csv`` (columns ``frame, applied_strain, load_N, time_s``),
    ``<prefix>_truth.json`` (:meth:`TensileRun.truth` plus file names), ``<prefix>.poni``
    (true geometry, written by pyFAI) and, with ``defects=True``, ``<prefix>_mask.tif``.
    Frames are made one at a time (flat memory).

    Parameters
    ----------
    folder
        Output folder (created).
    n_frames
        Number of frames (see :func:`tensile_run`).
    prefix
        File name prefix.
    digits
        Zero padding of the frame numbers.
    progress
        Show a tqdm progress bar.
    **kwargs
        Passed to :func:`tensile_run`.

    Returns
    -------
    dict
        ``{"frames": [paths], "log", "truth", "poni"[, "mask"]}``.

    Examples
    --------
    >>> import tempfile
    >>> paths = write_tensile_run(tempfile.mkdtemp(), 2, shape=(256, 256))
    >>> [p.name for p in paths["frames"]], paths["log"].name
    (['mg_00001.tif', 'mg_00002.tif'], 'mg_log.csv')
    """
    prefix = _check_prefix(prefix)
    if isinstance(digits, bool) or not isinstance(digits, int) or not 1 <= digits <= 12:
        raise ValueError(f"digits must be an integer in 1..12, got {digits!r}")
    run = tensile_run(n_frames, **kwargs)
    last = int(run.frame_numbers[-1])
    if len(str(last)) > digits:
        raise ValueError(f"digits={digits} is too few for frame number {last}")
    out = _prepare_folder(folder, "folder")
    frames = [out / f"{prefix}_{int(n):0{digits}d}.tif" for n in run.frame_numbers]
    it = range(len(run))
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="synthetic frames", unit="frame")
    for k in it:
        _write_tif(frames[k], run.frame(k))
    paths: dict[str, Any] = {"frames": frames, "log": out / f"{prefix}_log.csv",
                             "truth": out / f"{prefix}_truth.json", "poni": out / f"{prefix}.poni"}
    with open(paths["log"], "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["frame", "applied_strain", "load_N", "time_s"])
        for row in zip(*(run.log[c] for c in ("frame", "applied_strain", "load_N", "time_s"))):
            w.writerow([int(row[0]), repr(float(row[1])), repr(float(row[2])), repr(float(row[3]))])
    if paths["poni"].exists():  # pyFAI appends to an existing PONI file
        paths["poni"].unlink()
    run.integrator().save(str(paths["poni"]))
    if run.mask is not None:
        paths["mask"] = out / f"{prefix}_mask.tif"
        _write_tif(paths["mask"], run.mask.astype(np.uint8))
    truth = run.truth()
    truth["files"] = {"frames": [p.name for p in frames],
                      **{k: p.name for k, p in paths.items() if k != "frames"}}
    _write_json(paths["truth"], truth)
    return paths


def write_demo(folder: str | os.PathLike, *, n_frames: int = 60, seed: int = 0, shape=None,
               progress: bool = False, **kwargs: Any) -> dict[str, Any]:
    """Write a complete demo input folder: a LaB6 calibrant and a Mg tensile run.

    Layout: ``<folder>/calibrant/LaB6_00001.tif, LaB6.poni, LaB6_truth.json`` and
    ``<folder>/tensile/mg_00001.tif ... mg_log.csv, mg_truth.json, mg.poni``, at the same
    energy and geometry (87.1 keV, PerkinElmer, :data:`DEFAULT_GEOMETRY` by default).

    Parameters
    ----------
    folder
        Output folder (created).
    n_frames, seed, shape, progress
        See :func:`write_tensile_run`.
    **kwargs
        Shared by both: ``energy_kev``, ``detector``, ``geometry``, ``polarization_factor``,
        ``instrument_sigma_mm``, ``dtype``, ``defects``; other keys go to the run only.

    Returns
    -------
    dict
        ``{"calibrant": write_calibrant(...), "tensile": write_tensile_run(...)}``.

    Examples
    --------
    >>> import tempfile
    >>> out = write_demo(tempfile.mkdtemp(), n_frames=2, shape=(256, 256))
    >>> out["calibrant"]["image"].name, len(out["tensile"]["frames"])
    ('LaB6_00001.tif', 2)
    """
    shared = ("energy_kev", "detector", "geometry", "polarization_factor", "instrument_sigma_mm",
              "dtype", "defects", "saturation")
    cal_kwargs = {k: kwargs[k] for k in shared if k in kwargs}
    out = _prepare_folder(folder, "folder")
    tensile = write_tensile_run(out / "tensile", n_frames, seed=seed, shape=shape, progress=progress,
                                **kwargs)
    calibrant = write_calibrant(out / "calibrant", seed=seed, shape=shape, **cal_kwargs)
    return {"calibrant": calibrant, "tensile": tensile}
