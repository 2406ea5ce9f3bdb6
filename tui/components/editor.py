"""Heuristic editor: the generated ``heuristic.py`` with the validation problems beneath it.

It owns its keys: edit (``i``/enter), save (checked for syntax here, then saved and validated by
the engine) and take the regenerated version (after ``generate`` went beside hand edits).

The code is read-only until the person asks to edit (``i`` or enter; Escape leaves edit mode):
focus reaches the editor by Tab or f2, and the review keys (``p``, ``a``, ...) must not type
into the code then. The border title says ``editing`` and ``modified`` (unsaved edits)."""

from __future__ import annotations

import difflib
from typing import Any

from textual import events
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static, TextArea

from engine.api.types import ValidateResult
from tui import messages as msg
from tui.components import reveal
from tui.keymap import bindings


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


def problem_lines(res: ValidateResult) -> list[tuple[int, str]]:
    """A validation's errors and differences as ``(line, message)`` (``line`` 0 when unknown)."""
    import re

    out = []
    for raw in res.diff.splitlines() or [f"error: {e}" for e in res.errors]:
        line = raw.strip()
        if not line:
            continue
        m = re.search(r"(?:line |\.py:)(\d+)", line)
        out.append((int(m.group(1)) if m else 0, line))
    return out[:50] or [(0, "validation failed")]


class CodeArea(TextArea):
    """A TextArea whose Escape leaves edit mode (read-only again) instead of moving focus."""

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "escape" and not self.read_only:
            event.stop()
            event.prevent_default()
            self._leave_edit_mode()
            return
        await super()._on_key(event)

    def on_blur(self) -> None:
        """Focus went elsewhere: read-only again, so a later Tab/f2 back here never types."""
        if not self.read_only:
            self._leave_edit_mode()

    def _leave_edit_mode(self) -> None:
        self.read_only = True
        editor = next((a for a in self.ancestors if isinstance(a, HeuristicEditor)), None)
        if editor is not None:
            editor.update_title()


class HeuristicEditor(Vertical):
    BORDER_TITLE = "Heuristic"
    ALLOW_MAXIMIZE = True
    BINDINGS = bindings("editor")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.saved_text = ""  # what is on disk
        self.generated_text = ""  # what generate wrote last (hand edits differ from it)
        self.pending_generated = ""  # a regeneration not taken yet (there were hand edits)

    def compose(self) -> ComposeResult:
        yield CodeArea.code_editor("", language="python", id="heuristic-text", read_only=True)
        yield Static("", id="heuristic-problems", markup=False)

    @property
    def area(self) -> TextArea:
        return self.query_one("#heuristic-text", TextArea)

    @property
    def editing(self) -> bool:
        return not self.area.read_only

    def update_title(self) -> None:
        marks = [m for m, on in (("editing", self.editing), ("modified", self.dirty)) if on]
        self.border_title = f"Heuristic ({', '.join(marks)})" if marks else "Heuristic"

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        self.update_title()

    def action_edit_mode(self) -> None:
        """``i``/enter: the code takes keys until Escape."""
        self.area.read_only = False
        self.area.focus()
        self.update_title()
        self.notify("editing the heuristic: Escape leaves edit mode, ctrl+s saves", timeout=3)

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
        self.update_title()

    def mark_saved(self) -> None:
        self.saved_text = self.text
        self.update_title()

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

    def show_validation(self, res: ValidateResult) -> None:
        if res.ok:
            self.set_problems([], (res.diff.splitlines() or ["OK"])[0])
        else:
            self.set_problems(problem_lines(res))

    def action_save(self) -> bool:
        """Ask the engine to save (returns False when a syntax error keeps the text here)."""
        problems = syntax_problems(self.text)
        if problems:
            self.set_problems(problems)
            self.notify("not saved: fix the syntax error first", severity="error")
            return False
        self.post_message(msg.SaveHeuristic(self.text))
        return True

    def action_take_generated(self) -> None:
        if not self.pending_generated:
            self.notify("no regenerated version waiting")
            return
        text, self.pending_generated = self.pending_generated, ""
        self.load(text, generated=True)
        self.saved_text = ""  # force the save
        self.post_message(msg.SaveHeuristic(text))
