"""Automatic, headless calibration of the geometry from one calibrant image.

Strategy (robust from a rough guess: distance within ~5-10 %, beam centre unknown or within
~50 px), with pyFAI doing the ring extraction and the least-squares refinement:

1. Beam centre: the radial profile of a powder image is sharpest when computed about the
   ring centre. A coarse-to-fine grid search maximises the high-pass energy of the
   radial profile (radial bins matched to the grid step), on a sub-sampled, clipped copy
   of the image (masked and negative pixels left out).
2. Distance: with that centre, the calibrant's 2theta values (fixed wavelength) predict
   ring radii r_k = D tan(2theta_k); a 1D search over D maximises the radial profile at
   the predicted radii. This assigns every ring to its reflection.
3. pyFAI: ``SingleGeometry.extract_cp`` picks control points on the assigned rings
   (bands of +-1/4 ring spacing around the predicted 2theta), ``GeometryRefinement.refine2``
   refines distance and PONI with the rotations fixed, then all six parameters (the
   wavelength fixed by default). Extraction and refinement are repeated with the
   improved geometry and more rings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import options
from .geometry import Geometry
from .units import HC_KEV_A

__all__ = ["calibrate", "CalibrationResult"]

_PARAMS = ("dist", "poni1", "poni2", "rot1", "rot2", "rot3", "wavelength")


@dataclasses.dataclass(frozen=True)
class CalibrationResult:
    """Outcome of :func:`calibrate`.

    Attributes
    ----------
    geometry : Geometry
        Refined geometry (orientation as requested).
    rms_px : float
        RMS radial residual of the control points, in pixels.
    n_rings, n_points : int
        Calibrant rings and control points used in the final refinement.
    rings : tuple of (index, d_spacing_A, two_theta_deg, n_points)
        The rings used.
    control_points : numpy.ndarray
        (n, 3) array of (row, column, ring index), on the image in the geometry's orientation.
    initial : Geometry
        The geometry from the centre/distance search, before pyFAI refinement.
    fixed : tuple of str
        Parameters held fixed.
    calibrant : str
    """

    geometry: Geometry
    rms_px: float
    n_rings: int
    n_points: int
    rings: tuple
    control_points: np.ndarray = dataclasses.field(repr=False)
    initial: Geometry = dataclasses.field(repr=False)
    fixed: tuple = ()
    calibrant: str = ""

    def report(self) -> str:
        """Plain-text report (geometry, Fit2D view, residual, rings)."""
        g = self.geometry
        f2d = g.fit2d
        lines = [
            f"xrdflow calibration ({self.calibrant})",
            f"  distance      {g.dist * 1e3:.4f} mm   poni1 {g.poni1 * 1e3:.4f} mm   poni2 {g.poni2 * 1e3:.4f} mm",
            f"  rot1 {g.rot1:.6f}  rot2 {g.rot2:.6f}  rot3 {g.rot3:.6f} rad",
            f"  wavelength    {g.wavelength_a:.6f} A  ({g.energy_kev:.4f} keV)  orientation {g.orientation}",
            f"  Fit2D: directDist {f2d['directDist']:.4f} mm, centre x {f2d['centerX']:.3f} y {f2d['centerY']:.3f} px, "
            f"tilt {f2d['tilt']:.4f} deg, tiltPlanRotation {f2d['tiltPlanRotation']:.3f} deg",
            f"  rms residual  {self.rms_px:.4f} px over {self.n_points} points on {self.n_rings} rings",
            f"  fixed         {', '.join(self.fixed) or 'none'}",
            "  rings (index, d [A], 2theta [deg], points):",
        ]
        lines += [f"    {i:3d}  {d:9.5f}  {t:9.4f}  {n:6d}" for i, d, t, n in self.rings]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {
            "geometry": self.geometry.as_dict(),
            "rms_px": self.rms_px,
            "n_rings": self.n_rings,
            "n_points": self.n_points,
            "rings": [list(r) for r in self.rings],
            "fixed": list(self.fixed),
            "calibrant": self.calibrant,
        }


# --------------------------------------------------------------------------- inputs
def _load_image(image) -> np.ndarray:
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: calibrant image not found")
        import fabio

        return np.asarray(fabio.open(str(path)).data)
    if hasattr(image, "values") and hasattr(image, "dims"):
        image = image.values
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise ValueError(f"image: expected a 2D image, got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"image: expected a numeric image, got dtype {arr.dtype}")
    return arr


def _load_calibrant(calibrant, wavelength_m: float, d_min: float | None):
    from pyFAI.calibrant import Calibrant, get_calibrant

    if isinstance(calibrant, Calibrant):
        d = list(_dspacing(calibrant))
        name = getattr(calibrant, "name", None) or "calibrant"
    elif isinstance(calibrant, (str, os.PathLike)) and Path(calibrant).is_file():
        d = list(np.atleast_1d(np.loadtxt(calibrant, usecols=0, comments="#")))
        name = Path(calibrant).stem
    elif isinstance(calibrant, str):
        try:
            cal = get_calibrant(calibrant)
        except Exception:
            raise ValueError(f"calibrant: unknown pyFAI calibrant {calibrant!r}") from None
        d = list(_dspacing(cal))
        name = calibrant
    else:
        try:
            d = [float(x) for x in calibrant]
        except TypeError:
            raise ValueError(f"calibrant: expected a name, a .D file, a Calibrant or d-spacings, got {calibrant!r}") from None
        name = "custom"
    d = sorted({round(float(x), 10) for x in d if x > 0}, reverse=True)
    if d_min is not None:
        d = [x for x in d if x >= d_min]
    lam_a = wavelength_m * 1e10
    d = [x for x in d if x > lam_a / 2]
    if len(d) < 2:
        raise ValueError("calibrant: fewer than 2 reflections left (check d_min and the energy)")
    try:
        cal = Calibrant(dspacing=d, wavelength=wavelength_m)
    except TypeError:  # pyFAI < 2025.07
        cal = Calibrant(dSpacing=d, wavelength=wavelength_m)
    return cal, name, np.asarray(d)


def _dspacing(cal):
    return cal.dspacing if hasattr(cal, "dspacing") else cal.dSpacing


def _make_detector(detector, shape):
    from pyFAI.detectors import Detector, detector_factory

    if isinstance(detector, Detector):
        det = detector
    elif isinstance(detector, str):
        try:
            det = detector_factory(detector)
        except Exception:
            raise ValueError(f"detector: unknown pyFAI detector {detector!r}") from None
    elif isinstance(detector, dict):
        try:
            det = detector_factory("Detector", {"pixel1": float(detector["pixel1"]),
                                                "pixel2": float(detector["pixel2"]),
                                                "max_shape": list(shape)})
        except KeyError:
            raise ValueError("detector: a dict needs pixel1 and pixel2 (m)") from None
    elif isinstance(detector, (int, float)):
        det = detector_factory("Detector", {"pixel1": float(detector), "pixel2": float(detector),
                                            "max_shape": list(shape)})
    else:
        raise ValueError(f"detector: expected a pyFAI detector name/instance, a dict or a pixel size, got {detector!r}")
    if det.shape is not None and tuple(det.shape) != tuple(shape):
        try:  # a binned image of a named detector
            det.guess_binning(tuple(shape))
        except Exception:
            pass
    if det.shape is not None and tuple(det.shape) != tuple(shape):
        raise ValueError(f"detector: shape {tuple(det.max_shape)} does not match the image shape {tuple(shape)}")
    return det


# --------------------------------------------------------------------------- search
class _ProfileSampler:
    """Sub-sampled pixels of the image for fast radial profiles about trial centres."""

    def __init__(self, img: np.ndarray, valid: np.ndarray, target: int = 300_000):
        ny, nx = img.shape
        step = max(1, int(np.sqrt(ny * nx / target)))
        rows = np.arange(0, ny, step)
        cols = np.arange(0, nx, step)
        sub = img[np.ix_(rows, cols)].astype(np.float64)
        ok = valid[np.ix_(rows, cols)]
        vals = sub[ok]
        lo, hi = np.percentile(vals, [1.0, 99.9]) if vals.size else (0, 1)
        vals = np.clip(vals, lo, hi)
        yy, xx = np.meshgrid(rows + 0.5, cols + 0.5, indexing="ij")
        self.y = yy[ok]
        self.x = xx[ok]
        self.w = vals - vals.mean()
        self.shape = img.shape

    def profile(self, cy: float, cx: float, bin_px: float):
        r = np.hypot(self.y - cy, self.x - cx) / bin_px
        idx = r.astype(np.int64)
        cnt = np.bincount(idx)
        tot = np.bincount(idx, weights=self.w)
        with np.errstate(invalid="ignore", divide="ignore"):
            prof = tot / cnt
        return prof, cnt

    def sharpness(self, cy: float, cx: float, bin_px: float) -> float:
        prof, cnt = self.profile(cy, cx, bin_px)
        good = cnt >= 5
        prof = np.where(good, prof, 0.0)
        win = 9
        kernel = np.ones(win) / win
        smooth = np.convolve(prof, kernel, mode="same")
        norm = np.convolve(good.astype(float), kernel, mode="same")
        with np.errstate(invalid="ignore", divide="ignore"):
            hp = np.where(good & (norm > 0), prof - smooth / np.maximum(norm, 1e-12), 0.0)
        return float(np.sum(cnt * hp**2) / max(1, cnt[good].sum()))


def _find_center(sampler: _ProfileSampler, guess_yx, search_px: float):
    ny, nx = sampler.shape
    if guess_yx is None:
        cy0, cx0 = ny / 2.0, nx / 2.0
        half = 0.5 * max(ny, nx)
    else:
        cy0, cx0 = guess_yx
        half = float(search_px)
    n = 21
    while True:
        step = 2 * half / (n - 1)
        bin_px = max(0.5, step / 2)
        best = (-np.inf, cy0, cx0)
        for cy in cy0 + np.linspace(-half, half, n):
            for cx in cx0 + np.linspace(-half, half, n):
                s = sampler.sharpness(cy, cx, bin_px)
                if s > best[0]:
                    best = (s, cy, cx)
        _, cy0, cx0 = best
        if step <= 0.3:
            return cy0, cx0
        half = 2 * step
        n = 9


def _find_distance(sampler, cy, cx, tth_rad, pixel: float, dist_guess_m: float, rel: float):
    prof, cnt = sampler.profile(cy, cx, 0.5)
    good = cnt >= 5
    prof = np.where(good, prof, 0.0)
    kernel = np.ones(41) / 41
    smooth = np.convolve(prof, kernel, mode="same") / np.maximum(
        np.convolve(good.astype(float), kernel, mode="same"), 1e-12)
    hp = np.where(good, prof - smooth, 0.0)
    hp = hp / (hp.std() + 1e-12)
    rmax = len(prof) * 0.5
    radii_px = np.arange(len(prof)) * 0.5 + 0.25
    tan = np.tan(tth_rad)
    # step: the outermost usable ring moves by <= 0.25 px
    r_out = min(rmax, dist_guess_m * (1 + rel) * tan.max() / pixel)
    nstep = int(np.clip(2 * rel * r_out / 0.25, 200, 20000))
    best = (-np.inf, dist_guess_m)
    for dist in np.linspace(dist_guess_m * (1 - rel), dist_guess_m * (1 + rel), nstep):
        r = dist * tan / pixel
        inside = r < rmax - 2
        inside &= np.interp(r, radii_px, good.astype(float)) > 0.5
        if inside.sum() < 2:
            continue
        vals = np.interp(r[inside], radii_px, hp)
        score = vals.sum() / np.sqrt(inside.sum())
        if score > best[0]:
            best = (score, dist)
    return best[1]


def _rms_px(gr, data: np.ndarray, tth_rings: np.ndarray, pixel: float) -> float:
    if len(data) == 0:
        return float("nan")
    tth = gr.tth(data[:, 0], data[:, 1])
    target = tth_rings[data[:, 2].astype(int)]
    # d r / d 2theta on a flat detector at distance dist ~ dist / cos^2(2theta)
    dr = (tth - target) * gr.dist / np.cos(target) ** 2 / pixel
    return float(np.sqrt(np.mean(dr**2)))


# --------------------------------------------------------------------------- public
def calibrate(
    image,
    calibrant,
    *,
    energy_kev: float | None = None,
    wavelength_a: float | None = None,
    detector,
    distance_mm: float,
    beam_center_px: tuple[float, float] | None = None,
    orientation: str = "as_read",
    mask=None,
    mask_negative: bool = True,
    d_min: float | None = None,
    max_rings: int | None = None,
    fix: tuple[str, ...] = ("wavelength",),
    distance_tolerance: float = 0.12,
    center_search_px: float = 60.0,
    pts_per_deg: float = 1.0,
    seed: int = 0,
    poni: str | os.PathLike | None = None,
    report: str | os.PathLike | None = None,
    figure: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
) -> CalibrationResult:
    """Calibrate the geometry automatically from a calibrant image and a rough guess.

    Parameters
    ----------
    image : array or path
        Calibrant image as fabio reads it (or a file fabio can read).
    calibrant : str, path, pyFAI Calibrant or sequence of float
        pyFAI calibrant name (``"LaB6"``, ``"CeO2"``...), a ``.D`` file or d-spacings (A).
    energy_kev, wavelength_a : float
        X-ray energy (keV) or wavelength (A); exactly one is required.
    detector : str, pyFAI Detector, dict or float
        pyFAI detector name/instance, ``{"pixel1": m, "pixel2": m}`` or a square pixel size (m).
    distance_mm : float
        Rough sample-detector distance (mm), within ``distance_tolerance``.
    beam_center_px : (x, y), optional
        Rough beam centre in pixels (column, row) on the image in ``orientation``; searched
        within ``center_search_px``. None: searched over the whole image.
    orientation : {"as_read", "flipud"}
        ``"flipud"`` calibrates on the image flipped up-down (Dioptas convention); the
        resulting Geometry carries the orientation.
    mask : array or path, optional
        Pixels to ignore (non-zero = masked), in the orientation of ``image``.
    mask_negative : bool
        Also ignore negative pixels (gaps, bad pixels). Default True.
    d_min : float, optional
        Leave out calibrant rings with d-spacing below ``d_min`` (A), e.g. where they
        overlap a sample's rings.
    max_rings : int, optional
        Use at most this many (innermost) rings; default all rings on the detector.
    fix : tuple of str
        Parameters held fixed in the final refinement; default ``("wavelength",)``.
    distance_tolerance : float
        Relative range of the distance search (default +-12 %).
    center_search_px : float
        Half width of the centre search around ``beam_center_px``.
    pts_per_deg : float
        Control points per azimuthal degree and ring (pyFAI ``extract_cp``).
    seed : int
        Seed for pyFAI's random choice of control points, so the same image and guess
        always give the same geometry (the caller's ``numpy.random`` state is restored).
    poni, report, figure : path, optional
        Write the PONI file, a text report and a diagnostic figure (image with fitted
        rings; ``figure`` may be several paths, each written in its suffix's format, e.g.
        ``["calibration.png", "calibration.pdf"]``).

    Returns
    -------
    CalibrationResult

    Examples
    --------
    >>> import numpy as np
    >>> from pyFAI.calibrant import get_calibrant
    >>> from pyFAI.crystallography.resolution import Caglioti
    >>> from xrdflow.geometry import Geometry
    >>> truth = Geometry(dist=0.3, poni1=0.05, poni2=0.055, wavelength=0.4e-10,
    ...                  detector="Detector", pixel1=2e-4, pixel2=2e-4, max_shape=(500, 500))
    >>> cal = get_calibrant("LaB6", wavelength=truth.wavelength)
    >>> img = cal.fake_calibration_image(truth.to_pyfai(), resolution=Caglioti(0.0, 0.0, 1e-4)) * 1000
    >>> res = calibrate(img, "LaB6", energy_kev=truth.energy_kev, detector=2e-4,
    ...                 distance_mm=310, beam_center_px=(265, 240))
    >>> abs(res.geometry.dist - truth.dist) < 1e-4 and res.rms_px < 0.5
    True
    """
    wavelength_m, fix = _check_options(
        energy_kev=energy_kev, wavelength_a=wavelength_a, distance_mm=distance_mm, orientation=orientation,
        d_min=d_min, max_rings=max_rings, fix=fix, distance_tolerance=distance_tolerance)
    img, det, masked = _prepare_image(image, detector, mask, mask_negative=mask_negative,
                                      orientation=orientation)
    cal, cal_name, d_all = _load_calibrant(calibrant, wavelength_m, d_min)
    tth_all = 2 * np.arcsin(wavelength_m * 1e10 / (2 * d_all))
    pixel = float(np.sqrt(det.pixel1 * det.pixel2))

    # 1. beam centre, 2. distance (rotations zero): this assigns every ring
    ai = _initial_geometry(img, masked, det, wavelength_m, tth_all, pixel, beam_center_px=beam_center_px,
                           center_search_px=center_search_px, distance_mm=distance_mm,
                           distance_tolerance=distance_tolerance)
    initial = Geometry.from_pyfai(ai, orientation=orientation)
    # 3. pyFAI control points + refinement, repeated with more rings
    gr, data = _refine(img, cal, det, ai, wavelength_m, tth_all, pixel, fix=fix,
                       stages=_ring_stages(ai, img.shape, tth_all, max_rings),
                       pts_per_deg=pts_per_deg, seed=seed)
    result = _result(gr, data, initial, d_all, tth_all, pixel, orientation=orientation, fix=fix,
                     calibrant=cal_name)
    _write_outputs(result, img, orientation=orientation, poni=poni, report=report, figure=figure)
    return result


# --------------------------------------------------------------------------- stages
def _check_options(*, energy_kev, wavelength_a, distance_mm, orientation, d_min, max_rings, fix,
                   distance_tolerance) -> tuple[float, tuple[str, ...]]:
    """Validate the scalar options eagerly; return the wavelength (m) and ``fix`` as a tuple."""
    if (energy_kev is None) == (wavelength_a is None):
        raise ValueError("energy_kev / wavelength_a: give exactly one of them")
    if energy_kev is not None:
        wavelength_a = HC_KEV_A / options.positive(energy_kev, "energy_kev")
    wavelength_m = options.positive(wavelength_a, "wavelength_a") * 1e-10
    options.positive(distance_mm, "distance_mm")
    options.choice(orientation, "orientation", options.ORIENTATIONS)
    if d_min is not None:
        options.positive(d_min, "d_min")
    if max_rings is not None and options.positive_int(max_rings, "max_rings") < 2:
        raise ValueError(f"max_rings: need at least 2 rings, got {max_rings}")
    fix = tuple(fix)
    bad = [f for f in fix if f not in _PARAMS]
    if bad:
        raise ValueError(f"fix: unknown parameters {bad}; expected some of {_PARAMS}")
    if not 0 < options.number(distance_tolerance, "distance_tolerance") < 0.5:
        raise ValueError(f"distance_tolerance: must be in (0, 0.5), got {distance_tolerance}")
    return wavelength_m, fix


def _prepare_image(image, detector, mask, *, mask_negative: bool, orientation: str):
    """The image in ``orientation`` (contiguous), its pyFAI detector carrying the combined mask,
    and that mask (True = ignored: user mask, negative or non-finite pixels, detector mask)."""
    img = _load_image(image)
    if orientation == "flipud":
        img = np.flipud(img)
    img = np.ascontiguousarray(img)
    shape = img.shape
    det = _make_detector(detector, shape)
    if det.max_shape is None:
        det.max_shape = shape
    masked = np.zeros(shape, dtype=bool)
    if mask is not None:
        from ._integrate import load_mask  # lazy: integration pulls in numba

        masked |= load_mask(mask, shape, flip=orientation == "flipud").astype(bool)
    if mask_negative and img.dtype.kind in "if":
        masked |= img < 0
    if img.dtype.kind == "f":
        masked |= ~np.isfinite(img)
    if det.mask is not None and det.mask.shape == shape:
        masked |= det.mask != 0
    det.mask = masked.astype(np.int8)
    return img, det, masked


def _initial_geometry(img, masked, det, wavelength_m: float, tth_all, pixel: float, *, beam_center_px,
                      center_search_px: float, distance_mm: float, distance_tolerance: float):
    """pyFAI integrator at the searched beam centre and distance, rotations zero."""
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

    sampler = _ProfileSampler(img, ~masked)
    guess = None if beam_center_px is None else (float(beam_center_px[1]), float(beam_center_px[0]))
    cy, cx = _find_center(sampler, guess, center_search_px)
    dist0 = _find_distance(sampler, cy, cx, tth_all, pixel, distance_mm * 1e-3, distance_tolerance)
    ai = AzimuthalIntegrator(detector=det, wavelength=wavelength_m)
    ai.setFit2D(dist0 * 1e3, cx, cy, tilt=0.0, tiltPlanRotation=0.0)
    return ai


def _ring_stages(ai, shape, tth_all, max_rings: int | None) -> list[int]:
    """Numbers of rings of the successive refinements (4, 8, all on the detector), the last
    one repeated for the final refinement of every free parameter."""
    ny, nx = shape
    corners = ai.tth(np.array([0, 0, ny, ny]), np.array([0, nx, 0, nx]))
    n_on = int(np.sum(tth_all < corners.max()))
    n_target = n_on if max_rings is None else min(max_rings, n_on)
    return sorted({min(n_target, k) for k in (4, 8, n_target)}) + [n_target]


def _refine(img, cal, det, ai, wavelength_m: float, tth_all, pixel: float, *, fix, stages, pts_per_deg,
            seed: int):
    """pyFAI control points on the assigned rings and least-squares refinement, once per stage;
    returns pyFAI's GeometryRefinement and the control points (row, column, ring) kept."""
    from pyFAI.goniometer import SingleGeometry

    geometry_cfg = ai.get_config()
    gr = None
    data = np.empty((0, 3))
    for stage, nrings in enumerate(stages):
        sg = SingleGeometry("calib", image=img, calibrant=cal, detector=det, geometry=geometry_cfg)
        sg.geometry_refinement.auto_gc = False  # pyFAI's gc.collect() per parameter change: 25 % of the time
        sg.geometry_refinement.wavelength = wavelength_m
        with _seeded_global_rng(seed + stage):  # pyFAI's massif shuffles with numpy.random
            cp = sg.extract_cp(max_rings=nrings, pts_per_deg=pts_per_deg)
        data = np.asarray(cp.getList(), dtype=np.float64).reshape(-1, 3)
        if len(data) < 6:
            raise RuntimeError(
                f"calibrate: only {len(data)} control points found on {nrings} rings; check "
                "the energy, distance_mm, detector and beam_center_px"
            )
        gr = sg.geometry_refinement
        gr.data = data
        data = _refine_stage(gr, data, tth_all, pixel, fix=fix, first=stage == 0,
                             final=stage == len(stages) - 1)
        geometry_cfg = gr.get_config()
    return gr, data


def _refine_stage(gr, data, tth_all, pixel: float, *, fix, first: bool, final: bool):
    """One refinement: rotations fixed first (first stage), then all but rot3 and the
    wavelength (all but ``fix`` at the final stage); outliers (> 5 x rms) dropped and refined
    again. Returns the control points kept."""
    fix = list(fix)
    free = fix if final else sorted(set(["wavelength", "rot3"] + fix))
    if first:
        gr.refine2(1000000, fix=sorted(set(["wavelength", "rot1", "rot2", "rot3"] + fix)))
    gr.refine2(1000000, fix=free)
    res = _residuals_px(gr, data, tth_all, pixel)
    rms = np.sqrt(np.mean(res**2))
    keep = np.abs(res) < max(5 * rms, 0.5)
    if keep.sum() >= 6 and keep.sum() < len(data):
        data = data[keep]
        gr.data = data
        gr.refine2(1000000, fix=free)
    return data


def _result(gr, data, initial: Geometry, d_all, tth_all, pixel: float, *, orientation: str, fix,
            calibrant: str) -> CalibrationResult:
    geom = Geometry.from_pyfai(gr, orientation=orientation)
    geom = geom.replace(detector_config=initial.detector_config)
    ring_idx, counts = np.unique(data[:, 2].astype(int), return_counts=True)
    rings = tuple((int(i), float(d_all[i]), float(np.degrees(tth_all[i])), int(c))
                  for i, c in zip(ring_idx, counts))
    return CalibrationResult(
        geometry=geom, rms_px=_rms_px(gr, data, tth_all, pixel), n_rings=len(ring_idx),
        n_points=len(data), rings=rings, control_points=data, initial=initial, fixed=fix,
        calibrant=calibrant,
    )


def _write_outputs(result: CalibrationResult, img, *, orientation: str, poni, report, figure) -> None:
    """PONI file, text report and figure(s), each written atomically (temporary name, rename)."""
    from .nexus import atomic_output

    if poni is not None:
        result.geometry.to_poni(poni, extra={"Calibrant": result.calibrant})
    if report is not None:
        with atomic_output(report, lock=False) as tmp:
            Path(tmp).write_text(result.report() + "\n# json\n# " + json.dumps(result.to_dict()) + "\n")
    if figure is not None:
        from .plot.calibration import calibration_figure

        fig = calibration_figure(np.flipud(img) if orientation == "flipud" else img, result)
        for path in [figure] if isinstance(figure, (str, os.PathLike)) else figure:
            with atomic_output(path, lock=False) as tmp:
                fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", dpi=100)


@contextlib.contextmanager
def _seeded_global_rng(seed: int):
    """Run a block with ``numpy.random`` seeded, then give the caller its state back."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _residuals_px(gr, data, tth_rings, pixel):
    tth = gr.tth(data[:, 0], data[:, 1])
    target = tth_rings[data[:, 2].astype(int)]
    return (tth - target) * gr.dist / np.cos(target) ** 2 / pixel
