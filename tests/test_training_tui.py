"""The training screen: the braille loss plot, a followed metrics file that grows (and is
rewritten by a resume), and a real tiny SFT run started from the screen, cancelled with x and
resumed with s.

The runs use the tiny random Llama of ``tests/test_train.py`` in the in-process engine.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("textual")

os.environ["LLMH_TUI_IMAGE"] = "halfcell"

from tests.test_train import OVERFIT, run_config, tiny_llama, write_config, write_jsonl  # noqa: E402,F401
from tui.app import LlmhApp  # noqa: E402
from tui.components.training_metrics import MetricsTail, RunMetrics  # noqa: E402
from tui.components.training_plot import (  # noqa: E402
    AXIS_W,
    BRAILLE,
    LossPlot,
    Series,
    plot,
    sparkline,
)
from tui.components.training_widgets import TRAINING_KEYS, StepsTable  # noqa: E402
from tui.screens.training import TrainingScreen  # noqa: E402

SIZE = (120, 40)
_DOTS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# ----------------------------------------------------------------------------- the plot
def dots(lines: list[Any]) -> set[tuple[int, int]]:
    """The ``(x, y)`` dots of a plot's drawing area (y 0 is the top), read back from braille."""
    out = set()
    for cy, line in enumerate(lines[:-1]):  # the last line is the x axis
        for cx, ch in enumerate(line.plain[AXIS_W:]):
            bits = ord(ch) - BRAILLE
            if not 0 < bits < 256:
                continue
            for dx in (0, 1):
                for dy in range(4):
                    if bits & _DOTS[dx][dy]:
                        out.add((cx * 2 + dx, cy * 4 + dy))
    return out


def top_per_column(d: set[tuple[int, int]]) -> list[int]:
    cols: dict[int, int] = {}
    for x, y in d:
        cols[x] = min(y, cols.get(x, y))
    return [cols[x] for x in sorted(cols)]


def test_falling_loss_draws_a_falling_connected_line() -> None:
    pts = [(float(i), 5.0 * math.exp(-i / 15)) for i in range(1, 61)]
    lines = plot([Series("loss", pts)], 50, 14)
    assert len(lines) == 14 and all(len(x.plain) <= 50 for x in lines)
    d = dots(lines)
    area_w, area_h = (50 - AXIS_W) * 2, 13 * 4
    xs = sorted({x for x, _ in d})
    assert xs == list(range(area_w))  # every dot column: a line, not scattered points
    tops = top_per_column(d)
    assert tops == sorted(tops)  # never rises
    assert tops[0] == 0 and tops[-1] == area_h - 1  # spans the axis: max top left, min bottom right
    hi, lo = f"{pts[0][1]:.3g}", f"{pts[-1][1]:.3g}"  # the y labels: max at the top, min below
    assert lines[0].plain[:AXIS_W] == hi.rjust(AXIS_W - 1) + "┤"
    assert lines[-2].plain[:AXIS_W] == lo.rjust(AXIS_W - 1) + "┤"
    assert lines[-1].plain.split("└")[1].startswith("1") and lines[-1].plain.endswith("60")
    rising = top_per_column(dots(plot([Series("x", [(p[0], -p[1]) for p in pts])], 50, 14)))
    assert rising == sorted(rising, reverse=True) and rising[0] > rising[-1]


def test_nan_breaks_the_line_and_empty_data_draws_an_empty_frame() -> None:
    pts = [(float(i), 1.0 + i) for i in range(11)]
    pts[5] = (5.0, math.nan)
    d = dots(plot([Series("loss", pts)], AXIS_W + 21, 12))  # 42 dot columns, 4.1 per step
    px = [round(i / 10 * 41) for i in range(11)]
    gap = range(px[4] + 1, px[6])
    assert d and not {x for x, _ in d} & set(gap)  # no segment drawn through the NaN
    assert {px[4], px[6]} <= {x for x, _ in d}

    for empty in ([], [Series("loss")], [Series("loss", [(1.0, math.nan), (2.0, math.inf)])]):
        lines = plot(empty, 40, 8)
        assert len(lines) == 8 and not dots(lines)
        assert "no data yet" in "".join(x.plain for x in lines)
    one = plot([Series("loss", [(3.0, 2.5)])], 40, 8)  # one point, a flat range: drawn
    assert len(dots(one)) == 1
    assert not dots(plot([Series("l", [(1.0, 0.0), (2.0, -1.0)])], 40, 8, log=True))
    logd = dots(plot([Series("l", [(1.0, 100.0), (2.0, 10.0), (3.0, 1.0)])], 40, 8, log=True))
    mid = [y for x, y in logd if x == round(0.5 * (2 * (40 - AXIS_W) - 1))]
    assert mid and abs(min(mid) - 13.5) <= 1  # 10 sits half way on a log axis


def test_learning_rate_sparkline() -> None:
    warm = sparkline([0.1 * i for i in range(1, 9)], 20)
    assert list(warm) == sorted(warm) and warm[0] == "▁" and warm[-1] == "█"
    assert sparkline([math.nan, 1e-4, 1e-4], 10) == "▄▄"
    assert sparkline([], 10) == "" and len(sparkline(list(range(100)), 12)) == 12


def test_metrics_tail_survives_half_lines_rewrites_and_bad_bytes(tmp_path: Path) -> None:
    f = tmp_path / "metrics.jsonl"
    tail = MetricsTail(tmp_path)  # a run folder means its metrics.jsonl
    assert tail.read() == (False, [])  # not written yet
    rec = {"type": "train", "step": 1, "loss": 2.0, "lr": 0.1}
    f.write_bytes(json.dumps(rec).encode() + b"\n" + b'{"type": "train", "st')
    assert tail.read() == (False, [rec])
    with f.open("ab") as fh:
        fh.write(
            b'ep": 2, "loss": NaN}\n\xff\xfe not json\n[1, 2]\n{"type": "train", "step": -1}\n'
        )
    reset, recs = tail.read()
    assert not reset and [r["step"] for r in recs] == [2] and math.isnan(recs[0]["loss"])
    assert tail.bad_lines == 3
    f.write_text(json.dumps({**rec, "loss": 9.0}) + "\n")  # a resume rewrote it
    reset, recs = tail.read()
    assert reset and recs[0]["loss"] == 9.0
    m = RunMetrics()
    m.extend([{"type": "train", "step": s, "loss": 1.0, "elapsed_s": s * 2.0} for s in (1, 2, 3)])
    m.max_steps = 13
    assert m.eta_seconds() == 20.0
    m.add({"type": "train", "step": 2, "loss": 1.0})  # an earlier step again: resumed there
    assert [r["step"] for r in m.train] == [1, 2]
    m.add({"type": "eval", "kind": "dpo", "step": 2, "margin": 0.25})
    assert m.kind == "dpo" and m.last("margin", evals=True) == 0.25
    scr = TrainingScreen(follow=str(tmp_path))
    scr.metrics = m
    assert "dpo idle · step 2/13 15%" in scr.status_text() and "margin 0.25" in scr.status_text()


# ----------------------------------------------------------------------------- following a file
async def _until(pilot: Any, cond: Any, what: str, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _lines(path: Path, recs: list[dict[str, Any]], partial: bytes = b"") -> None:
    with path.open("ab") as fh:
        fh.write(b"".join(json.dumps(r).encode() + b"\n" for r in recs) + partial)


def _train(step: int, loss: float, elapsed: float = 0.0) -> dict[str, Any]:
    lr = 0.01 * min(1.0, step / 4)
    return {"type": "train", "kind": "sft", "step": step, "max_steps": 20, "loss": loss,
            "lr": lr, "elapsed_s": elapsed or step * 0.5, "stage": "A"}  # fmt: skip


@pytest.mark.anyio
async def test_following_a_growing_metrics_file(tmp_path: Path) -> None:
    run = tmp_path / "run; [bold]x|y[" / "]z"  # markup ("[/]") and shell characters
    run.mkdir(parents=True)
    f = run / "metrics.jsonl"
    _lines(f, [{"type": "eval", "kind": "sft", "step": 0, "max_steps": 20, "eval_loss": 6.0}])
    _lines(f, [_train(s, 6.0 - s * 0.4) for s in (1, 2, 3)])
    (tmp_path / "out").mkdir()
    app = LlmhApp(tmp_path / "out", keymap={}, train=str(run))
    async with app.run_test(size=SIZE) as pilot:
        await _until(pilot, lambda: isinstance(app.screen, TrainingScreen), "the screen")
        scr: TrainingScreen = app.screen  # type: ignore[assignment]
        table, lossplot = scr.query_one(StepsTable), scr.query_one(LossPlot)
        await _until(pilot, lambda: table.row_count == 4, "the first records")
        from rich.text import Text

        assert str(run) in Text.from_markup(str(lossplot.border_title)).plain  # shown as written
        before = dots(lossplot.lines(80, 16)[1:-1])
        assert "step 3/20" in scr.status_text() and "following" in scr.status_text()
        assert len(scr.metrics.series()[0].points) == 3

        # the run goes on: a half-written line, then its end, an evaluation and a bad line
        _lines(f, [_train(s, 6.0 - s * 0.4) for s in (4, 5, 6, 7)], partial=b'{"type": "tr')
        _lines(f, [], partial=b'ain", "step": 8, "max_steps": 20, "loss": 2.5, "lr": 0.01, ')
        _lines(f, [], partial=b'"elapsed_s": 4.0}\n')
        _lines(f, [{"type": "eval", "kind": "sft", "step": 8, "max_steps": 20, "eval_loss": 3}])
        _lines(f, [], partial=b"\xff garbage\n")
        await _until(pilot, lambda: table.row_count == 10, "the new records")
        after = dots(lossplot.lines(80, 16)[1:-1])
        assert len(after) > len(before)
        steps = [r[0] for r in table.cell_texts()]
        assert steps == ["0", "1", "2", "3", "4", "5", "6", "7", "8", "8"]
        assert table.cell_texts()[-1][-1] == "loss=3"
        status = scr.status_text()
        assert "step 8/20 40%" in status and "loss 2.5" in status and "eval 3" in status
        assert "ETA 0:06" in status  # 12 steps left at 0.5 s a step
        assert [s.name for s in scr.metrics.series()] == ["train loss", "eval loss"]
        rendered = "\n".join(x.plain for x in lossplot.lines(80, 16))
        assert "eval loss" in rendered and "lr " in rendered and "▁" in rendered

        # a resume from step 2 rewrites the file: the view starts over from it
        f.write_text("".join(json.dumps(_train(s, 5.0)) + "\n" for s in (1, 2)))
        _lines(f, [_train(3, 1.5, elapsed=0.4)])
        await _until(pilot, lambda: table.row_count == 3, "the rewritten file")
        assert [r[2] for r in table.cell_texts()] == ["5", "5", "1.5"]

        await pilot.press("x")  # nothing started here to cancel: said, nothing breaks
        await pilot.press("escape")
        await _until(pilot, lambda: not isinstance(app.screen, TrainingScreen), "closing")


@pytest.mark.anyio
async def test_keys_have_ids_and_are_in_the_palette(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    app = LlmhApp(tmp_path / "out", keymap={}, train=str(tmp_path / "none"))
    async with app.run_test(size=SIZE) as pilot:
        await _until(pilot, lambda: isinstance(app.screen, TrainingScreen), "the screen")
        ids = {b.id for b in app.screen.BINDINGS}  # type: ignore[union-attr]
        assert {k.id for k in TRAINING_KEYS} <= ids
        from tui.components.training_widgets import TrainingCommands

        provider = TrainingCommands(app.screen)
        titles = [str(h.display) async for h in provider.discover()]
        assert "Training: cancel the run (s resumes it)" in titles
        await pilot.press("f1")
        assert app.help_shown()


@pytest.mark.anyio
async def test_palette_opens_the_screen_with_a_path_prompt(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    _lines(run / "metrics.jsonl", [_train(s, 3.0 / s) for s in (1, 2)])
    (tmp_path / "out").mkdir()
    app = LlmhApp(tmp_path / "out", keymap={})
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"Training: open")
        await _until(pilot, lambda: _palette_has(app, "Training: open"), "the palette entry")
        await pilot.press("enter")
        await _until(pilot, lambda: type(app.screen).__name__ == "PathPrompt", "the prompt")
        await pilot.press(*str(run), "enter")
        await _until(pilot, lambda: isinstance(app.screen, TrainingScreen), "the screen")
        scr: TrainingScreen = app.screen  # type: ignore[assignment]
        await _until(pilot, lambda: scr.query_one(StepsTable).row_count == 2, "the records")
        assert scr.state == "following" and scr.follow_path == str(run)


def _palette_has(app: LlmhApp, text: str) -> bool:
    from textual.command import CommandList

    try:
        options = app.screen.query_one(CommandList).options
    except Exception:  # noqa: BLE001 - not mounted yet
        return False
    return any(text in str(o.prompt) for o in options)


def test_paths_choose_run_or_follow_and_the_kind(tmp_path: Path) -> None:
    toml = tmp_path / "p.toml"
    toml.write_text('[dpo]\nbeta = 0.2\n[train]\noutput_dir = "r"\n')
    scr = TrainingScreen.for_path(str(toml))
    assert (scr.config, scr.kind, scr.output_dir) == (str(toml), "dpo", str(tmp_path / "r"))
    assert TrainingScreen.for_path(f"sft {toml}").kind == "sft"  # said explicitly
    assert TrainingScreen.for_path("sft").follow_path == "sft"  # a folder named sft
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"\xff[not toml")  # the engine reports it; the view guesses sft
    assert TrainingScreen.for_path(str(bad)).kind == "sft"
    f = TrainingScreen.for_path(str(tmp_path / "run x" / "metrics.jsonl"))
    assert not f.config and f.output_dir == str(tmp_path / "run x")


# ----------------------------------------------------------------------------- a real run
@pytest.mark.anyio
async def test_a_tiny_sft_run_from_the_screen_cancel_and_resume(
    tiny_llama: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", OVERFIT)
    c = run_config(tiny_llama, train, tmp_path / "run", max_steps=6, batch_size=2, save_every=3)
    cfg = write_config(tmp_path / "sft.toml", c)
    (tmp_path / "out").mkdir()
    app = LlmhApp(tmp_path / "out", keymap={}, train=str(cfg))
    async with app.run_test(size=SIZE) as pilot:
        await _until(pilot, lambda: isinstance(app.screen, TrainingScreen), "the screen")
        scr: TrainingScreen = app.screen  # type: ignore[assignment]
        table = scr.query_one(StepsTable)
        ended = ("done", "failed", "cancelled")
        await _until(pilot, lambda: scr.state in ended, "the run's end", timeout=300)
        assert scr.state == "done", scr.error
        res = scr.result
        assert res.steps == 6 and res.last_loss < res.first_loss
        rows = table.cell_texts()
        assert [r[0] for r in rows if r[2]] == ["1", "2", "3", "4", "5", "6"]
        assert rows[0][0] == "0" and rows[0][-1].startswith("loss=")  # eval before training
        status = scr.status_text()
        assert "sft done" in status and "step 6/6 100%" in status
        assert "checkpoint 6 " in status
        assert "loss" in str(scr.query_one("#train-note").render())
        assert len(dots(scr.query_one(LossPlot).lines(80, 16)[1:-1])) > 10

        # s again: resumed at its last step, nothing to train; the view shows the run's file
        await pilot.press("s")
        await _until(pilot, lambda: scr.state in ended, "the second run's end", timeout=300)
        assert scr.state == "done" and scr.result.resumed_from == 6, scr.error
        assert [r[0] for r in table.cell_texts() if r[2]] == ["1", "2", "3", "4", "5", "6"]
        assert "step 6/6 100%" in scr.status_text() and "resumed from 6" in scr.status_text()

        # a longer run of the same config: x cancels it, s resumes from its last checkpoint
        c["train"].update(max_steps=400, save_every=2)
        write_config(cfg, c)
        (tmp_path / "run" / "checkpoints").rename(tmp_path / "old-checkpoints")
        await pilot.press("s")
        await _until(pilot, lambda: scr.metrics.step >= 3, "the first steps", timeout=120)
        assert scr.state == "running"  # the steps arrive while the engine trains
        await pilot.press("x")
        await _until(pilot, lambda: scr.state == "cancelled", "the cancel", timeout=120)
        stopped = scr.metrics.step
        assert 3 <= stopped < 400 and "cancelled" in scr.error
        # cancelled by asking, not interrupted: the engine ends the step and checkpoints there
        run_ckpts = tmp_path / "run" / "checkpoints"

        def newest() -> int:
            kept = [int(p.name.removeprefix("step-")) for p in run_ckpts.glob("step-*")]
            return max(kept, default=0)

        await _until(pilot, lambda: newest() >= stopped, "the checkpoint at the cancel", 120)
        ckpt = newest()
        assert stopped <= ckpt <= stopped + 1
        note = str(scr.query_one("#train-note").render())
        assert f"cancelled after step {stopped}" in note and "s resumes from it" in note
        await pilot.press("s")
        await _until(pilot, lambda: scr.metrics.step > ckpt + 1, "the resumed run", 120)
        assert scr.metrics.resumed_from == ckpt and f"resumed from {ckpt}" in scr.status_text()
        steps = [int(r[0]) for r in table.cell_texts() if r[2]]
        assert steps[: ckpt + 2] == list(range(1, ckpt + 3))  # the kept steps, then new ones
        await pilot.press("x")
        await _until(pilot, lambda: scr.state == "cancelled", "the second cancel", timeout=120)
