"""Ring search of the automatic calibration: beam centre, ring assignment and ring presence.

Numbers only (numpy): :mod:`xrdflow._calibrate` turns them into a pyFAI geometry.

The ring assignment scores every distance hypothesis by how many of the calibrant's
predicted rings have a peak in the azimuthally averaged profile (each ring counts once,
however strong), not by the intensity at the predicted radii: a strong ring of another
phase on the sample (a calibrant dusted on a steel sample) can then never outweigh the
calibrant's whole ring pattern.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["ProfileSampler", "RingAssignment", "find_center", "assign_rings", "profile_peaks",
           "match_rings", "ring_tolerance_px", "ring_presence", "nearer_own_ring", "assignment_at"]

#: Peaks of the high-passed radial profile above this many robust standard deviations.
PEAK_SIGMAS = 4.0
#: Smoothing window of the high pass (px): wider than a ring, narrower than the background.
HIGH_PASS_PX = 20.0


class ProfileSampler:
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
        """Mean (centred, clipped) intensity and pixel count per radial bin about (cy, cx)."""
        return self.profile_of(np.hypot(self.y - cy, self.x - cx), bin_px)

    def profile_of(self, r_px: np.ndarray, bin_px: float):
        """Mean intensity and count per bin of ``r_px`` (one equivalent radius per sampled pixel)."""
        idx = (r_px / bin_px).astype(np.int64)
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


def find_center(sampler: ProfileSampler, guess_yx, search_px: float):
    """Beam centre (row, column) maximising the profile's sharpness, coarse to fine."""
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


@dataclasses.dataclass(frozen=True)
class Peaks:
    """Peaks of a high-passed radial profile: radii (px), heights (robust sigmas), and the
    radial range (px) where the profile is defined."""

    radius: np.ndarray
    height: np.ndarray
    r_min: float
    r_max: float


def profile_peaks(prof: np.ndarray, cnt: np.ndarray, bin_px: float) -> Peaks:
    """Significant local maxima of the profile above its baseline, at sub-bin precision.

    The baseline is a grey opening (rings narrower than :data:`HIGH_PASS_PX` removed), so a
    weak ring next to a strong one keeps its height; the noise is estimated from the
    bin-to-bin differences (robust to the rings)."""
    from scipy import ndimage

    good = cnt >= 5
    if good.sum() < 10:
        return Peaks(np.empty(0), np.empty(0), 0.0, 0.0)
    where = np.flatnonzero(good)
    first, last = where[0], where[-1]
    prof = np.interp(np.arange(first, last + 1), where, prof[good])  # masked bins bridged
    win = max(5, int(round(HIGH_PASS_PX / bin_px)) | 1)
    base = ndimage.uniform_filter1d(ndimage.grey_opening(prof, size=win), win, mode="nearest")
    z = prof - base
    noise = 1.4826 * np.median(np.abs(np.diff(prof) - np.median(np.diff(prof)))) / np.sqrt(2) + 1e-12
    z = (z - np.median(z)) / noise
    i = np.arange(2, len(z) - 2)
    local = np.ones(i.size, dtype=bool)
    for k in (-2, -1, 1, 2):
        local &= z[i] >= z[i + k]
    i = i[local & (z[i] > PEAK_SIGMAS)]
    den = z[i - 1] - 2 * z[i] + z[i + 1]
    shift = np.where(den < 0, 0.5 * (z[i - 1] - z[i + 1]) / np.where(den < 0, den, -1.0), 0.0)
    radius = (first + i + 0.5 + np.clip(shift, -0.5, 0.5)) * bin_px
    return Peaks(radius, z[i], (first + 2.5) * bin_px, (last - 1.5) * bin_px)


def ring_tolerance_px(r_px: np.ndarray) -> np.ndarray:
    """How far (px) a profile peak may sit from a predicted ring and still be that ring: the
    profile's own precision plus what the zero-tilt first guess leaves at large radii."""
    return 1.5 + 0.002 * np.asarray(r_px, dtype=float)


def match_rings(predicted_px: np.ndarray, peaks: Peaks):
    """For each predicted radius: (on the profile?, found?, offset of the nearest peak in px)."""
    predicted_px = np.asarray(predicted_px, dtype=float)
    on = (predicted_px > peaks.r_min) & (predicted_px < peaks.r_max)
    if peaks.radius.size == 0:
        return on, np.zeros_like(on), np.full(predicted_px.shape, np.inf)
    p = np.sort(peaks.radius)
    j = np.searchsorted(p, predicted_px)
    lo = p[np.clip(j - 1, 0, p.size - 1)]
    hi = p[np.clip(j, 0, p.size - 1)]
    off = np.where(np.abs(predicted_px - lo) <= np.abs(predicted_px - hi), lo, hi) - predicted_px
    found = on & (np.abs(off) <= ring_tolerance_px(predicted_px))
    return on, found, off


@dataclasses.dataclass(frozen=True)
class RingAssignment:
    """Best distance hypothesis: distance (m), which predicted rings were found, the profile
    peaks (px) the calibrant does not explain, the runner-up's number of rings found and its
    distance when it finds as many (an ambiguous assignment, else NaN), and the peaks."""

    distance_m: float
    on_detector: np.ndarray
    found: np.ndarray
    foreign_px: np.ndarray
    runner_up_found: int
    n_peaks: int
    alternative_m: float = float("nan")
    peaks: Peaks | None = dataclasses.field(default=None, repr=False)

    def alternative(self, tth_rad: np.ndarray, pixel: float) -> RingAssignment | None:
        """The assignment of the tying runner-up distance (None when there is none)."""
        if not np.isfinite(self.alternative_m) or self.peaks is None:
            return None
        return assignment_at(self.peaks, np.tan(np.asarray(tth_rad, dtype=float)), pixel, self.alternative_m,
                             self.n_found, float("nan"))

    @property
    def n_predicted(self) -> int:
        return int(self.on_detector.sum())

    @property
    def n_found(self) -> int:
        return int(self.found.sum())


def assign_rings(sampler: ProfileSampler, cy: float, cx: float, tth_rad: np.ndarray, pixel: float,
                 dist_guess_m: float, rel: float) -> RingAssignment:
    """Distance (rotations zero) whose predicted rings r_k = D tan(2theta_k) are found in the
    profile about (cy, cx): most rings found, then smallest rms offset; refined by least
    squares on the rings found."""
    bin_px = 0.5
    peaks = profile_peaks(*sampler.profile(cy, cx, bin_px), bin_px)
    tan = np.tan(np.asarray(tth_rad, dtype=float))
    r_out = min(peaks.r_max, dist_guess_m * (1 + rel) * tan.max() / pixel)
    nstep = int(np.clip(2 * rel * r_out / 0.25, 200, 40000))  # outermost ring moves <= 0.25 px
    dists = np.linspace(dist_guess_m * (1 - rel), dist_guess_m * (1 + rel), nstep)
    radii = dists[:, None] * tan[None, :] / pixel
    on, found, off = match_rings(radii.ravel(), peaks)
    on, found, off = (a.reshape(radii.shape) for a in (on, found, off))
    n_found = found.sum(axis=1)
    rms = np.sqrt(np.where(found, off**2, 0.0).sum(axis=1) / np.maximum(n_found, 1))
    order = np.lexsort((rms, -n_found))
    dist = _least_squares_distance(float(dists[order[0]]), tan, peaks, pixel)
    # runner-up: best hypothesis clearly away from this one (the outermost ring moved > 3 tolerances)
    away = np.abs(dists / dist - 1) * r_out > 3 * ring_tolerance_px(r_out)
    runner = next((int(k) for k in order if away[k]), None)
    runner_found = 0 if runner is None else int(n_found[runner])
    alternative = float("nan")
    if runner is not None and runner_found >= n_found[order[0]]:
        alternative = _least_squares_distance(float(dists[runner]), tan, peaks, pixel)
    return assignment_at(peaks, tan, pixel, dist, runner_found, alternative)


def _least_squares_distance(dist: float, tan: np.ndarray, peaks: Peaks, pixel: float) -> float:
    """``dist`` refined by least squares on the rings it finds (matched again, three times)."""
    for _ in range(3):
        _, found, off = match_rings(dist * tan / pixel, peaks)
        if found.sum() < 2:
            break
        r_peak = dist * tan[found] / pixel + off[found]
        dist = float(np.sum(r_peak * tan[found]) / np.sum(tan[found] ** 2)) * pixel
    return dist


def assignment_at(peaks: Peaks, tan: np.ndarray, pixel: float, dist: float, runner_up_found: int = 0,
                  alternative_m: float = float("nan")) -> RingAssignment:
    """The :class:`RingAssignment` of the distance ``dist`` (m) on ``peaks``."""
    on, found, _ = match_rings(dist * tan / pixel, peaks)
    explained = _explained(peaks, dist * tan[found] / pixel)
    return RingAssignment(dist, on, found, peaks.radius[~explained], runner_up_found, int(peaks.radius.size),
                          alternative_m, peaks)


def _explained(peaks: Peaks, ring_px: np.ndarray) -> np.ndarray:
    """Which peaks sit on one of the rings ``ring_px`` (within the ring tolerance)."""
    explained = np.zeros(peaks.radius.size, dtype=bool)
    for r in np.asarray(ring_px, dtype=float):
        explained |= np.abs(peaks.radius - r) <= ring_tolerance_px(r)
    return explained


def ring_presence(sampler: ProfileSampler, r_equivalent_px: np.ndarray, predicted_px: np.ndarray,
                  bin_px: float = 0.5):
    """Rings of a refined geometry looked for in the profile it gives: ``r_equivalent_px`` is
    each sampled pixel's D tan(2theta) / pixel in that geometry. Returns (predicted ring on the
    profile?, found?, fraction of the profile's peaks on a found ring)."""
    peaks = profile_peaks(*sampler.profile_of(r_equivalent_px, bin_px), bin_px)
    on, found, _ = match_rings(predicted_px, peaks)
    explained = _explained(peaks, np.asarray(predicted_px)[found])
    return on, found, float(explained.mean()) if explained.size else float("nan")


def nearer_own_ring(tth: np.ndarray, own_tth: np.ndarray, foreign_tth) -> np.ndarray:
    """True where a point's 2theta ``tth`` is nearer its own ring's ``own_tth`` than any of
    the ``foreign_tth`` rings (another phase's rings, the calibrant's rings left out)."""
    foreign = np.sort(np.asarray(foreign_tth, dtype=float))
    if foreign.size == 0:
        return np.ones(np.shape(tth), dtype=bool)
    j = np.searchsorted(foreign, tth)
    near = np.minimum(np.abs(tth - foreign[np.clip(j - 1, 0, foreign.size - 1)]),
                      np.abs(tth - foreign[np.clip(j, 0, foreign.size - 1)]))
    return np.abs(tth - own_tth) < near
