"""Every key binding of the app, with an id, a command-palette title and a user override.

Ids follow ``category.action``; the palette shows ``Category: description``. A user changes a
key in the ``[keymap]`` table of the config file (``llm-heuristics config show`` names it)::

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
    show: bool = True

    @property
    def category(self) -> str:
        return self.id.split(".", 1)[0].capitalize()

    @property
    def title(self) -> str:
        """The command-palette title, ``"Mapping: accept group"``."""
        return f"{self.category}: {self.description}"


KEYS: tuple[KeySpec, ...] = (
    KeySpec("mapping.accept", "a", "accept", "accept group"),
    KeySpec("mapping.edit", "e", "edit_name", "edit BIDS name"),
    KeySpec("mapping.skip", "s", "skip", "skip group"),
    KeySpec("mapping.unskip", "u", "unskip", "unskip group"),
    KeySpec("mapping.remap", "r", "remap", "re-map group with the LLM"),
    KeySpec("mapping.remap_unsure", "R", "remap_unsure", "re-map unsure groups with the LLM"),
    KeySpec("mapping.cancel", "x", "cancel", "cancel the running engine task", show=False),
    KeySpec("review.undo", "ctrl+z", "undo", "undo decision"),
    KeySpec("review.redo", "ctrl+y", "redo", "redo decision"),
    KeySpec("heuristic.generate", "g", "generate", "generate heuristic"),
    KeySpec("heuristic.validate", "v", "validate", "validate heuristic"),
    KeySpec("heuristic.save", "ctrl+s", "save_heuristic", "save edits", show=False),
    KeySpec(
        "heuristic.replace", "ctrl+g", "take_generated", "take regenerated version", show=False
    ),
    KeySpec("convert.dry_run", "c", "convert(True)", "dry-run conversion"),
    KeySpec("convert.run", "C", "convert(False)", "convert subject", show=False),
    KeySpec("view.matrix", "p", "matrix", "protocol matrix"),
    KeySpec("view.filter", "slash", "focus_filter", "filter groups", show=False),
    KeySpec("view.sort", "o", "sort", "sort groups by next column", show=False),
    KeySpec("view.maximize", "f11", "maximize", "maximize/restore pane"),
    KeySpec("view.side", "f2", "toggle_side", "show heuristic/reports", show=False),
    KeySpec("view.grow", "right_square_bracket", "resize(4)", "widen tree pane", show=False),
    KeySpec("view.shrink", "left_square_bracket", "resize(-4)", "narrow tree pane", show=False),
    KeySpec("view.refresh", "f5", "refresh", "reload workspace", show=False),
    KeySpec("engine.reconnect", "f6", "reconnect", "reconnect to the engine", show=False),
    KeySpec("app.quit", "ctrl+q", "quit", "quit", show=False),
)


def bindings() -> list[Binding]:
    return [Binding(k.key, k.action, k.description, show=k.show, id=k.id) for k in KEYS]


def load_keymap(path: Path | None = None) -> dict[str, str]:
    """``{binding id: keys}`` from the ``[keymap]`` table; unknown ids are logged and dropped."""
    from engine.config import load_config_document
    from engine.errors import UserError

    try:
        table = load_config_document(path).get("keymap", {})
    except UserError as exc:  # a broken config file must not stop the UI
        log.warning("%s (keymap ignored)", exc)
        return {}
    known = {k.id for k in KEYS}
    out = {}
    for bid, keys in table.items() if isinstance(table, dict) else ():
        if bid in known and isinstance(keys, str):
            out[bid] = keys
        else:
            log.warning(
                "config file %s: [keymap] %r ignored (ids: %s)", path, bid, ", ".join(sorted(known))
            )
    return out
