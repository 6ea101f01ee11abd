"""The batch-queue path on a real single-node SLURM brought up on this machine.

A module fixture starts munged, slurmctld and slurmd as daemons with their own key,
config, state, spool and log folders under a temporary folder (root only; Debian's
``slurm-wlm`` and ``munge``, installed here if missing and apt works), and stops them by pid
at the end. Without root, SLURM or dask-jobqueue the module is skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

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
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
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


if __name__ == "__main__":  # bring one up by hand: python tests/test_slurm.py /tmp/dir
    s = Slurm(Path(sys.argv[1]))
    print(s.start() or f"up: export SLURM_CONF={s.conf}; pids {s.pids}")
