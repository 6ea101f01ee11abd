"""Shared fixtures: the real data folder (../shared/data) and small frame folders."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("XRDFLOW_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared(*parts: str) -> Path:
    """Path inside ../shared/data; skips the test with a clear reason where it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(
            f"real test data not found at {path} (the developers' ../shared/data folder; "
            "set XRDFLOW_SHARED_DATA to point elsewhere)"
        )
    return path


@pytest.fixture
def shared_data():
    """Callable fixture: ``shared_data("lightform-i12-ti64-pixium", "pixium_03150.tif")``."""
    return shared


def write_tiffs(folder: Path, frames, *, prefix: str = "frame_", start: int = 1, width: int = 0):
    """Write frames as numbered TIFFs with fabio; returns the paths in frame order."""
    import fabio

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, frame in enumerate(frames, start=start):
        path = folder / f"{prefix}{i:0{width}d}.tif"
        fabio.tifimage.TifImage(data=np.asarray(frame)).write(str(path))
        paths.append(path)
    return paths


@pytest.fixture
def small_frames(tmp_path):
    """12 random uint16 frames of 64x48 written as frame_1.tif ... frame_12.tif (unpadded)."""
    rng = np.random.default_rng(42)
    frames = rng.integers(0, 60000, size=(12, 64, 48), dtype=np.uint16)
    paths = write_tiffs(tmp_path / "src", frames)
    return frames, paths
