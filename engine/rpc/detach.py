"""Detached engines: a daemon on a Unix socket, a rendezvous file, and a stdio bridge.

``engine serve --detach`` starts (or finds) a daemon that serves the protocol on a Unix
socket in a private directory (0700, socket 0600) and writes ``~/.llm-heuristics/NAME.json``
(0600: pid, socket path, a random token); then it bridges its own stdin/stdout to that
socket. When the link (ssh) drops, only the bridge dies: the daemon, its loaded models and
its running requests go on, and keep each request's numbered notifications. A client then
runs ``engine bridge`` (over ``ssh HOST`` again) and sends ``$/resume`` with the last ``seq``
it saw; nothing is lost and nothing is reloaded.

The token handshake: the first line on the socket must be ``$/auth {"token": ...}``; the
engine answers with its ``hello`` (or an error and a close).
"""

from __future__ import annotations

import contextlib
import fcntl
import hmac
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from engine import __version__
from engine.errors import UserError
from engine.rpc import protocol

DIR_NAME = ".llm-heuristics"
MAX_AUTH_LINE = 64 * 1024  # the first line, before the token is checked, is at most this long
AUTH_TIMEOUT = 15.0  # seconds a new connection has to send its $/auth line


def state_dir() -> Path:
    """``~/.llm-heuristics`` (HOME respected), created 0700."""
    d = Path(os.path.expanduser("~")) / DIR_NAME
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        os.chmod(d, 0o700)
    return d


def rendezvous_path(name: str = "engine") -> Path:
    if not name or "/" in name or name.startswith("."):
        raise UserError(f"bad engine name {name!r}")
    return state_dir() / f"{name}.json"


def read_rendezvous(name: str = "engine") -> dict[str, Any] | None:
    p = rendezvous_path(name)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_rendezvous(name: str, info: dict[str, Any]) -> None:
    p = rendezvous_path(name)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(info, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, p)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_running(info: dict[str, Any] | None) -> bool:
    if not info or not pid_alive(int(info.get("pid", 0) or 0)):
        return False
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(2)
        s.connect(info["socket"])
        return True
    except OSError:
        return False
    finally:
        s.close()


def _private_socket_dir() -> Path:
    """A fresh 0700 directory with a short path (Unix socket paths are limited to ~107 bytes)."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if not base or not os.path.isdir(base) or len(base) > 60:
        base = tempfile.gettempdir() if len(tempfile.gettempdir()) <= 60 else "/tmp"
    return Path(tempfile.mkdtemp(prefix="llmh-", dir=base))


# --- the daemon -----------------------------------------------------------------------------------


def _auth_line(rfile: Any) -> bytes:
    """The first line of a connection, at most :data:`MAX_AUTH_LINE` bytes (ValueError beyond:
    an unauthenticated peer never makes the engine buffer more)."""
    line = rfile.readline(MAX_AUTH_LINE + 1)
    if len(line) > MAX_AUTH_LINE:
        raise ValueError(f"the $/auth line is longer than {MAX_AUTH_LINE} bytes")
    return line


def _check_auth(line: bytes, token: str) -> Any:
    """The id of a valid ``$/auth {"token": TOKEN}`` line; ValueError (why) otherwise."""
    try:
        msg = protocol.decode(line)
    except protocol.ProtocolError as exc:
        raise ValueError(str(exc)) from None
    params = msg.get("params")
    if msg.get("method") != protocol.AUTH:
        raise ValueError("the first message must be $/auth")
    if not isinstance(params, dict) or not isinstance(params.get("token"), str):
        raise ValueError('$/auth needs params {"token": STRING}')
    if not hmac.compare_digest(params["token"].encode("utf-8", "replace"), token.encode()):
        raise ValueError("bad token")
    return msg.get("id")


def serve_socket(
    name: str = "engine",
    *,
    heartbeat: float = 5.0,
    idle_timeout: float = 0.0,
    roots: Iterable[str] | None = None,
    max_message: int | None = None,
) -> int:
    """Serve on a Unix socket until ``shutdown`` (or ``idle_timeout`` s without client or work)."""
    from engine.rpc.server import Connection, Server

    sock_dir = _private_socket_dir()
    sock_path = sock_dir / "engine.sock"
    token = secrets.token_urlsafe(32)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        listener.bind(str(sock_path))
    finally:
        os.umask(old_umask)
    os.chmod(sock_path, 0o600)
    listener.listen(8)
    listener.settimeout(0.5)
    info = {
        "pid": os.getpid(),
        "socket": str(sock_path),
        "token": token,
        "host": socket.gethostname(),
        "version": __version__,
        "protocol": protocol.PROTOCOL_VERSION,
        "started": time.time(),
        "name": name,
        "log": str(state_dir() / f"{name}.log"),
    }
    _write_rendezvous(name, info)
    server = Server(
        mode="detached", heartbeat=heartbeat, retain=True, roots=roots, max_message=max_message
    )
    server.install_logging()
    server.start_heartbeat()
    signal.signal(signal.SIGTERM, lambda *_: server.stopped.set())
    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    last_activity = time.monotonic()

    def handle(sock: socket.socket) -> None:
        rfile = sock.makefile("rb")
        try:
            sock.settimeout(AUTH_TIMEOUT)
            _check_auth(_auth_line(rfile), token)
            sock.settimeout(None)
        except Exception as exc:  # noqa: BLE001 - whatever the peer sent: refuse, close
            reason = "timed out" if isinstance(exc, TimeoutError) else str(exc)[:200]
            with contextlib.suppress(OSError):
                sock.settimeout(2)
                sock.sendall(
                    protocol.encode(
                        protocol.error(
                            None, protocol.AUTH_FAILED, f"authentication failed: {reason}"
                        )
                    )
                )
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
            return

        def close() -> None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

        conn = Connection(rfile, sock.sendall, close, label="socket")
        server.attach(conn)
        server.serve(conn)

    try:
        while not server.stopped.is_set():
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                if server.active is not None or server.busy():
                    last_activity = time.monotonic()
                elif idle_timeout > 0 and time.monotonic() - last_activity > idle_timeout:
                    break
                continue
            except OSError:
                break
            last_activity = time.monotonic()
            threading.Thread(target=handle, args=(sock,), name="engine-conn", daemon=True).start()
    finally:
        server.stop()
        listener.close()
        current = read_rendezvous(name)
        if current and current.get("pid") == os.getpid():
            with contextlib.suppress(OSError):
                rendezvous_path(name).unlink()
        with contextlib.suppress(OSError):
            sock_path.unlink()
        with contextlib.suppress(OSError):
            sock_dir.rmdir()
    return 0


def start_daemon(
    name: str = "engine",
    *,
    heartbeat: float = 5.0,
    idle_timeout: float = 86400.0,
    timeout: float = 60.0,
    roots: Iterable[str] | None = None,
    max_message: int | None = None,
) -> dict[str, Any]:
    """The running daemon NAME, started first when there is none (with ``roots``: the folders
    it serves; a running daemon keeps the roots it was started with)."""
    lock_path = state_dir() / f"{name}.lock"
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        info = read_rendezvous(name)
        if is_running(info):
            assert info is not None
            return info
        log_path = state_dir() / f"{name}.log"
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "engine",
                    "engine",
                    "serve",
                    "--socket",
                    "--name",
                    name,
                    "--heartbeat",
                    str(heartbeat),
                    "--idle-timeout",
                    str(idle_timeout),
                    *(a for r in roots or () for a in ("--root", os.fspath(r))),
                    *(["--max-message", str(max_message)] if max_message else []),
                ],
                stdin=subprocess.DEVNULL,
                stdout=fd,
                stderr=fd,
                start_new_session=True,  # survives the ssh session's SIGHUP
                close_fds=True,
                cwd=os.path.expanduser("~"),
            )
        finally:
            os.close(fd)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = read_rendezvous(name)
            if info and info.get("pid") == proc.pid and os.path.exists(info["socket"]):
                return info
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        tail = ""
        with contextlib.suppress(OSError):
            tail = log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
        raise UserError(
            f"the detached engine did not start (status {proc.poll()}); its log:\n{tail}"
        )


# --- connecting ---------------------------------------------------------------------------------------


def _connect_authenticated(name: str) -> tuple[socket.socket, bytes, bytes]:
    """Connect and authenticate; returns the socket, the hello line, and bytes read after it."""
    info = read_rendezvous(name)
    if not info:
        raise UserError(
            f"no detached engine {name!r} here ({rendezvous_path(name)} missing); start one with `llm-heuristics engine serve --detach`"
        )
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(info["socket"])
    except OSError as exc:
        s.close()
        raise UserError(
            f"detached engine {name!r} (pid {info.get('pid')}) is not reachable: {exc}"
        ) from None
    s.sendall(protocol.encode(protocol.notification(protocol.AUTH, {"token": info["token"]})))
    buf = b""
    s.settimeout(30)
    while b"\n" not in buf:
        chunk = s.recv(1 << 16)
        if not chunk:
            break
        buf += chunk
    s.settimeout(None)
    line, _, rest = buf.partition(b"\n")
    try:
        msg = protocol.decode(line)
    except protocol.ProtocolError:
        msg = {}
    if msg.get("method") != protocol.HELLO:
        s.close()
        err = (msg.get("error") or {}).get("message", line[:200].decode("utf-8", "replace"))
        raise UserError(f"detached engine {name!r} refused the connection: {err}")
    return s, line + b"\n", rest


def connect_socket(name: str = "engine") -> Any:
    """A transport straight to a local detached engine (no bridge process)."""
    from engine.rpc.launchers import SocketTransport

    s, hello, rest = _connect_authenticated(name)

    class _Pre(SocketTransport):
        def __init__(self) -> None:
            super().__init__(s, f"attach:{name}")
            self._pre = [hello + rest]  # re-read the hello (and what came with it) first

        def readline(self) -> bytes:
            if self._pre:
                data = self._pre[0]
                line, sep, more = data.partition(b"\n")
                if sep:
                    self._pre[0] = more
                    if not more:
                        self._pre.pop()
                    return line + sep
                self._pre.pop()
                return data + super().readline()
            return super().readline()

    return _Pre()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def bridge(name: str = "engine") -> int:
    """Connect this process's stdin/stdout to the detached engine NAME, after the token handshake."""
    try:
        s, hello, rest = _connect_authenticated(name)
    except UserError as exc:
        print(f"llm-heuristics engine bridge: error: {exc}", file=sys.stderr)
        return 2
    try:
        _write_all(1, hello + rest)
    except OSError:
        return 1

    def upstream() -> None:
        try:
            while True:
                data = os.read(0, 1 << 16)
                if not data:
                    break
                s.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)  # the client is gone: the engine detaches this link

    threading.Thread(target=upstream, name="bridge-up", daemon=True).start()
    try:
        while True:
            data = s.recv(1 << 16)
            if not data:
                break
            _write_all(1, data)
    except OSError:
        pass
    finally:
        s.close()
    return 0


def status(name: str = "engine") -> dict[str, Any]:
    info = read_rendezvous(name)
    if not info:
        return {"running": False, "name": name, "rendezvous": str(rendezvous_path(name))}
    public = {k: v for k, v in info.items() if k != "token"}
    return {"running": is_running(info), "rendezvous": str(rendezvous_path(name)), **public}
