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


def test_decide_result_patches_what_a_full_view_shows(out: Path) -> None:
    """The groups a decision returns are exactly what a fresh workspace view shows for them,
    and the view's light mapping agrees with the effective mapping of every group."""
    from engine.api import view_cache
    from engine.mapping.effective import effective
    from engine.workspace import Workspace

    gids = [g.group_id for g in api.workspace_view(str(out)).groups]
    name = "anat/acq-longlabel_T1w"
    res = api.decide(DecideParams(str(out), gids[1], "edit", name=name))
    assert [g.group_id for g in res.groups] == [gids[1]]
    assert res.groups[0].mapping.display == name and res.groups[0].decision is not None
    res = api.decide(DecideParams(str(out), gids[2], "skip", skip_reason="noise"))
    full = {g.group_id: g for g in api.workspace_view(str(out)).groups}
    for g in res.groups:
        assert g.mapping == full[g.group_id].mapping and g.decision == full[g.group_id].decision
        assert g.unsure == full[g.group_id].unsure
    undone = api.undo(str(out), refresh_files=False)
    assert [g.group_id for g in undone.groups] == [gids[2]]
    assert undone.groups[0].decision is None
    assert undone.groups[0].mapping == undone.groups[0].proposal
    ws = Workspace(out)
    eff = effective(ws)
    light = view_cache.mappings(
        ws.read_series(), ws.read_groups(), ws.read_proposals(), eff.decisions
    )
    assert light == eff.by_group
    # through the RPC types too
    back = from_json(RESULTS["decide"], json.loads(json.dumps(_to_json(res))))
    assert back.groups == res.groups


def _to_json(x):  # noqa: ANN001, ANN202
    from engine.serial import to_json

    return to_json(x)


def test_view_cache_follows_the_files(out: Path) -> None:
    """A new version of a table (analyze, group or map ran again) is read again."""
    from engine.workspace import Workspace

    v1 = api.workspace_view(str(out))
    assert api.workspace_view(str(out)).series == v1.series  # kept: the same version
    ws = Workspace(out)
    kept = [s for s in ws.read_series() if s.subject != v1.series[0].subject]
    ws.write_series(kept)
    v2 = api.workspace_view(str(out))
    assert len(v2.series) == len(kept) < len(v1.series)
    journal.decide(out, v1.groups[0].group_id, "skip")  # outside the API: the journal changed
    v3 = api.workspace_view(str(out))
    assert v3.groups[0].decision is not None and v3.groups[0].mapping.is_skip


def test_report_head_through_the_engine(out: Path) -> None:
    """``workspace.text`` with ``max_lines``: the first lines and where the whole report is;
    without it, all of it (the heuristic editor needs every line)."""
    from engine.rpc.client import EngineClient
    from engine.workspace import MAPPING_REPORT

    (out / MAPPING_REPORT).write_text("\n".join(f"line {i}" for i in range(250)))
    with EngineClient("inprocess") as c:
        head = c.api("workspace.text", {"out_dir": str(out), "name": "mapping", "max_lines": 100})
        whole = c.api("workspace.text", {"out_dir": str(out), "name": "mapping"})
    lines = head.text.splitlines()
    assert lines[:100] == whole.text.splitlines()[:100] and len(lines) == 101
    assert lines[-1] == f"... 150 more lines in {head.path}" and MAPPING_REPORT in head.path
    assert len(whole.text.splitlines()) == 250


def test_field_map_intended_for_follows_a_decision(out: Path) -> None:
    """With a field map named, a decision's result carries the field map's view too (its
    IntendedFor may follow a renamed target), equal to what the effective mapping says."""
    from engine.api import view_cache
    from engine.mapping.effective import effective
    from engine.workspace import Workspace

    gids = [g.group_id for g in api.workspace_view(str(out)).groups]
    fmap = next(g for g in gids if "t2" in g)
    bold = next(g for g in gids if "bold_rest" in g)
    api.decide(DecideParams(str(out), fmap, "edit", name="fmap/magnitude1"))
    res = api.decide(DecideParams(str(out), bold, "skip"))
    assert {g.group_id for g in res.groups} == {bold, fmap}
    ws = Workspace(out)
    eff = effective(ws)
    light = view_cache.mappings(
        ws.read_series(), ws.read_groups(), ws.read_proposals(), eff.decisions
    )
    assert light == eff.by_group
    patched = {g.group_id: g.mapping for g in res.groups}
    assert patched[fmap] == eff.by_group[fmap] and patched[fmap].datatype == "fmap"
    before = api.undo(str(out), refresh_files=False)  # the bold is a target again
    again = {g.group_id: g.mapping for g in before.groups}[fmap]
    assert again == effective(ws).by_group[fmap]
    assert again.intended_for != patched[fmap].intended_for  # it did follow
