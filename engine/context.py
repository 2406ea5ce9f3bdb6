"""What pipeline code may call while it runs inside an engine request.

Kept dependency-free so any module (``engine.llm``, ``engine.mapping``...) can import it::

    from engine import context
    context.progress(0.5, "grouping")      # no-op outside the engine
    context.delta(text)                    # streamed LLM text
    if context.cancelled(): ...            # cooperative cancellation
    ev = context.cancel_event()            # a threading.Event, e.g. for Backend.stream_chat

Outside a request every call is a cheap no-op.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any, Protocol


class _Ctx(Protocol):  # pragma: no cover - typing only
    cancel_event: threading.Event

    def notify(self, method: str, params: dict[str, Any]) -> bool: ...


_local = threading.local()


def current() -> Any | None:
    """The request context of this thread, or ``None`` outside an engine request."""
    return getattr(_local, "ctx", None)


def _set(ctx: Any | None) -> None:
    _local.ctx = ctx


def progress(fraction: float | None, message: str = "", **extra: Any) -> None:
    """Report progress (``fraction`` in 0..1 or ``None`` when unknown)."""
    ctx = current()
    if ctx is not None:
        ctx.notify("progress", {"fraction": fraction, "message": message, **extra})


def delta(text: str, **extra: Any) -> None:
    """Stream a piece of generated text (LLM token deltas): to the engine's client, or to the
    terminal inside :func:`printing_deltas`."""
    ctx = current()
    if ctx is not None and text:
        ctx.notify("delta", {"text": text, **extra})
    elif _printer is not None and text:
        _printer(text, extra)


_printer: Any = None


@contextlib.contextmanager
def printing_deltas(enabled: bool = True) -> Iterator[None]:
    """Outside an engine, print streamed rationales to stderr (one header per group)."""
    global _printer
    if not enabled:
        yield
        return
    import sys

    last = {"gid": None}

    def printer(text: str, extra: dict[str, Any]) -> None:
        if extra.get("phase", "rationale") != "rationale":
            return
        gid = extra.get("group_id")
        if gid != last["gid"]:
            print(f"\n[{gid}] ", end="", file=sys.stderr)
            last["gid"] = gid
        print(text, end="", file=sys.stderr, flush=True)

    _printer = printer
    try:
        yield
    finally:
        _printer = None


def cancelled() -> bool:
    ctx = current()
    return bool(ctx is not None and ctx.cancel_event.is_set())


def cancel_event() -> threading.Event:
    """The request's cancel event (a fresh, never-set one outside a request)."""
    ctx = current()
    return ctx.cancel_event if ctx is not None else threading.Event()


def log(text: str) -> None:
    """A line for the person running the step: to the engine's client, else to stderr."""
    import sys

    ctx = current()
    if ctx is not None:
        ctx.notify("output", {"stream": "stderr", "text": text.rstrip("\n") + "\n"})
    else:
        print(text, file=sys.stderr)
