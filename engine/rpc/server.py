"""The engine's request loop, independent of the transport (stdio, Unix socket, in-process).

One reader thread per connection parses lines; each request runs in its own worker thread
so that a long step never blocks cancellation, status or heartbeats. Every byte to the
client goes through one lock, so lines never interleave and the order of a request's
numbered notifications is the order they were recorded in.

Sessions: each connection starts a new session (its id is in ``hello``). A client that
reconnects (detached engine) sends ``$/resume {session, last_seq}``; the connection then takes
over the old session, and the engine replays each request's notifications after
``last_seq`` and any answer the client never got. Until then nothing of the old session is
written to the new connection, so replayed and live messages never interleave.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

from engine import context
from engine.errors import InvalidParams, LlmhError
from engine.rpc import protocol
from engine.rpc.binding import (
    _async_raise,
    _auth_params_ok,
    _bind,
    _confine,
    _resume_params,
    _short,
)
from engine.rpc.process_io import _LogForwarder, protect_stdio
from engine.rpc.session import (
    Cancelled,
    Connection,
    RequestContext,
    RequestState,
    _key,
)

log = logging.getLogger(__name__)

RETAIN_DONE = 512  # answered requests kept for resume (socket mode)

__all__ = ["RETAIN_DONE", "Server", "_LogForwarder", "protect_stdio", "serve_stdio"]


class Server:
    """Dispatches requests to a method table; see :mod:`engine.rpc.methods`."""

    def __init__(
        self,
        *,
        mode: str = "stdio",
        heartbeat: float = 5.0,
        methods: dict[str, Any] | None = None,
        retain: bool = False,
        forward_global_logs: bool = True,
        log_level: int = logging.INFO,
        roots: Iterable[str] | None = None,
        max_message: int | None = None,
    ) -> None:
        from engine.api.methods import resolve_roots
        from engine.rpc import methods as _methods

        self.mode = mode
        # Path parameters are served only inside these folders (default: home, cwd, temp).
        self.roots = resolve_roots(roots)
        # The longest line read; a longer one is skipped and answered with a parse error.
        self.max_message = max_message or protocol.max_message_bytes()
        self.methods = methods if methods is not None else _methods.method_table()
        self.retain = retain
        self.heartbeat = heartbeat
        self.started = time.time()
        self.stopped = threading.Event()
        self.active: Connection | None = None
        self._out = threading.RLock()
        self._states: dict[tuple[str, str], RequestState] = {}
        self._done_order: collections.deque[tuple[str, str]] = collections.deque()
        self.resources: dict[str, Any] = {}  # loaded models and the like, owned by methods
        self._log_handler = _LogForwarder(self, forward_global_logs)
        self._log_handler.setLevel(log_level)
        self._hb_thread: threading.Thread | None = None

    # --- lifecycle --------------------------------------------------------------------------
    def install_logging(self) -> None:
        root = logging.getLogger()
        if self._log_handler not in root.handlers:
            root.addHandler(self._log_handler)
        if root.level > self._log_handler.level or root.level == logging.NOTSET:
            root.setLevel(min(self._log_handler.level, root.level or logging.WARNING))

    def uninstall_logging(self) -> None:
        logging.getLogger().removeHandler(self._log_handler)

    def start_heartbeat(self) -> None:
        if self.heartbeat <= 0 or self._hb_thread is not None:
            return

        def beat() -> None:
            while not self.stopped.wait(self.heartbeat):
                self.notify_global(
                    protocol.HEARTBEAT,
                    {
                        "time": time.time(),
                        "uptime": time.time() - self.started,
                        "busy": self.busy(),
                    },
                )

        self._hb_thread = threading.Thread(target=beat, name="engine-heartbeat", daemon=True)
        self._hb_thread.start()

    def stop(self) -> None:
        """Cancel everything and close the connection; the serve loops then return."""
        if self.stopped.is_set():
            return
        self.stopped.set()
        with self._out:
            for st in list(self._states.values()):
                st.cancel_event.set()
            conn, self.active = self.active, None
        if conn is not None:
            conn.close()
        self.uninstall_logging()

    def busy(self) -> list[Any]:
        with self._out:
            return [s.id for s in self._states.values() if not s.answered]

    # --- connections ------------------------------------------------------------------------
    def attach(self, conn: Connection) -> None:
        """Make ``conn`` the connection that receives messages; the previous one is closed."""
        from engine.rpc.methods import hello_info

        with self._out:
            old, self.active = self.active, conn
            self._write(conn, protocol.notification(protocol.HELLO, hello_info(self, conn)))
        if old is not None and old is not conn:
            old.close()

    def read_line(self, conn: Connection) -> bytes | None:
        """The next line of ``conn`` (b"" at EOF); None for a line over :attr:`max_message`,
        whose bytes are read and dropped up to its newline, so memory stays bounded."""
        line = conn.reader.readline(self.max_message + 1)
        if len(line) <= self.max_message or line.endswith(b"\n"):
            return line
        del line
        while True:
            rest = conn.reader.readline(1 << 20)
            if not rest or rest.endswith(b"\n"):
                return None

    def serve(self, conn: Connection) -> None:
        """Read requests from ``conn`` until EOF, an error or :meth:`stop`.

        No message can end this loop: a line too long, not JSON, nested too deeply or with bad
        params is answered with an error, and the next line is read.
        """
        while not self.stopped.is_set() and conn.alive:
            try:
                line = self.read_line(conn)
            except (OSError, ValueError):
                break
            if line is None:
                self.send(
                    protocol.error(
                        None,
                        protocol.PARSE_ERROR,
                        f"message longer than {self.max_message} bytes; it was skipped",
                    ),
                    conn,
                )
                continue
            if not line:
                break
            if not line.strip():
                continue
            try:
                self.handle_line(line, conn)
            except Exception:  # noqa: BLE001 - one message must never end the connection
                log.exception("engine: a message could not be handled")
                self.send(
                    protocol.error(
                        None, protocol.INTERNAL_ERROR, "the message could not be handled"
                    ),
                    conn,
                )
        with self._out:
            if self.active is conn:
                self.active = None
        conn.close()

    # --- output -----------------------------------------------------------------------------
    def _write(self, conn: Connection | None, msg: dict[str, Any]) -> bool:
        if conn is None or not conn.alive:
            return False
        try:
            data = protocol.encode(msg)
        except (TypeError, ValueError, RecursionError) as exc:  # a result JSON cannot carry
            log.error("engine: cannot encode a message: %s", exc)
            if "id" not in msg:
                return False
            data = protocol.encode(
                protocol.error(
                    msg["id"], protocol.INTERNAL_ERROR, f"the result cannot be sent as JSON: {exc}"
                )
            )
        try:
            conn.write(data)
            return True
        except (OSError, ValueError):
            conn.alive = False
            return False

    def send(self, msg: dict[str, Any], conn: Connection | None = None) -> bool:
        with self._out:
            return self._write(conn or self.active, msg)

    def notify_global(self, method: str, params: dict[str, Any]) -> None:
        with self._out:
            self._write(self.active, protocol.notification(method, params))

    def _session_live(self, st: RequestState) -> Connection | None:
        conn = self.active
        return conn if conn is not None and conn.session == st.session else None

    def notify_request(self, st: RequestState, method: str, params: dict[str, Any]) -> bool:
        with self._out:
            if st.answered or st.cancel_event.is_set():
                return False
            st.seq += 1
            msg = protocol.notification(method, {**params, "request": st.id, "seq": st.seq})
            if self.retain:
                st.buffer.append(msg)
            self._write(self._session_live(st), msg)
            return True

    def answer(self, st: RequestState, msg: dict[str, Any]) -> bool:
        """Send the one answer of a request; later answers (after a cancel) are dropped."""
        with self._out:
            if st.answered:
                return False
            st.answered = True
            st.finished = time.time()
            st.response = msg
            written = self._write(self._session_live(st), msg)
            key = (st.session, _key(st.id))
            if self.retain:
                self._done_order.append(key)
                while len(self._done_order) > RETAIN_DONE:
                    self._states.pop(self._done_order.popleft(), None)
            elif written or self.active is None:
                self._states.pop(key, None)
        for fn in st.after_answer:
            try:
                fn()
            except Exception:  # noqa: BLE001
                log.exception("after-answer hook failed")
        return True

    # --- input ------------------------------------------------------------------------------
    def handle_line(self, line: bytes, conn: Connection) -> None:
        try:
            msg = protocol.decode(line)
        except protocol.ProtocolError as exc:
            self.send(protocol.error(exc.id, exc.code, str(exc)), conn)
            return
        if protocol.is_response(msg):
            return  # the engine sends no requests; ignore stray answers
        method = msg["method"]
        params = msg.get("params")
        has_id = "id" in msg and msg["id"] is not None
        if method == protocol.CANCEL:
            cid = params.get("id") if isinstance(params, dict) else None
            if isinstance(cid, str | int) and not isinstance(cid, bool):
                self.cancel(conn.session, cid)
            elif has_id:
                self._bad_params(conn, msg["id"], method, 'needs {"id": ID of a request}')
            return
        if method == protocol.RESUME:
            try:
                session, last = _resume_params(params)
            except InvalidParams as exc:
                if has_id:
                    self._bad_params(conn, msg["id"], method, exc.message)
                return
            self._resume(conn, msg.get("id"), session, last)
            return
        if method == protocol.AUTH:
            if not _auth_params_ok(params):
                if has_id:
                    self._bad_params(conn, msg["id"], method, 'needs {"token": STRING}')
            elif has_id:
                self.send(protocol.result(msg["id"], {"ok": True}), conn)
            return
        if not has_id:
            return  # unknown notifications are ignored, as JSON-RPC says
        self._start_request(conn, msg["id"], method, params)

    def _bad_params(self, conn: Connection, id_: Any, method: str, message: str) -> None:
        self.send(protocol.error(id_, protocol.INVALID_PARAMS, f"{method}: {message}"), conn)

    def _start_request(self, conn: Connection, id_: Any, method: str, params: Any) -> None:
        spec = self.methods.get(method)
        if spec is None:
            self.send(
                protocol.error(id_, protocol.METHOD_NOT_FOUND, f"unknown method {_short(method)}"),
                conn,
            )
            return
        key = (conn.session, _key(id_))
        with self._out:
            old = self._states.get(key)
            if old is not None and not old.answered:
                self._write(
                    conn,
                    protocol.error(
                        id_, protocol.INVALID_REQUEST, f"request id {id_!r} is already in use"
                    ),
                )
                return
            st = RequestState(id_, conn.session, method)
            st.interruptible = bool(getattr(spec, "interruptible", False))
            self._states[key] = st
        t = threading.Thread(
            target=self._run, args=(st, spec, params), name=f"engine-req-{id_}", daemon=True
        )
        st.thread = t
        t.start()

    def _run(self, st: RequestState, spec: Any, params: Any) -> None:
        ctx = RequestContext(self, st)
        context._set(ctx)
        fn = spec.func if hasattr(spec, "func") else spec
        try:
            bound = _bind(fn, ctx, params, st.method)
            _confine(bound, self.roots, st.method)
            st.in_handler = True
            try:
                value = fn(*bound.args, **bound.kwargs)
            finally:
                st.in_handler = False
            msg = protocol.result(st.id, value)
        except (Cancelled, KeyboardInterrupt):
            msg = protocol.error(st.id, protocol.REQUEST_CANCELLED, "request cancelled")
        except LlmhError as exc:  # RpcError and the engine's typed errors carry their code
            msg = protocol.error(st.id, exc.code, exc.message or str(exc), exc.data)
        except OSError as exc:  # the file system said no (too long, denied, full): not a bug
            log.info("request %r (%s): %s", st.id, st.method, exc)
            msg = protocol.error(
                st.id,
                protocol.USER_ERROR,
                f"{st.method}: {str(exc)[:500]}",
                {"errno": exc.errno},
            )
        except Exception as exc:  # noqa: BLE001 - every failure becomes an answer
            # The traceback stays in the engine's log (stderr); the client gets one line.
            log.error("request %r (%s) failed", st.id, st.method, exc_info=True)
            msg = protocol.error(
                st.id,
                protocol.INTERNAL_ERROR,
                f"{st.method} failed: {type(exc).__name__}: {str(exc)[:500]}",
                {"exception": type(exc).__name__},
            )
        finally:
            context._set(None)
        if st.cancel_event.is_set():
            msg = protocol.error(st.id, protocol.REQUEST_CANCELLED, "request cancelled")
        try:
            self.answer(st, msg)
        except KeyboardInterrupt:  # a late asynchronous cancel; the answer is already decided
            self.answer(st, msg)

    def cancel(self, session: str, id_: Any) -> bool:
        """LSP's ``$/cancelRequest``: answer -32800 now; later output of the request is dropped."""
        with self._out:
            st = self._states.get((session, _key(id_)))
            if st is None or st.answered:
                return False
            st.cancel_event.set()
        self.answer(st, protocol.error(id_, protocol.REQUEST_CANCELLED, "request cancelled"))
        if st.interruptible and st.in_handler and st.thread is not None and st.thread.is_alive():
            _async_raise(st.thread, KeyboardInterrupt)
        return True

    def _resume(
        self, conn: Connection, id_: Any, session: str, pairs: list[tuple[Any, int]]
    ) -> None:
        last = {_key(rid): seq for rid, seq in pairs}
        replayed, unknown, gaps = 0, [], []
        with self._out:
            known = {k[1]: st for k, st in self._states.items() if k[0] == session}
            for rid, _seq in pairs:
                if _key(rid) not in known:
                    unknown.append(rid)
            for k, st in list(known.items()):
                if k not in last:
                    if st.answered:  # the client has its answer: forget it
                        self._states.pop((session, k), None)
                    continue
                after = last[k]
                if st.buffer and st.buffer[0]["params"]["seq"] > after + 1:
                    gaps.append(st.id)
                for msg in st.buffer:
                    if msg["params"]["seq"] > after:
                        self._write(conn, msg)
                        replayed += 1
                if st.response is not None:
                    self._write(conn, st.response)
            if session and (known or session == conn.session):
                conn.session = session
            if id_ is not None:
                self._write(
                    conn,
                    protocol.result(
                        id_,
                        {
                            "session": conn.session,
                            "replayed": replayed,
                            "unknown": unknown,
                            "gaps": gaps,
                        },
                    ),
                )


# --- stdio mode ---------------------------------------------------------------------------------


def serve_stdio(
    *, heartbeat: float = 5.0, roots: Iterable[str] | None = None, max_message: int | None = None
) -> int:
    proto_in, proto_out = protect_stdio()

    def write(data: bytes) -> None:
        proto_out.write(data)
        proto_out.flush()

    server = Server(mode="stdio", heartbeat=heartbeat, roots=roots, max_message=max_message)
    server.install_logging()
    conn = Connection(proto_in, write, label="stdio")
    server.attach(conn)
    server.start_heartbeat()
    reader = threading.Thread(target=server.serve, args=(conn,), name="engine-stdin", daemon=True)
    reader.start()
    try:
        while reader.is_alive() and not server.stopped.wait(0.2):
            pass
    finally:
        server.stop()
        with contextlib.suppress(OSError, ValueError):
            proto_out.flush()
    return 0
