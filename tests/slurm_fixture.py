"""A one-node Slurm cluster in temp dirs for tests (munged, slurmctld, slurmd).

``ProctrackType=proctrack/linuxproc`` and ``TaskPlugin=task/none`` (no cgroups needed),
NodeName = ``hostname -s``, private munge socket and key, free ports. Clients find it
through ``SLURM_CONF`` (``cluster.env``). Skips cleanly when the binaries are missing
(``apt-get install slurm-wlm munge``) or when the daemons cannot start here.

    from tests.slurm_fixture import slurm  # noqa: F401  (pytest fixture)

    def test_x(slurm):
        subprocess.run(["srun", "hostname"], env=slurm.env, check=True)
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

BINARIES = ("munged", "slurmctld", "slurmd", "srun", "sinfo")


@dataclass
class SlurmCluster:
    dir: Path
    conf: Path
    node: str
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def logs(self) -> str:
        out = []
        for name in ("munged.log", "slurmctld.log", "slurmd.log"):
            p = self.dir / name
            if p.exists():
                out.append(f"--- {name}\n{p.read_text(errors='replace')[-3000:]}")
        return "\n".join(out)

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _which(name: str) -> str | None:
    return shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)), None
    )


def start_slurm(tmp: Path, timeout: float = 60.0) -> SlurmCluster:
    missing = [b for b in BINARIES if _which(b) is None]
    if missing:
        raise FileNotFoundError(
            f"Slurm/munge not installed ({', '.join(missing)}); apt-get install slurm-wlm munge"
        )
    if os.geteuid() != 0:
        raise PermissionError("the test Slurm runs its daemons as root")
    tmp.mkdir(parents=True, exist_ok=True)
    os.chmod(tmp, 0o700)
    node = subprocess.run(
        ["hostname", "-s"], capture_output=True, text=True, check=True
    ).stdout.strip()
    cpus = os.cpu_count() or 1
    for d in ("state", "spool", "munge"):
        (tmp / d).mkdir(exist_ok=True)
    os.chmod(tmp / "munge", 0o700)
    key = tmp / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    os.chmod(key, 0o400)
    msock = tmp / "munge" / "munge.sock"
    conf = tmp / "slurm.conf"
    conf.write_text(
        "\n".join(
            [
                "ClusterName=llmhtest",
                f"SlurmctldHost={node}(127.0.0.1)",
                f"SlurmctldPort={_free_port()}",
                f"SlurmdPort={_free_port()}",
                "SlurmUser=root",
                "SlurmdUser=root",
                f"StateSaveLocation={tmp / 'state'}",
                f"SlurmdSpoolDir={tmp / 'spool'}",
                f"SlurmctldPidFile={tmp / 'slurmctld.pid'}",
                f"SlurmdPidFile={tmp / 'slurmd.pid'}",
                f"SlurmctldLogFile={tmp / 'slurmctld.log'}",
                f"SlurmdLogFile={tmp / 'slurmd.log'}",
                "AuthType=auth/munge",
                "CredType=cred/munge",
                f"AuthInfo=socket={msock}",
                "ProctrackType=proctrack/linuxproc",
                "TaskPlugin=task/none",
                "SchedulerType=sched/builtin",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_Core",
                "ReturnToService=2",
                "MpiDefault=none",
                "JobCompType=jobcomp/none",
                "JobAcctGatherType=jobacct_gather/none",
                "AccountingStorageType=accounting_storage/none",
                "SlurmctldTimeout=30",
                "SlurmdTimeout=30",
                "InactiveLimit=0",
                "KillWait=5",
                "SlurmctldDebug=info",
                "SlurmdDebug=info",
                f"NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=1000 State=UNKNOWN",
                f"PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP",
            ]
        )
        + "\n"
    )
    cluster = SlurmCluster(tmp, conf, node)
    env = cluster.env

    def spawn(argv: list[str], log: str) -> subprocess.Popen:
        p = subprocess.Popen(
            argv,
            stdout=open(tmp / f"{log}.out", "wb"),  # noqa: SIM115 - owned by the process
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        cluster.procs.append(p)
        return p

    spawn(
        [
            _which("munged") or "munged",
            "-F",
            "-f",
            f"--socket={msock}",
            f"--key-file={key}",
            f"--pid-file={tmp / 'munge' / 'munged.pid'}",
            f"--log-file={tmp / 'munged.log'}",
            f"--seed-file={tmp / 'munge' / 'munged.seed'}",
        ],
        "munged",
    )
    deadline = time.monotonic() + 10
    while not msock.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    spawn([_which("slurmctld") or "slurmctld", "-D", "-i", "-f", str(conf)], "slurmctld")
    time.sleep(0.5)
    spawn([_which("slurmd") or "slurmd", "-D", "-f", str(conf)], "slurmd")
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        for p in cluster.procs:
            if p.poll() is not None:
                cluster.stop()
                raise RuntimeError(
                    f"a Slurm daemon exited ({p.args[0]}: {p.returncode})\n{cluster.logs()}"
                )
        r = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%N %t"],
            capture_output=True,
            text=True,
            env=env,
            timeout=20,
        )
        last = r.stdout + r.stderr
        if r.returncode == 0 and any(s in r.stdout for s in (" idle", " mix", " alloc")):
            return cluster
        time.sleep(0.5)
    cluster.stop()
    raise RuntimeError(f"Slurm node did not become idle: {last}\n{cluster.logs()}")


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A running one-node Slurm (module scope); skips when Slurm is not installed or cannot run."""
    try:
        cluster = start_slurm(tmp_path_factory.mktemp("slurm"))
    except (FileNotFoundError, PermissionError) as exc:
        pytest.skip(str(exc))
    try:
        yield cluster
    finally:
        cluster.stop()
