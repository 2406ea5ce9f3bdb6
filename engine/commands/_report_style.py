"""``report style build``, ``report impression``, ``report impression-eval``: personalised
impressions (a radiologist's style from their priors; facts locked).

Thin adapters: build the parameters, call the API (in-process or ``--engine SPEC``), print.
Streamed drafts go to stderr (``[coarse]``, ``[refine]``) unless ``--json`` or ``--no-stream``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from engine.errors import UserError

_DATA_HELP = "folder of profiles and indexes (default: the user's data folder; LLMH_STYLE_DIR)"


def _llm_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--backend", default="", help="echo, llama-cpp, transformers, ollama, openai")
    g.add_argument("--model", default="", help="the model (default: configured)")
    g.add_argument("--host", default="", help="Ollama host")
    g.add_argument("--base-url", default="", help="OpenAI-compatible base URL")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--temperature", type=float, default=0.0)
    g.add_argument("--max-tokens", type=int, default=200)
    g.add_argument("--k", type=int, default=3, help="similar prior pairs shown (default 3)")
    g.add_argument("--embedder", default="", help="must match the index (default minilm)")
    g.add_argument("--data-dir", default="", help=_DATA_HELP)
    p.add_argument("--radiologist", required=True, help="whose style (as given to style build)")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")


def _llm(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "backend": args.backend,
        "model": args.model,
        "host": args.host,
        "base_url": args.base_url,
        "seed": args.seed,
        "temperature": args.temperature,
        "max_tokens": args.max_tokens,
        "k": args.k,
        "embedder": args.embedder,
        "data_dir": args.data_dir,
    }


# ------------------------------------------------------------------ style build
def register_style(subs: argparse._SubParsersAction) -> None:
    p = subs.add_parser(
        "style",
        help="a radiologist's impression style, learnt from their prior reports",
        description="Style profiles for personalised impressions (kept in the user's data "
        "folder, never shared).",
    )
    ss = p.add_subparsers(dest="style_command", metavar="ACTION", required=True)
    b = ss.add_parser(
        "build",
        help="profile + embedding index of a radiologist's (findings -> impression) pairs",
        description="PRIOR_REPORTS: JSONL (findings, impression, optional id) or a folder of "
        "report text files (FINDINGS/IMPRESSION sections). Writes profile.json, pairs.jsonl and "
        "an embedding index into the user's data folder only.",
    )
    b.add_argument("priors", metavar="PRIOR_REPORTS")
    b.add_argument("--radiologist", required=True)
    b.add_argument("--embedder", default="", help="minilm (default, offline), ollama:M, openai:M")
    b.add_argument("--data-dir", default="", help=_DATA_HELP)
    b.add_argument("--json", action="store_true", help="print the profile as JSON")
    b.set_defaults(func=_run_style_build)
    c = ss.add_parser(
        "corpus",
        help="a test corpus, synthetic in style, from the Open-i reports",
        description="Write <reader>.priors.jsonl and <reader>.heldout.jsonl for four invented "
        "readers into OUT: real Open-i findings, impressions rewritten by a fixed per-reader "
        "style transform (see docs/report_style.md). Needs torchxrayvision==1.5.7 (--no-deps); "
        "the texts are CC BY-NC-ND 4.0.",
    )
    c.add_argument("out_dir", metavar="OUT")
    c.add_argument("--limit", type=int, default=0, help="priors per reader (default all)")
    c.add_argument("--heldout", type=int, default=0, help="held-out pairs per reader (default all)")
    c.set_defaults(func=_run_style_corpus)


def _run_style_corpus(args: argparse.Namespace) -> int:
    from engine.api.report_style import StyleCorpusParams
    from engine.commands._api import invoke

    res = invoke(
        args, "report.style_corpus", StyleCorpusParams(args.out_dir, args.limit, args.heldout)
    )
    for name, n in res.counts.items():
        print(f"{n:6d}  {Path(res.out_dir) / name}")
    print(res.message)
    return 0


def _run_style_build(args: argparse.Namespace) -> int:
    from engine.api.report_style import StyleBuildParams
    from engine.commands._api import invoke

    res = invoke(
        args,
        "report.style_build",
        StyleBuildParams(args.priors, args.radiologist, args.embedder, args.data_dir),
    )
    if args.json:
        print(json.dumps(res.profile, indent=1))
    for s in res.skipped[:5]:
        print(f"skipped: {s}", file=sys.stderr)
    print(res.message)
    return 0


# ------------------------------------------------------------------ impression
def _text_or_file(value: str, what: str) -> str:
    p = Path(value)
    try:
        is_file = len(value) < 4096 and "\n" not in value and p.is_file()
    except (OSError, ValueError):
        is_file = False
    if not is_file:
        return value
    try:
        return p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{p}: {what} is not UTF-8 text (byte {exc.start})") from None


def _context(value: str | None) -> dict[str, Any]:
    if not value:
        return {}
    raw = _text_or_file(value, "--context")
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise UserError(f"--context: not JSON ({exc.msg}); give a JSON object or a file") from None
    if not isinstance(doc, dict):
        raise UserError("--context: expected a JSON object (age, sex, indication, ...)")
    return doc


def register_impression(subs: argparse._SubParsersAction) -> None:
    p = subs.add_parser(
        "impression",
        help="an impression from findings, in a radiologist's style, facts locked",
        description="Draft a coarse impression from the findings (+ patient context), then "
        "refine it toward R's style with their profile and k most similar prior pairs. The "
        "CheXpert labels of both must agree (one retry, then the coarse one is returned with a "
        "note); laterality and numbers are checked.",
    )
    p.add_argument("--findings", required=True, help="the findings: TEXT or a FILE")
    p.add_argument("--context", help="patient context: JSON object or a JSON file")
    p.add_argument("--no-stream", action="store_true", help="do not stream drafts to stderr")
    _llm_args(p)
    p.set_defaults(func=_run_impression)


def _run_impression(args: argparse.Namespace) -> int:
    from engine import context
    from engine.api.report_style import ImpressionParams
    from engine.commands._api import invoke
    from engine.serial import to_json

    params = ImpressionParams(
        **_llm(args),
        findings=_text_or_file(args.findings, "--findings"),
        radiologist=args.radiologist,
        context=_context(args.context),
    )
    with context.printing_deltas(not args.json and not args.no_stream):
        res = invoke(args, "report.impression", params)
    if args.json:
        print(json.dumps(to_json(res), indent=1))
        return 0
    print(file=sys.stderr)
    print(f"COARSE:\n{res.coarse}\n\nREFINED ({res.radiologist}):\n{res.refined}\n")
    if res.style_fit:
        print(
            f"style fit P({res.radiologist}): coarse {res.style_fit['coarse']:.3f}, "
            f"refined {res.style_fit['refined']:.3f}"
        )
    print(
        f"labels equal: {'yes' if res.labels_equal else 'no'}"
        + (" (after a retry)" if res.retried and not res.fell_back else "")
    )
    if res.note:
        print(f"note: {res.note}")
    for f in res.flags:
        print(f"flag: {f}")
    print(res.message, file=sys.stderr)
    return 0


# ------------------------------------------------------------------ impression-eval
def register_impression_eval(subs: argparse._SubParsersAction) -> None:
    p = subs.add_parser(
        "impression-eval",
        help="coarse vs refined impressions on held-out pairs of a radiologist",
        description="PAIRS: held-out JSONL (findings, impression) or a folder of reports. "
        "Scores coarse and refined impressions against the true ones: ROUGE-L, BERTScore, "
        "label agreement, style fit.",
    )
    p.add_argument("pairs", metavar="PAIRS")
    p.add_argument("--limit", type=int, default=0, help="first N pairs only")
    p.add_argument("--metrics", default="rouge_l,bertscore", help="subset of rouge_l,bertscore")
    p.add_argument("-o", "--out", metavar="JSON", help="also write the full result here")
    _llm_args(p)
    p.set_defaults(func=_run_impression_eval)


def _run_impression_eval(args: argparse.Namespace) -> int:
    from engine.api.report_style import ImpressionEvalParams
    from engine.commands._api import invoke
    from engine.serial import to_json

    params = ImpressionEvalParams(
        **_llm(args),
        pairs=args.pairs,
        radiologist=args.radiologist,
        limit=args.limit,
        metrics=[m.strip() for m in args.metrics.split(",") if m.strip()],
    )
    res = invoke(args, "report.impression_eval", params)
    doc = to_json(res)
    if args.out:
        Path(args.out).write_text(json.dumps(doc, indent=1))
    if args.json:
        print(json.dumps(doc, indent=1))
        return 0
    print(f"{res.n} held-out pairs of {res.radiologist}")
    print(f"{'score':<20}{'coarse':>9}{'refined':>9}")
    for k in res.refined:
        print(f"{k:<20}{res.coarse.get(k, 0):>9.3f}{res.refined.get(k, 0):>9.3f}")
    print(f"fell back: {res.fell_back}, flagged: {res.flagged}")
    return 0
