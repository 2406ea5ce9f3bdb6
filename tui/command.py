"""``llm-heuristics tui [OUT] [--engine SPEC]``: the full-screen review workstation.

The CLI finds this module by name (:data:`engine.cli.PLUGIN_COMMANDS`): the engine never
imports the TUI. Textual is imported only inside :func:`run`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from engine.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "tui",
        help="review groups, names and the heuristic in a full-screen terminal UI",
        description="Keyboard-driven review of OUT (works over SSH). The engine does the work: "
        "in this process by default, or wherever --engine SPEC says (local, ssh:HOST, ...). "
        "Your decisions are saved as you make them in OUT/user_decisions.jsonl.",
    )
    p.add_argument("out", nargs="?", default=".", help="output folder (default: current folder)")
    p.add_argument("--engine", default="inprocess", metavar="SPEC", help="where the engine runs")
    p.add_argument("--backend", default=None, help="LLM backend for re-mapping (default: config)")
    p.add_argument("--model", default=None, help="LLM model for re-mapping (default: config)")
    p.add_argument("--dicom-dir", default=None, help="DICOM folder given to analyze (previews)")
    p.add_argument(
        "--train",
        default=None,
        metavar="PATH",
        help="open the training screen: [sft|dpo] CONFIG.toml starts/resumes that run, "
        "a run folder or its metrics.jsonl is followed live",
    )
    rr = p.add_argument_group("reading room (chest radiographs: draft, edit, save reports)")
    rr.add_argument(
        "--reading-room",
        nargs="+",
        default=None,
        metavar="IMAGE",
        help="open the reading room on these images or folders (PNG, JPEG, DICOM; OUT first)",
    )
    rr.add_argument("--ehr", default="", metavar="FILE", help="patient context JSON for drafts")
    rr.add_argument(
        "--reports",
        default=None,
        metavar="FILE",
        help="JSONL of saved reports (OUT/reading_room.jsonl)",
    )
    rr.add_argument(
        "--draft-mode", default="report", choices=["report", "cot", "impression", "impression_icd"]
    )
    rr.add_argument("--llm-host", default="", help="Ollama host for drafts")
    rr.add_argument("--base-url", default="", help="OpenAI-compatible base URL for drafts")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        from tui.app import LlmhApp
        from tui.components.preview import probe_graphics
    except ImportError as exc:  # pragma: no cover - textual is a dependency
        raise UserError(f"the TUI needs Textual: {exc}") from exc
    probe_graphics()  # the terminal's answer must arrive now, not as keys inside the app
    local = args.engine.split("+")[0].split(":")[0] in ("inprocess", "local")
    out = str(Path(args.out).expanduser().resolve()) if local else args.out
    if local and not os.path.isdir(out):
        raise UserError(f"{out} is not a folder")
    backend, model = args.backend, args.model
    if backend is None or model is None:
        try:
            from engine.config import load_settings

            s = load_settings()
            backend = backend or s.backend
            model = model or s.model
        except Exception:  # noqa: BLE001 - re-mapping then asks for a model
            pass
    import logging

    root = logging.getLogger()  # stderr would write over the screen; the engine's records
    for h in list(root.handlers):  # reach the Log pane as notifications instead
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
            root.removeHandler(h)
    root.addHandler(logging.NullHandler())
    if getattr(args, "reading_room", None):
        return _reading_room(args, out, local)
    app = LlmhApp(
        out,
        args.engine,
        backend=backend,
        model=model,
        dicom_dir=args.dicom_dir,
        train=getattr(args, "train", None),
    )
    app.run()
    return int(app.return_code or 0)


def _reading_room(args: argparse.Namespace, out: str, local: bool) -> int:
    from tui.components.reading_app import ReadingApp

    images = [str(Path(p).expanduser().resolve()) if local else p for p in args.reading_room]
    reports = args.reports or str(Path(out) / "reading_room.jsonl")
    ehr = args.ehr
    if local:
        reports = str(Path(reports).expanduser().resolve())
        ehr = str(Path(ehr).expanduser().resolve()) if ehr else ""
    roots = None
    if local:  # the engine serves what the person named, beside its default roots
        import tempfile

        named = [Path(p) if Path(p).is_dir() else Path(p).parent for p in images]
        named += [Path(reports).parent] + ([Path(ehr).parent] if ehr else [])
        roots = [str(Path.home()), os.getcwd(), tempfile.gettempdir(), *map(str, named)]
    app = ReadingApp(
        images,
        args.engine,
        roots=roots,
        ehr=ehr,
        output=reports,
        mode=args.draft_mode,
        backend=args.backend or "",
        model=args.model or "",
        host=args.llm_host,
        base_url=args.base_url,
    )
    app.run()
    return int(app.return_code or 0)
