"""The run manifest ``<output>/xrdflow-run.json``: a fingerprint of each stage's inputs, so
that a re-run reuses every stage whose inputs are unchanged and whose output is complete."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

__all__ = ["Manifest", "fingerprint", "MANIFEST_NAME"]

MANIFEST_NAME = "xrdflow-run.json"


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
