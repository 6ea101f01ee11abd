"""Decoding one detector file held in memory, and proving it is whole.

Decoders are forgiving: fabio pads a short EDF with zeros (and logs it), stops unpacking a
MAR345 image where its bytes end and leaves the rest zero, and HDF5 returns fill values for
chunks never written. A truncated frame then looks like a frame with a dark band. So each
format's promise is checked against the bytes the file holds, before the pixels are trusted:

===========  ==========================================================================
TIFF         the IFD lists the strips/tiles its image size needs, each inside the file
EDF          each header's ``Size`` (or ``Dim_i`` x ``DataType``) bytes follow the header
CBF          the binary section is marked, starts, and holds the ``X-Binary-Size`` bytes
             its MIME header promises (a damaged marker hangs fabio)
MAR345       decoded by :mod:`._mar345` (fabio's decoder writes past its buffer): the
             header agrees with the ``pck`` stream, which holds all ``X x Y`` pixels
HDF5         the file is as long as its superblock says, the image's storage is allocated
.gz / .bz2   the compressed stream reaches its end marker; then the inner format's check
others       any complaint fabio logs while decoding (incomplete, truncated, short...)
===========  ==========================================================================
"""

from __future__ import annotations

import bz2
import gzip
import io
import logging
import os
import re
import threading
import warnings
import zlib
from pathlib import Path

import numpy as np

__all__ = ["BadFrameError", "decode", "TIFF_SUFFIXES", "HDF5_SUFFIXES", "MAR345_SUFFIXES"]

TIFF_SUFFIXES = (".tif", ".tiff")
HDF5_SUFFIXES = (".h5", ".hdf5", ".nxs", ".hdf")
MAR345_SUFFIXES = (".mar2300", ".mar1200", ".mar1600", ".mar2000", ".mar3450", ".mar3000",
                   ".mar2400", ".mar1800", ".mar2560", ".pck")
_COMPRESSED = {".gz": gzip.decompress, ".bz2": bz2.decompress}


class BadFrameError(ValueError):
    """A source frame is missing, unreadable, truncated, or does not match the others."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def decode(path: Path, blob) -> np.ndarray:
    """The pixels of one single-frame detector file whose bytes are ``blob``.

    Raises :class:`BadFrameError` naming the file and the reason when the file is
    truncated, unreadable or holds several frames. The result may be a view of ``blob``:
    use it before ``blob`` is reused.
    """
    suffix = path.suffix.lower()
    inner = Path(path.stem).suffix.lower() if suffix in _COMPRESSED else suffix
    if suffix in _COMPRESSED:
        try:
            blob = _COMPRESSED[suffix](bytes(blob))
        except (EOFError, OSError, ValueError, zlib.error) as exc:
            raise BadFrameError(path, f"truncated or corrupt {suffix[1:]} stream ({exc})") from None
    if inner in TIFF_SUFFIXES:
        data = _decode_tiff(path, blob)
        if data is not None:
            return data
    elif inner in HDF5_SUFFIXES:
        return _decode_hdf5(path, blob)
    elif inner in MAR345_SUFFIXES:
        from ._mar345 import decode_mar345

        return decode_mar345(path, blob)
    check = _CHECKS.get(inner)
    if check is not None:
        check(path, blob)
    return _decode_fabio(path, blob if suffix in _COMPRESSED else None)


# --------------------------------------------------------------------------- TIFF


def _decode_tiff(path: Path, blob) -> np.ndarray | None:
    """A single-page TIFF's pixels (a view of ``blob`` when they are stored plain), or None
    for TIFF flavours tifffile does not read (fabio then tries)."""
    import tifffile

    source = io.BytesIO(blob) if isinstance(blob, bytes) else str(path)  # header only, from the page cache
    try:
        with tifffile.TiffFile(source) as tif:
            pages = len(tif.pages)
            if pages > 1:
                raise BadFrameError(path, f"holds {pages} frames; split multi-frame files first")
            if pages == 0:
                return None
            page = tif.pages[0]
            chunked = getattr(page, "chunked", None)  # strips/tiles the image size needs
            if chunked is not None and int(np.prod(chunked)) != len(page.dataoffsets):
                raise BadFrameError(path, f"corrupt (the TIFF header lists {len(page.dataoffsets)} strips or tiles, "
                                          f"its {' x '.join(map(str, page.shape))} image needs {int(np.prod(chunked))})")
            ends = [int(o) + int(n) for o, n in zip(page.dataoffsets, page.databytecounts)]
            plain = (page.is_contiguous and page.compression == 1 and page.predictor == 1
                     and page.fillorder == 1 and page.bitspersample == 8 * page.dtype.itemsize)
            dtype, shape, start = page.dtype.newbyteorder(tif.byteorder), tuple(int(n) for n in page.shape), \
                int(page.dataoffsets[0])
            count = int(np.prod(shape))
            plain = plain and count > 0
    except BadFrameError:
        raise
    except Exception:  # odd TIFF flavours or a damaged header: fabio knows more detector variants
        return None
    if plain:
        ends.append(start + count * dtype.itemsize)
    if any(int(o) < 0 for o in page.dataoffsets):
        raise BadFrameError(path, "corrupt (the TIFF header gives a negative strip offset)")
    if not ends or max(ends) > len(blob):
        raise BadFrameError(path, f"truncated ({len(blob)} bytes, the TIFF header says "
                                  f"{max(ends) if ends else 'no image data'})")
    if plain:  # the pixels are the bytes already read: no copy
        return np.frombuffer(blob, dtype=dtype, count=count, offset=start).reshape(shape)
    try:  # compressed or tiled: decode the bytes that were hashed, not the file again
        with tifffile.TiffFile(io.BytesIO(bytes(blob))) as tif:
            return tif.pages[0].asarray()
    except Exception:
        return None


# --------------------------------------------------------------------------- EDF

_EDF_ITEMSIZE = {
    "unsignedbyte": 1, "signedbyte": 1, "unsignedshort": 2, "signedshort": 2, "unsignedinteger": 4,
    "signedinteger": 4, "unsignedlong": 4, "signedlong": 4, "unsigned64": 8, "signed64": 8,
    "unsignedlong64": 8, "signedlong64": 8, "floatvalue": 4, "float": 4, "floatieee32": 4,
    "doublevalue": 8, "double": 8, "doubleieee64": 8, "unsignedshortinteger": 2,
    "signedshortinteger": 2, "unsignedchar": 1, "signedchar": 1,
}


def _check_edf(path: Path, blob) -> None:
    """Each EDF block: ``{ key = value ; ... }`` then the bytes its ``Size`` promises."""
    raw = bytes(blob[: min(len(blob), 1 << 20)]) if not isinstance(blob, bytes) else blob
    pos = 0
    while pos < len(blob):
        start = raw.find(b"{", pos)
        if start < 0 or raw[pos:start].strip(b"\x00 \r\n"):
            break
        end = raw.find(b"}", start)
        if end < 0:
            raise BadFrameError(path, "truncated (EDF header has no closing brace)")
        header_end = end + 1 + (1 if raw[end + 1:end + 2] == b"\n" else 0)  # "}\n", then the data
        fields = dict(
            (k.strip().lower(), v.strip())
            for k, _, v in (item.partition("=") for item in raw[start + 1:end].decode("latin-1").split(";"))
            if _
        )
        size = _edf_size(fields)
        if size is None:
            return  # nothing promised: fabio decides
        if header_end + size > len(blob):
            raise BadFrameError(path, f"truncated ({len(blob) - header_end} bytes of image data, "
                                      f"the EDF header promises {size})")
        pos = header_end + size


def _edf_size(fields: dict) -> int | None:
    if "size" in fields:
        try:
            return int(fields["size"])
        except ValueError:
            return None
    dims = [fields.get(f"dim_{i}") for i in (1, 2, 3)]
    itemsize = _EDF_ITEMSIZE.get(fields.get("datatype", "").lower())
    if itemsize is None or not dims[0] or "compression" in fields:
        return None
    try:
        return itemsize * int(np.prod([int(d) for d in dims if d]))
    except ValueError:
        return None


# --------------------------------------------------------------------------- CBF

_CBF_STARTER = b"\x0c\x1a\x04\xd5"
_CBF_SECTION = b"--CIF-BINARY-FORMAT-SECTION--"


def _check_cbf(path: Path, blob) -> None:
    """The binary section is there, marked as fabio looks for it, and holds what the MIME
    header's ``X-Binary-Size`` promises.

    fabio reads on until it meets the binary starter and loops for ever at the end of a file
    that has none after the section marker (or has no marker, when it falls back to parsing
    the whole file as CIF): a single damaged byte in the marker or the starter hangs it.
    """
    head = bytes(blob[: min(len(blob), 1 << 16)]) if not isinstance(blob, bytes) else blob[: 1 << 16]
    if len(blob) > len(head) and _CBF_STARTER not in head:
        head = bytes(blob)  # a header longer than 64 kB
    section = head.find(_CBF_SECTION)
    if section < 0:
        raise BadFrameError(path, "truncated or corrupt (no '--CIF-BINARY-FORMAT-SECTION--' marker: not a binary CBF)")
    start = head.find(_CBF_STARTER, section)
    if start < 0:
        raise BadFrameError(path, "truncated or corrupt (no binary data starter after the CBF section marker)")
    match = re.search(rb"X-Binary-Size:\s*(\d+)", head[section:start])
    if match is None:
        return  # the size is not declared: fabio decides
    promised, held = int(match.group(1)), len(blob) - start - len(_CBF_STARTER)
    if held < promised:
        raise BadFrameError(path, f"truncated ({held} bytes of binary data, the CBF header promises {promised})")


# --------------------------------------------------------------------------- HDF5


def _decode_hdf5(path: Path, blob) -> np.ndarray:
    """The one image of a single-frame HDF5/NeXus file: the NeXus default signal if it
    declares one, else its only dataset of two dimensions or more."""
    import h5py
    import hdf5plugin  # noqa: F401  the filters detectors write with (bitshuffle, LZ4, Blosc...)

    try:
        handle = h5py.File(io.BytesIO(bytes(blob)), "r")
    except (OSError, RuntimeError, OverflowError, ValueError) as exc:
        reason = "truncated" if "truncated" in str(exc) or "eof" in str(exc).lower() else "unreadable"
        raise BadFrameError(path, f"{reason} ({exc})") from None
    with handle:
        try:
            dset = _hdf5_image(path, handle)
            if dset.ndim == 3 and dset.shape[0] != 1:
                raise BadFrameError(path, f"holds {dset.shape[0]} frames ({dset.name}); split multi-frame files first")
            _check_hdf5_storage(path, dset)
            data = dset[()]
        except BadFrameError:
            raise
        except Exception as exc:  # damaged metadata: h5py raises OSError, RuntimeError, OverflowError...
            raise BadFrameError(path, f"corrupt HDF5 file ({type(exc).__name__}: {exc})") from None
    return data.reshape(data.shape[-2:])


def _hdf5_image(path: Path, handle):
    import h5py

    group = handle
    for _ in range(4):  # NeXus: follow the 'default' attributes down to an NXdata
        target = group.attrs.get("default")
        if target is None:
            break
        target = target.decode() if isinstance(target, bytes) else str(target)
        if target not in group:
            break
        group = group[target]
    signal = group.attrs.get("signal") if isinstance(group, h5py.Group) else None
    if signal is not None:
        signal = signal.decode() if isinstance(signal, bytes) else str(signal)
        if signal in group and isinstance(group[signal], h5py.Dataset):
            return group[signal]
    found = []
    handle.visititems(lambda name, obj: found.append(obj)
                      if isinstance(obj, h5py.Dataset) and obj.ndim in (2, 3) and obj.size > 1 else None)
    if len(found) != 1:
        names = ", ".join(d.name for d in found[:5]) or "none"
        raise BadFrameError(path, f"cannot tell which dataset is the frame (2-D/3-D datasets: {names}); "
                                  "give the file a NeXus default NXdata with a signal")
    return found[0]


def _check_hdf5_storage(path: Path, dset) -> None:
    """Every chunk (or the contiguous block) of the image was written: HDF5 would otherwise
    return fill values for the missing part."""
    if dset.chunks is None:
        if dset.id.get_offset() is None and dset.size:
            raise BadFrameError(path, f"incomplete ({dset.name} has no data written)")
        return
    expected = int(np.prod([-(-n // c) for n, c in zip(dset.shape, dset.chunks)]))
    written = dset.id.get_num_chunks()
    if written < expected:
        raise BadFrameError(path, f"incomplete ({dset.name}: {written} of {expected} chunks written)")


# --------------------------------------------------------------------------- fabio

#: words in fabio's log messages that mean the file did not hold what its header promised
_COMPLAINTS = re.compile(r"incomplete|truncat|too short|short read|premature|not enough|unexpected end|"
                         r"checksum", re.IGNORECASE)


class _FabioComplaints(logging.Handler):
    """Collects, per thread, what fabio logs at WARNING and above while it decodes."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.local = threading.local()

    def emit(self, record):
        heard = getattr(self.local, "heard", None)
        if heard is not None:
            heard.append(record.getMessage())


_HANDLER = _FabioComplaints()
logging.getLogger("fabio").addHandler(_HANDLER)


def _decode_fabio(path: Path, inner: bytes | None) -> np.ndarray:
    import fabio

    _HANDLER.local.heard = heard = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                img = fabio.open(str(path))
            except Exception as exc:
                raise BadFrameError(path, f"unreadable ({type(exc).__name__}: {exc or 'decoder failed'})") from None
        try:
            if getattr(img, "nframes", 1) != 1:
                raise BadFrameError(path, f"holds {img.nframes} frames; split multi-frame files first")
            data = img.data
        finally:
            img.close() if hasattr(img, "close") else None
    finally:
        _HANDLER.local.heard = None
    complaints = [m for m in heard if _COMPLAINTS.search(m)]
    if complaints:
        raise BadFrameError(path, f"truncated or corrupt (fabio: {complaints[0]})")
    if data is None:
        raise BadFrameError(path, "unreadable (no image data: truncated or not a detector file)")
    return np.asarray(data)


_CHECKS = {".edf": _check_edf, ".cbf": _check_cbf}
