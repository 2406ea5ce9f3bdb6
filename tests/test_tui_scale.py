"""Pilot tests of the review at scale: the name column's room on a wide terminal, rows
grouped by proposal across vendors (reviewed as one block), and decisions patched in place
instead of reloading the workspace."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest.importorskip("textual")

os.environ["LLMH_TUI_IMAGE"] = "halfcell"

from engine.api import review as api  # noqa: E402
from engine.api import steps  # noqa: E402
from engine.api.types import DecideParams, MapParams  # noqa: E402
from engine.workspace import Workspace  # noqa: E402
from tests.workspace_helpers import build_workspace  # noqa: E402
from tui.app import LlmhApp  # noqa: E402
from tui.components.groups import FLAGS_MIN, NAME_MIN, fit_caps, proposal_of  # noqa: E402

pytestmark = pytest.mark.anyio

WIDE = (160, 50)
LONG = "anat/acq-mpragewithaverylongdescriptivelabel_rec-normalizedprescan_T1w"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def vendors_workspace(out: Path) -> Path:
    """Three subjects, each scanned on another vendor's machine: every protocol is spelled
    three ways (three groups each) but proposed as one BIDS name."""
    from tui.demo_workspace import make_series

    series = make_series(3)
    vendors = {"S0001": "SIEMENS", "S0002": "GE MEDICAL SYSTEMS", "S0003": "Philips"}
    for s in series:
        s.manufacturer = vendors[s.subject]
        if s.subject != "S0001":
            s.protocol_name = s.series_description = f"{s.protocol_name} {s.manufacturer[:2]}"
    Workspace(out).write_series(series)
    steps.group(str(out))
    steps.map_(MapParams(out_dir=str(out)))
    return out


async def _ready(app: LlmhApp, pilot) -> None:  # type: ignore[no-untyped-def]
    for _ in range(500):
        if app.ready_at is not None:
            break
        await pilot.pause(0.02)
    assert app.ready_at is not None, "workspace never loaded"
    await pilot.pause()


async def _settle(app: LlmhApp, pilot) -> None:  # type: ignore[no-untyped-def]
    for _ in range(50):
        await app.workers.wait_for_complete()
        await pilot.pause()
        if not any(w.is_running for w in app.workers):
            break
    await pilot.pause()


def _plain(cell) -> str:  # noqa: ANN001
    return getattr(cell, "plain", str(cell))


async def test_name_column_gets_the_room_when_wide(tmp_path: Path) -> None:
    out = build_workspace(tmp_path / "out")
    gid = api.workspace_view(str(out)).groups[1].group_id
    api.decide(DecideParams(str(out), gid, "edit", name=LONG))
    app = LlmhApp(out, keymap={})
    async with app.run_test(size=WIDE) as pilot:
        await _ready(app, pilot)
        pane = app.main_screen.groups
        row = pane.table.get_row_at(pane._order.index(gid))
        assert _plain(row[1]) == LONG  # the whole name, not clipped at 32 columns
        widths = {str(c.key.value): c.width for c in pane.table.ordered_columns}
        assert widths["name"] == len(LONG) > 32
        await pilot.resize_terminal(100, 40)
        await pilot.pause(0.2)
        row = pane.table.get_row_at(pane._order.index(gid))
        assert _plain(row[1]).endswith("…") and len(_plain(row[1])) >= NAME_MIN


def test_flags_give_up_cells_before_the_name(tmp_path: Path) -> None:
    out = build_workspace(tmp_path / "out")
    groups = api.workspace_view(str(out)).groups
    api.decide(DecideParams(str(out), groups[1].group_id, "edit", name=LONG))
    groups = api.workspace_view(str(out)).groups
    groups[2].group.flags = ["drift:repetition_time", "missing:S0001,S0002", "aborted:40/200"]
    wide = fit_caps(groups, 200)
    assert wide[1] == len(LONG)
    widest_flags = wide[2]
    assert widest_flags == len("drift missing aborted") > FLAGS_MIN
    # a little narrower: the flags shrink, the name keeps its room
    natural = next(w for w in range(60, 300) if fit_caps(groups, w) == wide)
    assert fit_caps(groups, natural - 1)[1:] == (len(LONG), widest_flags - 1)
    tight = fit_caps(groups, natural - (widest_flags - FLAGS_MIN))
    assert tight[1] == len(LONG) and tight[2] == FLAGS_MIN
    narrow = fit_caps(groups, 90)
    assert narrow[2] == FLAGS_MIN and NAME_MIN <= narrow[1] < len(LONG)


async def test_group_by_proposal_reviews_vendors_together(tmp_path: Path) -> None:
    out = vendors_workspace(tmp_path / "out")
    app = LlmhApp(out, keymap={})
    async with app.run_test(size=WIDE) as pilot:
        await _ready(app, pilot)
        pane = app.main_screen.groups
        pane.table.focus()

        def blocks() -> list[str]:
            """The proposals in row order, runs collapsed: one entry per block."""
            names = [proposal_of(g) for g in pane.visible_rows()]
            return [n for i, n in enumerate(names) if i == 0 or names[i - 1] != n]

        assert len(blocks()) > len(set(blocks()))  # by group id, vendors are apart
        await pilot.press("b")
        assert len(blocks()) == len(set(blocks()))  # one block per proposal
        assert "by proposal" in str(pane.border_title)
        first = pane.visible_rows()[0]
        block = [g.group_id for g in pane.visible_rows() if proposal_of(g) == proposal_of(first)]
        assert len(block) == 3  # the three vendors' spellings of one acquisition
        assert pane._order[: len(block)] == block
        pane.table.move_cursor(row=0)
        await pilot.press("equals_sign", "A")
        await _settle(app, pilot)
        recs = [json.loads(x) for x in (out / "user_decisions.jsonl").read_text().splitlines()]
        assert [r["op"] for r in recs] == ["decide_many"]
        assert sorted(d["group_id"] for d in recs[0]["decisions"]) == sorted(block)
        assert all(app.main_screen.ws.groups[g].decision is not None for g in block)
        await pilot.press("ctrl+z")
        await _settle(app, pilot)
        assert all(app.main_screen.ws.groups[g].decision is None for g in block)
        await pilot.press("b")
        assert len(blocks()) > len(set(blocks())) and pane.border_title == pane.BORDER_TITLE


async def test_decision_patches_rows_without_a_reload(tmp_path: Path) -> None:
    out = build_workspace(tmp_path / "out")
    app = LlmhApp(out, keymap={})
    async with app.run_test(size=WIDE) as pilot:
        await _ready(app, pilot)
        screen = app.main_screen
        view = screen.ws.view  # a reload would replace it
        screen.groups.table.focus()
        screen.groups.table.move_cursor(row=1)
        gid = screen.groups.selected()
        await pilot.press("s")
        await _settle(app, pilot)
        assert screen.ws.view is view
        g = screen.ws.groups[gid]
        assert g.mapping.is_skip and g.decision is not None
        assert _plain(screen.groups.table.get_row_at(1)[1]).startswith("(skip")
        fresh = {x.group_id: x for x in api.workspace_view(str(out)).groups}[gid]
        assert g.mapping == fresh.mapping and g.decision == fresh.decision
        await pilot.press("u")
        await _settle(app, pilot)
        assert screen.ws.view is view
        assert screen.ws.groups[gid].decision is None
        assert screen.ws.groups[gid].mapping == fresh.proposal


async def test_big_report_is_clipped_and_tokens_are_gathered(tmp_path: Path) -> None:
    """A 10k-series report is not laid out whole in the pane (it says where the rest is), and
    streamed tokens are drawn a few times a second, all of them, in order."""
    from tui import messages as msg
    from tui.screens.main import REPORT_LINES

    out = build_workspace(tmp_path / "out")
    app = LlmhApp(out, keymap={})
    async with app.run_test(size=WIDE) as pilot:
        await _ready(app, pilot)
        screen = app.main_screen
        text = "\n".join(f"series {i}" for i in range(REPORT_LINES + 500))
        screen.post_message(msg.ReportText("mapping", text))
        await pilot.pause()
        shown = screen.reports.report("mapping").splitlines()
        assert len(shown) == REPORT_LINES + 1 and shown[REPORT_LINES - 1] == text.splitlines()[-501]
        assert shown[-1].startswith("... 500 more lines") and str(out) in shown[-1]
        small = "a\nb [/] c"
        screen.post_message(msg.ReportText("grouping", small))
        await pilot.pause()
        assert screen.reports.report("grouping") == small
        gid = screen.groups.selected()
        redraws = []
        pane = screen.rationale
        original = pane._redraw
        pane._redraw = lambda: (redraws.append(1), original())[1]  # type: ignore[method-assign]
        tokens = [f"t{i} " for i in range(40)]
        for t in tokens:
            screen.post_message(msg.EngineDelta(t, gid))
        await pilot.pause(0.5)
        assert pane.live[gid] == "".join(tokens)
        assert "".join(tokens).strip() in str(pane.query_one("#rationale-text").render())
        assert 1 <= len(redraws) < len(tokens) / 4


async def test_stream_ending_keeps_its_last_tokens(tmp_path: Path) -> None:
    """Tokens still gathered when the stream ends (done or failed) go into its history; none
    is left shown as streaming."""
    from tui import messages as msg

    out = build_workspace(tmp_path / "out")
    app = LlmhApp(out, keymap={})
    async with app.run_test(size=WIDE) as pilot:
        await _ready(app, pilot)
        screen = app.main_screen
        gid = screen.groups.selected()
        for t in ("a T1w ", "MPRAGE"):
            screen.post_message(msg.EngineDelta(t, gid))
        await pilot.pause(0)  # handled, not drawn yet
        screen.finish_stream()
        await pilot.pause(0.4)
        assert screen.rationale.history[gid] == ["a T1w MPRAGE"]
        assert gid not in screen.rationale.live
        assert "streaming" not in str(screen.rationale.query_one("#rationale-text").render())
