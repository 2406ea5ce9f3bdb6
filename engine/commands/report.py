"""``report <sub>``: radiology report tools (``label``, ``evaluate`` here; ``draft``, ``ab`` in
``_report_draft``; ``style``, ``impression``, ``impression-eval`` in ``_report_style``).

Each subcommand is a register function that adds its parser (with ``func``); add one by
writing it and listing it in ``SUBCOMMANDS``. Modules named ``_*`` are not top-level commands. The heavy imports (medspaCy, torch)
happen inside the run functions, so ``--help`` stays fast and the core install still starts.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from engine.commands import _report_style as _style
from engine.commands._api import invoke, say_warnings
from engine.commands._report_draft import register_draft as _register_draft


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report",
        help="radiology reports: drafts from images, personalised impressions, CheXpert labels, metrics",
        description="Radiology report tools (optional extra: pip install 'llm-heuristics[report]').",
    )
    subs = p.add_subparsers(dest="report_command", metavar="SUBCOMMAND", required=True)
    for reg in SUBCOMMANDS:
        reg(subs)


def _engine_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--engine", default=None, metavar="SPEC", help="run on this engine (local, ssh:, slurm:)"
    )


# ------------------------------------------------------------------------- label
def _register_label(subs: argparse._SubParsersAction) -> None:
    p = subs.add_parser(
        "label",
        help="the 14 CheXpert labels of each report",
        description="Label reports with the 14 CheXpert observations (1 positive, 0 negative, "
        "-1 uncertain, blank not mentioned). REPORTS: a header-less one-column CSV of texts "
        "(CheXpert's input), a CSV with id and text columns, JSONL with id and text, or Open-i "
        "XML (folder or .tgz). Only FINDINGS/IMPRESSION are read when sections are marked.",
    )
    p.add_argument("reports", help="reports file (CSV, JSONL, Open-i XML folder or .tgz)")
    p.add_argument("-o", "--out", help="write here (.csv: CheXpert format; .jsonl); default stdout")
    p.add_argument(
        "--explain", action="store_true", help="say which phrase and modifier decided each label"
    )
    _engine_option(p)
    p.set_defaults(func=_run_label)


def _run_label(args: argparse.Namespace) -> int:
    from engine.api.report_labels import LabelParams

    res = invoke(args, "report.label", LabelParams(args.reports, args.out or "", args.explain))
    if not args.out:
        sys.stdout.write(res.text)
    if args.explain and not (args.out or "").endswith((".jsonl", ".ndjson")):
        stream = sys.stderr if not args.out else sys.stdout
        for rep in res.reports:
            print(f"# report {rep.id}", file=stream)
            for label, why in rep.explain.items():
                print(f"  {label}: {why}", file=stream)
    if args.out:
        print(f"{res.n} reports labelled -> {args.out}", file=sys.stderr)
    return 0


# ------------------------------------------------------------------------- evaluate
def _register_evaluate(subs: argparse._SubParsersAction) -> None:
    p = subs.add_parser(
        "evaluate",
        help="BLEU, ROUGE-L, METEOR, BERTScore and CheXpert label F1 of generated reports",
        description="Score generated reports (--pred) against reference reports (--ref), "
        "matched by id (CSV or JSONL with id and text; without ids, by row). Fully offline. "
        "Label F1 follows scikit-learn: a label with no positive on either side scores 0.",
    )
    p.add_argument("--pred", required=True, help="generated reports")
    p.add_argument("--ref", required=True, help="reference reports")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.add_argument("--plot", metavar="PNG", help="write a per-label F1 bar chart here")
    p.add_argument("-o", "--out", metavar="JSON", help="also write the full result here")
    p.add_argument(
        "--metrics",
        default="bleu,rouge_l,meteor,bertscore,label_f1",
        help="comma-separated subset of bleu,rouge_l,meteor,bertscore,label_f1",
    )
    _engine_option(p)
    p.set_defaults(func=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    from engine.api.report_labels import EvaluateParams

    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    params = EvaluateParams(args.pred, args.ref, metrics, args.plot or "", args.out or "")
    res = invoke(args, "report.evaluate", params)
    say_warnings(res.warnings)
    result = res.as_dict()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_table(result))
    return 0


def format_table(result: dict[str, Any]) -> str:
    """The human summary: corpus scores, label F1 per observation, what computed each."""
    lines = [f"{result['n']} report pairs", "", f"{'metric':<44}{'corpus':>8}"]
    for k, v in result["corpus"].items():
        lines.append(f"{k:<44}{v:>8.4f}")
    if "label_f1" in result:
        lf = result["label_f1"]
        lines += ["", f"{'label F1':<28}{'unc=neg':>9}{'unc=pos':>9}{'ref pos':>9}"]
        neg, pos = lf["14_uncertain_as_negative"], lf["14_uncertain_as_positive"]
        for lab, v in neg["per_label"].items():
            p, n = pos["per_label"][lab], neg["support"][lab]
            lines.append(f"{lab:<28}{v:>9.3f}{p:>9.3f}{n:>9d}")
        for n in ("14", "5"):
            for agg in ("micro_f1", "macro_f1"):
                a = lf[f"{n}_uncertain_as_negative"][agg]
                b = lf[f"{n}_uncertain_as_positive"][agg]
                lines.append(f"{n + '-label ' + agg.replace('_', '-'):<28}{a:>9.3f}{b:>9.3f}")
    lines += ["", "implementations:"]
    lines += [f"  {k}: {v}" for k, v in result["implementations"].items()]
    if "bertscore_f1" in result["corpus"]:
        lines.append("  (BERTScore is raw, not rescaled with a baseline: values sit high, ~0.5-1)")
    if "plot" in result:
        lines.append(f"per-label F1 chart: {result['plot']}")
    return "\n".join(lines)


SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _register_label,
    _register_evaluate,
    _register_draft,
    _style.register_style,
    _style.register_impression,
    _style.register_impression_eval,
]
