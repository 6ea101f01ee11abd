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
    bounds and how many batches are complete; each complete batch's in-memory results
    (the fits, the pattern errors) are kept in ``folder`` (one file per batch, written
    whole), next to the partial output file that holds its patterns.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> cp = BatchCheckpoint(Manifest(root / MANIFEST_NAME), "reduce", "abc", root / "batches")
    >>> cp.resume()
    (None, [])
    >>> cp.begin([0, 2, 4]); cp.store(0, {"fits": 1})
    >>> BatchCheckpoint(Manifest(root / MANIFEST_NAME), "reduce", "abc", root / "batches").resume()
    ([0, 2, 4], [{'fits': 1}])
    >>> BatchCheckpoint(Manifest(root / MANIFEST_NAME), "reduce", "other", root / "batches").resume()
    (None, [])
    """

    def __init__(self, manifest: Manifest, stage: str, fingerprint: str, folder: str | Path):
        self.manifest, self.key, self.fingerprint = manifest, f"{stage}:batches", fingerprint
        self.folder = Path(folder)

    def _entry(self) -> dict:
        entry = self.manifest.stages.get(self.key)
        return entry if isinstance(entry, dict) and entry.get("fingerprint") == self.fingerprint else {}

    def resume(self) -> tuple[list[int] | None, list[Any]]:
        """``(bounds, results of the complete batches)`` of an earlier run with the same
        fingerprint, or ``(None, [])``."""
        import pickle

        entry = self._entry()
        bounds, done = entry.get("bounds"), int(entry.get("done", 0))
        if not bounds:
            return None, []
        results = []
        for i in range(done):
            try:
                results.append(pickle.loads(self._file(i).read_bytes()))
            except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ValueError):
                break
        return list(bounds), results

    def begin(self, bounds: list[int]) -> None:
        """A new series of batches (none complete)."""
        self._record({"fingerprint": self.fingerprint, "bounds": [int(b) for b in bounds], "done": 0})

    def store(self, index: int, result: Any) -> None:
        """Batch ``index`` is complete (its output already flushed): keep ``result``."""
        import pickle

        from ..nexus import atomic_output

        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_output(self._file(index), lock=False) as tmp:
            tmp.write_bytes(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
        self._record({**self._entry(), "done": index + 1})

    def clear(self) -> None:
        """Forget the batches (the stage finished, or has nothing worth resuming)."""
        import shutil

        shutil.rmtree(self.folder, ignore_errors=True)
        if self.key in self.manifest.stages:
            del self.manifest.stages[self.key]
            self._record(None)

    def _file(self, index: int) -> Path:
        return self.folder / f"batch-{index:05d}.pickle"

    def _record(self, entry: dict | None) -> None:
        from .. import __version__
        from ..nexus import atomic_output

        if entry is not None:
            self.manifest.stages[self.key] = entry
        text = json.dumps({"xrdflow": __version__, "stages": self.manifest.stages}, indent=1)
        with atomic_output(self.manifest.path, lock=False) as tmp:
            tmp.write_text(text)
