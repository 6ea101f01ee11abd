"""pyFAI's sparse matrix for a geometry and method, converted to the fused engine's layout.

:func:`build_sparse` asks pyFAI for the CSR matrix and the per-pixel corrections and folds
them into a :class:`SparseIntegrator` (pixel-major ELL + overflow), built once per geometry.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numba
import numpy as np

from .fused import SPLITS, norm_count

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


def to_ell(indptr, indices, coef, npix: int, max_k: int = 8):
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
    K, active, ebins, ecoef, opix, obin, ocoef = to_ell(indptr, indices, coef, npix)
    del indices, coef, indptr, parts
    norm, count = norm_count(K, active, ebins, ecoef if ecoef.shape[0] else None, opix, obin, ocoef,
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
