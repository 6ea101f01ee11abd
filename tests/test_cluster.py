"""Compute backends: local schedulers, a local distributed cluster bound to 127.0.0.1,
an existing scheduler started as a separate process, and config validation."""

from __future__ import annotations

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
