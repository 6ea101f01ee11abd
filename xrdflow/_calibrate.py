"""Automatic, headless calibration of the geometry from one calibrant image.

Strategy (robust from a rough guess: distance within ~5-10 %, beam centre unknown or within
~50 px; the image may hold other phases' rings, e.g. a calibrant dusted on a sample), with
pyFAI doing the ring extraction and the least-squares refinement:

1. Beam centre: the radial profile of a powder image is sharpest when computed about the
   ring centre (every phase's rings share it). A coarse-to-fine grid search maximises the
   high-pass energy of the radial profile, on a sub-sampled, clipped copy of the image.
2. Ring assignment (:mod:`xrdflow._rings`): with that centre, each distance hypothesis D
   predicts the calibrant's ring radii r_k = D tan(2theta_k); it is scored by how many of
   them have a peak in the radial profile (each ring counts once, however strong), then by
   the rms offset, and refined by least squares on the rings found. Another phase's strong
   rings cannot outweigh the calibrant's whole pattern; the profile peaks the calibrant does
   not explain are kept as "foreign" rings. Too few rings found: RuntimeError. A runner-up
   hypothesis that finds as many rings is carried through steps 3-4 too; the better wins.
3. pyFAI: ``SingleGeometry.extract_cp`` picks control points on the assigned rings; points
   nearer a foreign ring than their own are dropped; ``GeometryRefinement.refine2``
   refines distance and PONI with the rotations fixed, then all six parameters (the
   wavelength fixed by default), with 4, 8 and then all rings.
4. Quality: the rings predicted by the refined geometry are looked for again in the profile
   computed with that geometry; rms, the fraction of rings found and how far the distance
   and centre moved from the guess go into the result. An untrustworthy result warns
   (:class:`CalibrationWarning`) and lists its ``problems``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import options
from ._calibration_inputs import load_calibrant, load_image, make_detector
from ._rings import ProfileSampler, assign_rings, find_center, nearer_own_ring, ring_presence
from .geometry import Geometry
from .units import HC_KEV_A

__all__ = ["calibrate", "CalibrationResult", "CalibrationWarning"]

#: A result is flagged untrustworthy above this rms residual (px) ...
MAX_RMS_PX = 1.0
#: ... or below this fraction of the predicted rings found in the refined geometry's profile.
MIN_RINGS_FOUND = 0.75
#: Ring assignment: fewer rings found than this fraction of the predicted ones (or than 3) is
#: not the calibrant (RuntimeError).
MIN_RINGS_ASSIGNED = 0.5


class CalibrationWarning(UserWarning):
    """:func:`calibrate` returned a geometry that fails a quality check (see ``problems``)."""

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
    rings_found, rings_predicted : int
        Calibrant rings (within ``d_min``/``max_rings``) the refined geometry predicts on the
        detector, and how many of them have a peak in the profile computed with it.
    peaks_explained : float
        Fraction of that profile's significant peaks on a calibrant ring (below 1 when the
        sample has rings of its own: informative, not a quality criterion).
    distance_shift : float
        Refined sample-detector distance relative to the guess, minus 1.
    center_shift_px : float
        Distance (px) of the refined beam centre from the guess (NaN without a guess).
    problems : tuple of str
        Failed quality checks (rms above :data:`MAX_RMS_PX`, fewer than
        :data:`MIN_RINGS_FOUND` of the rings found, distance or centre moved beyond the
        search range, ambiguous ring assignment); empty when trustworthy.
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
    rings_found: int = 0
    rings_predicted: int = 0
    peaks_explained: float = float("nan")
    distance_shift: float = float("nan")
    center_shift_px: float = float("nan")
    problems: tuple = ()

    @property
    def trusted(self) -> bool:
        """True when every quality check passed (``problems`` empty)."""
        return not self.problems

    @property
    def ring_fraction(self) -> float:
        """Fraction of the predicted rings found (``rings_found / rings_predicted``)."""
        return self.rings_found / self.rings_predicted if self.rings_predicted else float("nan")

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
            f"  rings found   {self.rings_found} of {self.rings_predicted} predicted; "
            f"{self.peaks_explained:.0%} of the profile's peaks on calibrant rings",
            f"  moved         distance {self.distance_shift:+.2%} from the guess, centre "
            f"{self.center_shift_px:.2f} px",
            f"  quality       {'ok' if self.trusted else 'NOT TRUSTWORTHY: ' + '; '.join(self.problems)}",
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
            "rings_found": self.rings_found,
            "rings_predicted": self.rings_predicted,
            "peaks_explained": self.peaks_explained,
            "distance_shift": self.distance_shift,
            "center_shift_px": self.center_shift_px,
            "problems": list(self.problems),
        }


# --------------------------------------------------------------------------- quality
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
        With its quality figures (``rms_px``, ``rings_found`` of ``rings_predicted``,
        ``distance_shift``, ``center_shift_px``) and ``problems``.

    Raises
    ------
    RuntimeError
        The calibrant's rings are not in the image within the search range (fewer than 3,
        or than half, of the predicted rings have a peak in the radial profile for every
        distance hypothesis), or too few control points were found on them.

    Warns
    -----
    CalibrationWarning
        The refined geometry fails a quality check: rms above 1 px, fewer than 3/4 of the
        predicted rings found, distance moved beyond ``distance_tolerance`` or centre beyond
        ``center_search_px`` from the guess, or two different geometries fitting as well
        (a runner-up distance hypothesis finding as many rings is refined too). ``result.problems`` lists them; check the figure before using it.

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
    cal, cal_name, d_all = load_calibrant(calibrant, wavelength_m, d_min)
    tth_all = 2 * np.arcsin(wavelength_m * 1e10 / (2 * d_all))
    pixel = float(np.sqrt(det.pixel1 * det.pixel2))

    # 1. beam centre, 2. ring assignment (distance, rotations zero): the best hypothesis, and
    # a runner-up that finds as many rings; 3. each refined, 4. the better quality kept
    sampler = ProfileSampler(img, ~masked)
    guess = None if beam_center_px is None else (float(beam_center_px[1]), float(beam_center_px[0]))
    candidates = _initial_geometries(sampler, det, wavelength_m, tth_all, pixel, guess_yx=guess,
                                     center_search_px=center_search_px, distance_mm=distance_mm,
                                     distance_tolerance=distance_tolerance, calibrant=cal_name)
    results, errors = [], []
    for ai, assignment in candidates:
        try:
            results.append(_calibrate_from(
                img, cal, det, ai, assignment, sampler, d_all, tth_all, pixel, wavelength_m, guess_yx=guess,
                orientation=orientation, fix=fix, max_rings=max_rings, pts_per_deg=pts_per_deg, seed=seed,
                calibrant=cal_name, distance_mm=distance_mm, distance_tolerance=distance_tolerance,
                center_search_px=center_search_px))
        except RuntimeError as exc:  # too few control points on this hypothesis' rings
            errors.append(exc)
    if not results:
        raise errors[0]
    result = _choose(results)
    if result.problems:
        warnings.warn(f"calibrate: the {cal_name} calibration is not trustworthy: "
                      f"{'; '.join(result.problems)}", CalibrationWarning, stacklevel=2)
    _write_outputs(result, img, orientation=orientation, poni=poni, report=report, figure=figure)
    return result


def _calibrate_from(img, cal, det, ai, assignment, sampler, d_all, tth_all, pixel: float, wavelength_m: float, *,
                    guess_yx, orientation: str, fix, max_rings, pts_per_deg: float, seed: int, calibrant: str,
                    distance_mm: float, distance_tolerance: float, center_search_px: float) -> CalibrationResult:
    """Steps 3 and 4 from one ring assignment: pyFAI refinement in stages (4, 8, all rings),
    control points on foreign rings left out, then the quality of the refined geometry."""
    initial = Geometry.from_pyfai(ai, orientation=orientation)
    stages = _ring_stages(ai, img.shape, tth_all, max_rings)
    foreign_tth = np.arctan(assignment.foreign_px * pixel / assignment.distance_m)
    gr, data = _refine(img, cal, det, ai, wavelength_m, tth_all, pixel, fix=fix, stages=stages,
                       pts_per_deg=pts_per_deg, seed=seed, foreign_tth=foreign_tth)
    quality = _quality(gr, sampler, tth_all[:stages[-1]], pixel, guess_yx=guess_yx, distance_mm=distance_mm,
                       distance_tolerance=distance_tolerance, center_search_px=center_search_px)
    return _result(gr, data, initial, d_all, tth_all, pixel, orientation=orientation, fix=fix,
                   calibrant=calibrant, quality=quality)


def _choose(results: list[CalibrationResult]) -> CalibrationResult:
    """The result with the most predicted rings found, then the smallest rms; flagged ambiguous
    when another, different geometry is as good."""
    ranked = sorted(results, key=lambda r: (-r.ring_fraction, not r.trusted, r.rms_px))
    best = ranked[0]
    rivals = [r for r in ranked[1:] if r.trusted and r.rings_found >= best.rings_found
              and abs(r.geometry.dist / best.geometry.dist - 1) > 1e-3]
    if rivals:
        problems = best.problems + (
            f"ambiguous ring assignment (distances {best.geometry.dist * 1e3:.2f} and "
            f"{rivals[0].geometry.dist * 1e3:.2f} mm both find {best.rings_found} rings)",)
        best = dataclasses.replace(best, problems=problems)
    return best


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
    img = load_image(image)
    if orientation == "flipud":
        img = np.flipud(img)
    img = np.ascontiguousarray(img)
    shape = img.shape
    det = make_detector(detector, shape)
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


def _initial_geometries(sampler, det, wavelength_m: float, tth_all, pixel: float, *, guess_yx,
                        center_search_px: float, distance_mm: float, distance_tolerance: float, calibrant: str):
    """[(pyFAI integrator, ring assignment)] at the searched beam centre (rotations zero): the
    best distance hypothesis, then a runner-up that finds as many rings; RuntimeError when
    the calibrant's rings are not found."""
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

    cy, cx = find_center(sampler, guess_yx, center_search_px)
    asg = assign_rings(sampler, cy, cx, tth_all, pixel, distance_mm * 1e-3, distance_tolerance)
    if asg.n_found < max(3, MIN_RINGS_ASSIGNED * asg.n_predicted):
        raise RuntimeError(
            f"calibrate: the {calibrant} rings were not found: at best {asg.n_found} of the "
            f"{asg.n_predicted} predicted rings have a peak in the radial profile (distance "
            f"{distance_mm:g} mm +-{distance_tolerance:.0%}, centre found at x {cx:.1f}, y {cy:.1f} px); "
            "check the calibrant, the energy, distance_mm, detector, beam_center_px and d_min")
    candidates = []
    for a in (asg, asg.alternative(tth_all, pixel)):
        if a is not None:
            ai = AzimuthalIntegrator(detector=det, wavelength=wavelength_m)
            ai.setFit2D(a.distance_m * 1e3, cx, cy, tilt=0.0, tiltPlanRotation=0.0)
            candidates.append((ai, a))
    return candidates


def _ring_stages(ai, shape, tth_all, max_rings: int | None) -> list[int]:
    """Numbers of rings of the successive refinements (4, 8, all on the detector), the last
    one repeated for the final refinement of every free parameter."""
    ny, nx = shape
    corners = ai.tth(np.array([0, 0, ny, ny]), np.array([0, nx, 0, nx]))
    n_on = int(np.sum(tth_all < corners.max()))
    n_target = n_on if max_rings is None else min(max_rings, n_on)
    return sorted({min(n_target, k) for k in (4, 8, n_target)}) + [n_target]


def _refine(img, cal, det, ai, wavelength_m: float, tth_all, pixel: float, *, fix, stages, pts_per_deg,
            seed: int, foreign_tth=()):
    """pyFAI control points on the assigned rings and least-squares refinement, once per stage
    (points nearer a ``foreign_tth`` ring than their own dropped first); returns pyFAI's
    GeometryRefinement and the control points (row, column, ring) kept."""
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
        data = _off_foreign_rings(sg.geometry_refinement, data, tth_all, foreign_tth)
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


def _off_foreign_rings(geom, data, tth_all, foreign_tth):
    """Control points not nearer a foreign ring than their own (in ``geom``): pyFAI's
    extraction band can reach another phase's (often stronger) ring."""
    if len(data) == 0:
        return data
    tth = geom.tth(data[:, 0], data[:, 1])
    return data[nearer_own_ring(tth, tth_all[data[:, 2].astype(int)], foreign_tth)]


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


def _quality(gr, sampler, tth_rings, pixel: float, *, guess_yx, distance_mm: float, distance_tolerance: float,
             center_search_px: float) -> dict[str, Any]:
    """Quality figures of the refined geometry: the rings it predicts looked for in the profile
    computed with it (equivalent radius D tan 2theta per sampled pixel), the shifts from the
    guess, and the problems found (rms is checked in :func:`_result`)."""
    tth = gr.tth(sampler.y - 0.5, sampler.x - 0.5)  # sampled pixel centres as pyFAI indices
    on, found, explained = ring_presence(sampler, gr.dist * np.tan(tth) / pixel,
                                         gr.dist * np.tan(tth_rings) / pixel)
    f2d = gr.getFit2D()
    shift = f2d["directDist"] / distance_mm - 1
    moved = float("nan") if guess_yx is None else float(np.hypot(f2d["centerY"] - guess_yx[0],
                                                                 f2d["centerX"] - guess_yx[1]))
    problems = []
    n_on, n_found = int(on.sum()), int(found.sum())
    if n_found < MIN_RINGS_FOUND * n_on:
        problems.append(f"only {n_found} of the {n_on} predicted rings found")
    if abs(shift) > distance_tolerance:
        problems.append(f"distance moved {shift:+.1%} from the guess (tolerance {distance_tolerance:.0%})")
    if moved > center_search_px:
        problems.append(f"centre moved {moved:.1f} px from the guess (search {center_search_px:g} px)")
    return dict(rings_found=n_found, rings_predicted=n_on, peaks_explained=explained, distance_shift=float(shift),
                center_shift_px=moved, problems=problems)


def _result(gr, data, initial: Geometry, d_all, tth_all, pixel: float, *, orientation: str, fix,
            calibrant: str, quality: dict[str, Any]) -> CalibrationResult:
    geom = Geometry.from_pyfai(gr, orientation=orientation)
    geom = geom.replace(detector_config=initial.detector_config)
    ring_idx, counts = np.unique(data[:, 2].astype(int), return_counts=True)
    rings = tuple((int(i), float(d_all[i]), float(np.degrees(tth_all[i])), int(c))
                  for i, c in zip(ring_idx, counts))
    rms = _rms_px(gr, data, tth_all, pixel)
    quality = dict(quality)
    problems = list(quality.pop("problems"))
    if not rms <= MAX_RMS_PX:
        problems.insert(0, f"rms residual {rms:.2f} px (> {MAX_RMS_PX:g} px)")
    return CalibrationResult(
        geometry=geom, rms_px=rms, n_rings=len(ring_idx), n_points=len(data), rings=rings,
        control_points=data, initial=initial, fixed=fix, calibrant=calibrant, problems=tuple(problems),
        **quality,
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
