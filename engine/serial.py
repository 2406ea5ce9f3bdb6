"""JSON for the model and API types: ``to_json(obj)`` and ``from_json(cls, data)``.

Results cross the engine boundary as plain JSON and come back as the same dataclasses, typed
from their annotations (nested dataclasses, lists, tuples, dicts, optionals, literals), so the
RPC client hands the TUI exactly what an in-process call would.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from functools import cache
from typing import Any, TypeVar, get_args, get_origin

T = TypeVar("T")


def to_json(obj: Any) -> Any:
    """Plain JSON values for dataclasses (their fields, recursively), tuples as lists."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_json(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [to_json(v) for v in obj]
    if hasattr(obj, "__fspath__"):
        return str(obj)
    return obj


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_json(tp: Any, data: Any) -> Any:
    """``data`` (from :func:`to_json`) as an instance of the type ``tp``.

    Raises :class:`TypeError` naming the field when a value does not fit its annotation.
    """
    return _conv(tp, data, tp.__name__ if isinstance(tp, type) else str(tp))


def _conv(tp: Any, v: Any, where: str) -> Any:
    if tp is Any:
        return v
    origin = get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        args = get_args(tp)
        if v is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _conv(a, v, where)
            except (TypeError, ValueError) as exc:
                errors.append(str(exc))
        raise TypeError(f"{where}: {v!r} fits none of {tp}")
    if origin is typing.Literal:
        if v not in get_args(tp):
            raise TypeError(f"{where}: {v!r} is not one of {get_args(tp)}")
        return v
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(v, dict):
            raise TypeError(f"{where}: expected an object, got {type(v).__name__}")
        hints = _hints(tp)
        kwargs = {}
        for f in dataclasses.fields(tp):
            if f.name in v and f.init:
                kwargs[f.name] = _conv(hints[f.name], v[f.name], f"{where}.{f.name}")
        return tp(**kwargs)
    if origin in (list, set, frozenset) or tp in (list,):
        if not isinstance(v, list | tuple):
            raise TypeError(f"{where}: expected a list, got {type(v).__name__}")
        (item,) = get_args(tp) or (Any,)
        return [_conv(item, x, f"{where}[{i}]") for i, x in enumerate(v)]
    if origin is tuple:
        if not isinstance(v, list | tuple):
            raise TypeError(f"{where}: expected a list, got {type(v).__name__}")
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_conv(args[0], x, f"{where}[{i}]") for i, x in enumerate(v))
        if len(args) != len(v):
            raise TypeError(f"{where}: expected {len(args)} items, got {len(v)}")
        return tuple(
            _conv(a, x, f"{where}[{i}]") for i, (a, x) in enumerate(zip(args, v, strict=True))
        )
    if origin is dict or tp is dict:
        if not isinstance(v, dict):
            raise TypeError(f"{where}: expected an object, got {type(v).__name__}")
        kt, vt = get_args(tp) or (Any, Any)
        return {_conv(kt, k, where): _conv(vt, x, f"{where}[{k!r}]") for k, x in v.items()}
    if tp is float:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise TypeError(f"{where}: expected a number, got {v!r}")
        return float(v)
    if tp is int:
        if isinstance(v, bool) or not isinstance(v, int):
            if isinstance(v, float) and v.is_integer():
                return int(v)
            raise TypeError(f"{where}: expected an integer, got {v!r}")
        return v
    if tp is bool:
        if not isinstance(v, bool):
            raise TypeError(f"{where}: expected true/false, got {v!r}")
        return v
    if tp is str:
        if not isinstance(v, str):
            raise TypeError(f"{where}: expected a string, got {v!r}")
        return v
    return v
