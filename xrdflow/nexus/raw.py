"""Raw NeXus frames: the layout of ``raw.nxs`` (written by :func:`xrdflow.ingest`) and its
lazy reader :func:`open_frames`.

Layout::

    /entry                       NXentry       title, start_time, end_time, @default
      /instrument/monochromator  NXmonochromator  energy (keV), wavelength (angstrom)
      /instrument/detector       NXdetector    data [frame, y, x] (detector dtype, one chunk
                                               per frame), frame_number, source_file,
                                               source_sha256, source_stat, chunk_crc32,
                                               frame_valid, frame_error, n_saturated...
      /sample                    NXsample      the strain log's columns, one value per frame
      /data                      NXdata        links to data and frame_number
      /ingest                    NXprocess     program, version, date, input
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..units import energy_to_wavelength
from ._codec import as_str, nx_group, read_attrs, write_field

__all__ = ["open_frames", "DETECTOR_PATH", "DETECTOR_GROUP", "FRAMES_CHUNK_BYTES", "frames_per_chunk_for",
           "create_layout", "update_log", "read_records", "FrameRecords", "count_invalid", "bad_frames",
           "PIXEL_FLAGS", "units_of"]

#: where the raw frames live in a raw NeXus file
DETECTOR_PATH = "/entry/instrument/detector/data"
DETECTOR_GROUP = DETECTOR_PATH.rsplit("/", 1)[0]

#: per-frame counts of flagged pixels (NXdetector fields)
PIXEL_FLAGS = ("n_saturated", "n_nonfinite", "n_negative")

#: strain-log column suffix -> units
UNIT_SUFFIXES = {
    "N": "N", "kN": "kN", "s": "s", "ms": "ms", "min": "min", "h": "h", "mm": "mm", "um": "um",
    "MPa": "MPa", "GPa": "GPa", "C": "degC", "degC": "degC", "K": "K", "pct": "%",
}

# --------------------------------------------------------------------------- raw frames


#: default size of a dask chunk of frames: 4 frames of 2048^2 uint16. The fused integration
#: engine reads its matrix once per pass of up to 8 frames of a chunk; its kernel is as fast
#: with 4 frames a pass as with 8 (bbox 7.1 against 7.2 ms a frame, no splitting 3.0 against
#: 3.0), and smaller chunks share the frames out more evenly: 40 frames are 10 chunks, 5 for
#: each of 2 threads, not 5 chunks, 3 for one thread and 2 for the other.
FRAMES_CHUNK_BYTES = 32 << 20


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
    from .. import _bshuf, _buffers

    # recycled memory: a fresh 32 MiB array is zeroed page by page on first touch (1.2 ms a
    # 2048^2 uint16 frame); the buffer goes back only once the chunk and its views are gone
    out = _buffers.take((len(frames), *dset.shape[1:]), dset.dtype)
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
        Frames per dask chunk (default: as many as fit in :data:`FRAMES_CHUNK_BYTES`, 32 MiB,
        at least 1: 4 frames of 2048x2048 uint16).
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


# --------------------------------------------------------------------------- writing
def units_of(name: str) -> str | None:
    """Units of a strain-log column from its name (``load_N`` -> ``N``, ``applied_strain`` -> ``1``)."""
    if name in ("applied_strain", "strain", "engineering_strain", "true_strain"):
        return "1"
    suffix = name.rsplit("_", 1)[-1] if "_" in name else ""
    return UNIT_SUFFIXES.get(suffix)


def create_layout(f: h5py.File, *, n, shape, dtype, compression, energy_kev, title, detector,
                   log_fields, numbers, paths):
    """The raw file's groups and fields, with an empty ``data`` [frame, y, x] chunked per frame."""
    f.attrs["default"] = "entry"
    f.attrs["creator"] = "xrdflow"
    f.attrs["HDF5_Version"] = h5py.version.hdf5_version
    entry = nx_group(f, "entry", "NXentry", default="data")
    write_field(entry, "title", title)
    # No application definition: NXmonopd (the one 0.1 declared) is a 1-D powder scan with a
    # monochromator crystal, a monitor and polar angles, which frames of an area detector are
    # not; nothing here could meet it with real values. The base classes validate (tests).
    write_field(entry, "start_time", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    instrument = nx_group(entry, "instrument", "NXinstrument")
    mono = nx_group(instrument, "monochromator", "NXmonochromator")
    write_field(mono, "energy", float(energy_kev), units="keV", long_name="X-ray energy")
    write_field(mono, "wavelength", float(energy_to_wavelength(energy_kev)), units="angstrom",
                long_name="X-ray wavelength")
    det = nx_group(instrument, DETECTOR_GROUP.rsplit("/", 1)[-1], "NXdetector")
    if detector:
        write_field(det, "description", str(detector))
    kwargs = {}
    if compression == "bitshuffle":
        import hdf5plugin

        kwargs.update(hdf5plugin.Bitshuffle(nelems=0, cname="lz4"))
    elif compression == "gzip":
        kwargs.update(compression="gzip", compression_opts=1)
    data = det.create_dataset("data", shape=(n, *shape), dtype=dtype, chunks=(1, *shape), **kwargs)
    data.attrs["units"] = "counts"
    data.attrs["long_name"] = "detector counts as recorded (raw, bit-exact)"
    data.attrs["interpretation"] = "image"
    det.attrs["xrdflow_compression"] = compression
    write_field(det, "frame_number", numbers, units="1", long_name="frame number")
    write_field(det, "source_file", np.asarray([os.fspath(p.name) for p in paths], dtype=object),
                long_name="source file of each frame")
    write_field(det, "source_sha256", np.asarray([""] * n, dtype=object),
                long_name="SHA-256 of each source file")
    write_field(det, "source_stat", np.zeros((n, 2), dtype=np.int64),
                long_name="size (bytes) and modification time (ns) of each source file")
    write_field(det, "chunk_crc32", np.zeros(n, dtype=np.uint32),
                long_name="CRC-32 of each stored (compressed) chunk")
    write_field(det, "frame_valid", np.zeros(n, dtype=bool),
                long_name="frame stored and valid")
    write_field(det, "frame_error", np.asarray([""] * n, dtype=object),
                long_name="why a frame is invalid (empty when valid)")
    for name, what in zip(PIXEL_FLAGS, ("saturated (at the dtype's largest value)",
                                        "non-finite (NaN or inf)", "negative")):
        write_field(det, name, np.zeros(n, dtype=np.int64), units="1",
                    long_name=f"number of {what} pixels in each frame")
    det.attrs["source_folder"] = os.fspath(Path(paths[0]).resolve().parent) if paths else ""
    sample = nx_group(entry, "sample", "NXsample")
    for name, values in log_fields.items():
        write_field(sample, name, values, units=units_of(name), long_name=name.replace("_", " "))
    nxdata = nx_group(entry, "data", "NXdata", signal="data", axes=["frame_number", ".", "."])
    nxdata["data"] = data
    nxdata["frame_number"] = det["frame_number"]
    nxdata.attrs["frame_number_indices"] = 0


def update_log(f: h5py.File, log_fields: dict[str, np.ndarray]) -> None:
    sample = f["entry/sample"]
    for name, values in log_fields.items():
        write_field(sample, name, values, units=units_of(name), long_name=name.replace("_", " "))


def read_records(f: h5py.File) -> dict[str, Any] | None:
    """The per-frame records of an open raw file (to resume an ingest), or None if the file
    was written by an xrdflow that did not keep them all."""
    det = f[DETECTOR_GROUP]
    if any(name not in det for name in PIXEL_FLAGS):
        return None
    return {
        "data": det["data"],
        "names": [as_str(s) for s in det["source_file"][()]],
        "compression": as_str(det.attrs.get("xrdflow_compression")),
        "valid": det["frame_valid"][()],
        "shas": [as_str(s) for s in det["source_sha256"][()]],
        "crcs": det["chunk_crc32"][()],
        "stats": det["source_stat"][()],
    }


def count_invalid(path: Path) -> int:
    """How many frames of a raw file are recorded as bad."""
    with h5py.File(path, "r") as f:
        det = f[DETECTOR_GROUP]
        errors = det["frame_error"][()]
        return int(sum(1 for e in errors if as_str(e)))


def bad_frames(path: Path) -> list[tuple[str, str]]:
    """(source name, reason) of every frame recorded as bad."""
    with h5py.File(path, "r") as f:
        det = f[DETECTOR_GROUP]
        names = det["source_file"][()]
        errors = det["frame_error"][()]
        out = []
        for name, err in zip(names, errors):
            err = as_str(err)
            if err:
                out.append((as_str(name), err))
        return out


class FrameRecords:
    """Per-frame records (checksum, CRC, validity, error, source stat) kept in memory and
    written to the file together: one h5py call per field and flush, not five per frame."""

    FIELDS = ("source_sha256", "chunk_crc32", "frame_valid", "frame_error", "source_stat", *PIXEL_FLAGS)

    def __init__(self, det):
        self.det = det
        self.values = {k: det[k][()] for k in self.FIELDS}
        for k in ("source_sha256", "frame_error"):
            self.values[k] = np.asarray(
                [as_str(v) for v in self.values[k]], dtype=object)

    def set(self, i: int, *, sha256: str, crc32: int = 0, valid: bool, error: str = "", stat=(-1, -1),
            pixels=(0, 0, 0)):
        v = self.values
        v["source_sha256"][i], v["chunk_crc32"][i], v["frame_valid"][i] = sha256, crc32, valid
        v["frame_error"][i], v["source_stat"][i] = error, stat
        for name, count in zip(PIXEL_FLAGS, pixels):
            v[name][i] = count

    def write(self) -> None:
        for k in self.FIELDS:
            self.det[k][...] = self.values[k]
