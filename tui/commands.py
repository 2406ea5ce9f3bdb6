"""The command palette: every keymap action as ``"Category: action"``, run by its owner."""

from __future__ import annotations

from functools import partial
from typing import Any

from textual.command import DiscoveryHit, Hit, Hits, Provider

from tui.keymap import KEYS, KeySpec


class ReviewCommands(Provider):
    """All review actions; the key shown is the effective one (after user overrides)."""

    def _commands(self) -> list[tuple[str, KeySpec, str]]:
        keymap = getattr(self.app, "effective_keys", {})
        return [(k.title, k, keymap.get(k.id, k.key)) for k in KEYS]

    def _target(self, k: KeySpec) -> Any:
        app: Any = self.app
        if k.owner == "app":
            return app
        main = app.main_screen
        return main if k.owner == "screen" else main.query_one(f"#{k.owner}")

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
