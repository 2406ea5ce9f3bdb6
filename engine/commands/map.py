"""``map OUT``: propose a BIDS name (or a skip) for every protocol group and series."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from engine import review
from engine.atomic import write_text_atomic, write_tsv_atomic
from engine.config import add_llm_arguments, settings_from_args
from engine.errors import UserError
from engine.grouping import group_series, write_grouping
from engine.heuristic.inputs import read_mappings
from engine.mapping import BACKENDS, map_groups
from engine.mapping.report import (
    ASSIGNMENT_COLUMNS,
    MAPPED_COLUMNS,
    assignment_rows,
    mapped_rows,
)
from engine.workspace import (
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
    p.add_argument(
        "--groups",
        default=None,
        metavar="G1,G2",
        help="ask the LLM about these groups only (always, not just when the rules are unsure, "
        "and without the answer cache); every other group keeps its current mapping",
    )
    p.set_defaults(func=run)


def _on_delta(tty: bool) -> Any:
    """LLM text to the engine's client (the TUI's rationale pane) and, on a terminal, stderr."""
    from engine.rpc import context

    printer = None
    if tty:
        from engine.llm import print_deltas_to_stderr

        printer = print_deltas_to_stderr()

    def on_delta(gid: str, phase: str, text: str) -> None:
        context.delta(text, group_id=gid, phase=phase)
        if printer is not None:
            printer(gid, phase, text)

    return on_delta


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    try:
        series = read_series(out)
    except FileNotFoundError as exc:
        raise UserError(str(exc)) from exc
    only = [g.strip() for g in args.groups.split(",") if g.strip()] if args.groups else None
    if args.backend != "rules":  # LLM: rules first, the model where they are unsure
        from engine.llm import register_mapping_backend
        from engine.rpc import context

        settings = settings_from_args(args)
        if only:  # asked for by name: ask the model afresh, however sure the rules are
            settings.llm_all, settings.cache = True, False
        register_mapping_backend(
            args.backend,
            settings,
            out,
            on_delta=_on_delta(sys.stderr.isatty()),
            cancel=context.cancel_event(),  # the engine client's cancel stops the model
        )
    if args.backend not in BACKENDS:
        raise UserError(f"backend {args.backend!r} is not available in this installation")
    # Grouping is recomputed (deterministic, same ids as `group`) so series flags are known.
    grouping = group_series(series)
    if not (out / GROUPS_TSV).exists():
        write_grouping(out, grouping)
    current = None
    if only:
        known = {g.group_id for g in grouping.groups}
        unknown = [g for g in only if g not in known]
        if unknown:
            raise UserError(f"unknown group(s): {', '.join(unknown)} (see {out / GROUPS_TSV})")
        proposal = review.proposal_path(out)
        if proposal.exists():
            current = {m.group_id: m for m in read_mappings(proposal)}
    res = map_groups(
        series, backend=args.backend, grouping=grouping, out_dir=out, only=only, current=current
    )
    write_tsv_atomic(
        out / MAPPED_TSV, MAPPED_COLUMNS, mapped_rows(res.groups, res.mappings, series)
    )
    if res.decided:  # the proposal stays beside it: undo in the TUI goes back to it
        review.save_proposal(out, MAPPED_COLUMNS, mapped_rows(res.groups, res.proposed, series))
    write_tsv_atomic(out / ASSIGNMENTS_TSV, ASSIGNMENT_COLUMNS, assignment_rows(res.assignments))
    write_text_atomic(out / MAPPING_REPORT, res.report)
    n = sum(1 for a in res.assignments if a.bids_path)
    mine = f"; {len(res.decided)} decided by you" if res.decided else ""
    print(
        f"{len(res.groups)} groups mapped{mine}; {n} of {len(res.assignments)} series converted; "
        f"see {out / MAPPING_REPORT}"
    )
    return 0
