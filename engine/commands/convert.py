"""``llm-heuristics convert OUT --subject ID``: heudiconv + dcm2niix + bids-validator."""

from __future__ import annotations

import argparse

from engine.api.types import ConvertParams
from engine.commands._api import invoke, say_warnings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="convert one subject to BIDS with the heuristic",
        description="Run heudiconv with dcm2niix on one subject (all sessions or --session), write "
        "the field maps' IntendedFor and B0FieldIdentifier/B0FieldSource from the mapping (the "
        "heuristic writes the same when heudiconv runs it directly), run bids-validator when "
        "installed, and write OUT/conversion_report.txt.",
    )
    p.add_argument("out", help="output folder of analyze/group/map/generate")
    p.add_argument("--subject", required=True, help="subject label (as in the series table)")
    p.add_argument("--session", default=None, help="session label (default: all sessions)")
    p.add_argument("--bids-dir", default=None, help="BIDS folder (default OUT/bids)")
    p.add_argument("--heuristic", default=None, help="heuristic file (default OUT/heuristic.py)")
    p.add_argument(
        "--dicom-dir",
        default=None,
        help="DICOM folder given to analyze (default: the inputs OUT/analyze_input.json records)",
    )
    p.add_argument(
        "--sidecar-metadata",
        default=None,
        metavar="FILE",
        help="study metadata DICOM lacks (ASL M0Type, BackgroundSuppression, aslcontext...), "
        "keyed by BIDS suffix or path glob (default OUT/sidecar_metadata.json). A file still "
        "missing a REQUIRED field is named in the report with the fix: ASL (perf/) files are "
        "left out of the dataset (moved to OUT/bids_incomplete/, convert exits 1), others are "
        "kept in the dataset",
    )
    p.add_argument(
        "--keep-identifiers",
        action="store_true",
        help="keep the identifying sidecar fields (InstitutionName, StationName, "
        "DeviceSerialNumber, operator and physician names...) and the operator column of "
        "*_scans.tsv that are removed by default",
    )
    p.add_argument("--dry-run", action="store_true", help="print what would be written")
    p.add_argument("--no-validator", action="store_true", help="do not run bids-validator")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    res = invoke(
        args,
        "convert",
        ConvertParams(
            out_dir=args.out,
            subject=args.subject,
            session=args.session,
            bids_dir=args.bids_dir,
            heuristic=args.heuristic,
            dicom_dir=args.dicom_dir,
            dry_run=args.dry_run,
            validator=not args.no_validator,
            sidecar_metadata=args.sidecar_metadata,
            keep_identifiers=args.keep_identifiers,
        ),
    )
    print(res.report, end="")
    say_warnings(res.warnings)
    return 0 if res.ok else 1
