"""``map OUT``: propose a BIDS name (or a skip) for every protocol group and series."""

from __future__ import annotations

import argparse
import sys

from engine.commands._api import invoke, say_warnings
from engine.config import add_llm_arguments
from engine.mapping import BACKENDS

BACKEND_CHOICES = ("rules", "ollama", "llamacpp", "hf", "llama-cpp", "transformers", "openai")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "map",
        help="map protocol groups to BIDS names (rules or LLM backend)",
        description="Map each group of OUT to a BIDS name or a skip; writes "
        "aggregated_dicominfo_mapped.tsv, series_assignments.tsv and mapping_report.txt.",
    )
    p.add_argument("out", help="output folder of `analyze` (and `group`)")
    p.add_argument(
        "--backend",
        default=None,
        choices=sorted(set(BACKEND_CHOICES) | set(BACKENDS)),
        help="rules, or an LLM backend (default: the configured backend when a model is given "
        "by --model, LLM_MODEL_NAME or the config file; the rules otherwise)",
    )
    add_llm_arguments(p, backend=False)  # --model --no-quantization --context --llm-all
    p.add_argument(
        "--groups",
        default=None,
        metavar="G1,G2",
        help="ask the LLM about these groups only (always, not just when the rules are unsure, "
        "and without the answer cache); every other group keeps its current mapping",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine import context
    from engine.api.types import MapParams

    groups = [g.strip() for g in args.groups.split(",") if g.strip()] if args.groups else None
    params = MapParams(
        out_dir=args.out,
        backend=args.backend,
        model=getattr(args, "model", None),
        quantization=getattr(args, "quantization", None),
        context=getattr(args, "context", None),
        llm_all=bool(getattr(args, "llm_all", False)),
        groups=groups,
        settings={
            k: getattr(args, k)
            for k in ("n_gpu_layers", "ollama_host", "openai_base_url")
            if getattr(args, k, None) is not None
        },
    )
    stream = args.backend != "rules" and sys.stderr.isatty() and not getattr(args, "engine", None)
    # (with no --backend the step decides: it may still be the rules)
    with context.printing_deltas(stream):
        res = invoke(args, "map", params)
    print(res.message)
    say_warnings(res.warnings)
    return 0
