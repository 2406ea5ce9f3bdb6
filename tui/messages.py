"""Small dataclass messages that workers post back to the app (harlequin style)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.message import Message


class _Msg(Message):
    """Textual calls ``__post_init__`` itself, so a ``@dataclass`` message needs nothing more."""


@dataclass(eq=False)
class EngineReady(_Msg):
    hello: dict[str, Any]


@dataclass(eq=False)
class EngineLost(_Msg):
    reason: str


@dataclass(eq=False)
class WorkspaceLoaded(_Msg):
    series: list[dict[str, Any]]
    groups: list[dict[str, Any]]
    mappings: list[dict[str, Any]]
    review: dict[str, Any]
    missing: list[str] = field(default_factory=list)


@dataclass(eq=False)
class ReviewChanged(_Msg):
    review: dict[str, Any]
    what: str = ""


@dataclass(eq=False)
class EngineDelta(_Msg):
    text: str
    group_id: str = ""
    phase: str = "rationale"


@dataclass(eq=False)
class EngineOutput(_Msg):
    text: str
    stream: str = "stdout"


@dataclass(eq=False)
class EngineLog(_Msg):
    level: str
    logger: str
    message: str


@dataclass(eq=False)
class Progress(_Msg):
    fraction: float | None
    message: str = ""


@dataclass(eq=False)
class ReportText(_Msg):
    name: str
    text: str


@dataclass(eq=False)
class HeuristicText(_Msg):
    text: str
    generated: str = ""  # a regenerated version beside hand edits ("" when none)


@dataclass(eq=False)
class ValidationDone(_Msg):
    ok: bool
    problems: list[tuple[int, str]]
    text: str = ""


@dataclass(eq=False)
class PreviewReady(_Msg):
    key: str
    png: bytes
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(eq=False)
class TaskDone(_Msg):
    name: str
    ok: bool
    message: str = ""
