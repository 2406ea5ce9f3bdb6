"""Ask the model about the groups the rules are unsure of; keep the rules' answer otherwise.

Per group, two phases: (1) a short free-text rationale, streamed to ``on_delta`` and saved to
``OUT/llm/rationales/<group_id>.txt``; (2) a JSON answer constrained by the group's answer
schema (enums from bidsschematools), validated again and BIDS-checked; one retry with the
error, then the rules' mapping is kept with the reason recorded in its evidence.  Every prompt
sent is saved under ``OUT/llm/prompts`` so it can be audited for PHI.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from engine.atomic import write_text_atomic
from engine.llm.answer import AnswerError, answer_schema, parse_answer
from engine.llm.base import Backend, BackendError, GenerationOptions, Message
from engine.llm.cache import AnswerCache, cache_key
from engine.llm.privacy import contains_phi, phi_values
from engine.llm.prompt import build_messages, json_phase_messages, prompt_text, retry_messages
from engine.model import UNSURE_THRESHOLD, Group, Mapping, SeriesInfo

log = logging.getLogger(__name__)

#: ``on_delta(group_id, phase, text)``; phase is "rationale", "json" or "retry".
DeltaCallback = Callable[[str, str, str], None]

DEFAULT_THRESHOLD = UNSURE_THRESHOLD
LLM_DIR = "llm"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "group"


def needs_llm(rule: Mapping | None, *, threshold: float, llm_all: bool) -> bool:
    """Ask the model when told to ask about all groups, or the rules are absent or unsure."""
    return llm_all or rule is None or rule.confidence < threshold


def _fallback(rule: Mapping | None, group_id: str, reason: str, rationale: str = "") -> Mapping:
    """The rules' mapping with why the model's answer was not used (or a skip without rules)."""
    note = f"LLM not used: {reason}"
    if rule is None:
        return Mapping(
            group_id=group_id,
            skip_reason=f"no rule matched and {reason}"[:200],
            confidence=0.0,
            evidence=[note],
            source="rules",
            rationale=rationale,
        )
    return replace(rule, evidence=[*rule.evidence, note], rationale=rationale or rule.rationale)


def map_with_llm(
    series: list[SeriesInfo],
    groups: list[Group],
    rule_mappings: Iterable[Mapping],
    backend: Backend,
    *,
    context: str = "",
    llm_all: bool = False,
    threshold: float = DEFAULT_THRESHOLD,
    out_dir: str | Path | None = None,
    on_delta: DeltaCallback | None = None,
    on_progress: Callable[[float, str], None] | None = None,
    cancel: threading.Event | None = None,
    rationale_tokens: int = 96,
    answer_tokens: int = 384,
    seed: int = 0,
    temperature: float = 0.0,
    use_cache: bool = True,
    extra_phi: Iterable[str] = (),
) -> list[Mapping]:
    """One mapping per group (same order as ``groups``), matched to groups by ``group_id``.

    Groups whose rule confidence is below ``threshold`` (all groups with ``llm_all``) are asked;
    the answer becomes ``Mapping(source="llm")`` or, when unusable, the rules' mapping with the
    reason appended to its evidence.  ``extra_phi`` adds values (e.g. PatientName) to scrub.
    """
    rules = {m.group_id: m for m in rule_mappings}
    by_key = {s.key: s for s in series}
    phi = phi_values(series, extra_phi, out_dir=out_dir)
    ev = cancel or threading.Event()
    llm_dir = Path(out_dir) / LLM_DIR if out_dir is not None else None
    cache = AnswerCache(llm_dir / "cache" if (llm_dir and use_cache) else None)
    todo = [
        g for g in groups if needs_llm(rules.get(g.group_id), threshold=threshold, llm_all=llm_all)
    ]
    todo_ids = {g.group_id for g in todo}
    if todo:
        backend.load(on_progress)
    results: dict[str, Mapping] = {}
    log_rows: list[dict[str, Any]] = []
    for i, group in enumerate(groups):
        gid = group.group_id
        rule = rules.get(gid)
        if gid not in todo_ids:
            results[gid] = rule if rule is not None else _fallback(None, gid, "no rules mapping")
            continue
        if ev.is_set():
            results[gid] = _fallback(rule, gid, "cancelled")
            continue
        # the model's worker process died: no new worker per group, the rules stay
        died = getattr(backend, "last_error", "")
        if isinstance(died, str) and died:
            results[gid] = _fallback(rule, gid, f"backend error: {died}")
            continue
        if on_progress:
            on_progress(i / max(len(groups), 1), f"asking {backend.identity} about {gid}")
        members = [by_key[k] for k in group.series_keys if k in by_key]
        mapping, row = _ask_group(
            backend,
            group,
            members,
            rule,
            context=context,
            phi=phi,
            cancel=ev,
            on_delta=on_delta,
            cache=cache,
            llm_dir=llm_dir,
            opts=(rationale_tokens, answer_tokens, seed, temperature),
        )
        results[gid] = mapping
        log_rows.append(row)
    if llm_dir is not None and log_rows:
        write_text_atomic(
            llm_dir / "answers.jsonl",
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in log_rows),
        )
    return [results[g.group_id] for g in groups]


def _ask_group(
    backend: Backend,
    group: Group,
    members: list[SeriesInfo],
    rule: Mapping | None,
    *,
    context: str,
    phi: set[str],
    cancel: threading.Event,
    on_delta: DeltaCallback | None,
    cache: AnswerCache,
    llm_dir: Path | None,
    opts: tuple[int, int, int, float],
) -> tuple[Mapping, dict[str, Any]]:
    gid = group.group_id
    rationale_tokens, answer_tokens, seed, temperature = opts
    schema = answer_schema(gid)
    phase1 = build_messages(group, members, rule, context=context, phi=phi)
    key = cache_key(
        backend.identity,
        prompt_text(phase1),
        {"schema": schema, "seed": seed, "t": temperature, "n": [rationale_tokens, answer_tokens]},
    )
    row: dict[str, Any] = {"group_id": gid, "model": backend.identity, "cache_key": key}
    prompts: list[str] = []

    def emit(phase: str, delta: str) -> None:
        if on_delta is not None:
            on_delta(gid, phase, delta)

    def run(messages: list[Message], phase: str, max_tokens: int, js: dict | None) -> str:
        text = prompt_text(messages)
        leaked = contains_phi(text, phi)
        if leaked:  # build_messages scrubs; this is the last line of defence
            raise AnswerError(f"prompt withheld: it would contain PHI ({len(leaked)} values)")
        prompts.append(f"### phase {phase}\n{text}")
        g = GenerationOptions(
            max_tokens=max_tokens, temperature=temperature, seed=seed, json_schema=js
        )
        out: list[str] = []
        for delta in backend.stream_chat(messages, g, cancel):
            out.append(delta)
            emit(phase, delta)
        return "".join(out)

    cached = cache.get(key)
    t0 = time.monotonic()
    rationale = ""
    answers: list[str] = []
    error = ""
    mapping: Mapping | None = None
    try:
        if cached is not None:
            rationale = cached.get("rationale", "")
            answers = list(cached.get("answers", []))
            emit("rationale", rationale)
            row["cached"] = True
        else:
            rationale = run(phase1, "rationale", rationale_tokens, None)
            if cancel.is_set():
                raise InterruptedError
            phase2 = json_phase_messages(phase1, rationale, gid)
            answers.append(run(phase2, "json", answer_tokens, schema))
        try:
            ans = parse_answer(answers[0], gid, schema)
        except AnswerError as exc:
            error = str(exc)
            if len(answers) < 2:
                if cancel.is_set():
                    raise InterruptedError from exc
                phase2 = json_phase_messages(phase1, rationale, gid)
                answers.append(
                    run(retry_messages(phase2, answers[0], error), "retry", answer_tokens, schema)
                )
            ans = parse_answer(answers[1], gid, schema)
            error = ""
        evidence = [f"LLM {backend.identity}: {ans.decision} ({ans.confidence} confidence)"]
        if rule is not None:
            evidence += [f"rules proposed: {_describe(rule)}"]
        mapping = ans.to_mapping(rationale=rationale.strip(), evidence=evidence)
        if mapping.datatype == "fmap" and rule is not None:
            mapping.intended_for = list(rule.intended_for)
        if cached is None and not cancel.is_set():
            cache.put(key, {"rationale": rationale, "answers": answers, "model": backend.identity})
    except InterruptedError:
        error = "cancelled"
    except AnswerError as exc:
        error = f"answer rejected after one retry: {exc}" if len(answers) > 1 else str(exc)
    except (BackendError, OSError, RuntimeError, ValueError) as exc:
        error = f"backend error: {exc.__class__.__name__}: {exc}"
        log.warning("group %s: %s", gid, error)
    if mapping is None:
        mapping = _fallback(rule, gid, error, rationale.strip())
    row.update(
        {
            "source": mapping.source,
            "error": error,
            "answers": answers,
            "seconds": round(time.monotonic() - t0, 3),
            "mapping": mapping.to_dict(),
        }
    )
    if llm_dir is not None:
        name = _safe(gid)
        write_text_atomic(llm_dir / "rationales" / f"{name}.txt", rationale)
        if prompts:
            write_text_atomic(llm_dir / "prompts" / f"{name}.txt", "\n\n".join(prompts))
    return mapping, row


def _describe(m: Mapping) -> str:
    if m.is_skip:
        return f"skip ({m.skip_reason})"
    ents = "".join(f"{k}-{v}_" for k, v in m.entities.items())
    return f"{m.datatype}/{ents}{m.suffix} at {m.confidence:.2f}"
