"""Coarse-to-fine impressions: a plain draft from the findings, then the radiologist's style.

1. Coarse: the findings (+ patient context) -> an impression, no style asked for.
2. Refine: the coarse draft is rewritten with the radiologist's profile (:func:`describe`) and
   the k prior (findings -> impression) pairs whose findings are closest (the index).
3. Facts locked: the labeler's 14 CheXpert labels of both drafts must be equal; otherwise one
   retry names the difference, and if it persists the coarse draft is returned with a note.
   Laterality words and numbers are checked (:func:`facts.check_facts`) and flagged.

Tokens stream through :func:`engine.context.delta` (``group_id`` coarse / refine / retry).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from engine import context
from engine.llm.base import Backend, GenerationOptions, Message
from engine.report.style.facts import check_facts, label_diff
from engine.report.style.priors import PriorPair
from engine.report.style.profile import describe

COARSE_SYSTEM = (
    "You are a radiologist. Write the IMPRESSION of a chest radiograph report from its "
    "FINDINGS: the conclusions a referring clinician needs, nothing invented. Reply with the "
    "impression text only."
)
REFINE_SYSTEM = (
    "You rewrite a draft radiology impression in one radiologist's personal style. Keep every "
    "fact exactly: the same observations as present, absent or uncertain, the same sides "
    "(left/right) and the same numbers. Change only layout and wording to match the style "
    "notes and the examples. Reply with the rewritten impression only."
)


@dataclass
class Attempt:
    text: str
    labels: dict[str, int | None]
    diff: list[str] = field(default_factory=list)


@dataclass
class ImpressionOutcome:
    coarse: str
    refined: str  # what is returned: the refinement, or the coarse draft after a fallback
    labels_coarse: dict[str, int | None]
    labels_refined: dict[str, int | None]
    attempts: list[Attempt] = field(default_factory=list)
    fell_back: bool = False
    note: str = ""
    facts: dict[str, Any] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)  # id, similarity
    flags: list[str] = field(default_factory=list)


def format_context(ctx: dict[str, Any] | None) -> str:
    if not ctx:
        return ""
    parts = [f"{k}: {v if isinstance(v, str) else json.dumps(v)}" for k, v in ctx.items()]
    return "\n".join(parts)


def coarse_messages(findings: str, ctx: dict[str, Any] | None = None) -> list[Message]:
    user = f"FINDINGS:\n{findings.strip()}\n"
    if ctx:
        user += f"\nPATIENT CONTEXT:\n{format_context(ctx)}\n"
    user += "\nIMPRESSION:"
    return [Message("system", COARSE_SYSTEM), Message("user", user)]


def refine_messages(
    coarse: str,
    findings: str,
    profile: dict[str, Any],
    examples: list[PriorPair],
    difference: list[str] | None = None,
) -> list[Message]:
    """The refinement prompt: style notes, examples (most similar first), then the draft."""
    blocks = [f"STYLE NOTES for {profile['radiologist']}:\n{describe(profile)}"]
    for i, ex in enumerate(examples, 1):
        blocks.append(
            f"EXAMPLE {i}\nFINDINGS:\n{ex.findings.strip()}\nIMPRESSION:\n{ex.impression.strip()}"
        )
    blocks.append(f"FINDINGS:\n{findings.strip()}")
    blocks.append(f"DRAFT IMPRESSION:\n{coarse.strip()}")
    if difference:
        blocks.append(
            "Your previous rewrite changed these facts (labeler: before -> after): "
            + "; ".join(difference)
            + ". Keep them exactly as in the draft."
        )
    blocks.append("IMPRESSION IN THIS STYLE:")
    return [Message("system", REFINE_SYSTEM), Message("user", "\n\n".join(blocks))]


def _generate(backend: Backend, messages: list[Message], opts: GenerationOptions, gid: str) -> str:
    out: list[str] = []
    for d in backend.stream_chat(messages, opts, context.cancel_event()):
        out.append(d)
        context.delta(d, phase="rationale", group_id=gid)
    return "".join(out).strip()


def impression(
    findings: str,
    backend: Backend,
    profile: dict[str, Any],
    examples: list[tuple[PriorPair, float]],
    labeler: Any,
    ctx: dict[str, Any] | None = None,
    options: GenerationOptions | None = None,
    coarse: str | None = None,
) -> ImpressionOutcome:
    """Coarse draft (unless given), refinement, facts lock; see the module docstring."""
    opts = options or GenerationOptions(max_tokens=200)
    if coarse is None:
        coarse = _generate(backend, coarse_messages(findings, ctx), opts, "coarse")
    pairs = [p for p, _ in examples]
    lab_c = labeler.label(coarse).labels
    attempts: list[Attempt] = []
    diff: list[str] | None = None
    for gid in ("refine", "retry"):
        msgs = refine_messages(coarse, findings, profile, pairs, diff)
        text = _generate(backend, msgs, opts, gid)
        lab_r = labeler.label(text).labels
        diff = label_diff(lab_c, lab_r)
        attempts.append(Attempt(text, lab_r, diff))
        if not diff:
            break
    final = attempts[-1]
    out = ImpressionOutcome(
        coarse=coarse,
        refined=final.text,
        labels_coarse=lab_c,
        labels_refined=final.labels,
        attempts=attempts,
        examples=[{"id": p.id, "similarity": round(s, 4)} for p, s in examples],
    )
    if final.diff:
        out.fell_back = True
        out.refined = coarse
        out.labels_refined = lab_c
        out.note = (
            "the refinement changed the labels twice ("
            + "; ".join(final.diff)
            + "): the coarse impression is returned"
        )
        out.flags.append("labels changed by refinement: fell back to the coarse impression")
    elif len(attempts) > 1:
        out.note = (
            "the first refinement changed labels ("
            + "; ".join(attempts[0].diff)
            + "); the retry kept them"
        )
    out.facts = check_facts(findings, coarse, out.refined)
    if out.facts["lost"]:
        out.flags.append("lost from the findings: " + ", ".join(out.facts["lost"]))
    if out.facts["added"]:
        out.flags.append("not in the findings: " + ", ".join(out.facts["added"]))
    if not out.refined.strip():
        out.flags.append("empty impression")
    return out
