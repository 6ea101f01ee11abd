"""MAR345 images (``.mar2300``, ``.mar3450``...; CCP4 ``pck`` packed), decoded here.

fabio's decoder writes past its output buffer whenever the last packed block runs past the
image's last pixel, which its own writer produces for noisy data: the heap is corrupted and
the process dies later, somewhere else (``malloc(): corrupted top size``), or returns wrong
numbers. Real files can end the same way, and a flipped bit in a block header always can. So
xrdflow decodes the format itself, bounded by the image size, after checking the header:

- the 64-byte binary header: byte-order marker 1234, pixels a row (word 1) and in all
  (word 5) equal to the packed image's ``X x Y``, and the high-intensity records (word 2)
  fitting between the 4096-byte header and the packed stream, each addressing a pixel of
  the image;
- the ``pck`` stream (v1 or v2) holds complete blocks for all ``X x Y`` pixels (a truncated
  file is refused, where fabio zero-fills).

The algorithm is CCP4's ``pack_c.c`` (Jan Pieter Abrahams): blocks of ``2**n`` differences
of ``b`` bits each, LSB first, from the predictor ``(left + up-left + up + up-right + 2) / 4``
(``left`` on the first row), computed as the reference does, in 16-bit signed integers
(values above 32767 wrap, division truncates toward zero: fabio's ``postdec`` reproduces the
same), stored as 16-bit unsigned; the high-intensity records then set their pixels.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import numpy as np

__all__ = ["decode_mar345", "PCK_KEY", "PCK_BITS_V1", "PCK_BITS_V2", "pck_pixels"]

PCK_KEY = re.compile(rb"CCP4 packed image(?P<v2> V2)?, X: *(?P<x>\d+), Y: *(?P<y>\d+)\n")
PCK_BITS_V1 = np.array([0, 4, 5, 6, 7, 8, 16, 32], dtype=np.int64)
PCK_BITS_V2 = np.array([0, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 32, 0], dtype=np.int64)
_HEADER_BYTES = 4096


def decode_mar345(path: Path, blob) -> np.ndarray:
    """The pixels (uint32, ``Y x X``) of the MAR345 file ``path`` whose bytes are ``blob``;
    :class:`~xrdflow.BadFrameError` naming the file and the reason if it is truncated or
    its header contradicts its packed image."""
    from ._formats import BadFrameError

    head = bytes(blob[: min(len(blob), 1 << 20)])
    match = PCK_KEY.search(head)
    if match is None:
        raise BadFrameError(path, "truncated (no 'CCP4 packed image' section: the file ends in its header)")
    nx, ny = int(match["x"]), int(match["y"])
    order, numhigh = _check_header(path, head, match.start(), nx, ny)
    stream = np.frombuffer(blob, dtype=np.uint8, offset=match.end())
    v2 = match["v2"] is not None
    out = np.zeros(nx * ny, dtype=np.uint32)
    covered = _pck_decode(stream, nx, nx * ny, 8 if v2 else 6, PCK_BITS_V2 if v2 else PCK_BITS_V1, out)
    if covered < nx * ny:
        raise BadFrameError(path, f"truncated (its packed data ends after {covered} of the "
                                  f"{nx} x {ny} pixels the header declares)")
    if numhigh:
        records = np.frombuffer(head, dtype=f"{order}i4", count=2 * numhigh, offset=_HEADER_BYTES)
        out[records[0::2] - 1] = records[1::2].astype(np.uint32)
    return out.reshape(ny, nx)


def _check_header(path: Path, head: bytes, key_start: int, nx: int, ny: int) -> tuple[str, int]:
    """The binary header agrees with the packed image -> (byte order, high-intensity records)."""
    from ._formats import BadFrameError

    if len(head) < 64:
        raise BadFrameError(path, "truncated (shorter than the 64-byte MAR345 header)")
    for order in "<>":
        words = np.frombuffer(head, dtype=f"{order}i4", count=16)
        if words[0] == 1234:
            break
    else:
        raise BadFrameError(path, "corrupt MAR345 header (its byte-order marker is not 1234)")
    dim1, numhigh, npix = int(words[1]), int(words[2]), int(words[5])
    if dim1 != nx or npix != nx * ny:
        raise BadFrameError(path, f"corrupt MAR345 header (it declares {dim1} pixels a row and {npix} "
                                  f"in all; its packed image is {nx} x {ny})")
    if numhigh < 0 or _HEADER_BYTES + 64 * -(-numhigh // 8) > key_start:
        raise BadFrameError(path, f"corrupt MAR345 header ({numhigh} high-intensity records do not fit "
                                  "between the header and the packed image)")
    if numhigh:
        address = np.frombuffer(head, dtype=f"{order}i4", count=2 * numhigh, offset=_HEADER_BYTES)[0::2]
        if address.min() < 1 or address.max() > npix:
            raise BadFrameError(path, "corrupt MAR345 high-intensity records (a pixel address outside the image)")
    return order, numhigh


def _bits(stream, bit, n):
    """``n`` (<= 32) bits of ``stream`` from bit ``bit`` on, least significant first."""
    byte = bit >> 3
    shift = bit & 7
    value = np.int64(0)
    got = 0
    while got < n + shift and byte < stream.size:
        value |= np.int64(stream[byte]) << got
        byte += 1
        got += 8
    return (value >> shift) & ((np.int64(1) << n) - 1)


def _signed16(value):
    """A 16-bit pixel value read as the int16 the reference implementation computes with."""
    value = np.int64(value)
    return value - 65536 if value >= 32768 else value


def _pck_decode_py(stream, nx, npix, header_bits, bits_table, out):
    """Unpack the ``pck`` blocks of ``stream`` into ``out`` (uint32, ``npix``), never past it
    -> the pixels covered by complete blocks (``npix`` when the stream is whole).

    With an empty ``out`` (size 0) only the block headers are walked: the count of pixels
    the complete blocks cover, a last block running past ``npix`` included.
    """
    nbits = stream.size * 8
    half = header_bits // 2
    mask = (1 << half) - 1
    decode = out.size > 0
    bit = 0
    pixel = 0
    while pixel < npix:
        if bit + header_bits > nbits:
            return pixel
        word = _bits(stream, bit, header_bits)
        count = np.int64(1) << (word & mask)
        size = bits_table[(word >> half) & mask]
        bit += header_bits
        if bit + count * size > nbits:
            return pixel
        if not decode:
            pixel += count
            bit += count * size
            continue
        for k in range(min(count, npix - pixel)):
            diff = np.int64(0)
            if size > 0:
                diff = _bits(stream, bit + k * size, size)
                if diff >> (size - 1):
                    diff -= np.int64(1) << size
            if pixel > nx:  # (left + up-left + up + up-right + 2) / 4 in int16, truncated to zero
                total = (_signed16(out[pixel - 1]) + _signed16(out[pixel - nx - 1]) + _signed16(out[pixel - nx])
                         + _signed16(out[pixel - nx + 1]) + 2)
                pred = total // 4 if total >= 0 else -((-total) // 4)
            elif pixel > 0:  # the first row and the first pixel of the second: left
                pred = _signed16(out[pixel - 1])
            else:
                pred = np.int64(0)
            out[pixel] = (pred + diff) & 0xFFFF
            pixel += 1
        bit += count * size
    return pixel


class _Lazy:
    """Compile with numba on first use (importing xrdflow stays cheap)."""

    def __init__(self):
        self._compiled, self._lock = None, threading.Lock()

    def __call__(self, *args):
        if self._compiled is None:
            with self._lock:
                if self._compiled is None:
                    import numba

                    global _bits, _signed16  # the compiled kernel calls compiled helpers
                    _bits = numba.njit(cache=True, nogil=True, inline="always")(_bits)
                    _signed16 = numba.njit(cache=True, nogil=True, inline="always")(_signed16)
                    self._compiled = numba.njit(cache=True, nogil=True)(_pck_decode_py)
        return self._compiled(*args)


_pck_decode = _Lazy()
_NO_OUTPUT = np.zeros(0, dtype=np.uint32)


def pck_pixels(stream, npix, header_bits, bits_table) -> int:
    """Pixels covered by the complete ``pck`` blocks of ``stream`` (block headers walked,
    nothing decoded)."""
    return int(_pck_decode(stream, 1, npix, header_bits, bits_table, _NO_OUTPUT))
