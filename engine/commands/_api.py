"""How a command calls the engine API: in this process, or on ``--engine SPEC`` by name.

Either way the command gets the API's result dataclass back and prints from it; nothing is
parsed from printed text.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from engine.serial import from_json, to_json


def say_warnings(warnings: list[str]) -> None:
    """A result's warnings on stderr, one line each, control characters made visible."""
    import sys

    from engine.text import printable

    for w in warnings:
        print(f"WARNING: {printable(w)}", file=sys.stderr)


def invoke(args: argparse.Namespace, method: str, params: Any) -> Any:
    """Run API ``method`` with ``params`` (its parameters dataclass, or a dict of arguments)."""
    from engine.api.methods import API, bind, result_type

    payload = to_json(params) if dataclasses.is_dataclass(params) else to_json(dict(params))
    spec = getattr(args, "engine", None)
    if spec:
        from engine.rpc.client import call_api

        return from_json(result_type(method), call_api(spec, method, payload))
    func = API[method].func
    if dataclasses.is_dataclass(params):
        return func(params)
    return func(**bind(func, payload))
