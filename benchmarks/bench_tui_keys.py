"""Key-to-paint latency of the review workstation on a big workspace, under load.

The app runs headless (Textual's ``run_test``) with its in-process engine on a workspace of
``--series`` series (default 10,000) whose protocols come in ``--variants`` spellings per
acquisition (sites/vendors: many groups with the same proposal), while

* one busy process per CPU core runs beside it (a loaded machine), and
* a model streams tokens into the rationale pane through the engine's notification path
  (``delta`` events, as ``remap`` sends them), ``--tokens`` per second.

~100 representative keys are sent one at a time (cursor moves, filter typing, accept, skip,
unskip, marks and a bulk accept, undo, sort, Tab and f2 focus switches, f11): the latency of a
key is the time from sending it to the next screen paint (the compositor's update; or to the
moment its messages are handled when it changes nothing on screen). The anchor is the same
script on a ``--anchor-series`` workspace (default 100) in the same run, under the same load.

    python benchmarks/bench_tui_keys.py [--series 10000] [--variants 10] [--no-load]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("LLMH_TUI_IMAGE", "halfcell")

KEYS: tuple[str, ...] = (
    *["down"] * 12,
    *["up"] * 4,
    "pagedown",
    "pageup",
    *["a"] * 6,  # accept and move on
    "s",
    "u",  # skip, unskip
    "ctrl+z",
    "ctrl+y",
    *["down"] * 6,
    "slash",
    *"t1w",  # filter typing
    *["backspace"] * 3,
    *"bold",
    "escape",  # clear the filter, back to the table
    *["m", "down"] * 3,
    "equals_sign",  # mark the same proposal
    "A",  # accept the marked groups (one journal entry)
    "ctrl+z",
    "o",
    "o",  # sort
    *["down"] * 8,
    "tab",
    "tab",
    "tab",
    "tab",  # rationale, tabs, editor, tree
    "down",
    "down",
    "up",
    "tab",
    "tab",  # filter, table
    "f2",
    "f2",
    "shift+tab",
    "shift+tab",
    "shift+tab",  # back to the table
    "f11",
    *["down"] * 4,
    "f11",
    *["up"] * 6,
    "s",
    "u",
    "a",
    *["down"] * 6,
    "home",
    "end",
    "f11",
    "f11",
)


def build(out: Path, series: int, variants: int) -> int:
    """A workspace of ``series`` hand-made series whose protocol names come in ``variants``
    spellings (by subject), grouped and mapped by the engine's steps."""
    from engine.api import steps
    from engine.api.types import MapParams
    from engine.workspace import Workspace
    from tui.demo_workspace import PROTOCOLS, make_series

    subjects = max(1, series // (2 * len(PROTOCOLS)))
    rows = make_series(subjects, sessions=2)
    for s in rows:
        v = int(s.subject[1:]) % max(1, variants)
        if v:
            s.protocol_name = s.series_description = f"{s.protocol_name}_v{v}"
    Workspace(out).write_series(rows)
    steps.group(str(out))
    steps.map_(MapParams(out_dir=str(out)))
    return len(rows)


def stream_tokens(app, stop: threading.Event, rate: float) -> None:  # noqa: ANN001
    """A model's tokens arriving as the engine sends them (``delta`` notifications)."""
    words = "the series is a T1 weighted MPRAGE with an inversion time of 900 ms".split()
    i = 0
    while not stop.wait(1.0 / rate):
        gid = app.main_screen.groups.selected() or ""
        app._on_engine_event("delta", {"text": words[i % len(words)] + " ", "group_id": gid})
        i += 1


async def drive(out: Path, rate: float, size: tuple[int, int]) -> list[float]:
    """Per key, seconds from sending it to the next paint."""
    from textual import events

    from tui.app import LlmhApp

    app = LlmhApp(out, "inprocess", keymap={})
    painted = asyncio.Event()
    original = app._display

    def display(screen, renderable) -> None:  # noqa: ANN001
        if renderable is not None:
            painted.set()
        original(screen, renderable)

    app._display = display  # type: ignore[method-assign]
    lat: list[float] = []
    async with app.run_test(size=size) as pilot:
        t0 = time.perf_counter()
        while app.ready_at is None:
            await pilot.pause(0.05)
            if time.perf_counter() - t0 > 300:
                raise TimeoutError("workspace never loaded")
        await pilot.pause(0.5)
        stop = threading.Event()
        th = threading.Thread(target=stream_tokens, args=(app, stop, rate), daemon=True)
        th.start()
        try:
            for key in KEYS:
                await asyncio.sleep(0.05)  # a fast typist: 20 keys a second at most
                char = key if len(key) == 1 else None
                screen = app.screen
                painted.clear()
                t = time.perf_counter()
                app._driver.send_message(events.Key(key, char))  # type: ignore[union-attr]
                await pilot._wait_for_screen()
                s = app.screen
                pending = (
                    s is not screen
                    or s._layout_required
                    or s._repaint_required
                    or s._scroll_required
                    or bool(s._dirty_widgets)
                )
                if pending and not painted.is_set():
                    try:
                        await asyncio.wait_for(painted.wait(), 30)
                    except TimeoutError:
                        pass
                lat.append(time.perf_counter() - t)
            await app.workers.wait_for_complete()  # let the last decisions land, then leave
            await pilot.pause(0.2)
        finally:
            stop.set()
            th.join()
    return lat


def pct(xs: list[float], p: float) -> float:
    ys = sorted(xs)
    return ys[min(len(ys) - 1, int(round(p / 100 * (len(ys) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=10000)
    ap.add_argument("--variants", type=int, default=10)
    ap.add_argument("--anchor-series", type=int, default=100)
    ap.add_argument("--tokens", type=float, default=30.0, help="streamed tokens per second")
    ap.add_argument("--no-load", action="store_true", help="no busy process per core")
    a = ap.parse_args()
    load: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        big, small = Path(tmp) / "big", Path(tmp) / "small"
        n_big = build(big, a.series, a.variants)
        n_small = build(small, a.anchor_series, a.variants)
        try:
            if not a.no_load:
                for _ in range(os.cpu_count() or 1):
                    load.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))
            anchor = asyncio.run(drive(small, a.tokens, (160, 50)))
            lat = asyncio.run(drive(big, a.tokens, (160, 50)))
        finally:
            for p in load:
                p.kill()
                p.wait()
    a50, a95 = pct(anchor, 50), pct(anchor, 95)
    b50, b95, worst = pct(lat, 50), pct(lat, 95), max(lat)
    slow = sorted(zip(lat, KEYS, strict=True), reverse=True)[:5]
    print(
        f"keys: {len(KEYS)}; load: {0 if a.no_load else os.cpu_count()} busy processes; "
        f"streaming {a.tokens:g} tokens/s"
    )
    print(f"anchor ({n_small} series): p50 {a50 * 1000:.1f} ms  p95 {a95 * 1000:.1f} ms")
    print(
        f"big    ({n_big} series): p50 {b50 * 1000:.1f} ms  p95 {b95 * 1000:.1f} ms  "
        f"max {worst * 1000:.1f} ms (goal < 100 ms)"
    )
    print(f"ratio big/anchor: p50 {b50 / a50:.2f}x  p95 {b95 / a95:.2f}x")
    print("slowest keys: " + ", ".join(f"{k} {t * 1000:.0f} ms" for t, k in slow))
    return 0


if __name__ == "__main__":
    sys.exit(main())
