"""``llm-heuristics demo [DIR] [--no-tui]``: synthetic study through every pipeline step.

The demo is the product's smoke test for a person: it makes a study, then runs
analyze -> group -> map -> generate -> validate -> convert, and opens the TUI when a
terminal is present. Each step is the same subcommand a user would type.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from engine.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="make a synthetic study and run the whole pipeline on it",
        description="Make a synthetic study, then run analyze -> group -> map -> generate -> "
        "validate -> convert on it (each step is the subcommand a user would type) and open the "
        "review TUI when a terminal is present.",
    )
    p.add_argument("dir", nargs="?", type=Path, help="work folder (default: a fresh temp folder)")
    p.add_argument("--no-tui", action="store_true", help="do not open the TUI at the end")
    p.add_argument(
        "--subjects", type=int, default=2, metavar="N", help="subjects to make (default 2)"
    )
    p.add_argument(
        "--sessions",
        type=int,
        default=1,
        metavar="N",
        help="sessions per subject (default 1: no session level)",
    )
    p.add_argument(
        "--vendor",
        default="siemens",
        choices=["siemens", "ge", "philips", "mixed"],
        help="scanner style of the headers; mixed alternates vendors over subjects "
        "(default siemens)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="S",
        help="random seed: the same seed makes the same study (default 0)",
    )
    p.set_defaults(func=run)


def pipeline_steps(
    study: Path, out: Path, subjects: list[str], sessions: list[str]
) -> list[list[str]]:
    """The CLI invocations of the pipeline, in order; convert once per subject/session.

    ``convert`` finds the DICOM where ``analyze`` recorded it, as it does for a user; only the
    last one runs bids-validator, over the whole dataset by then.
    """
    dicom = str(study / "dicom")
    steps = [
        ["analyze", dicom, str(out), "--no-progress"],
        ["group", str(out)],
        ["map", str(out)],
        ["generate", str(out), "-o", str(out / "heuristic.py")],
        ["validate", str(out), str(out / "heuristic.py")],
    ]
    cells = [(subject, session) for subject in subjects for session in sessions or [""]]
    for i, (subject, session) in enumerate(cells):
        cmd = ["convert", str(out), "--subject", subject]
        if session:
            cmd += ["--session", session]
        if i < len(cells) - 1:
            cmd.append("--no-validator")
        steps.append(cmd)
    return steps


def _with_conversions(steps: list[list[str]], out: Path):  # noqa: ANN202 - a generator of argv
    """The steps, then one convert per subject/session as ``analyze`` labelled them (neutral
    labels: the analyzed table says which, not the synthetic study's patient ids)."""
    yield from steps
    from engine.workspace import read_series

    cells = sorted({(s.subject, s.session) for s in read_series(out)})
    for i, (subject, session) in enumerate(cells):
        cmd = ["convert", str(out), "--subject", subject]
        if session:
            cmd += ["--session", session]
        if i < len(cells) - 1:
            cmd.append("--no-validator")
        yield cmd


def summary(work: Path, out: Path, seconds: float) -> str:
    """What the demo made and where it is: a person's first look at the result."""
    from engine.atomic import read_tsv
    from engine.workspace import GROUPS_TSV, SERIES_TSV

    def rows(name: str) -> int:
        p = out / name
        return len(read_tsv(p)) if p.exists() else 0

    bids = out / "bids"
    n_nii = len(list(bids.glob("sub-*/**/*.nii*"))) if bids.is_dir() else 0
    report = out / "conversion_report.txt"
    verdict = "not run"
    if report.exists():
        lines = [x for x in report.read_text().splitlines() if x.startswith("bids-validator")]
        verdict = lines[-1] if lines else "not run"
    return "\n".join(
        [
            f"demo: done in {seconds:.1f} s",
            f"  series:     {rows(SERIES_TSV)} ({out / SERIES_TSV})",
            f"  groups:     {rows(GROUPS_TSV)} ({out / 'grouping_report.txt'})",
            f"  heuristic:  {out / 'heuristic.py'}",
            f"  converted:  {n_nii} NIfTI file(s) in {bids}",
            f"  validator:  {verdict}",
            f"  report:     {report}",
            f"  study:      {work / 'study'} (expected_bids.json: where a curator puts each)",
        ]
    )


def run(args: argparse.Namespace) -> int:
    from engine.cli import build_parser, main
    from engine.synth import generate_study

    work = args.dir or Path(tempfile.mkdtemp(prefix="llm-heuristics-demo-"))
    work = work.resolve()
    if work.exists() and any(work.iterdir()):
        raise UserError(f"{work} is not empty; pick a new folder (the demo never overwrites data)")
    print(f"demo: working in {work}", file=sys.stderr)
    study_dir = work / "study"
    out = work / "out"
    t0 = time.perf_counter()
    manifest = generate_study(
        study_dir,
        subjects=args.subjects,
        sessions=args.sessions,
        vendor=args.vendor,
        seed=args.seed,
    )
    print(f"demo: wrote {manifest.n_files} DICOM files to {study_dir / 'dicom'}", file=sys.stderr)
    available = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    steps = pipeline_steps(study_dir, out, [], [])
    for cmd in _with_conversions(steps, out):
        if cmd[0] not in available:
            print(
                f"demo: step '{cmd[0]}' is not available in this version; stopping here",
                file=sys.stderr,
            )
            break
        print(f"demo: $ llm-heuristics {' '.join(cmd)}", file=sys.stderr)
        rc = main(cmd)
        if rc != 0:
            print(f"demo: step '{cmd[0]}' failed with status {rc}", file=sys.stderr)
            return rc
    print(summary(work, out, time.perf_counter() - t0))
    if not args.no_tui and "tui" in available and sys.stdin.isatty() and sys.stdout.isatty():
        return main(["tui", str(out)])
    return 0
