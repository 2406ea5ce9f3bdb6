"""Facts locked: what a refinement may not change.

* CheXpert labels (the report labeler) of the coarse and the refined impression must be equal;
  :func:`label_diff` names each difference ("Pleural Effusion: negative -> positive") so the
  retry prompt can say what to put back.
* Laterality words and numbers (sizes, counts, levels) of the findings: the ones the coarse
  impression carried must still be in the refined one (``lost``), and the refined one may not
  bring laterality or numbers the findings never had (``added``: a left/right swap shows here).
"""

from __future__ import annotations

import re
from typing import Any

from engine.report.labels import CHEXPERT_LABELS

_LATERAL = re.compile(r"\b(left|right|bilateral(?:ly)?|both|unilateral|midline)\b", re.IGNORECASE)
_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.]*\d)")
_VALUE_NAME = {1: "positive", 0: "negative", -1: "uncertain", None: "not mentioned"}


def value_name(v: int | None) -> str:
    return _VALUE_NAME.get(v, str(v))


def label_diff(before: dict[str, int | None], after: dict[str, int | None]) -> list[str]:
    """``["Label: was -> now", ...]`` for every label that differs."""
    return [
        f"{k}: {value_name(before.get(k))} -> {value_name(after.get(k))}"
        for k in CHEXPERT_LABELS
        if before.get(k) != after.get(k)
    ]


def _numbers_of(text: str) -> set[str]:
    # "1. No effusion" list numbering is layout, not a fact
    body = re.sub(r"(?:^|\n)\s*\d{1,2}[.)]\s", "\n", text)
    return {m.rstrip(".") for m in _NUMBER.findall(body)}


def facts_of(text: str) -> dict[str, set[str]]:
    """The laterality words (lowercase, "bilaterally" as "bilateral") and numbers of a text."""
    lat = {m.lower().removesuffix("ly") for m in _LATERAL.findall(text or "")}
    return {"laterality": lat, "numbers": _numbers_of(text or "")}


def check_facts(findings: str, coarse: str, refined: str) -> dict[str, Any]:
    """``lost``: findings facts the coarse draft had and the refined one dropped; ``added``:
    refined facts absent from the findings; ``missing``: findings facts not in the refined
    draft (information only: an impression summarises); ``ok`` when nothing lost or added."""
    f, c, r = facts_of(findings), facts_of(coarse), facts_of(refined)
    out: dict[str, Any] = {"lost": [], "added": [], "missing": []}
    for kind in ("laterality", "numbers"):
        out["lost"] += sorted(f"{kind}: {x}" for x in (f[kind] & c[kind]) - r[kind])
        out["added"] += sorted(f"{kind}: {x}" for x in r[kind] - f[kind])
        out["missing"] += sorted(f"{kind}: {x}" for x in f[kind] - r[kind])
    out["ok"] = not out["lost"] and not out["added"]
    return out
