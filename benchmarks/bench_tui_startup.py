"""TUI startup on a 10k-series workspace: time to interactive (target < 1 s).

Builds a hand-made OUT folder (``tests.workspace_helpers.build_workspace``) with ~10 000 series, starts the app
headless with an in-process engine and measures

* ``interactive``: construction -> first screen mounted and answering keys,
* ``loaded``: construction -> tree and groups table filled from the engine,

and, as the anchor measured in the same run, reading the series table directly
(``engine.workspace.read_series``) so the ratio says how much the UI adds.

    python benchmarks/bench_tui_startup.py [--series 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("LLMH_TUI_IMAGE", "halfcell")


async def _once(out: Path) -> tuple[float, float]:
    from tui.app import LlmhApp

    t0 = time.perf_counter()
    app = LlmhApp(out, "inprocess", keymap={})
    interactive = loaded = 0.0
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("down")  # answered: the app is interactive
        interactive = time.perf_counter() - t0
        while app.ready_at is None:
            await pilot.pause(0.01)
            if time.perf_counter() - t0 > 60:
                raise TimeoutError("workspace never loaded")
        loaded = time.perf_counter() - t0
    return interactive, loaded


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    from engine.workspace import read_series
    from tests.workspace_helpers import build_workspace
    from tui.demo_workspace import PROTOCOLS

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        subjects = max(1, a.series // (2 * len(PROTOCOLS)))
        build_workspace(out, subjects=subjects, sessions=2)
        t = time.perf_counter()
        n = len(read_series(out))
        anchor = time.perf_counter() - t
        runs = [asyncio.run(_once(out)) for _ in range(a.repeat)]
    inter = statistics.median(r[0] for r in runs)
    loaded = statistics.median(r[1] for r in runs)
    print(f"series: {n}")
    print(f"anchor read_series: {anchor:.3f} s")
    print(f"interactive: {inter:.3f} s (target < 1 s) ratio {inter / anchor:.2f}x anchor")
    print(f"loaded: {loaded:.3f} s ratio {loaded / anchor:.2f}x anchor")
    return 0 if inter < 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
