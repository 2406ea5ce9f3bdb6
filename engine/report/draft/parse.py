"""Checking a drafted report: headers exactly and in order, ten reasoning steps, CheXpert JSON,
ICD-10-CM codes.

Every check returns the problems in words (they are sent back to the model on the retry and
kept as flags), never raises on a malformed reply: a bad draft is data, not a crash.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import UserError
from engine.report.labels import CHEXPERT_LABELS

# Words a model uses as section headers; anything else ending in a colon is report text.
KNOWN_HEADERS = (
    "technique",
    "view",
    "views",
    "findings",
    "finding",
    "impression",
    "impressions",
    "conclusion",
    "conclusions",
    "comparison",
    "indication",
    "indications",
    "history",
    "clinical history",
    "clinical information",
    "exam",
    "examination",
    "procedure",
    "recommendation",
    "recommendations",
    "summary",
    "reasoning",
    "report",
    "diagnosis",
    "opinion",
    "result",
    "results",
)
_HEADER = re.compile(
    r"^[ \t]*(?:#{1,6}[ \t]*)?(?:\*\*|__)?[ \t]*([A-Za-z][A-Za-z ]{1,30}?)[ \t]*"
    r"(?::[ \t]*(?:\*\*|__)?|(?:\*\*|__)[ \t]*:)[ \t]*(.*)$"
)
_STEP = re.compile(r"^[ \t]*(?:[-*][ \t]*)?(?:step[ \t]*)?(\d{1,2})[ \t]*[.):][ \t]*(.*)$", re.I)
ICD10CM = re.compile(r"^[A-Z][0-9][0-9A-Z](?:\.[0-9A-Z]{1,4})?$")
LABEL_VALUES = (-1, 0, 1, None)
STEPS = 10


@dataclass
class Sections:
    """The sections found (canonical header -> text) and what is wrong with them."""

    sections: dict[str, str] = field(default_factory=dict)
    preamble: str = ""  # text before the first header (the reasoning in cot mode)
    errors: list[str] = field(default_factory=list)


def split_headers(text: str) -> list[tuple[str, str, int]]:
    """(header as written, inline text, line number) of every header line."""
    out: list[tuple[str, str, int]] = []
    for i, line in enumerate(text.splitlines()):
        m = _HEADER.match(line)
        if m and m.group(1).strip().lower() in KNOWN_HEADERS:
            out.append((m.group(1).strip(), m.group(2).strip(), i))
    return out


def parse_sections(
    text: str, headers: tuple[str, ...], allowed_before: tuple[str, ...] = ()
) -> Sections:
    """The ``headers`` sections of ``text``; errors for missing, extra, repeated, out-of-order
    or empty ones. Headers in ``allowed_before`` (``Reasoning``) may open the text."""
    lines = text.splitlines()
    found = split_headers(text)
    res = Sections()
    want = {h.lower(): h for h in headers}
    before = {h.lower() for h in allowed_before}
    seen: list[str] = []
    for n, (name, inline, line) in enumerate(found):
        end = found[n + 1][2] if n + 1 < len(found) else len(lines)
        body = "\n".join([inline, *lines[line + 1 : end]]).strip()
        key = name.lower()
        if key in before and not seen:
            res.preamble = (res.preamble + "\n" + body).strip()
            continue
        canon = want.get(key)
        if canon is None:
            res.errors.append(f"header {name!r} is not one of {', '.join(headers)}")
            continue
        if canon in seen:
            res.errors.append(f"header {canon!r} appears more than once")
            continue
        seen.append(canon)
        res.sections[canon] = body
    if found and not res.preamble:
        first = found[0][2]
        res.preamble = "\n".join(lines[:first]).strip()
    elif not found:
        res.preamble = text.strip()
    missing = [h for h in headers if h not in res.sections]
    if missing:
        res.errors.append(f"missing header(s): {', '.join(missing)}")
    order = [h for h in headers if h in res.sections]
    if seen != order:
        res.errors.append(
            f"headers out of order: {', '.join(seen)} (expected {', '.join(headers)})"
        )
    for h in order:
        if not res.sections[h]:
            res.errors.append(f"section {h!r} is empty")
    return res


def parse_steps(text: str) -> tuple[list[str], list[str]]:
    """The numbered reasoning steps of ``text`` (continuation lines joined) and the errors
    when they are not exactly 1..10 in order."""
    steps: list[tuple[int, str]] = []
    for line in text.splitlines():
        m = _STEP.match(line)
        if m:
            steps.append((int(m.group(1)), m.group(2).strip()))
        elif steps and line.strip():
            n, body = steps[-1]
            steps[-1] = (n, f"{body} {line.strip()}".strip())
    numbers = [n for n, _ in steps]
    errors: list[str] = []
    if len(steps) != STEPS:
        errors.append(f"found {len(steps)} numbered reasoning steps, expected exactly {STEPS}")
    elif numbers != list(range(1, STEPS + 1)):
        shown = ", ".join(map(str, numbers))
        errors.append(f"reasoning steps are numbered {shown}, expected 1 to {STEPS} in order")
    if any(not body for _, body in steps):
        errors.append("a reasoning step is empty")
    return [body for _, body in steps], errors


# --- CheXpert labels and ICD codes as JSON ------------------------------------------------------


def labels_schema(icd: bool = False) -> dict[str, Any]:
    """The JSON schema of the labels turn: the 14 observations in {-1, 0, 1, null}, and with
    ``icd`` a list of ICD-10-CM codes. Every backend constrains decoding with it."""
    value = {"enum": list(LABEL_VALUES)}
    props: dict[str, Any] = {
        "labels": {
            "type": "object",
            "properties": {k: value for k in CHEXPERT_LABELS},
            "required": list(CHEXPERT_LABELS),
            "additionalProperties": False,
        }
    }
    if icd:
        props["icd10"] = {
            "type": "array",
            "items": {"type": "string", "pattern": r"^[A-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?$"},
            "maxItems": 12,
        }
    return {
        "title": "chexpert_labels",
        "type": "object",
        "properties": props,
        "required": list(props),
        "additionalProperties": False,
    }


def parse_labels(text: str, icd: bool = False) -> tuple[dict[str, int | None], list[str]]:
    """(labels, ICD codes as written) of a labels reply; raises ``ValueError`` saying what is
    wrong (the retry message)."""
    from engine.llm.answer import AnswerError, extract_json

    try:
        obj = extract_json(text)
    except AnswerError as exc:
        raise ValueError(str(exc)) from None
    if not isinstance(obj, dict):
        raise ValueError("the answer is not a JSON object")
    if "labels" not in obj and set(obj) >= set(CHEXPERT_LABELS):
        obj = {"labels": obj}  # the bare 14 observations: accepted
    labels = obj.get("labels")
    if not isinstance(labels, dict):
        raise ValueError('the JSON object has no "labels" object')
    problems: list[str] = []
    missing = [k for k in CHEXPERT_LABELS if k not in labels]
    if missing:
        problems.append(f"missing label(s): {', '.join(missing)}")
    extra = sorted(set(labels) - set(CHEXPERT_LABELS))
    if extra:
        problems.append(f"unknown label(s): {', '.join(extra)}")
    for k in CHEXPERT_LABELS:
        v = labels.get(k)
        if isinstance(v, bool) or v not in LABEL_VALUES:
            problems.append(f"{k}: {v!r} is not one of -1, 0, 1, null")
    codes: list[str] = []
    if icd:
        raw = obj.get("icd10", [])
        if not isinstance(raw, list) or not all(isinstance(c, str) for c in raw):
            problems.append('"icd10" must be a list of code strings')
        else:
            codes = list(raw)
    if problems:
        raise ValueError("; ".join(problems[:6]))
    return {k: labels[k] for k in CHEXPERT_LABELS}, codes


def normalize_icd(code: str) -> str:
    """Upper case, no spaces, the dot after the third character (``j189`` -> ``J18.9``)."""
    c = re.sub(r"\s+", "", code).upper()
    if len(c) > 3 and "." not in c:
        c = f"{c[:3]}.{c[3:]}"
    return c


def check_icd(codes: list[str], allowed: set[str] | None = None) -> tuple[list[str], list[str]]:
    """(valid codes, problems): ICD-10-CM format, and membership of ``allowed`` when given."""
    good: list[str] = []
    problems: list[str] = []
    for raw in codes:
        c = normalize_icd(raw)
        if not ICD10CM.match(c):
            problems.append(f"icd: {raw[:40]!r} is not an ICD-10-CM code")
        elif allowed is not None and c not in allowed:
            problems.append(f"icd: {c} is not in the code list")
        elif c not in good:
            good.append(c)
    return good, problems


def read_code_list(path: str | Path) -> set[str]:
    """ICD-10-CM codes of a file: one per line, the first word counts, ``#`` comments."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise UserError(f"cannot read the ICD code list {p}: {exc}") from exc
    codes: set[str] = set()
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        first = re.split(r"[\s,;\t]+", line, maxsplit=1)[0]
        code = normalize_icd(first)
        if not ICD10CM.match(code):
            if n == 1 and not any(ch.isdigit() for ch in first):
                continue  # a header line ("code,description")
            raise UserError(f"ICD code list {p} line {n}: {first[:40]!r} is not an ICD-10-CM code")
        codes.add(code)
    if not codes:
        raise UserError(f"ICD code list {p} holds no code (one ICD-10-CM code per line)")
    return codes
