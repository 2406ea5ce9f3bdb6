"""Scoring the two arms of an A/B run against reference reports, case by case.

The text scored is the draft's Impression in the impression modes and Findings + Impression
in the report modes (the raw reply when the sections were not found: a flagged draft still
counts, as it would for a reader). Scores come from :mod:`engine.report.metrics` (per-report
BLEU-4, ROUGE-L, METEOR, BERTScore F1) and the labeler (micro F1 over the 14 labels); deltas
and intervals from :mod:`engine.report.draft.ab`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.errors import UserError
from engine.report.draft import ab
from engine.report.labels import CHEXPERT_LABELS

PER_REPORT = {  # evaluate() metric -> its per-report key
    "bleu": "bleu4",
    "rouge_l": "rouge_l",
    "meteor": "meteor",
    "bertscore": "bertscore_f1",
}
DEFAULT_METRICS = ("bleu", "rouge_l", "meteor", "bertscore", "label_f1")


def scored_text(rec: dict[str, Any]) -> str:
    """What an A/B compares: the impression (impression modes) or findings + impression."""
    sec = rec.get("sections") or {}
    if rec.get("mode", "").startswith("impression"):
        text = sec.get("Impression", "")
    else:
        text = "\n".join(s for s in (sec.get("Findings", ""), sec.get("Impression", "")) if s)
    return text.strip() or str(rec.get("text", "")).strip()


def match_refs(images: list[str], refs_path: str) -> dict[str, str]:
    """Image path -> reference text, by image name, stem or path (ids of the REFS file)."""
    from engine.report.io import read_reports

    reports, _ = read_reports(refs_path)
    by_id = {r.id: r.text for r in reports}
    out: dict[str, str] = {}
    for img in images:
        p = Path(img)
        for key in (p.name, p.stem, img):
            if key in by_id:
                out[img] = by_id[key]
                break
    if not out:
        raise UserError(
            f"no image matches a report id of {refs_path} (ids are image names or stems, "
            f"e.g. {Path(images[0]).stem if images else 'IMAGE'})"
        )
    return out


def score(
    ids: list[str],
    preds_a: list[str],
    preds_b: list[str],
    refs: list[str],
    *,
    metrics: tuple[str, ...] = DEFAULT_METRICS,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[list[ab.DeltaCI], list[dict[str, Any]]]:
    """(delta table, per-case rows) of arm B against arm A on the same references."""
    from engine.report.metrics import evaluate

    bad = [m for m in metrics if m not in DEFAULT_METRICS]
    if bad:
        raise UserError(f"unknown metric(s) {', '.join(bad)}; use {', '.join(DEFAULT_METRICS)}")
    if not ids:
        raise UserError("no case to compare (no image has both arms and a reference)")
    text_metrics = [m for m in metrics if m in PER_REPORT]
    per_a = per_b = [{} for _ in ids]
    if text_metrics:
        per_a = evaluate(ids, preds_a, refs, text_metrics)["per_report"]
        per_b = evaluate(ids, preds_b, refs, text_metrics)["per_report"]
    idx = ab.resample_indices(len(ids), n_boot, seed)
    table: list[ab.DeltaCI] = []
    for m in text_metrics:
        key = PER_REPORT[m]
        xa = [r[key] for r in per_a]
        xb = [r[key] for r in per_b]
        table.append(ab.mean_delta(key, xa, xb, idx=idx, level=level))
    cases: list[dict[str, Any]] = [
        {
            "id": i,
            "ref": r,
            "image_only": a,
            "with_ehr": b,
            "scores_image_only": {PER_REPORT[m]: pa[PER_REPORT[m]] for m in text_metrics},
            "scores_with_ehr": {PER_REPORT[m]: pb[PER_REPORT[m]] for m in text_metrics},
        }
        for i, a, b, r, pa, pb in zip(ids, preds_a, preds_b, refs, per_a, per_b, strict=True)
    ]
    if "label_f1" in metrics:
        from engine.report.labeler import Labeler
        from engine.report.metrics import label_f1

        lab = Labeler()
        la = [x.labels for x in lab.label_many(preds_a)]
        lb = [x.labels for x in lab.label_many(preds_b)]
        lr = [x.labels for x in lab.label_many(refs)]
        ca, cb = ab.counts(la, lr, CHEXPERT_LABELS), ab.counts(lb, lr, CHEXPERT_LABELS)
        row = ab.micro_f1_delta("label_micro_f1", ca, cb, idx=idx, level=level)
        # the point estimates are the metrics module's own (a check on the counts, too)
        row.a = label_f1(la, lr)["micro_f1"]
        row.b = label_f1(lb, lr)["micro_f1"]
        row.delta = row.b - row.a
        table.append(row)
        for c, x, y, z in zip(cases, la, lb, lr, strict=True):
            c["labels_image_only"], c["labels_with_ehr"], c["labels_ref"] = x, y, z
    for c in cases:
        c["delta"] = {
            k: c["scores_with_ehr"][k] - c["scores_image_only"][k] for k in c["scores_with_ehr"]
        }
    return table, cases


def save(
    out_dir: Path, table: list[ab.DeltaCI], cases: list[dict[str, Any]], meta: dict[str, Any]
) -> tuple[Path, Path]:
    """``ab_summary.json`` (the delta table and the run's facts) and ``ab_cases.jsonl`` (one
    line per case: both texts, the reference, scores, labels and deltas)."""
    import json

    from engine.atomic import write_text_atomic

    summary = {**meta, "table": [r.to_dict() for r in table], "text": ab.format_table(table)}
    out_dir.mkdir(parents=True, exist_ok=True)
    s = write_text_atomic(out_dir / "ab_summary.json", json.dumps(summary, indent=2) + "\n")
    c = write_text_atomic(
        out_dir / "ab_cases.jsonl", "".join(json.dumps(x, ensure_ascii=True) + "\n" for x in cases)
    )
    return s, c
