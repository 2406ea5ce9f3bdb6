"""The reading room's impression dialog: the report's findings, rewritten as an impression in a
chosen radiologist's style (``report.impression``: coarse, then refined, facts locked), shown
as a coarse-vs-refined diff with its checks. ``escape`` closes it; the report is not changed."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.components.impression_panel import ImpressionPanel

_HEADER = re.compile(r"^\s*(technique|view|findings|impression)\s*:?\s*(.*)$", re.I)


def findings_of(report: str) -> str:
    """The Findings section of a drafted report (the whole text when it has no headers)."""
    out: list[str] = []
    current = ""
    for line in report.splitlines():
        m = _HEADER.match(line)
        if m:
            current = m.group(1).lower()
            rest = m.group(2).strip()
            if current == "findings" and rest:
                out.append(rest)
            continue
        if current == "findings":
            out.append(line)
    text = "\n".join(out).strip()
    return text or report.strip()


def as_dict(obj: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    return dict(obj) if isinstance(obj, dict) else {}


class ImpressionDialog(ModalScreen[None]):
    """A modal over the reading room holding the impression panel."""

    BINDINGS = [Binding("escape", "dismiss", "close", id="impression.close")]
    DEFAULT_CSS = """
    ImpressionDialog { align: center middle; }
    ImpressionDialog #imp-box { width: 90%; height: 90%; border: thick $primary;
        background: $surface; }
    ImpressionDialog #imp-findings { height: 8; }
    """

    def __init__(
        self, call: Callable[[dict[str, Any]], Any], radiologists: list[str], findings: str
    ) -> None:
        super().__init__()
        self.call, self.radiologists, self.findings = call, radiologists, findings

    def compose(self) -> ComposeResult:
        with Vertical(id="imp-box"):
            if not self.radiologists:
                yield Static(
                    "no radiologist profiles yet: build one with `llm-heuristics report style "
                    "build PRIORS --radiologist R` (escape closes)",
                    id="imp-none",
                    markup=False,
                )
            yield ImpressionPanel(lambda p: as_dict(self.call(p)), self.radiologists, self.findings)

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.dismiss(None)
