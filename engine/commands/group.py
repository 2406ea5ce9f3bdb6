"""``group OUT``: put series of the same acquisition protocol together, flag the odd ones."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.errors import UserError
from engine.grouping import group_series, write_grouping
from engine.workspace import GROUPING_REPORT, read_series


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
    out = Path(args.out)
    try:
        series = read_series(out)
    except FileNotFoundError as exc:
        raise UserError(str(exc)) from exc
    res = group_series(series)
    write_grouping(out, res)
    print(f"{len(series)} series -> {len(res.groups)} groups; see {out / GROUPING_REPORT}")
    return 0
