"""Issue 14 in the TUI: a journal with bad lines opens with the good decisions applied and says
loudly (status line, an error notification, the log) where the bad lines went."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest.importorskip("textual")

os.environ["LLMH_TUI_IMAGE"] = "halfcell"

from engine.workspace import DECISIONS_FILE, QUARANTINE_FILE, Workspace  # noqa: E402
from tests.workspace_helpers import build_workspace  # noqa: E402
from tui.app import LlmhApp  # noqa: E402

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_bad_journal_lines_are_said_loudly_and_the_rest_applied(tmp_path: Path) -> None:
    out = build_workspace(tmp_path / "out [/] [b]x")  # markup-like text in every warning
    gid = Workspace(out).read_groups()[0].group_id
    good = {"op": "decide", "group_id": gid, "action": "skip", "skip_reason": "x", "seq": 1}
    lines = [
        json.dumps(good),
        '{"op": "decide", "group_id": "x", "action": "skip", "seq": "abc"}',
        '{"op": "decide", "group_id": "x", "action": "skip", "seq": 1e400}',
        "{mangled",
    ]
    (out / DECISIONS_FILE).write_text("\n".join(lines) + "\n")
    app = LlmhApp(out, keymap={})
    async with app.run_test(size=(120, 40)) as pilot:
        for _ in range(300):
            if app.ready_at is not None:
                break
            await pilot.pause(0.02)
        assert app.ready_at is not None, "workspace never loaded"
        await pilot.pause()
        screen = app.main_screen
        assert len(screen.ws.groups) == 7  # never an empty workspace
        assert list(screen.ws.review.decisions) == [gid]  # the good line is in effect
        said = [n for n in app._notifications if QUARANTINE_FILE in n.message]
        assert said and said[0].severity == "error", [n.message for n in app._notifications]
        assert "[/] [b]x" in said[0].message and said[0].markup is False
        status = str(screen.query_one("#status").render())
        assert QUARANTINE_FILE in status and "out [/] [b]x" in status, status
        log = " ".join(str(x) for x in screen.reports.pending_log)
        assert QUARANTINE_FILE in log, log
    assert (out / QUARANTINE_FILE).exists()
