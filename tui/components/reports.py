"""Report output: grouping, mapping, validation and conversion reports, and the engine log."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import RichLog, TabbedContent, TabPane, TextArea

from tui.components import reveal

REPORTS = ("grouping", "mapping", "validation", "conversion", "diff")


class ReportTabs(Vertical):
    """The log and one read-only text area per report, in tabs."""

    def __init__(self, initial: str) -> None:
        super().__init__()
        self.initial = initial

    def compose(self) -> ComposeResult:
        with TabbedContent(id="report-tabs", initial=f"tab-{self.initial}"):
            with TabPane("Log", id="tab-log"):
                yield RichLog(
                    id="engine-log", max_lines=ReportsPane.LOG_LINES, wrap=True, markup=False
                )
            for name in REPORTS:
                with TabPane(name.capitalize(), id=f"tab-{name}"):
                    yield TextArea("", read_only=True, id=f"report-{name}", soft_wrap=False)


class ReportsPane(Vertical):
    """Report texts are kept here and put into their TextArea only when the tab is shown
    (a 10k-series mapping report is large; loading it unseen would delay startup).

    The pane itself (six tabs, five text areas and the log) is built the first time it is
    shown: at startup it sits behind the Heuristic tab, and building it unseen cost a tenth
    of the time to the first key. Log lines wait in a buffer until then."""

    BORDER_TITLE = "Reports"
    ALLOW_MAXIMIZE = True
    LOG_LINES = 5000

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.texts: dict[str, str] = {}
        self.loaded: set[str] = set()
        self.pending_log: list[Any] = []  # lines logged before the pane was built
        self.built = False  # build() called
        self.ready = False  # the tabs are mounted
        self.active = "log"  # the report tab to show
        self.focus_wanted = False

    def compose(self) -> ComposeResult:
        return iter(())

    def build(self) -> None:
        """Mount the tabs (once; they come up on the next turn of the event loop)."""
        if not self.built:
            self.built = True
            self.call_later(self._build)

    async def _build(self) -> None:
        await self.mount(ReportTabs(self.active))
        self.ready = True
        log = self.query_one("#engine-log", RichLog)
        for line in self.pending_log:
            log.write(line)
        self.pending_log.clear()
        self._fill(self.active)
        if self.focus_wanted:
            self.focus_wanted = False
            self.query_one("#report-tabs").query_one("Tabs").focus()

    def focus_tabs(self) -> None:
        if self.ready:
            self.query_one("#report-tabs").query_one("Tabs").focus()
        else:
            self.focus_wanted = True
            self.build()

    def set_report(self, name: str, text: str, show: bool = False) -> None:
        if name not in REPORTS:
            return
        self.texts[name] = text
        self.loaded.discard(name)
        if show:
            self.show(name)
        if self.ready and self.active == name:
            self._fill(name)

    def _fill(self, name: str) -> None:
        if self.ready and name in self.texts and name not in self.loaded:
            self.query_one(f"#report-{name}", TextArea).load_text(self.texts[name])
            self.loaded.add(name)

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        event.stop()  # ours, not the side area's
        pane_id = event.pane.id or ""
        if pane_id.startswith("tab-"):
            self.active = pane_id[4:]
            self._fill(self.active)

    def report(self, name: str) -> str:
        return self.texts.get(name, "")

    def log_line(self, text: Any) -> None:
        if self.ready:
            self.query_one("#engine-log", RichLog).write(text)
        else:
            self.pending_log.append(text)
            del self.pending_log[: -self.LOG_LINES]

    def clear_log(self) -> None:
        self.pending_log.clear()
        if self.ready:
            self.query_one("#engine-log", RichLog).clear()

    def show(self, name: str) -> None:
        """Bring report ``name`` to the front (and this pane, when it sits in a tab)."""
        reveal(self)
        self.active = name
        if self.ready:
            self.query_one(TabbedContent).active = f"tab-{name}"
        else:
            self.build()
