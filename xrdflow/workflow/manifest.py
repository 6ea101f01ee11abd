"""The run manifest ``<output>/xrdflow-run.json``: a fingerprint of each stage's inputs, so
that a re-run reuses every stage whose inputs are unchanged and whose output is complete."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

__all__ = ["Manifest", "BatchCheckpoint", "fingerprint", "MANIFEST_NAME", "BATCHES_NAME"]

MANIFEST_NAME = "xrdflow-run.json"
#: the folder of a run's complete batches while integrate+fit is not finished
BATCHES_NAME = "xrdflow-run.batches"


def fingerprint(*parts: Any) -> str:
    """A digest of ``parts`` (JSON-able values; an existing file counts by name, size and
    modification time).

    >>> fingerprint({"npt": 300}, [1, 2]) == fingerprint({"npt": 300}, [1, 2])
    True
    >>> fingerprint({"npt": 300}) == fingerprint({"npt": 301})
    False
    """
    def stat(value):
        if isinstance(value, (str, Path)) and Path(value).is_file():
            st = Path(value).stat()
            return [str(value), st.st_size, st.st_mtime_ns]
        return value

    blob = json.dumps([stat(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class Manifest:
    """Stage fingerprints of one output folder, written atomically after each stage.

    >>> import tempfile
    >>> m = Manifest(Path(tempfile.mkdtemp()) / MANIFEST_NAME)
    >>> m.done("reduce", "abc")
    False
    >>> m.record("reduce", "abc")
    >>> Manifest(m.path).done("reduce", "abc")
    True
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.stages = json.loads(self.path.read_text()).get("stages", {})
        except (OSError, ValueError, AttributeError):
            self.stages = {}

    def done(self, stage: str, fingerprint: str, *outputs: Path) -> bool:
        """Whether ``stage`` ran with these inputs and every one of ``outputs`` exists."""
        return self.stages.get(stage) == fingerprint and all(Path(o).is_file() for o in outputs)

    def record(self, stage: str, fingerprint: str) -> None:
        """Store ``stage``'s fingerprint (the file is replaced whole, never half-written)."""
        from .. import __version__
        from ..nexus import atomic_output

        self.stages[stage] = fingerprint
        text = json.dumps({"xrdflow": __version__, "stages": self.stages}, indent=1)
        # the run holds its own lock on the output folder: no second lock per file
        with atomic_output(self.path, lock=False) as tmp:
            tmp.write_text(text)


class BatchCheckpoint:
    """The batches of a streaming stage already stored, so that a run killed mid-way starts
    again at the first batch not stored.

    The manifest records, under ``"<stage>:batches"``, the stage's fingerprint, the batch
    bounds and how many batches are complete; each complete batch's arrays (its patterns,
    their errors, its fits) are kept in ``folder``, one ``.npz`` per batch written whole
    (plain arrays: nothing is unpickled when they are read back).

    >>> import tempfile, numpy as np
    >>> root = Path(tempfile.mkdtemp())
    >>> cp = BatchCheckpoint(Manifest(root / MANIFEST_NAME), "reduce", "abc", root / "batches")
    >>> cp.resume()
    (None, [])
    >>> cp.begin([0, 2, 4]); cp.store(0, {"fits": np.arange(3)})
    >>> bounds, stored = BatchCheckpoint(Manifest(root / MANIFEST_NAME), "reduce", "abc", root / "batches").resume()
    >>> bounds, stored[0]["fits"]
    ([0, 2, 4], array([0, 1, 2]))
    >>> BatchCheckpoint(Manifest(root / MANIFEST_NAME), "reduce", "other", root / "batches").resume()
    (None, [])
    >>> cp.clear(); (root / "batches").exists(), (root / MANIFEST_NAME).exists()
    (False, False)
    """

    def __init__(self, manifest: Manifest, stage: str, fingerprint: str, folder: str | Path):
        self.manifest, self.key, self.fingerprint = manifest, f"{stage}:batches", fingerprint
        self.folder = Path(folder)
        self._bounds: list[int] | None = None

    def _entry(self) -> dict:
        entry = self.manifest.stages.get(self.key)
        return entry if isinstance(entry, dict) and entry.get("fingerprint") == self.fingerprint else {}

    def resume(self) -> tuple[list[int] | None, list[dict[str, Any]]]:
        """``(bounds, arrays of each complete batch)`` of an earlier run with the same
        fingerprint, or ``(None, [])``."""
        import numpy as np

        entry = self._entry()
        bounds, done = entry.get("bounds"), int(entry.get("done", 0))
        if not bounds:
            return None, []
        stored = []
        for i in range(done):
            try:
                with np.load(self._file(i), allow_pickle=False) as npz:
                    stored.append({k: npz[k] for k in npz.files})
            except (OSError, ValueError, EOFError, KeyError):
                break  # a batch file lost or cut: that batch and the next ones are computed again
        self._bounds = list(bounds)
        return list(bounds), stored

    def begin(self, bounds: list[int]) -> None:
        """A new series of batches, none complete (recorded with the first one stored)."""
        self._bounds = [int(b) for b in bounds]

    def store(self, index: int, arrays: dict[str, Any]) -> None:
        """Batch ``index`` is complete: keep its ``arrays`` (numbers and strings only)."""
        import numpy as np

        from ..nexus import atomic_output

        arrays = {k: np.asarray(v) for k, v in arrays.items()}
        for key, value in arrays.items():
            if value.dtype.hasobject:  # would need pickle to read back
                raise ValueError(f"{key}: Python objects cannot be kept in a checkpoint")
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_output(self._file(index), lock=False) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
        self._record({"fingerprint": self.fingerprint, "bounds": self._bounds, "done": index + 1})

    def clear(self) -> None:
        """Forget the batches (the stage finished, or has nothing worth resuming)."""
        import contextlib
        import shutil

        shutil.rmtree(self.folder, ignore_errors=True)
        if self.key in self.manifest.stages:
            del self.manifest.stages[self.key]
            if self.manifest.stages:
                with contextlib.suppress(OSError):  # a stale entry only costs the batches again
                    self._record(None)
            else:  # the manifest held nothing else: as if never written
                with contextlib.suppress(FileNotFoundError):
                    self.manifest.path.unlink()

    def _file(self, index: int) -> Path:
        return self.folder / f"batch-{index:05d}.npz"

    def _record(self, entry: dict | None) -> None:
        from .. import __version__
        from ..nexus import atomic_output

        if entry is not None:
            self.manifest.stages[self.key] = entry
        text = json.dumps({"xrdflow": __version__, "stages": self.manifest.stages}, indent=1)
        with atomic_output(self.manifest.path, lock=False) as tmp:
            tmp.write_text(text)
