"""Typed errors of the engine, shared by the API, the RPC layer and both front ends.

Each class carries the JSON-RPC error code it travels under, so the engine's client raises the
same class the engine raised and a front end routes errors by type, never by a raw number.
"""

from __future__ import annotations

from typing import Any


class LlmhError(Exception):
    """Base of every error the engine reports on purpose."""

    code = -32000

    def __init__(self, message: str = "", data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


class UserError(LlmhError):
    """A problem the user can fix (bad path, missing step, bad name); shown without a traceback."""

    code = -32002


class NotFound(UserError):
    """A file, group or series that is not there (the message says which step makes it)."""

    code = -32006


class InvalidParams(UserError):
    """A request whose parameters do not fit the method (type, range, path outside OUT)."""

    code = -32602


class NotAvailable(LlmhError):
    """Something this installation or engine cannot do (a backend, a model, a method)."""

    code = -32001


class StepFailed(LlmhError):
    """A pipeline step that ran and failed (a check that did not pass, a tool's exit status)."""

    code = -32003


class Cancelled(LlmhError):
    """The client cancelled the request."""

    code = -32800


class ProtocolMismatch(LlmhError):
    """The engine speaks another protocol version than this client."""

    code = -32005


ERROR_CLASSES: dict[int, type[LlmhError]] = {
    c.code: c
    for c in (
        UserError,
        NotFound,
        InvalidParams,
        NotAvailable,
        StepFailed,
        Cancelled,
        ProtocolMismatch,
    )
}


def error_class(code: int) -> type[LlmhError]:
    """The class an error code stands for (:class:`LlmhError` for codes of no class)."""
    return ERROR_CLASSES.get(code, LlmhError)
