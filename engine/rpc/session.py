"""One client link and one request's state: what the request loop keeps per connection and per
request (the replay buffer for ``$/resume``, the cancel event, the answer)."""

from __future__ import annotations

import collections
import secrets
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, BinaryIO

from engine.rpc import protocol

if TYPE_CHECKING:
    from engine.rpc.server import Server

REPLAY_LIMIT = 100_000  # notifications kept per request for resume


class Cancelled(Exception):
    """Raised by :meth:`RequestContext.check` once the request is cancelled."""


class Connection:
    """One client link: a binary reader with ``readline`` and a writer function."""

    def __init__(
        self,
        reader: BinaryIO,
        write: Callable[[bytes], None],
        close: Callable[[], None] | None = None,
        label: str = "",
    ) -> None:
        self.reader = reader
        self._write = write
        self._close = close
        self.label = label
        self.session = secrets.token_hex(8)
        self.alive = True

    def write(self, data: bytes) -> None:
        self._write(data)

    def close(self) -> None:
        if not self.alive:
            return
        self.alive = False
        if self._close is not None:
            try:
                self._close()
            except OSError:
                pass


class RequestState:
    def __init__(self, id_: Any, session: str, method: str) -> None:
        self.id = id_
        self.session = session
        self.method = method
        self.seq = 0
        self.buffer: collections.deque[dict[str, Any]] = collections.deque(maxlen=REPLAY_LIMIT)
        self.cancel_event = threading.Event()
        self.answered = False
        self.response: dict[str, Any] | None = None
        self.started = time.time()
        self.finished: float | None = None
        self.thread: threading.Thread | None = None
        self.interruptible = False
        self.in_handler = False
        self.after_answer: list[Callable[[], None]] = []


def _key(id_: Any) -> str:
    return f"{type(id_).__name__}:{id_}"


class RequestContext:
    """Handed to every method handler (first argument) and reachable via :mod:`context`."""

    def __init__(self, server: Server, state: RequestState) -> None:
        self.server = server
        self.state = state
        self.cancel_event = state.cancel_event

    @property
    def id(self) -> Any:
        return self.state.id

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def check(self) -> None:
        if self.cancel_event.is_set():
            raise Cancelled()

    def notify(self, method: str, params: dict[str, Any]) -> bool:
        """A numbered notification of this request; dropped (False) once it is answered."""
        return self.server.notify_request(self.state, method, params)

    def progress(self, fraction: float | None, message: str = "", **extra: Any) -> bool:
        return self.notify(protocol.PROGRESS, {"fraction": fraction, "message": message, **extra})

    def delta(self, text: str, **extra: Any) -> bool:
        return self.notify(protocol.DELTA, {"text": text, **extra})

    def after_answer(self, fn: Callable[[], None]) -> None:
        self.state.after_answer.append(fn)
