"""A small modal question with a few answers, each with a key (the quit and convert prompts).

Every line shown is plain text (paths and subject labels are never markup). Escape answers
``None`` (cancel)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static


class ChoiceScreen(ModalScreen[str | None]):
    """``ChoiceScreen(title, lines, [(answer, key, label), ...])``: dismisses with the answer."""

    BINDINGS = [Binding("escape", "answer('')", "cancel", id="choice.cancel")]

    def __init__(self, title: str, lines: list[str], choices: list[tuple[str, str, str]]) -> None:
        super().__init__()
        self.title_text = title
        self.lines = lines
        self.choices = choices

    def compose(self) -> ComposeResult:
        with Vertical(id="choice-dialog"):
            yield Label(self.title_text, id="choice-title", markup=False)
            yield Static("\n".join(self.lines), id="choice-text", markup=False)
            with Horizontal(id="choice-buttons"):
                for answer, key, label in self.choices:
                    yield Button(Text(f"{label} ({key})"), id=f"choice-{answer}")

    def on_mount(self) -> None:
        self.query_one(Button).focus()

    def on_key(self, event) -> None:  # type: ignore[no-untyped-def]
        for answer, key, _ in self.choices:
            if event.key == key:
                event.stop()
                self.action_answer(answer)
                return

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_answer((event.button.id or "").removeprefix("choice-"))

    def action_answer(self, answer: str) -> None:
        self.dismiss(answer or None)
