"""What the model must answer: a JSON object whose enums come from the BIDS schema.

The answer schema is built per group from :func:`engine.bids_schema.get_schema` (datatypes,
their suffixes, the entities they allow with the schema's value enums), so every backend can
constrain decoding with it (llama.cpp grammar, xgrammar, Ollama ``format``, OpenAI
``response_format``).  A parsed answer is then checked twice: against this JSON schema and
against the BIDS schema's ``check`` (suffix/entity combinations, required entities).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from engine.bids_schema import get_schema
from engine.model import Mapping

CONFIDENCE = {"low": 0.4, "medium": 0.65, "high": 0.85}
#: Entities a mapping never sets: sub/ses come from the series, run from acquisition order.
_NOT_MAPPED = {"sub", "ses", "run"}
_LABEL = "^[a-zA-Z0-9]{1,24}$"
_INDEX = "^[0-9]{1,3}$"
SKIP_REASON_MAX = 80


def _entity_schema(key: str) -> dict[str, Any]:
    s = get_schema()
    enum = s.entity_values(key)
    if enum:
        return {"type": "string", "enum": list(enum)}
    pattern = s._patterns[key].pattern  # noqa: SLF001 - the schema's own format
    return {
        "type": "string",
        "pattern": _INDEX if "[0-9]+" in pattern and "a-z" not in pattern else _LABEL,
    }


def datatype_entities(datatype: str) -> tuple[str, ...]:
    """Entity keys any suffix of ``datatype`` allows (schema order, no sub/ses/run)."""
    s = get_schema()
    keys: set[str] = set()
    for rule in s.rules:
        if rule.datatype == datatype:
            keys |= set(rule.entities)
    return tuple(k for k in s.entity_order if k in keys and k not in _NOT_MAPPED)


def answer_schema(group_id: str, datatypes: tuple[str, ...] | None = None) -> dict[str, Any]:
    """JSON schema of one answer: map to (datatype, suffix, entities) or skip, with confidence.

    One ``anyOf`` branch per datatype keeps suffixes and entities consistent with it.
    """
    s = get_schema()
    dts = datatypes or s.datatypes()
    branches: list[dict[str, Any]] = []
    for dt in dts:
        ents = datatype_entities(dt)
        branches.append(
            {
                "type": "object",
                "properties": {
                    "group_id": {"type": "string", "enum": [group_id]},
                    "decision": {"type": "string", "enum": ["map"]},
                    "datatype": {"type": "string", "enum": [dt]},
                    "suffix": {"type": "string", "enum": list(s.suffixes(dt))},
                    "entities": {
                        "type": "object",
                        "properties": {k: _entity_schema(k) for k in ents},
                        "additionalProperties": False,
                    },
                    "confidence": {"type": "string", "enum": list(CONFIDENCE)},
                },
                "required": [
                    "group_id",
                    "decision",
                    "datatype",
                    "suffix",
                    "entities",
                    "confidence",
                ],
                "additionalProperties": False,
            }
        )
    branches.append(
        {
            "type": "object",
            "properties": {
                "group_id": {"type": "string", "enum": [group_id]},
                "decision": {"type": "string", "enum": ["skip"]},
                "skip_reason": {
                    "type": "string",
                    "pattern": f"^[a-zA-Z0-9 ,.()-]{{1,{SKIP_REASON_MAX}}}$",
                },
                "confidence": {"type": "string", "enum": list(CONFIDENCE)},
            },
            "required": ["group_id", "decision", "skip_reason", "confidence"],
            "additionalProperties": False,
        }
    )
    return {"title": "bids_mapping", "anyOf": branches}


# --- a small validator for the subset of JSON schema used above ----------------------------


def validate_json(value: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    """Problems of ``value`` against ``schema`` (subset: type/enum/const/pattern/maxLength/
    properties/required/additionalProperties/anyOf); empty when valid."""
    if "anyOf" in schema:
        best: list[str] = [f"{path}: matches no alternative"]
        best_score = -1
        for branch in schema["anyOf"]:
            errs = validate_json(value, branch, path)
            if not errs:
                return []
            score = _branch_score(value, branch)
            if score > best_score:
                best, best_score = errs, score
        return best
    problems: list[str] = []
    typ = schema.get("type")
    if typ == "object":
        if not isinstance(value, dict):
            return [f"{path}: expected an object"]
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                problems.append(f"{path}: missing {key!r}")
        for key, sub in value.items():
            if key in props:
                problems += validate_json(sub, props[key], f"{path}.{key}")
            elif schema.get("additionalProperties", True) is False:
                problems.append(
                    f"{path}: {key!r} is not allowed (allowed: {', '.join(props) or 'none'})"
                )
        return problems
    if typ == "string" and not isinstance(value, str):
        return [f"{path}: expected a string"]
    if typ in {"number", "integer"} and not isinstance(value, int | float):
        return [f"{path}: expected a number"]
    if "enum" in schema and value not in schema["enum"]:
        shown = ", ".join(map(str, schema["enum"][:40]))
        return [f"{path}: {value!r} is not one of {shown}"]
    if "const" in schema and value != schema["const"]:
        return [f"{path}: must be {schema['const']!r}"]
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            problems.append(f"{path}: longer than {schema['maxLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            problems.append(f"{path}: {value!r} does not match {schema['pattern']}")
    return problems


def _branch_score(value: Any, branch: dict[str, Any]) -> int:
    """How well ``value`` fits a branch (matching enum discriminators), to report its errors."""
    if not isinstance(value, dict):
        return 0
    score = 0
    for key, sub in branch.get("properties", {}).items():
        if key in value and "enum" in sub and value[key] in sub["enum"]:
            score += 2 if len(sub["enum"]) == 1 else 1
    return score


# --- parsing -------------------------------------------------------------------------------


@dataclass
class Answer:
    """A parsed and checked model answer for one group."""

    group_id: str
    decision: str
    datatype: str = ""
    suffix: str = ""
    entities: dict[str, str] = field(default_factory=dict)
    skip_reason: str = ""
    confidence: str = "low"

    def to_mapping(self, rationale: str = "", evidence: list[str] | None = None) -> Mapping:
        return Mapping(
            group_id=self.group_id,
            datatype=self.datatype if self.decision == "map" else "",
            suffix=self.suffix if self.decision == "map" else "",
            entities=dict(self.entities) if self.decision == "map" else {},
            skip_reason=(self.skip_reason or "skipped by the model")
            if self.decision == "skip"
            else "",
            confidence=CONFIDENCE.get(self.confidence, 0.4),
            evidence=list(evidence or []),
            source="llm",
            rationale=rationale,
        )


class AnswerError(ValueError):
    """The model's answer is unusable; the message is fed back to it on the retry."""


def extract_json(text: str) -> Any:
    """The first JSON object in ``text`` (tolerates code fences and chatter around it)."""
    start = text.find("{")
    if start < 0:
        raise AnswerError("no JSON object in the answer")
    decoder = json.JSONDecoder()
    while start >= 0:
        try:
            obj, _ = decoder.raw_decode(text[start:])
            return obj
        except json.JSONDecodeError as exc:
            last = exc
        start = text.find("{", start + 1)
    raise AnswerError(f"the answer is not valid JSON: {last}")


def parse_answer(text: str, group_id: str, schema: dict[str, Any] | None = None) -> Answer:
    """Parse, JSON-schema-validate and BIDS-check one answer; raises :class:`AnswerError`."""
    obj = extract_json(text)
    schema = schema or answer_schema(group_id)
    errs = validate_json(obj, schema)
    if errs:
        raise AnswerError("; ".join(errs[:6]))
    if obj.get("group_id") != group_id:  # answers are matched by id, never by position
        raise AnswerError(f"group_id {obj.get('group_id')!r} is not the group asked ({group_id!r})")
    ans = Answer(
        group_id=group_id,
        decision=obj["decision"],
        datatype=obj.get("datatype", ""),
        suffix=obj.get("suffix", ""),
        entities={k: str(v) for k, v in (obj.get("entities") or {}).items()},
        skip_reason=str(obj.get("skip_reason", "")).strip(),
        confidence=obj.get("confidence", "low"),
    )
    if ans.decision == "map":
        problems = get_schema().check(ans.datatype, ans.suffix, ans.entities)
        if problems:
            raise AnswerError("BIDS schema: " + "; ".join(problems))
    return ans
