"""``llm-heuristics demo-data DIR``: write a synthetic multi-vendor MR study to try the tool on.

DIR/dicom holds the DICOM files, DIR/expected_bids.json the BIDS names a careful curator
would choose (see :mod:`engine.synth`).
"""

from __future__ import annotations

import argparse
import logging
import time

from engine.errors import UserError

log = logging.getLogger("llm_heuristics.demo_data")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo-data",
        help="write a synthetic DICOM study (Siemens/GE/Philips styles) with expected BIDS names",
        description=__doc__,
    )
    p.add_argument("dir", metavar="DIR", help="output folder (DICOM goes to DIR/dicom)")
    p.add_argument("--subjects", type=int, default=2, metavar="N", help="subjects (default 2)")
    p.add_argument(
        "--sessions", type=int, default=1, metavar="M", help="sessions per subject (default 1)"
    )
    p.add_argument(
        "--layout", choices=("nested", "flat", "dicomdir"), default="nested", help="file layout"
    )
    p.add_argument("--gzip", action="store_true", help="gzip each file (.dcm.gz)")
    p.add_argument(
        "--vendor",
        choices=("siemens", "ge", "philips", "mixed"),
        default="siemens",
        help="scanner style; mixed alternates vendors over subjects",
    )
    p.add_argument("--reproin", action="store_true", help="ReproIn protocol names")
    p.add_argument(
        "--conventions",
        action="store_true",
        help="add vendor-convention series: XA _Pha phase, ND/NORM duplicates, a planning scan, "
        "a Philips B0 map, separate multiband runs, an aborted run with its SBRef",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for UIDs and noise (default 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.synth import generate_study

    t0 = time.perf_counter()
    try:
        m = generate_study(
            args.dir,
            subjects=args.subjects,
            sessions=args.sessions,
            layout=args.layout,
            gzip=args.gzip,
            vendor=args.vendor,
            reproin=args.reproin,
            seed=args.seed,
            conventions=args.conventions,
        )
    except (ValueError, FileExistsError) as exc:
        raise UserError(str(exc)) from exc
    n_skip = sum(1 for s in m.series if s.skip)
    print(
        f"wrote {m.n_files} files in {len(m.series)} series ({n_skip} to skip) to {m.root} "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    print(f"expected BIDS names: {m.expected_path}")
    return 0
