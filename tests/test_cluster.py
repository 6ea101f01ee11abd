"""Compute backends: local schedulers, a local distributed cluster bound to 127.0.0.1,
an existing scheduler started as a separate process, and config validation."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys

import dask
import dask.array as da
import pytest

from xrdflow.cluster import ComputeConfig, compute_context


def test_local_scheduler_is_used():
    with compute_context(ComputeConfig(scheduler="synchronous"), echo=None) as client:
        assert client is None
        assert dask.config.get("scheduler") == "synchronous"


def test_local_cluster_listens_on_loopback_only():
    lines = []
    with compute_context(ComputeConfig(n_workers=1, memory_limit="2GiB"), echo=lines.append) as client:
        info = client.scheduler_info()
        assert info["address"].startswith("tcp://127.0.0.1:")
        for worker in info["workers"]:
            assert worker.startswith("tcp://127.0.0.1:")
        assert "127.0.0.1" in client.dashboard_link
        assert int(da.ones(10, chunks=5).sum().compute()) == 10
    assert lines and "dashboard at http://127.0.0.1" in lines[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_existing_scheduler_in_another_process():
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    sched = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                              "--port", str(port), "--no-dashboard"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address,
                               "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with compute_context(ComputeConfig(scheduler=address), echo=None) as client:
            client.wait_for_workers(1, timeout=60)
            assert int(da.arange(100, chunks=10).sum().compute()) == 4950
    finally:
        for proc in (worker, sched):
            proc.terminate()
            proc.wait(timeout=30)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"scheduler": "cluster-please"}, "compute.scheduler"),
        ({"n_workers": 0}, "compute.n_workers"),
        ({"threads_per_worker": 0}, "compute.threads_per_worker"),
        ({"jobqueue": {"kind": "mainframe"}}, "compute.jobqueue.kind"),
        ({"jobqueue": {"kind": "slurm"}, "scheduler": "tcp://1.2.3.4:8786"}, "not both"),
    ],
)
def test_bad_config_names_the_key(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ComputeConfig(**kwargs)


# ------------------------------------------------------------------ batch-queue path
SLURM_SPEC = {"kind": "slurm", "cores": 1, "processes": 1, "memory": "1GB", "jobs": 1}


@pytest.mark.parametrize(
    "changes,match",
    [
        ({"cores": None}, r"compute\.jobqueue\.cores: required"),
        ({"memory": None}, r"compute\.jobqueue\.memory: required"),
        ({"partition": "debug"}, r"compute\.jobqueue\.partition: dask-jobqueue calls it 'queue'"),
        ({"wall_time": "01:00:00"}, r"compute\.jobqueue\.wall_time: unknown key \(did you mean 'walltime'\?\)"),
        ({"memory": "lots"}, r"compute\.jobqueue\.memory: expected a size"),
        ({"processes": 4}, r"compute\.jobqueue\.processes: at most cores"),
        ({"worker_timeout": 0}, r"compute\.jobqueue\.worker_timeout"),
        ({"max_resubmits": -1}, r"compute\.jobqueue\.max_resubmits"),
        ({"host": "0.0.0.0"}, r"compute\.jobqueue\.host: not a key here; use \[compute\] host"),
    ],
)
def test_jobqueue_table_checked_eagerly(changes, match):
    pytest.importorskip("dask_jobqueue")
    spec = {k: v for k, v in {**SLURM_SPEC, **changes}.items() if v is not None}
    with pytest.raises(ValueError, match=match):
        ComputeConfig(jobqueue=spec)


def test_jobqueue_n_workers_counts_jobs():
    pytest.importorskip("dask_jobqueue")
    spec = {k: v for k, v in SLURM_SPEC.items() if k != "jobs"}
    assert ComputeConfig(n_workers=2, jobqueue=spec).jobqueue["jobs"] == 2  # was 1 job, silently
    assert ComputeConfig(n_workers=3, jobqueue={**spec, "cores": 2, "processes": 2}).jobqueue["jobs"] == 2
    with pytest.raises(ValueError, match=r"compute\.n_workers: 2 worker processes are 2 jobs of 1, but "
                                         r"jobqueue\.jobs = 1"):
        ComputeConfig(n_workers=2, jobqueue=SLURM_SPEC)
    defaults = ComputeConfig(jobqueue=SLURM_SPEC).jobqueue
    assert defaults["worker_timeout"] == 120 and defaults["max_resubmits"] == 10


def test_jobqueue_without_dask_jobqueue_names_the_key(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)  # import fails
    with pytest.raises(ValueError, match=r"compute\.jobqueue: needs the dask-jobqueue package"):
        ComputeConfig(jobqueue=SLURM_SPEC)


def test_importing_dask_jobqueue_keeps_the_sigint_handler():
    """dask-jobqueue installs `lambda *_: sys.exit()` for SIGINT on import (Ctrl-C would exit 0)."""
    pytest.importorskip("dask_jobqueue")
    code = ("import signal, os, time\n"
            "from xrdflow.cluster import import_jobqueue\n"
            "import_jobqueue()\n"
            "assert signal.getsignal(signal.SIGINT) is signal.default_int_handler\n"
            "try:\n"
            "    os.kill(os.getpid(), signal.SIGINT); time.sleep(5)\n"
            "except KeyboardInterrupt:\n"
            "    raise SystemExit(130)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 130, done.stderr


FAKE_SBATCH = """#!/bin/sh
# sbatch for tests: runs the job script here, in its own session; or refuses it
if [ -n "$XRDFLOW_FAKE_SBATCH_FAIL" ]; then
  echo "sbatch: error: invalid partition specified: nosuchpartition" >&2
  echo "sbatch: error: Batch job submission failed: Invalid partition name specified" >&2
  exit 1
fi
script=$(mktemp)  # dask-jobqueue removes its file when sbatch returns
cp "$1" "$script"
setsid sh "$script" >/dev/null 2>&1 </dev/null &
echo "Submitted batch job $!"
"""
FAKE_SCANCEL = """#!/bin/sh
kill -TERM -- "-$1" 2>/dev/null
exit 0
"""


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """sbatch/scancel stand-ins on PATH: the dask-jobqueue SLURM path without a SLURM."""
    pytest.importorskip("dask_jobqueue")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH), ("scancel", FAKE_SCANCEL)):
        (bindir / name).write_text(text)
        (bindir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return bindir


def _listening(pids) -> set[str]:
    import psutil

    return {c.laddr.ip for c in psutil.net_connections("inet") if c.status == psutil.CONN_LISTEN and c.pid in pids}


def _cluster_pids(address: str) -> set[int]:
    """This process and every process started for the cluster at ``address``."""
    import psutil

    pids = {os.getpid()}
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if address in " ".join(proc.info["cmdline"] or []):
            pids.add(proc.info["pid"])
            pids.update(child.pid for child in proc.children(recursive=True))
    return pids


def test_jobqueue_listens_on_loopback_and_prints_the_true_addresses(fake_slurm):
    lines = []
    spec = {**SLURM_SPEC, "jobs": 1, "start_timeout": 90}
    with compute_context(ComputeConfig(jobqueue=spec), echo=lines.append) as client:
        client.wait_for_workers(1, timeout=90)
        assert int(da.ones(10, chunks=5).sum().compute()) == 10
        info = client.scheduler_info()
        pids = _cluster_pids(info["address"])
        assert len(pids) >= 3  # this process, the worker's nanny, the worker
        assert _listening(pids) == {"127.0.0.1"}
        assert info["address"].startswith("tcp://127.0.0.1:")
        assert all(w.startswith("tcp://127.0.0.1:") for w in info["workers"])
        port = info["services"]["dashboard"]
    assert lines == [f"xrdflow: slurm cluster of 1 jobs, scheduler at {info['address']}, "
                     f"dashboard at http://127.0.0.1:{port}/status"]


def test_job_refused_by_the_batch_system_fails_in_one_line(fake_slurm, monkeypatch):
    import time

    from xrdflow.cluster import wait_for

    monkeypatch.setenv("XRDFLOW_FAKE_SBATCH_FAIL", "1")
    t0 = time.monotonic()
    with pytest.raises(RuntimeError) as info:
        with compute_context(ComputeConfig(jobqueue={**SLURM_SPEC, "jobs": 2}), echo=None) as client:
            wait_for(client.compute(da.ones(10, chunks=5).sum()), client)
    assert time.monotonic() - t0 < 30
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("[compute] jobqueue: the job could not be submitted: sbatch: error: invalid partition")


@pytest.mark.slow
def test_all_workers_lost_fails_after_worker_timeout(fake_slurm):
    import time

    from xrdflow.cluster import wait_for

    spec = {**SLURM_SPEC, "worker_timeout": 3, "max_resubmits": 0, "start_timeout": 90}
    with pytest.raises(RuntimeError, match=r"(all workers lost and none came back within 3 s|max_resubmits = 0)"):
        with compute_context(ComputeConfig(jobqueue=spec, dashboard=False), echo=None) as client:
            client.wait_for_workers(1, timeout=90)
            pids = _cluster_pids(client.scheduler_info()["address"]) - {os.getpid()}
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
            t0 = time.monotonic()
            wait_for(client.compute(dask.delayed(time.sleep)(600)), client)
    assert time.monotonic() - t0 < 60


def test_cli_ctrl_c_exits_130_after_dask_jobqueue_was_imported(tmp_path):
    pytest.importorskip("dask_jobqueue")
    code = ("import os, signal, sys, threading, time\n"
            "import dask_jobqueue  # installs `lambda *_: sys.exit()` for SIGINT\n"
            "from xrdflow import cli\n"
            "cli._cmd_run = lambda args: time.sleep(60)\n"
            "threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()\n"
            "sys.exit(cli.main(['run', 'x.toml']))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "xrdflow: interrupted"
