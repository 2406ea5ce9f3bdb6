"""A radiologist's style profile: how their impressions look, measured on their priors.

Everything is counted from the text (no model), so a profile is cheap, explainable and the
same on every machine: length distribution, list vs prose, sentence length, hedging and
recommendation vocabulary, abbreviations, habitual openings and closings, section habits.
:func:`describe` turns it into the sentences the refinement prompt shows the model.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Sequence
from typing import Any

from engine.report.style.corpus import sentences
from engine.report.style.priors import Priors

PROFILE_VERSION = 1

HEDGES = (
    "likely",
    "probably",
    "probable",
    "possibly",
    "possible",
    "may",
    "might",
    "could",
    "suspected",
    "suggestive",
    "suggests",
    "cannot be excluded",
    "cannot exclude",
    "not excluded",
    "questionable",
    "equivocal",
    "concerning for",
    "consistent with",
    "compatible with",
    "favor",
    "definite",
    "convincing",
    "appears",
    "within the limits",
)
RECOMMENDATIONS = (
    "recommend",
    "recommended",
    "recommendation",
    "follow-up",
    "follow up",
    "correlation",
    "correlate",
    "consider",
    "advised",
    "repeat",
    "further evaluation",
    "ct",
)
_NUMBERED = re.compile(r"(?:^|\n)\s*\d{1,2}[.)]\s")
_ABBR = re.compile(r"\b[A-Z]{2,6}s?\b")
_NOT_ABBR = {"XXXX", "XX", "XXX", "II", "III"}


def _phrase_re(words: Sequence[str]) -> re.Pattern[str]:
    alts = sorted((re.escape(w) for w in words), key=len, reverse=True)
    return re.compile(r"\b(" + "|".join(alts) + r")\b", re.IGNORECASE)


_HEDGE_RE = _phrase_re(HEDGES)
_REC_RE = _phrase_re(RECOMMENDATIONS)


def _dist(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"mean": 0.0, "median": 0.0, "p10": 0.0, "p90": 0.0, "min": 0.0, "max": 0.0}
    vs = sorted(values)

    def q(f: float) -> float:
        return float(vs[min(len(vs) - 1, int(f * (len(vs) - 1) + 0.5))])

    return {
        "mean": round(statistics.fmean(vs), 2),
        "median": float(statistics.median(vs)),
        "p10": q(0.1),
        "p90": q(0.9),
        "min": float(vs[0]),
        "max": float(vs[-1]),
    }


def _top(counter: Counter[str], n: int) -> dict[str, int]:
    return {k: v for k, v in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:n]}


def is_list(text: str) -> bool:
    """A numbered list: at least one line starting ``1.`` / ``2)``."""
    return bool(_NUMBERED.search(text))


def build_profile(radiologist: str, priors: Priors) -> dict[str, Any]:
    """The profile of ``radiologist`` from their priors (a JSON-ready dict)."""
    imps = [p.impression for p in priors.pairs]
    n = len(imps)
    sents = [sentences(t) for t in imps]
    words = [len(t.split()) for t in imps]
    sent_words = [len(s.split()) for ss in sents for s in ss]
    hedge, rec, abbr = Counter[str](), Counter[str](), Counter[str]()
    hedged = recd = 0
    for t in imps:
        h = [m.lower() for m in _HEDGE_RE.findall(t)]
        r = [m.lower() for m in _REC_RE.findall(t)]
        hedge.update(h)
        rec.update(r)
        hedged += bool(h)
        recd += bool(r)
        abbr.update(a for a in _ABBR.findall(t) if a not in _NOT_ABBR)
    openers = Counter(" ".join(ss[0].split()[:4]) for ss in sents if ss)
    closers = Counter(ss[-1] for ss in sents if len(ss) > 1)
    n_list = sum(is_list(t) for t in imps)
    return {
        "version": PROFILE_VERSION,
        "radiologist": radiologist,
        "n_pairs": n,
        "source_kind": priors.kind,
        "skipped": len(priors.skipped),
        "length_words": _dist(words),
        "length_sentences": _dist([len(ss) for ss in sents]),
        "sentence_words": _dist(sent_words),
        "format": {
            "numbered_list": round(n_list / n, 3) if n else 0.0,
            "prose": round(1 - n_list / n, 3) if n else 0.0,
            "multi_line": round(sum("\n" in t.strip() for t in imps) / n, 3) if n else 0.0,
        },
        "hedging": {"rate": round(hedged / n, 3) if n else 0.0, "terms": _top(hedge, 12)},
        "recommendations": {"rate": round(recd / n, 3) if n else 0.0, "terms": _top(rec, 12)},
        "abbreviations": _top(abbr, 15),
        "openers": _top(Counter({k: v for k, v in openers.items() if v > 1}), 5),
        "closers": _top(Counter({k: v for k, v in closers.items() if v > 1}), 5),
        "sections": {
            k: round(v / max(1, n + len(priors.skipped)), 3)
            for k, v in sorted(priors.section_counts.items())
        },
    }


def _pct(x: float) -> str:
    return f"{round(100 * x)} %"


def describe(profile: dict[str, Any]) -> str:
    """The profile in plain sentences, for the refinement prompt."""
    f, lw, sw = profile["format"], profile["length_words"], profile["sentence_words"]
    lines = [
        f"Layout: numbered list in {_pct(f['numbered_list'])} of impressions, "
        f"prose in {_pct(f['prose'])}.",
        f"Length: median {lw['median']:g} words (10-90 %: {lw['p10']:g}-{lw['p90']:g}); "
        f"sentences of about {sw['median']:g} words.",
        f"Hedging in {_pct(profile['hedging']['rate'])}"
        + (f" ({', '.join(profile['hedging']['terms'])})" if profile["hedging"]["terms"] else "")
        + ".",
        f"Recommendations in {_pct(profile['recommendations']['rate'])}"
        + (
            f" ({', '.join(profile['recommendations']['terms'])})"
            if profile["recommendations"]["terms"]
            else ""
        )
        + ".",
    ]
    if profile["abbreviations"]:
        lines.append(f"Abbreviations used: {', '.join(profile['abbreviations'])}.")
    if profile["openers"]:
        lines.append("Habitual openings: " + "; ".join(f'"{o}"' for o in profile["openers"]) + ".")
    if profile["closers"]:
        lines.append(
            "Habitual closing sentences: " + "; ".join(f'"{c}"' for c in profile["closers"]) + "."
        )
    return "\n".join(lines)
