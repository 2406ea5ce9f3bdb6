"""The reading room as a person uses it: the real program in tmux drafts a real radiograph
(the canned server's report), the report is edited, saved, and the next image comes up."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.reading_room_helpers import NIH, Canned
from tests.tmux_driver import Tmux

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def canned() -> Any:
    srv = Canned()
    yield srv
    srv.close()


def test_tmux_draft_edit_save_next(tmp_path: Path, canned: Canned) -> None:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    if not NIH.is_dir():
        pytest.skip(f"no real radiographs at {NIH}")
    out = tmp_path / "out"
    out.mkdir()
    first, second = sorted(p.name for p in NIH.glob("*.png"))[:2]
    n = len(list(NIH.glob("*.png")))
    argv = [sys.executable, "-m", "engine", "tui", str(out), "--reading-room", str(NIH)]
    argv += ["--backend", "openai", "--model", "canned-cxr", "--base-url", canned.url]
    argv += ["--draft-mode", "cot"]
    env = {"LLMH_TUI_IMAGE": "halfcell", "TERM": "xterm-256color"}
    t = Tmux(f"llmh-reading-{os.getpid()}", argv, env, size=(140, 45))
    try:
        t.wait_for(f"1/{n} {first}")
        t.keys("d")
        t.wait_for("label disagreement", timeout=180)  # the labeler loads once: seconds
        t.wait_for("Impression: No pneumothorax. Mild cardiomegaly.")
        t.wait_for("Reasoning (10 steps)")
        s = t.wait_for("Pneumothorax")
        row = next(x for x in s.splitlines() if "Pneumothorax " in x)
        assert "pos" in row and "neg" in row and "\u2260" in row  # marked as a disagreement
        t.keys("i")
        t.wait_for("Report (editing")
        t.type(" Reviewed in tmux.")
        t.wait_for("Reviewed in tmux.")
        t.keys("Escape")
        t.wait_for("Report (modified)")
        t.keys("C-s")
        t.wait_for("saved to")
        t.keys("n")
        t.wait_for(f"2/{n} {second}")
        t.wait_for("no draft (d drafts)")
        reports = out / "reading_room.jsonl"
        lines = [json.loads(x) for x in reports.read_text().splitlines()]
        assert [Path(x["image"]).name for x in lines] == [first]
        assert lines[0]["report"].endswith("Mild cardiomegaly. Reviewed in tmux.")
        assert lines[0]["edited"] is True and len(lines[0]["steps"]) == 10
        t.keys("q")
        end = time.time() + 20
        while time.time() < end and "reading room" in t.screen():
            time.sleep(0.2)
        assert "reading room" not in t.screen(), "q did not quit"
    finally:
        t.kill()
