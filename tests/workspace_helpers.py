"""A hand-made study (the TUI's demo series) taken through the engine API into OUT."""

from __future__ import annotations

from pathlib import Path

from engine.api import steps
from engine.api.types import MapParams
from engine.workspace import Workspace


def build_workspace(
    out_dir: str | Path, subjects: int = 2, sessions: int = 1, repeats: int = 1
) -> Path:
    """Series (``tui.demo_workspace.make_series``), groups and the rules' mapping in OUT."""
    from tui.demo_workspace import make_series

    out = Path(out_dir)
    Workspace(out).write_series(make_series(subjects, sessions, repeats))
    steps.group(str(out))
    steps.map_(MapParams(out_dir=str(out)))
    return out
