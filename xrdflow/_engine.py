"""Fused integration engine: pyFAI's sparse matrix, applied by numba kernels to raw frames.

pyFAI stays in charge of geometry and pixel splitting: :func:`build_sparse` asks it for the
CSR matrix of the chosen method (``AzimuthalIntegrator.setup_sparse_integrator``, the call
``integrate1d`` makes itself; its ``.lut`` is ``(data, indices, indptr)``) and for its
per-pixel correction arrays (``solidAngleArray``, ``polarization``, a flat field). Everything
that does not change from frame to frame is folded in once per geometry:

* the pixel weight ``w = solid_angle * polarization * flat`` (pyFAI's *normalisation*,
  computed in float32 as pyFAI does),
* the normalisation per bin ``N_b = sum_j c_j w_idx(j)`` over all pixels of the matrix (the
  static mask is already out of the matrix, as in pyFAI),
* the up-down flip of a ``flipud`` geometry (pixel indices are remapped instead of flipping
  every frame), and azimuthal sectors (one matrix, sectors stacked as rows).

The matrix is then stored pixel-major (ELL: K entries per pixel, see
:class:`SparseIntegrator`), so that a kernel streams each frame in memory order instead of
gathering pixels ring by ring (which thrashes the TLB on 2048 x 2048 frames).

Per frame, :func:`integrate_frames` reads the detector's own dtype (uint16, uint32, int32,
float32...) straight from the frame array (no float copy), skips invalid pixels (negative
ones, or pyFAI's dummy/delta_dummy test, and non-finite values), subtracts a dark if given,
accumulates in float64 and returns, per bin, ``I = sum c (x - dark) / sum c w`` and its
Poisson error ``sqrt(sum c^2 max(x, 1)) / sum c w``, as pyFAI's ``integrate1d(...,
error_model="poisson")`` (``sigma``). In a bin holding invalid pixels the normalisation is
the precomputed one minus theirs (recomputed exactly over the valid pixels if that loses
more than 4 digits), and a bin without any valid pixel gets pyFAI's ``empty`` value: pyFAI's
semantics for dynamic masks.

Summation order is fixed: pixel p adds to bank ``p & 3`` in increasing pixel order, the four
banks are combined in a fixed order, no fastmath reassociation. A frame's result is thus
bit-identical whatever the thread, process, batch or chunk that computes it. Matrices are
built once per process and shared read-only by its threads (:func:`get_sparse`, bounded by
``XRDFLOW_ENGINE_CACHE_MB``); nothing here is shipped in a dask graph.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

__all__ = [
    "SparseIntegrator",
    "build_sparse",
    "get_sparse",
    "integrate_frames",
    "engine_cache_info",
    "clear_engine_cache",
    "array_digest",
    "SPLITS",
    "MODE_FINITE",
    "MODE_NEGATIVE",
    "MODE_DUMMY",
]

#: pixel splitting schemes covered by the fused engine (pyFAI's "pseudo" uses "full" matrices)
SPLITS = ("no", "bbox", "full", "pseudo")

#: invalid-pixel tests: non-finite only / negative or non-finite / pyFAI dummy test
MODE_FINITE, MODE_NEGATIVE, MODE_DUMMY = 0, 1, 2


# --------------------------------------------------------------------------- kernels
# Layout: pixel-major ELL. Pixel p (frame as read) contributes to K bins (see ``_bin``)
# with coefficients ``ecoef[p*K + t]`` (0-padded); the few pixels with more than K entries
# keep the rest in a short COO list (opix, obin, ocoef). Frames are streamed in memory order
# (no gathers, no TLB thrashing), partial sums go to four banks (pixel p -> bank p & 3) so
# that consecutive pixels do not wait on each other, and the banks are combined in a fixed
# order. The result of a frame never depends on which other frames share the call.
NBANKS = 4


@numba.njit(cache=True, nogil=True, inline="always")
def _valid(raw, mode, dummy, ddummy):
    if mode == 1:
        return raw >= 0 and np.float64(raw) < np.inf
    if mode == 2:
        f = np.float32(raw)
        if not math.isfinite(f):
            return False
        if ddummy == 0.0:
            return f != dummy
        return abs(f - dummy) > ddummy
    return math.isfinite(np.float64(raw))


@numba.njit(cache=True, nogil=True, inline="always")
def _coef(ecoef, j):
    if ecoef is None:  # unit coefficients (no splitting): not stored
        return 1.0
    return np.float64(ecoef[j])


@numba.njit(cache=True, nogil=True, inline="always")
def _bin(ebins, p, t, contig):
    """Bin of entry t of pixel p: ``ebins[p, 0] + t`` when every pixel's bins are consecutive
    (ebins of shape (npix, 1): bounding-box and full splitting in 1D), else ``ebins[p, t]``."""
    if contig:
        return np.int64(ebins[p, 0]) + t
    return np.int64(ebins[p, t])


@numba.njit(cache=True, nogil=True)
def _mark_bad(f, r, p, K, ebins, ecoef, pixw, nb, badw, badcnt):
    """An invalid pixel p (matrix row r; rare, kept out of the hot loop): its weight per bin,
    and a count."""
    base = r * K
    for t in range(K):
        c = _coef(ecoef, base + t)
        if c != 0.0:
            b = f * nb + _bin(ebins, r, t, ebins.shape[1] == 1)
            badw[b] += c * np.float64(pixw[p])
            badcnt[b] += 1


@numba.njit(cache=True, nogil=True, inline="always")
def _add_pixel(raw, r, p, fo, K, contig, ebins, ecoef, dark, acc, vacc):
    v = np.float64(raw)
    if dark is not None:
        v -= np.float64(dark[p])
    base = r * K
    for t in range(K):
        acc[fo + _bin(ebins, r, t, contig)] += _coef(ecoef, base + t) * v
    if vacc is not None:
        var = max(np.float64(raw), 1.0)
        for t in range(K):
            c = _coef(ecoef, base + t)
            vacc[fo + _bin(ebins, r, t, contig)] += c * c * var


@numba.njit(cache=True, nogil=True)
def _accumulate(frames, f0, ff, kk, cc, active, ebins, ecoef, opix, obin, ocoef, pixw, dark, mm, dummy,
                ddummy, acc, vacc, badw, badcnt):
    """Sums of frames f0..f0+nf into acc/vacc (flat (nf, NBANKS, nb)); invalid pixels into
    badw/badcnt (flat (nf, nb)).

    nf = len(ff), K = len(kk) and mode = len(mm) are compile-time constants (the tuple types
    carry them, so the loops over frames and over K unroll and the invalid test is chosen at
    compile time, with ordinary type dispatch); ecoef, dark and vacc may be None (branches pruned at compile time).

    Within a frame, every accumulator receives its terms by increasing pixel index, so the
    result does not depend on the batch size or the number of threads. ``active`` (None or
    the increasing indices of the pixels that have matrix entries, one matrix row each)
    skips the pixels outside the radial range: they only ever add zero."""
    K = len(kk)
    nf = len(ff)
    mode = len(mm)
    contig = len(cc) == 1
    nrow = ebins.shape[0]
    nb = badw.shape[0] // nf
    # all frames of the batch per pixel: the matrix is read once per batch, not once per
    # frame (without splitting it is 3x the size of a uint16 frame), and the frame loop is
    # unrolled (nf is a constant): 2048^2 without splitting, 2 cores, 359 frames/s frame by
    # frame, 411 batched, ~600 batched and unrolled
    for r in range(nrow):
        p = r if active is None else active[r]
        off = (p & 3) * nb
        for f in range(nf):
            raw = frames[f0 + f, p]
            if _valid(raw, mode, dummy, ddummy):
                _add_pixel(raw, r, p, f * NBANKS * nb + off, K, contig, ebins, ecoef, dark, acc, vacc)
            else:
                _mark_bad(f, r, p, K, ebins, ecoef, pixw, nb, badw, badcnt)
    for j in range(opix.shape[0]):
        p = opix[j]
        c = np.float64(ocoef[j])
        off = (p & 3) * nb + obin[j]
        for f in range(nf):
            raw = frames[f0 + f, p]
            if _valid(raw, mode, dummy, ddummy):
                v = np.float64(raw)
                if dark is not None:
                    v -= np.float64(dark[p])
                acc[f * NBANKS * nb + off] += c * v
                if vacc is not None:
                    vacc[f * NBANKS * nb + off] += c * c * max(np.float64(raw), 1.0)
            elif c != 0.0:
                badw[f * nb + obin[j]] += c * np.float64(pixw[p])
                badcnt[f * nb + obin[j]] += 1


@numba.njit(cache=True, nogil=True)
def _exact_norm(x, K, active, ebins, ecoef, opix, obin, ocoef, pixw, mode, dummy, ddummy, nb):
    """Normalisation per bin over the valid pixels of one frame (pixel-major, fixed order)."""
    out = np.zeros(nb, np.float64)
    for r in range(ebins.shape[0]):
        p = r if active is None else active[r]
        if _valid(x[p], mode, dummy, ddummy):
            w = np.float64(pixw[p])
            for t in range(K):
                out[_bin(ebins, r, t, ebins.shape[1] == 1)] += _coef(ecoef, r * K + t) * w
    for j in range(opix.shape[0]):
        if _valid(x[opix[j]], mode, dummy, ddummy):
            out[obin[j]] += np.float64(ocoef[j]) * np.float64(pixw[opix[j]])
    return out


@numba.njit(cache=True, nogil=True)
def _finish(frames, f0, nf, K, active, ebins, ecoef, opix, obin, ocoef, pixw, norm, count, mode, dummy,
            ddummy, empty, acc, vacc, badw, badcnt, out_i, out_e):
    nb = norm.shape[0]
    nbx = badw.shape[0] // nf  # nb + K: the extra bins collect the padding
    for f in range(nf):
        exact = np.zeros(0, np.float64)
        a = f * NBANKS * nbx
        for b in range(nb):
            s = (acc[a + b] + acc[a + nbx + b]) + (acc[a + 2 * nbx + b] + acc[a + 3 * nbx + b])
            n = norm[b]
            nbad = badcnt[f * nbx + b]
            if nbad > 0:
                if nbad >= count[b]:
                    n = 0.0
                else:
                    n = norm[b] - badw[f * nbx + b]
                    if n < 1e-4 * norm[b]:  # cancellation: recompute this frame's norms exactly
                        if exact.shape[0] == 0:
                            exact = _exact_norm(frames[f0 + f], K, active, ebins, ecoef, opix, obin, ocoef,
                                                pixw, mode, dummy, ddummy, nbx)
                        n = exact[b]
            if n > 0.0:
                out_i[f0 + f, b] = s / n
                if vacc is not None:
                    v = (vacc[a + b] + vacc[a + nbx + b]) + (vacc[a + 2 * nbx + b] + vacc[a + 3 * nbx + b])
                    out_e[f0 + f, b] = math.sqrt(v) / n
            else:
                out_i[f0 + f, b] = empty
                if vacc is not None:
                    out_e[f0 + f, b] = empty


def _batch_size(nb: int, requested: int | None) -> int:
    if requested is not None:
        return max(1, int(requested))
    # accumulators of a batch within ~1 MB (L2), at most 8 frames
    return int(max(1, min(8, (1 << 20) // (NBANKS * 8 * max(nb, 1)))))


def _pow2_batches(n: int, size: int) -> list[tuple[int, int]]:
    """(first frame, count) passes over n frames: ``size`` at a time, each pass a power of two.

    The frame count of a pass is a compile-time constant of the kernel (its frame loop is
    unrolled: without splitting 2048^2 frames go from 411 to ~600 frames/s on 2 cores), so
    limiting it to 1, 2, 4, 8 bounds the compiled variants to four. A tail of 7 is 4 + 2 + 1.
    """
    size = max(1, int(size))
    size = 1 << (size.bit_length() - 1)  # largest power of two <= size
    out = []
    f0 = 0
    while f0 < n:
        nf = min(size, n - f0)
        nf = 1 << (nf.bit_length() - 1)
        out.append((f0, nf))
        f0 += nf
    return out


def _run_batches(frames, batches, s, dark, mode, dummy, ddummy, errors, out_i, out_e):
    """Python driver for one thread: allocates the accumulators once, reuses them per batch."""
    nb = s.nbins + s.K  # + the padding bins
    nfmax = max(b[1] for b in batches)
    acc = np.empty(nfmax * NBANKS * nb, np.float64)
    vacc = np.empty(nfmax * NBANKS * nb, np.float64) if errors else None
    badw = np.empty(nfmax * nb, np.float64)
    badcnt = np.empty(nfmax * nb, np.int64)
    ecoef = s.ecoef if s.ecoef.shape[0] else None
    for f0, nf in batches:
        a = acc[: nf * NBANKS * nb]
        a[:] = 0.0
        va = None
        if vacc is not None:
            va = vacc[: nf * NBANKS * nb]
            va[:] = 0.0
        bw = badw[: nf * nb]
        bw[:] = 0.0
        bc = badcnt[: nf * nb]
        bc[:] = 0
        _accumulate(frames, f0, (0,) * nf, (0,) * s.K, (0,) * int(s.ebins.shape[1] == 1), s.active, s.ebins, ecoef,
                    s.opix, s.obin, s.ocoef, s.pixw, dark, (0,) * mode, dummy, ddummy, a, va, bw, bc)
        _finish(frames, f0, nf, s.K, s.active, s.ebins, ecoef, s.opix, s.obin, s.ocoef, s.pixw, s.norm,
                s.count, mode, dummy, ddummy, np.float64(s.empty), a, va, bw, bc, out_i, out_e)


@numba.njit(cache=True, nogil=True)
def _norm_count(K, active, ebins, ecoef, opix, obin, ocoef, pixw, nb):
    """sum c w and number of non-zero entries per bin, in the kernels' order."""
    banks = np.zeros((NBANKS, nb + K), np.float64)  # + the padding bins (dropped)
    count = np.zeros(nb + K, np.int64)
    for r in range(ebins.shape[0]):
        p = r if active is None else active[r]
        w = np.float64(pixw[p])
        for t in range(K):
            c = _coef(ecoef, r * K + t)
            if c != 0.0:
                b = _bin(ebins, r, t, ebins.shape[1] == 1)
                banks[p & 3, b] += c * w
                count[b] += 1
    for j in range(opix.shape[0]):
        c = np.float64(ocoef[j])
        if c != 0.0:
            banks[opix[j] & 3, obin[j]] += c * np.float64(pixw[opix[j]])
            count[obin[j]] += 1
    norm = np.empty(nb, np.float64)
    for b in range(nb):
        norm[b] = (banks[0, b] + banks[1, b]) + (banks[2, b] + banks[3, b])
    return norm, count[:nb].copy()


# --------------------------------------------------------------------------- matrix
@dataclass(frozen=True, eq=False)
class SparseIntegrator:
    """pyFAI's sparse matrix with the static corrections folded in (read-only, shareable).

    The matrix is stored pixel-major (ELL): pixel ``p`` of the frame *as read* (indices
    already remapped for a ``flipud`` geometry) contributes ``ecoef[p*K + t] * x[p]`` to bin
    ``ebins[p*K + t]`` for ``t < K``; the entries beyond K of the rare pixels that have more
    are in the COO list ``opix, obin, ocoef``. Bins are numbered sector after sector.

    Attributes
    ----------
    K : int
        Entries per pixel in the ELL part.
    ebins : ndarray (nrow, 1) or (nrow, K), uint16 or int32
        Bins of each pixel: only the first one when they are consecutive for every pixel
        (the usual 1D case, bbox and full splitting included), else all K. One row per
        pixel, or per active pixel when ``active`` is set.
    ecoef : ndarray (npix * K,) float32
        Coefficient of each entry, zero-padded; empty when every coefficient is 1 (no
        pixel splitting).
    opix, obin, ocoef : ndarray
        Overflow entries.
    pixw : ndarray (npix,) float32
        Pixel weight ``solid_angle * polarization * flat`` (pyFAI's normalisation).
    norm : ndarray (nbins,) float64
        ``sum c w`` per bin over every pixel of the matrix.
    count : ndarray (nbins,) int64
        Number of non-zero entries per bin.
    radial : ndarray (npt,) float64
        Bin centres in the requested unit (identical to pyFAI's ``result.radial``).
    shape : (int, int)
        Frame shape.
    nsectors : int
        Number of stacked sectors (1 without sectors).
    empty : float
        Value of bins without any valid pixel (pyFAI's ``empty``).
    nnz : int
        Non-zero entries of pyFAI's matrix.
    active : ndarray (nrow,) int64 or None
        The pixels that have entries, increasing, when they are fewer than 90 % of the frame
        (a radial range, a mask or sectors leave the rest out); row r of ``ebins``/``ecoef``
        is pixel ``active[r]``. None: row p is pixel p.
    """

    K: int
    ebins: np.ndarray
    ecoef: np.ndarray
    opix: np.ndarray
    obin: np.ndarray
    ocoef: np.ndarray
    pixw: np.ndarray
    norm: np.ndarray
    count: np.ndarray
    radial: np.ndarray
    shape: tuple
    nsectors: int
    empty: float
    nnz: int
    description: str = ""
    active: np.ndarray | None = None

    @property
    def nbins(self) -> int:
        return int(self.norm.shape[0])

    @property
    def nbytes(self) -> int:
        arrays = (self.ebins, self.ecoef, self.opix, self.obin, self.ocoef, self.pixw, self.norm,
                  self.count, self.radial) + ((self.active,) if self.active is not None else ())
        return int(sum(a.nbytes for a in arrays))


@numba.njit(cache=True, nogil=True)
def _per_pixel_counts(indices, npix):
    counts = np.zeros(npix, np.int32)
    for j in range(indices.shape[0]):
        counts[indices[j]] += 1
    return counts


@numba.njit(cache=True, nogil=True)
def _fill_ell(indptr, indices, coef, counts, K, nb, ebins, ecoef, with_coef):
    """Scatter the CSR entries (bins x pixels) into pixel-major ELL rows ``ebins``/``ecoef``
    (npix, K) and return the entries beyond K as COO (pixel, bin, coef).

    Rows are visited in bin order, so the bins of a pixel come out ascending (its slots in
    order, then its overflow). Slots a pixel leaves empty are padded with its first bin + t
    and coefficient 0 (a pixel without entries starts at the extra bin ``nb``): the
    accumulators have K extra bins, which the kernels drop (needed for unit matrices, whose
    coefficients are all 1 and not stored).
    """
    npix = counts.shape[0]
    fill = np.zeros(npix, np.int32)
    n_over = 0
    for p in range(npix):
        if counts[p] > K:
            n_over += counts[p] - K
    opix = np.empty(n_over, np.int32)
    obin = np.empty(n_over, np.int32)
    ocoef = np.empty(n_over, np.float32)
    o = 0
    for b in range(nb):
        for j in range(indptr[b], indptr[b + 1]):
            p = indices[j]
            t = fill[p]
            fill[p] = t + 1
            if t < K:
                ebins[p, t] = b
                if with_coef:
                    ecoef[p, t] = coef[j]
            else:
                opix[o] = p
                obin[o] = b
                ocoef[o] = coef[j]
                o += 1
    for p in range(npix):
        first = ebins[p, 0] if counts[p] > 0 else nb
        for t in range(min(counts[p], K), K):
            ebins[p, t] = first + t
            if with_coef:
                ecoef[p, t] = 0.0
    return opix, obin, ocoef


@numba.njit(cache=True, nogil=True)
def _bins_consecutive(ebins):
    for p in range(ebins.shape[0]):
        for t in range(1, ebins.shape[1]):
            if ebins[p, t] != ebins[p, 0] + t:
                return False
    return True


def _to_ell(indptr, indices, coef, npix: int, max_k: int = 8):
    """CSR (bins x pixels) -> pixel-major ELL with K entries per pixel + COO overflow.

    Compiled loops over the entries, with no sort and no int64 temporaries of the matrix's
    size: at 2048^2 with bbox splitting (11 M entries) 0.3 s and the output's memory,
    where the numpy version took 2.7 s and ~1 GB of temporaries in every worker process.
    """
    nb = indptr.shape[0] - 1
    indptr = np.ascontiguousarray(indptr, np.int64)
    indices = np.ascontiguousarray(indices, np.int32 if npix < 2**31 else np.int64)
    coef = np.ascontiguousarray(coef, np.float32)
    per_pixel = _per_pixel_counts(indices, npix)
    kmax = int(per_pixel.max()) if per_pixel.size else 0
    if kmax <= max_k:
        K = max(kmax, 1)
    else:  # a few pixels with many entries: keep 99.9 % of the pixels in the ELL part
        K = max(int(np.percentile(per_pixel[per_pixel > 0], 99.9)), 1)
    unit = bool(np.all(coef == 1.0)) and kmax <= 1
    bdtype = np.uint16 if nb + K < 2**16 else np.int32
    ebins = np.empty((npix, K), np.int32)
    ecoef = np.empty((npix, K) if not unit else (0, K), np.float32)
    opix, obin, ocoef = _fill_ell(indptr, indices, coef, per_pixel, K, nb, ebins, ecoef, not unit)
    if opix.shape[0]:  # overflow by pixel, then bin (the order the kernels add them in)
        order = np.lexsort((obin, opix))
        opix, obin, ocoef = opix[order], obin[order], ocoef[order]
    # consecutive bins for every pixel (the usual 1D case): keep only the first one
    if K == 1 or _bins_consecutive(ebins):
        ebins = np.ascontiguousarray(ebins[:, :1], bdtype)
    else:
        ebins = ebins.astype(bdtype)
    ecoef = ecoef.reshape(-1)
    active = None
    has = per_pixel > 0
    if has.sum() < 0.9 * npix:  # a radial range or mask leaves most pixels out: keep rows
        active = np.flatnonzero(has).astype(np.int64)  # for the others only (increasing)
        ebins = np.ascontiguousarray(ebins[active])
        if ecoef.shape[0]:
            ecoef = np.ascontiguousarray(ecoef.reshape(npix, K)[active].ravel())
    return K, active, ebins, ecoef, opix, obin, ocoef


def array_digest(arr) -> str:
    """Short content digest of an array (mask, flat, dark) for cache keys; '' for None."""
    if arr is None:
        return ""
    arr = np.ascontiguousarray(arr)
    h = hashlib.blake2b(digest_size=16)
    h.update(str((arr.dtype.str, arr.shape)).encode())
    h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


def _pyfai_method_split(split: str) -> str:
    return "full" if split == "pseudo" else split


def build_sparse(geometry, shape, *, npt: int, unit: str, radial_range=None, sectors=None,
                 split: str = "bbox", mask=None, correct_solid_angle: bool = True,
                 polarization_factor: float | None = None, flat=None) -> SparseIntegrator:
    """Build pyFAI's CSR matrix for this integration and fold the static corrections in.

    Parameters mirror :func:`xrdflow.integrate.integrate`; ``mask`` (non-zero = masked) and
    ``flat`` are in the orientation pyFAI sees (for ``flipud``: flipped), as in
    ``integrate``; ``sectors`` is the list made by ``integrate._normalize_sectors`` (or
    None); ``radial_range`` is in ``unit``.
    """
    import copy

    from pyFAI import units

    if split not in SPLITS:
        raise ValueError(f"split: the fused engine covers {SPLITS}, got {split!r}")
    shape = tuple(int(s) for s in shape)
    u = units.to_unit(unit)
    pos0 = None if radial_range is None else tuple(float(r) / u.scale for r in radial_range)
    ai = geometry.to_pyfai()
    if mask is None:
        mask = ai.detector.mask
        if mask is not None and tuple(mask.shape) != shape:
            mask = None
    if mask is not None:
        mask = np.ascontiguousarray(mask, dtype=np.int8)
    ai_zero = None
    parts = []
    radial = None
    empty = 0.0
    for sec in (sectors or [None]):
        target = ai
        pos1 = None
        if sec is not None:
            if not sec["disc_at_pi"]:
                if ai_zero is None:
                    ai_zero = copy.copy(ai)
                    ai_zero.setChiDiscAtZero()
                target = ai_zero
            pos1 = target.normalize_azimuth_range((sec["lo"], sec["hi"]))
        eng = target.setup_sparse_integrator(shape, npt, mask=mask, pos0_range=pos0, pos1_range=pos1,
                                             unit=u, split=_pyfai_method_split(split), algo="CSR",
                                             empty=None, scale=False)
        data, indices, indptr = eng.lut
        parts.append((np.asarray(data, np.float32), np.asarray(indices), np.asarray(indptr)))
        empty = float(eng.empty)
        if radial is None:
            radial = np.asarray(eng.bin_centers, np.float64) * u.scale
    nnz = sum(p[1].shape[0] for p in parts)
    coef = np.concatenate([p[0] for p in parts])
    indices = np.concatenate([p[1] for p in parts]).astype(np.int64)
    indptr = np.zeros(len(parts) * npt + 1, np.int64)
    off = 0
    for k, (_, ind, ptr) in enumerate(parts):
        indptr[k * npt + 1:(k + 1) * npt + 1] = np.asarray(ptr[1:], np.int64) + off
        off += ind.shape[0]
    # pixel weights exactly as pyFAI's preproc computes its normalisation (float32 products)
    w = np.ones(shape, np.float32)
    if correct_solid_angle:
        w = w * np.asarray(ai.solidAngleArray(shape, True), np.float32)
    if polarization_factor is not None:
        w = w * np.asarray(ai.polarization(shape, float(polarization_factor)), np.float32)
    if flat is not None:
        w = w * np.asarray(flat, np.float32)
    w = np.ascontiguousarray(w, np.float32)
    flip = geometry.orientation == "flipud"
    if flip:  # pyFAI index (r, c) of the flipped image = (H-1-r, c) of the frame as read
        h, wd = shape
        indices = (h - 1 - indices // wd) * wd + indices % wd
        w = np.ascontiguousarray(np.flipud(w))
    pixw = w.ravel()
    npix = pixw.shape[0]
    K, active, ebins, ecoef, opix, obin, ocoef = _to_ell(indptr, indices, coef, npix)
    del indices, coef, indptr, parts
    norm, count = _norm_count(K, active, ebins, ecoef if ecoef.shape[0] else None, opix, obin, ocoef,
                              pixw, len(sectors or [None]) * npt)
    arrays = (ebins, ecoef, opix, obin, ocoef, pixw, norm, count, radial) + ((active,) if active is not None else ())
    for a in arrays:
        a.setflags(write=False)
    desc = (f"{split} split, {len(sectors or [None])} sector(s) x {npt} bins, nnz {nnz}, K {K}, "
            f"overflow {opix.shape[0]}, "
            f"{'all pixels' if active is None else f'{active.shape[0]} active pixels'}, "
            f"{'flipud' if flip else 'as read'}")
    return SparseIntegrator(K=K, ebins=ebins, ecoef=ecoef, opix=opix, obin=obin, ocoef=ocoef, pixw=pixw,
                            norm=norm, count=count, radial=radial, shape=shape,
                            nsectors=len(sectors or [None]), empty=empty, nnz=nnz, description=desc,
                            active=active)


# --------------------------------------------------------------------------- per-process cache
_cache: "OrderedDict[Any, SparseIntegrator]" = OrderedDict()
_cache_lock = threading.Lock()
_key_locks: dict[Any, threading.Lock] = {}
_stats = {"builds": 0, "pid": os.getpid()}


def _cache_limit_bytes() -> int:
    return int(float(os.environ.get("XRDFLOW_ENGINE_CACHE_MB", "3072")) * 2**20)


def _check_pid() -> None:
    if _stats["pid"] != os.getpid():  # forked: start afresh (locks may be held by dead threads)
        global _cache_lock
        _cache.clear()
        _key_locks.clear()
        _cache_lock = threading.Lock()
        _stats.update(builds=0, pid=os.getpid())


def get_sparse(key, build) -> SparseIntegrator:
    """This process's SparseIntegrator for ``key`` (hashable), built once by ``build()``.

    Threads asking for the same key while it is being built wait for that one build; the
    cache keeps the most recently used matrices within ``XRDFLOW_ENGINE_CACHE_MB``
    (default 3072 MB) and always at least the one just asked for.
    """
    _check_pid()
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
        lock = _key_locks.setdefault(key, threading.Lock())
    with lock:
        with _cache_lock:
            hit = _cache.get(key)
            if hit is not None:
                return hit
        sparse = build()
        with _cache_lock:
            _store(key, sparse)
            _stats["builds"] += 1
            _key_locks.pop(key, None)
        return sparse


def _store(key, sparse: SparseIntegrator) -> None:
    """Put ``sparse`` in the cache (caller holds ``_cache_lock``), evicting the oldest beyond the limit."""
    _cache[key] = sparse
    limit = _cache_limit_bytes()
    while len(_cache) > 1 and sum(s.nbytes for s in _cache.values()) > limit:
        _cache.popitem(last=False)


def adopt_sparse(key, sparse: SparseIntegrator) -> bool:
    """Take a matrix built in another process into this one's cache; False if already held."""
    _check_pid()
    for a in (sparse.ebins, sparse.ecoef, sparse.opix, sparse.obin, sparse.ocoef, sparse.pixw,
              sparse.norm, sparse.count, sparse.radial) + ((sparse.active,) if sparse.active is not None else ()):
        a.setflags(write=False)  # shared read-only by this process's threads, as if built here
    with _cache_lock:
        if key in _cache:
            return False
        _store(key, sparse)
        return True


def share_with_workers(client, latest: int | None = 1) -> int:
    """Send the matrices this process used last (``latest`` of them; None: all it holds) to
    the worker processes of a dask.distributed ``client`` that do not hold them yet; returns
    how many workers took one.

    ``integrate`` builds the matrix in the client (its radial axis labels the result);
    shipping it once per worker process (a one-off transfer, ~72 MB for bbox at 2048^2)
    spares every worker its own build (4 s of pyFAI and layout work, and its transient
    memory). Workers that join later, or miss it, still build their own on first use.
    Never part of a task graph.
    """
    _check_pid()
    with _cache_lock:  # most recently used last: the matrix integrate() just asked for
        items = list(_cache.items())
    if latest is not None:
        items = items[len(items) - min(int(latest), len(items)):]
    taken = 0
    for key, sparse in items:
        result = client.run(adopt_sparse, key, sparse)
        taken += sum(bool(v) for v in result.values())
    return taken


def engine_cache_info() -> dict[str, Any]:
    """Matrices held by this process: count, total bytes, builds so far, limit, descriptions."""
    _check_pid()
    with _cache_lock:
        return {"entries": len(_cache), "nbytes": sum(s.nbytes for s in _cache.values()),
                "builds": _stats["builds"], "limit_bytes": _cache_limit_bytes(),
                "matrices": [s.description for s in _cache.values()]}


def clear_engine_cache() -> None:
    """Drop this process's matrices."""
    with _cache_lock:
        _cache.clear()


# --------------------------------------------------------------------------- apply
#: frames integrated per pass over the matrix (None: by the number of bins, at most 8)
DEFAULT_BATCH = None


def integrate_frames(sparse: SparseIntegrator, frames, *, mode: int = MODE_NEGATIVE, dummy=None,
                     delta_dummy=None, dark=None, errors: bool = False, threads: int = 1,
                     batch: int | None = DEFAULT_BATCH, out=None):
    """Integrate frames ``(n, y, x)`` (any numeric dtype, read as is) with ``sparse``.

    Parameters
    ----------
    sparse : SparseIntegrator
    frames : ndarray (n, y, x) or (y, x)
        Raw frames in the detector's dtype, as read (not flipped). Never converted or copied
        when C-contiguous.
    mode : int
        Invalid pixels: ``MODE_NEGATIVE`` (negative or non-finite: xrdflow's
        ``mask_negative``), ``MODE_DUMMY`` (pyFAI's test ``|float32(x) - dummy| <=
        delta_dummy``, ``==`` when delta_dummy is 0, and non-finite) or ``MODE_FINITE``
        (non-finite only).
    dark : ndarray (y, x), optional
        Subtracted from every valid pixel (orientation as read).
    errors : bool
        Also return the Poisson error of each bin, ``sqrt(sum c^2 max(x, 1)) / sum c w``
        (pyFAI's ``error_model="poisson"`` without dark).
    threads : int
        Threads for one big eager call (the kernels release the GIL; batches of frames go to
        a thread pool). Keep 1 inside dask tasks. Results are bit-identical whatever the
        number of threads.
    batch : int, optional
        Frames per pass over the matrix (read once per batch); results do not depend on it.
    out : (ndarray, ndarray or None), optional
        float32 (n, nbins) arrays to fill.

    Returns
    -------
    intensity : ndarray (n, nsectors * npt) float32
    errors : ndarray like intensity, or None
    """
    frames = np.asarray(frames)
    if frames.ndim == 2:
        frames = frames[None]
    if frames.ndim != 3 or tuple(frames.shape[1:]) != tuple(sparse.shape):
        raise ValueError(f"frames: expected (n,) + {tuple(sparse.shape)}, got {frames.shape}")
    if frames.dtype.kind not in "biuf":
        raise ValueError(f"frames: expected a numeric dtype, got {frames.dtype}")
    if frames.dtype.kind == "b":
        frames = frames.view(np.uint8)
    if frames.dtype.byteorder not in "=|":
        frames = frames.astype(frames.dtype.newbyteorder("="))
    n = frames.shape[0]
    flat = np.ascontiguousarray(frames).reshape(n, -1)
    if mode not in (MODE_FINITE, MODE_NEGATIVE, MODE_DUMMY):
        raise ValueError(f"mode: expected MODE_FINITE, MODE_NEGATIVE or MODE_DUMMY, got {mode!r}")
    if mode == MODE_DUMMY:
        if dummy is None:
            raise ValueError("dummy: required with MODE_DUMMY")
        dval = np.float32(dummy)
        ddval = np.float32(0.0 if delta_dummy is None else delta_dummy)
    else:
        dval = np.float32(0.0)
        ddval = np.float32(0.0)
    dark_flat = None
    if dark is not None:
        dark = np.asarray(dark)
        if tuple(dark.shape) != tuple(sparse.shape):
            raise ValueError(f"dark: shape {dark.shape} does not match the frame shape {sparse.shape}")
        dark_flat = np.ascontiguousarray(dark, np.float32).ravel()
    nb = sparse.nbins
    if out is None:
        out_i = np.empty((n, nb), np.float32)
        out_e = np.empty((n, nb), np.float32) if errors else np.empty((n, 0), np.float32)
    else:
        out_i, out_e = out
        if out_e is None:
            out_e = np.empty((n, 0), np.float32)
    if n == 0:
        return out_i, (out_e if errors else None)
    bs = _batch_size(nb, batch)
    batches = _pow2_batches(n, bs)
    threads = max(1, min(int(threads), len(batches)))
    if threads == 1:
        _run_batches(flat, batches, sparse, dark_flat, int(mode), dval, ddval, bool(errors), out_i, out_e)
    else:
        from concurrent.futures import ThreadPoolExecutor

        groups = [batches[k::threads] for k in range(threads)]
        with ThreadPoolExecutor(threads) as pool:
            futs = [pool.submit(_run_batches, flat, g, sparse, dark_flat, int(mode), dval, ddval,
                                bool(errors), out_i, out_e) for g in groups]
            for fut in futs:
                fut.result()
    return out_i, (out_e if errors else None)
