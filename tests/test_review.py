"""The review journal: decisions saved as made, undo/redo, crash safety, decisions win."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import review
from engine.errors import UserError
from engine.model import Mapping


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path


def _maps() -> list[Mapping]:
    return [
        Mapping("g1", "anat", "T1w", confidence=0.9),
        Mapping("g2", "func", "bold", {"task": "rest"}, confidence=0.5, source="llm"),
        Mapping("g3", skip_reason="localizer", confidence=0.95),
    ]


def test_decisions_are_journaled_and_win(out: Path) -> None:
    review.decide(out, "g1", "accept", datatype="anat", suffix="T1w")
    review.decide(out, "g2", "edit", datatype="func", suffix="bold", entities={"task": "nback"})
    review.decide(out, "g3", "edit", datatype="anat", suffix="T2w")
    lines = (out / review.DECISIONS_FILE).read_text().splitlines()
    assert [json.loads(x)["seq"] for x in lines] == [1, 2, 3]
    got = {m.group_id: m for m in review.apply_user_decisions(_maps(), out)}
    assert all(m.source == "user" and m.confidence == 1.0 for m in got.values())
    assert got["g2"].entities == {"task": "nback"}
    assert not got["g3"].is_skip and got["g3"].suffix == "T2w"


def test_skip_unskip_undo_redo(out: Path) -> None:
    review.decide(out, "g1", "skip")
    assert review.apply_user_decisions(_maps(), out)[0].skip_reason == review.USER_SKIP
    review.decide(out, "g1", "unskip")
    assert "g1" not in review.current_decisions(out)  # back to the rules' name
    assert review.apply_user_decisions(_maps(), out)[0].source == "rules"
    assert review.undo(out).action == "unskip"
    assert review.current_decisions(out)["g1"].action == "skip"
    assert review.redo(out).action == "unskip"
    review.undo(out)
    review.decide(out, "g2", "accept", datatype="func", suffix="bold", entities={"task": "rest"})
    st = review.load_state(out)
    assert not st.can_redo and set(st.effective()) == {"g1", "g2"}
    assert review.redo(out) is None


def test_invalid_names_are_refused_with_reason(out: Path) -> None:
    with pytest.raises(UserError, match="not allowed in anat"):
        review.decide(out, "g1", "edit", datatype="anat", suffix="bold")
    with pytest.raises(UserError, match="run"):
        review.decide(out, "g1", "edit", datatype="anat", suffix="T1w", entities={"run": "1"})
    with pytest.raises(UserError, match="requires the entity 'task'"):
        review.decide(out, "g2", "edit", datatype="func", suffix="bold")
    assert not (out / review.DECISIONS_FILE).exists()


def test_torn_last_line_survives(out: Path) -> None:
    review.decide(out, "g1", "skip")
    with (out / review.DECISIONS_FILE).open("a") as fh:
        fh.write('{"op": "decide", "group_id": "g2", "act')  # killed mid-write
    assert set(review.current_decisions(out)) == {"g1"}
    review.decide(out, "g2", "skip")
    assert set(review.current_decisions(out)) == {"g1", "g2"}


def test_template_round_trip() -> None:
    assert review.parse_template("func/task-rest_acq-mb_bold") == (
        "func",
        "bold",
        {"task": "rest", "acq": "mb"},
    )
    assert review.bids_template("func", "bold", {"task": "rest"}) == "func/task-rest_bold"
    with pytest.raises(UserError):
        review.parse_template("bold")


def test_rpc_methods_inprocess(tmp_path: Path) -> None:
    import engine.rpc.review_methods  # noqa: F401
    from engine.rpc.client import EngineClient
    from engine.rpc.protocol import RpcError
    from tui.demo_workspace import build_workspace

    out = build_workspace(tmp_path / "out")
    with EngineClient("inprocess") as c:
        res = c.call("decide", {"out_dir": str(out), "group_id": "g01_localizer", "action": "skip"})
        assert "g01_localizer" in res["decisions"] and res["can_undo"]
        assert c.call("undo", {"out_dir": str(out)})["decisions"] == {}
        assert "g01_localizer" in c.call("redo", {"out_dir": str(out)})["decisions"]
        assert c.call("decisions", {"out_dir": str(out)})["can_undo"]
        with pytest.raises(RpcError, match="not allowed"):
            c.call(
                "decide",
                {
                    "out_dir": str(out),
                    "group_id": "g02_t1_mprage_sag",
                    "action": "edit",
                    "datatype": "anat",
                    "suffix": "bold",
                },
            )
        c.call(
            "decide",
            {
                "out_dir": str(out),
                "group_id": "g02_t1_mprage_sag",
                "action": "edit",
                "datatype": "anat",
                "suffix": "T1w",
                "entities": {"acq": "mprage"},
            },
        )
        c.call("review.apply", {"out_dir": str(out)})
        mapped = (out / "aggregated_dicominfo_mapped.tsv").read_text()
        assert "acq-mprage" in mapped and "skipped by user" in mapped
        c.call("undo", {"out_dir": str(out)})
        prop = c.call("review.proposed", {"out_dir": str(out)})["mappings"]
        assert all(r["source"] != "user" for r in prop)
        c.call("review.apply", {"out_dir": str(out)})
        assert "acq-mprage" not in (out / "aggregated_dicominfo_mapped.tsv").read_text()
        idx = c.call("review.index", {"out_dir": str(out)})["series"]
        assert len(idx) == 14 and idx[0]["key"].startswith("S0001|")
        c.call("heuristic.save", {"out_dir": str(out), "text": "x = 1\n"})
        assert (out / "heuristic.py").read_text() == "x = 1\n"
        with pytest.raises(RpcError):
            c.call("heuristic.save", {"out_dir": str(out), "text": "", "name": "../evil.py"})
