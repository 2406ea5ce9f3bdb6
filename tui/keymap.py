"""Every key binding of the app, with an id, an owner, a command-palette title and an override.

Ids follow ``category.action``; the palette shows ``Category: description``. ``owner`` is the
component whose ``BINDINGS`` hold the key and whose ``action_*`` method runs it: ``app`` (the
connection), ``screen`` (the main screen: workspace-wide keys), or the DOM id of a pane
(``groups``, ``editor``). A user changes a key in the ``[keymap]`` table of the config file
(``llm-heuristics config show`` names it)::

    [keymap]
    "mapping.accept" = "enter,a"
    "review.undo" = "ctrl+u"
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from textual.binding import Binding

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KeySpec:
    id: str
    key: str
    action: str
    description: str
    owner: str
    show: bool = True

    @property
    def category(self) -> str:
        return self.id.split(".", 1)[0].capitalize()

    @property
    def title(self) -> str:
        """The command-palette title, ``"Mapping: accept group"``."""
        return f"{self.category}: {self.description}"


KEYS: tuple[KeySpec, ...] = (
    KeySpec("mapping.accept", "a", "accept", "accept group", "groups"),
    KeySpec("mapping.edit", "e", "edit_name", "edit BIDS name", "groups"),
    KeySpec("mapping.skip", "s", "skip", "skip group", "groups"),
    KeySpec("mapping.unskip", "u", "unskip", "unskip group", "groups"),
    KeySpec("mapping.remap", "r", "remap", "re-map group with the LLM", "groups"),
    KeySpec("mapping.remap_unsure", "R", "remap_unsure", "re-map unsure groups", "groups"),
    KeySpec("bulk.mark", "m", "mark", "mark/unmark group", "groups"),
    KeySpec("bulk.mark_shown", "M", "mark_shown", "mark all shown (filter)", "groups", show=False),
    KeySpec("bulk.mark_unsure", "U", "mark_unsure", "mark unsure groups", "groups", show=False),
    KeySpec(
        "bulk.mark_same", "equals_sign", "mark_same", "mark same proposal", "groups", show=False
    ),
    KeySpec("bulk.accept", "A", "bulk('accept')", "accept marked groups", "groups", show=False),
    KeySpec("bulk.skip", "S", "bulk('skip')", "skip marked groups", "groups", show=False),
    KeySpec("view.filter", "slash", "focus_filter", "filter groups", "groups", show=False),
    KeySpec("view.sort", "o", "sort", "sort groups by next column", "groups", show=False),
    KeySpec("view.by_proposal", "b", "by_proposal", "group rows by proposal", "groups", show=False),
    KeySpec("review.undo", "ctrl+z", "undo", "undo decision", "screen"),
    KeySpec("review.redo", "ctrl+y", "redo", "redo decision", "screen"),
    KeySpec("heuristic.generate", "g", "generate", "generate heuristic", "screen"),
    KeySpec("heuristic.validate", "v", "validate", "validate heuristic", "screen"),
    KeySpec("convert.dry_run", "c", "convert(True)", "dry-run conversion", "screen"),
    KeySpec("convert.run", "C", "convert(False)", "convert subject", "screen", show=False),
    KeySpec("view.matrix", "p", "matrix", "protocol matrix", "screen"),
    KeySpec(
        "view.confusion",
        "I",
        "confusion",
        "image classifier confusion matrix",
        "screen",
        show=False,
    ),
    KeySpec("view.maximize", "f11", "maximize", "maximize/restore pane", "screen"),
    KeySpec("view.side", "f2", "toggle_side", "show heuristic/reports", "screen", show=False),
    KeySpec("view.grow", "right_square_bracket", "resize(4)", "widen tree", "screen", show=False),
    KeySpec(
        "view.shrink", "left_square_bracket", "resize(-4)", "narrow tree", "screen", show=False
    ),
    KeySpec("view.refresh", "f5", "refresh", "reload workspace", "screen", show=False),
    KeySpec("heuristic.edit", "i,enter", "edit_mode", "edit the heuristic", "editor"),
    KeySpec("heuristic.save", "ctrl+s", "save", "save edits", "editor", show=False),
    KeySpec("heuristic.replace", "ctrl+g", "take_generated", "take regenerated version", "editor"),
    KeySpec("mapping.cancel", "x", "cancel", "cancel the running engine task", "app", show=False),
    KeySpec("engine.reconnect", "f6", "reconnect", "reconnect to the engine", "app", show=False),
    KeySpec("app.quit", "ctrl+q,q", "quit", "quit", "app", show=False),
    KeySpec("help.keys", "question_mark,f1", "toggle_help", "help: show the keys", "app"),
    KeySpec(
        "view.close", "escape", "close", "close the keys panel / the filter", "screen", show=False
    ),
    KeySpec("view.expand", "right", "expand_node", "expand tree node", "tree", show=False),
    KeySpec("view.collapse", "left", "collapse_node", "collapse tree node", "tree", show=False),
)


def bindings(owner: str) -> list[Binding]:
    """The bindings ``owner`` declares (each with its id: the keymap finds it by that)."""
    return [
        Binding(k.key, k.action, k.description, show=k.show, id=k.id)
        for k in KEYS
        if k.owner == owner
    ]


def all_keys() -> tuple[KeySpec, ...]:
    """The review keys and those of the screens that keep their own tables (reading room,
    training): every id a ``[keymap]`` entry may name."""
    from tui.components.reading_keys import READING_KEYS
    from tui.components.training_widgets import TRAINING_KEYS

    return KEYS + READING_KEYS + TRAINING_KEYS


def load_keymap(path: Path | None = None) -> dict[str, str]:
    """``{binding id: keys}`` from the ``[keymap]`` table; unknown ids are logged and dropped."""
    from engine.config import load_config_document
    from engine.errors import UserError

    try:
        table = load_config_document(path).get("keymap", {})
    except UserError as exc:  # a broken config file must not stop the UI
        log.warning("%s (keymap ignored)", exc)
        return {}
    known = {k.id for k in all_keys()}
    out = {}
    for bid, keys in table.items() if isinstance(table, dict) else ():
        if bid in known and isinstance(keys, str):
            out[bid] = keys
        else:
            log.warning(
                "config file %s: [keymap] %r ignored (ids: %s)", path, bid, ", ".join(sorted(known))
            )
    return out
