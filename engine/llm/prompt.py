"""Compact per-group prompts: allowlisted header facts, the rules' proposal, a schema excerpt.

Only fields named in :data:`PROMPT_FIELDS` ever reach a prompt (never patient name/id, birth
date, accession, referring physician, institution, dates or UIDs), and every string is
scrubbed of the study's PHI values again (:mod:`engine.llm.privacy`).  A prompt stays well
under 2,000 tokens: facts shared by all series once, varying ones as a few distinct values.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from engine.bids_schema import get_schema
from engine.llm.answer import CONFIDENCE, datatype_entities
from engine.llm.base import Message
from engine.llm.privacy import scrub
from engine.model import Group, Mapping, SeriesInfo

#: The only SeriesInfo fields a prompt may contain (acquisition facts, no identities).
PROMPT_FIELDS: tuple[str, ...] = (
    "series_description",
    "protocol_name",
    "sequence_name",
    "pulse_sequence",
    "image_type",
    "sop_class",
    "modality",
    "manufacturer",
    "model_name",
    "field_strength",
    "mr_acquisition_type",
    "scanning_sequence",
    "sequence_variant",
    "scan_options",
    "TR",
    "TE",
    "echo_times",
    "echo_numbers",
    "inversion_time",
    "flip_angle",
    "dim1",
    "dim2",
    "dim3",
    "dim4",
    "n_volumes",
    "n_slices",
    "slice_thickness",
    "pixel_spacing",
    "orientation",
    "pe_axis",
    "pe_direction",
    "bvalues",
    "n_diffusion_directions",
    "complex_part",
    "is_derived",
    "is_motion_corrected",
    "is_multiframe",
    "series_files",
)
_MAX_DISTINCT = 4
_MAX_STR = 120
_MAX_EVIDENCE = 8
_MAX_CONTEXT = 1500

SYSTEM_PROMPT = (
    "You are an expert in MRI acquisitions and the BIDS standard. You name one group of DICOM "
    "series (same protocol) as a BIDS raw file: datatype, suffix and entities, or you skip it "
    "(localizers, scouts, derived/reformatted images, screenshots, unusable data). "
    "Never invent subject, session or run entities: they are added later."
)
RATIONALE_INSTRUCTION = (
    "In at most 3 short sentences, say which BIDS name fits this group and why, or why it "
    "should be skipped. Plain text, no JSON yet."
)
JSON_INSTRUCTION = (
    "Now give your final answer as one JSON object with keys group_id, decision "
    '("map" or "skip"), datatype, suffix, entities (object, key -> value, no sub/ses/run) and '
    'confidence ("low", "medium" or "high"); for a skip give skip_reason instead of datatype, '
    "suffix and entities. JSON only."
)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, tuple | list):
        return (
            "\\".join(_fmt(v) for v in value)
            if isinstance(value, tuple)
            else json.dumps([float(f"{v:.4g}") if isinstance(v, float) else v for v in value])
        )
    return str(value)


def _empty(value: Any) -> bool:
    """Unknown or meaningless: None, empty, False, or a zero count/dimension."""
    if isinstance(value, bool):
        return not value
    return value is None or value == "" or value == () or value == [] or value == 0


def group_facts(members: list[SeriesInfo], phi: Iterable[str] = ()) -> dict[str, str]:
    """Allowlisted facts of a group's series: one value when shared, else distinct values."""
    phi = set(phi)
    facts: dict[str, str] = {}
    for name in PROMPT_FIELDS:
        seen: list[str] = []
        for s in members:
            v = getattr(s, name, None)
            if _empty(v):
                continue
            text = scrub(_fmt(v), phi)[:_MAX_STR]
            if text not in seen:
                seen.append(text)
        if not seen:
            continue
        if len(seen) == 1:
            facts[name] = seen[0]
        else:
            more = f" (+{len(seen) - _MAX_DISTINCT} more)" if len(seen) > _MAX_DISTINCT else ""
            facts[name] = " | ".join(seen[:_MAX_DISTINCT]) + more
    return facts


def describe_mapping(m: Mapping | None, phi: Iterable[str] = ()) -> str:
    if m is None:
        return "The rules have no proposal."
    if m.is_skip:
        head = f"skip ({scrub(m.skip_reason, phi)})"
    else:
        ents = "_".join(f"{k}-{v}" for k, v in m.entities.items())
        head = f"{m.datatype}/{ents + '_' if ents else ''}{m.suffix}"
    lines = [f"Rules' proposal: {head}, confidence {m.confidence:.2f}."]
    for ev in m.evidence[:_MAX_EVIDENCE]:
        lines.append(f"- {scrub(str(ev), phi)[:_MAX_STR]}")
    return "\n".join(lines)


def schema_excerpt(m: Mapping | None) -> str:
    """Datatypes with their suffixes; entities (and enums) of the proposed name in detail."""
    s = get_schema()
    lines = [f"BIDS {s.version} MRI datatypes and suffixes:"]
    for dt in s.datatypes():
        lines.append(f"- {dt}: {', '.join(s.suffixes(dt))}")
    if m is not None and not m.is_skip and s.rule_for(m.datatype, m.suffix):
        allowed = [k for k in s.allowed_entities(m.datatype, m.suffix) if k != "run"]
        req = [k for k in s.required_entities(m.datatype, m.suffix) if k != "run"]
        lines.append(
            f"Entities allowed for {m.datatype}/{m.suffix}: {', '.join(allowed)}"
            + (f"; required: {', '.join(req)}" if req else "")
        )
    else:
        for dt in s.datatypes():
            lines.append(f"Entities in {dt}: {', '.join(datatype_entities(dt))}")
    enums = [f"{k} in {{{', '.join(s.entity_values(k))}}}" for k in ("part", "mt")]
    lines.append(
        "Entity values are alphanumeric labels (task, acq, rec, dir, ce) or integers "
        "(echo, inv, flip); " + "; ".join(enums) + "."
    )
    return "\n".join(lines)


def build_messages(
    group: Group,
    members: list[SeriesInfo],
    rule_mapping: Mapping | None,
    *,
    context: str = "",
    phi: Iterable[str] = (),
) -> list[Message]:
    """The phase-1 conversation for one group (system + user); phase 2 appends to it."""
    phi = set(phi)
    facts = group_facts(members, phi)
    label = scrub(group.label, phi)[:_MAX_STR]
    flags = ", ".join(scrub(f, phi) for f in group.flags)
    parts = [
        f"Group id: {group.group_id}",
        f"Group label: {label}",
        f"Series in group: {len(members)}" + (f"; flags: {flags}" if flags else ""),
        "Header facts (TR s, TE/TI ms, flip deg):",
        *(f"  {k}: {v}" for k, v in facts.items()),
        describe_mapping(rule_mapping, phi),
        schema_excerpt(rule_mapping),
    ]
    if context.strip():
        parts.append("Study context from the user: " + scrub(context.strip(), phi)[:_MAX_CONTEXT])
    parts.append(RATIONALE_INSTRUCTION)
    return [Message("system", SYSTEM_PROMPT), Message("user", "\n".join(parts))]


def json_phase_messages(phase1: list[Message], rationale: str, group_id: str) -> list[Message]:
    """Phase 2: the rationale as the assistant's turn, then the request for the JSON answer."""
    return [
        *phase1,
        Message("assistant", rationale.strip() or "(no rationale)"),
        Message("user", f"{JSON_INSTRUCTION} group_id is {json.dumps(group_id)}."),
    ]


def retry_messages(phase2: list[Message], bad_answer: str, error: str) -> list[Message]:
    return [
        *phase2,
        Message("assistant", bad_answer[:600]),
        Message(
            "user",
            f"That answer is invalid: {error[:600]}. Answer again with one corrected JSON "
            "object only.",
        ),
    ]


def prompt_text(messages: list[Message]) -> str:
    """All message text, as sent (for caching, token counting and PHI audits)."""
    return "\n\n".join(f"<{m.role}>\n{m.content}" for m in messages)


def estimate_tokens(text: str) -> int:
    """A conservative token estimate for Llama-family BPE vocabularies (~3.2 chars/token)."""
    return int(len(text) / 3.2) + 1


__all__ = [
    "CONFIDENCE",
    "PROMPT_FIELDS",
    "build_messages",
    "estimate_tokens",
    "group_facts",
    "json_phase_messages",
    "prompt_text",
    "retry_messages",
    "schema_excerpt",
]
