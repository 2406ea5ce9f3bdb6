"""LLM rationale: the selected group's evidence and every rationale it got, streaming live."""

from __future__ import annotations

from typing import Any

from textual.containers import VerticalScroll
from textual.widgets import Static

from engine.api.types import GroupView
from tui.components.groups import opinion_lines
from tui.viewmodel import group_name


class RationalePane(VerticalScroll):
    BORDER_TITLE = "Rationale"
    ALLOW_MAXIMIZE = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.history: dict[str, list[str]] = {}  # group -> earlier rationales (streamed)
        self.live: dict[str, str] = {}  # group -> text streaming now
        self.group: GroupView | None = None

    def compose(self):  # type: ignore[no-untyped-def]
        yield Static("", id="rationale-text", markup=False)

    def show_message(self, text: str) -> None:
        """A message instead of a group (a folder that is not a workspace yet)."""
        self.group = None
        self.query_one("#rationale-text", Static).update(text)

    def show(self, g: GroupView | None) -> None:
        self.group = g
        self._redraw()

    def delta(self, gid: str, text: str) -> None:
        self.live[gid] = self.live.get(gid, "") + text
        if self.group is not None and self.group.group_id == gid:
            self._redraw()
            self.scroll_end(animate=False)

    def finish(self, gid: str | None = None) -> None:
        """The stream ended: keep the text among the group's earlier rationales."""
        for g in [gid] if gid else list(self.live):
            text = self.live.pop(g, "")
            if text.strip():
                self.history.setdefault(g, []).append(text.strip())
        self._redraw()
        if self.group is not None and (gid is None or self.group.group_id == gid):
            self.call_after_refresh(self.scroll_end, animate=False)  # the newest rationale

    def _redraw(self) -> None:
        g = self.group
        if g is None:
            self.query_one("#rationale-text", Static).update("select a group")
            return
        m = g.mapping
        lines = [
            f"{g.group_id}  ({g.group.label})",
            f"-> {group_name(g)}  [{m.source}, {m.confidence:.2f}]",
        ]
        if g.decision is not None:
            lines.append(f"your decision: {g.decision.describe()}")
        if g.unsure:
            lines.append("unsure: below the confidence threshold, please look")
        if g.group.flags:
            lines.append(f"flags: {', '.join(g.group.flags)}")
        lines += opinion_lines(g)  # the image classifier's second opinion, when there is one
        lines += [f"  because: {e}" for e in m.evidence]
        if m.rationale:
            lines += ["", "rationale:", m.rationale]
        for i, old in enumerate(self.history.get(g.group_id, []), 1):
            lines += ["", f"LLM rationale #{i}:", old]
        if g.group_id in self.live:
            lines += ["", "LLM (streaming):", self.live[g.group_id] + " ▌"]
        self.query_one("#rationale-text", Static).update("\n".join(lines))
