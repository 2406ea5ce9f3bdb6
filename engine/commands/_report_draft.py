"""``report draft`` and ``report ab``: chest X-ray reports from a vision-language model.

Thin adapters over the API methods ``report.draft`` and ``report.ab`` (in this process, or on
``--engine SPEC``: the GPU node over SSH or Slurm). One image streams its tokens to the
terminal (stderr; the reasoning, a retry and the JSON labels turn each under a rule); several
show a progress bar and one line per image.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine.commands._api import invoke

BACKEND_CHOICES = ("llama-cpp", "transformers", "ollama", "openai", "echo")
MODES = ("report", "cot", "impression", "impression_icd")


def register_draft(subs: argparse._SubParsersAction) -> None:
    """``report draft`` and ``report ab``."""
    _register_draft(subs)
    _register_ab(subs)


def _model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--backend", choices=BACKEND_CHOICES, default="", help="LLM backend")
    g.add_argument("--model", default="", help="vision-language model (path, tag or server id)")
    g.add_argument("--host", default="", help="Ollama host")
    g.add_argument("--base-url", dest="base_url", default="", help="OpenAI-compatible base URL")
    g.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    g.add_argument("--temperature", type=float, default=0.0, help="default 0: greedy")
    g.add_argument("--max-tokens", dest="max_tokens", type=int, default=0, metavar="N")
    g.add_argument(
        "--no-quantization",
        dest="quantization",
        action="store_const",
        const=False,
        default=None,
        help="transformers: full-precision weights instead of 4-bit NF4",
    )
    g.add_argument("--config", default="", help="TOML overriding prompts: [report_draft.<mode>]")
    p.add_argument(
        "--engine", default=None, metavar="SPEC", help="run on this engine (local, ssh:, slurm:)"
    )


def _register_draft(subs: argparse._SubParsersAction) -> None:
    p = subs.add_parser(
        "draft",
        help="draft chest X-ray reports with a vision-language model",
        description="Draft a report per radiograph (DICOM CR/DX, PNG, JPEG; files or folders) "
        "with EXACTLY the headers Technique, View, Findings, Impression; optionally ten "
        "reasoning steps first (--cot), the 14 CheXpert labels as JSON cross-checked by the "
        "report labeler (--labels) and ICD-10-CM codes from the patient data (--icd --ehr). "
        "-o OUT.jsonl gets one record per image and resumes: images already there are skipped.",
    )
    p.add_argument("images", nargs="+", metavar="IMAGES", help="image files or folders")
    p.add_argument("--ehr", default="", help="patient context JSON (age, sex, vitals, ...)")
    p.add_argument("--cot", action="store_true", help="ten numbered reasoning steps first")
    p.add_argument("--mode", choices=MODES, default=None, help="prompt template (default report)")
    p.add_argument("--labels", action="store_true", help="CheXpert 14 labels as JSON, checked")
    p.add_argument("--icd", action="store_true", help="ICD-10-CM codes (needs --ehr)")
    p.add_argument("--icd-codes", dest="icd_codes", default="", help="file of allowed codes")
    p.add_argument("-o", "--output", default="", metavar="OUT.jsonl", help="JSONL to append to")
    p.add_argument(
        "--redo", action="store_true", help="draft images already in OUT.jsonl again (appended)"
    )
    p.add_argument("--no-stream", dest="stream", action="store_false", help="no token stream")
    p.add_argument("--json", action="store_true", help="print the records as JSON")
    _model_args(p)
    p.set_defaults(func=run_draft)


def _register_ab(subs: argparse._SubParsersAction) -> None:
    p = subs.add_parser(
        "ab",
        help="image only vs image + EHR: metric deltas with paired bootstrap CIs",
        description="Draft every image twice with the same model and seed, without and with "
        "the patient data, score both against REFS (BLEU-4, ROUGE-L, METEOR, BERTScore, "
        "CheXpert label F1) and print B - A per metric with a paired bootstrap interval. "
        "DIR gets both drafts files (resumable), ab_summary.json and ab_cases.jsonl.",
    )
    p.add_argument("images", nargs="+", metavar="IMAGES", help="image files or folders")
    p.add_argument("--ehr", required=True, help="patient context per image (JSON/JSONL)")
    p.add_argument("--ref", dest="refs", required=True, help="reference reports (CSV/JSONL)")
    p.add_argument("-o", "--output", default="report_ab", metavar="DIR", help="results folder")
    p.add_argument("--mode", choices=("impression", "report", "cot"), default="impression")
    p.add_argument(
        "--metrics",
        default="bleu,rouge_l,meteor,bertscore,label_f1",
        help="comma-separated subset of bleu,rouge_l,meteor,bertscore,label_f1",
    )
    p.add_argument("--n-boot", dest="n_boot", type=int, default=2000, help="bootstrap replicates")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    _model_args(p)
    p.set_defaults(func=run_ab)


class _Terminal:
    """In this process, the step's deltas and progress go to stderr as the engine's client
    would print them, with a rule when the phase or attempt changes."""

    def __init__(self, deltas: bool) -> None:
        from engine.rpc.client import print_progress

        self.cancel_event = threading.Event()
        self.deltas = deltas
        self._base = print_progress(sys.stderr)
        self._last: tuple[Any, Any, Any] | None = None

    def notify(self, method: str, params: dict[str, Any]) -> bool:
        if method == "delta":
            if not self.deltas:
                return True
            key = (params.get("image"), params.get("phase"), params.get("attempt"))
            if key != self._last:
                if self._last is not None or params.get("phase") != "report":
                    what = str(params.get("phase"))
                    if (params.get("attempt") or 1) > 1:
                        what += f", attempt {params.get('attempt')}"
                    sys.stderr.write(f"\n--- {what} ---\n")
                self._last = key
        self._base(method, params)
        return True


@contextlib.contextmanager
def _events(args: argparse.Namespace, deltas: bool) -> Iterator[None]:
    if getattr(args, "engine", None):
        try:
            yield  # the engine's client prints them
        finally:
            if deltas:
                sys.stderr.write("\n")
        return
    from engine import context

    context._set(_Terminal(deltas))  # noqa: SLF001 - this process is the request's client
    try:
        yield
    finally:
        context._set(None)  # noqa: SLF001
        sys.stderr.write("\n")


def _single(images: list[str]) -> bool:
    return len(images) == 1 and not Path(images[0]).is_dir()


def run_draft(args: argparse.Namespace) -> int:
    from engine.api.report_draft import DraftParams

    mode = args.mode or ("cot" if args.cot else "report")
    if args.cot and args.mode not in (None, "cot"):
        print(f"warning: --cot ignored: --mode {args.mode}", file=sys.stderr)
    stream = bool(args.stream) and _single(args.images)
    params = DraftParams(
        images=list(args.images),
        ehr=args.ehr,
        mode=mode,
        labels=args.labels,
        icd=args.icd,
        output=args.output,
        icd_codes=args.icd_codes,
        stream=stream,
        redo=args.redo,
        **_model_options(args),
    )
    with _events(args, stream):
        res = invoke(args, "report.draft", params)
    if args.json:
        from engine.serial import to_json

        print(json.dumps(to_json(res), indent=2))
        return 0
    for rec in res.records:
        print(format_record(rec, full=not stream))
    print(res.message, file=sys.stderr)
    return 0


def _model_options(args: argparse.Namespace) -> dict[str, Any]:
    """The model, its sampling and the prompt config: the same for a draft and an A/B run."""
    names = ("backend", "model", "host", "base_url", "seed", "temperature", "max_tokens")
    return {n: getattr(args, n) for n in (*names, "config", "quantization")}


def _p(text: str) -> str:
    """Printable: control characters (a file name's newline, escapes) shown, not obeyed."""
    return "".join(ch if ch.isprintable() or ch in "\n\t" else repr(ch)[1:-1] for ch in text)


def format_record(rec: Any, full: bool = True) -> str:
    """One record for a person: sections (unless they were streamed), flags, labels, ICD."""
    name = _p(rec.image).replace("\n", "\\n")
    lines = [f"== {name}" + (f"  [{rec.model}, {rec.mode}]" if rec.model else "")]
    if full:
        for head, body in rec.sections.items():
            lines.append(f"{head}: {_p(body)}")
        if not rec.sections and rec.text:
            lines.append(_p(rec.text))
    if rec.steps:
        lines.append(f"reasoning: {len(rec.steps)} steps")
    if rec.labels:
        pos = [k for k, v in rec.labels.items() if v == 1]
        unc = [k for k, v in rec.labels.items() if v == -1]
        lines.append(
            f"labels: positive {', '.join(pos) or 'none'}; uncertain {', '.join(unc) or 'none'}"
        )
    if rec.disagreements:
        shown = ", ".join(
            f"{k} (model {rec.labels.get(k)}, labeler {rec.labeler.get(k)})"
            for k in rec.disagreements
        )
        lines.append(f"labeler disagrees: {shown}")
    if rec.icd:
        lines.append(f"ICD-10-CM: {', '.join(rec.icd)}")
    for f in rec.flags:
        lines.append(f"FLAG {_p(f)}")
    if rec.retries:
        lines.append(f"retries: {rec.retries}")
    return "\n".join(lines)


def run_ab(args: argparse.Namespace) -> int:
    from engine.api.report_draft import ABParams

    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    params = ABParams(
        images=list(args.images),
        ehr=args.ehr,
        refs=args.refs,
        output=args.output,
        mode=args.mode,
        metrics=metrics,
        n_boot=args.n_boot,
        **_model_options(args),
    )
    with _events(args, False):
        res = invoke(args, "report.ab", params)
    if args.json:
        from engine.serial import to_json

        print(json.dumps(to_json(res), indent=2))
        return 0
    print(res.text)
    if res.no_reference:
        print(f"{len(res.no_reference)} image(s) without a reference: not scored", file=sys.stderr)
    print(
        f"flagged drafts: {res.flagged_image_only} image only, {res.flagged_with_ehr} with EHR",
        file=sys.stderr,
    )
    print(f"{res.message}; per-case diffs: {res.cases_path}", file=sys.stderr)
    return 0
