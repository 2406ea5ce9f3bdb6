"""``llm-heuristics analyze INPUT OUT``: DICOM headers (or heudiconv dicominfo) -> series table.

Writes ``OUT/aggregated_dicominfo.tsv`` (one row per series) and ``OUT/analyze_errors.tsv``
(every file or folder that could not be read, with the reason).  Re-runs read only new or
changed files (SQLite cache in OUT).  ``--slurm`` writes a job array instead; ``--submit``
also submits it, waits and merges.
"""

from __future__ import annotations

import argparse
import sys

from engine.api.types import AnalyzeParams
from engine.commands._api import invoke, say_warnings


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "analyze",
        help="scan DICOM headers into aggregated_dicominfo.tsv",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "input", help="DICOM folder/file, or heudiconv dicominfo*.tsv / .heudiconv folder"
    )
    p.add_argument("out", help="output folder")
    p.add_argument(
        "--n-cpus", type=int, default=None, help="worker processes (default: all available)"
    )
    p.add_argument(
        "--subject-pattern",
        help="regex on the file path giving the subject (named group 'subject' or first group)",
    )
    p.add_argument(
        "--subject-labels",
        choices=("neutral", "patientid"),
        default="neutral",
        help="subject labels: neutral 01, 02, ... in order of the first study (default; "
        "PatientID -> label kept only in OUT/private/subject_map.tsv) or the PatientID made "
        "alphanumeric (it then appears in every BIDS name and report)",
    )
    p.add_argument(
        "--session-pattern",
        help="regex on the file path giving the session (named group 'session' or first group)",
    )
    p.add_argument(
        "--slurm",
        action="store_true",
        help="write a Slurm job-array script instead of scanning here",
    )
    p.add_argument("--submit", action="store_true", help="with --slurm: sbatch it, wait, and merge")
    p.add_argument(
        "--files-per-task", type=int, default=2000, help="with --slurm: files per array task"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--follow-external-links",
        action="store_true",
        help="follow symbolic links that lead out of INPUT (default: list them in "
        "analyze_errors.tsv and do not follow them)",
    )
    p.add_argument(
        "--trust-folder-times",
        action="store_true",
        help="re-scan: when no folder of the last scan changed (no file added, removed or "
        "renamed), reuse its result without a stat per file; misses files rewritten in place",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    res = invoke(
        args,
        "analyze",
        AnalyzeParams(
            input=args.input,
            out_dir=args.out,
            n_cpus=args.n_cpus,
            subject_pattern=args.subject_pattern,
            subject_labels=args.subject_labels,
            session_pattern=args.session_pattern,
            slurm=args.slurm,
            submit=args.submit,
            files_per_task=args.files_per_task,
            progress=not args.no_progress,
            trust_folder_times=args.trust_folder_times,
            follow_external_links=args.follow_external_links,
        ),
    )
    print(res.message, file=sys.stderr)
    say_warnings(res.warnings)
    return 0
