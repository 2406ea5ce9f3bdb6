"""CheXpert labels and report metrics through the API: ``report.label``, ``report.evaluate``.

The CLI (``report label``, ``report evaluate``) and any engine client (local, SSH, Slurm) call
these, so a labelled corpus or a metric table comes out the same wherever it was computed. The
work is the step package ``engine.report`` (labeler, metrics, io); files are written atomically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from engine.errors import UserError


@dataclass
class LabelParams:
    reports: str  # header-less one-column CSV (CheXpert's input), CSV/JSONL with ids, Open-i XML
    output: str = ""  # .csv (CheXpert's format) or .jsonl; "": only returned
    explain: bool = False  # the phrase and modifier that decided each label


@dataclass
class LabelledReport:
    id: str
    labels: dict[str, int | None] = field(default_factory=dict)  # 1, 0, -1, None (not mentioned)
    explain: dict[str, str] = field(default_factory=dict)


@dataclass
class LabelResult:
    n: int = 0
    with_ids: bool = False  # the input carried its own ids (else ids are row numbers)
    output: str = ""  # the file written, if any
    text: str = ""  # the CSV (CheXpert's format) or JSONL text, as written or would be
    reports: list[LabelledReport] = field(default_factory=list)


def report_label(p: LabelParams) -> LabelResult:
    """The 14 CheXpert labels of every report in ``p.reports`` (rule labeler, offline)."""
    from engine.report.io import read_reports, write_labels
    from engine.report.labeler import Labeler

    reports, with_ids = read_reports(p.reports)
    results = list(Labeler().label_many(r.text for r in reports))
    rows = [dict(r.labels) for r in results]
    explain = [r.explain() for r in results] if p.explain else None
    jsonl = p.output.endswith((".jsonl", ".ndjson"))
    # the CSV keeps CheXpert's columns exactly; explanations go into JSONL records only
    fmt = "jsonl" if jsonl else "csv"
    text = write_labels(p.output or None, reports, rows, with_ids, explain if jsonl else None, fmt)
    return LabelResult(
        n=len(reports),
        with_ids=with_ids,
        output=p.output,
        text=text,
        reports=[
            LabelledReport(id=rep.id, labels=row, explain=(explain[i] if explain else {}))
            for i, (rep, row) in enumerate(zip(reports, rows, strict=True))
        ],
    )


@dataclass
class EvaluateParams:
    pred: str  # generated reports (CSV or JSONL with id and text; without ids, by row)
    ref: str  # reference reports
    metrics: list[str] = field(
        default_factory=lambda: ["bleu", "rouge_l", "meteor", "bertscore", "label_f1"]
    )
    plot: str = ""  # per-label F1 bar chart PNG
    output: str = ""  # the full result as JSON


@dataclass
class EvaluateResult:
    n: int = 0
    corpus: dict[str, float] = field(default_factory=dict)
    label_f1: dict[str, Any] = field(default_factory=dict)
    implementations: dict[str, str] = field(default_factory=dict)
    per_report: list[dict[str, Any]] = field(default_factory=list)
    unmatched: int = 0  # reference reports with no prediction (skipped)
    plot: str = ""
    output: str = ""
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The metric result as ``engine.report.metrics.evaluate`` shapes it (table, JSON)."""
        d: dict[str, Any] = {"n": self.n, "implementations": self.implementations}
        d["corpus"] = self.corpus
        if self.label_f1:
            d["label_f1"] = self.label_f1
        d["per_report"] = self.per_report
        if self.plot:
            d["plot"] = self.plot
        return d


def report_evaluate(p: EvaluateParams) -> EvaluateResult:
    """BLEU-4/2, ROUGE-L, METEOR, BERTScore and CheXpert label F1 of ``pred`` against ``ref``."""
    from engine.atomic import write_text_atomic
    from engine.report.io import read_reports
    from engine.report.metrics import ALL_METRICS, evaluate, plot_label_f1

    wanted = [m.strip() for m in p.metrics if m.strip()]
    bad = [m for m in wanted if m not in ALL_METRICS]
    if bad or not wanted:
        raise UserError(
            f"unknown metric(s) {', '.join(bad) or '(none given)'}; "
            f"choose from {', '.join(ALL_METRICS)}"
        )
    if p.plot and "label_f1" not in wanted:
        raise UserError("the plot draws label F1: keep label_f1 in the metrics")
    pred, _ = read_reports(p.pred)
    ref, _ = read_reports(p.ref)
    pmap, rmap = {r.id: r.text for r in pred}, {r.id: r.text for r in ref}
    ids = [i for i in rmap if i in pmap]
    if not ids:
        raise UserError(f"no report id is in both {p.pred} and {p.ref}: match them by an id column")
    raw = evaluate(ids, [pmap[i] for i in ids], [rmap[i] for i in ids], wanted)
    res = EvaluateResult(
        n=raw["n"],
        corpus=raw["corpus"],
        label_f1=raw.get("label_f1", {}),
        implementations=raw["implementations"],
        per_report=raw["per_report"],
        unmatched=len(rmap) - len(ids),
    )
    if res.unmatched:
        res.warnings.append(f"{res.unmatched} reference report(s) have no prediction; skipped")
    if p.plot:
        res.plot = str(plot_label_f1(raw, p.plot))
    if p.output:
        res.output = p.output
        write_text_atomic(p.output, json.dumps(res.as_dict(), indent=2) + "\n")
    return res
