"""Answer schema, prompts, PHI scrubbing, cache and map_with_llm with a scripted backend."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest

from engine.llm import map_with_llm
from engine.llm.answer import AnswerError, answer_schema, parse_answer, validate_json
from engine.llm.backend import Backend, GenerationOptions, Message, create_backend
from engine.llm.privacy import contains_phi, is_local_host, phi_values, scrub, warn_if_remote
from engine.llm.prompt import PROMPT_FIELDS, build_messages, estimate_tokens, prompt_text
from engine.model import Group, Mapping, SeriesInfo


def _series(n: int = 2) -> list[SeriesInfo]:
    return [
        SeriesInfo(
            series_id=f"{i}-t1",
            subject=f"P0{i}",
            patient_id=f"P0{i}",
            referring_physician_name="House^Gregory",
            accession_number=f"ACC9{i}77",
            date="20230105",
            series_description="T1 MPRAGE House",
            protocol_name="t1_mprage_sag",
            image_type=("ORIGINAL", "PRIMARY", "M", "ND"),
            TR=2.3,
            TE=2.98,
            inversion_time=900.0,
            flip_angle=9.0,
            dim1=256,
            dim2=256,
            dim3=176,
            mr_acquisition_type="3D",
        )
        for i in range(1, n + 1)
    ]


def _groups(series: list[SeriesInfo]) -> list[Group]:
    return [Group("g-t1", "t1 mprage sag", [s.key for s in series]), Group("g-loc", "localizer")]


def _answer(gid: str, **kw: object) -> str:
    d = {"group_id": gid, "decision": "map", "datatype": "anat", "suffix": "T1w"}
    d.update({"entities": {}, "confidence": "high"})
    d.update(kw)
    return json.dumps(d)


class Scripted(Backend):
    """Answers from a script: rationale for unconstrained calls, next JSON otherwise."""

    name = "scripted"

    def __init__(self, model: str = "script", answers: dict[str, list[str]] | None = None):
        super().__init__(model)
        self.answers = answers or {}
        self.calls: list[tuple[list[Message], GenerationOptions]] = []

    def _load(self, progress) -> None:
        progress(0.5, "half")

    def _stream(self, messages, options, cancel) -> Iterator[str]:
        self.calls.append((messages, options))
        if options.json_schema is None:
            yield from ["Looks ", "like ", "a T1w."]
            return
        gid = options.json_schema["anyOf"][0]["properties"]["group_id"]["enum"][0]
        queue = self.answers.get(gid) or [_answer(gid)]
        yield queue.pop(0) if len(queue) > 1 else queue[0]


# --- answer schema -------------------------------------------------------------------------


def test_answer_schema_enums_come_from_bids_schema():
    from engine.bids_schema import get_schema

    s = answer_schema("g1")
    anat = next(
        b for b in s["anyOf"] if b["properties"].get("datatype", {}).get("enum") == ["anat"]
    )
    assert anat["properties"]["suffix"]["enum"] == list(get_schema().suffixes("anat"))
    part = anat["properties"]["entities"]["properties"]["part"]
    assert part["enum"] == list(get_schema().entity_values("part"))
    assert "run" not in anat["properties"]["entities"]["properties"]
    assert s["anyOf"][-1]["properties"]["decision"]["enum"] == ["skip"]


def test_parse_answer_checks_json_and_bids():
    assert parse_answer("x " + _answer("g1") + " y", "g1").suffix == "T1w"
    with pytest.raises(AnswerError, match="suffix"):
        parse_answer(_answer("g1", suffix="bold"), "g1")
    with pytest.raises(AnswerError, match="group_id"):
        parse_answer(_answer("other"), "g1")
    with pytest.raises(AnswerError, match="requires"):  # bold needs task
        parse_answer(_answer("g1", datatype="func", suffix="bold"), "g1")
    with pytest.raises(AnswerError, match="JSON"):
        parse_answer("no json here", "g1")
    skip = parse_answer(
        json.dumps(
            {"group_id": "g1", "decision": "skip", "skip_reason": "localizer", "confidence": "high"}
        ),
        "g1",
    )
    m = skip.to_mapping("why")
    assert m.is_skip and m.source == "llm" and m.rationale == "why"


def test_validate_json_reports_the_closest_branch():
    errs = validate_json(
        {
            "group_id": "g",
            "decision": "map",
            "datatype": "anat",
            "suffix": "x",
            "entities": {},
            "confidence": "high",
        },
        answer_schema("g"),
    )
    assert any("suffix" in e for e in errs)


# --- privacy and prompts -------------------------------------------------------------------


def test_scrub_and_local_hosts():
    phi = phi_values(_series())
    text = scrub("T1 House^Gregory ACC9177 P01 on 2023-01-05", phi)
    assert not contains_phi(text, phi) and "2023" not in text
    assert is_local_host("http://127.0.0.1:11434") and is_local_host("localhost:8000")
    assert is_local_host("http://[::1]:8000/v1") and not is_local_host("https://api.example.com")


def test_remote_host_warns_loudly(caplog):
    assert warn_if_remote("https://llm.example.org/v1") is True
    assert "NOT this machine" in caplog.text
    assert warn_if_remote("http://127.0.0.1:1") is False


def test_prompt_uses_allowlist_and_has_no_phi():
    series = _series()
    groups = _groups(series)
    rule = Mapping("g-t1", "anat", "T1w", confidence=0.5, evidence=["TI 900 ms", "3D"])
    msgs = build_messages(groups[0], series, rule, context="healthy adults", phi=phi_values(series))
    text = prompt_text(msgs)
    for s in series:
        for v in (s.patient_id, s.accession_number, "House", "Gregory", s.date):
            assert v not in text
    assert "t1_mprage_sag" in text and "T1w" in text and "healthy adults" in text
    assert "inversion_time: 900" in text and "g-t1" in text
    assert estimate_tokens(text) < 2000
    for banned in ("patient_id", "accession_number", "referring_physician_name", "date"):
        assert banned not in PROMPT_FIELDS


# --- map_with_llm --------------------------------------------------------------------------


def test_map_with_llm_asks_only_unsure_groups_and_saves_rationale(tmp_path):
    series = _series()
    groups = _groups(series)
    rules = [
        Mapping("g-t1", "anat", "T1w", confidence=0.5),
        Mapping("g-loc", skip_reason="localizer", confidence=0.95),
    ]
    b = Scripted()
    deltas: list[tuple[str, str, str]] = []
    out = map_with_llm(
        series, groups, rules, b, out_dir=tmp_path, on_delta=lambda *a: deltas.append(a)
    )
    assert [m.group_id for m in out] == ["g-t1", "g-loc"]
    assert (
        out[0].source == "llm"
        and out[0].suffix == "T1w"
        and out[0].rationale == "Looks like a T1w."
    )
    assert out[1].source == "rules" and out[1].skip_reason == "localizer"
    assert (tmp_path / "llm" / "rationales" / "g-t1.txt").read_text() == "Looks like a T1w."
    assert ("g-t1", "rationale", "Looks ") in deltas
    assert all(o.temperature == 0 and o.seed == 0 for _, o in b.calls)
    assert "P01" not in (tmp_path / "llm" / "prompts" / "g-t1.txt").read_text()
    # cached: a second run does not ask again
    b2 = Scripted()
    again = map_with_llm(series, groups, rules, b2, out_dir=tmp_path)
    assert again[0].suffix == "T1w" and b2.calls == []
    # llm_all asks about every group
    b3 = Scripted()
    map_with_llm(series, groups, rules, b3, llm_all=True, use_cache=False)
    assert len(b3.calls) == 4


def test_retry_once_then_keep_rules_with_reason(tmp_path):
    series = _series()
    groups = _groups(series)[:1]
    rules = [Mapping("g-t1", "anat", "T1w", confidence=0.3, evidence=["rule"])]
    bad = _answer("g-t1", suffix="bold")
    b = Scripted(answers={"g-t1": [bad, _answer("g-t1", suffix="T2w")]})
    out = map_with_llm(series, groups, rules, b, out_dir=tmp_path)
    assert out[0].suffix == "T2w" and out[0].source == "llm"
    retry_msgs = b.calls[-1][0]
    assert "invalid" in retry_msgs[-1].content and "bold" in retry_msgs[-1].content
    b = Scripted(answers={"g-t1": [bad, bad]})
    out = map_with_llm(series, groups, rules, b, use_cache=False)
    assert out[0].source == "rules" and out[0].suffix == "T1w"
    assert any("LLM not used" in e and "retry" in e for e in out[0].evidence)


def test_answer_for_another_group_is_rejected():
    series = _series()
    groups = _groups(series)
    rules = [Mapping("g-t1", "anat", "T1w", confidence=0.3), Mapping("g-loc", skip_reason="loc")]
    b = Scripted(answers={"g-t1": [_answer("g-loc"), _answer("g-loc")]})
    out = map_with_llm(series, groups, rules, b, use_cache=False, llm_all=False)
    assert out[0].source == "rules" and "group_id" in out[0].evidence[-1]


def test_cancel_keeps_rules():
    series = _series()
    groups = _groups(series)
    rules = [Mapping("g-t1", "anat", "T1w", confidence=0.3)]
    ev = threading.Event()
    ev.set()
    out = map_with_llm(series, groups, rules, Scripted(), cancel=ev, use_cache=False)
    assert out[0].source == "rules" and "cancelled" in out[0].evidence[-1]
    assert out[1].is_skip  # no rule for g-loc: a skip with the reason


def test_create_backend_names():
    assert create_backend("llamacpp", "x.gguf").name == "llama-cpp"
    assert create_backend("hf", "x", quantization=False).name == "transformers"
    assert create_backend("ollama", "m", host="http://127.0.0.1:1").host == "http://127.0.0.1:1"
    assert create_backend("openai", "m", base_url="http://127.0.0.1:1/v1").name == "openai"
    with pytest.raises(Exception, match="unknown backend"):
        create_backend("nope", "m")
