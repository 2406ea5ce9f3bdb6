"""Typed messages: widgets ask (requests bubble up to the app, which runs the engine call in
a worker), workers answer (results go to the main screen, which updates the panes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.message import Message

from engine.api.types import (
    MapResult,
    Preview,
    ReviewView,
    ValidateResult,
    WorkspaceView,
)


class _Msg(Message):
    """Textual calls ``__post_init__`` itself, so a ``@dataclass`` message needs nothing more."""


class _Result(_Msg):
    bubble = False  # handled by the main screen, never routed back to the app


# --- requests: a widget wants something from the engine ------------------------------------------


@dataclass(eq=False)
class Decide(_Msg):
    """One decision about one group (``action``: accept | edit | skip | unskip)."""

    group_id: str
    action: str
    name: str = ""  # ``func/task-rest_bold``
    skip_reason: str = ""


@dataclass(eq=False)
class DecideMany(_Msg):
    """A bulk review: ``Decide`` requests recorded as ONE journal entry (one undo)."""

    decisions: list[Decide]
    what: str = ""


@dataclass(eq=False)
class History(_Msg):
    op: str  # undo | redo


@dataclass(eq=False)
class Remap(_Msg):
    group_ids: list[str]


@dataclass(eq=False)
class Generate(_Msg):
    beside_edits: bool  # hand edits exist: write heuristic.generated.py and show a diff


@dataclass(eq=False)
class SaveHeuristic(_Msg):
    text: str


@dataclass(eq=False)
class Validate(_Msg):
    pass


@dataclass(eq=False)
class Convert(_Msg):
    subject: str
    session: str
    dry_run: bool


@dataclass(eq=False)
class LoadPreview(_Msg):
    key: str


@dataclass(eq=False)
class LoadReports(_Msg):
    pass


@dataclass(eq=False)
class Reload(_Msg):
    pass


@dataclass(eq=False)
class CheckName(_Msg):
    """The edit dialog's text: the engine checks it and lists completions."""

    text: str


# --- results and events: the engine answered ------------------------------------------------------


@dataclass(eq=False)
class EngineReady(_Result):
    hello: dict[str, Any]


@dataclass(eq=False)
class EngineLost(_Result):
    reason: str


@dataclass(eq=False)
class WorkspaceLoaded(_Result):
    view: WorkspaceView


@dataclass(eq=False)
class ReviewChanged(_Result):
    review: ReviewView
    what: str = ""


@dataclass(eq=False)
class Remapped(_Result):
    result: MapResult


@dataclass(eq=False)
class EngineDelta(_Result):
    text: str
    group_id: str = ""
    phase: str = "rationale"


@dataclass(eq=False)
class EngineLog(_Result):
    text: str


@dataclass(eq=False)
class Progress(_Result):
    fraction: float | None
    message: str = ""


@dataclass(eq=False)
class ReportText(_Result):
    name: str  # grouping | mapping | validation | conversion | diff
    text: str
    show: bool = False


@dataclass(eq=False)
class HeuristicText(_Result):
    text: str
    generated: str = ""  # a regenerated version beside hand edits ("" when none)


@dataclass(eq=False)
class HeuristicSaved(_Result):
    text: str


@dataclass(eq=False)
class ValidationDone(_Result):
    result: ValidateResult


@dataclass(eq=False)
class PreviewReady(_Result):
    key: str
    preview: Preview


@dataclass(eq=False)
class NameChecked(_Result):
    text: str
    problems: list[str] = field(default_factory=list)
    candidates: list[str] = field(default_factory=list)


@dataclass(eq=False)
class TaskDone(_Result):
    name: str
    ok: bool
    message: str = ""
