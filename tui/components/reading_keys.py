"""The reading room's keys (each a Binding with an id) and its command-palette provider.

Ids follow ``reading.*`` like the review keys of :mod:`tui.keymap`; the palette shows
``Reading: description`` and runs the action on the reading room screen.
"""

from __future__ import annotations

from typing import Any

from textual.binding import Binding

from tui.commands import KeyCommands
from tui.keymap import KeySpec

READING_KEYS: tuple[KeySpec, ...] = (
    KeySpec("reading.draft", "d", "draft", "draft the report (the model)", "reading"),
    KeySpec("reading.next", "n", "next_image", "next image", "reading"),
    KeySpec("reading.previous", "p", "previous_image", "previous image", "reading"),
    KeySpec("reading.edit", "i,enter", "edit_report", "edit the report", "reading"),
    KeySpec("reading.save", "ctrl+s", "save_report", "save the report", "reading"),
    KeySpec("reading.fold", "r", "toggle_reasoning", "show/hide the reasoning", "reading"),
    KeySpec("reading.ehr", "e", "load_ehr", "load an EHR file", "reading"),
    KeySpec("reading.ehr_use", "E", "toggle_ehr", "use the EHR in drafts on/off", "reading"),
    KeySpec(
        "reading.impression", "m", "impression", "impression in a radiologist's style", "reading"
    ),
    KeySpec("window.narrow", "w", "window(0.8)", "window narrower (more contrast)", "reading"),
    KeySpec("window.widen", "W", "window(1.25)", "window wider (less contrast)", "reading"),
    KeySpec("window.level_up", "l", "level(16)", "level up (darker)", "reading"),
    KeySpec("window.level_down", "L", "level(-16)", "level down (brighter)", "reading"),
    KeySpec("window.reset", "0", "reset_window", "reset window/level", "reading", show=False),
    KeySpec("reading.cancel", "x", "cancel", "cancel the running draft", "reading", show=False),
    KeySpec("help.keys", "question_mark,f1", "toggle_help", "help: show the keys", "reading"),
    KeySpec("app.quit", "ctrl+q,q", "quit", "quit", "reading", show=False),
)


def reading_bindings() -> list[Binding]:
    return [Binding(k.key, k.action, k.description, show=k.show, id=k.id) for k in READING_KEYS]


class ReadingCommands(KeyCommands):
    """Every reading room action in the command palette, with its key."""

    KEY_TABLE = READING_KEYS

    def _target(self, k: KeySpec) -> Any:
        from tui.screens.reading_room import ReadingRoomScreen

        for screen in reversed(self.app.screen_stack):
            if isinstance(screen, ReadingRoomScreen):
                return screen
        return self.app.screen
