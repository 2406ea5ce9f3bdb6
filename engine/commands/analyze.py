"""``llm-heuristics analyze INPUT OUT``: DICOM headers (or heudiconv dicominfo) -> series table.

Writes ``OUT/aggregated_dicominfo.tsv`` (one row per series) and ``OUT/analyze_errors.tsv``
(every file or folder that could not be read, with the reason).  Re-runs read only new or
changed files (SQLite cache in OUT).  ``--slurm`` writes a job array instead; ``--submit``
also submits it, waits and merges.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from engine.atomic import write_tsv_atomic
from engine.errors import UserError
from engine.workspace import ANALYZE_ERRORS_TSV, SERIES_TSV, write_analyze_input, write_series


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
        "--trust-folder-times",
        action="store_true",
        help="re-scan: when no folder of the last scan changed (no file added, removed or "
        "renamed), reuse its result without a stat per file; misses files rewritten in place",
    )
    p.set_defaults(func=run)


def _check_patterns(args: argparse.Namespace) -> None:
    for name in ("subject_pattern", "session_pattern"):
        pat = getattr(args, name)
        if pat:
            try:
                re.compile(pat)
            except re.error as exc:
                raise UserError(f"--{name.replace('_', '-')}: invalid regex: {exc}") from None


def run(args: argparse.Namespace) -> int:
    from engine.scan.heudiconv_import import find_dicominfo, import_dicominfo, is_heudiconv_input

    src = Path(args.input)
    out = Path(args.out)
    if not src.exists():
        raise UserError(f"{src} does not exist")
    if args.n_cpus is not None and args.n_cpus < 1:
        raise UserError("--n-cpus must be at least 1")
    if args.submit and not args.slurm:
        raise UserError("--submit needs --slurm")
    _check_patterns(args)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)

    if is_heudiconv_input(src):
        series = import_dicominfo(src)
        if not series:
            raise UserError(f"no dicominfo*.tsv rows found under {src}")
        write_series(out, series)
        write_tsv_atomic(out / ANALYZE_ERRORS_TSV, ("path", "reason"), [])
        print(
            f"analyze: imported {len(series)} series from heudiconv dicominfo under {src} -> {out / SERIES_TSV}",
            file=sys.stderr,
        )
        return 0

    if args.slurm:
        return _slurm(args, src, out)

    from engine.scan.pipeline import scan

    res = scan(
        src,
        out,
        n_cpus=args.n_cpus,
        subject_pattern=args.subject_pattern,
        session_pattern=args.session_pattern,
        progress=not args.no_progress,
        trust_folder_times=args.trust_folder_times,
    )
    if not res.series:
        tsvs = find_dicominfo(src) if src.is_dir() else []
        if tsvs:
            series = import_dicominfo(src)
            write_series(out, series)
            write_tsv_atomic(
                out / ANALYZE_ERRORS_TSV,
                ("path", "reason"),
                ({"path": p, "reason": r} for p, r in res.errors),
            )
            print(
                f"analyze: no DICOM; imported {len(series)} series from {len(tsvs)} dicominfo file(s)",
                file=sys.stderr,
            )
            return 0
        write_tsv_atomic(
            out / ANALYZE_ERRORS_TSV,
            ("path", "reason"),
            ({"path": p, "reason": r} for p, r in res.errors),
        )
        raise UserError(
            f"no DICOM image files found in {src} ({res.n_files} files looked at, "
            f"{len(res.errors)} problems listed in {out / ANALYZE_ERRORS_TSV})"
        )
    write_series(out, res.series)
    write_analyze_input(out, [src])
    write_tsv_atomic(
        out / ANALYZE_ERRORS_TSV,
        ("path", "reason"),
        ({"path": p, "reason": r} for p, r in res.errors),
    )
    subjects = len({s.subject for s in res.series})
    print(
        f"analyze: {res.n_files} files, {res.n_dicom} DICOM, {len(res.series)} series, "
        f"{subjects} subject(s); {len(res.errors)} problem(s) listed in {ANALYZE_ERRORS_TSV}; "
        f"read {res.n_read} header(s) in {res.seconds:.3f} s"
        f"{' (no folder changed since the last scan)' if res.reused == 'folders' else ''}"
        f" -> {out / SERIES_TSV}",
        file=sys.stderr,
    )
    return 0


def _slurm(args: argparse.Namespace, src: Path, out: Path) -> int:
    from engine.scan import slurm

    extra = []
    if args.subject_pattern:
        extra += ["--subject-pattern", args.subject_pattern]
    if args.session_pattern:
        extra += ["--session-pattern", args.session_pattern]
    script = slurm.write_job(
        os.fspath(src), os.fspath(out), files_per_task=args.files_per_task, extra_args=extra
    )
    if not args.submit:
        print(
            f"analyze: wrote {script}; submit with `sbatch {script}`, then run "
            f"`{sys.executable} -m engine.scan.slurm merge {out} {src}`",
            file=sys.stderr,
        )
        return 0
    job = slurm.submit_and_wait(script)
    slurm.check_parts(os.fspath(out))
    n = slurm.merge_parts(os.fspath(out))
    print(f"analyze: Slurm job {job} finished, merged {n} part(s)", file=sys.stderr)
    ns = argparse.Namespace(**{**vars(args), "slurm": False, "submit": False})
    return run(ns)
