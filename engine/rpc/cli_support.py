"""What the command line does with an engine: print its events, split ``--engine SPEC`` off.

Kept out of :mod:`engine.rpc.client` (which re-exports these names): the client is the
transport-level machinery the TUI also uses; these are the command line's renderers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Any

from engine.rpc import protocol

EventCallback = Callable[[str, dict[str, Any]], None]


def print_event(stdout: IO[str], stderr: IO[str]) -> EventCallback:
    """An ``on_event`` that writes a CLI step's output and logs as the step itself would."""

    def on_event(method: str, params: dict[str, Any]) -> None:
        if method == protocol.OUTPUT:
            stream = stdout if params.get("stream") == "stdout" else stderr
            stream.write(params.get("text", ""))
            stream.flush()
        elif method == protocol.LOG:
            stderr.write(f"{params.get('level')} {params.get('logger')}: {params.get('message')}\n")
            stderr.flush()

    return on_event


def print_progress(stderr: IO[str]) -> EventCallback:
    """An ``on_event`` for the command line: output and logs as the step would print them,
    streamed model text as it comes, progress as a line that rewrites itself on a terminal."""
    base = print_event(stderr, stderr)
    tty = stderr.isatty()

    def on_event(method: str, params: dict[str, Any]) -> None:
        if method == protocol.DELTA:
            stderr.write(str(params.get("text", "")))
            stderr.flush()
        elif method == protocol.PROGRESS and tty:
            frac = params.get("fraction")
            pct = f"{100 * frac:5.1f}% " if isinstance(frac, int | float) else ""
            stderr.write(f"\r{pct}{str(params.get('message', ''))[:70]:<70}")
            stderr.flush()
        else:
            base(method, params)

    return on_event


def strip_engine_option(argv: list[str]) -> tuple[str | None, list[str]]:
    """Split ``--engine SPEC`` / ``--engine=SPEC`` out of an argv."""
    spec = None
    rest: list[str] = []
    it = iter(argv)
    for a in it:
        if a == "--engine":
            spec = next(it, None)
        elif a.startswith("--engine="):
            spec = a.split("=", 1)[1]
        else:
            rest.append(a)
    return spec, rest
