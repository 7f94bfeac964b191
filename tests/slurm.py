"""A real one-node SLURM cluster for the test session.

`slurm_cluster` starts munge, slurmctld and slurmd (Debian's slurm-wlm and
munge packages) with a key, a slurm.conf, state and spool folders of their
own in a temporary folder, on free ports, and waits until `sinfo` shows the
node idle. Clients find this cluster through SLURM_CONF (`cluster.env()`),
so whatever /etc/slurm holds is left alone. Everything is stopped and removed
after the session, also when a test fails.

No accounting (slurmdbd): `squeue` sees queued and running jobs, and
hydra-submitit-launcher reads each job's result from its result file; a
job that ends without one (cancelled, killed) is found by the trial's
heartbeats, not by `sacct` (docs/scaling.md).

Where the binaries are absent the tests skip, unless REQUIRE_SLURM=1 (CI
sets it and installs the packages): then they fail. The daemons run as root
(SlurmUser=root) and munged as the `munge` user, so the tests need root.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cli import free_port

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sinfo", "squeue", "sbatch", "scancel")
START_TIMEOUT_S = 60
START_ATTEMPTS = 2
CPUS = 2
MEMORY_MB = 4000


@dataclass(frozen=True)
class SlurmCluster:
    root: Path
    conf: Path
    node: str

    def env(self, **extra: str) -> dict[str, str]:
        """This process's environment with SLURM_CONF naming this cluster's configuration."""
        return {**os.environ, "SLURM_CONF": str(self.conf), **extra}

    def run(self, *command: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(command, env=self.env(), capture_output=True, text=True, timeout=timeout)

    def jobs(self) -> list[tuple[str, str]]:
        """(job id, state) of every job squeue lists, pending and running; array tasks by their own id."""
        result = self.run("squeue", "--noheader", "--format=%A %T")
        if result.returncode != 0:
            raise RuntimeError(f"squeue failed: {result.stderr.strip()}")
        rows = [line.split() for line in result.stdout.splitlines() if line.strip()]
        return [(job_id, state) for job_id, state in rows]

    def node_state(self) -> str:
        result = self.run("sinfo", "--noheader", "--Node", "--format=%T")
        return result.stdout.strip() if result.returncode == 0 else f"sinfo failed: {result.stderr.strip()}"

    def cancel_all(self) -> None:
        self.run("scancel", "--full", *(job_id for job_id, _ in self.jobs()))


def _tool(name: str) -> str | None:
    """A program's path: on PATH, or in /usr/sbin (the daemons, off a user's PATH)."""
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))


def _unavailable(reason: str) -> None:
    if os.environ.get("REQUIRE_SLURM") == "1":
        pytest.fail(f"REQUIRE_SLURM=1 but {reason}", pytrace=False)
    pytest.skip(reason)


SLURM_CONF = """\
ClusterName=sweeptest
SlurmctldHost={node}
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
MessageTimeout=10
KillWait=2
InactiveLimit=0
MinJobAge=30
NodeName={node} CPUs={cpus} RealMemory={memory} State=UNKNOWN
PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


class _Daemons:
    """munged, slurmctld and slurmd in the foreground, as our own child processes."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="sweep-slurm-"))
        self.root.chmod(0o755)
        self.node = socket.gethostname().split(".")[0]
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.env = {k: v for k, v in os.environ.items() if k != "SLURM_CONF"}

    def log_tail(self) -> str:
        parts = []
        for name in ("munge/munged.log", "slurmctld.log", "slurmd.log"):
            path = self.root / name
            if path.exists():
                parts.append(f"--- {name}:\n" + path.read_text(errors="replace")[-1500:])
        return "\n".join(parts)

    def start(self) -> SlurmCluster:
        munge = self.root / "munge"
        munge.mkdir(mode=0o755)
        key = munge / "munge.key"
        key.write_bytes(os.urandom(128))
        key.chmod(0o400)
        owner = pwd.getpwnam("munge")
        for path in (munge, key):
            os.chown(path, owner.pw_uid, owner.pw_gid)
        socket_path = munge / "munge.socket"
        self._spawn(
            "munged",
            [_tool("runuser"), "-u", "munge", "--", _tool("munged"), "--foreground",
             f"--socket={socket_path}", f"--key-file={key}", f"--pid-file={munge / 'munged.pid'}",
             f"--seed-file={munge / 'seed'}", f"--log-file={munge / 'munged.log'}"],
        )  # fmt: skip
        _wait_for(lambda: socket_path.exists(), "munged's socket", self)
        for folder in ("state", "spool"):
            (self.root / folder).mkdir()
        conf = self.root / "slurm.conf"
        conf.write_text(
            SLURM_CONF.format(
                node=self.node,
                ctld_port=free_port(),
                slurmd_port=free_port(),
                munge_socket=socket_path,
                root=self.root,
                cpus=CPUS,
                memory=MEMORY_MB,
            )
        )
        cluster = SlurmCluster(self.root, conf, self.node)
        self._spawn("slurmctld", [_tool("slurmctld"), "-D", "-i", "-f", str(conf)])
        self._spawn("slurmd", [_tool("slurmd"), "-D", "-f", str(conf)])
        _wait_for(lambda: cluster.node_state() == "idle", "the node to be idle in sinfo", self)
        return cluster

    def _spawn(self, name: str, command: list[str | None]) -> None:
        with (self.root / f"{name}.out").open("wb") as out:
            self.processes[name] = subprocess.Popen(
                [str(part) for part in command], stdout=out, stderr=subprocess.STDOUT, env=self.env,
                start_new_session=True,
            )  # fmt: skip

    def stop(self, cluster: SlurmCluster | None) -> None:
        if cluster is not None and "slurmctld" in self.processes:
            with contextlib.suppress(Exception):
                cluster.cancel_all()
        for name in reversed(list(self.processes)):
            process = self.processes[name]
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=15)
        # Job steps slurmd left behind (slurmstepd), by the pids our own process group holds.
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _wait_for(condition, what: str, daemons: _Daemons) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not condition():
        dead = [name for name, p in daemons.processes.items() if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            why = f"{', '.join(dead)} exited" if dead else f"not within {START_TIMEOUT_S} s"
            raise RuntimeError(f"SLURM test cluster: waiting for {what}: {why}\n{daemons.log_tail()}")
        time.sleep(0.2)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    missing = [tool for tool in (*DAEMONS, "runuser") if _tool(tool) is None]
    missing += [tool for tool in CLIENTS if shutil.which(tool) is None]
    if missing:
        _unavailable(
            f"no SLURM test cluster: {', '.join(missing)} not found (on PATH, or the daemons in /usr/sbin); "
            "install them with: apt-get install slurm-wlm munge"
        )
    if os.geteuid() != 0:
        _unavailable("the SLURM test cluster's daemons run as root (SlurmUser=root); run the tests as root")
    try:
        pwd.getpwnam("munge")
    except KeyError:
        _unavailable("there is no 'munge' user to run munged as")
    for attempt in range(1, START_ATTEMPTS + 1):
        daemons = _Daemons()
        cluster = None
        try:
            try:
                cluster = daemons.start()
            except RuntimeError:  # a port taken meanwhile, say: another cluster on other free ports
                if attempt == START_ATTEMPTS:
                    raise
                continue
            yield cluster
            return
        finally:
            daemons.stop(cluster)
            daemons.remove()
