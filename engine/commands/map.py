"""``map OUT``: propose a BIDS name (or a skip) for every protocol group and series."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.atomic import write_text_atomic, write_tsv_atomic
from engine.config import add_llm_arguments, settings_from_args
from engine.errors import UserError
from engine.grouping import GROUP_COLUMNS, group_rows, group_series
from engine.mapping import BACKENDS, map_groups
from engine.mapping.report import (
    ASSIGNMENT_COLUMNS,
    MAPPED_COLUMNS,
    assignment_rows,
    mapped_rows,
)
from engine.workspace import (
    GROUPING_REPORT,
    GROUPS_TSV,
    MAPPED_TSV,
    MAPPING_REPORT,
    read_series,
)

ASSIGNMENTS_TSV = "series_assignments.tsv"
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
        default="rules",
        choices=sorted(set(BACKEND_CHOICES) | set(BACKENDS)),
        help="rules (no model, default) or an LLM backend",
    )
    add_llm_arguments(p, backend=False)  # --model --no-quantization --context --llm-all
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    try:
        series = read_series(out)
    except FileNotFoundError as exc:
        raise UserError(str(exc)) from exc
    if args.backend != "rules":  # LLM: rules first, the model where they are unsure
        from engine.llm import print_deltas_to_stderr, register_mapping_backend

        on_delta = print_deltas_to_stderr() if sys.stderr.isatty() else None
        register_mapping_backend(args.backend, settings_from_args(args), out, on_delta=on_delta)
    if args.backend not in BACKENDS:
        raise UserError(f"backend {args.backend!r} is not available in this installation")
    # Grouping is recomputed (deterministic, same ids as `group`) so series flags are known.
    grouping = group_series(series)
    if not (out / GROUPS_TSV).exists():
        write_tsv_atomic(out / GROUPS_TSV, GROUP_COLUMNS, group_rows(grouping))
        write_text_atomic(out / GROUPING_REPORT, grouping.report)
    res = map_groups(series, backend=args.backend, grouping=grouping)
    write_tsv_atomic(
        out / MAPPED_TSV, MAPPED_COLUMNS, mapped_rows(res.groups, res.mappings, series)
    )
    write_tsv_atomic(out / ASSIGNMENTS_TSV, ASSIGNMENT_COLUMNS, assignment_rows(res.assignments))
    write_text_atomic(out / MAPPING_REPORT, res.report)
    n = sum(1 for a in res.assignments if a.bids_path)
    print(
        f"{len(res.groups)} groups mapped; {n} of {len(res.assignments)} series converted; "
        f"see {out / MAPPING_REPORT}"
    )
    return 0
