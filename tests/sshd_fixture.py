"""A real OpenSSH server on 127.0.0.1 for tests (reusable: engine, TUI).

``sshd`` runs unprivileged-style in a temp dir: its own host key, an authorized key for the
current user, ``StrictModes no``, on a free port. Tests get an ssh config file whose
``Host`` alias (``llmh-test``) carries Port, User, IdentityFile and UserKnownHostsFile, so
``ssh -F CONFIG llmh-test CMD`` (and our ``ssh:llmh-test`` launcher with
``ssh_options=["-F", CONFIG]``) works with no prompt.

Use in a test module::

    from tests.sshd_fixture import sshd  # noqa: F401  (pytest fixture)

    def test_x(sshd):
        subprocess.run([*sshd.ssh_argv, "true"], check=True)

Skips (with the reason) when ``sshd``/``ssh``/``ssh-keygen`` are missing
(``apt-get install openssh-server openssh-client``).
"""

from __future__ import annotations

import getpass
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

HOST_ALIAS = "llmh-test"


@dataclass
class SshServer:
    port: int
    user: str
    config: Path  # an ssh_config file defining Host llmh-test
    identity: Path
    known_hosts: Path
    dir: Path
    proc: subprocess.Popen | None = None
    host: str = HOST_ALIAS
    log: Path = field(default_factory=Path)

    @property
    def ssh_options(self) -> list[str]:
        return ["-F", str(self.config)]

    @property
    def ssh_argv(self) -> list[str]:
        return ["ssh", *self.ssh_options, self.host]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sshd_binary() -> str | None:
    for cand in (shutil.which("sshd"), "/usr/sbin/sshd"):
        if cand and os.path.exists(cand):
            return cand
    return None


def start_sshd(tmp: Path) -> SshServer:
    """Start sshd in ``tmp``; raises ``RuntimeError`` when it does not come up."""
    sshd = _sshd_binary()
    if not sshd or not shutil.which("ssh") or not shutil.which("ssh-keygen"):
        raise FileNotFoundError(
            "sshd/ssh/ssh-keygen not installed (apt-get install openssh-server)"
        )
    tmp.mkdir(parents=True, exist_ok=True)
    os.chmod(tmp, 0o700)
    host_key = tmp / "ssh_host_ed25519_key"
    user_key = tmp / "id_ed25519"
    for key in (host_key, user_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    auth = tmp / "authorized_keys"
    auth.write_text(user_key.with_suffix(".pub").read_text())
    os.chmod(auth, 0o600)
    port = free_port()
    user = getpass.getuser()
    # sshd needs its privilege-separation directory when run as root.
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    conf = tmp / "sshd_config"
    conf.write_text(
        "\n".join(
            [
                "ListenAddress 127.0.0.1",
                f"Port {port}",
                f"HostKey {host_key}",
                f"AuthorizedKeysFile {auth}",
                f"PidFile {tmp / 'sshd.pid'}",
                "StrictModes no",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PubkeyAuthentication yes",
                "PermitRootLogin yes",
                "UsePAM no",
                "PrintMotd no",
                "X11Forwarding no",
                "AllowTcpForwarding yes",
                "MaxSessions 50",
                "MaxStartups 50:30:100",
                "LogLevel ERROR",
                "Subsystem sftp internal-sftp",
            ]
        )
        + "\n"
    )
    known = tmp / "known_hosts"
    pub = host_key.with_suffix(".pub").read_text().split()
    known.write_text(f"[127.0.0.1]:{port} {pub[0]} {pub[1]}\n")
    config = tmp / "ssh_config"
    config.write_text(
        "\n".join(
            [
                f"Host {HOST_ALIAS}",
                "  HostName 127.0.0.1",
                f"  Port {port}",
                f"  User {user}",
                f"  IdentityFile {user_key}",
                "  IdentitiesOnly yes",
                f"  UserKnownHostsFile {known}",
                "  StrictHostKeyChecking yes",
                "  BatchMode yes",
                "  LogLevel ERROR",
                "  ConnectTimeout 10",
            ]
        )
        + "\n"
    )
    log = tmp / "sshd.log"
    proc = subprocess.Popen(
        [sshd, "-D", "-e", "-f", str(conf)],
        stdout=open(log, "wb"),  # noqa: SIM115 - owned by the process
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    server = SshServer(port, user, config, user_key, known, tmp, proc, log=log)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited with {proc.returncode}: {log.read_text()}")
        r = subprocess.run([*server.ssh_argv, "true"], capture_output=True, text=True, timeout=20)
        if r.returncode == 0:
            return server
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"sshd on port {port} did not accept logins: {r.stderr} {log.read_text()}")


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    """A running sshd on 127.0.0.1 (module scope); skips when OpenSSH is not installed."""
    tmp = tmp_path_factory.mktemp("sshd")
    try:
        server = start_sshd(tmp)
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()
