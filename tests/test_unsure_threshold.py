"""The "unsure" threshold is the configured ``confidence_threshold`` everywhere the person sees
it: the engine's workspace view and the TUI's rows after a decision (issue 12: the TUI's own
copy of 0.7 ignored the configured value)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.api.review import undo, workspace_view
from engine.api.types import ReviewView
from engine.model import UNSURE_THRESHOLD
from engine.review import decide
from tests.workspace_helpers import build_workspace
from tui.viewmodel import Workspace as ViewModel


@pytest.fixture
def out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LLMH_CONFIG", str(tmp_path / "no-config.toml"))
    monkeypatch.delenv("LLMH_CONFIDENCE_THRESHOLD", raising=False)
    return build_workspace(tmp_path / "OUT", subjects=1)


def _unsure(view) -> set[str]:  # type: ignore[no-untyped-def]
    return {g.group_id for g in view.groups if g.unsure}


def test_view_and_tui_rows_follow_the_configured_threshold(
    out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    default = workspace_view(str(out))
    assert default.unsure_threshold == UNSURE_THRESHOLD
    low = {g.group_id for g in default.groups if g.proposal.confidence < UNSURE_THRESHOLD}
    assert low and _unsure(default) == low
    between = {g.group_id for g in default.groups if 0.85 <= g.proposal.confidence < 0.92}
    assert between, "the demo study has groups at 0.9"

    monkeypatch.setenv("LLMH_CONFIDENCE_THRESHOLD", "0.92")
    strict = workspace_view(str(out))
    assert strict.unsure_threshold == 0.92
    assert _unsure(strict) == low | between

    # the TUI recomputes a row when a decision is taken back by an engine that sends no
    # group views: it must use the engine's threshold, not a copy of its own
    gid = sorted(between)[0]
    decide(out, gid, "skip")
    vm = ViewModel.build(workspace_view(str(out)))
    assert not vm.groups[gid].unsure  # decided: never unsure
    back = undo(str(out), refresh_files=False)
    changed = vm.set_review(ReviewView(decisions=back.decisions))
    assert gid in changed and vm.groups[gid].unsure
