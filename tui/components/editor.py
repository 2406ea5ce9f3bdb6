"""Heuristic editor: the generated ``heuristic.py`` with the validation problems beneath it."""

from __future__ import annotations

import difflib
from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static, TextArea

from tui.components import reveal


def syntax_problems(text: str) -> list[tuple[int, str]]:
    """A syntax error as ``[(line, message)]`` (checked locally: instant, before the engine)."""
    try:
        compile(text, "heuristic.py", "exec")
    except SyntaxError as exc:
        return [(exc.lineno or 1, f"syntax error: {exc.msg}")]
    return []


def unified_diff(old: str, new: str) -> str:
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            "your edits",
            "regenerated",
        )
    )


class HeuristicEditor(Vertical):
    BORDER_TITLE = "Heuristic"
    ALLOW_MAXIMIZE = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.saved_text = ""  # what is on disk
        self.generated_text = ""  # what generate wrote last (hand edits differ from it)
        self.pending_generated = ""  # a regeneration not taken yet (there were hand edits)

    def compose(self) -> ComposeResult:
        yield TextArea.code_editor("", language="python", id="heuristic-text")
        yield Static("", id="heuristic-problems", markup=False)

    @property
    def area(self) -> TextArea:
        return self.query_one("#heuristic-text", TextArea)

    @property
    def text(self) -> str:
        return self.area.text

    @property
    def dirty(self) -> bool:
        return self.text != self.saved_text

    @property
    def hand_edited(self) -> bool:
        return bool(self.generated_text) and self.saved_text != self.generated_text or self.dirty

    def load(self, text: str, generated: bool = False) -> None:
        self.saved_text = text
        if generated:
            self.generated_text = text
        elif not self.generated_text:
            self.generated_text = text
        self.area.load_text(text)
        self.set_problems([])

    def mark_saved(self) -> None:
        self.saved_text = self.text

    def set_problems(self, problems: list[tuple[int, str]], ok_text: str = "") -> None:
        w = self.query_one("#heuristic-problems", Static)
        if not problems:
            w.update(ok_text)
            w.set_class(False, "-problems")
            return
        w.set_class(True, "-problems")
        reveal(self)
        w.update("\n".join(f"line {n}: {msg}" if n else msg for n, msg in problems))
        first = next((n for n, _ in problems if n), 0)
        if first:
            self.area.move_cursor((first - 1, 0))
