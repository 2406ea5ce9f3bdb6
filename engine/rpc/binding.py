"""Checking what a client sends before a method runs: params bound to the handler's signature
and type-checked (-32602 naming the parameter), path parameters confined to the engine's roots,
the shapes of ``$/resume`` and ``$/auth``; and interrupting a request's thread."""

from __future__ import annotations

import ctypes
import inspect
import threading
import typing
from collections.abc import Callable, Iterable
from functools import cache
from typing import TYPE_CHECKING, Any

from engine.errors import InvalidParams

if TYPE_CHECKING:
    from engine.rpc.session import RequestContext


def _short(value: Any, limit: int = 100) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _resume_params(params: Any) -> tuple[str, list[tuple[Any, int]]]:
    """``$/resume`` params ``{"session": STR, "last_seq": [[ID, SEQ], ...] or {ID: SEQ}}``."""
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise InvalidParams('needs an object {"session": ..., "last_seq": ...}')
    session = params.get("session")
    if session is None:
        session = ""
    if not isinstance(session, str):
        raise InvalidParams("session: expected a string")
    raw = params.get("last_seq")
    if raw is None:
        raw = []
    if isinstance(raw, dict):
        raw = list(raw.items())
    if not isinstance(raw, list):
        raise InvalidParams("last_seq: expected [[request id, seq], ...]")
    pairs: list[tuple[Any, int]] = []
    for item in raw:
        if not isinstance(item, list | tuple) or len(item) != 2:
            raise InvalidParams("last_seq: expected [[request id, seq], ...]")
        rid, seq = item
        if not isinstance(rid, str | int) or isinstance(rid, bool):
            raise InvalidParams("last_seq: a request id is a string or an integer")
        if seq is None:
            seq = 0
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise InvalidParams("last_seq: a seq is an integer >= 0")
        pairs.append((rid, seq))
    return session, pairs


def _auth_params_ok(params: Any) -> bool:
    return isinstance(params, dict) and isinstance(params.get("token"), str)


@cache
def _hints(fn: Callable[..., Any]) -> tuple[inspect.Signature, dict[str, Any]]:
    sig = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - unresolvable annotations: no type check
        hints = {}
    return sig, hints


def _bind(
    fn: Callable[..., Any], ctx: RequestContext, params: Any, method: str = ""
) -> inspect.BoundArguments:
    """Bind ``params`` to ``fn``'s parameters and check each against its annotation;
    :class:`InvalidParams` (-32602) naming the parameter when one does not fit."""
    from engine.serial import from_json

    sig, hints = _hints(fn)
    try:
        if params is None:
            bound = sig.bind(ctx)
        elif isinstance(params, list):
            bound = sig.bind(ctx, *params)
        else:
            bound = sig.bind(ctx, **params)
    except TypeError as exc:
        raise InvalidParams(f"{method}: {exc}") from None
    first = next(iter(sig.parameters))
    for name, value in list(bound.arguments.items()):
        par = sig.parameters[name]
        if name == first or par.kind in (par.VAR_POSITIONAL, par.VAR_KEYWORD):
            continue
        hint = hints.get(name, Any)
        try:
            bound.arguments[name] = from_json(hint, value)
        except (TypeError, ValueError) as exc:
            raise InvalidParams(f"{method}: {name}: {exc}") from None
    return bound


def _confine(bound: inspect.BoundArguments, roots: Iterable[str], method: str) -> None:
    """Path parameters (:data:`engine.api.methods.PATH_PARAMS`) inside the engine's roots."""
    from engine.api.methods import confine_paths

    sig = bound.signature
    named: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        if sig.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
            named.update(value)
        else:
            named[name] = value
    try:
        confine_paths(named, roots)
    except InvalidParams as exc:
        raise InvalidParams(f"{method}: {exc.message}") from None


def _async_raise(thread: threading.Thread, exc_type: type[BaseException]) -> None:
    """Raise ``exc_type`` in ``thread`` at its next bytecode (how a CLI step is interrupted)."""
    if thread.ident is None:
        return
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread.ident), ctypes.py_object(exc_type)
    )
