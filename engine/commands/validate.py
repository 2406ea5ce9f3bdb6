"""``llm-heuristics validate OUT [heuristic.py]``: run a heuristic over the series table."""

from __future__ import annotations

import argparse

from engine.commands._api import invoke, say_warnings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate",
        help="check a heuristic against the mapping (no DICOM needed)",
        description="Import the heuristic, run its infotodict per subject/session over OUT's "
        "series and diff the result against the effective mapping (the proposal with your "
        "decisions). Exits 1 on any difference.",
    )
    p.add_argument("out", help="output folder of analyze/group/map")
    p.add_argument("heuristic", nargs="?", help="heuristic file (default OUT/heuristic.py)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    res = invoke(args, "validate", {"out_dir": args.out, "heuristic": args.heuristic})
    print(res.diff)
    say_warnings(res.warnings)
    return 0 if res.ok else 1
