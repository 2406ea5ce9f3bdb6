"""A thread-safe engine client: futures for answers, callbacks for notifications.

Used by the CLI (``--engine SPEC``, ``llm-heuristics engine call/run``) and by the TUI::

    with EngineClient("ssh:gpu01+detach", on_notification=print) as eng:
        fut = eng.request("map", {"out_dir": "/data/out"}, on_event=lambda m, p: ...)
        value = fut.result()            # raises RpcError / EngineGone

Callbacks run on the client's reader thread: keep them short, and marshal to a UI loop
(Textual: ``app.call_from_thread``). After :meth:`EngineClient.cancel` no more events of
that request are delivered; its future still resolves (usually ``RpcError(-32800)``).

When the engine dies, every pending future fails with :class:`EngineGone`, whose message
names the launcher, the exit status and the tail of the engine's stderr. A detached engine
(``...+detach``) is re-attached instead (``auto_reconnect``), and the streams resume from
the last ``seq`` seen, without reloading anything on the engine.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from engine import __version__
from engine.errors import ProtocolMismatch
from engine.rpc import protocol
from engine.rpc.cli_support import EventCallback, print_event, print_progress, strip_engine_option
from engine.rpc.launchers import Launcher, Transport, make_launcher
from engine.rpc.protocol import EngineGone, RpcError

log = logging.getLogger(__name__)

__all__ = [
    "Call",
    "EngineClient",
    "EngineGone",
    "EventCallback",
    "RpcError",
    "call_api",
    "call_json",
    "print_event",
    "print_progress",
    "strip_engine_option",
]


class Call(concurrent.futures.Future):
    """The future answer of one request."""

    def __init__(
        self,
        client: EngineClient,
        id_: int,
        method: str,
        data: bytes,
        on_event: EventCallback | None,
    ):
        super().__init__()
        self.client = client
        self.id = id_
        self.method = method
        self.data = data
        self.on_event = on_event
        self.last_seq = 0

    def cancel_request(self) -> None:
        """Ask the engine to cancel (LSP ``$/cancelRequest``); the answer still arrives."""
        self.client.cancel(self.id)

    def value(self, timeout: float | None = None) -> Any:
        return self.result(timeout)


class EngineClient:
    def __init__(
        self,
        launcher: Launcher | str = "inprocess",
        *,
        on_notification: EventCallback | None = None,
        on_stderr: Callable[[str], None] | None = None,
        hello_timeout: float | None = None,
        auto_reconnect: bool | None = None,
        reconnect_attempts: int = 3,
        heartbeat_timeout: float | None = None,
    ) -> None:
        self.launcher = make_launcher(launcher)
        self.on_notification = on_notification
        self.on_stderr = on_stderr
        self.hello_timeout = hello_timeout or self.launcher.options.hello_timeout
        self.auto_reconnect = self.launcher.can_resume if auto_reconnect is None else auto_reconnect
        self.reconnect_attempts = reconnect_attempts
        self.heartbeat_timeout = heartbeat_timeout
        self.hello: dict[str, Any] = {}
        self.session: str | None = None
        self.noise: list[str] = []  # lines before hello (shell start-up files that print)
        self.reconnects = 0
        self._transport: Transport | None = None
        self._lock = threading.RLock()
        self._pending: dict[int, Call] = {}
        self._cancelled: set[int] = set()
        self._next_id = 1
        self._gen = 0
        self._dead: str | None = None
        self._closing = False
        self._hello_event = threading.Event()
        self._last_rx = time.monotonic()
        self._watchdog: threading.Thread | None = None

    # --- lifecycle --------------------------------------------------------------------------
    def start(self) -> dict[str, Any]:
        """Launch (or attach to) the engine and wait for its hello."""
        self._connect(self.launcher.open(on_stderr=self.on_stderr))
        if self.heartbeat_timeout and self._watchdog is None:
            self._watchdog = threading.Thread(
                target=self._watch, name="engine-watchdog", daemon=True
            )
            self._watchdog.start()
        return self.hello

    def __enter__(self) -> EngineClient:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connect(self, transport: Transport) -> None:
        with self._lock:
            self._gen += 1
            gen = self._gen
            self._transport = transport
            self.hello = {}
            self._hello_event.clear()
        t = threading.Thread(
            target=self._reader, args=(transport, gen), name="engine-reader", daemon=True
        )
        t.start()
        if not self._hello_event.wait(self.hello_timeout):
            transport.close()
            raise EngineGone(
                self._death_message(transport, f"sent no hello within {self.hello_timeout:.0f} s")
            )
        with self._lock:
            if self._gen != gen or not self.hello:
                raise EngineGone(self._death_message(transport, "closed before its hello"))
        theirs = str(self.hello.get("protocol", "?"))
        if theirs != protocol.PROTOCOL_VERSION:
            transport.close()
            raise ProtocolMismatch(
                f"the engine {self.launcher.description!r} speaks protocol {theirs}, this client "
                f"{protocol.PROTOCOL_VERSION} (engine {self.hello.get('engine_version', '?')}, "
                f"client {__version__}): install the same llm-heuristics version on both sides"
            )

    def close(self, shutdown: bool = False) -> None:
        """Disconnect; ``shutdown=True`` stops the engine too (a detached one keeps running otherwise)."""
        if shutdown and self._transport is not None and self._dead is None:
            with contextlib.suppress(RpcError, concurrent.futures.TimeoutError):
                self.call("shutdown", timeout=15)
        with self._lock:
            self._closing = True
            tr = self._transport
        if tr is not None:
            tr.close()
        self._fail_all("the client closed the connection")

    @property
    def alive(self) -> bool:
        return self._dead is None and not self._closing

    @property
    def transport(self) -> Transport | None:
        return self._transport

    # --- requests ---------------------------------------------------------------------------
    def request(
        self, method: str, params: Any = None, *, on_event: EventCallback | None = None
    ) -> Call:
        with self._lock:
            if self._dead is not None:
                raise EngineGone(self._dead)
            if self._closing:
                raise EngineGone("the client is closed")
            id_ = self._next_id
            self._next_id += 1
            data = protocol.encode(protocol.request(id_, method, params))
            call = Call(self, id_, method, data, on_event)
            self._pending[id_] = call
            tr = self._transport
        try:
            assert tr is not None
            tr.write(data)
        except (OSError, ValueError, AssertionError):
            pass  # the reader sees the end of the link; the call then resumes or fails
        return call

    def call(
        self,
        method: str,
        params: Any = None,
        *,
        timeout: float | None = None,
        on_event: EventCallback | None = None,
    ) -> Any:
        return self.request(method, params, on_event=on_event).result(timeout)

    def api(
        self,
        method: str,
        params: Any = None,
        *,
        timeout: float | None = None,
        on_event: EventCallback | None = None,
        on_call: Callable[[Call], None] | None = None,
    ) -> Any:
        """Call an API method and get its result dataclass back (:data:`engine.api.types.RESULTS`);
        ``params``: the method's parameters dataclass or a dict. Errors arrive as the engine's
        typed exceptions (:mod:`engine.errors`). ``on_call`` receives the pending
        :class:`Call` first (keep it to cancel the request from another thread)."""
        import dataclasses

        from engine.api.types import RESULTS
        from engine.serial import from_json, to_json

        payload = to_json(params) if dataclasses.is_dataclass(params) else to_json(params or {})
        call = self.request(method, payload, on_event=on_event)
        if on_call is not None:
            on_call(call)
        value = call.result(timeout)
        rtype = RESULTS.get(method)
        return value if rtype is None else from_json(rtype, value)

    def notify(self, method: str, params: Any = None) -> None:
        with self._lock:
            tr = self._transport
        if tr is not None:
            with contextlib.suppress(OSError, ValueError):
                tr.write(protocol.encode(protocol.notification(method, params)))

    def cancel(self, id_: int | Call) -> None:
        if isinstance(id_, Call):
            id_ = id_.id
        with self._lock:
            if id_ not in self._pending:
                return
            self._cancelled.add(id_)
        self.notify(protocol.CANCEL, {"id": id_})

    # --- the reader -------------------------------------------------------------------------
    def _reader(self, transport: Transport, gen: int) -> None:
        seen_hello = False
        while True:
            line = transport.readline()
            if not line:
                break
            self._last_rx = time.monotonic()
            if not seen_hello:
                try:
                    msg = protocol.decode(line)
                except protocol.ProtocolError:
                    msg = None
                if not msg or msg.get("method") != protocol.HELLO:
                    self.noise.append(line.decode("utf-8", "replace").rstrip("\n"))
                    del self.noise[:-100]
                    continue
                seen_hello = True
                with self._lock:
                    if gen != self._gen:
                        return
                    self.hello = msg.get("params") or {}
                    if self.session is None:
                        self.session = self.hello.get("session")
                self._hello_event.set()
                self._emit(None, protocol.HELLO, self.hello)
                continue
            try:
                msg = protocol.decode(line)
            except protocol.ProtocolError as exc:
                log.warning("engine sent a bad line (%s): %.200r", exc, line)
                continue
            if protocol.is_response(msg):
                self._resolve(msg)
            else:
                self._notification(msg)
        with self._lock:
            current = gen == self._gen
        if current:
            self._hello_event.set()  # wake a waiting _connect
            if seen_hello:
                self._lost(transport)

    def _resolve(self, msg: dict[str, Any]) -> None:
        id_ = msg.get("id")
        with self._lock:
            call = self._pending.pop(id_, None) if isinstance(id_, int) else None
            self._cancelled.discard(id_)  # type: ignore[arg-type]
        if call is None:
            if "error" in msg and id_ is None:
                log.warning("engine error: %s", msg["error"].get("message"))
            return
        if call.done():
            return
        with contextlib.suppress(concurrent.futures.InvalidStateError):
            if "error" in msg:
                call.set_exception(protocol.error_from(msg["error"]))
            else:
                call.set_result(msg.get("result"))

    def _notification(self, msg: dict[str, Any]) -> None:
        method = msg["method"]
        params = msg.get("params") or {}
        call = None
        if isinstance(params, dict) and "request" in params and "seq" in params:
            rid = params["request"]
            with self._lock:
                call = self._pending.get(rid) if isinstance(rid, int) else None
                if call is None or rid in self._cancelled:
                    return  # late output of a cancelled or finished request
                if params["seq"] <= call.last_seq:
                    return  # a replayed message we already have
                call.last_seq = params["seq"]
        self._emit(call, method, params)

    def _emit(self, call: Call | None, method: str, params: dict[str, Any]) -> None:
        for cb in (call.on_event if call else None, self.on_notification):
            if cb is None:
                continue
            try:
                cb(method, params)
            except Exception:  # noqa: BLE001 - a broken callback must not kill the reader
                log.exception("engine notification callback failed")

    # --- death and resume -------------------------------------------------------------------
    def _death_message(self, transport: Transport, what: str) -> str:
        status = transport.exit_status(wait=2.0)
        st = f" (exit status {status})" if status is not None else ""
        tail = transport.stderr_tail().strip()
        noise = "\n".join(self.noise[-10:])
        msg = f"engine via {self.launcher.description!r} {what}{st}"
        if tail:
            msg += f"; stderr tail:\n{tail[-4000:]}"
        if noise:
            msg += f"\nbefore its hello it printed:\n{noise}"
        return msg

    def _lost(self, transport: Transport) -> None:
        if self._closing:
            return
        if self.auto_reconnect and self.launcher.can_resume:
            for attempt in range(self.reconnect_attempts):
                if self._closing:
                    return
                time.sleep(min(0.5 * 2**attempt, 5.0))
                try:
                    transport.close()
                    self.reconnect()
                    return
                except Exception as exc:  # noqa: BLE001
                    log.warning(
                        "reconnect %d to %s failed: %s", attempt + 1, self.launcher.description, exc
                    )
        self._dead = self._death_message(transport, "exited or lost its connection")
        self._fail_all(self._dead)

    def _fail_all(self, message: str) -> None:
        with self._lock:
            calls = list(self._pending.values())
            self._pending.clear()
        for c in calls:
            if not c.done():
                with contextlib.suppress(concurrent.futures.InvalidStateError):
                    c.set_exception(EngineGone(message))

    def reconnect(self) -> dict[str, Any]:
        """Attach again to a detached engine and resume every pending request's stream."""
        old_session = self.session
        self._connect(self.launcher.reopen(on_stderr=self.on_stderr))
        with self._lock:
            pairs = [[c.id, c.last_seq] for c in self._pending.values()]
            id_ = self._next_id
            self._next_id += 1
            data = protocol.encode(
                protocol.request(id_, protocol.RESUME, {"session": old_session, "last_seq": pairs})
            )
            call = Call(self, id_, protocol.RESUME, data, None)
            self._pending[id_] = call
            tr = self._transport
        assert tr is not None
        tr.write(data)
        res = call.result(timeout=self.hello_timeout)
        self.session = res.get("session", old_session)
        self.reconnects += 1
        for rid in res.get("unknown", []):  # sent while the link was down: never arrived
            with self._lock:
                c = self._pending.get(rid)
            if c is not None:
                tr.write(c.data)
        return res

    def drop_link(self) -> None:
        """Kill the link process (ssh/bridge) without telling the engine: for tests and demos."""
        tr = self._transport
        kill = getattr(tr, "kill", None)
        if kill is not None:
            kill()
        elif tr is not None:
            tr.close()

    def _watch(self) -> None:
        assert self.heartbeat_timeout
        while not self._closing and self._dead is None:
            time.sleep(min(self.heartbeat_timeout / 4, 5.0))
            if time.monotonic() - self._last_rx > self.heartbeat_timeout:
                log.warning(
                    "engine %s silent for %.0f s; dropping the link",
                    self.launcher.description,
                    self.heartbeat_timeout,
                )
                self._last_rx = time.monotonic()
                self.drop_link()


# --- helpers for the command line -------------------------------------------------------------------


def call_api(
    spec: str | Launcher, method: str, params: dict[str, Any], *, stderr: IO[str] | None = None
) -> Any:
    """One API method on the engine SPEC (what ``--engine SPEC`` does for a pipeline step):
    JSON result; Ctrl-C cancels the request on the engine."""
    err = stderr or sys.stderr
    client = EngineClient(spec, on_stderr=None)
    try:
        client.start()
        call = client.request(method, params, on_event=print_progress(err))
        try:
            return call.result()
        except KeyboardInterrupt:
            client.cancel(call)
            with contextlib.suppress(Exception):
                call.result(timeout=10)
            raise
    finally:
        client.close(shutdown=not client.launcher.can_resume)


def call_json(
    spec: str,
    method: str,
    params: Any,
    *,
    events: IO[str] | None = None,
    timeout: float | None = None,
) -> Any:
    """One request on a fresh engine; notifications go to ``events`` as JSON lines."""

    def on_event(m: str, p: dict[str, Any]) -> None:
        if events is not None:
            events.write(json.dumps({"method": m, "params": p}) + "\n")
            events.flush()

    client = EngineClient(spec)
    try:
        client.start()
        return client.call(method, params, timeout=timeout, on_event=on_event)
    finally:
        client.close(shutdown=not client.launcher.can_resume and method != "shutdown")
