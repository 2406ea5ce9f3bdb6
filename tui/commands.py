"""The command palette: every keymap action as ``"Category: action"``, run by its owner."""

from __future__ import annotations

from functools import partial
from typing import Any

from textual.command import DiscoveryHit, Hit, Hits, Provider

from tui.keymap import KEYS, KeySpec


class KeyCommands(Provider):
    """A table of :class:`KeySpec` in the palette as ``"Category: action"`` with the effective
    key (after ``[keymap]`` overrides); subclasses name the table and where an action runs."""

    KEY_TABLE: tuple[KeySpec, ...] = ()

    def _commands(self) -> list[tuple[str, KeySpec, str]]:
        keymap = getattr(self.app, "effective_keys", {})
        return [(k.title, k, keymap.get(k.id, k.key)) for k in self.KEY_TABLE]

    def _target(self, k: KeySpec) -> Any:
        return self.screen

    async def _run(self, k: KeySpec) -> None:
        await self.app.run_action(k.action, self._target(k))

    async def discover(self) -> Hits:
        for title, k, key in self._commands():
            yield DiscoveryHit(title, partial(self._run, k), help=f"key: {key}")

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, k, key in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(
                    score, matcher.highlight(title), partial(self._run, k), help=f"key: {key}"
                )


class ReviewCommands(KeyCommands):
    """All review actions, each run by its owner (the app, the main screen or a pane)."""

    KEY_TABLE = KEYS

    def _target(self, k: KeySpec) -> Any:
        app: Any = self.app
        if k.owner == "app":
            return app
        main = app.main_screen
        return main if k.owner == "screen" else main.query_one(f"#{k.owner}")
