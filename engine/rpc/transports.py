"""Transports: a bidirectional pipe of protocol lines to one engine.

A child process (``local``, ``ssh``, ``srun``... via :class:`ProcessTransport`), a connected
socket (:class:`SocketTransport`: a detached engine's Unix socket), or threads of this process
(:func:`inprocess_transport`). :mod:`engine.rpc.launchers` turns a SPEC into one of these and
re-exports these names.
"""

from __future__ import annotations

import collections
import os
import socket
import subprocess
import threading
from typing import Any

from engine.errors import UserError


class Transport:
    """A bidirectional line pipe to one engine."""

    description = ""

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def readline(self) -> bytes:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def exit_status(self, wait: float = 0.0) -> int | None:
        return None

    def stderr_tail(self) -> str:
        return ""


class ProcessTransport(Transport):
    """A child process speaking the protocol on its stdin/stdout; stderr is kept (tail)."""

    def __init__(
        self,
        argv: list[str],
        description: str,
        env: dict[str, str] | None = None,
        on_stderr: Any = None,
        tail_lines: int = 200,
    ) -> None:
        self.argv = argv
        self.description = description
        self._tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
        self._on_stderr = on_stderr
        full_env = None
        if env:
            full_env = {**os.environ, **env}
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=full_env,
                start_new_session=True,  # Ctrl-C in the client's terminal is the client's business
            )
        except OSError as exc:
            raise UserError(f"cannot start engine via {description}: {argv[0]}: {exc}") from None
        self._wlock = threading.Lock()
        self._err_thread = threading.Thread(
            target=self._pump_stderr, name="engine-stderr", daemon=True
        )
        self._err_thread.start()

    def _pump_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in iter(self.proc.stderr.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self._tail.append(line)
            if self._on_stderr is not None:
                try:
                    self._on_stderr(line)
                except Exception:  # noqa: BLE001
                    pass

    def write(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        with self._wlock:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()

    def readline(self) -> bytes:
        assert self.proc.stdout is not None
        try:
            return self.proc.stdout.readline()
        except (OSError, ValueError):
            return b""

    def close(self) -> None:
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._err_thread.join(timeout=2)
        for f in (self.proc.stdout, self.proc.stderr):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass

    def kill(self) -> None:
        """Kill the launcher process (ssh, srun...) at once: a dropped link, for tests."""
        self.proc.kill()

    def exit_status(self, wait: float = 0.0) -> int | None:
        try:
            return self.proc.wait(timeout=wait) if wait else self.proc.poll()
        except subprocess.TimeoutExpired:
            return None

    def stderr_tail(self) -> str:
        self._err_thread.join(timeout=0.5)
        return "\n".join(self._tail)


class SocketTransport(Transport):
    """A connected socket (in-process engine, or a detached engine's Unix socket)."""

    def __init__(self, sock: socket.socket, description: str, on_close: Any = None) -> None:
        self.sock = sock
        self.description = description
        self._rfile = sock.makefile("rb")
        self._wlock = threading.Lock()
        self._on_close = on_close
        self._closed = False

    def write(self, data: bytes) -> None:
        with self._wlock:
            self.sock.sendall(data)

    def readline(self) -> bytes:
        try:
            return self._rfile.readline()
        except (OSError, ValueError):
            return b""

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        if self._on_close is not None:
            self._on_close()


def inprocess_transport(heartbeat: float = 0.0, roots: list[str] | None = None) -> SocketTransport:
    """An engine served by threads of this process over a socketpair; it serves paths inside
    ``roots`` only (default: home, the current and the temp directory, as ``engine serve``)."""
    from engine.rpc.server import Connection, Server

    client_sock, server_sock = socket.socketpair()
    server = Server(mode="inprocess", heartbeat=heartbeat, forward_global_logs=False, roots=roots)
    rfile = server_sock.makefile("rb")

    def close() -> None:
        try:
            server_sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    conn = Connection(rfile, server_sock.sendall, close, label="inprocess")

    def run() -> None:
        server.install_logging()
        server.attach(conn)
        server.start_heartbeat()
        try:
            server.serve(conn)
        finally:
            server.stop()
            server_sock.close()

    t = threading.Thread(target=run, name="engine-inprocess", daemon=True)
    t.start()
    tr = SocketTransport(client_sock, "inprocess", on_close=lambda: t.join(timeout=5))
    tr.server = server  # type: ignore[attr-defined]
    return tr
