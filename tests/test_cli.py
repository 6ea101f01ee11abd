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


def _write_mg_pattern(path):
    """One Mg pattern (.xy, q in 1/nm) with the three first peaks on a flat background."""
    q = np.linspace(21.0, 27.0, 600)
    y = 10 + sum(a * np.exp(-0.5 * ((q - c) / 0.05) ** 2) for a, c in [(500, 22.61), (300, 24.12), (800, 25.62)])
    np.savetxt(path, np.c_[q, y], header="q_nm^-1")
    return path


def test_fit_command_by_phase_and_by_centers(tmp_path, capsys):
    from xrdflow import crystal, units

    xy = _write_mg_pattern(tmp_path / "p.xy")
    out = tmp_path / "r.nxs"
    wavelength = float(units.energy_to_wavelength(87.1))
    assert main(["fit", str(xy), "--phase", "Mg", "--reflections", "10-10", "0002", "10-11",
                 "--half-width", "0.3", "--wavelength-a", str(wavelength), "-o", str(out)]) == 0
    assert "3 fits, 3 ok" in capsys.readouterr().out
    res = xrdflow.open_result(out)
    # the same selection as the workflow's [peaks] (crystal.select_reflections)
    picked = crystal.select_reflections("Mg", ["10-10", "0002", "10-11"], energy_kev=87.1)
    assert list(res["peak"].values) == list(picked["reflection"].values)
    np.testing.assert_allclose(res["position"].values[0], [22.61, 24.12, 25.62], atol=1e-3)

    assert main(["fit", str(xy), "--centers", "22.61", "24.12", "--half-width", "0.3",
                 "--error-model", "poisson", "--overlap", "raise", "-o", str(tmp_path / "c.nxs")]) == 0
    by_centers = xrdflow.open_result(tmp_path / "c.nxs")
    assert "poisson" in (by_centers.attrs.get("error_model"), by_centers.attrs.get("weights"))
    with pytest.warns(DeprecationWarning, match="--centres: deprecated; use '--centers'"):
        assert main(["fit", str(xy), "--centres", "22.61", "24.12", "--half-width", "0.3",
                     "--error-model", "poisson", "-o", str(tmp_path / "old.nxs")]) == 0
    np.testing.assert_array_equal(xrdflow.open_result(tmp_path / "old.nxs")["position"].values,
                                  by_centers["position"].values)


def test_fit_command_shapes_joint_and_chebyshev(tmp_path, capsys):
    """xrdflow fit with a pseudo-Voigt doublet 1.5 FWHM apart: --overlap joint resolves both
    peaks at their true positions on a curved (Chebyshev) background; the options land in
    the result's attrs; a bad background names the option."""
    from xrdflow.profiles import peak

    q = np.linspace(21.0, 27.0, 1200)
    truth = [(600.0, 24.00), (400.0, 24.15)]
    y = 40 + 5 * (q - 24) ** 2 + sum(peak(q, a, c, 0.1, "pseudo_voigt", eta=0.3) for a, c in truth)
    xy = tmp_path / "d.xy"
    np.savetxt(xy, np.c_[q, y], header="q_nm^-1")
    out = tmp_path / "d.nxs"
    assert main(["fit", str(xy), "--centers", "24.0", "24.15", "--half-width", "0.4", "--shape", "pseudo_voigt",
                 "--overlap", "joint", "--share", "eta", "--background", "chebyshev2", "-o", str(out)]) == 0
    assert "2 fits, 2 ok" in capsys.readouterr().out
    res = xrdflow.open_result(out)
    assert res.attrs["shape"] == "pseudo_voigt" and res.attrs["background_model"] == "chebyshev2"
    assert res.attrs["overlap"] == "joint" and res.attrs["share"] == "eta"
    np.testing.assert_allclose(res["position"].values[0], [24.00, 24.15], atol=1e-6)
    np.testing.assert_allclose(res["eta"].values[0], [0.3, 0.3], atol=1e-6)
    np.testing.assert_allclose(res["amplitude"].values[0], [600.0, 400.0], rtol=1e-5)
    assert main(["fit", str(xy), "--centers", "24.0", "--half-width", "0.4", "--background", "chebyshev6",
                 "-o", str(tmp_path / "bad.nxs")]) != 0
    assert "background: Chebyshev order must be 0 to 4, got 6" in capsys.readouterr().err
    assert not (tmp_path / "bad.nxs").exists()


def test_vocabularies_and_defaults_come_from_options():
    import argparse

    from xrdflow import options
    from xrdflow.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))

    def action(command, dest):
        return next(a for a in sub.choices[command]._actions if a.dest == dest)

    assert tuple(action("ingest", "compression").choices) == options.COMPRESSIONS
    assert action("ingest", "compression").default == options.DEFAULT_COMPRESSION
    assert tuple(action("integrate", "engine").choices) == options.ENGINES
    assert tuple(action("integrate", "unit").choices) == options.INTEGRATION_UNITS
    assert tuple(action("integrate", "error_model").choices) == options.ERROR_MODELS
    assert action("fit", "background").default == options.DEFAULT_BACKGROUND  # any Chebyshev order too
    assert tuple(action("fit", "shape").choices) == options.SHAPES
    assert action("fit", "shape").default == options.DEFAULT_SHAPE
    assert tuple(action("fit", "share").choices) == tuple(options.SHAREABLE)
    assert tuple(action("fit", "link").choices) == options.LINKS
    assert tuple(action("fit", "overlap").choices) == options.OVERLAP_POLICIES
    args = parser.parse_args(["integrate", "raw.nxs", "--poni", "g.poni", "--npt", "10", "-o", "p.nxs"])
    assert args.polarization is options.DEFAULT_POLARIZATION is None  # as the API and the config
    assert tuple(args.method.split(",")) == options.DEFAULT_METHOD
    assert args.engine == options.DEFAULT_ENGINE and args.dark is None and args.flat is None


def test_cli_calls_public_functions_only():
    import inspect
    import re

    from xrdflow import cli

    assert not re.findall(r"from \.+_\w+ import|from \.\w+\._\w+ import", inspect.getsource(cli))


@pytest.mark.parametrize("after", ["KeyError('a cache entry the interrupt left half-made')",
                                   "RuntimeError('the cluster went away while closing')"])
def test_ctrl_c_exits_130_even_when_the_teardown_fails(tmp_path, after):
    """Ctrl-C during a run exits 130 with 'xrdflow: interrupted', also when an error raised
    while the interrupt unwinds (a cluster's or a cache's teardown cut short) replaces the
    KeyboardInterrupt: it is part of the interruption, not a failure of the run."""
    code = (
        "import os, signal, sys, time\n"
        "import xrdflow.workflow as wf\n"
        "from xrdflow.cli import main\n"
        "def run_workflow(cfg, **kwargs):\n"
        "    try:\n"
        "        os.kill(os.getpid(), signal.SIGINT); time.sleep(30)\n"
        "    finally:\n"
        f"        raise {after}\n"
        "wf.run_workflow = run_workflow\n"
        "wf.load_config = lambda *a, **k: None\n"
        "sys.exit(main(['run', 'any.toml']))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "xrdflow: interrupted"
