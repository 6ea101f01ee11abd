"""The batch-queue path on a real single-node SLURM brought up on this machine.

A module fixture starts munged, slurmctld and slurmd as daemons with their own key,
config, state, spool and log folders under a temporary folder (root only; Debian's
``slurm-wlm`` and ``munge``, installed here if missing and apt works), and stops them by pid
at the end. Without root, SLURM or dask-jobqueue the module is skipped with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

# a real SLURM brought up for the module: a longer scenario, run by CI (.ci/run), not the quick run
pytestmark = pytest.mark.slow

SBIN = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")


def _which(name):
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), *SBIN]))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _install_slurm() -> str | None:
    """None when munged, slurmctld, slurmd and sbatch are there (installed now if needed),
    else why not."""
    needed = ("munged", "slurmctld", "slurmd", "sbatch", "sinfo")
    if all(_which(n) for n in needed):
        return None
    if os.geteuid() != 0:
        return "SLURM is not installed and installing it needs root"
    if not _which("apt-get"):
        return "SLURM is not installed and there is no apt-get"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", "slurm-wlm", "munge"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=300)
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0 or not all(_which(n) for n in needed):
        return f"could not install slurm-wlm and munge: {done.stderr.strip().splitlines()[-1:]}"
    return None


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie nobody reaped yet does not)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _real_memory_mb() -> int:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024 - 512
    return 2048


class Slurm:
    """A one-node SLURM under ``root``: start() -> None or why it could not start."""

    def __init__(self, root: Path):
        self.root = root
        self.host = subprocess.run(["hostname", "-s"], capture_output=True, text=True).stdout.strip()
        self.conf = root / "slurm.conf"
        self.socket = root / "munge" / "munge.socket"
        self.pids: list[int] = []
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))

    def write(self) -> None:
        r = self.root
        for sub in ("munge", "state", "spool", "log", "jobs"):
            (r / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(r / "munge", 0o700)
        key = r / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)
        self.conf.write_text(f"""\
ClusterName=xrdflowtest
SlurmctldHost={self.host}
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
AuthInfo=socket={self.socket}
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={r / 'state'}
SlurmdSpoolDir={r / 'spool'}
SlurmctldPidFile={r / 'slurmctld.pid'}
SlurmdPidFile={r / 'slurmd.pid'}
SlurmctldLogFile={r / 'log' / 'slurmctld.log'}
SlurmdLogFile={r / 'log' / 'slurmd.log'}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
MessageTimeout=20
InactiveLimit=0
KillWait=2
MinJobAge=5
OverTimeLimit=0
NodeName={self.host} CPUs=2 RealMemory={_real_memory_mb()} State=UNKNOWN
PartitionName=debug Nodes={self.host} Default=YES MaxTime=INFINITE State=UP
""")

    def _daemon(self, argv, pidfile: Path) -> None:
        subprocess.run(argv, env=self.env, check=True, capture_output=True, timeout=60)
        for _ in range(100):
            if pidfile.exists() and pidfile.read_text().strip():
                self.pids.append(int(pidfile.read_text().split()[0]))
                return
            time.sleep(0.1)
        raise RuntimeError(f"{argv[0]} wrote no pid file")

    def start(self) -> str | None:
        self.write()
        r = self.root
        try:
            self._daemon([_which("munged"), "--force", f"--socket={self.socket}",
                          f"--key-file={r / 'munge' / 'munge.key'}", f"--log-file={r / 'log' / 'munged.log'}",
                          f"--pid-file={r / 'munge' / 'munged.pid'}", f"--seed-file={r / 'munge' / 'seed'}"],
                         r / "munge" / "munged.pid")
            self._daemon([_which("slurmctld"), "-f", str(self.conf), "-i"], r / "slurmctld.pid")
            self._daemon([_which("slurmd"), "-f", str(self.conf), "-N", self.host], r / "slurmd.pid")
        except (subprocess.SubprocessError, RuntimeError, OSError) as exc:
            detail = getattr(exc, "stderr", b"") or b""
            return f"SLURM did not start: {exc} {detail.decode(errors='replace').strip()[-300:]}"
        for _ in range(120):
            out = subprocess.run([_which("sinfo"), "-h", "-o", "%t"], env=self.env, capture_output=True,
                                 text=True).stdout.strip()
            if out == "idle":
                return None
            time.sleep(0.5)
        return f"SLURM's node never became idle (sinfo: {out!r}); see {r / 'log'}"

    def stop(self) -> None:
        for pid in reversed(self.pids):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            for _ in range(100):
                if not _alive(pid):
                    break
                time.sleep(0.1)

    def squeue(self) -> list[tuple[str, str]]:
        out = subprocess.run([_which("squeue"), "-h", "-o", "%i %T"], env=self.env, capture_output=True,
                             text=True).stdout
        return [tuple(line.split()) for line in out.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    pytest.importorskip("dask_jobqueue", reason="the batch-queue path needs dask-jobqueue (.[cluster])")
    if sys.platform != "linux":
        pytest.skip("a test SLURM runs on Linux only")
    why = _install_slurm()
    if why:
        pytest.skip(why)
    cluster = Slurm(tmp_path_factory.mktemp("slurm"))
    try:
        why = cluster.start()
        if why:
            pytest.skip(why)
        old = os.environ.get("SLURM_CONF")
        os.environ["SLURM_CONF"] = str(cluster.conf)
        try:
            yield cluster
        finally:
            if old is None:
                os.environ.pop("SLURM_CONF", None)
            else:
                os.environ["SLURM_CONF"] = old
    finally:
        cluster.stop()



# ------------------------------------------------------------------------------ runs
FRAMES = 16
SIZE = (512, 512)


def _toml(cfg: dict) -> str:
    """A run config dict as TOML (the few value types a config holds)."""
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {value(x)}" for k, x in v.items() if x is not None) + "}"
        raise TypeError(v)

    lines = []
    for section, keys in cfg.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {value(v)}" for k, v in keys.items() if v is not None]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The demo's synthetic inputs, run once on dask's threads: (folder, config dict, result)."""
    import tomllib

    from xrdflow.synthetic import write_demo
    from xrdflow.workflow import load_config, run_workflow
    from xrdflow.workflow.demo import demo_config_text

    folder = tmp_path_factory.mktemp("slurm-demo")
    write_demo(folder / "input", n_frames=FRAMES, shape=SIZE)
    cfg = tomllib.loads(demo_config_text())
    cfg["run"]["output"] = str(folder / "threads")
    cfg["compute"] = {"scheduler": "threads", "batch_frames": 4}
    cfg["integration"]["npt"] = 300
    cfg["output"] = {"figures": False}
    result = run_workflow(load_config(cfg, base_dir=folder), echo=None).result
    base = folder / "threads"
    cfg["input"] = {k: v for k, v in cfg["input"].items() if k not in ("frames", "log")}
    cfg["input"]["raw"] = str(base / "raw.nxs")
    cfg["geometry"] = {"poni": str(base / "geometry.poni")}
    return folder, cfg, result


def _slurm_config(reference, slurm, out: Path, **jobqueue) -> dict:
    folder, cfg, _ = reference
    spec = {"kind": "slurm", "cores": 1, "processes": 1, "memory": "1GB", "jobs": 2, "queue": "debug",
            "walltime": "00:10:00", "log_directory": str(slurm.root / "jobs"), "worker_timeout": 60,
            "start_timeout": 60, **jobqueue}
    return {**cfg, "run": {**cfg["run"], "output": str(out)},
            "compute": {"batch_frames": 4, "dashboard": True, "jobqueue": spec}}


def _run(reference, config: dict):
    from xrdflow.workflow import load_config, run_workflow

    return run_workflow(load_config(config, base_dir=reference[0]), echo=None).result


def _assert_identical(a, b):
    import numpy as np

    for name in a.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


def _no_leftovers(out: Path):
    left = [p.name for p in out.rglob("*") if p.name.endswith((".partial", ".lock"))] if out.exists() else []
    assert not left, left


def _our_jobs_gone(slurm, timeout=30.0):
    deadline = time.monotonic() + timeout
    while slurm.squeue() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not slurm.squeue(), slurm.squeue()


def _cluster_listening(address: str) -> set[str]:
    """The addresses this process and the cluster's workers (SLURM jobs) listen on."""
    import psutil

    pids = {os.getpid()}
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if address in " ".join(proc.info["cmdline"] or []):
            pids.add(proc.info["pid"])
            pids.update(child.pid for child in proc.children(recursive=True))
    assert len(pids) >= 5, pids  # this process, and a nanny and a worker per job
    return {c.laddr.ip for c in psutil.net_connections("inet") if c.status == psutil.CONN_LISTEN and c.pid in pids}


def _on_first_batch(monkeypatch, action):
    """Call ``action()`` once, when the run writes its first batch of patterns (mid-run)."""
    from xrdflow.nexus.azint import PatternWriter

    original = PatternWriter.write
    calls = []

    def write(self, *args, **kwargs):
        if not calls:
            calls.append(action())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(PatternWriter, "write", write)
    return calls


def test_two_slurm_workers_identical_to_threads_and_on_loopback(slurm, reference, tmp_path, monkeypatch):
    from distributed import get_client

    def look():
        client = get_client()
        info = client.scheduler_info()
        return {"workers": len(info["workers"]), "listening": _cluster_listening(info["address"]),
                "builds": client.run(lambda: __import__("xrdflow").engines.engine_cache_info()["builds"])}

    seen = _on_first_batch(monkeypatch, look)
    result = _run(reference, _slurm_config(reference, slurm, tmp_path / "out"))
    _assert_identical(reference[2], result)
    assert seen and seen[0]["listening"] == {"127.0.0.1"}
    assert set(seen[0]["builds"].values()) == {0}  # the matrix came with the plugin, not rebuilt
    _no_leftovers(tmp_path / "out")
    _our_jobs_gone(slurm)


def test_one_job_scancelled_mid_run_completes_identical(slurm, reference, tmp_path, monkeypatch):
    def cancel_one():
        jobs = [j for j, state in slurm.squeue() if state == "RUNNING"]
        subprocess.run([_which("scancel"), jobs[0]], env=slurm.env, check=True)
        return jobs[0]

    seen = _on_first_batch(monkeypatch, cancel_one)
    result = _run(reference, _slurm_config(reference, slurm, tmp_path / "out"))
    assert seen
    _assert_identical(reference[2], result)
    _our_jobs_gone(slurm)


def _cli(config: dict, folder: Path, **kwargs) -> subprocess.Popen:
    path = folder / "run.toml"
    path.write_text(_toml(config))
    return subprocess.Popen([sys.executable, "-m", "xrdflow.cli", "run", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.mark.parametrize("jobqueue,needle", [
    ({"queue": "nosuchpartition"}, "invalid partition specified: nosuchpartition"),
    ({"memory": "100000GB"}, "Memory specification can not be satisfied"),
])
def test_job_that_cannot_be_submitted_fails_in_one_line(slurm, reference, tmp_path, jobqueue, needle):
    """One line, even with the dashboard's port taken (distributed warns and binds another)."""
    import socket

    out = tmp_path / "out"
    t0 = time.monotonic()
    with socket.socket() as taken:
        try:
            taken.bind(("127.0.0.1", 8787))
            taken.listen()
        except OSError:
            pass  # already taken by someone else: the same case
        proc = _cli(_slurm_config(reference, slurm, out, **jobqueue), tmp_path)
        stdout, stderr = proc.communicate(timeout=90)
    assert time.monotonic() - t0 < 60
    assert proc.returncode == 1
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("xrdflow run: error: [compute] jobqueue: the job could not be submitted: sbatch:")
    assert needle in lines[0]
    _no_leftovers(out)
    assert not (out / "patterns.nxs").exists()
    _our_jobs_gone(slurm)


def test_ctrl_c_exits_130(slurm, reference, tmp_path):
    out = tmp_path / "out"
    proc = _cli(_slurm_config(reference, slurm, out), tmp_path)
    try:
        for line in proc.stdout:  # the cluster is up: jobs submitted, dask-jobqueue imported
            if "slurm cluster of" in line:
                break
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "xrdflow: interrupted"
    _no_leftovers(out)
    _our_jobs_gone(slurm)


@pytest.mark.slow
def test_walltime_shorter_than_the_run_is_resubmitted(slurm, reference, tmp_path, monkeypatch):
    """Both jobs killed by SLURM at their 1-minute walltime during the run: submitted again."""
    def wait_for_the_kill():
        first = {j for j, _ in slurm.squeue()}
        deadline = time.monotonic() + 110
        while first & {j for j, _ in slurm.squeue()} and time.monotonic() < deadline:
            time.sleep(1)
        return first

    seen = _on_first_batch(monkeypatch, wait_for_the_kill)
    result = _run(reference, _slurm_config(reference, slurm, tmp_path / "out", walltime="00:01:00",
                                           worker_timeout=90))
    assert seen and not seen[0] & {j for j, _ in slurm.squeue()}
    _assert_identical(reference[2], result)
    _our_jobs_gone(slurm)


if __name__ == "__main__":  # bring one up by hand: python tests/test_slurm.py /tmp/dir
    s = Slurm(Path(sys.argv[1]))
    print(s.start() or f"up: export SLURM_CONF={s.conf}; pids {s.pids}")
