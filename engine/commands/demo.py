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
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dir", nargs="?", type=Path, help="work folder (default: a fresh temp folder)")
    p.add_argument("--no-tui", action="store_true", help="do not open the TUI at the end")
    p.add_argument("--subjects", type=int, default=2)
    p.add_argument("--sessions", type=int, default=1)
    p.add_argument("--vendor", default="siemens", choices=["siemens", "ge", "philips", "mixed"])
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def pipeline_steps(study: Path, out: Path, subjects: list[str], sessions: list[str]) -> list[list[str]]:
    """The CLI invocations of the pipeline, in order; convert once per subject/session."""
    steps = [
        ["analyze", str(study / "dicom"), str(out)],
        ["group", str(out)],
        ["map", str(out)],
        ["generate", str(out), "-o", str(out / "heuristic.py")],
        ["validate", str(out), str(out / "heuristic.py")],
    ]
    for subject in subjects:
        for session in sessions or [""]:
            cmd = ["convert", str(out), "--subject", subject]
            if session:
                cmd += ["--session", session]
            steps.append(cmd)
    return steps


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
        study_dir, subjects=args.subjects, sessions=args.sessions, vendor=args.vendor, seed=args.seed
    )
    print(f"demo: wrote {manifest.n_files} DICOM files to {study_dir / 'dicom'}", file=sys.stderr)
    subjects = sorted({s.subject for s in manifest.series})
    sessions = sorted({s.session for s in manifest.series if s.session})

    available = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    for cmd in pipeline_steps(study_dir, out, subjects, sessions):
        if cmd[0] not in available:
            print(f"demo: step '{cmd[0]}' is not available in this version; stopping here", file=sys.stderr)
            break
        print(f"demo: $ llm-heuristics {' '.join(cmd)}", file=sys.stderr)
        rc = main(cmd)
        if rc != 0:
            print(f"demo: step '{cmd[0]}' failed with status {rc}", file=sys.stderr)
            return rc
    print(f"demo: done in {time.perf_counter() - t0:.1f} s; results in {out}", file=sys.stderr)
    if not args.no_tui and "tui" in available and sys.stdin.isatty() and sys.stdout.isatty():
        return main(["tui", str(out)])
    return 0
