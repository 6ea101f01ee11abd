"""Azimuthal integration of frame series, lazily over dask blocks.

Two engines, identical results (to float32 rounding):

* ``"xrdflow"`` (the default where it applies, see :func:`integrate`): pyFAI builds the
  sparse matrix of the method (geometry and pixel splitting); :mod:`xrdflow._engine` folds
  the static corrections into it once per process and applies it with a numba kernel that
  reads the frames in the detector's own dtype (no float copy, no preprocessing passes).
* ``"pyfai"``: ``integrate1d`` frame by frame, as described below.

``integrate`` maps one task per block of whole frames. A task receives the frames, the
(static) mask and a :class:`~xrdflow.geometry.Geometry` (a few floats); it takes this
thread's cached pyFAI integrator (:func:`xrdflow.geometry.cached_integrator`: one per thread
and per process, built once, never shipped in the graph, never shared between threads:
pyFAI's CSR engines keep a per-engine scratch buffer) and calls ``integrate1d`` on every
frame, exactly as a user would frame by frame.

``write_patterns``/``open_patterns`` store the result as an NXazint1d (or NXazint2d for
azimuthal sectors) application definition and read it back into the same DataArray.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .geometry import Geometry, cached_integrator

logger = logging.getLogger("xrdflow.integrate")  # public name, not the private module

__all__ = [
    "integrate",
    "ENGINES",
    "sectors_around_axis",
    "DEFAULT_METHOD",
    "RADIAL_UNITS",
]

#: pyFAI method used unless told otherwise: bounding-box pixel splitting, CSR sparse
#: matrix, Cython implementation (pyFAI's usual choice for fast repeated integration).
DEFAULT_METHOD = ("bbox", "csr", "cython")

#: pyFAI radial unit -> (dimension name, units, long_name, NeXus long_name)
RADIAL_UNITS = {
    "q_nm^-1": ("q", "1/nm", "scattering vector q", "q"),
    "q_A^-1": ("q", "1/A", "scattering vector q", "q"),
    "2th_deg": ("two_theta", "deg", "scattering angle 2theta", "2theta"),
    "2th_rad": ("two_theta", "rad", "scattering angle 2theta", "2theta"),
    "r_mm": ("r", "mm", "radius on the detector", "r"),
}

_SPLITS = {"no": "no", "nosplit": "no", "bbox": "bbox", "splitbbox": "bbox", "pseudo": "pseudo",
           "full": "full", "splitpixel": "full"}
_ALGOS = {"histogram": "histogram", "histo": "histogram", "lut": "lut", "csr": "csr", "csc": "csc"}
_IMPLS = {"python": "python", "numpy": "python", "cython": "cython", "opencl": "opencl", "ocl": "opencl"}

INTENSITY_UNITS = "arbitrary units"

#: engine names accepted by :func:`integrate`
ENGINES = ("auto", "xrdflow", "pyfai")

#: pyFAI sparse algorithms whose matrix the fused engine applies (LUT/CSC hold the same matrix)
_FUSED_ALGOS = ("csr", "lut", "csc")
_FUSED_IMPLS = ("cython", "python")


# --------------------------------------------------------------------------- validation
def _normalize_method(method) -> tuple[str, str, str]:
    """pyFAI method (tuple or name like ``"full_csr"``) -> canonical (split, algo, impl)."""
    if isinstance(method, str):
        tokens = [t for t in method.lower().replace("-", "_").split("_") if t]
        split, algo, impl = "bbox", "csr", "cython"
        if not tokens:
            raise ValueError(f"method: unknown pyFAI integration method {method!r}")
        for tok in tokens:
            if tok in _SPLITS:
                split = _SPLITS[tok]
            elif tok in _ALGOS:
                algo = _ALGOS[tok]
            elif tok in _IMPLS:
                impl = _IMPLS[tok]
            else:
                raise ValueError(f"method: unknown pyFAI integration method {method!r}")
        method = (split, algo, impl)
    try:
        split, algo, impl = (str(m).lower() for m in method)
    except (TypeError, ValueError):
        raise ValueError(
            f"method: expected a pyFAI (split, algo, impl) tuple such as {DEFAULT_METHOD}, got {method!r}"
        ) from None
    if split not in _SPLITS or algo not in _ALGOS or impl not in _IMPLS:
        raise ValueError(f"method: unknown pyFAI integration method {method!r}")
    canon = (_SPLITS[split], _ALGOS[algo], _IMPLS[impl])
    import pyFAI.integrator.azimuthal  # noqa: F401  (registers the integration engines)
    from pyFAI.method_registry import IntegrationMethod

    if not IntegrationMethod.select_method(dim=1, split=canon[0], algo=canon[1], impl=canon[2],
                                           degradable=False):
        raise ValueError(f"method: pyFAI has no available 1D method {canon}")
    return canon


def _normalize_sectors(azimuth_sectors) -> list[dict[str, Any]] | None:
    """-> list of dict(name, center, half_width, lo, hi, disc_at_pi)."""
    if azimuth_sectors is None:
        return None
    out = []
    if isinstance(azimuth_sectors, (int, np.integer)) and not isinstance(azimuth_sectors, bool):
        n = int(azimuth_sectors)
        if n < 1 or n > 3600:
            raise ValueError(f"azimuth_sectors: number of sectors must be 1..3600, got {n}")
        width = 360.0 / n
        for i in range(n):
            lo = -180.0 + i * width
            hi = -180.0 + (i + 1) * width if i < n - 1 else 180.0
            out.append(dict(name=f"{lo:g}..{hi:g}", center=(lo + hi) / 2, half_width=width / 2,
                            lo=lo, hi=hi, disc_at_pi=True))
        return out
    if not isinstance(azimuth_sectors, Mapping) or not azimuth_sectors:
        raise ValueError(
            "azimuth_sectors: expected None, a number of equal sectors, or a mapping "
            "name -> (center_deg, half_width_deg)"
        )
    for name, spec in azimuth_sectors.items():
        try:
            center, half = (float(v) for v in spec)
        except (TypeError, ValueError):
            raise ValueError(
                f"azimuth_sectors[{name!r}]: expected (center_deg, half_width_deg), got {spec!r}"
            ) from None
        if not (0 < half <= 90) or not math.isfinite(center):
            raise ValueError(
                f"azimuth_sectors[{name!r}]: half width must be in (0, 90] deg, got {half}"
            )
        center = (center + 180.0) % 360.0 - 180.0  # pyFAI chi convention [-180, 180)
        lo, hi = center - half, center + half
        if lo >= -180.0 and hi <= 180.0:
            out.append(dict(name=str(name), center=center, half_width=half, lo=lo, hi=hi, disc_at_pi=True))
        else:  # crosses the +-180 discontinuity: integrate with chi in [0, 360)
            lo = lo % 360.0
            out.append(dict(name=str(name), center=center, half_width=half, lo=lo, hi=lo + 2 * half,
                            disc_at_pi=False))
    return out


def sectors_around_axis(axis_deg: float = 0.0, half_width_deg: float = 10.0) -> dict[str, tuple[float, float]]:
    """Named sectors ``axial`` (around the load axis) and ``transverse`` (90 deg away).

    ``axis_deg`` is the direction of the load axis on the detector as a pyFAI azimuth chi
    (degrees); use the result as ``azimuth_sectors`` of :func:`integrate`.

    Examples
    --------
    >>> sectors_around_axis(90.0, 10.0)
    {'axial': (90.0, 10.0), 'transverse': (180.0, 10.0)}
    """
    return {"axial": (float(axis_deg), float(half_width_deg)),
            "transverse": (float(axis_deg) + 90.0, float(half_width_deg))}


def _load_mask(mask, shape, *, flip: bool):
    if mask is None:
        return None
    if isinstance(mask, (str, os.PathLike)):
        path = Path(mask)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: mask file not found")
        import fabio

        try:
            arr = fabio.open(str(path)).data
        except Exception as exc:
            raise ValueError(f"{path}: not a readable mask image ({exc})") from None
    else:
        arr = mask
        if hasattr(arr, "values") and hasattr(arr, "dims"):
            arr = arr.values
        arr = np.asarray(arr)
    if arr.shape != tuple(shape):
        raise ValueError(f"mask: shape {arr.shape} does not match the frame shape {tuple(shape)}")
    arr = arr != 0
    if flip:
        arr = np.flipud(arr)
    return np.ascontiguousarray(arr, dtype=np.int8)


def _load_image(image, shape, name: str, dtype):
    """dark/flat: None, an array or a fabio-readable file -> contiguous ``dtype`` array."""
    if image is None:
        return None
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: {name} file not found")
        import fabio

        try:
            image = fabio.open(str(path)).data
        except Exception as exc:
            raise ValueError(f"{path}: not a readable {name} image ({exc})") from None
    if hasattr(image, "values") and hasattr(image, "dims"):
        image = image.values
    arr = np.asarray(image)
    if arr.shape != tuple(shape):
        raise ValueError(f"{name}: shape {arr.shape} does not match the frame shape {tuple(shape)}")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name}: expected a numeric image, got {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=dtype)


def _fused_covers(method) -> tuple[bool, str]:
    """Whether the fused engine reproduces pyFAI for this method -> (ok, reason if not)."""
    split, algo, impl = method
    if algo not in _FUSED_ALGOS:
        return False, (f"method {method}: the fused engine applies pyFAI's sparse matrices "
                       f"({'/'.join(_FUSED_ALGOS)}); '{algo}' is pyFAI's own engine")
    if impl not in _FUSED_IMPLS:
        return False, f"method {method}: implementation '{impl}' (GPU) is left to pyFAI"
    return True, ""


# --------------------------------------------------------------------------- kernel
def _pyfai_kwargs(opts: dict[str, Any]) -> dict[str, Any]:
    return dict(
        unit=opts["unit"],
        method=opts["method"],
        correctSolidAngle=opts["correct_solid_angle"],
        polarization_factor=opts["polarization_factor"],
    )


def _sector_integrator(geometry: Geometry, sector: dict[str, Any] | None, shape, opts, mask):
    """This thread's integrator for one sector (variants share the base's geometry arrays)."""
    if sector is None:
        return cached_integrator(geometry)
    base = cached_integrator(geometry)
    warm_key = (shape, opts["unit"], opts["method"])
    warmed = getattr(base, "_xrdflow_warmed", set())
    if warm_key not in warmed:
        # compute the geometry arrays once in the base so that every sector copy shares them
        base.integrate1d(np.zeros(shape, np.float32), opts["npt"], mask=mask, **_pyfai_kwargs(opts))
        base.reset_engines()
        warmed = set(warmed) | {warm_key}
        base._xrdflow_warmed = warmed
    variant = ("sector", sector["lo"], sector["hi"], sector["disc_at_pi"], warm_key)
    ai = cached_integrator(geometry, variant)
    if not sector["disc_at_pi"] and ai.chiDiscAtPi:
        ai.setChiDiscAtZero()
    return ai


def _token(value):
    """Hashable stand-in for an integrate1d argument (arrays by identity: they are cached)."""
    if isinstance(value, np.ndarray):
        return ("array", id(value), value.shape)
    return repr(value)


def _integrate_frame(ai, img, opts, mask, azimuth_range, dark=None, flat=None):
    kwargs = _pyfai_kwargs(opts)
    if opts["mask_negative"] and img.dtype.kind in "if":
        img = np.where(img < 0, img.dtype.type(-1), img)
        kwargs.update(dummy=-1.0, delta_dummy=0.0)
    if opts.get("error_model"):
        kwargs["error_model"] = opts["error_model"]
    call = dict(radial_range=opts["radial_range"], azimuth_range=azimuth_range, mask=mask, dark=dark,
                flat=flat, **kwargs)
    # The first call on an integrator builds its arrays and engine, evaluating pyFAI's unit
    # equations, which must not run in two threads at once (_threads.PYFAI_LOCK); later
    # calls reuse the engine and run in parallel.
    warm = ai.__dict__.setdefault("_xrdflow_warm", set())
    key = (opts["npt"],) + tuple(sorted((k, _token(v)) for k, v in call.items()))
    if key in warm:
        return ai.integrate1d(img, opts["npt"], **call)
    from ._threads import PYFAI_LOCK

    with PYFAI_LOCK:
        res = ai.integrate1d(img, opts["npt"], **call)
    warm.add(key)
    return res


def _invalid_test(geometry: Geometry, dtype, mask_negative: bool):
    """The fused engine's invalid-pixel test reproducing what the pyFAI path does for ``dtype``:
    negative pixels (``mask_negative`` on signed/float frames: pyFAI's dummy=-1 after clamping),
    else the detector's own dummy/delta_dummy if it has one (e.g. Pilatus: -2 +- 1.5), else
    non-finite values only. -> (mode, dummy, delta_dummy)"""
    from . import _engine

    dtype = np.dtype(dtype)
    if mask_negative and dtype.kind in "if":
        return _engine.MODE_NEGATIVE, None, None
    dummy, delta = cached_integrator(geometry).detector.get_dummies(dtype)
    if dummy is None:
        return _engine.MODE_FINITE, None, None
    return _engine.MODE_DUMMY, float(dummy), (None if delta is None else float(delta))


def _fused_sparse(geometry: Geometry, shape, opts, sectors, mask, flat):
    """This process's matrix for the integration described by ``opts`` (built once)."""
    from . import _engine

    key = opts["engine_key"]
    if flat is not None and geometry.orientation == "flipud":
        flat = np.flipud(flat)  # build_sparse wants pyFAI's orientation (like the mask)

    def build():
        from ._threads import PYFAI_LOCK

        with PYFAI_LOCK:  # pyFAI's unit equations must not run in two threads at once
            return _engine.build_sparse(
                geometry, shape, npt=opts["npt"], unit=opts["unit"], radial_range=opts["radial_range"],
                sectors=sectors, split=opts["method"][0], mask=mask,
                correct_solid_angle=opts["correct_solid_angle"],
                polarization_factor=opts["polarization_factor"], flat=flat)

    return _engine.get_sparse(key, build)


def _integrate_block_fused(block, mask, dark, flat, *, geometry, opts, sectors, out_dtype):
    from . import _engine

    block = np.asarray(block)
    n = block.shape[0]
    npt = opts["npt"]
    nsec = len(sectors) if sectors else None
    sparse = _fused_sparse(geometry, block.shape[1:], opts, sectors, mask, flat)
    mode, dummy, delta = _invalid_test(geometry, block.dtype, opts["mask_negative"])
    errors = bool(opts.get("error_model"))
    inten, err = _engine.integrate_frames(sparse, block, mode=mode, dummy=dummy, delta_dummy=delta,
                                          dark=dark, errors=errors)
    shape = (n, nsec, npt) if nsec else (n, npt)
    if errors:
        out = np.empty(shape + (2,), dtype=out_dtype)
        out[..., 0] = inten.reshape(shape)
        out[..., 1] = err.reshape(shape)
        return out
    return inten.reshape(shape).astype(out_dtype, copy=False)


def _single_block(value):
    """The one block inside blockwise's nested lists (``[[block]]`` -> ``block``)."""
    while isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise ValueError(f"expected a single block along each frame axis, got {len(value)}")
        value = value[0]
    return value


def _integrate_block(block, mask=None, dark=None, flat=None, *, geometry: Geometry, opts: dict[str, Any],
                     sectors, out_dtype):
    """Integrate a block of whole frames (n, y, x) -> (n, npt) or (n, nsectors, npt)
    (with a last axis (intensity, error) of size 2 when an error model is asked for).

    Arrays may come wrapped in the nested lists of ``blockwise(concatenate=False)``, one
    block per contracted axis.
    """
    block, mask, dark, flat = (_single_block(a) for a in (block, mask, dark, flat))
    if opts.get("engine") == "xrdflow":
        return _integrate_block_fused(block, mask, dark, flat, geometry=geometry, opts=opts,
                                      sectors=sectors, out_dtype=out_dtype)
    block = np.asarray(block)
    n = block.shape[0]
    npt = opts["npt"]
    nsec = len(sectors) if sectors else None
    errors = bool(opts.get("error_model"))
    out = np.empty(((n, nsec, npt) if nsec else (n, npt)) + ((2,) if errors else ()), dtype=out_dtype)
    shape = block.shape[1:]
    flip = geometry.orientation == "flipud"
    if flip:  # dark and flat come as read; pyFAI sees the flipped image
        dark = None if dark is None else np.flipud(dark)
        flat = None if flat is None else np.flipud(flat)
    # One level of parallelism: dask runs blocks in parallel, so pyFAI's own OpenMP loops run
    # on one thread here (two levels oversubscribe the cores; same results either way).
    from ._threads import openmp_single_thread

    with openmp_single_thread():
        for i in range(n):
            img = np.flipud(block[i]) if flip else block[i]
            if nsec:
                for j, sec in enumerate(sectors):
                    ai = _sector_integrator(geometry, sec, shape, opts, mask)
                    res = _integrate_frame(ai, img, opts, mask, (sec["lo"], sec["hi"]), dark, flat)
                    if errors:
                        out[i, j, :, 0] = res.intensity
                        out[i, j, :, 1] = res.sigma
                    else:
                        out[i, j] = res.intensity
            else:
                ai = cached_integrator(geometry)
                res = _integrate_frame(ai, img, opts, mask, None, dark, flat)
                if errors:
                    out[i, :, 0] = res.intensity
                    out[i, :, 1] = res.sigma
                else:
                    out[i] = res.intensity
    return out


# --------------------------------------------------------------------------- public
def integrate(
    frames,
    geometry: Geometry,
    *,
    npt: int,
    unit: str = "q_nm^-1",
    radial_range: tuple[float, float] | None = None,
    mask=None,
    mask_orientation: str = "as_read",
    mask_negative: bool = True,
    azimuth_sectors=None,
    method=DEFAULT_METHOD,
    polarization_factor: float | None = None,
    correct_solid_angle: bool = True,
    frames_per_chunk: int | None = None,
    dark=None,
    flat=None,
    error_model: str | None = None,
    engine: str = "auto",
):
    """Azimuthally integrate frames into 1D patterns, lazily (one dask task per block).

    Parameters
    ----------
    frames : xarray.DataArray, dask or numpy array
        ``(frame, y, x)`` frames as fabio reads them (not flipped), or a single ``(y, x)``
        image. Non-dimension coordinates on ``frame`` (applied_strain, time...) are carried
        to the output. Chunks must hold whole frames (they are rechunked if not).
    geometry : Geometry
        Geometry; ``geometry.orientation == "flipud"`` flips every frame (and the mask)
        up-down inside the task before integrating.
    npt : int
        Number of radial bins.
    unit : str
        pyFAI radial unit: ``"q_nm^-1"`` (default), ``"q_A^-1"``, ``"2th_deg"``,
        ``"2th_rad"`` or ``"r_mm"``.
    radial_range : (float, float), optional
        Radial range in ``unit``. With ``azimuth_sectors`` and no range, the full-image
        range is used for every sector so that all sectors share one radial axis.
    mask : array or path, optional
        Static mask (non-zero = masked), an array or a fabio-readable file (e.g. a Dioptas
        ``.mask``), combined with the detector's own mask.
    mask_orientation : {"as_read", "flipud"}
        Orientation of ``mask``: ``"as_read"`` (default) like the frames, or ``"flipud"``
        when the mask is already flipped (Dioptas masks go with Dioptas PONIs).
    mask_negative : bool
        Mask negative pixels of every frame (detector gaps and bad pixels, e.g. Pilatus -1
        and -2); implemented with pyFAI's ``dummy=-1, delta_dummy=0`` after clamping
        negative values to -1. Default True.
    azimuth_sectors : int or mapping, optional
        None: integrate the full ring, output ``(frame, q)``. An int N: N equal sectors over
        pyFAI's chi range [-180, 180) deg. A mapping name -> (center_deg, half_width_deg),
        e.g. :func:`sectors_around_axis`. Output ``(frame, azimuth, q)``.
    method : tuple or str
        pyFAI method ``(split, algo, impl)``, default ``("bbox", "csr", "cython")``, or a
        name such as ``"full_csr"``.
    polarization_factor : float, optional
        pyFAI polarization factor (-1..1, e.g. 0.99 for a horizontally polarized
        synchrotron beam). Default None: no polarization correction.
    correct_solid_angle : bool
        Solid-angle correction (pyFAI's default, True).
    frames_per_chunk : int, optional
        Rechunk a numpy input to this many frames per chunk (default: about 64 MiB, as
        :func:`xrdflow.open_frames`).
    dark : array, optional
        Dark image subtracted from every frame (orientation as read, like the frames).
    flat : array, optional
        Flat field (pyFAI's ``flat``: frames are divided by it), orientation as read.
    error_model : {None, "poisson"}
        ``"poisson"``: also compute pyFAI's Poisson error of every bin (``sigma`` of
        ``integrate1d(..., error_model="poisson")``), returned as the coordinate
        ``I_errors`` (same dims as the patterns, lazy, computed by the same tasks).
    engine : {"auto", "xrdflow", "pyfai"}
        ``"xrdflow"``: the fused engine (:mod:`xrdflow._engine`): pyFAI's sparse matrix for
        the method with the corrections folded in once per worker process, applied by a
        numba kernel to the frames in their own dtype; same results as pyFAI (to float32
        rounding) at several times the speed. It covers the sparse methods (``csr``,
        ``lut``, ``csc`` with any splitting) on the CPU. ``"pyfai"``: pyFAI's
        ``integrate1d`` frame by frame. ``"auto"`` (default): ``"xrdflow"`` where it
        applies, else ``"pyfai"`` with a note in the log (logger ``xrdflow.integrate``).

    Returns
    -------
    xarray.DataArray
        Lazy (dask-backed) ``(frame, q)`` or ``(frame, azimuth, q)`` float32 patterns named
        ``intensity``; the radial dimension is ``q``, ``two_theta`` or ``r`` by ``unit``.
        Attributes: ``radial_unit``, ``wavelength_a``, ``energy_kev``, ``units``, the
        geometry (``dist_m``, ``poni1_m``... and ``geometry`` as JSON), ``method``, the
        corrections and ``engine`` (the engine that runs: ``"xrdflow"`` or ``"pyfai"``).

    Examples
    --------
    >>> import numpy as np, xarray as xr, dask.array as da
    >>> from xrdflow.geometry import Geometry
    >>> g = Geometry(dist=0.2, poni1=0.01, poni2=0.01, wavelength=0.5e-10,
    ...              detector="Detector", pixel1=1e-4, pixel2=1e-4, max_shape=(200, 200))
    >>> frames = xr.DataArray(da.ones((4, 200, 200), chunks=(2, 200, 200)),
    ...                       dims=("frame", "y", "x"),
    ...                       coords={"applied_strain": ("frame", [0.0, 0.01, 0.02, 0.03])})
    >>> p = integrate(frames, g, npt=100)
    >>> p.dims, p.sizes["q"], p.attrs["radial_unit"]
    (('frame', 'q'), 100, 'q_nm^-1')
    >>> float(p.compute().isel(frame=0).mean().round(2))
    1.0
    """
    import dask.array as da
    import xarray as xr

    # ---- eager validation
    if not isinstance(geometry, Geometry):
        raise ValueError(f"geometry: expected an xrdflow Geometry, got {type(geometry).__name__}")
    if isinstance(npt, bool) or not isinstance(npt, (int, np.integer)) or npt < 1:
        raise ValueError(f"npt: number of radial bins must be a positive integer, got {npt!r}")
    npt = int(npt)
    if unit not in RADIAL_UNITS:
        raise ValueError(f"unit: expected one of {sorted(RADIAL_UNITS)}, got {unit!r}")
    if radial_range is not None:
        try:
            lo, hi = (float(v) for v in radial_range)
        except (TypeError, ValueError):
            raise ValueError(f"radial_range: expected (min, max), got {radial_range!r}") from None
        if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
            raise ValueError(f"radial_range: expected min < max, got {radial_range!r}")
        radial_range = (lo, hi)
    if mask_orientation not in ("as_read", "flipud"):
        raise ValueError(f"mask_orientation: expected 'as_read' or 'flipud', got {mask_orientation!r}")
    if polarization_factor is not None:
        polarization_factor = float(polarization_factor)
        if not -1.0 <= polarization_factor <= 1.0:
            raise ValueError(f"polarization_factor: must be in [-1, 1], got {polarization_factor}")
    method = _normalize_method(method)
    sectors = _normalize_sectors(azimuth_sectors)
    if engine not in ENGINES:
        raise ValueError(f"engine: expected one of {ENGINES}, got {engine!r}")
    if error_model is not None:
        if not isinstance(error_model, str) or error_model.lower() != "poisson":
            raise ValueError(f"error_model: expected None or 'poisson', got {error_model!r}")
        error_model = "poisson"
    fused_ok, why_not = _fused_covers(method)
    if engine == "xrdflow" and not fused_ok:
        raise ValueError(f"engine: the xrdflow engine does not cover this integration ({why_not}); "
                         "use engine='pyfai' or 'auto'")
    if engine == "auto":
        if fused_ok:
            engine = "xrdflow"
        else:
            engine = "pyfai"
            logger.info("integrate: using pyFAI's integrate1d (engine='pyfai') because %s", why_not)

    # ---- frames -> dask (frame, y, x) with whole frames per chunk
    coords_frame: dict[str, Any] = {}
    in_attrs: dict[str, Any] = {}
    frame_dim = "frame"
    if isinstance(frames, xr.DataArray):
        in_attrs = dict(frames.attrs)
        if frames.ndim == 3:
            frame_dim = frames.dims[0]
            for name, coord in frames.coords.items():
                if coord.dims == (frame_dim,):
                    coords_frame[name] = coord.variable
        data = frames.data
    else:
        data = frames
    single = getattr(data, "ndim", None) == 2
    if getattr(data, "ndim", None) not in (2, 3):
        raise ValueError(f"frames: expected (frame, y, x) or (y, x), got shape {getattr(data, 'shape', None)}")
    if single:
        data = data[None]
    if not isinstance(data, da.Array):
        data = np.asarray(data)
        if frames_per_chunk is None:
            from .nexus import frames_per_chunk_for

            frames_per_chunk = frames_per_chunk_for(data[0].nbytes)
        data = da.from_array(data, chunks=(int(frames_per_chunk), -1, -1))
    elif frames_per_chunk is not None:
        data = data.rechunk((int(frames_per_chunk), -1, -1))
    if len(data.chunks[1]) > 1 or len(data.chunks[2]) > 1:
        data = data.rechunk({1: -1, 2: -1})
    if data.dtype.kind not in "biuf":
        raise ValueError(f"frames: expected a numeric image dtype, got {data.dtype}")
    shape = tuple(int(s) for s in data.shape[1:])
    if geometry.max_shape is not None and tuple(geometry.max_shape) != shape:
        raise ValueError(
            f"frames: frame shape {shape} does not match the detector shape {geometry.max_shape}"
        )
    flip = geometry.orientation == "flipud"
    mask_arr = _load_mask(mask, shape, flip=(flip != (mask_orientation == "flipud")))
    # combine with the detector's own mask (pyFAI ignores it once a mask is passed)
    ai0 = cached_integrator(geometry)
    det_mask = ai0.detector.mask
    if mask_arr is not None and det_mask is not None and det_mask.shape == shape:
        mask_arr = np.ascontiguousarray(mask_arr | (det_mask != 0), dtype=np.int8)

    dark_arr = _load_image(dark, shape, "dark", np.float32)
    flat_arr = _load_image(flat, shape, "flat", np.float32)

    opts = dict(npt=npt, unit=unit, radial_range=radial_range, method=method,
                polarization_factor=polarization_factor,
                correct_solid_angle=bool(correct_solid_angle), mask_negative=bool(mask_negative),
                error_model=error_model, engine=engine)

    # ---- radial axis (and output dtype) from one eager integration of an empty frame
    # (the fused engine takes it from its matrix, built here once for this process)
    if engine == "xrdflow" and not (sectors and radial_range is None):
        probe = None
        out_dtype = np.dtype(np.float32)
    else:
        probe = ai0.integrate1d(np.zeros(shape, np.float32), npt, radial_range=radial_range,
                                mask=mask_arr, **_pyfai_kwargs(opts))
        radial = np.asarray(probe.radial, dtype=np.float64)
        out_dtype = np.asarray(probe.intensity).dtype
    if probe is not None and sectors and radial_range is None:
        step = (radial[-1] - radial[0]) / (npt - 1) if npt > 1 else 0.0
        if npt > 1:
            opts["radial_range"] = (float(radial[0] - step / 2), float(radial[-1] + step / 2))
            probe = ai0.integrate1d(np.zeros(shape, np.float32), npt, radial_range=opts["radial_range"],
                                    mask=mask_arr, **_pyfai_kwargs(opts))
            radial = np.asarray(probe.radial, dtype=np.float64)
    if probe is not None:  # drop the probe's engine (pyFAI runs gc.collect: ~90 ms, so only then)
        ai0.reset_engines()
    if engine == "xrdflow":
        from ._engine import array_digest

        opts["engine_key"] = (geometry, shape, npt, unit, opts["radial_range"],
                              tuple(tuple(sorted(s.items())) for s in sectors) if sectors else None,
                              method[0], array_digest(mask_arr), bool(correct_solid_angle),
                              polarization_factor, array_digest(flat_arr))
        # build (or reuse) this process's matrix now: it gives the radial axis, and tasks
        # running in this process (threaded scheduler) share it
        sparse = _fused_sparse(geometry, shape, opts, sectors, mask_arr, flat_arr)
        if probe is None:
            radial = np.asarray(sparse.radial, dtype=np.float64)

    # ---- graph
    kw = dict(geometry=geometry, opts=opts, sectors=sectors, out_dtype=out_dtype)
    extra = "e" if error_model else ""
    if sectors:
        new_axes = {"s": len(sectors), "q": npt}
        out_ind = "fsq" + extra
    else:
        new_axes = {"q": npt}
        out_ind = "fq" + extra
    if error_model:
        new_axes["e"] = 2
    meta = np.empty((0,) * len(out_ind), dtype=out_dtype)
    args: list[Any] = [data, "fyx"]
    for arr in (mask_arr, dark_arr, flat_arr):
        args += [None, None] if arr is None else [da.from_array(arr, chunks=-1, name=False), "yx"]
    # y and x are contracted (not in the output), and each has a single chunk (rechunked above):
    # concatenate=False hands the blocks over as they are, wrapped in lists, where
    # concatenate=True would copy every block (64 MB for 8 frames, a third of the time
    # of the fused engine without splitting) just to join one piece
    result = da.blockwise(_integrate_block, out_ind, *args, new_axes=new_axes, concatenate=False,
                          dtype=out_dtype, meta=meta, **kw)
    errors_data = None
    if error_model:
        result, errors_data = result[..., 0], result[..., 1]

    # ---- labels
    rdim, runits, rlong, _ = RADIAL_UNITS[unit]
    dims = [frame_dim] + (["azimuth"] if sectors else []) + [rdim]
    coords: dict[str, Any] = {rdim: xr.Variable((rdim,), radial, {"units": runits, "long_name": rlong})}
    if isinstance(frames, xr.DataArray) and frames.ndim == 3 and frame_dim in frames.coords:
        coords[frame_dim] = frames.coords[frame_dim].variable
    coords.update(coords_frame)
    if sectors:
        coords["azimuth"] = xr.Variable(
            ("azimuth",), np.array([s["center"] for s in sectors]),
            {"units": "deg", "long_name": "azimuth chi (sector centre, pyFAI convention)"})
        coords["sector"] = xr.Variable(("azimuth",), np.array([s["name"] for s in sectors], dtype=object),
                                       {"long_name": "azimuthal sector"})
        coords["sector_half_width"] = xr.Variable(
            ("azimuth",), np.array([s["half_width"] for s in sectors]),
            {"units": "deg", "long_name": "sector half width"})
        coords["azimuth_min"] = xr.Variable(("azimuth",), np.array([s["lo"] for s in sectors]),
                                            {"units": "deg", "long_name": "sector lower chi limit"})
        coords["azimuth_max"] = xr.Variable(("azimuth",), np.array([s["hi"] for s in sectors]),
                                            {"units": "deg", "long_name": "sector upper chi limit"})
    attrs = {
        "long_name": "intensity",
        "units": INTENSITY_UNITS,
        "radial_unit": unit,
        "wavelength_a": geometry.wavelength_a,
        "energy_kev": geometry.energy_kev,
        "dist_m": geometry.dist,
        "poni1_m": geometry.poni1,
        "poni2_m": geometry.poni2,
        "rot1_rad": geometry.rot1,
        "rot2_rad": geometry.rot2,
        "rot3_rad": geometry.rot3,
        "detector": geometry.detector,
        "pixel1_m": geometry.pixel1,
        "pixel2_m": geometry.pixel2,
        "orientation": geometry.orientation,
        "geometry": json.dumps(geometry.as_dict(), sort_keys=True),
        "method": ",".join(method),
        "npt": npt,
        "correct_solid_angle": int(bool(correct_solid_angle)),
        "polarization_applied": int(polarization_factor is not None),
        "mask_negative": int(bool(mask_negative)),
        "masked_pixels": int(mask_arr.sum()) if mask_arr is not None else 0,
        "integrator": "pyFAI",
        "engine": engine,
    }
    if dark_arr is not None:
        attrs["dark_subtracted"] = 1
    if flat_arr is not None:
        attrs["flat_applied"] = 1
    if error_model:
        attrs["error_model"] = error_model
    if polarization_factor is not None:
        attrs["polarization_factor"] = polarization_factor
    if opts["radial_range"] is not None:
        attrs["radial_range"] = json.dumps(list(opts["radial_range"]))
    for key in ("source", "title"):
        if key in in_attrs and isinstance(in_attrs[key], str):
            attrs[key] = in_attrs[key]
    if errors_data is not None:
        coords["I_errors"] = xr.Variable(dims, errors_data, {
            "units": INTENSITY_UNITS, "long_name": f"{error_model} error of the intensity"})
    out = xr.DataArray(result, dims=dims, coords=coords, attrs=attrs, name="intensity")
    if single:
        out = out.isel({frame_dim: 0}, drop=True)
    return out
