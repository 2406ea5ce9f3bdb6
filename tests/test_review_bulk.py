"""Bulk review: many decisions in one action are ONE journal line and one history step
(one undo takes all of them back, one redo re-applies all), through the journal and the API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import review as journal
from engine.api import methods
from engine.api import review as api
from engine.api.types import RESULTS, DecideItem, DecideManyParams, DecideParams, ReviewView
from engine.errors import NotFound, UserError
from engine.serial import from_json
from tests.workspace_helpers import build_workspace


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return build_workspace(tmp_path / "out")


def _lines(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "user_decisions.jsonl").read_text().splitlines()]


def test_one_line_one_undo_one_redo(tmp_path: Path) -> None:
    out = tmp_path
    journal.decide(out, "g1", "skip")
    ds = journal.decide_many(
        out,
        [
            {"group_id": "g2", "action": "accept", "datatype": "anat", "suffix": "T1w"},
            {"group_id": "g3", "action": "skip"},
            {"group_id": "g1", "action": "unskip"},
        ],
    )
    assert [d.group_id for d in ds] == ["g2", "g3", "g1"]
    recs = _lines(out)
    assert [r["op"] for r in recs] == ["decide", "decide_many"]
    assert len(recs[1]["decisions"]) == 3 and len({d.seq for d in ds}) == 1
    assert set(journal.current_decisions(out)) == {"g2", "g3"}  # g1 unskipped
    back = journal.undo_step(out)
    assert [d.group_id for d in back] == ["g2", "g3", "g1"]
    assert {g: d.action for g, d in journal.current_decisions(out).items()} == {"g1": "skip"}
    assert [d.group_id for d in journal.redo_step(out)] == ["g2", "g3", "g1"]
    assert set(journal.current_decisions(out)) == {"g2", "g3"}
    # undo twice: the bulk step, then the single skip before it
    journal.undo(out)
    assert journal.undo(out).group_id == "g1"
    assert journal.current_decisions(out) == {}
    assert journal.undo(out) is None
    # a new single decision after undo drops the redo tail (both steps)
    journal.redo(out)  # the single skip again
    journal.decide(out, "g4", "skip")
    st = journal.load_state(out)
    assert not st.can_redo and [d.group_id for d in st.history] == ["g1", "g4"]
    assert st.steps == [1, 1]
    assert not journal.check_journal(out).bad  # every line valid (the quarantine stays empty)


def test_invalid_item_records_nothing(tmp_path: Path) -> None:
    with pytest.raises(UserError):
        journal.decide_many(
            tmp_path,
            [{"group_id": "g1", "action": "skip"}, {"group_id": "g2", "action": "nonsense"}],
        )
    with pytest.raises(UserError):
        journal.decide_many(tmp_path, [])
    assert not (tmp_path / "user_decisions.jsonl").exists()


def test_bad_bulk_line_is_quarantined(tmp_path: Path) -> None:
    journal.decide(tmp_path, "g1", "skip")
    with (tmp_path / "user_decisions.jsonl").open("a") as f:
        f.write(json.dumps({"op": "decide_many", "seq": 2, "decisions": [{"action": "skip"}]}))
        f.write("\n")
    st = journal.load_state(tmp_path)
    assert [d.group_id for d in st.history] == ["g1"]
    assert st.warnings and "decisions[0]" in " ".join(st.warnings)


def test_api_decide_many_and_undo(out: Path) -> None:
    assert RESULTS["decide_many"] is ReviewView and "decide_many" in methods.API
    gids = [g.group_id for g in api.workspace_view(str(out)).groups][1:4]
    api.decide(DecideParams(str(out), gids[0], "skip"))
    items = [{"group_id": gids[1], "action": "accept"}, {"group_id": gids[2], "action": "skip"}]
    raw = methods.call("decide_many", {"out_dir": str(out), "decisions": items})  # by name
    res = from_json(ReviewView, raw)
    assert isinstance(res, ReviewView) and res.changed_count == 2
    assert set(res.decisions) == set(gids)
    assert res.decisions[gids[1]].has_name  # an accept takes the name shown
    undone = api.undo(str(out))
    assert undone.changed_count == 2 and set(undone.decisions) == {gids[0]}
    redone = api.redo(str(out))
    assert set(redone.decisions) == set(gids)
    with pytest.raises(NotFound):
        api.decide_many(DecideManyParams(str(out), [DecideItem("no-such-group", "skip")]))
    assert sum(1 for r in _lines(out) if r["op"] == "decide_many") == 1
