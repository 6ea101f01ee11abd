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

from typing import TYPE_CHECKING

import math

import numba
import numpy as np

if TYPE_CHECKING:
    from .sparse import SparseIntegrator

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


@numba.njit(cache=True, nogil=True)
def _accumulate(frames, f0, ff, kk, cc, active, ebins, ecoef, opix, obin, ocoef, pixw, dark, mm, dummy,
                ddummy, acc, vacc, badw, badcnt, vbuf, wbuf):
    """Sums of frames f0..f0+nf into acc/vacc (flat (NBANKS, nb, nf): the frames of a bin
    side by side); invalid pixels into badw/badcnt (flat (nf, nb)). vbuf, wbuf: (nf,) scratch.

    nf = len(ff), K = len(kk) and mode = len(mm) are compile-time constants (the tuple types
    carry them, so the loops over frames and over K unroll and the invalid test is chosen at
    compile time, with ordinary type dispatch); ecoef, dark and vacc may be None (branches
    pruned at compile time).

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
    # All frames of the batch per pixel: the matrix is read once per batch, not once per
    # frame (without splitting it is 3x the size of a uint16 frame), the frame loop is
    # unrolled (nf is a constant), and the nf sums of a bin are adjacent, so a pixel's
    # K * nf additions touch K cache lines instead of K * nf. 2048^2, no splitting, 2 cores:
    # 359 frames/s frame by frame, 411 batched, ~600 unrolled; bbox, one thread: 13-15 ms a
    # frame with a frame's sums apart, 7-8 ms side by side.
    for r in range(nrow):
        p = r if active is None else active[r]
        off = (p & 3) * nb
        ok = True
        for f in range(nf):
            raw = frames[f0 + f, p]
            ok &= _valid(raw, mode, dummy, ddummy)
            v = np.float64(raw)
            if dark is not None:
                v -= np.float64(dark[p])
            vbuf[f] = v
            if vacc is not None:
                wbuf[f] = max(np.float64(raw), 1.0)
        base = r * K
        if ok:  # the usual case: every frame's pixel valid
            for t in range(K):
                c = _coef(ecoef, base + t)
                row = (off + _bin(ebins, r, t, contig)) * nf
                for f in range(nf):
                    acc[row + f] += c * vbuf[f]
                if vacc is not None:
                    c2 = c * c
                    for f in range(nf):
                        vacc[row + f] += c2 * wbuf[f]
        else:
            for f in range(nf):
                if _valid(frames[f0 + f, p], mode, dummy, ddummy):
                    for t in range(K):
                        c = _coef(ecoef, base + t)
                        row = (off + _bin(ebins, r, t, contig)) * nf + f
                        acc[row] += c * vbuf[f]
                        if vacc is not None:
                            vacc[row] += c * c * wbuf[f]
                else:
                    _mark_bad(f, r, p, K, ebins, ecoef, pixw, nb, badw, badcnt)
    for j in range(opix.shape[0]):
        p = opix[j]
        c = np.float64(ocoef[j])
        row = ((p & 3) * nb + obin[j]) * nf
        for f in range(nf):
            raw = frames[f0 + f, p]
            if _valid(raw, mode, dummy, ddummy):
                v = np.float64(raw)
                if dark is not None:
                    v -= np.float64(dark[p])
                acc[row + f] += c * v
                if vacc is not None:
                    vacc[row + f] += c * c * max(np.float64(raw), 1.0)
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


@numba.njit(cache=True, nogil=True, inline="always")
def _banks(acc, nbx, nf, b, f):
    """Bin b of frame f: its four banks, combined in a fixed order."""
    return ((acc[b * nf + f] + acc[(nbx + b) * nf + f])
            + (acc[(2 * nbx + b) * nf + f] + acc[(3 * nbx + b) * nf + f]))


@numba.njit(cache=True, nogil=True)
def _finish(frames, f0, nf, K, active, ebins, ecoef, opix, obin, ocoef, pixw, norm, count, mode, dummy,
            ddummy, empty, acc, vacc, badw, badcnt, out_i, out_e):
    nb = norm.shape[0]
    nbx = badw.shape[0] // nf  # nb + K: the extra bins collect the padding
    for f in range(nf):
        exact = np.zeros(0, np.float64)
        for b in range(nb):
            s = _banks(acc, nbx, nf, b, f)
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
                    v = _banks(vacc, nbx, nf, b, f)
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


def _run_batches(frames, batches, s, dark, mode, dummy, ddummy, errors, out_i, out_e, largest=None):
    """Python driver for one thread: allocates the accumulators once, reuses them per batch.

    ``largest``: the largest pass a later call may make. The kernel is compiled per pass size
    (a compile-time constant), so all of them up to ``largest`` are made ready here, at the
    first call (compiled once per machine, then loaded from numba's cache): a call that meets
    a new pass size later does not stop for it (a 2048^2 call of 4-frame passes after a
    2-frame warm-up: about 1 s)."""
    nb = s.nbins + s.K  # + the padding bins
    nfmax = max(max(b[1] for b in batches), largest or 1)
    acc = np.empty(nfmax * NBANKS * nb, np.float64)
    vacc = np.empty(nfmax * NBANKS * nb, np.float64) if errors else None
    badw = np.empty(nfmax * nb, np.float64)
    badcnt = np.empty(nfmax * nb, np.int64)
    ecoef = s.ecoef if s.ecoef.shape[0] else None
    scratch = np.empty((2, nfmax), np.float64)

    def accumulate(f0, nf, ebins, opix):
        _accumulate(frames, f0, (0,) * nf, (0,) * s.K, (0,) * int(s.ebins.shape[1] == 1), s.active, ebins,
                    ecoef, opix, s.obin, s.ocoef, s.pixw, dark, (0,) * mode, dummy, ddummy,
                    acc[: nf * NBANKS * nb],
                    None if vacc is None else vacc[: nf * NBANKS * nb], badw[: nf * nb], badcnt[: nf * nb],
                    scratch[0, :nf], scratch[1, :nf])

    nf = 1
    while largest and nf <= largest:  # no rows: nothing is summed, the variant is made ready
        accumulate(0, nf, s.ebins[:0], s.opix[:0])
        nf *= 2
    for f0, nf in batches:
        acc[: nf * NBANKS * nb] = 0.0
        if vacc is not None:
            vacc[: nf * NBANKS * nb] = 0.0
        badw[: nf * nb] = 0.0
        badcnt[: nf * nb] = 0
        accumulate(f0, nf, s.ebins, s.opix)
        _finish(frames, f0, nf, s.K, s.active, s.ebins, ecoef, s.opix, s.obin, s.ocoef, s.pixw, s.norm,
                s.count, mode, dummy, ddummy, np.float64(s.empty), acc[: nf * NBANKS * nb],
                None if vacc is None else vacc[: nf * NBANKS * nb], badw[: nf * nb], badcnt[: nf * nb],
                out_i, out_e)


@numba.njit(cache=True, nogil=True)
def norm_count(K, active, ebins, ecoef, opix, obin, ocoef, pixw, nb):
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
        _run_batches(flat, batches, sparse, dark_flat, int(mode), dval, ddval, bool(errors), out_i, out_e,
                     largest=min(bs, 8))
    else:
        from concurrent.futures import ThreadPoolExecutor

        groups = [batches[k::threads] for k in range(threads)]
        with ThreadPoolExecutor(threads) as pool:
            futs = [pool.submit(_run_batches, flat, g, sparse, dark_flat, int(mode), dval, ddval,
                                bool(errors), out_i, out_e, min(bs, 8)) for g in groups]
            for fut in futs:
                fut.result()
    return out_i, (out_e if errors else None)
