"""The command palette: every keymap action as ``"Category: action"`` (posting style)."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from tui.keymap import KEYS


class ReviewCommands(Provider):
    """All review actions; the key shown is the effective one (after user overrides)."""

    def _commands(self) -> list[tuple[str, str, str]]:
        app = self.app
        keymap = getattr(app, "effective_keys", {})
        return [(k.title, k.action, keymap.get(k.id, k.key)) for k in KEYS]

    async def _run(self, action: str) -> None:
        await self.app.run_action(action)

    async def discover(self) -> Hits:
        for title, action, key in self._commands():
            yield DiscoveryHit(title, partial(self._run, action), help=f"key: {key}")

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, action, key in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(
                    score, matcher.highlight(title), partial(self._run, action), help=f"key: {key}"
                )
