"""bitshuffle-LZ4 HDF5 chunks (filter 32008) built and read outside HDF5, with the GIL released.

HDF5 runs its filters under h5py's process-wide lock, so a chunk compressed or decompressed
by HDF5 occupies one core whatever the number of threads. Ingest therefore compresses in its
own threads and stores chunks with ``write_direct_chunk``; :func:`xrdflow.open_frames` reads
chunks with ``read_direct_chunk`` and decompresses them here, straight into the frame array.

The codec is bitshuffle's own C library (``bshuf_compress_lz4``/``bshuf_decompress_lz4``, the
public API of ``bitshuffle.h``), called through ctypes, which releases the GIL and writes into
the caller's buffer. Where that library cannot be loaded, :func:`c_api` returns None and the
callers use the Python API (ingest) or HDF5's own filter (reading).

A chunk is ``>Q`` total bytes, ``>I`` block bytes, then the LZ4-compressed bitshuffled blocks.
"""

from __future__ import annotations

import ctypes
import functools
import struct

import numpy as np

#: bitshuffle's HDF5 chunk header: uncompressed bytes (uint64 BE), block bytes (uint32 BE)
HEADER = struct.Struct(">QI")
FILTER_ID = 32008
LZ4 = 2  # bitshuffle's compression code for LZ4 in the filter's cd_values[4]


@functools.cache
def c_api():
    """``(compress, decompress, bound)`` from bitshuffle's C library, or None."""
    try:
        import bitshuffle.ext

        lib = ctypes.CDLL(bitshuffle.ext.__file__)
        compress, decompress = lib.bshuf_compress_lz4, lib.bshuf_decompress_lz4
        bound = lib.bshuf_compress_lz4_bound
    except (ImportError, OSError, AttributeError):
        return None
    size_t = ctypes.c_size_t
    for fn in (compress, decompress):
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, size_t, size_t, size_t]
        fn.restype = ctypes.c_int64
    bound.argtypes = [size_t, size_t, size_t]
    bound.restype = size_t
    return compress, decompress, bound


@functools.cache
def _omp_set_num_threads():
    """``omp_set_num_threads`` of the OpenMP runtime bundled with bitshuffle, or None.

    bitshuffle spreads one chunk over an OpenMP team; called from dask's or ingest's
    threads, that is a second level of parallelism that oversubscribes the cores (reading
    frames on 2 dask threads: ~280 frames/s with it, ~350 without). The thread count is per
    calling thread and the runtime is bitshuffle's own copy (wheels bundle their own), so
    limiting it touches no other library.
    """
    if c_api() is None:  # also loads bitshuffle's library, so that the scan below finds it
        return None
    try:
        from threadpoolctl import ThreadpoolController

        from ._threads import _LOCK

        with _LOCK:  # threadpoolctl's library scan is not thread-safe
            libs = ThreadpoolController().select(user_api="openmp").lib_controllers
        for lib in libs:
            if "bitshuffle" in lib.filepath:
                fn = ctypes.CDLL(lib.filepath).omp_set_num_threads
                fn.argtypes = [ctypes.c_int]
                fn.restype = None
                return fn
    except (ImportError, OSError, AttributeError):
        pass
    return None


def _one_thread() -> None:
    fn = _omp_set_num_threads()
    if fn is not None:
        fn(1)


def chunk_bound(n_elements: int, itemsize: int, block: int) -> int:
    """Largest chunk (header included) that :func:`compress_into` can produce."""
    return HEADER.size + c_api()[2](n_elements, itemsize, block)


def compress_into(data: np.ndarray, out: np.ndarray, block: int) -> memoryview:
    """Compress C-contiguous ``data`` into ``out`` (uint8, at least :func:`chunk_bound` bytes).

    Returns the chunk: a view of the start of ``out``.
    """
    compress = c_api()[0]
    _one_thread()
    itemsize = data.dtype.itemsize
    HEADER.pack_into(out, 0, data.nbytes, block * itemsize)
    n = compress(data.ctypes.data, out.ctypes.data + HEADER.size, data.size, itemsize, block)
    if n < 0:
        raise RuntimeError(f"bitshuffle-LZ4 compression failed (error {n})")
    return memoryview(out)[:HEADER.size + n]


def decompress_into(chunk, out: np.ndarray) -> None:
    """Decompress one chunk into ``out`` (C-contiguous, the frame's dtype and shape).

    Raises
    ------
    ValueError
        If the chunk is not a bitshuffle-LZ4 chunk of exactly ``out``'s size, or is corrupt.
    """
    view = memoryview(chunk).cast("B")
    if len(view) < HEADER.size:
        raise ValueError(f"bitshuffle chunk of {len(view)} bytes is shorter than its header")
    nbytes, block_bytes = HEADER.unpack_from(view, 0)
    itemsize = out.dtype.itemsize
    if nbytes != out.nbytes or block_bytes % itemsize or block_bytes <= 0:
        raise ValueError(f"bitshuffle chunk holds {nbytes} bytes in blocks of {block_bytes}; "
                         f"expected {out.nbytes} bytes of {out.dtype}")
    src = np.frombuffer(view, dtype=np.uint8)
    _one_thread()
    used = c_api()[1](src.ctypes.data + HEADER.size, out.ctypes.data, out.size, itemsize,
                      block_bytes // itemsize)
    if used != len(view) - HEADER.size:
        raise ValueError(f"corrupt bitshuffle-LZ4 chunk (decoder returned {used} for "
                         f"{len(view) - HEADER.size} compressed bytes)")
