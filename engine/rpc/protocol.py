"""The engine protocol: JSON-RPC 2.0, one JSON object per line (UTF-8, ``\\n`` terminated).

Why lines: they survive every pipe we run through (ssh, srun, apptainer, a Unix socket
bridge) and are trivial to frame. A line may be megabytes long (previews, big tables).

Messages (all ``"jsonrpc": "2.0"``):

* engine -> client notifications: ``hello`` (first line), ``heartbeat``, ``log``,
  ``progress``, ``delta`` (streamed LLM text), ``output`` (captured stdout/stderr of a CLI
  step). Those that belong to a request carry ``params.request`` (its id) and ``params.seq``
  (1, 2, 3, ... per request), so a client that reconnects can ask for what it missed.
* client -> engine: requests (see :mod:`engine.rpc.methods`), the notification
  ``$/cancelRequest {"id": ...}`` (as in LSP: the cancelled request still gets an answer,
  the error :data:`REQUEST_CANCELLED`), the request ``$/resume {"session", "last_seq"}``
  after a reconnect, and on a Unix socket first of all ``$/auth {"token"}``.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
from pathlib import PurePath
from typing import Any

from engine.errors import LlmhError, error_class

PROTOCOL_VERSION = "3"  # must equal the client's; bumped with the API's result shapes

# --- JSON-RPC 2.0 and LSP error codes ------------------------------------------------------
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
REQUEST_CANCELLED = -32800  # LSP's RequestCancelled
# --- ours (the JSON-RPC "server error" range -32000..-32099) ---------------------------------
NOT_AVAILABLE = -32001  # a feature this engine does not have (no model backend, missing step)
USER_ERROR = -32002  # engine.errors.UserError: a problem the user can fix
COMMAND_FAILED = -32003  # a pipeline step exited non-zero
AUTH_FAILED = -32004  # bad or missing token on the detach socket
ENGINE_GONE = -32010  # client side: the engine process or its connection died
SHUTTING_DOWN = -32011

# Notification names (engine -> client).
HELLO = "hello"
HEARTBEAT = "heartbeat"
LOG = "log"
PROGRESS = "progress"
DELTA = "delta"
OUTPUT = "output"
# Client -> engine control messages.
CANCEL = "$/cancelRequest"
RESUME = "$/resume"
AUTH = "$/auth"


class RpcError(LlmhError):
    """A JSON-RPC error of the protocol itself (parse, method, engine gone...); the engine's
    typed errors (:mod:`engine.errors`) travel with their own codes and come back as their
    own classes (:func:`error_from`)."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message, data)
        self.code = code

    def to_dict(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            err["data"] = self.data
        return err

    @classmethod
    def from_dict(cls, err: dict[str, Any]) -> RpcError:  # noqa: D102
        return cls(
            int(err.get("code", INTERNAL_ERROR)), str(err.get("message", "")), err.get("data")
        )

    def __str__(self) -> str:
        return f"{self.message} (code {self.code})"


class EngineGone(RpcError):
    """The engine died or the connection to it was lost (and could not be resumed)."""

    def __init__(self, message: str, data: Any = None) -> None:
        super().__init__(ENGINE_GONE, message, data)


# --- messages ------------------------------------------------------------------------------


def request(id_: Any, method: str, params: Any = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "id": id_, "method": method}
    if params is not None:
        msg["params"] = params
    return msg


def notification(method: str, params: Any = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        msg["params"] = params
    return msg


def result(id_: Any, value: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "result": value}


def error(id_: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "error": RpcError(code, message, data).to_dict()}


def is_response(msg: dict[str, Any]) -> bool:
    return "method" not in msg and ("result" in msg or "error" in msg)


# --- framing -------------------------------------------------------------------------------


def _default(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    if isinstance(obj, bytes | bytearray):
        return base64.b64encode(bytes(obj)).decode("ascii")
    item = getattr(obj, "item", None)  # numpy scalars
    if callable(item):
        return item()
    tolist = getattr(obj, "tolist", None)  # numpy arrays
    if callable(tolist):
        return tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _finite(obj: Any) -> Any:
    """Replace NaN/Infinity (not JSON) by null, recursively."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def encode(msg: Any) -> bytes:
    """One message as one line of bytes. Never contains a raw newline before the end."""
    try:
        text = json.dumps(
            msg, ensure_ascii=False, separators=(",", ":"), default=_default, allow_nan=False
        )
    except ValueError:
        text = json.dumps(
            _finite(json.loads(json.dumps(msg, default=_default))),
            ensure_ascii=False,
            separators=(",", ":"),
            allow_nan=False,
        )
    return text.encode("utf-8") + b"\n"


class ProtocolError(Exception):
    def __init__(self, code: int, message: str, id_: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.id = id_


def decode(line: bytes | str) -> dict[str, Any]:
    """Parse one line into a message dict; raises :class:`ProtocolError` with the right code."""
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(PARSE_ERROR, f"not UTF-8: {exc}") from None
    try:
        msg = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ProtocolError(PARSE_ERROR, f"not JSON: {exc}") from None
    if isinstance(msg, list):
        raise ProtocolError(INVALID_REQUEST, "batches are not supported; send one message per line")
    if not isinstance(msg, dict):
        raise ProtocolError(INVALID_REQUEST, "a message must be a JSON object")
    id_ = msg.get("id")
    if msg.get("jsonrpc") != "2.0":
        raise ProtocolError(INVALID_REQUEST, 'missing "jsonrpc": "2.0"', id_)
    if "method" in msg:
        if not isinstance(msg["method"], str):
            raise ProtocolError(INVALID_REQUEST, '"method" must be a string', id_)
        if "params" in msg and not isinstance(msg["params"], dict | list):
            raise ProtocolError(INVALID_REQUEST, '"params" must be an object or an array', id_)
        if (id_ is not None and not isinstance(id_, str | int)) or isinstance(id_, bool):
            raise ProtocolError(INVALID_REQUEST, '"id" must be a string or an integer', None)
    elif not is_response(msg):
        raise ProtocolError(INVALID_REQUEST, 'a message needs "method", "result" or "error"', id_)
    return msg


def error_from(err: dict[str, Any]) -> LlmhError:
    """The exception an error answer stands for: the engine's typed class for its codes
    (:class:`engine.errors.UserError`, ``NotFound``, ``InvalidParams``...), else RpcError."""
    code = int(err.get("code", INTERNAL_ERROR)) if isinstance(err, dict) else INTERNAL_ERROR
    message = str(err.get("message", "")) if isinstance(err, dict) else str(err)
    data = err.get("data") if isinstance(err, dict) else None
    cls = error_class(code)
    if cls is LlmhError:
        return RpcError(code, message, data)
    return cls(message, data)
