"""What the app needs around the engine client: a client that names the running call, the
engine's notifications as messages, and the engine's typed errors as words for a person."""

from __future__ import annotations

import threading
from typing import Any

from textual.message import Message

from engine.errors import Cancelled, LlmhError, UserError
from engine.rpc.client import EngineClient
from tui import messages as msg


class TuiClient(EngineClient):
    """An engine client that tells the app which call a worker waits on (``x`` cancels it)."""

    local = threading.local()

    def request(self, method: str, params: Any = None, *, on_event: Any = None) -> Any:
        call = super().request(method, params, on_event=on_event)
        sink = getattr(self.local, "sink", None)
        if sink is not None:
            sink(call)
        return call


def event_message(method: str, params: dict[str, Any]) -> Message | None:
    """An engine notification (delta, output, log, progress) as a message for the panes."""
    p = {k: str(v) for k, v in params.items()}
    if method == "delta":
        return msg.EngineDelta(p.get("text", ""), p.get("group_id", ""), p.get("phase", ""))
    if method == "output":
        return msg.EngineLog(p.get("text", ""))
    if method == "log":
        return msg.EngineLog(f"{p.get('level', '')} {p.get('logger', '')}: {p.get('message', '')}")
    if method == "progress":
        return msg.Progress(params.get("fraction"), p.get("message", ""))
    return None


def describe_error(err: BaseException | None) -> tuple[str, str]:
    """``(text, severity)`` of a worker's error, by its type (never by a code)."""
    if isinstance(err, Cancelled):
        return "cancelled", "warning"
    if isinstance(err, UserError):
        return err.message, "warning"  # the person can fix it: a path, a step not run
    if isinstance(err, LlmhError):
        return err.message, "error"  # StepFailed, NotAvailable, protocol errors
    return f"{type(err).__name__}: {err}", "error"
