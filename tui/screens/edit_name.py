"""Edit a group's BIDS name, checked by the engine against the BIDS schema as you type.

The name is written ``datatype/[key-value_...]suffix`` (``func/task-rest_bold``). Each change
asks the engine (``review.check_name``, and the completions for the part under the cursor);
an invalid name is refused with the schema's reasons shown, the dialog stays open. The
dialog returns the name text; the engine parses it when the decision is recorded.
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList, Static

from tui import messages as msg


class EditNameScreen(ModalScreen[str | None]):
    """Returns the name (``anat/acq-x_T2w``) or ``None`` when cancelled."""

    BINDINGS = [
        Binding("escape", "cancel", "cancel", id="edit.cancel"),
        Binding("tab", "complete", "complete", id="edit.complete", priority=True),
        Binding("down", "next_candidate", "next", id="edit.next", show=False),
    ]

    def __init__(self, group_id: str, current: str) -> None:
        super().__init__()
        self.group_id = group_id
        self.current = current
        self.checked: dict[str, msg.NameChecked] = {}  # text -> the engine's answer
        self.submit_wanted: str | None = None  # Enter pressed before the engine answered it

    def compose(self) -> ComposeResult:
        with Vertical(id="edit-dialog"):
            yield Label(f"BIDS name for {self.group_id}", id="edit-title", markup=False)
            yield Input(
                self.current,
                id="edit-input",
                placeholder="datatype/[entity-value_]suffix, e.g. func/task-rest_bold",
            )
            yield OptionList(id="edit-candidates")
            yield Static("", id="edit-problems", markup=False)
            yield Static("tab: complete  enter: save  esc: cancel", id="edit-help")

    @property
    def value(self) -> str:
        return self.query_one("#edit-input", Input).value

    def on_mount(self) -> None:
        self.post_message(msg.CheckName(self.current))

    @on(Input.Changed, "#edit-input")
    def _changed(self, event: Input.Changed) -> None:
        if event.value in self.checked:
            self._show(self.checked[event.value])
        else:
            self.post_message(msg.CheckName(event.value))

    def on_name_checked(self, m: msg.NameChecked) -> None:
        self.checked[m.text] = m
        if m.text == self.value:
            self._show(m)
        if m.text == self.submit_wanted:
            self.submit_wanted = None
            self._submit(m.text)

    def _show(self, m: msg.NameChecked) -> None:
        ol = self.query_one("#edit-candidates", OptionList)
        ol.clear_options()
        ol.add_options(m.candidates[:50])
        problems = m.problems if m.text else []
        w = self.query_one("#edit-problems", Static)
        w.update("\n".join(problems) if problems else "valid")
        w.remove_class("-refused")

    @on(Input.Submitted, "#edit-input")
    def _submitted(self, event: Input.Submitted) -> None:
        self._submit(event.value)

    def _submit(self, text: str) -> None:
        m = self.checked.get(text)
        if m is None:  # the engine has not answered yet: submit when it does
            self.submit_wanted = text
            return
        if m.problems or not text:
            w = self.query_one("#edit-problems", Static)
            w.update("refused: " + "; ".join(m.problems or ["no name"]))
            w.add_class("-refused")
            return
        self.dismiss(text)

    @on(OptionList.OptionSelected, "#edit-candidates")
    def _picked(self, event: OptionList.OptionSelected) -> None:
        self._set(str(event.option.prompt))

    def _set(self, text: str) -> None:
        inp = self.query_one("#edit-input", Input)
        inp.value = text
        inp.cursor_position = len(text)
        inp.focus()

    def action_complete(self) -> None:
        m = self.checked.get(self.value)
        if m is not None and m.candidates:
            self._set(m.candidates[0])

    def action_next_candidate(self) -> None:
        self.query_one("#edit-candidates", OptionList).focus()

    def action_cancel(self) -> None:
        self.dismiss(None)
