"""The ``llm-heuristics`` command line.

Each subcommand lives in its own module under :mod:`engine.commands` and exposes
``register(subparsers)``, which adds a parser whose ``func(args) -> int`` runs it.
Modules are discovered, so adding a command never edits this file.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import pkgutil
import sys
from collections.abc import Sequence

from engine import __version__
from engine import commands as _commands_pkg
from engine.errors import LlmhError, UserError

log = logging.getLogger("llm_heuristics")


def _configure_logging(verbosity: int) -> None:
    env_level = os.environ.get("LOG_LEVEL", "").upper()
    if verbosity > 0:
        level = logging.DEBUG
    elif verbosity < 0:
        level = logging.WARNING
    elif env_level in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        level = getattr(logging, env_level)
    else:
        level = logging.INFO
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True
    )


# Commands that front ends add (found by name: the engine never imports a front end).
PLUGIN_COMMANDS: dict[str, str] = {"tui": "tui.command"}


def command_modules() -> list[str]:
    """Names of the commands, in a stable order (engine commands and installed plugins)."""
    own = [
        m.name for m in pkgutil.iter_modules(_commands_pkg.__path__) if not m.name.startswith("_")
    ]
    plugins = [
        n for n, mod in PLUGIN_COMMANDS.items() if importlib.util.find_spec(mod.split(".")[0])
    ]
    return sorted(own + plugins)


def _module_of(name: str) -> str:
    return PLUGIN_COMMANDS.get(name, f"engine.commands.{name}")


def _invoked(argv: Sequence[str]) -> str | None:
    """The command module named by the first non-option word of ``argv``, if there is one."""
    word = next((a for a in argv if not a.startswith("-")), None)
    if word is None:
        return None
    name = word.replace("-", "_")
    return name if name in command_modules() else None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with ``argv`` naming a command, only that command's module is imported
    (each imports its step's code: a re-scan should not pay for the mapper's imports)."""
    parser = argparse.ArgumentParser(
        prog="llm-heuristics",
        description=(
            "Turn MRI DICOM files into a reviewed heudiconv heuristic and a valid BIDS dataset. "
            "Workflow: analyze -> group -> map -> generate -> validate -> convert."
        ),
    )
    parser.add_argument("--version", action="version", version=f"llm-heuristics {__version__}")
    parser.add_argument(
        "--engine",
        dest="engine_spec",
        metavar="SPEC",
        help="run the pipeline step on this engine: local, ssh:HOST, slurm:OPTS, "
        "apptainer:IMAGE (joined with +) or a profile name; also accepted after the step",
    )
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument(
        "-v", "--verbose", action="store_const", const=1, dest="verbosity", help="debug logging"
    )
    verbosity.add_argument(
        "-q",
        "--quiet",
        action="store_const",
        const=-1,
        dest="verbosity",
        help="warnings and errors only",
    )
    parser.set_defaults(verbosity=0, func=None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    only = _invoked(argv) if argv is not None else None
    for name in [only] if only else command_modules():
        module = importlib.import_module(_module_of(name))
        module.register(sub)
    from engine.commands._helptext import plain_parser

    plain_parser(parser)  # docstrings used as --help lose their RST and source paths
    return parser


# Steps that may run on another engine (``--engine SPEC``): same arguments, same files.
REMOTE_COMMANDS = frozenset(
    {"analyze", "group", "map", "generate", "validate", "convert", "decide", "classify", "train"}
)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    spec = None
    if "--engine" in argv or any(a.startswith("--engine=") for a in argv):
        from engine.rpc.client import strip_engine_option

        spec, rest = strip_engine_option(argv)
        if _invoked(rest) in REMOTE_COMMANDS:
            argv = rest
        else:  # a command with its own --engine (tui, engine ...) keeps it
            spec = None
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    _configure_logging(args.verbosity)
    if args.func is None:
        parser.print_help()
        return 0
    if spec is not None or not hasattr(args, "engine"):
        args.engine = spec  # where the API runs; a command's own --engine (tui) is kept
    try:
        return int(args.func(args) or 0)
    except LlmhError as exc:
        where = f" (engine {spec!r})" if spec else ""
        print(f"llm-heuristics {args.command}{where}: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, UserError) else 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
