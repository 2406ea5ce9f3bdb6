"""``llm-heuristics generate OUT``: compile the mapping into ``OUT/heuristic.py``."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.atomic import write_text_atomic
from engine.heuristic.compiler import compile_heuristic
from engine.heuristic.inputs import load_inputs
from engine.heuristic.policy import CONTEXT_FILE, Policy, save_policy
from engine.heuristic.report import generation_report
from engine.heuristic.validate import HEURISTIC_FILE, load_heuristic, validate_module
from engine.review import reviewed_inputs


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate",
        help="write the heudiconv heuristic from the mapping",
        description="Compile OUT's mapping (rules, LLM or user decisions) into OUT/heuristic.py "
        "and check it against the series table.",
    )
    p.add_argument("out", help="output folder of analyze/group/map")
    p.add_argument("-o", "--output", help="heuristic file (default OUT/heuristic.py)")
    p.add_argument("--context", default="", help="free text about the study (kept for the LLM)")
    p.add_argument("--include-derived", action="store_true", help="convert named derived groups")
    p.add_argument("--exclude-sbref", action="store_true", help="do not convert SBRef images")
    p.add_argument("--exclude-phase", action="store_true", help="do not convert phase images")
    p.add_argument(
        "--exclude-datatype",
        action="append",
        default=[],
        metavar="DT",
        help="do not convert this datatype (anat, func, dwi, fmap, perf); repeatable",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    series, groups, mappings, assignments = load_inputs(out)
    mappings, assignments = reviewed_inputs(out, series, groups, mappings, assignments)
    policy = Policy(
        include_derived=args.include_derived,
        exclude_sbref=args.exclude_sbref,
        exclude_phase=args.exclude_phase,
        exclude_datatypes=list(args.exclude_datatype),
    )
    save_policy(out, policy)
    if args.context:
        write_text_atomic(out / CONTEXT_FILE, args.context.strip() + "\n")
    context = args.context
    if not context and (out / CONTEXT_FILE).exists():
        context = (out / CONTEXT_FILE).read_text()
    if not policy.is_default():
        mappings, assignments = policy.apply(mappings), None
    descs = sorted({s.study_description for s in series if s.study_description})
    compiled = compile_heuristic(
        series, groups, mappings, assignments, context=context, title=descs[0] if descs else ""
    )
    target = Path(args.output) if args.output else out / HEURISTIC_FILE
    write_text_atomic(target, compiled.source)
    report = generation_report(compiled)
    result = validate_module(load_heuristic(target), series, groups, mappings, assignments)
    report += result.format_diff() + "\n"
    write_text_atomic(out / "heuristic_report.txt", report)
    print(report, end="")
    print(f"wrote {target}")
    return 0 if result.ok else 1
