"""The CheXpert-style rule labeler: mentions + ConText modifiers -> 14 labels per report.

Per mention the closest modifier decides (negation 0, uncertainty -1, none 1); per label the
mentions are combined as CheXpert does: positive beats uncertain beats negative. "No Finding" is
1 when no observation other than Support Devices is positive or uncertain, else blank. Each
label keeps the mention (and the modifier) that decided it, so ``--explain`` can show why.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from engine.report.context import (
    ABNORMAL,
    BORDERLINE,
    HISTORICAL,
    NEGATED,
    NORMAL,
    UNCERTAIN,
    build_nlp,
)
from engine.report.labels import CHEXPERT_LABELS, FINDINGS, split_category
from engine.report.sections import labelled_text

Value = int | None
"""1 positive, 0 negative, -1 uncertain, None not mentioned."""

_VALUE_OF = {NEGATED: 0, UNCERTAIN: -1, NORMAL: 0, ABNORMAL: 1, BORDERLINE: -1, HISTORICAL: 0}
_RANK = {1: 3, -1: 2, 0: 1}  # CheXpert: positive > uncertain > negative
_QUALIFIERS = (NORMAL, ABNORMAL, BORDERLINE)
_POLAR = (NEGATED, UNCERTAIN, BORDERLINE, HISTORICAL)
_NUMBERED = re.compile(r"(?:(?<=\s)|^)(\d{1,2})[.)]\s+(?=[A-Za-z])")
# Typing slips PyRuSH does not split on ("effusion .. Atelectasis", "pneumothorax . Small"):
# left in, one sentence's negation would reach into the next.
_SPACE_BEFORE_STOP = re.compile(r"[ \t]+(?=[.,;](?:\s|$))")
_DOUBLE_STOP = re.compile(r"(?<!\.)\.\.(?!\.)")


@dataclass(frozen=True)
class Evidence:
    """One mention and what decided its value."""

    label: str
    value: int
    mention: str
    sentence: str
    modifier: str | None = None
    category: str | None = None

    def describe(self) -> str:
        how = f'{self.category} "{self.modifier}"' if self.modifier else "no modifier"
        return f'"{self.mention}" ({how}) in: {self.sentence}'


@dataclass
class LabelResult:
    """The 14 labels of one report and the evidence behind each."""

    labels: dict[str, Value]
    evidence: dict[str, Evidence] = field(default_factory=dict)
    mentions: list[Evidence] = field(default_factory=list)

    def row(self) -> list[Value]:
        return [self.labels[k] for k in CHEXPERT_LABELS]

    def explain(self) -> dict[str, str]:
        out = {k: ev.describe() for k, ev in self.evidence.items()}
        if self.labels["No Finding"] == 1:
            out["No Finding"] = "no observation other than Support Devices is positive or uncertain"
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "labels": self.labels,
            "evidence": {k: asdict(v) for k, v in self.evidence.items()},
        }


def prepare(text: str) -> str:
    """The text the pipeline sees: kept sections, numbered list items as their own sentences,
    stray spaces before a full stop and doubled full stops removed (sentence ends stay ends)."""
    text = labelled_text(text or "")
    text = _DOUBLE_STOP.sub(".", _SPACE_BEFORE_STOP.sub("", text))
    return _NUMBERED.sub(lambda m: "\n" if m.start() else "", text).strip()


def _distance(ent: Any, mod: Any) -> int:
    start, end = mod.modifier_span
    return ent.start - end if end <= ent.start else max(0, start - ent.end)


def _closest(ent: Any, mods: list[Any]) -> Any | None:
    return min(mods, key=lambda m: _distance(ent, m)) if mods else None


def mention_value(ent: Any) -> tuple[Value, Any | None]:
    """The value of one mention and the modifier that set it (None: no modifier decided)."""
    label, kind = split_category(ent.label_)
    mods = [m for m in ent._.modifiers if m.category in _VALUE_OF]
    polar = [m for m in mods if m.category in _POLAR]
    if kind == "ignore":
        return None, None
    if kind == "attribute":
        qual = _closest(ent, [m for m in mods if m.category in _QUALIFIERS])
        if qual is None:
            return None, None
        if qual.category == ABNORMAL:
            pol = _closest(ent, [m for m in polar if m.category != BORDERLINE])
            return (_VALUE_OF[pol.category], pol) if pol is not None else (1, qual)
        return _VALUE_OF[qual.category], qual
    pol = _closest(ent, polar)
    if pol is not None:
        return _VALUE_OF[pol.category], pol
    return (1 if kind == "finding" else -1), None


def _result(doc: Any) -> LabelResult:
    labels: dict[str, Value] = dict.fromkeys(CHEXPERT_LABELS)
    evidence: dict[str, Evidence] = {}
    mentions: list[Evidence] = []
    for ent in doc.ents:
        value, mod = mention_value(ent)
        if value is None:
            continue
        label, _ = split_category(ent.label_)
        ev = Evidence(
            label=label,
            value=value,
            mention=ent.text,
            sentence=ent.sent.text.strip(),
            modifier=doc[slice(*mod.modifier_span)].text if mod is not None else None,
            category=mod.category if mod is not None else None,
        )
        mentions.append(ev)
        old = labels[label]
        if old is None or _RANK[value] > _RANK[old]:
            labels[label] = value
            evidence[label] = ev
    if not any(labels[k] in (1, -1) for k in FINDINGS if k != "Support Devices"):
        labels["No Finding"] = 1
    return LabelResult(labels, evidence, mentions)


class Labeler:
    """Label reports; the medspaCy pipeline is built once and shared."""

    def __init__(self) -> None:
        self.nlp = build_nlp()

    def label(self, text: str) -> LabelResult:
        return _result(self.nlp(prepare(text)))

    def label_many(self, texts: Iterable[str], batch_size: int = 64) -> Iterator[LabelResult]:
        for doc in self.nlp.pipe((prepare(t) for t in texts), batch_size=batch_size):
            yield _result(doc)


def label_reports(texts: Iterable[str]) -> list[LabelResult]:
    """Library entry point: the labels of every text, in order."""
    return list(Labeler().label_many(texts))
