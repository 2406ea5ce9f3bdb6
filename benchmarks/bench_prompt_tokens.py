"""Prompt tokens per group on a synthetic study (target: <= 2,000 per group and phase).

    python benchmarks/bench_prompt_tokens.py [--subjects N] [--vendor siemens|ge|philips|mixed]

Tokens are estimated at 3.2 characters per token (Llama-3 BPE averages ~4 on this kind of
text, so the estimate is on the high side); the worst phase of a group is the JSON phase, which
adds the rationale (at most ``rationale_tokens``) and the JSON instruction to the first phase.
The anchor printed is the target itself, measured against the largest group of this run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

TARGET = 2000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=2)
    ap.add_argument("--vendor", default="mixed")
    ap.add_argument("--context", default="Healthy adults; n-back fMRI; multi-shell DWI.")
    args = ap.parse_args()

    from engine.cli import main as cli
    from engine.config import Settings
    from engine.llm.privacy import phi_values
    from engine.llm.prompt import build_messages, estimate_tokens, json_phase_messages, prompt_text
    from engine.mapping import map_groups
    from engine.synth import generate_study
    from engine.workspace import read_series

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate_study(
            root / "study", subjects=args.subjects, sessions=1, vendor=args.vendor, seed=0
        )
        cli(["-q", "analyze", str(root / "study" / "dicom"), str(root / "out")])
        series = read_series(root / "out")
        res = map_groups(series)
    by_key = {s.key: s for s in series}
    rules = {m.group_id: m for m in res.mappings}
    phi = phi_values(series)
    budget = Settings().rationale_tokens
    t0 = time.perf_counter()
    worst = 0
    print(f"{'group':<40} {'phase1':>7} {'phase2':>7}")
    for g in res.groups:
        members = [by_key[k] for k in g.series_keys if k in by_key]
        p1 = build_messages(g, members, rules.get(g.group_id), context=args.context, phi=phi)
        n1 = estimate_tokens(prompt_text(p1))
        p2 = json_phase_messages(p1, "x" * int(budget * 3.2), g.group_id)
        n2 = estimate_tokens(prompt_text(p2))
        worst = max(worst, n2)
        print(f"{g.group_id[:40]:<40} {n1:>7} {n2:>7}")
    dt = time.perf_counter() - t0
    print(
        f"\n{len(res.groups)} groups; worst prompt {worst} tokens = {worst / TARGET:.2f} x target "
        f"{TARGET}; built in {dt * 1000:.0f} ms"
    )
    return 0 if worst <= TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
