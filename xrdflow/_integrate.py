"""Azimuthal integration of frame series, lazily over dask blocks.

Two engines, identical results (to float32 rounding):

* ``"xrdflow"`` (the default where it applies, see :func:`integrate`): pyFAI builds the
  sparse matrix of the method (geometry and pixel splitting); :mod:`xrdflow.engines` folds
  the static corrections into it once per process and applies it with a numba kernel that
  reads the frames in the detector's own dtype (no float copy, no preprocessing passes).
* ``"pyfai"``: ``integrate1d`` frame by frame, as described below.

``integrate`` maps one task per block of whole frames. A task receives the frames, the
(static) mask and a :class:`~xrdflow.geometry.Geometry` (a few floats); it takes this
thread's cached pyFAI integrator (:func:`xrdflow.engines.pyfai.cached_integrator`: one per thread
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

from .engines.pyfai import cached_integrator
from .geometry import Geometry
from .options import ALGORITHMS as _ALGOS
from .options import DEFAULT_METHOD, ENGINES, ERROR_MODELS, INTEGRATION_UNITS, ORIENTATIONS
from .options import IMPLEMENTATIONS as _IMPLS
from .options import PIXEL_SPLITS as _SPLITS
from .options import choice, number, optional_choice, positive_int, value_range
from .units import DEGREE, INTENSITY, RADIAL_UNITS, attrs

logger = logging.getLogger("xrdflow.integrate")  # public name, not the private module

__all__ = [
    "integrate",
    "sectors_around_axis",
    "load_mask",
    "load_image",
]

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


def load_mask(mask, shape, *, flip: bool):
    """A static mask (array or fabio-readable file, non-zero = masked) -> contiguous int8
    array of the frame shape, flipped up-down if ``flip``."""
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


def load_image(image, shape, name: str, dtype):
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


def _single_block(value):
    """The one block inside blockwise's nested lists (``[[block]]`` -> ``block``)."""
    while isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise ValueError(f"expected a single block along each frame axis, got {len(value)}")
        value = value[0]
    return value


def _integrate_block(block, mask=None, dark=None, flat=None, *, geometry: Geometry, spec, sectors, out_dtype):
    """Integrate a block of whole frames (n, y, x) -> (n, npt) or (n, nsectors, npt)
    (with a last axis (intensity, error) of size 2 when an error model is asked for),
    with the engine ``spec.engine`` names.

    Arrays may come wrapped in the nested lists of ``blockwise(concatenate=False)``, one
    block per contracted axis.
    """
    from .engines import matrix, pyfai

    block, mask, dark, flat = (_single_block(a) for a in (block, mask, dark, flat))
    engine = matrix if spec.engine == "xrdflow" else pyfai
    return engine.integrate_block(block, mask, dark, flat, geometry=geometry, spec=spec, sectors=sectors,
                                  out_dtype=out_dtype)


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
        Rechunk a numpy input to this many frames per chunk (default: about 32 MiB, as
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
        ``"xrdflow"``: the fused engine (:mod:`xrdflow.engines`): pyFAI's sparse matrix for
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
    import xarray as xr

    spec, sectors = _spec(geometry, npt=npt, unit=unit, radial_range=radial_range,
                          mask_orientation=mask_orientation, mask_negative=mask_negative,
                          azimuth_sectors=azimuth_sectors, method=method,
                          polarization_factor=polarization_factor, correct_solid_angle=correct_solid_angle,
                          error_model=error_model, engine=engine)
    data, frame_dim, coords_frame, in_attrs, single = _frames_as_dask(frames, geometry, frames_per_chunk)
    shape = tuple(int(s) for s in data.shape[1:])
    mask_arr, dark_arr, flat_arr = _static_arrays(geometry, shape, mask, mask_orientation, dark, flat)
    spec, radial, out_dtype = _radial_axis(geometry, shape, spec, sectors, mask_arr, flat_arr)
    result, errors_data = _graph(data, spec, geometry, sectors, out_dtype, mask_arr, dark_arr, flat_arr)
    dims = [frame_dim] + (["azimuth"] if sectors else []) + [RADIAL_UNITS[spec.unit].dim]
    coords = _coords(frames, frame_dim, coords_frame, spec, radial, sectors)
    if errors_data is not None:
        coords["I_errors"] = xr.Variable(dims, errors_data, {
            "units": INTENSITY, "long_name": f"{spec.error_model} error of the intensity"})
    attrs = _attrs(geometry, spec, in_attrs, mask_arr, dark_arr, flat_arr)
    out = xr.DataArray(result, dims=dims, coords=coords, attrs=attrs, name="intensity")
    if single:
        out = out.isel({frame_dim: 0}, drop=True)
    return out


def _spec(geometry, *, npt, unit, radial_range, mask_orientation, mask_negative, azimuth_sectors, method,
          polarization_factor, correct_solid_angle, error_model, engine):
    """Validate integrate()'s options eagerly -> (IntegrationSpec, sectors)."""
    from .engines import IntegrationSpec

    if not isinstance(geometry, Geometry):
        raise ValueError(f"geometry: expected an xrdflow Geometry, got {type(geometry).__name__}")
    npt = positive_int(npt, "npt")
    choice(unit, "unit", INTEGRATION_UNITS)
    if radial_range is not None:
        radial_range = value_range(radial_range, "radial_range")
    choice(mask_orientation, "mask_orientation", ORIENTATIONS)
    if polarization_factor is not None:
        polarization_factor = number(polarization_factor, "polarization_factor")
        if not -1.0 <= polarization_factor <= 1.0:
            raise ValueError(f"polarization_factor: must be in [-1, 1], got {polarization_factor}")
    method = _normalize_method(method)
    sectors = _normalize_sectors(azimuth_sectors)
    choice(engine, "engine", ENGINES)
    error_model = optional_choice(error_model, "error_model", ERROR_MODELS)
    fused_ok, why_not = _fused_covers(method)
    if engine == "xrdflow" and not fused_ok:
        raise ValueError(f"engine: the xrdflow engine does not cover this integration ({why_not}); "
                         "use engine='pyfai' or 'auto'")
    if engine == "auto":
        engine = "xrdflow" if fused_ok else "pyfai"
        if not fused_ok:
            logger.info("integrate: using pyFAI's integrate1d (engine='pyfai') because %s", why_not)
    spec = IntegrationSpec(npt=npt, unit=unit, radial_range=radial_range, method=method,
                           polarization_factor=polarization_factor,
                           correct_solid_angle=bool(correct_solid_angle), mask_negative=bool(mask_negative),
                           error_model=error_model, engine=engine)
    return spec, sectors


def _frames_as_dask(frames, geometry, frames_per_chunk):
    """frames (DataArray, dask or numpy; (frame, y, x) or (y, x)) -> dask (frame, y, x) with
    whole frames per chunk, and the frame labels -> (data, frame_dim, frame coords, attrs, single)."""
    import dask.array as da
    import xarray as xr

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
    if frames_per_chunk is not None:
        frames_per_chunk = positive_int(frames_per_chunk, "frames_per_chunk")
    if not isinstance(data, da.Array):
        data = np.asarray(data)
        if frames_per_chunk is None:
            from .nexus import frames_per_chunk_for

            frames_per_chunk = frames_per_chunk_for(data[0].nbytes)
        data = da.from_array(data, chunks=(frames_per_chunk, -1, -1))
    elif frames_per_chunk is not None:
        data = data.rechunk((frames_per_chunk, -1, -1))
    if len(data.chunks[1]) > 1 or len(data.chunks[2]) > 1:
        data = data.rechunk({1: -1, 2: -1})
    if data.dtype.kind not in "biuf":
        raise ValueError(f"frames: expected a numeric image dtype, got {data.dtype}")
    shape = tuple(int(s) for s in data.shape[1:])
    if geometry.max_shape is not None and tuple(geometry.max_shape) != shape:
        raise ValueError(
            f"frames: frame shape {shape} does not match the detector shape {geometry.max_shape}"
        )
    return data, frame_dim, coords_frame, in_attrs, single


def _static_arrays(geometry, shape, mask, mask_orientation, dark, flat):
    """The mask (with the detector's own), dark and flat as arrays of the frame shape."""
    flip = geometry.orientation == "flipud"
    mask_arr = load_mask(mask, shape, flip=(flip != (mask_orientation == "flipud")))
    # combine with the detector's own mask (pyFAI ignores it once a mask is passed)
    det_mask = cached_integrator(geometry).detector.mask
    if mask_arr is not None and det_mask is not None and det_mask.shape == shape:
        mask_arr = np.ascontiguousarray(mask_arr | (det_mask != 0), dtype=np.int8)
    return mask_arr, load_image(dark, shape, "dark", np.float32), load_image(flat, shape, "flat", np.float32)


def _radial_axis(geometry, shape, spec, sectors, mask_arr, flat_arr):
    """The radial bin centres and the output dtype -> (spec, radial, dtype).

    pyFAI gives them from one eager integration of an empty frame; the fused engine takes
    them from its matrix, built here once for this process. With sectors and no radial
    range, the range of the full ring is fixed so that every sector has the same bins.
    """
    from .engines import array_digest
    from .engines.matrix import process_sparse

    npt = spec.npt
    ai0 = cached_integrator(geometry)
    probe = None
    radial = None
    out_dtype = np.dtype(np.float32)
    if spec.engine != "xrdflow" or (sectors and spec.radial_range is None):
        probe = ai0.integrate1d(np.zeros(shape, np.float32), npt, radial_range=spec.radial_range,
                                mask=mask_arr, **spec.pyfai_kwargs())
        radial = np.asarray(probe.radial, dtype=np.float64)
        out_dtype = np.asarray(probe.intensity).dtype
    if probe is not None and sectors and spec.radial_range is None and npt > 1:
        step = (radial[-1] - radial[0]) / (npt - 1)
        spec = spec.replace(radial_range=(float(radial[0] - step / 2), float(radial[-1] + step / 2)))
        probe = ai0.integrate1d(np.zeros(shape, np.float32), npt, radial_range=spec.radial_range,
                                mask=mask_arr, **spec.pyfai_kwargs())
        radial = np.asarray(probe.radial, dtype=np.float64)
    if probe is not None:  # drop the probe's engine (pyFAI runs gc.collect: ~90 ms, so only then)
        ai0.reset_engines()
    if spec.engine == "xrdflow":
        spec = spec.replace(engine_key=(
            geometry, shape, npt, spec.unit, spec.radial_range,
            tuple(tuple(sorted(s.items())) for s in sectors) if sectors else None,
            spec.method[0], array_digest(mask_arr), spec.correct_solid_angle,
            spec.polarization_factor, array_digest(flat_arr)))
        # build (or reuse) this process's matrix now: it gives the radial axis, and tasks
        # running in this process (threaded scheduler) share it
        sparse = process_sparse(geometry, shape, spec, sectors, mask_arr, flat_arr)
        if probe is None:
            radial = np.asarray(sparse.radial, dtype=np.float64)
    return spec, radial, out_dtype


def _graph(data, spec, geometry, sectors, out_dtype, mask_arr, dark_arr, flat_arr):
    """One blockwise task per block of frames -> (intensities, errors or None), lazy."""
    import dask.array as da

    extra = "e" if spec.error_model else ""
    if sectors:
        new_axes = {"s": len(sectors), "q": spec.npt}
        out_ind = "fsq" + extra
    else:
        new_axes = {"q": spec.npt}
        out_ind = "fq" + extra
    if spec.error_model:
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
                          dtype=out_dtype, meta=meta, geometry=geometry, spec=spec, sectors=sectors,
                          out_dtype=out_dtype)
    if spec.error_model:
        return result[..., 0], result[..., 1]
    return result, None


def _coords(frames, frame_dim, coords_frame, spec, radial, sectors) -> dict[str, Any]:
    """Radial axis, the frames' own coords and the sectors' labels."""
    import xarray as xr

    ru = RADIAL_UNITS[spec.unit]
    coords: dict[str, Any] = {ru.dim: xr.Variable((ru.dim,), radial, attrs(ru.long_name, ru.units))}
    if isinstance(frames, xr.DataArray) and frames.ndim == 3 and frame_dim in frames.coords:
        coords[frame_dim] = frames.coords[frame_dim].variable
    coords.update(coords_frame)
    if sectors:
        def per_sector(key, long_name, units=DEGREE, dtype=None):
            return xr.Variable(("azimuth",), np.array([s[key] for s in sectors], dtype=dtype),
                               attrs(long_name, units))

        coords["azimuth"] = per_sector("center", "azimuth chi (sector centre, pyFAI convention)")
        coords["sector"] = per_sector("name", "azimuthal sector", None, object)
        coords["sector_half_width"] = per_sector("half_width", "sector half width")
        coords["azimuth_min"] = per_sector("lo", "sector lower chi limit")
        coords["azimuth_max"] = per_sector("hi", "sector upper chi limit")
    return coords


def _attrs(geometry, spec, in_attrs, mask_arr, dark_arr, flat_arr) -> dict[str, Any]:
    """Units and provenance of the patterns: the geometry and every option."""
    out = {
        "long_name": "intensity",
        "units": INTENSITY,
        "radial_unit": spec.unit,
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
        "method": ",".join(spec.method),
        "npt": spec.npt,
        "correct_solid_angle": int(spec.correct_solid_angle),
        "polarization_applied": int(spec.polarization_factor is not None),
        "mask_negative": int(spec.mask_negative),
        "masked_pixels": int(mask_arr.sum()) if mask_arr is not None else 0,
        "integrator": "pyFAI",
        "engine": spec.engine,
    }
    if dark_arr is not None:
        out["dark_subtracted"] = 1
    if flat_arr is not None:
        out["flat_applied"] = 1
    if spec.error_model:
        out["error_model"] = spec.error_model
    if spec.polarization_factor is not None:
        out["polarization_factor"] = spec.polarization_factor
    if spec.radial_range is not None:
        out["radial_range"] = json.dumps(list(spec.radial_range))
    for key in ("source", "title"):
        if key in in_attrs and isinstance(in_attrs[key], str):
            out[key] = in_attrs[key]
    return out
