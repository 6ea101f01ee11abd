"""Where the dask graph runs: a local dask.distributed cluster by default, an existing
scheduler by address, a batch-queue cluster (dask-jobqueue) for facilities, or one of dask's
local schedulers.

Everything listens on 127.0.0.1 unless told otherwise, the batch-queue path included, and
the addresses printed are the ones the scheduler really bound.

On a distributed cluster a :class:`Watch` follows the workers while the run computes
(:func:`wait_for`): a job the batch system refused, or every worker lost with none back
within ``worker_timeout`` seconds, ends the run with a one-line error instead of a hang; on
a batch queue, lost jobs (walltime, preemption, ``scancel``) are submitted again, up to
``max_resubmits`` times.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import ipaddress
import logging
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

from .options import DEFAULT_HOST, JOBQUEUE_KINDS, LOCAL_SCHEDULERS, choice, positive, positive_int

log = logging.getLogger(__name__)

__all__ = ["ComputeConfig", "compute_context", "LOCAL_SCHEDULERS", "JOBQUEUE_KINDS", "JOBQUEUE_DEFAULTS",
           "import_jobqueue", "check_jobqueue", "wait_for", "Watch", "MatrixPlugin"]

#: the keys of ``[compute] jobqueue`` that xrdflow reads itself (the others go to dask-jobqueue)
JOBQUEUE_DEFAULTS = {
    "kind": None,
    "jobs": 1,  # batch jobs kept running (each holds ``processes`` worker processes)
    "worker_timeout": 120.0,  # s: all workers lost and none back -> the run fails
    "start_timeout": 600.0,  # s: no worker ever connected (jobs queued, or dying at start) -> fails
    "max_resubmits": 10,  # jobs lost (walltime, preemption, scancel) submitted again, in all
}
_CLASSES = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster", "lsf": "LSFCluster",
            "htcondor": "HTCondorCluster", "moab": "MoabCluster", "oar": "OARCluster"}
#: what users write (other tools' words) -> dask-jobqueue's word
_SPELLINGS = {"partition": "queue", "qos": "job_extra_directives", "mem": "memory", "time": "walltime",
              "time_limit": "walltime", "cpus": "cores", "ncpus": "cores", "cpus_per_task": "cores",
              "n_cores": "cores", "nodes": "jobs", "n_jobs": "jobs", "n_workers": "jobs", "workers": "jobs",
              "log_dir": "log_directory", "logs": "log_directory", "output": "log_directory",
              "host": "[compute] host (or scheduler_options = {host = ...})",
              "dashboard_address": "scheduler_options = {dashboard_address = ...}",
              "extra": "worker_extra_args", "job_extra": "job_extra_directives",
              "env_extra": "job_script_prologue", "header_skip": "job_directives_skip",
              "project": "account", "timeout": "worker_timeout"}
#: dask-jobqueue keywords xrdflow sets itself
_RESERVED = {"n_workers", "job_cls", "loop", "asynchronous", "name", "scheduler", "scheduler_cls",
             "dashboard_address", "host", "silence_logs", "config_name"}


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
        right shape for pyFAI and numba, which are single-threaded inside a task here). With
        a ``jobqueue``, ``n_workers`` worker processes in all: ``ceil(n_workers / processes)``
        jobs (give it or ``jobs``, not two different counts).
    memory_limit
        Per-worker memory limit of the local cluster (dask syntax, e.g. ``"4GiB"``; ``"auto"``).
    dashboard
        Serve the dask dashboard, on ``host``.
    host
        Interface the scheduler, workers and dashboard listen on (default 127.0.0.1), on the
        local and the batch-queue paths. On a batch queue whose nodes are other machines, give
        the submit host's address on the cluster network (or ``jobqueue.interface``).
    jobqueue
        A batch-queue cluster instead: ``{"kind": "slurm", "jobs": 4, "cores": 32,
        "memory": "128GB", "queue": ..., "walltime": ..., "log_directory": ...}``. xrdflow
        reads ``kind``, ``jobs``, ``worker_timeout``, ``start_timeout`` and ``max_resubmits``
        (:data:`JOBQUEUE_DEFAULTS`); every other key goes to the dask-jobqueue cluster class
        (install ``xrdflow[cluster]``). Checked here, before anything runs.
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
            if self.scheduler not in (None, "local"):
                raise ValueError("compute: give either a scheduler or a jobqueue, not both")
            object.__setattr__(self, "jobqueue", check_jobqueue(self.jobqueue, n_workers=self.n_workers))
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


# --------------------------------------------------------------------------- jobqueue
def import_jobqueue():
    """``import dask_jobqueue``, keeping this process's SIGINT handler.

    dask-jobqueue replaces it on import by ``lambda *_: sys.exit()``, which turns Ctrl-C into
    a silent exit with status 0; the handler in place before the import is put back.
    """
    main = threading.current_thread() is threading.main_thread()
    before = signal.getsignal(signal.SIGINT) if main else None
    try:
        import dask_jobqueue
    except ImportError:
        raise ValueError("compute.jobqueue: needs the dask-jobqueue package "
                         "(pip install 'xrdflow[cluster]' or dask-jobqueue)") from None
    if main:
        now = signal.getsignal(signal.SIGINT)
        if now is not before and getattr(now, "__module__", "").startswith("dask_jobqueue"):
            signal.signal(signal.SIGINT, before if before is not None else signal.default_int_handler)
    return dask_jobqueue


def _accepted_keys(cls) -> set[str]:
    from dask_jobqueue.core import Job, JobQueueCluster

    keys = set()
    for fn in (cls.job_cls.__init__, Job.__init__, JobQueueCluster.__init__):
        keys.update(p.name for p in inspect.signature(fn).parameters.values()
                    if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name != "self")
    return keys - _RESERVED


def _unknown_key(key: str, known) -> ValueError:
    where = f"compute.jobqueue.{key}"
    word = _SPELLINGS.get(key)
    if word and " " in word:
        return ValueError(f"{where}: not a key here; use {word}")
    if word and word in known:
        return ValueError(f"{where}: dask-jobqueue calls it '{word}'")
    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.5)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return ValueError(f"{where}: unknown key{hint}")


def check_jobqueue(spec: dict[str, Any], *, n_workers: int | None = None) -> dict[str, Any]:
    """Check a ``[compute] jobqueue`` table (needs dask-jobqueue) -> the table with
    xrdflow's own keys filled in; every error names the key.

    ``n_workers`` (worker processes in all) becomes ``ceil(n_workers / processes)`` jobs.
    """
    if not isinstance(spec, dict):
        raise ValueError(f"compute.jobqueue: must be a table, got {spec!r}")
    spec = dict(spec)
    kind = choice(str(spec.get("kind", "")).lower(), "compute.jobqueue.kind", JOBQUEUE_KINDS)
    dask_jobqueue = import_jobqueue()
    cls = getattr(dask_jobqueue, _CLASSES[kind])
    known = _accepted_keys(cls) | set(JOBQUEUE_DEFAULTS)
    for key in spec:
        if key not in known:
            raise _unknown_key(key, known)
    import dask

    for key in ("cores", "memory"):
        if spec.get(key) is None and dask.config.get(f"jobqueue.{cls.job_cls.config_name}.{key}", None) is None:
            raise ValueError(f"compute.jobqueue.{key}: required (per job, e.g. cores = 4, memory = \"16GB\")")
    out = {**JOBQUEUE_DEFAULTS, **spec, "kind": kind}
    if "cores" in spec:
        out["cores"] = positive_int(_integral(spec["cores"]), "compute.jobqueue.cores")
    if "processes" in spec:
        out["processes"] = positive_int(_integral(spec["processes"]), "compute.jobqueue.processes")
        if out.get("cores") and out["processes"] > out["cores"]:
            raise ValueError(f"compute.jobqueue.processes: at most cores ({out['cores']}), got {out['processes']}")
    if "memory" in spec:
        from dask.utils import parse_bytes

        try:
            parse_bytes(spec["memory"])
        except (ValueError, TypeError):
            raise ValueError(f"compute.jobqueue.memory: expected a size like \"16GB\", got {spec['memory']!r}") from None
    for key in ("worker_timeout", "start_timeout"):
        out[key] = positive(out[key], f"compute.jobqueue.{key}")
    if isinstance(out["max_resubmits"], bool) or not isinstance(out["max_resubmits"], int) or out["max_resubmits"] < 0:
        raise ValueError(f"compute.jobqueue.max_resubmits: must be an integer >= 0, got {out['max_resubmits']!r}")
    job_kwargs = _job_kwargs(out)
    try:  # builds the job script only: nothing is submitted
        job = cls.job_cls("tcp://127.0.0.1:8786", name="check", **job_kwargs)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"compute.jobqueue: {str(exc).splitlines()[0]}") from None
    jobs = positive_int(_integral(out["jobs"]), "compute.jobqueue.jobs")
    if n_workers is not None:
        from_workers = math.ceil(n_workers / job.worker_processes)
        if "jobs" in spec and from_workers != jobs:
            raise ValueError(f"compute.n_workers: {n_workers} worker processes are {from_workers} jobs of "
                             f"{job.worker_processes}, but jobqueue.jobs = {jobs}: give one of them")
        jobs = from_workers
    out["jobs"] = jobs
    return out


def _job_kwargs(spec: dict[str, Any]) -> dict[str, Any]:
    """What goes to a dask-jobqueue Job class (not the cluster's own keywords)."""
    cluster_only = {"scheduler_options", "shared_temp_directory", "security", "interface", "protocol"}
    return {k: v for k, v in spec.items()
            if k not in JOBQUEUE_DEFAULTS and k not in cluster_only and k != "scheduler_options"}


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _interface_of(host: str) -> str | None:
    """The network interface holding address ``host`` on this machine, if any."""
    try:
        import psutil

        for name, addrs in psutil.net_if_addrs().items():
            if any(a.address == host for a in addrs):
                return name
    except (ImportError, OSError):  # pragma: no cover
        pass
    return "lo" if _is_loopback(host) else None


def _cluster_kwargs(spec: dict[str, Any], config: ComputeConfig) -> dict[str, Any]:
    """The dask-jobqueue cluster's keywords: the user's, with the scheduler, its dashboard
    and (on loopback) the workers bound to what ``[compute]`` asks (host, dashboard)."""
    kwargs = {k: v for k, v in spec.items() if k not in JOBQUEUE_DEFAULTS}
    sched = dict(kwargs.pop("scheduler_options", None) or {})
    if "interface" not in kwargs and "interface" not in sched:
        sched.setdefault("host", config.host)
    if config.dashboard:
        host = sched.get("host", config.host)
        sched.setdefault("dashboard_address", f"{host}:8787")
    else:
        sched["dashboard"] = False
        sched.setdefault("dashboard_address", None)
    kwargs["scheduler_options"] = sched
    extra = list(kwargs.get("worker_extra_args") or [])
    host = sched.get("host")
    if host and _is_loopback(host):
        kwargs.setdefault("interface", _interface_of(host))
        if "--dashboard-address" not in extra and "--no-dashboard" not in extra:
            extra += ["--dashboard-address", f"{host}:0"] if config.dashboard else ["--no-dashboard"]
    elif not config.dashboard and "--no-dashboard" not in extra:
        extra.append("--no-dashboard")
    kwargs["worker_extra_args"] = extra
    kwargs.setdefault("silence_logs", "error")
    return kwargs


class Watch:
    """Follows a cluster's workers while a run computes; :meth:`check` raises RuntimeError
    (one line) when the run cannot go on: a job the batch system refused, jobs lost more
    than ``max_resubmits`` times, no worker ever connected within ``start_timeout`` seconds,
    or every worker lost with none back within ``worker_timeout`` seconds."""

    def __init__(self, client, *, worker_timeout: float = 120.0, start_timeout: float = 600.0,
                 jobs: int | None = None, max_resubmits: int | None = None, what: str = "[compute]"):
        self.client = client
        self.worker_timeout, self.start_timeout = float(worker_timeout), float(start_timeout)
        self.jobs, self.max_resubmits, self.what = jobs, max_resubmits, what
        self.error: str | None = None
        self.started = 0  # jobs submitted
        self.seen = False
        self.last_ok = time.monotonic()

    def job_class(self, base):
        """A subclass of the dask-jobqueue Job ``base`` that reports to this watch."""
        watch = self

        class Watched(base):
            async def start(self):
                from distributed.core import Status

                watch.started += 1
                if watch.max_resubmits is not None and watch.started > watch.jobs + watch.max_resubmits:
                    watch.fail(f"jobs lost more than max_resubmits = {watch.max_resubmits} times "
                               "(walltime, preemption or scancel): not submitted again")
                    self.status = Status.running  # a placeholder: the run fails at the next check
                    return
                if watch.started > watch.jobs:
                    log.warning("%s: a job was lost; submitting another (%d of max_resubmits = %d)",
                                watch.what, watch.started - watch.jobs, watch.max_resubmits)
                try:
                    await super().start()
                except Exception as exc:  # noqa: BLE001 - the batch system's own message
                    watch.fail(f"the job could not be submitted: {_first_error(exc)}")
                    self.status = Status.running

        Watched.__name__ = Watched.__qualname__ = base.__name__
        return Watched

    def fail(self, message: str) -> None:
        if self.error is None:
            self.error = f"{self.what}: {message}"

    def check(self) -> None:
        if self.error:
            raise RuntimeError(self.error)
        try:
            n = len(self.client.nthreads())
        except Exception:  # noqa: BLE001 - a scheduler not answering counts as no worker
            n = 0
        now = time.monotonic()
        if n:
            self.seen, self.last_ok = True, now
            return
        limit = self.worker_timeout if self.seen else self.start_timeout
        if now - self.last_ok > limit:
            key = "worker_timeout" if self.seen else "start_timeout"
            what = "all workers lost and none came back" if self.seen else "no worker connected"
            raise RuntimeError(f"{self.what}: {what} within {limit:g} s ({key}); see the jobs' logs "
                               f"(log_directory) and the queue")


def _first_error(exc: BaseException) -> str:
    """The batch system's own error line out of dask-jobqueue's multi-line message."""
    text = str(exc)
    if "stderr:" in text:
        err = [line.strip() for line in text.split("stderr:", 1)[1].splitlines() if line.strip()]
        if err:
            fatal = [line for line in err if "error" in line.lower()]
            return "; ".join(dict.fromkeys(fatal or err[:1]))
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


_WATCHES: dict[int, Watch] = {}


def wait_for(futures, client, *, poll: float = 1.0):
    """Wait for ``futures`` of ``client``, checking its :class:`Watch` (if any) every ``poll``
    seconds -> their results. Ctrl-C and a failed watch interrupt the wait at once."""
    from distributed import wait

    watch = _WATCHES.get(id(client))
    while True:
        try:
            wait(futures, timeout=poll)
            break
        except TimeoutError:
            if watch is not None:
                watch.check()
    return client.gather(futures)


def _jobqueue_cluster(config: ComputeConfig, watch: Watch):
    spec = config.jobqueue
    cls = getattr(import_jobqueue(), _CLASSES[spec["kind"]])
    kwargs = _cluster_kwargs(spec, config)
    kwargs["job_cls"] = watch.job_class(cls.job_cls)
    try:
        cluster = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"compute.jobqueue: {str(exc).splitlines()[0]}") from None
    # adapt, not scale: a job lost (walltime, preemption) is submitted again
    cluster.adapt(minimum_jobs=spec["jobs"], maximum_jobs=spec["jobs"], interval="1s", wait_count=1)
    return cluster


def _addresses(cluster, client) -> tuple[str, str | None]:
    """The scheduler's address and the dashboard's URL as bound (not as asked)."""
    address = client.scheduler_info()["address"]
    sched = getattr(cluster, "scheduler", None)
    server = getattr(sched, "http_server", None)
    sockets = getattr(server, "_sockets", None) or {}
    for sock in sockets.values():
        host, port = sock.getsockname()[:2]
        return address, f"http://{host}:{port}/status"
    return address, None


# ------------------------------------------------------------------------- contexts
@contextlib.contextmanager
def compute_context(config: ComputeConfig | None = None, *, echo=print) -> Iterator[Any]:
    """Set up the compute backend for the block; yields the distributed Client or None.

    The scheduler and dashboard addresses are echoed (``echo=None`` to stay quiet). Clusters
    started here are closed when the block ends (batch jobs cancelled); an existing scheduler
    is only disconnected from.

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
        spec = config.jobqueue
        watch = Watch(None, worker_timeout=spec["worker_timeout"], start_timeout=spec["start_timeout"],
                      jobs=spec["jobs"], max_resubmits=spec["max_resubmits"], what="[compute] jobqueue")
        with _jobqueue_cluster(config, watch) as cluster, Client(cluster) as client:
            watch.client = client
            address, dashboard = _addresses(cluster, client)
            say(f"xrdflow: {spec['kind']} cluster of {spec['jobs']} jobs, scheduler at {address}"
                + (f", dashboard at {dashboard}" if dashboard else ""))
            with _watching(client, watch):
                yield client
        return
    if config.scheduler not in (None, "local"):
        with Client(config.scheduler) as client:
            say(f"xrdflow: connected to {config.scheduler}, dashboard at {client.dashboard_link}")
            with _watching(client, Watch(client, what=f"scheduler {config.scheduler}")):
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
            say(f"xrdflow: {n_workers} workers, dashboard at {_addresses(cluster, client)[1] or client.dashboard_link}")
        yield client


@contextlib.contextmanager
def _watching(client, watch: Watch):
    _WATCHES[id(client)] = watch
    try:
        yield
    finally:
        _WATCHES.pop(id(client), None)


# ---------------------------------------------------------------------- the matrix
try:
    from distributed.diagnostics.plugin import WorkerPlugin as _WorkerPlugin
except ImportError:  # pragma: no cover - distributed is a dependency
    _WorkerPlugin = object


class MatrixPlugin(_WorkerPlugin):
    """Hands integration matrices built in the client to every worker process, those
    running now and those that join later (a batch job starting, or a lost one submitted
    again): ``client.register_plugin(MatrixPlugin(engines.held_matrices(1)))``."""

    name = "xrdflow-matrices"

    def __init__(self, pairs):
        self.pairs = list(pairs)

    def setup(self, worker):
        from .engines import adopt_sparse

        for key, sparse in self.pairs:
            adopt_sparse(key, sparse)


def ship_matrices(client, latest: int | None = 1) -> int:
    """Register a :class:`MatrixPlugin` with the matrices this process used last -> how many
    matrices it carries (0: nothing to ship)."""
    from .engines import held_matrices

    pairs = held_matrices(latest)
    if pairs:
        client.register_plugin(MatrixPlugin(pairs), name=MatrixPlugin.name)
    return len(pairs)
