"""Review from the command line (``decide``) is journalled exactly like the TUI's decisions, and
the journal and evidence keep any text (issue 12's acceptance items not covered by test_api)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import review
from engine.api.types import DecideParams
from engine.cli import main
from engine.mapping.effective import effective
from engine.model import Mapping
from engine.rpc.client import EngineClient
from engine.workspace import DECISIONS_FILE, Workspace
from tests.workspace_helpers import build_workspace


def _records(out: Path) -> list[dict[str, Any]]:
    """The journal's records without the wall-clock time (all else is compared)."""
    lines = (out / DECISIONS_FILE).read_text(encoding="utf-8").splitlines()
    return [{k: v for k, v in json.loads(x).items() if k != "time"} for x in lines]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_workspace(tmp_path_factory.mktemp("decide") / "OUT", subjects=1)


def _fresh(template: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(template, dest)
    return dest


def _two_groups(out: Path) -> tuple[Mapping, Mapping]:
    """A converted group (to accept) and another one (to skip), from the rules' proposal."""
    props = [m for m in Workspace(out).read_proposals() if not m.is_skip and m.datatype]
    assert len(props) >= 2, props
    return props[0], props[1]


def test_cli_accept_skip_name_undo_journal_like_the_engine(template: Path, tmp_path: Path) -> None:
    """``decide --accept``, ``--skip --reason``, ``--name``, ``--undo`` write the same journal
    records (seq, action, name, reason) as the engine's ``decide``/``undo`` (what the TUI calls),
    and the effective mapping follows them."""
    cli_out = _fresh(template, tmp_path / "cli" / "OUT")
    eng_out = _fresh(template, tmp_path / "engine" / "OUT")
    acc, skp = _two_groups(cli_out)
    reason = 'motion; | "tabs"\there'

    assert main(["decide", str(cli_out), acc.group_id, "--accept"]) == 0
    assert main(["decide", str(cli_out), skp.group_id, "--skip", "--reason", reason]) == 0
    assert main(["decide", str(cli_out), acc.group_id, "--name", "anat/acq-cli_T2w"]) == 0
    assert main(["decide", str(cli_out), "--undo"]) == 0

    with EngineClient("inprocess") as c:
        c.api("decide", DecideParams(str(eng_out), acc.group_id, "accept"))
        c.api("decide", DecideParams(str(eng_out), skp.group_id, "skip", skip_reason=reason))
        c.api("decide", DecideParams(str(eng_out), acc.group_id, "edit", name="anat/acq-cli_T2w"))
        c.api("undo", {"out_dir": str(eng_out)})

    cli, eng = _records(cli_out), _records(eng_out)
    assert cli == eng
    assert [r["op"] for r in cli] == ["decide", "decide", "decide", "undo"]
    assert cli[0]["action"] == "accept" and cli[0]["suffix"] == acc.suffix  # the proposal's name
    assert cli[1]["skip_reason"] == reason

    eff = {m.group_id: m for m in effective(Workspace(cli_out)).mappings}
    assert eff[acc.group_id].source == "user" and eff[acc.group_id].suffix == acc.suffix
    assert eff[skp.group_id].is_skip and eff[skp.group_id].skip_reason == reason
    assert "acq-cli" not in json.dumps(eff[acc.group_id].entities)  # the edit was undone


def test_cli_decide_on_unknown_group_is_a_user_error(
    template: Path, tmp_path: Path, capsys
) -> None:
    out = _fresh(template, tmp_path / "OUT")
    assert main(["decide", str(out), "no-such-group", "--accept"]) == 2
    err = capsys.readouterr().err
    assert "no-such-group" in err
    assert not (out / DECISIONS_FILE).exists()  # nothing journalled


# --- the journal keeps any text ------------------------------------------------------------

TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=24,
) | st.sampled_from([";", "|", ",", "\t", "\n", "\r\n", '"', "'", 'a;b|c,"d"\te\nf', "é≠😀"])


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(reason=TEXT, note=TEXT, label=TEXT)
def test_journal_round_trips_any_text(tmp_path: Path, reason: str, note: str, label: str) -> None:
    """Skip reasons, notes and entity values come back from the journal exactly as given."""
    out = tmp_path / f"j{abs(hash((reason, note, label)))}"
    out.mkdir()
    review.decide(out, "g;1|x", "skip", skip_reason=reason or "r")
    review.decide(out, "g2", "edit", datatype="anat", suffix="T1w", note=note)
    review.decide_many(
        out, [{"group_id": "g,3", "action": "skip", "skip_reason": label or "r", "note": note}]
    )
    st_ = review.load_state(out).effective()
    assert st_["g;1|x"].skip_reason == (reason or "r")
    assert st_["g2"].note == note
    assert st_["g,3"].skip_reason == (label or "r") and st_["g,3"].note == note
    assert not review.journal_warnings(out)  # no line was set aside


def test_evidence_with_separators_stays_one_item(tmp_path: Path) -> None:
    """Regression: "(against: ...; ...)" was cut at the ``;`` and "b-values [0.0, 1000.0]"
    split in two when OUT's tables were written with a separator-joined evidence cell."""
    ws = Workspace(tmp_path / "OUT")
    ws.root.mkdir()
    evidence = [
        "b-values [0.0, 1000.0]",
        "(against: T2w — TE 80 ms; TR 3000 ms | no IR)",
        "line one\nline two\tand a tab",
    ]
    m = Mapping("g1", "dwi", "dwi", evidence=evidence, rationale="a; b | c, d")
    ws.write_proposals([m])
    (back,) = ws.read_proposals()
    assert back.evidence == evidence and back.rationale == m.rationale
