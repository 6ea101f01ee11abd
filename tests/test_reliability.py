"""Reliability under faults, bad input and load (RELIABILITY.md lists every scenario).

Real faults in real runs, kept small so CI stays fast: SIGKILL of a dask worker and of the
whole run, a full disk (a file size limit), bad frames, bad configs, two writers at once,
many frames and many runs in one process, thread counts and schedulers, and what listens
on the network. Slow scenarios carry the ``slow`` marker (``.ci/run`` runs them too).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import fabio
import h5py
import numpy as np
import pytest
import xarray as xr

import xrdflow
from xrdflow import nexus
from xrdflow.workflow import load_config, run_workflow

from conftest import write_tiffs

ingest_mod = importlib.import_module("xrdflow._ingest")  # the fuzz test drives its frame reader

SIZE = (512, 512)  # the PerkinElmer panel binned 4x: same physics in q, fast
N_FRAMES = 48  # hard links to the 6 synthetic frames: enough for a run to be interrupted
POLL_S = 0.002
TIMEOUT_S = 300.0


# --------------------------------------------------------------------------- helpers


def wait_for(condition, what: str, timeout: float = TIMEOUT_S, proc: subprocess.Popen | None = None):
    """Poll ``condition()`` until it is true (bounded); fail naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process ended (rc {proc.returncode}) before {what}: "
                                 f"{proc.stderr.read() if proc.stderr else ''}")
        time.sleep(POLL_S)
    raise AssertionError(f"timed out waiting for {what}")


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def assert_bit_identical(a: xr.Dataset, b: xr.Dataset):
    """Every data variable and coordinate holds the same bytes (NaN payloads included)."""
    assert set(a.data_vars) == set(b.data_vars)
    assert set(a.coords) == set(b.coords)
    for name in [*a.data_vars, *a.coords]:
        va, vb = np.asarray(a[name].values), np.asarray(b[name].values)
        assert va.shape == vb.shape, name
        if va.dtype.kind in "OUS":  # labels: the string width may differ once read back
            assert va.tolist() == vb.tolist(), name
        else:
            assert va.dtype == vb.dtype and va.tobytes() == vb.tobytes(), f"{name} differs"


def toml_config(folder: Path, out: Path, *, frames: str | None = "frames/mg_*.tif", raw: Path | None = None,
                scheduler: str = "threads", extra: str = "") -> Path:
    """A small run config: 48 frames of 512x512, the true geometry, 300 bins, 3 Mg peaks."""
    source = f'raw = "{raw}"' if raw else f'frames = "{frames}"\nlog = "frames/log.csv"'
    text = f"""
[run]
name = "reliability"
output = "{out}"
[input]
{source}
energy_kev = 87.1
[geometry]
poni = "input/tensile/mg.poni"
[integration]
npt = 300
radial_range = [21.0, 27.0]
frames_per_chunk = 1
[peaks]
phase = "Mg"
reflections = ["10-10", "0002", "10-11"]
half_width = 0.35
[output]
figures = false
[compute]
scheduler = "{scheduler}"
dashboard = false
batch_frames = 2
{extra}
"""
    path = folder / f"{out.name}.toml"
    path.write_text(text)
    return path


def link_frames(src: Path, dst: Path, n: int) -> list[Path]:
    """``n`` numbered frames (hard links cycling through the synthetic ones) and a log."""
    dst.mkdir(parents=True, exist_ok=True)
    tifs = sorted((src / "input" / "tensile").glob("mg_*.tif"))
    rows = ["frame,applied_strain"]
    paths = []
    for i in range(1, n + 1):
        path = dst / f"mg_{i:05d}.tif"
        os.link(tifs[(i - 1) % len(tifs)], path)
        rows.append(f"{i},{(i - 1) * 1e-4!r}")
        paths.append(path)
    (dst / "log.csv").write_text("\n".join(rows) + "\n")
    return paths


def xrdflow_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "xrdflow.cli", *args]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """6 synthetic Mg frames (512x512) + true geometry, linked up to 48 frames; and the
    undisturbed run of them (threaded scheduler): the reference every fault is checked against."""
    from xrdflow.synthetic import write_demo

    folder = tmp_path_factory.mktemp("reliability")
    write_demo(folder / "input", n_frames=6, shape=SIZE)
    link_frames(folder, folder / "frames", N_FRAMES)
    cfg = toml_config(folder, folder / "baseline")
    res = run_workflow(load_config(cfg), echo=None)
    assert res.result.sizes["frame"] == N_FRAMES and (res.result["status"] == 0).all()
    return {
        "folder": folder,
        "result": res.result,
        "patterns": xrdflow.open_patterns(res.outputs["patterns"]).values,
        "raw": res.outputs["raw"],
        "raw_frames": xrdflow.open_frames(res.outputs["raw"]).values,
    }


def check_run_against_baseline(demo, out: Path):
    result = xrdflow.open_result(out / "result.nxs")
    assert_bit_identical(result, demo["result"])
    assert xrdflow.open_patterns(out / "patterns.nxs").values.tobytes() == demo["patterns"].tobytes()
    np.testing.assert_array_equal(xrdflow.open_frames(out / "raw.nxs").values, demo["raw_frames"])
    assert not list(out.glob("*.partial"))


def assert_final_files_sound(out: Path):
    """Whatever stands under a final name is complete and readable."""
    if (out / "raw.nxs").exists():
        frames = xrdflow.open_frames(out / "raw.nxs")
        assert bool(frames["valid"].all()) and frames.sizes["frame"] == N_FRAMES
        frames.isel(frame=[0, -1]).values  # the pixels read
    for name in ("patterns.nxs", "result.nxs"):
        if (out / name).exists():
            with h5py.File(out / name, "r") as f:
                assert "entry" in f
    if (out / "xrdflow-run.json").exists():
        json.loads((out / "xrdflow-run.json").read_text())


# --------------------------------------------------------------------------- SIGKILL


@pytest.mark.slow
def test_sigkill_of_the_whole_run_during_integration_then_rerun_is_identical(demo, tmp_path):
    folder = demo["folder"]
    out = tmp_path / "killed"
    cfg = toml_config(folder, out)
    proc = subprocess.Popen(xrdflow_cmd("run", str(cfg)), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        wait_for(lambda: (out / "patterns.nxs.partial").exists(), "patterns.nxs.partial", proc=proc)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # killed while the patterns were being written: only the .partial holds them
    assert (out / "patterns.nxs.partial").exists()
    assert not (out / "patterns.nxs").exists() and not (out / "result.nxs").exists()
    assert_final_files_sound(out)  # the raw NeXus file (stage done) stays complete and readable
    np.testing.assert_array_equal(xrdflow.open_frames(out / "raw.nxs").values, demo["raw_frames"])

    res = run_workflow(load_config(cfg), echo=None)
    assert res.reused == ["ingest"]  # the raw file is reused; the reduction starts again
    check_run_against_baseline(demo, out)


@pytest.mark.slow
def test_sigkill_during_ingest_then_resume_is_identical(demo, tmp_path):
    """Kill ``xrdflow ingest`` once a quarter of the raw file is on disk, then ingest again."""
    folder = demo["folder"]
    n = 400
    src = link_frames(folder, tmp_path / "frames", n)
    out = tmp_path / "raw.nxs"
    partial = nexus.partial_path(out)
    expected = n * (demo["raw"].stat().st_size / N_FRAMES)
    before = {p.name: sha256(p) for p in src[:6]}
    proc = subprocess.Popen(xrdflow_cmd("ingest", str(tmp_path / "frames"), "-o", str(out), "--energy", "87.1"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: partial.exists() and partial.stat().st_size > expected / 4, "a quarter of the frames",
                 proc=proc)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert partial.exists() and not out.exists()  # nothing under the final name

    report = xrdflow.ingest(tmp_path / "frames", out, energy_kev=87.1)
    assert report.n_reused + report.n_written == n and not report.bad
    assert not partial.exists()
    frames = xrdflow.open_frames(out)
    assert frames.sizes["frame"] == n
    reference = demo["raw_frames"]
    for i in (0, 1, n // 2, n - 1):  # frame i is synthetic frame i % 6, bit for bit
        np.testing.assert_array_equal(frames[i].values, reference[i % 6])
    assert {p.name: sha256(p) for p in src[:6]} == before  # inputs untouched


@pytest.mark.slow
def test_worker_sigkilled_mid_run_result_is_bit_identical(demo, tmp_path):
    from distributed import Client, LocalCluster

    folder = demo["folder"]
    out = tmp_path / "worker-killed"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster, set_as_default=False) as client:
        cfg = toml_config(folder, out, raw=demo["raw"], scheduler=cluster.scheduler_address)
        outcome = {}

        def run():
            try:
                outcome["result"] = run_workflow(load_config(cfg), echo=None)
            except BaseException as exc:  # reported by the main thread
                outcome["error"] = exc

        thread = threading.Thread(target=run)
        thread.start()
        try:
            pids = client.run(os.getpid)

            def busy_worker():
                if not (out / "patterns.nxs.partial").exists():
                    return None
                busy = [w for w, tasks in client.processing().items() if tasks]
                return busy[0] if busy else None

            victim = wait_for(busy_worker, "a worker busy with the run")
            os.kill(pids[victim], signal.SIGKILL)
            killed_before_end = not (out / "patterns.nxs").exists()
        finally:
            thread.join(TIMEOUT_S)
        assert not thread.is_alive(), "the run hangs after a worker was killed"
        assert "error" not in outcome, outcome.get("error")
        assert killed_before_end
        wait_for(lambda: len(client.scheduler_info()["workers"]) == 2, "the nanny to restart the worker")
        assert pids[victim] not in client.run(os.getpid).values()  # the process really died
    check_run_against_baseline_without_raw = xrdflow.open_result(out / "result.nxs")
    assert_bit_identical(check_run_against_baseline_without_raw, demo["result"])
    assert xrdflow.open_patterns(out / "patterns.nxs").values.tobytes() == demo["patterns"].tobytes()


# --------------------------------------------------------------------------- two writers


@pytest.mark.slow
def test_second_run_on_the_same_output_is_refused_and_first_unharmed(demo, tmp_path):
    folder = demo["folder"]
    out = tmp_path / "shared-out"
    cfg = toml_config(folder, out)
    first = subprocess.Popen(xrdflow_cmd("run", str(cfg)), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    try:
        lock = out / "xrdflow-run.lock"
        wait_for(lambda: lock.exists() and lock.read_text() == str(first.pid), "the first run's lock", proc=first)
        with pytest.raises(nexus.OutputLockedError, match=r"another xrdflow process is writing"):
            run_workflow(load_config(cfg), echo=None)
        still_running = first.poll() is None
        first.wait(TIMEOUT_S)
    finally:
        first.kill()
        first.wait()
    assert still_running, "the first run ended before the second tried: the test proved nothing"
    assert first.returncode == 0, first.stderr.read()
    check_run_against_baseline(demo, out)


def test_second_writer_refused_by_the_cli_in_one_line(demo, tmp_path):
    out = tmp_path / "locked"
    out.mkdir()
    cfg = toml_config(demo["folder"], out)
    with nexus.output_lock(out / "xrdflow-run"):
        proc = subprocess.run(xrdflow_cmd("run", str(cfg)), capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1
    assert f"{out / 'xrdflow-run'}: another xrdflow process is writing this file" in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == []  # nothing written


def test_lock_holds_when_the_previous_holder_lets_go_during_acquire(tmp_path, monkeypatch):
    """A lets go (unlinking the lock file) between B's open and B's flock: B must then hold
    the lock on the file under the lock's name, so a third writer C is refused."""
    target = tmp_path / "out.nxs"
    first = nexus.output_lock(target)
    first.__enter__()
    real_open = os.open
    calls = []

    def open_then_release(path, *args, **kwargs):
        fd = real_open(path, *args, **kwargs)
        if not calls and str(path).endswith(".lock"):
            calls.append(path)
            first.__exit__(None, None, None)  # A finishes right now
        return fd

    monkeypatch.setattr(nexus._atomic.os, "open", open_then_release)
    second = nexus.output_lock(target)
    second.__enter__()
    monkeypatch.setattr(nexus._atomic.os, "open", real_open)
    try:
        assert calls
        with pytest.raises(nexus.OutputLockedError):
            with nexus.output_lock(target):
                pass
    finally:
        second.__exit__(None, None, None)
    with nexus.output_lock(target):  # and free again afterwards
        pass


# --------------------------------------------------------------------------- disk full

_LIMITED = """
import resource, signal, sys
limit = int(sys.argv[1])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
from xrdflow.cli import main
sys.exit(main(sys.argv[2:]))
"""


def run_limited(limit: int, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _LIMITED, str(limit), *args], capture_output=True, text=True,
                          timeout=TIMEOUT_S)


def test_disk_full_during_ingest_names_the_file_and_resumes(demo, tmp_path):
    frames = demo["folder"] / "frames"
    before = {p.name: (sha256(p), p.stat().st_mtime_ns) for p in sorted(frames.glob("mg_0000*.tif"))}
    out = tmp_path / "raw.nxs"
    proc = run_limited(2_000_000, "ingest", str(frames), "-o", str(out), "--energy", "87.1")
    assert proc.returncode == 1, proc.stderr  # an error, not a crash (139) nor a success
    assert proc.stderr.count("\n") == 1
    assert f"{out}: disk full or file size limit reached while writing raw.nxs.partial" in proc.stderr
    assert not out.exists()  # nothing half-written under the final name
    assert {p.name: (sha256(p), p.stat().st_mtime_ns) for p in sorted(frames.glob("mg_0000*.tif"))} == before
    # with room again, the same command finishes and the file is right
    report = xrdflow.ingest(frames, out, energy_kev=87.1)
    assert report.n_reused + report.n_written == N_FRAMES
    np.testing.assert_array_equal(xrdflow.open_frames(out).values, demo["raw_frames"])


def test_disk_full_while_writing_patterns_names_the_file(demo, tmp_path):
    out = tmp_path / "full"
    cfg = toml_config(demo["folder"], out, raw=demo["raw"])
    raw_before = (sha256(demo["raw"]), demo["raw"].stat().st_mtime_ns)
    proc = run_limited(50_000, "run", str(cfg))  # patterns.nxs is ~95 kB
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("\n") == 1
    assert f"{out / 'patterns.nxs'}: disk full or file size limit reached" in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == []  # no partial, no result, no manifest
    assert (sha256(demo["raw"]), demo["raw"].stat().st_mtime_ns) == raw_before  # input untouched
    run_workflow(load_config(cfg), echo=None)
    result = xrdflow.open_result(out / "result.nxs")
    assert_bit_identical(result, demo["result"])


# --------------------------------------------------------------------------- bad frames


@pytest.mark.parametrize(
    "breakage,reason",
    [
        ("corrupt_header", "unreadable"),
        ("all_zero", "all-zero frame"),
        ("all_saturated", "every pixel saturated"),
        ("all_nan", "no finite pixel"),
        ("all_inf", "no finite pixel"),
    ],
)
def test_unusable_frames_are_refused_by_name_or_skipped(tmp_path, breakage, reason):
    rng = np.random.default_rng(3)
    dtype = np.float32 if breakage in ("all_nan", "all_inf") else np.uint16
    frames = rng.integers(1, 60000, size=(6, 32, 24)).astype(dtype)
    paths = write_tiffs(tmp_path / "src", frames)
    victim = paths[3]
    bad = frames[3].copy()
    if breakage == "corrupt_header":
        blob = bytearray(victim.read_bytes())
        blob[:8] = b"\x00\xffGARBLE"
        victim.write_bytes(bytes(blob))
    else:
        bad[...] = {"all_zero": 0, "all_saturated": 65535, "all_nan": np.nan, "all_inf": np.inf}[breakage]
        fabio.tifimage.TifImage(data=bad).write(str(victim))
    out = tmp_path / "raw.nxs"
    with pytest.raises(xrdflow.BadFrameError, match=rf"{victim.name}: .*{reason}"):
        xrdflow.ingest(paths, out, energy_kev=87.1)
    assert not out.exists()
    report = xrdflow.ingest(paths, out, energy_kev=87.1, skip_bad=True)
    assert [name for name, _ in report.bad] == [victim.name] and reason in report.bad[0][1]
    with pytest.warns(UserWarning, match=victim.name):
        good = xrdflow.open_frames(out)
    assert victim.name not in good["source_file"].values  # never mixed in
    np.testing.assert_array_equal(good.values, frames[[0, 1, 2, 4, 5]])


@pytest.mark.parametrize("kind", ["saturated", "nan", "inf", "negative"])
def test_partly_bad_frames_are_kept_bit_exact_and_flagged(tmp_path, kind):
    rng = np.random.default_rng(4)
    dtype = {"saturated": np.uint16, "nan": np.float32, "inf": np.float32, "negative": np.int32}[kind]
    frames = rng.integers(1, 60000, size=(5, 32, 24)).astype(dtype)
    value = {"saturated": 65535, "nan": np.nan, "inf": -np.inf, "negative": -7}[kind]
    frames[2, 4:9, :] = value  # 5 rows of 24 pixels
    paths = write_tiffs(tmp_path / "src", frames)
    out = tmp_path / "raw.nxs"
    report = xrdflow.ingest(paths, out, energy_kev=87.1)
    assert not report.bad
    stored = xrdflow.open_frames(out)
    assert stored.values.tobytes() == frames.tobytes()  # bit-exact, NaN payloads included
    name = {"saturated": "n_saturated", "nan": "n_nonfinite", "inf": "n_nonfinite", "negative": "n_negative"}[kind]
    assert stored[name].values.tolist() == [0, 0, 120, 0, 0]
    for other in {"n_saturated", "n_nonfinite", "n_negative"} - {name}:
        assert stored[other].values.tolist() == [0] * 5


def test_flags_travel_to_the_result_and_the_summary(demo, tmp_path):
    """A frame with a saturated band is integrated (the pixels are what the detector said)
    and the result and the summary say which frame it was."""
    src = sorted((demo["folder"] / "input" / "tensile").glob("mg_*.tif"))
    frames = [fabio.open(str(p)).data for p in src]
    frames[2][200:210, :] = 65535
    folder = tmp_path / "in"
    write_tiffs(folder / "frames", frames, prefix="mg_", width=5)
    (folder / "input" / "tensile").mkdir(parents=True)
    (folder / "input" / "tensile" / "mg.poni").write_bytes((demo["folder"] / "input/tensile/mg.poni").read_bytes())
    cfg = toml_config(folder, tmp_path / "out")
    text = cfg.read_text().replace('log = "frames/log.csv"\n', "")
    cfg.write_text(text)
    res = run_workflow(load_config(cfg), echo=None)
    assert res.result["n_saturated"].values.tolist() == [0, 0, 5120, 0, 0, 0]
    assert "flagged      frames: 1 with saturated pixels" in res.summary
    again = xrdflow.open_result(res.outputs["result"])
    assert again["n_saturated"].values.tolist() == [0, 0, 5120, 0, 0, 0]


def test_pickled_npy_frame_is_refused_never_unpickled(tmp_path):
    """A frame file holding a pickle is not loaded: no code from a user file ever runs."""
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    good = np.arange(12, dtype=np.uint16).reshape(3, 4)
    np.save(tmp_path / "f_1.npy", good)
    np.save(tmp_path / "f_2.npy", np.array([Evil()], dtype=object), allow_pickle=True)
    with pytest.raises(xrdflow.BadFrameError, match="f_2.npy"):
        xrdflow.ingest([tmp_path / "f_1.npy", tmp_path / "f_2.npy"], tmp_path / "raw.nxs", energy_kev=87.1)
    assert not marker.exists()


# --------------------------------------------------------------------------- bad configs and CLI


def _cli(capsys, *argv):
    from xrdflow.cli import main

    try:
        rc = main(list(argv))
    except SystemExit as exc:  # argparse usage errors
        rc = exc.code
    captured = capsys.readouterr()
    return rc, captured.err


_GOOD = """[run]
output = "out"
[input]
frames = "frames/*.tif"
energy_kev = 87.1
[geometry]
poni = "g.poni"
[integration]
npt = 300
radial_range = [21.0, 27.0]
[peaks]
centres = [22.6]
half_width = 0.3
"""


@pytest.mark.parametrize(
    "edit,needle",
    [
        (("energy_kev = 87.1", 'energy_kev = "87.1"'), "[input] energy_kev: must be a positive number, got '87.1'"),
        (("energy_kev = 87.1", "energy_kev = -87.1"), "[input] energy_kev: must be a positive number, got -87.1"),
        (("energy_kev = 87.1", "energy_kev = nan"), "[input] energy_kev: must be a positive number"),
        (("npt = 300", "npt = 0"), "[integration] npt: must be a positive integer, got 0"),
        (("npt = 300", "npt = 300.5"), "[integration] npt: must be a positive integer, got 300.5"),
        (("npt = 300", ""), "[integration] npt: missing required key"),
        (("npt = 300", "npt = 300\nbins = 4"), "[integration] bins: unknown key"),
        (("[21.0, 27.0]", "[27.0, 21.0]"), "[integration] radial_range: low must be below high"),
        (("[21.0, 27.0]", "[21.0]"), "[integration] radial_range: must be [low, high]"),
        (("half_width = 0.3", "half_width = 0"), "[peaks] half_width: must be a positive number, got 0"),
        (("[peaks]", "[peak]"), "[peak]: unknown section (did you mean 'peaks'?)"),
        (('output = "out"', 'output = 3'), "[run] output: must be a non-empty string, got 3"),
        (('half_width = 0.3', 'half_width = 0.3\n[output]\nresult = "../../x.nxs"'),
         "[output] result: must be a file name inside the output folder"),
        (('half_width = 0.3', 'half_width = 0.3\n[output]\nresult = "sub/x.nxs"'),
         "[output] result: must be a file name inside the output folder"),
        (('half_width = 0.3', 'half_width = 0.3\n[output]\npatterns = "."'),
         "[output] patterns: must be a file name inside the output folder"),
        (('half_width = 0.3', 'half_width = 0.3\n[output]\nresult = "xrdflow-run.json"'),
         "[output] result: 'xrdflow-run.json' is a name xrdflow uses"),
        (('half_width = 0.3', 'half_width = 0.3\n[compute]\nhost = ""'), "[compute] host: must be a non-empty string"),
        (("npt = 300", "npt = 300\nnpt = 301"), "not valid TOML"),
    ],
)
def test_bad_config_one_line_naming_the_key_nothing_written(tmp_path, capsys, edit, needle):
    cfg = tmp_path / "w.toml"
    cfg.write_text(_GOOD.replace(*edit))
    rc, err = _cli(capsys, "run", str(cfg))
    assert rc == 1
    assert err.count("\n") == 1 and err.startswith("xrdflow run: error: ")
    assert needle in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.toml"]  # nothing written


@pytest.mark.parametrize(
    "argv,needle,code",
    [
        (["run", "missing.toml"], "missing.toml: config file not found", 1),
        (["run"], "the following arguments are required: config", 2),
        (["run", "w.toml", "--scheduler", "bogus"], "[compute] scheduler", 1),
        (["ingest", "frames", "-o", "raw.nxs", "--energy", "-5"], "energy_kev: must be a positive number", 1),
        (["ingest", "frames", "-o", "raw.nxs", "--energy", "abc"], "argument --energy: invalid float value", 2),
        (["ingest", "nothing/*.tif", "-o", "raw.nxs", "--energy", "87.1"], "pattern matches no file", 1),
        (["integrate", "raw.nxs", "--poni", "g.poni", "--npt", "0", "-o", "p.nxs"], "g.poni: PONI file not found", 1),
        (["fit", "p.xy", "--centers", "22.6", "--half-width", "-1", "-o", "r.nxs"], "half_width", 1),
        (["sweep", "Mg", "--energy", "120", "30", "5"], "--energy: need 0 < LOW < HIGH", 1),
        (["sweep", "Mg", "--energy", "30", "120", "0"], "--energy: N must be a positive integer", 1),
    ],
)
def test_bad_cli_arguments_one_line_nothing_written(tmp_path, capsys, monkeypatch, argv, needle, code):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "w.toml").write_text(_GOOD)
    (tmp_path / "p.xy").write_text("# q_nm^-1\n22.0 1\n22.5 5\n23.0 1\n")
    rc, err = _cli(capsys, *argv)
    assert rc == code
    assert err.strip().count("\n") == 0 and needle in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.xy", "w.toml"]


# --------------------------------------------------------------------------- thread safety


@pytest.mark.slow
@pytest.mark.parametrize("threads", [1, 2, 8])
def test_bit_identical_for_any_thread_count(demo, tmp_path, threads):
    import dask

    out = tmp_path / f"threads{threads}"
    cfg = toml_config(demo["folder"], out, raw=demo["raw"], extra="")
    with dask.config.set(num_workers=threads):
        res = run_workflow(load_config(cfg), echo=None)
    assert_bit_identical(res.result, demo["result"])
    assert xrdflow.open_patterns(out / "patterns.nxs").values.tobytes() == demo["patterns"].tobytes()


# --------------------------------------------------------------------------- load


_PEAK_RSS = """
import json, resource, sys
from xrdflow.workflow import load_config, run_workflow
run_workflow(load_config(sys.argv[1]), echo=None)
print(json.dumps({"maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


@pytest.mark.slow
def test_peak_memory_flat_as_frames_grow(demo, tmp_path):
    """50 and 300 frames of 512x512 in one process each: peak memory must not follow the
    frame count. Holding the frames (as float64, what integration works in) would cost
    250 frames x 2 MiB = 500 MiB more; allow 64 MiB (allocator and per-frame result rows)."""
    peaks = {}
    for n in (50, 300):
        folder = tmp_path / f"n{n}"
        link_frames(demo["folder"], folder / "frames", n)
        (folder / "input" / "tensile").mkdir(parents=True)
        (folder / "input" / "tensile" / "mg.poni").write_bytes(
            (demo["folder"] / "input/tensile/mg.poni").read_bytes())
        cfg = toml_config(folder, folder / "out", extra="")
        cfg.write_text(cfg.read_text().replace("batch_frames = 2", "batch_frames = 8"))
        proc = subprocess.run([sys.executable, "-X", "faulthandler", "-c", _PEAK_RSS, str(cfg)],
                              capture_output=True, text=True, timeout=TIMEOUT_S)
        assert proc.returncode == 0, proc.stderr[-2000:]
        peaks[n] = json.loads(proc.stdout.strip().splitlines()[-1])["maxrss_kib"] / 1024
        assert xrdflow.open_result(folder / "out" / "result.nxs").sizes["frame"] == n
    print(f"peak RSS (MiB): {peaks}")
    assert peaks[300] - peaks[50] < 64, peaks


@pytest.mark.slow
def test_ten_runs_in_one_process_leak_neither_memory_nor_files(demo, tmp_path):
    import psutil

    me = psutil.Process()
    seen = []
    for i in range(10):
        cfg = toml_config(demo["folder"], tmp_path / f"run{i}", raw=demo["raw"])
        res = run_workflow(load_config(cfg), echo=None)
        assert_bit_identical(res.result, demo["result"])
        seen.append((me.memory_info().rss / 2**20, me.num_fds(), len(me.open_files()), me.num_threads()))
    print("rss MiB, fds, open files, threads after each run:", seen)
    # from the 2nd run on (caches warm), nothing grows
    assert seen[-1][1] <= seen[1][1], seen
    assert seen[-1][2] <= seen[1][2], seen
    assert seen[-1][3] <= seen[1][3], seen
    assert seen[-1][0] - seen[1][0] < 32, seen


# --------------------------------------------------------------------------- security


def test_local_cluster_and_dashboard_listen_on_loopback_only():
    import psutil

    from xrdflow.cluster import ComputeConfig, compute_context

    me = psutil.Process()
    with compute_context(ComputeConfig(n_workers=1, dashboard=True), echo=None) as client:
        assert client.scheduler.address.startswith("tcp://127.0.0.1:")
        assert "127.0.0.1" in client.dashboard_link
        procs = [me, *me.children(recursive=True)]
        listening = [c.laddr for p in procs for c in p.net_connections(kind="inet")
                     if c.status == psutil.CONN_LISTEN]
    assert len(listening) >= 3  # scheduler, dashboard, worker (and its nanny)
    assert {addr.ip for addr in listening} == {"127.0.0.1"}, listening


def test_no_unpickling_or_evaluation_in_the_package():
    src = Path(xrdflow.__file__).parent
    forbidden = ("pickle.load", "pickle.loads", "eval(", "exec(", "allow_pickle=True", "yaml.load(",
                 "marshal.load", "shelve.", "dill.")
    hits = [f"{p.relative_to(src)}: {needle}" for p in src.rglob("*.py")
            for needle in forbidden if needle in p.read_text()]
    assert hits == []


# --------------------------------------------------------------------------- fuzzing

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from xrdflow import _kernels as K  # noqa: E402

_FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def valid_tiff(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiff") / "f_1.tif"
    fabio.tifimage.TifImage(data=np.arange(32 * 24, dtype=np.uint16).reshape(32, 24)).write(str(path))
    return path.read_bytes()


@_FUZZ
@given(data=st.data(), suffix=st.sampled_from([".tif", ".edf", ".cbf", ".npy"]))
def test_fuzz_frame_reader_damaged_files(valid_tiff, data, suffix, tmp_path_factory):
    """Damaged or random bytes: the reader returns a 2D array or raises BadFrameError naming
    the file. Nothing else escapes (and nothing hangs)."""
    how = data.draw(st.sampled_from(["random", "truncate", "flip"]))
    if how == "random":
        blob = data.draw(st.binary(min_size=0, max_size=4096))
    elif how == "truncate":
        blob = valid_tiff[: data.draw(st.integers(0, len(valid_tiff) - 1))]
    else:
        blob = bytearray(valid_tiff)
        for _ in range(data.draw(st.integers(1, 16))):
            pos = data.draw(st.integers(0, len(blob) - 1))
            blob[pos] = data.draw(st.integers(0, 255))
        blob = bytes(blob)
    path = tmp_path_factory.mktemp("fuzz") / f"frame_1{suffix if how == 'random' else '.tif'}"
    path.write_bytes(blob)
    frame = ingest_mod._read_one(ingest_mod._Frame(0, path), (32, 24), np.dtype(np.uint16), "bitshuffle")
    if frame.error is None:
        assert frame.chunk is not None and frame.crc32
    else:
        assert isinstance(frame.error, str) and frame.error


@_FUZZ
@given(text=st.text(alphabet=st.sampled_from(list("0123456789.-+eE naninf#,\n\tq_nm^-1")), max_size=400))
def test_fuzz_pattern_text_reader(text, tmp_path_factory):
    path = tmp_path_factory.mktemp("xy") / "p.xy"
    path.write_text(text)
    try:
        pat = xrdflow.read_patterns(path, unit="q_nm^-1")
    except ValueError as exc:
        assert "p.xy" in str(exc) or str(exc)
    else:
        assert pat.ndim >= 1 and pat.sizes[pat.dims[-1]] >= 1


_X = np.linspace(20.0, 30.0, 501)


@st.composite
def fit_case(draw):
    n = _X.size
    kind = draw(st.sampled_from(["peak", "flat", "nan", "spikes", "noise", "huge", "negative", "inf"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    centre = draw(st.floats(19.0, 31.0))
    sigma = draw(st.floats(1e-4, 3.0))
    amp = draw(st.floats(-1e3, 1e6))
    y = 10.0 + amp * np.exp(-((_X - centre) ** 2) / (2 * sigma**2)) + rng.normal(0, 1, n)
    if kind == "flat":
        y[:] = draw(st.floats(-1e6, 1e6))
    elif kind == "nan":
        y[rng.random(n) < draw(st.floats(0, 1))] = np.nan
    elif kind == "inf":
        y[rng.integers(0, n, 3)] = np.inf
    elif kind == "spikes":
        y[rng.integers(0, n, draw(st.integers(1, 20)))] = draw(st.floats(1e2, 1e12))
    elif kind == "noise":
        y = rng.normal(0, draw(st.floats(1e-6, 1e6)), n)
    elif kind == "huge":
        y = y * 1e150
    elif kind == "negative":
        y = -np.abs(y)
    lo = draw(st.integers(0, n - 1))
    hi = draw(st.integers(lo, n))
    return y, lo, hi


@_FUZZ
@given(case=fit_case(), linear=st.booleans(), max_iter=st.integers(1, 60), poisson=st.booleans())
def test_fuzz_fit_kernel_status_not_exceptions(case, linear, max_iter, poisson):
    y, lo, hi = case
    out = np.full((1, 1, 1, K.NFIELD), -99.0)
    K.fit_batch(_X, y[None, None, :], np.array([lo]), np.array([hi]), linear, False, max_iter, 1e-8, 1e-12,
                3.0, 7, out, poisson)
    res = out[0, 0, 0]
    assert int(res[K.F_STATUS]) in (K.OK, K.NOT_CONVERGED, K.NO_PEAK, K.PEAK_AT_EDGE, K.BAD_INPUT)
    assert res[K.F_STATUS] == int(res[K.F_STATUS])
    assert 0 <= res[K.F_NITER] <= 4 * (max_iter + 1)  # a few bounded attempts: no endless loop
    if res[K.F_STATUS] == K.OK:
        assert np.isfinite(res[K.F_POSITION]) and _X[lo] <= res[K.F_POSITION] <= _X[hi - 1]
        assert res[K.F_SIGMA] > 0


@_FUZZ
@given(case=fit_case())
def test_fuzz_fit_peaks_masks_values_where_not_ok(case):
    y, lo, hi = case
    pat = xr.DataArray(y[None, :], dims=("frame", "q"), coords={"q": _X}, attrs={"radial_unit": "q_nm^-1"})
    centre = float(_X[min(max(lo, 1), _X.size - 2)])
    fits = xrdflow.fit_peaks(pat, {"p": centre}, half_width=0.5)
    status = fits["status"].values
    for name in ("position", "fwhm", "amplitude", "d_spacing"):
        values = fits[name].values
        assert np.isnan(values[status != 0]).all()
        assert np.isfinite(values[status == 0]).all()
