"""Safe output files: temporary name then rename, one writer at a time, disk-full errors.

Every file xrdflow writes (NeXus, PONI, figures, manifests, synthetic inputs) goes through
:func:`atomic_output`, so no half-written file ever stands under its final name.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path
from typing import Iterator

__all__ = ["OutputLockedError", "atomic_output", "output_lock", "partial_path"]


class OutputLockedError(RuntimeError):
    """Another process is writing the same output file."""


def _lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


@contextlib.contextmanager
def output_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` for as long as the block runs.

    The lock is an ``flock`` on ``<path>.lock``: the kernel releases it when the process
    dies, even by SIGKILL, so a killed run never leaves a stale lock behind.

    Raises
    ------
    OutputLockedError
        If another process holds the lock.
    """
    path = Path(path)
    lock = _lock_path(path)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise OutputLockedError(
                    f"{path}: another xrdflow process is writing this file (lock {lock} is held)"
                ) from None
            raise
        # The holder before us unlinks the lock file as it lets go: if it did so between our
        # open and our flock, we hold a lock on a name nobody sees any more, and a third
        # writer would lock a fresh file. Hold the lock only on the file the name points to.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def partial_path(path: str | os.PathLike) -> Path:
    """The temporary name under which ``path`` is written before it is renamed into place."""
    path = Path(path)
    return path.with_name(path.name + ".partial")


@contextlib.contextmanager
def atomic_output(
    path: str | os.PathLike, *, keep_partial: bool = False, lock: bool = True
) -> Iterator[Path]:
    """Write a file under a temporary name and rename it to ``path`` only on success.

    Yields the temporary path (``<path>.partial``, in the same folder so the rename is
    atomic). If the block raises, the temporary file is removed, unless ``keep_partial``
    (used by resumable writers, which pick it up again on the next run). A file under the
    final name is therefore always complete.

    Parameters
    ----------
    path
        Final output path. Its folder must exist.
    keep_partial
        Leave the temporary file in place when the block fails.
    lock
        Take :func:`output_lock` on ``path`` for the duration, so a second writer is
        refused clearly instead of corrupting the first.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "x.h5"
    >>> with atomic_output(out) as tmp:
    ...     _ = tmp.write_bytes(b"data")
    >>> out.read_bytes()
    b'data'
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path}: output folder {path.parent} does not exist")
    tmp = partial_path(path)
    with output_lock(path) if lock else contextlib.nullcontext():
        try:
            yield tmp
        except BaseException as exc:
            if not keep_partial:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
            full = disk_full_errno(exc)
            if full:
                # HDF5 reports a full disk without naming the file: name it
                raise OSError(full, f"{path}: disk full or file size limit reached while writing "
                                    f"{tmp.name} ({os.strerror(full)}); "
                                    + ("the partial file is kept for a resume" if keep_partial
                                       else "nothing was written")) from exc
            raise
        try:
            _fsync_file(tmp)
            os.replace(tmp, path)
        except OSError as exc:
            if not keep_partial:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
            raise OSError(exc.errno, f"{path}: could not finish writing: {exc.strerror}") from exc


_FULL_ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


def disk_full_errno(exc: BaseException) -> int:
    """The errno if ``exc`` says the disk (or the file size limit, or a quota) is full, else 0."""
    if not isinstance(exc, (OSError, RuntimeError)):  # h5py raises either
        return 0
    if getattr(exc, "errno", None) in _FULL_ERRNOS:
        return exc.errno
    text = str(exc)  # h5py: "... errno = 27, error message = 'File too large' ..."
    for code in _FULL_ERRNOS:
        if f"errno = {code}," in text or os.strerror(code) in text:
            return code
    return 0


def _fsync_file(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"{path}: the writer produced no file")
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
