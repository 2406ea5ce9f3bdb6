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
import os
from pathlib import PurePath
from typing import Any

from engine.errors import LlmhError, error_class

PROTOCOL_VERSION = "4"  # must equal the client's; bumped with the API's result shapes

# Hostile input: a message nested deeper than this is refused (-32600), and a line longer than
# the engine's limit (``LLMH_ENGINE_MAX_MESSAGE`` bytes, or ``engine serve --max-message``) is
# skipped with a parse error (-32700): neither can exhaust the engine's stack or memory.
MAX_DEPTH = 64
DEFAULT_MAX_MESSAGE = 16 * 1024 * 1024


def max_message_bytes() -> int:
    """The longest line the engine reads (``LLMH_ENGINE_MAX_MESSAGE``, default 16 MiB)."""
    raw = os.environ.get("LLMH_ENGINE_MAX_MESSAGE", "")
    try:
        value = int(raw) if raw.strip() else DEFAULT_MAX_MESSAGE
    except ValueError:
        value = DEFAULT_MAX_MESSAGE
    return max(value, 1024)


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


def _dumps(msg: Any, ensure_ascii: bool) -> str:
    try:
        return json.dumps(
            msg, ensure_ascii=ensure_ascii, separators=(",", ":"), default=_default, allow_nan=False
        )
    except ValueError:
        return json.dumps(
            _finite(json.loads(json.dumps(msg, default=_default))),
            ensure_ascii=ensure_ascii,
            separators=(",", ":"),
            allow_nan=False,
        )


def encode(msg: Any) -> bytes:
    """One message as one line of bytes. Never contains a raw newline before the end.

    Strings that are not valid Unicode (lone surrogates, which JSON escapes can carry) go out
    ``\\u``-escaped, so every line the engine writes is valid UTF-8 JSON.
    """
    text = _dumps(msg, ensure_ascii=False)
    try:
        return text.encode("utf-8") + b"\n"
    except UnicodeEncodeError:
        return _dumps(msg, ensure_ascii=True).encode("ascii") + b"\n"


class ProtocolError(Exception):
    def __init__(self, code: int, message: str, id_: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.id = id_


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def depth(obj: Any, limit: int = MAX_DEPTH) -> int:
    """How deeply ``obj`` nests arrays and objects (iterative; stops counting past ``limit``)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        item, d = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, d)
        if deepest > limit:
            return deepest
        stack.extend((c, d + 1) for c in children if isinstance(c, dict | list))
    return deepest


def decode(line: bytes | str, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """Parse one line into a message dict; raises :class:`ProtocolError` with the right code.

    Never raises anything else, whatever the line holds: invalid UTF-8, ``NaN``, ``1e400``,
    integers of thousands of digits and nesting deeper than ``max_depth`` are all refused.
    """
    if isinstance(line, bytes | bytearray):
        try:
            line = bytes(line).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(PARSE_ERROR, f"not UTF-8: {exc}") from None
    try:
        msg = json.loads(line, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise ProtocolError(
            INVALID_REQUEST, f"a message may nest arrays and objects {max_depth} deep at most"
        ) from None
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, 1e400, too many digits
        raise ProtocolError(PARSE_ERROR, f"not JSON: {str(exc)[:200]}") from None
    except MemoryError:
        raise ProtocolError(PARSE_ERROR, "message too large to parse") from None
    if depth(msg, max_depth) > max_depth:
        raise ProtocolError(
            INVALID_REQUEST,
            f"a message may nest arrays and objects {max_depth} deep at most",
            msg.get("id") if isinstance(msg, dict) and _valid_id(msg.get("id")) else None,
        )
    if isinstance(msg, list):
        raise ProtocolError(INVALID_REQUEST, "batches are not supported; send one message per line")
    if not isinstance(msg, dict):
        raise ProtocolError(INVALID_REQUEST, "a message must be a JSON object")
    id_ = msg.get("id")
    if not _valid_id(id_):
        id_ = None
    if msg.get("jsonrpc") != "2.0":
        raise ProtocolError(INVALID_REQUEST, 'missing "jsonrpc": "2.0"', id_)
    if "method" in msg:
        if not isinstance(msg["method"], str):
            raise ProtocolError(INVALID_REQUEST, '"method" must be a string', id_)
        if "params" in msg and not isinstance(msg["params"], dict | list):
            raise ProtocolError(INVALID_REQUEST, '"params" must be an object or an array', id_)
        if msg.get("id") is not None and not _valid_id(msg["id"]):
            raise ProtocolError(INVALID_REQUEST, '"id" must be a string or an integer', None)
    elif not is_response(msg):
        raise ProtocolError(INVALID_REQUEST, 'a message needs "method", "result" or "error"', id_)
    return msg


def _valid_id(id_: Any) -> bool:
    return isinstance(id_, str | int) and not isinstance(id_, bool)


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
