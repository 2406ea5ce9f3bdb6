"""The reading room's impression panel: pick a radiologist, draft, see coarse vs refined.

A self-contained widget: the screen that hosts it passes ``request(params) -> dict`` (the
engine's ``report.impression`` through its client) and the radiologists to offer (from
``report.style_list``). The answer is shown as a word diff of the coarse and the refined
impression (removed words struck through in red, added ones in green) with the checks: labels
equal, retry/fallback note, laterality and number flags, style fit.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, Select, Static, TextArea

Request = Callable[[dict[str, Any]], dict[str, Any]]


def diff_text(coarse: str, refined: str) -> Text:
    """Word diff: kept words plain, removed ones struck red, added ones green (newlines kept)."""
    a, b = coarse.replace("\n", " \n ").split(" "), refined.replace("\n", " \n ").split(" ")
    a, b = [w for w in a if w], [w for w in b if w]
    out = Text()
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op in ("delete", "replace"):
            out.append(" ".join(a[i1:i2]) + " ", style="strike red")
        if op in ("insert", "replace"):
            out.append(" ".join(b[j1:j2]) + " ", style="green")
        if op == "equal":
            out.append(" ".join(a[i1:i2]) + " ")
    return out


def checks_text(res: dict[str, Any]) -> Text:
    """The checks of one answer, one per line."""
    t = Text()
    ok = res.get("labels_equal", False)
    t.append("labels equal" if ok else "labels differ", style="green" if ok else "bold red")
    if res.get("retried") and not res.get("fell_back"):
        t.append(" (after a retry)")
    fit = res.get("style_fit") or {}
    if fit:
        t.append(f"\nstyle fit: coarse {fit['coarse']:.2f} -> refined {fit['refined']:.2f}")
    if res.get("note"):
        t.append(f"\nnote: {res['note']}", style="yellow")
    for f in res.get("flags") or []:
        t.append(f"\nflag: {f}", style="bold red")
    return t


class ImpressionPanel(Vertical):
    """Radiologist selector, findings, and the coarse-vs-refined diff of the last draft."""

    BORDER_TITLE = "Impression"

    class Drafted(Message):
        def __init__(self, result: dict[str, Any]) -> None:
            super().__init__()
            self.result = result

    def __init__(
        self,
        request: Request,
        radiologists: list[str],
        findings: str = "",
        k: int = 3,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.request, self.radiologists, self.k = request, radiologists, k
        self._findings = findings
        self.result: dict[str, Any] | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="imp-bar"):
            first = {"value": self.radiologists[0]} if self.radiologists else {}
            yield Select(
                [(r, r) for r in self.radiologists],
                prompt="radiologist",
                id="imp-radiologist",
                **first,
            )
            yield Button("Draft", id="imp-draft", variant="primary")
        yield TextArea(self._findings, id="imp-findings")
        yield Static("", id="imp-diff")
        yield Static("", id="imp-checks")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "imp-draft":
            event.stop()
            self.draft()

    def draft(self) -> None:
        rad = self.query_one("#imp-radiologist", Select).value
        findings = self.query_one("#imp-findings", TextArea).text
        if not isinstance(rad, str) or not findings.strip():
            self.query_one("#imp-checks", Static).update("choose a radiologist and give findings")
            return
        self.query_one("#imp-checks", Static).update("drafting...")
        self._run({"findings": findings, "radiologist": str(rad), "k": self.k})

    @work(thread=True, exclusive=True)
    def _run(self, params: dict[str, Any]) -> None:
        try:
            res = self.request(params)
        except Exception as exc:  # noqa: BLE001 - any engine error is shown, not raised
            self.app.call_from_thread(self._show_error, str(exc))
            return
        self.app.call_from_thread(self.show, res)

    def _show_error(self, text: str) -> None:
        self.query_one("#imp-checks", Static).update(Text(f"error: {text}", style="bold red"))

    def show(self, res: dict[str, Any]) -> None:
        self.result = res
        self.query_one("#imp-diff", Static).update(
            diff_text(str(res.get("coarse", "")), str(res.get("refined", "")))
        )
        self.query_one("#imp-checks", Static).update(checks_text(res))
        self.post_message(self.Drafted(res))
