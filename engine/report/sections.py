"""Report sections: keep what the radiologist saw (FINDINGS, IMPRESSION), drop why they looked.

INDICATION, HISTORY and COMPARISON name suspected or past disease ("evaluate for pneumonia")
that the image need not show; labelling them would add false positives. A text without any
section header (a bare impression, as in CheXpert's input) is used whole.
"""

from __future__ import annotations

import re

KEEP = ("FINDINGS", "IMPRESSION")

# Header word -> canonical section. Headers end with ':' (or are alone on a line).
_ALIASES: dict[str, str] = {
    "findings": "FINDINGS",
    "finding": "FINDINGS",
    "report": "FINDINGS",
    "impression": "IMPRESSION",
    "impressions": "IMPRESSION",
    "conclusion": "IMPRESSION",
    "conclusions": "IMPRESSION",
    "summary": "IMPRESSION",
    "opinion": "IMPRESSION",
    "indication": "INDICATION",
    "indications": "INDICATION",
    "reason for exam": "INDICATION",
    "reason for examination": "INDICATION",
    "reason for study": "INDICATION",
    "clinical indication": "INDICATION",
    "clinical information": "INDICATION",
    "clinical history": "HISTORY",
    "history": "HISTORY",
    "clinical data": "HISTORY",
    "comparison": "COMPARISON",
    "comparisons": "COMPARISON",
    "technique": "TECHNIQUE",
    "examination": "EXAMINATION",
    "exam": "EXAMINATION",
    "procedure": "TECHNIQUE",
    "recommendation": "RECOMMENDATION",
    "recommendations": "RECOMMENDATION",
    "notification": "NOTIFICATION",
    "wet read": "NOTIFICATION",
}
_HEADER = re.compile(
    r"(?:^|(?<=[\n.;]))\s*(?P<name>"
    + "|".join(sorted((re.escape(k) for k in _ALIASES), key=len, reverse=True))
    + r")\s*:",
    re.IGNORECASE,
)


def split_sections(text: str) -> list[tuple[str, str]]:
    """``[(SECTION, body), ...]`` in order; text before the first header is ``PREAMBLE``."""
    parts: list[tuple[str, str]] = []
    last_name, last_end = "PREAMBLE", 0
    for m in _HEADER.finditer(text):
        parts.append((last_name, text[last_end : m.start()]))
        last_name, last_end = _ALIASES[m.group("name").lower()], m.end()
    parts.append((last_name, text[last_end:]))
    return [(n, b.strip()) for n, b in parts if b.strip()]


def labelled_text(text: str, keep: tuple[str, ...] = KEEP) -> str:
    """The part of a report the labeler reads: the kept sections, or the whole text.

    With headers but none of the kept ones, the text before the first header still counts
    (some reports put the findings first, unlabelled).
    """
    parts = split_sections(text)
    if all(name == "PREAMBLE" for name, _ in parts):
        return text.strip()
    kept = [body for name, body in parts if name in keep]
    if not kept:
        kept = [body for name, body in parts if name == "PREAMBLE"]
    return "\n\n".join(_end_sentence(b) for b in kept)


def _end_sentence(body: str) -> str:
    """Sections are joined; a missing final period would glue two sentences together."""
    return body if body.rstrip().endswith((".", "!", "?")) else body.rstrip() + "."
