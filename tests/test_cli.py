"""The xrdflow command: each subcommand end to end, and errors as one clear line."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import xrdflow
from xrdflow.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "xrdflow.cli", *args], capture_output=True, text=True)


def test_ingest_command(small_frames, tmp_path, capsys):
    frames, paths = small_frames
    out = tmp_path / "raw.nxs"
    assert main(["ingest", str(tmp_path / "src"), "-o", str(out), "--energy", "87.1"]) == 0
    assert "12 frames (12 written" in capsys.readouterr().out
    np.testing.assert_array_equal(xrdflow.open_frames(out).values, frames)


def test_ingest_bad_frame_is_one_line_and_nonzero(small_frames, tmp_path):
    frames, paths = small_frames
    paths[3].write_bytes(b"garbage")
    out = tmp_path / "raw.nxs"
    proc = run_cli("ingest", str(tmp_path / "src"), "-o", str(out), "--energy", "87.1")
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "frame_4.tif" in proc.stderr and "unreadable" in proc.stderr
    assert not out.exists()
    proc = run_cli("ingest", str(tmp_path / "src"), "-o", str(out), "--energy", "87.1", "--skip-bad")
    assert proc.returncode == 0 and "bad frame frame_4.tif" in proc.stdout


@pytest.mark.parametrize(
    "args,needle",
    [
        (["ingest", "nowhere", "-o", "x.nxs", "--energy", "87.1"], "nowhere"),
        (["ingest", ".", "-o", "x.nxs", "--energy", "-3"], "energy_kev"),
        (["ingest", ".", "-o", "x.nxs", "--energy", "abc"], "--energy"),
        (["ingest", ".", "-o", "x.nxs"], "--energy"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_arguments(tmp_path, args, needle, monkeypatch):
    monkeypatch.chdir(tmp_path)
    proc = run_cli(*args)
    assert proc.returncode != 0
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "x.nxs").exists()
