"""Edit a group's BIDS name with schema-aware completion: datatype -> suffix -> entities.

The name is written ``datatype/[key-value_...]suffix`` (``func/task-rest_bold``). Candidates
for the part under the cursor come from the BIDS schema; an invalid name is refused with the
schema's reasons shown, the dialog stays open.
"""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.suggester import Suggester
from textual.widgets import Input, Label, OptionList, Static

from engine.errors import UserError


def _schema() -> Any:
    from engine.bids_schema import get_schema

    return get_schema()


def candidates(text: str) -> list[str]:
    """Full-text completions of ``text`` (the last ``_``/``/`` part is the one completed)."""
    s = _schema()
    if "/" not in text:
        return [f"{dt}/" for dt in s.datatypes() if dt.startswith(text)]
    datatype, _, rest = text.partition("/")
    if datatype not in s.datatypes():
        return []
    *done, current = rest.split("_")
    prefix = f"{datatype}/" + "".join(p + "_" for p in done)
    used = {p.partition("-")[0] for p in done}
    suffixes = s.suffixes(datatype)
    out: list[str] = []
    if "-" in current:  # completing an entity value
        key, _, val = current.partition("-")
        values = s.entity_values(key)
        out += [f"{prefix}{key}-{v}_" for v in values if v.startswith(val)]
        return out
    allowed: list[str] = []
    for suf in suffixes:
        for e in s.allowed_entities(datatype, suf):
            if e not in allowed and e not in used and e != "run":
                allowed.append(e)
    out += [f"{prefix}{e}-" for e in allowed if e.startswith(current)]
    out += [f"{prefix}{suf}" for suf in suffixes if suf.startswith(current)]
    return out


class BidsSuggester(Suggester):
    def __init__(self) -> None:
        super().__init__(use_cache=True, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        c = candidates(value)
        return c[0] if c else None


def validate_name(text: str) -> tuple[tuple[str, str, dict[str, str]] | None, list[str]]:
    from engine.review import check_name, parse_template

    try:
        datatype, suffix, entities = parse_template(text)
    except UserError as exc:
        return None, [str(exc)]
    problems = check_name(datatype, suffix, entities)
    return ((datatype, suffix, entities) if not problems else None), problems


class EditNameScreen(ModalScreen[tuple[str, str, dict[str, str]] | None]):
    """Returns ``(datatype, suffix, entities)`` or ``None`` when cancelled."""

    BINDINGS = [
        Binding("escape", "cancel", "cancel", id="edit.cancel"),
        Binding("tab", "complete", "complete", id="edit.complete", priority=True),
        Binding("down", "next_candidate", "next", id="edit.next", show=False),
    ]

    def __init__(self, group_id: str, current: str) -> None:
        super().__init__()
        self.group_id = group_id
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(id="edit-dialog"):
            yield Label(f"BIDS name for {self.group_id}", id="edit-title")
            yield Input(
                self.current,
                id="edit-input",
                suggester=BidsSuggester(),
                placeholder="datatype/[entity-value_]suffix, e.g. func/task-rest_bold",
            )
            yield OptionList(id="edit-candidates")
            yield Static("", id="edit-problems", markup=False)
            yield Static("tab: complete  enter: save  esc: cancel", id="edit-help")

    def on_mount(self) -> None:
        self._refresh(self.current)

    def _refresh(self, value: str) -> None:
        ol = self.query_one("#edit-candidates", OptionList)
        ol.clear_options()
        ol.add_options(candidates(value)[:50])
        _, problems = validate_name(value) if value else (None, [])
        self.query_one("#edit-problems", Static).update(
            "\n".join(problems) if problems else "valid"
        )

    @on(Input.Changed, "#edit-input")
    def _changed(self, event: Input.Changed) -> None:
        self._refresh(event.value)

    @on(Input.Submitted, "#edit-input")
    def _submitted(self, event: Input.Submitted) -> None:
        name, problems = validate_name(event.value)
        if name is None:
            self.query_one("#edit-problems", Static).update("refused: " + "; ".join(problems))
            self.query_one("#edit-problems", Static).add_class("-refused")
            return
        self.dismiss(name)

    @on(OptionList.OptionSelected, "#edit-candidates")
    def _picked(self, event: OptionList.OptionSelected) -> None:
        inp = self.query_one("#edit-input", Input)
        inp.value = str(event.option.prompt)
        inp.cursor_position = len(inp.value)
        inp.focus()

    def action_complete(self) -> None:
        inp = self.query_one("#edit-input", Input)
        c = candidates(inp.value)
        if c:
            inp.value = c[0]
            inp.cursor_position = len(inp.value)

    def action_next_candidate(self) -> None:
        self.query_one("#edit-candidates", OptionList).focus()

    def action_cancel(self) -> None:
        self.dismiss(None)
