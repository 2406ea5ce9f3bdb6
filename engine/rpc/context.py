"""What pipeline code may call while it runs inside an engine request.

Kept dependency-free so any module (``engine.llm``, ``engine.mapping``...) can import it::

    from engine.rpc import context
    context.progress(0.5, "grouping")      # no-op outside the engine
    context.delta(text)                    # streamed LLM text
    if context.cancelled(): ...            # cooperative cancellation
    ev = context.cancel_event()            # a threading.Event, e.g. for Backend.stream_chat

Outside a request every call is a cheap no-op.
"""

from __future__ import annotations

import threading
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
    """Stream a piece of generated text (LLM token deltas)."""
    ctx = current()
    if ctx is not None and text:
        ctx.notify("delta", {"text": text, **extra})


def cancelled() -> bool:
    ctx = current()
    return bool(ctx is not None and ctx.cancel_event.is_set())


def cancel_event() -> threading.Event:
    """The request's cancel event (a fresh, never-set one outside a request)."""
    ctx = current()
    return ctx.cancel_event if ctx is not None else threading.Event()
