"""Detector files -> one raw NeXus file, bit-exact, resumable, with bad frames recorded.

The pipeline reads each source file once into memory, hashes it (SHA-256), decodes it
(tifffile for TIFF, fabio for every other format and as the TIFF fallback), compresses
it to an HDF5 chunk in a worker thread, and hands the finished chunk to a single writer
that stores it with ``write_direct_chunk``. HDF5 filters run under h5py's global lock,
so compressing outside HDF5 is what lets ingest use every core.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import re
import threading
import time
import warnings
import zlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import h5py
import numpy as np

from . import _bshuf, nexus
from ._formats import BadFrameError
from ._formats import decode as _decode
from .nexus import raw as raw_layout
from .nexus import write_field
from .options import COMPRESSIONS, choice, positive, positive_int

log = logging.getLogger("xrdflow.ingest")  # public name, not the private module

__all__ = ["ingest", "IngestReport", "BadFrameError", "find_frames"]

#: file endings fabio reads (lower case); a folder source keeps only these
FRAME_SUFFIXES = (
    ".tif", ".tiff", ".edf", ".cbf", ".mccd", ".mar3450", ".mar2300", ".mar2560", ".img",
    ".sfrm", ".gfrm", ".kccd", ".spr", ".xsm", ".h5", ".hdf5", ".nxs", ".npy", ".raw", ".bin",
    ".gz", ".bz2", ".pck", ".mar1200", ".mar1600", ".mar2000", ".mar3000", ".mar2400", ".mar1800",
)
_BSHUF_BLOCK_BYTES = 8192  # bitshuffle's own default block (bshuf_default_block_size)
_FLUSH_EVERY_S = 2.0




@dataclass
class IngestReport:
    """What one call of :func:`ingest` did."""

    output: Path
    n_frames: int
    n_written: int
    n_reused: int
    bad: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def frames_per_second(self) -> float:
        return self.n_written / self.seconds if self.seconds > 0 else float("nan")

    def __str__(self) -> str:
        lines = [
            f"{self.output}: {self.n_frames} frames ({self.n_written} written, "
            f"{self.n_reused} already stored, {len(self.bad)} bad) in {self.seconds:.2f} s"
            + (f" ({self.frames_per_second:.0f} frames/s)" if self.n_written else "")
        ]
        lines += [f"  bad frame {name}: {reason}" for name, reason in self.bad]
        return "\n".join(lines)


# --------------------------------------------------------------------------- sources


def _natural_key(name: str) -> tuple:
    return tuple(int(tok) if tok.isdigit() else tok for tok in re.split(r"(\d+)", name))


def find_frames(sources: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Resolve a folder, a glob pattern, one file or a list of files to an ordered list.

    Files are ordered by the numbers in their names (``frame_2`` before ``frame_10``),
    not lexically. A folder yields the files with a detector-image ending.

    Raises
    ------
    FileNotFoundError
        If a named file, folder or pattern matches nothing.
    """
    if isinstance(sources, (str, os.PathLike)):
        src = Path(sources)
        if src.is_dir():
            paths = [p for p in src.iterdir() if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES]
            if not paths:
                raise FileNotFoundError(f"{src}: folder holds no detector frames ({', '.join(FRAME_SUFFIXES[:5])}...)")
        elif any(ch in str(src) for ch in "*?["):
            paths = [p for p in src.parent.glob(src.name) if p.is_file()]
            if not paths:
                raise FileNotFoundError(f"{src}: pattern matches no file")
        else:
            paths = [src]
    else:
        paths = [Path(p) for p in sources]
        if not paths:
            raise ValueError("sources: empty list of frames")
    return sorted(paths, key=lambda p: _natural_key(p.name))


def frame_numbers(paths: Sequence[Path]) -> np.ndarray:
    """The frame number of each file: the number in the name that changes from file to file.

    ``mg_00001.tif, mg_00002.tif`` -> 1, 2; ``map_11_P1_E1_001.tif`` -> 11 (the constant
    ``1`` and ``001`` are skipped). Falls back to 0..n-1 when no such number exists.
    """
    tokens = [re.findall(r"\d+", p.stem) for p in paths]
    if len(paths) > 1 and len({len(t) for t in tokens}) == 1 and tokens[0]:
        for pos in reversed(range(len(tokens[0]))):
            values = [int(t[pos]) for t in tokens]
            if len(set(values)) == len(values):
                return np.asarray(values, dtype=np.int64)
    if len(paths) == 1 and tokens[0]:
        return np.asarray([int(tokens[0][-1])], dtype=np.int64)
    return np.arange(len(paths), dtype=np.int64)


# --------------------------------------------------------------------------- reading


class _Buffers:
    """Reusable byte buffers for the frames in flight (file contents, compressed chunks).

    A worker takes one per file it reads and per chunk it compresses; the writer gives them
    back once the chunk is stored. The number in use is bounded by the look-ahead, so a run
    of any length touches the same few buffers: no fresh 8 MB allocation (and its page
    faults) per frame, and no copy between the file, the codec and HDF5.
    """

    def __init__(self, keep: int = 32):
        self._free: list[np.ndarray] = []
        self._lock = threading.Lock()
        self._keep = keep

    def take(self, nbytes: int) -> np.ndarray:
        with self._lock:
            for k, buf in enumerate(self._free):
                if buf.nbytes >= nbytes:
                    return self._free.pop(k)
        return np.empty(max(int(nbytes), 1), dtype=np.uint8)

    def give(self, *bufs: np.ndarray) -> None:
        with self._lock:
            room = self._keep - len(self._free)
            self._free.extend(bufs[:max(room, 0)])


#: used when a caller of :func:`_read_one` passes no pool of its own
_DEFAULT_BUFFERS = _Buffers(keep=4)


def _read_file(path: Path, buffers: _Buffers, owned: list) -> memoryview:
    """The whole file, read into a buffer from ``buffers`` (appended to ``owned``)."""
    with open(path, "rb", buffering=0) as fh:
        size = os.fstat(fh.fileno()).st_size
        buf = buffers.take(size)
        owned.append(buf)
        view = memoryview(buf)[:size]
        n = fh.readinto(view)
        while n < size:  # a short read is legal; keep going until the end of the file
            got = fh.readinto(view[n:])
            if not got:
                break
            n += got
    return view[:n]


def _stat(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except OSError:
        return (-1, -1)
    return (st.st_size, st.st_mtime_ns)


@dataclass
class _Frame:
    index: int
    path: Path
    sha256: str = ""
    chunk: bytes | None = None
    crc32: int = 0
    stat: tuple[int, int] = (-1, -1)
    error: str | None = None
    pixels: tuple[int, int, int] = (0, 0, 0)  # saturated, non-finite, negative pixel counts
    buffers: list = field(default_factory=list)  # pooled buffers behind ``chunk``


def pixel_check(data: np.ndarray) -> tuple[tuple[int, int, int], str | None]:
    """Counts of suspicious pixels in one frame, and why the frame is unusable (or None).

    Returns ``((n_saturated, n_nonfinite, n_negative), reason)``. Saturated means at the
    largest value of an integer dtype (a clipped pixel). A frame is unusable (``reason``
    set) when it holds no information: every pixel zero, every pixel non-finite (NaN/inf),
    or every pixel saturated. A frame with only some such pixels is kept bit-exact and
    flagged by the counts, which travel with the frame into the patterns and the result.
    """
    size = data.size
    n_sat = n_nonfinite = n_neg = 0
    if data.dtype.kind == "f":
        finite = np.isfinite(data)
        n_nonfinite = size - int(np.count_nonzero(finite))
        if n_nonfinite == size:
            return (0, n_nonfinite, 0), "no finite pixel (every pixel NaN or inf)"
        values = data[finite] if n_nonfinite else data
        lo, hi = values.min(), values.max()
    elif data.dtype.kind in "iu":
        hi = data.max()
        # unsigned: nothing is negative and the frame is all zero exactly when its maximum is 0,
        # so one pass over the pixels is enough
        lo = data.min() if data.dtype.kind == "i" else data.dtype.type(0)
        if hi == np.iinfo(data.dtype).max:
            n_sat = int(np.count_nonzero(data == hi))
            if n_sat == size:
                return (n_sat, 0, 0), f"every pixel saturated (at {hi}, the largest {data.dtype})"
    else:
        return (0, 0, 0), None
    if lo < 0:
        n_neg = int(np.count_nonzero(data < 0))
    if lo == 0 and hi == 0:
        return (n_sat, n_nonfinite, n_neg), "all-zero frame (no signal)"
    return (n_sat, n_nonfinite, n_neg), None


def _compress(data: np.ndarray, compression: str, buffers: _Buffers | None = None,
              owned: list | None = None):
    """One frame as a stored HDF5 chunk (a bytes-like object).

    With ``buffers``, the bitshuffle chunk is built in a pooled buffer (appended to
    ``owned``) and an uncompressed frame that is already contiguous and native is returned
    as it is (a view, no copy).
    """
    data = np.ascontiguousarray(data)
    if compression == "bitshuffle":
        block = _BSHUF_BLOCK_BYTES // data.dtype.itemsize
        if buffers is None or _bshuf.c_api() is None:
            import bitshuffle

            body = bitshuffle.compress_lz4(data.reshape(-1), block)
            return _bshuf.HEADER.pack(data.nbytes, block * data.dtype.itemsize) + body.tobytes()
        out = buffers.take(_bshuf.chunk_bound(data.size, data.dtype.itemsize, block))
        owned.append(out)
        return _bshuf.compress_into(data, out, block)
    if compression == "gzip":
        return zlib.compress(data, 1)
    return memoryview(data).cast("B") if buffers is not None else data.tobytes()


def _single_threaded_codecs() -> None:
    """One level of parallelism: our threads. bitshuffle's OpenMP would oversubscribe the cores
    (and spin against other processes), so each worker thread runs it on one thread."""
    import bitshuffle  # noqa: F401  load its OpenMP runtime first, so the limit applies to it

    from ._threads import limit_openmp_in_this_thread

    limit_openmp_in_this_thread()


def _read_one(frame: _Frame, shape, dtype, compression: str, buffers: _Buffers = _DEFAULT_BUFFERS) -> _Frame:
    """Read, hash, check and compress one frame (in a worker thread).

    On return ``frame.chunk`` (or ``frame.error``) is set; ``frame.buffers`` holds the pooled
    buffers behind the chunk, to give back to ``buffers`` once it is written.
    """
    try:
        frame.stat = _stat(frame.path)
        try:
            blob = _read_file(frame.path, buffers, frame.buffers)
        except FileNotFoundError:
            raise BadFrameError(frame.path, "missing (no such file)") from None
        except OSError as exc:
            raise BadFrameError(frame.path, f"unreadable ({exc.strerror})") from None
        if not blob:
            raise BadFrameError(frame.path, "empty file")
        frame.sha256 = hashlib.sha256(blob).hexdigest()
        try:
            data = _decode(frame.path, blob)  # may be a view of this thread's buffer
        except BadFrameError:
            raise
        except Exception as exc:  # a decoder meeting bytes it did not expect: a bad frame, not a dead run
            raise BadFrameError(frame.path, f"unreadable ({type(exc).__name__}: {exc})") from None
        if data.ndim != 2:
            raise BadFrameError(frame.path, f"not a 2D frame (shape {data.shape})")
        if shape is not None and data.shape != tuple(shape):
            raise BadFrameError(frame.path, f"wrong shape {data.shape}, expected {tuple(shape)}")
        if dtype is not None and data.dtype != dtype:
            raise BadFrameError(frame.path, f"wrong dtype {data.dtype}, expected {dtype}")
        frame.pixels, unusable = pixel_check(data)
        if unusable:
            raise BadFrameError(frame.path, unusable)
        frame.chunk = _compress(data.astype(data.dtype.newbyteorder("="), copy=False), compression,
                                buffers, frame.buffers)
        if compression != "none":  # the chunk is a new buffer: the file's can be reused now
            del data
            buffers.give(frame.buffers.pop(0))
        frame.crc32 = zlib.crc32(frame.chunk)
    except BadFrameError as exc:
        frame.error = exc.reason
    if frame.error is not None:
        buffers.give(*frame.buffers)
        frame.buffers.clear()
    return frame


def _probe(paths: Sequence[Path]) -> tuple[tuple[int, int], np.dtype]:
    """Shape and dtype of the run: those of the first readable frame."""
    errors = []
    for path in paths[:8]:
        try:
            data = _decode(path, path.read_bytes())
            return data.shape, data.dtype.newbyteorder("=")
        except (BadFrameError, OSError) as exc:
            errors.append(str(exc))
    raise BadFrameError(paths[0], "no readable frame among the first ones: " + "; ".join(errors))


# --------------------------------------------------------------------------- log


def read_log(path: str | os.PathLike, numbers: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame columns of a CSV log, matched to the frames.

    The log needs a header row. If it has a ``frame`` column whose values include every
    frame number, rows are matched by number; otherwise the log must have exactly one row
    per frame, matched in order. Column ``time_s`` becomes field ``time_s`` with units
    ``s`` (the suffix after the last underscore names the unit where it is a known one).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"strain_log: {path} does not exist")
    with open(path, newline="") as fh:
        lines = [ln for ln in fh if ln.strip() and not ln.lstrip().startswith("#")]
    reader = csv.DictReader(lines)
    if not reader.fieldnames:
        raise ValueError(f"strain_log: {path} has no header row")
    rows = list(reader)
    names = [n.strip() for n in reader.fieldnames]
    columns: dict[str, np.ndarray] = {}
    for raw, name in zip(reader.fieldnames, names):
        try:
            columns[name] = np.asarray([float(r[raw]) for r in rows])
        except (TypeError, ValueError):
            raise ValueError(f"strain_log: {path}: column {name!r} is not numeric") from None
    order = None
    if "frame" in columns:
        log_frames = columns.pop("frame").astype(np.int64)
        lookup = {int(f): i for i, f in enumerate(log_frames)}
        if all(int(n) in lookup for n in numbers):
            order = np.asarray([lookup[int(n)] for n in numbers])
    if order is None:
        if len(rows) != len(numbers):
            raise ValueError(
                f"strain_log: {path} has {len(rows)} rows for {len(numbers)} frames and its "
                "'frame' column does not name every frame number"
            )
        order = np.arange(len(rows))
    return {name: col[order] for name, col in columns.items()}


# --------------------------------------------------------------------------- writing


def _existing_state(path: Path, paths: Sequence[Path], compression: str):
    """What ``path`` already holds for this list of sources, or None if it is unusable.

    Returns ``(shape, dtype, done)`` with ``done`` mapping source name -> (index, sha256)
    for every frame stored and verified (the CRC-32 of its stored chunk matches).
    """
    try:
        with h5py.File(path, "r") as f:
            st = raw_layout.read_records(f)
            if st is None or st["names"] != [p.name for p in paths] or st["compression"] != compression:
                return None  # other sources, or written by an older xrdflow: start over
            data = st["data"]
            done = {}
            for i in np.flatnonzero(st["valid"]):
                if tuple(st["stats"][i]) != _stat(paths[i]):
                    continue  # the source changed since it was stored
                try:
                    _, chunk = data.id.read_direct_chunk((int(i), 0, 0))
                except Exception:
                    continue
                if zlib.crc32(chunk) == int(st["crcs"][i]):
                    done[st["names"][i]] = (int(i), st["shas"][i])
            return data.shape[1:], data.dtype, done
    except (OSError, KeyError) as exc:
        log.warning("%s: cannot resume from it (%s); starting over", path, exc)
        return None


def ingest(
    sources,
    output: str | os.PathLike,
    *,
    energy_kev: float,
    strain_log: str | os.PathLike | None = None,
    compression: str = "bitshuffle",
    skip_bad: bool = False,
    detector: str | None = None,
    title: str | None = None,
    n_workers: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
    workers: int | None = None,
) -> IngestReport:
    """Store detector frames in one raw NeXus file, bit-exact, in the detector's dtype.

    Parameters
    ----------
    sources
        A folder, a glob pattern (``"run/mg_*.tif"``), one file, or a list of files in any
        format fabio reads. Frames are ordered by the number in their names.
    output
        Path of the raw NeXus file to write (``.nxs``/``.h5``). Written under
        ``<output>.partial`` and renamed when complete; an interrupted run leaves only the
        ``.partial`` file, which the next call resumes from.
    energy_kev
        X-ray energy in keV (stored with the wavelength in NXmonochromator).
    strain_log
        CSV log with a header, e.g. ``frame,applied_strain,load_N,time_s``; its columns
        become per-frame fields of NXsample (see :func:`read_log`).
    compression
        ``"bitshuffle"`` (bitshuffle-LZ4, HDF5 filter 32008, default), ``"gzip"`` or ``"none"``.
    skip_bad
        Record a bad frame (name and reason, ``frame_valid = False``) and go on, instead of
        raising :class:`BadFrameError`. No other frame is lost either way.
    detector
        Optional detector name (e.g. pyFAI's ``"Perkin"``), stored as the NXdetector description.
    title
        NXentry title; defaults to the output file's stem.
    n_workers
        Reader/compressor threads (default: number of CPUs). ``workers=`` is a deprecated
        alias.
    overwrite
        Re-ingest from scratch even if ``output`` already holds these frames.
    progress
        Show a progress bar (tqdm) on the terminal.

    Returns
    -------
    IngestReport
        Counts, bad frames and throughput. Re-ingesting identical frames writes nothing.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np, fabio
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> rng = np.random.default_rng(0)
    >>> for i in range(3):
    ...     frame = rng.poisson(100, (8, 8)).astype(np.uint16)
    ...     fabio.tifimage.TifImage(data=frame).write(str(folder / f"f_{i}.tif"))
    >>> report = ingest(folder, folder / "raw.nxs", energy_kev=87.1)
    >>> report.n_frames, report.n_written, report.bad
    (3, 3, [])
    >>> import xrdflow
    >>> xrdflow.open_frames(folder / "raw.nxs").shape
    (3, 8, 8)
    """
    t0 = time.perf_counter()
    if workers is not None:
        warnings.warn("ingest(workers=...) is deprecated; use 'n_workers' instead", DeprecationWarning,
                      stacklevel=2)
        if n_workers is None:
            n_workers = workers
    positive(energy_kev, "energy_kev")
    choice(compression, "compression", COMPRESSIONS)
    if n_workers is not None:
        n_workers = positive_int(n_workers, "n_workers")
    output = Path(output)
    if not output.parent.is_dir():
        raise FileNotFoundError(f"output: folder {output.parent} does not exist")
    paths = find_frames(sources)
    if output.resolve() in {p.resolve() for p in paths}:
        raise ValueError(f"output: {output} is also one of the sources")
    numbers = frame_numbers(paths)
    log_fields = read_log(strain_log, numbers) if strain_log is not None else {}
    n = len(paths)

    with nexus.output_lock(output):
        if output.exists() and not overwrite:
            state = _existing_state(output, paths, compression)
            if state is not None and len(state[2]) + raw_layout.count_invalid(output) == n and _same_sources(paths, state[2]):
                return IngestReport(output, n, 0, len(state[2]), raw_layout.bad_frames(output),
                                    time.perf_counter() - t0)
        partial = nexus.partial_path(output)
        state = None
        if partial.exists() and not overwrite:
            state = _existing_state(partial, paths, compression)
            if state is None or not state[2]:
                state = None
        if state is None:
            partial.unlink(missing_ok=True)
            shape, dtype = _probe(paths)
            done = {}
        else:
            shape, dtype, done = state
            log.info("%s: resuming, %d of %d frames already stored", partial, len(done), n)

        report = IngestReport(output, n, 0, 0)
        with nexus.atomic_output(output, keep_partial=True, lock=False) as tmp:
            mode = "r+" if done else "w"
            with h5py.File(tmp, mode, libver=("v110", "latest") if mode == "w" else None) as f:
                if mode == "w":
                    raw_layout.create_layout(f, n=n, shape=shape, dtype=dtype, compression=compression,
                                   energy_kev=float(energy_kev), title=title or output.stem,
                                   detector=detector, log_fields=log_fields, numbers=numbers,
                                   paths=paths)
                else:
                    raw_layout.update_log(f, log_fields)
                _write_frames(f, paths, done, shape, dtype, compression, skip_bad, n_workers,
                              report, progress)
                write_field(f["entry"], "end_time", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
                nexus.write_process(f["entry"], "ingest", parameters={
                    "sources": [os.fspath(p) for p in paths][:1] + (["..."] if n > 1 else []),
                    "n_frames": n, "compression": compression, "skip_bad": bool(skip_bad),
                    "strain_log": os.fspath(strain_log) if strain_log else None,
                    "energy_kev": float(energy_kev),
                })
    report.seconds = time.perf_counter() - t0
    log.info("%s", report)
    return report


def _same_sources(paths: Sequence[Path], done: dict[str, tuple[int, str]]) -> bool:
    """True if every stored frame's source file still has the stored checksum."""
    def digest(path: Path) -> str:
        with open(path, "rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()

    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        names = [p for p in paths if p.name in done]
        try:
            shas = list(pool.map(digest, names))
        except OSError:
            return False
    return all(done[p.name][1] == sha for p, sha in zip(names, shas))


def _write_frames(f, paths, done, shape, dtype, compression, skip_bad, n_workers, report, progress):
    det = f[raw_layout.DETECTOR_GROUP]
    data = det["data"]
    records = raw_layout.FrameRecords(det)
    todo = [i for i, path in enumerate(paths) if path.name not in done]
    report.n_reused += len(paths) - len(todo)
    workers = n_workers or os.cpu_count() or 2
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), unit="frame", desc="ingest")
    last_flush = time.monotonic()
    buffers = _Buffers(keep=2 * workers + 4)
    try:
        with ThreadPoolExecutor(workers, thread_name_prefix="xrdflow-ingest",
                                initializer=_single_threaded_codecs) as pool:
            pending: deque = deque()
            # frames are made as they are submitted, and each compressed chunk is dropped once
            # written: memory holds the look-ahead only, however many frames the run has
            it = (_Frame(i, paths[i]) for i in todo)
            for frame in it:  # bounded look-ahead keeps memory flat
                pending.append(pool.submit(_read_one, frame, shape, dtype, compression, buffers))
                if len(pending) >= 2 * workers:
                    break
            while pending:
                frame = pending.popleft().result()
                nxt = next(it, None)
                if nxt is not None:
                    pending.append(pool.submit(_read_one, nxt, shape, dtype, compression, buffers))
                i = frame.index
                if frame.error is not None:
                    if not skip_bad:
                        for fut in pending:
                            fut.cancel()
                        raise BadFrameError(frame.path, frame.error)
                    log.warning("bad frame %s: %s", frame.path, frame.error)
                    report.bad.append((frame.path.name, frame.error))
                    records.set(i, sha256=frame.sha256, valid=False, error=frame.error)
                else:
                    data.id.write_direct_chunk((i, 0, 0), frame.chunk)
                    frame.chunk = None
                    buffers.give(*frame.buffers)
                    frame.buffers.clear()
                    records.set(i, sha256=frame.sha256, crc32=frame.crc32, valid=True, stat=frame.stat,
                                pixels=frame.pixels)
                    report.n_written += 1
                if bar is not None:
                    bar.update(1)
                now = time.monotonic()
                if now - last_flush > _FLUSH_EVERY_S:
                    records.write()
                    f.flush()
                    last_flush = now
    finally:  # what was stored stays usable for a resume, whatever stopped the loop
        records.write()
        if bar is not None:
            bar.close()
