"""Report output: grouping, mapping, validation and conversion reports, and the engine log."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import RichLog, TabbedContent, TabPane, TextArea

REPORTS = ("grouping", "mapping", "validation", "conversion", "diff")


class ReportsPane(Vertical):
    """Report texts are kept here and put into their TextArea only when the tab is shown
    (a 10k-series mapping report is large; loading it unseen would delay startup)."""

    BORDER_TITLE = "Reports"
    ALLOW_MAXIMIZE = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.texts: dict[str, str] = {}
        self.loaded: set[str] = set()

    def compose(self) -> ComposeResult:
        with TabbedContent(id="report-tabs", initial="tab-log"):
            with TabPane("Log", id="tab-log"):
                yield RichLog(id="engine-log", max_lines=5000, wrap=True, markup=False)
            for name in REPORTS:
                with TabPane(name.capitalize(), id=f"tab-{name}"):
                    yield TextArea("", read_only=True, id=f"report-{name}", soft_wrap=False)

    def set_report(self, name: str, text: str, show: bool = False) -> None:
        if name not in REPORTS:
            return
        self.texts[name] = text
        self.loaded.discard(name)
        if show:
            self.query_one(TabbedContent).active = f"tab-{name}"
        if self.query_one(TabbedContent).active == f"tab-{name}":
            self._fill(name)

    def _fill(self, name: str) -> None:
        if name in self.texts and name not in self.loaded:
            self.query_one(f"#report-{name}", TextArea).load_text(self.texts[name])
            self.loaded.add(name)

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        pane_id = event.pane.id or ""
        if pane_id.startswith("tab-"):
            self._fill(pane_id[4:])

    def report(self, name: str) -> str:
        return self.texts.get(name, "")

    def log_line(self, text: Any) -> None:
        self.query_one("#engine-log", RichLog).write(text)

    def show(self, name: str) -> None:
        self.query_one(TabbedContent).active = f"tab-{name}"
