"""Raw NeXus frames: the layout of ``raw.nxs`` and its lazy reader :func:`open_frames`."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ._codec import read_attrs

__all__ = ["open_frames", "DETECTOR_PATH", "FRAMES_CHUNK_BYTES", "frames_per_chunk_for"]

#: where the raw frames live in a raw NeXus file
DETECTOR_PATH = "/entry/instrument/detector/data"

# --------------------------------------------------------------------------- raw frames


#: default size of a dask chunk of frames. The fused integration engine reads its matrix once
#: per chunk (up to 8 frames a pass), so whole-run throughput grows with the chunk up to
#: 8 frames (no splitting at 2048^2 on 2 cores: 335 frames/s with 4 frames a chunk, 400 with 8)
FRAMES_CHUNK_BYTES = 64 << 20


def frames_per_chunk_for(frame_bytes: int) -> int:
    """Frames per dask chunk for frames of ``frame_bytes`` bytes (at least 1)."""
    return max(1, FRAMES_CHUNK_BYTES // max(1, int(frame_bytes)))


class _H5Frames:
    """Array-like view of a raw frame stack that reopens the file by path on each read.

    It holds only the path, dataset name, shape and dtype, so it pickles into a dask graph
    and works under the threaded scheduler and under dask.distributed alike.
    """

    def __init__(self, path: str, dataset: str, shape: tuple, dtype: np.dtype):
        self.path = path
        self.dataset = dataset
        self.shape = shape
        self.dtype = np.dtype(dtype)
        self.ndim = len(shape)

    def __getitem__(self, key):
        import hdf5plugin  # noqa: F401  registers the bitshuffle/LZ4 filters in this process

        with h5py.File(self.path, "r") as f:
            dset = f[self.dataset]
            frames = _whole_frames(key, self.shape)
            codec = _direct_codec(dset) if frames is not None else None
            if codec is None:
                return dset[key]
            return _read_frames_direct(dset, frames, codec)


def _whole_frames(key, shape) -> range | None:
    """The frames ``key`` selects if it selects whole frames with a unit step, else None."""
    key = key if isinstance(key, tuple) else (key,)
    if not key or len(key) > len(shape) or not all(isinstance(k, slice) for k in key):
        return None
    if any(k.indices(n) != (0, n, 1) for k, n in zip(key[1:], shape[1:])):
        return None
    start, stop, step = key[0].indices(shape[0])
    return range(start, stop) if step == 1 else None


def _direct_codec(dset: h5py.Dataset) -> str | None:
    """How the frames' chunks can be read without HDF5's filter pipeline, or None.

    ``"raw"`` for unfiltered chunks, ``"bitshuffle"`` for bitshuffle-LZ4 ones (what
    ingest writes) when bitshuffle's C library is there; one frame per chunk either way.
    """
    from .. import _bshuf

    if dset.chunks is None or dset.chunks != (1, *dset.shape[1:]) or not dset.dtype.isnative:
        return None
    plist = dset.id.get_create_plist()
    n_filters = plist.get_nfilters()
    if n_filters == 0:
        return "raw"
    if n_filters == 1:
        code, _flags, values, _name = plist.get_filter(0)
        if code == _bshuf.FILTER_ID and len(values) > 4 and values[4] == _bshuf.LZ4 \
                and _bshuf.c_api() is not None:
            return "bitshuffle"
    return None


_chunk_buffers = threading.local()


def _read_frames_direct(dset: h5py.Dataset, frames: range, codec: str) -> np.ndarray:
    """Read whole frames chunk by chunk with ``read_direct_chunk``, decoding them here.

    HDF5 decompresses under h5py's process-wide lock, one chunk at a time for the whole
    process; here only the raw read holds it, and bitshuffle's decoder runs with the GIL
    released, straight into the output array, so dask's threads decompress in parallel.
    Bit-exact with HDF5's own read; a chunk never written (a bad frame: HDF5's fill value)
    or stored without its filter is read through HDF5.
    """
    from .. import _bshuf

    out = np.empty((len(frames), *dset.shape[1:]), dtype=dset.dtype)
    zeros = (0,) * (dset.ndim - 1)
    for k, i in enumerate(frames):
        target = out[k]
        info = dset.id.get_chunk_info_by_coord((i, *zeros))
        if not info.size or info.filter_mask:
            target[...] = dset[i]
        elif codec == "raw":
            if info.size != target.nbytes:
                raise ValueError(f"{dset.file.filename}: frame {i} is stored in {info.size} bytes, "
                                 f"expected {target.nbytes}")
            dset.id.read_direct_chunk((i, *zeros), out=target.reshape(-1).view(np.uint8))
        else:
            buf = getattr(_chunk_buffers, "buf", None)
            if buf is None or buf.nbytes < info.size:
                buf = _chunk_buffers.buf = np.empty(max(info.size, 1 << 20), dtype=np.uint8)
            _, chunk = dset.id.read_direct_chunk((i, *zeros), out=buf)
            try:
                _bshuf.decompress_into(chunk[:info.size], target)
            except ValueError as exc:
                raise ValueError(f"{dset.file.filename}: frame {i}: {exc}") from None
    return out


def _decode_strings(values) -> np.ndarray:
    return np.asarray([v.decode() if isinstance(v, bytes) else v for v in values], dtype=object)


def open_frames(
    path: str | os.PathLike,
    *,
    frames_per_chunk: int | None = None,
    valid_only: bool = True,
):
    """Open the frames of a raw NeXus file as a lazy ``xarray.DataArray`` (frame, y, x).

    Opening reads metadata only, never a pixel. One dask chunk holds whole frames; each
    task reopens the file by path, so the array works with any dask scheduler.

    Parameters
    ----------
    path
        Raw NeXus file written by :func:`xrdflow.ingest`.
    frames_per_chunk
        Frames per dask chunk (default: as many as fit in :data:`FRAMES_CHUNK_BYTES`, 64 MiB,
        at least 1: 8 frames of 2048x2048 uint16).
    valid_only
        Leave out frames that ingest recorded as bad (the default), so that nothing
        invalid is mixed into a reduction; ``False`` keeps them with ``valid = False``.

    Returns
    -------
    xarray.DataArray
        Raw counts in the detector's dtype. Coords: ``frame`` (frame number), ``valid``,
        ``source_file`` and every per-frame field of NXsample (``applied_strain``, ...).
        Attrs: ``energy_kev``, ``wavelength_a``, ``source`` (the file), ``units``.

    Examples
    --------
    >>> frames = open_frames("raw.nxs")                    # doctest: +SKIP
    >>> frames.sel(frame=1).compute()                      # doctest: +SKIP
    """
    import dask.array as da
    import xarray as xr

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such raw NeXus file")
    if frames_per_chunk is not None and (int(frames_per_chunk) != frames_per_chunk or frames_per_chunk < 1):
        raise ValueError(f"frames_per_chunk: must be a positive integer, got {frames_per_chunk!r}")
    import hdf5plugin  # noqa: F401

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise OSError(f"{path}: not a readable HDF5/NeXus file ({exc})") from None
    with f:
        if DETECTOR_PATH not in f:
            raise ValueError(f"{path}: no {DETECTOR_PATH}; is it a raw file written by xrdflow.ingest?")
        dset = f[DETECTOR_PATH]
        det = dset.parent
        shape, dtype = dset.shape, dset.dtype
        n = shape[0]
        numbers = det["frame_number"][()] if "frame_number" in det else np.arange(n)
        valid = det["frame_valid"][()] if "frame_valid" in det else np.ones(n, bool)
        sources = _decode_strings(det["source_file"][()]) if "source_file" in det else None
        flags = {name: det[name][()] for name in ("n_saturated", "n_nonfinite", "n_negative")
                 if name in det and det[name].shape == (n,)}
        mono = f.get("entry/instrument/monochromator")
        energy = float(mono["energy"][()]) if mono is not None and "energy" in mono else None
        wavelength = float(mono["wavelength"][()]) if mono is not None and "wavelength" in mono else None
        coords: dict[str, Any] = {"frame": ("frame", numbers), "valid": ("frame", valid)}
        if sources is not None:
            coords["source_file"] = ("frame", sources)
        for name, counts in flags.items():  # suspicious pixels ingest counted, per frame
            coords[name] = ("frame", counts, {"units": "1", "long_name": f"{name[2:]} pixels"})
        sample = f.get("entry/sample")
        if sample is not None:
            for name, field in sample.items():
                if isinstance(field, h5py.Dataset) and field.shape == (n,):
                    coords[name] = ("frame", field[()], read_attrs(field))
        data_units = dset.attrs.get("units", "counts")

    fpc = frames_per_chunk or frames_per_chunk_for(int(np.prod(shape[1:])) * dtype.itemsize)
    source = _H5Frames(os.fspath(path.resolve()), DETECTOR_PATH, shape, dtype)
    stat = path.stat()
    name = f"raw-frames-{path.resolve()}-{stat.st_mtime_ns}-{stat.st_size}"
    import dask.base

    array = da.from_array(
        source,
        chunks=(fpc, *shape[1:]),
        name=f"frames-{dask.base.tokenize(name)}",
        meta=np.empty((0,) * len(shape), dtype=dtype),
        lock=False,
        asarray=False,
        fancy=False,
    )
    attrs = {"units": data_units, "long_name": "detector counts", "source": os.fspath(path)}
    if energy is not None:
        attrs["energy_kev"] = energy
    if wavelength is not None:
        attrs["wavelength_a"] = wavelength
    out = xr.DataArray(array, dims=("frame", "y", "x"), coords=coords, attrs=attrs, name="counts")
    if valid_only and not valid.all():
        import warnings

        bad = [str(s) for s in (sources[~valid] if sources is not None else numbers[~valid])]
        warnings.warn(f"{path}: leaving out {len(bad)} invalid frame(s): {', '.join(bad[:10])}",
                      stacklevel=2)
        out = out.isel(frame=np.flatnonzero(valid))
    return out
