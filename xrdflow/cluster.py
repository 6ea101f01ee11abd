"""Where the dask graph runs: a local dask.distributed cluster by default, an existing
scheduler by address, a batch-queue cluster (dask-jobqueue) for facilities, or one of dask's
local schedulers.

Everything listens on 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Iterator

from .options import DEFAULT_HOST, JOBQUEUE_KINDS, LOCAL_SCHEDULERS, choice, positive_int

log = logging.getLogger(__name__)

__all__ = ["ComputeConfig", "compute_context", "LOCAL_SCHEDULERS", "JOBQUEUE_KINDS"]


@dataclass(frozen=True)
class ComputeConfig:
    """How to compute.

    Parameters
    ----------
    scheduler
        ``None`` or ``"local"``: a dask.distributed LocalCluster sized to this machine (default).
        ``"threads"``, ``"synchronous"``, ``"processes"``: dask's local schedulers, no cluster.
        ``"tcp://host:port"`` (or any address distributed accepts): an existing scheduler.
    n_workers, threads_per_worker
        Size of the local cluster (default: one single-threaded worker process per core, the
        right shape for pyFAI and numba, which are single-threaded inside a task here).
    memory_limit
        Per-worker memory limit of the local cluster (dask syntax, e.g. ``"4GiB"``; ``"auto"``).
    dashboard
        Serve the dask dashboard (local cluster only), on ``host``.
    host
        Interface the local scheduler, workers and dashboard listen on (default 127.0.0.1).
    jobqueue
        A batch-queue cluster instead: ``{"kind": "slurm", "jobs": 4, "cores": 32,
        "memory": "128GB", "queue": ..., "walltime": ...}``; every key but ``kind`` and
        ``jobs`` goes to the dask-jobqueue cluster class (install ``dask-jobqueue``).
    """

    scheduler: str | None = None
    n_workers: int | None = None
    threads_per_worker: int = 1
    memory_limit: str = "auto"
    dashboard: bool = True
    host: str = DEFAULT_HOST
    jobqueue: dict[str, Any] | None = field(default=None, hash=False)

    def __post_init__(self):
        if self.n_workers is not None:
            positive_int(_integral(self.n_workers), "compute.n_workers")
        positive_int(_integral(self.threads_per_worker), "compute.threads_per_worker")
        if self.jobqueue is not None:
            choice(str(self.jobqueue.get("kind", "")).lower(), "compute.jobqueue.kind", JOBQUEUE_KINDS)
            if self.scheduler not in (None, "local"):
                raise ValueError("compute: give either a scheduler or a jobqueue, not both")
        if self.scheduler not in (None, "local", *LOCAL_SCHEDULERS) and "://" not in str(self.scheduler):
            raise ValueError(
                f"compute.scheduler: expected 'local', one of {LOCAL_SCHEDULERS} or an address like "
                f"tcp://host:8786, got {self.scheduler!r}")


def _integral(value):
    """A float holding an integer (``4.0``) as that integer; anything else unchanged."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def compute_context(config: ComputeConfig | None = None, *, echo=print) -> Iterator[Any]:
    """Set up the compute backend for the block; yields the distributed Client or None.

    The dashboard address is echoed (``echo=None`` to stay quiet). Clusters started here
    are closed when the block ends; an existing scheduler is only disconnected from.

    Examples
    --------
    >>> with compute_context(ComputeConfig(scheduler="synchronous")) as client:
    ...     client is None
    True
    """
    config = config or ComputeConfig()
    say = echo or (lambda *a, **k: None)
    if config.scheduler in LOCAL_SCHEDULERS:
        import dask

        with dask.config.set(scheduler=config.scheduler):
            yield None
        return

    from distributed import Client, LocalCluster

    if config.jobqueue is not None:
        cluster = _jobqueue_cluster(config.jobqueue)
        with cluster, Client(cluster) as client:
            say(f"xrdflow: {config.jobqueue['kind']} cluster, dashboard at {client.dashboard_link}")
            yield client
        return
    if config.scheduler not in (None, "local"):
        with Client(config.scheduler) as client:
            say(f"xrdflow: connected to {config.scheduler}, dashboard at {client.dashboard_link}")
            yield client
        return
    n_workers = config.n_workers or max(1, _default_workers() // config.threads_per_worker)
    cluster = LocalCluster(
        n_workers=n_workers,
        threads_per_worker=config.threads_per_worker,
        processes=True,
        host=config.host,
        dashboard_address=f"{config.host}:8787" if config.dashboard else None,
        memory_limit=config.memory_limit,
    )
    with cluster, Client(cluster) as client:
        if config.dashboard:
            say(f"xrdflow: {n_workers} workers, dashboard at {client.dashboard_link}")
        yield client


def _jobqueue_cluster(spec: dict[str, Any]):
    try:
        import dask_jobqueue
    except ImportError:
        raise RuntimeError(
            "compute.jobqueue: needs the dask-jobqueue package (pip install dask-jobqueue)") from None
    spec = dict(spec)
    kind = spec.pop("kind").lower()
    jobs = int(spec.pop("jobs", 1))
    classes = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster", "lsf": "LSFCluster",
               "htcondor": "HTCondorCluster", "moab": "MoabCluster", "oar": "OARCluster"}
    cluster = getattr(dask_jobqueue, classes[kind])(**spec)
    cluster.scale(jobs=jobs)
    return cluster
