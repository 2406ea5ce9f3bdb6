"""``impression-eval``: held-out pairs through coarse -> refined, scored side by side.

Per pair and in the mean, for the coarse and the refined impression: ROUGE-L and BERTScore to
the radiologist's true impression (:mod:`engine.report.metrics`), label agreement with the true
impression (share of the 14 CheXpert labels equal), and style fit (P(text is R's)).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

from engine import context
from engine.report.labels import CHEXPERT_LABELS
from engine.report.style.impression import ImpressionOutcome
from engine.report.style.priors import PriorPair

EVAL_METRICS = ("rouge_l", "bertscore")


def agreement(a: dict[str, int | None], b: dict[str, int | None]) -> float:
    return sum(a.get(k) == b.get(k) for k in CHEXPERT_LABELS) / len(CHEXPERT_LABELS)


def _mean(xs: Sequence[float]) -> float:
    return round(statistics.fmean(xs), 4) if xs else 0.0


def evaluate_pairs(
    pairs: list[PriorPair],
    radiologist: str,
    run_one: Callable[[PriorPair], ImpressionOutcome],
    labeler: Any,
    classifier: Any,
    metrics: Sequence[str] = EVAL_METRICS,
) -> dict[str, Any]:
    """Run ``run_one`` on every pair and score both drafts against the true impressions."""
    from engine.report import metrics as M

    outs: list[ImpressionOutcome] = []
    for i, p in enumerate(pairs):
        if context.cancelled():
            break
        context.progress(i / max(1, len(pairs)), f"pair {i + 1}/{len(pairs)}: {p.id}")
        outs.append(run_one(p))
    pairs = pairs[: len(outs)]
    refs = [p.impression for p in pairs]
    true_labels = [r.labels for r in labeler.label_many(refs)]
    side: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = [
        {
            "id": p.id,
            "true": p.impression,
            "coarse": o.coarse,
            "refined": o.refined,
            "fell_back": o.fell_back,
            "flags": o.flags,
        }
        for p, o in zip(pairs, outs, strict=True)
    ]
    for which in ("coarse", "refined"):
        texts = [getattr(o, which) for o in outs]
        labs = [getattr(o, f"labels_{which}") for o in outs]
        scores: dict[str, list[float]] = {}
        if "rouge_l" in metrics and texts:
            scores["rouge_l"] = M.rouge_l(texts, refs)
        if "bertscore" in metrics and texts:
            scores["bertscore"] = M.bertscore(texts, refs)
        scores["label_agreement"] = [
            agreement(a, b) for a, b in zip(labs, true_labels, strict=True)
        ]
        probs = classifier.proba(texts)
        scores["style_fit"] = [pr.get(radiologist, 0.0) for pr in probs]
        preds = [max(pr, key=pr.__getitem__) if pr else "" for pr in probs]
        side[which] = {k: _mean(v) for k, v in scores.items()}
        side[which]["classified_as_r"] = _mean([float(x == radiologist) for x in preds])
        for row, *vals in zip(rows, *scores.values(), strict=True):
            row[which + "_scores"] = {k: round(v, 4) for k, v in zip(scores, vals, strict=True)}
    context.progress(1.0, f"{len(outs)} pairs evaluated")
    return {
        "radiologist": radiologist,
        "n": len(outs),
        "coarse": side.get("coarse", {}),
        "refined": side.get("refined", {}),
        "fell_back": sum(o.fell_back for o in outs),
        "flagged": sum(bool(o.flags) for o in outs),
        "rows": rows,
    }
