"""``decide OUT GROUP --accept | --skip | --name NAME``, ``decide OUT --undo``: review by script.

Decisions are journalled in ``OUT/user_decisions.jsonl`` exactly as the TUI's are, win over the
rules and the LLM in every later step, and can be undone from either front end.
"""

from __future__ import annotations

import argparse
import sys

from engine.api.types import DecideParams
from engine.commands._api import invoke, say_warnings
from engine.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "decide",
        help="review a group from the command line (accept, skip, rename, undo, redo)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("out", help="output folder of analyze/group/map")
    p.add_argument("group", nargs="?", help="group id (see aggregated_dicominfo_groups.tsv)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--accept", action="store_true", help="accept the proposed name")
    what.add_argument("--skip", action="store_true", help="do not convert this group")
    what.add_argument("--unskip", action="store_true", help="take back a skip")
    what.add_argument(
        "--name", metavar="BIDS_NAME", help="name the group, e.g. func/task-rest_bold"
    )
    what.add_argument("--undo", action="store_true", help="take back the last decision")
    what.add_argument("--redo", action="store_true", help="re-apply the last undone decision")
    what.add_argument("--list", action="store_true", help="print the decisions in effect")
    p.add_argument("--reason", default="", help="why (kept with a skip, or as a note)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.undo or args.redo or args.list:
        if args.group:
            raise UserError("--undo/--redo/--list take no group")
        method = "undo" if args.undo else "redo" if args.redo else "decisions"
        view = invoke(args, method, {"out_dir": args.out})
        say_warnings(view.warnings)
        if args.list:
            for gid, d in view.decisions.items():
                print(f"{gid}\t{d.describe()}")
            return 0
        if view.changed is None:
            print(f"nothing to {method}", file=sys.stderr)
            return 1
        print(f"{method}: {view.changed.group_id}: {view.changed.describe()}")
        return 0
    if not args.group:
        raise UserError("name the group to decide about (see aggregated_dicominfo_groups.tsv)")
    action = "skip" if args.skip else "unskip" if args.unskip else "edit" if args.name else "accept"
    params = DecideParams(
        out_dir=args.out,
        group_id=args.group,
        action=action,
        name=args.name or "",
        skip_reason=args.reason if args.skip else "",
        note="" if args.skip else args.reason,
    )
    view = invoke(args, "decide", params)
    say_warnings(view.warnings)
    d = view.changed
    print(f"{args.group}: {d.describe() if d else action} (journalled in user_decisions.jsonl)")
    return 0
