"""``llm-heuristics generate OUT``: compile the mapping into ``OUT/heuristic.py``."""

from __future__ import annotations

import argparse

from engine.api.types import GenerateParams
from engine.commands._api import invoke, say_warnings


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
    res = invoke(
        args,
        "generate",
        GenerateParams(
            out_dir=args.out,
            output=args.output,
            context=args.context,
            include_derived=args.include_derived,
            exclude_sbref=args.exclude_sbref,
            exclude_phase=args.exclude_phase,
            exclude_datatypes=list(args.exclude_datatype),
        ),
    )
    print(res.report, end="")
    print(f"wrote {res.path}")
    say_warnings(res.warnings)
    return 0 if res.ok else 1
