"""``group OUT``: put series of the same acquisition protocol together, flag the odd ones."""

from __future__ import annotations

import argparse

from engine.commands._api import invoke, say_warnings


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "group",
        help="group series by acquisition protocol (reads aggregated_dicominfo.tsv)",
        description="Group the series of OUT/aggregated_dicominfo.tsv by acquisition protocol; "
        "writes aggregated_dicominfo_groups.tsv and grouping_report.txt.",
    )
    p.add_argument("out", help="output folder of `analyze`")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    res = invoke(args, "group", {"out_dir": args.out})
    print(res.message)
    say_warnings(res.warnings)
    return 0
