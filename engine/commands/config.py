"""``llm-heuristics config show|path``: the effective settings and where each one came from.

Precedence: command-line flags > environment (``LLMH_*``, ``LLM_MODEL_NAME``,
``LLM_USE_QUANTIZATION``, ``LOG_LEVEL``, ...) > the TOML config file > defaults.
"""

from __future__ import annotations

import argparse
import json

from engine.config import add_llm_arguments, config_path, env_names, settings_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "config",
        help="show effective settings and where each came from",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    csub = p.add_subparsers(dest="config_command", metavar="{show,path}")
    show = csub.add_parser("show", help="print effective settings with their source")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    add_llm_arguments(show)
    show.set_defaults(func=run_show)
    path = csub.add_parser("path", help="print the config file path")
    path.set_defaults(func=run_path)
    p.set_defaults(func=run_show, json=False)


def run_show(args: argparse.Namespace) -> int:
    s = settings_from_args(args)
    if getattr(args, "json", False):
        doc = {
            "config_file": str(config_path()),
            "settings": {n: {"value": v, "source": s.sources[n]} for n, v in s.as_dict().items()},
        }
        print(json.dumps(doc, indent=2))
        return 0
    cfg = config_path()
    print(f"config file: {cfg}{'' if cfg.exists() else ' (not present)'}")
    width = max(len(n) for n in s.as_dict())
    for name, value in s.as_dict().items():
        shown = json.dumps(value) if not isinstance(value, str) else (value or '""')
        print(f"{name:<{width}}  {shown}  [{s.sources[name]}]")
    print(
        "\n`map` uses the backend above when a model is set (--model, LLM_MODEL_NAME, config); "
        "with no model it maps with the rules alone."
    )
    print(
        "environment names: "
        + "; ".join(
            f"{n}: {', '.join(env_names(n))}" for n in ("model", "quantization", "log_level")
        )
        + "; others: LLMH_<NAME>"
    )
    return 0


def run_path(args: argparse.Namespace) -> int:
    print(config_path())
    return 0
