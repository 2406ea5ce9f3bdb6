"""The reading room's panes: the image (terminal graphics), the report (streamed, then edited),
the reasoning steps (folded), the labels table (disagreements marked), the EHR panel.

Records arrive as plain dicts (the fields of the engine's ``DraftRecord``): the TUI reads
them by name and never imports the step code.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Collapsible, DataTable, Input, Label, Static, TextArea

from tui.components.preview import PreviewPane

LABEL_WORDS = {1: "pos", 0: "neg", -1: "unc", None: "-"}  # CheXpert 1 / 0 / -1 / null
DISAGREE = "\u2260 disagree"
REASONING_PHASES = ("reasoning", "steps", "cot", "think", "thinking")
_FIRST_HEADER = re.compile(r"^[ \t]*(?:#{1,6}[ \t]*)?(?:\*\*|__)?[ \t]*technique\b", re.I | re.M)


def report_text(record: dict[str, Any]) -> str:
    """The report as a person reads and edits it: ``Header: text`` per section, in order; the
    model's raw reply when no section was parsed (a flagged draft keeps its text)."""
    sections = record.get("sections") or {}
    if sections:
        return "\n\n".join(f"{h}: {str(v).strip()}" for h, v in sections.items())
    return str(record.get("text") or "")


def split_stream(text: str, mode: str) -> tuple[str, str]:
    """Streamed text as ``(reasoning, report)``: with the reasoning mode, what comes before the
    first ``Technique`` header is the reasoning (all of it until that header arrives)."""
    if mode != "cot":
        return "", text
    m = _FIRST_HEADER.search(text)
    if m is None:
        return text, ""
    return text[: m.start()], text[m.start() :]


class ReadingImage(PreviewPane):
    """The current image; ``png`` keeps the last rendering (window/level re-renders it)."""

    BORDER_TITLE = "Image"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.png = b""
        self.info: dict[str, str] = {}

    def show_rendered(self, name: str, png_base64: str, info: dict[str, str]) -> None:
        self.png = base64.b64decode(png_base64)
        self.info = dict(info)
        self.show(name, self.png, info)
        wl = f"W/L {info.get('width', '?')}/{info.get('center', '?')}"
        src = f" ({info['source_window']})" if info.get("source_window") else ""
        self.query_one("#preview-info", Static).update(f"{name} {info.get('size', '')} {wl}{src}")


class ReportArea(TextArea):
    """The report: read-only until ``i``/enter; Escape (or leaving it) makes it read-only again,
    so the reading room's single-letter keys never type into the report."""

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "escape" and not self.read_only:
            event.stop()
            event.prevent_default()
            self.leave_edit_mode()
            return
        await super()._on_key(event)

    def on_blur(self) -> None:
        if not self.read_only:
            self.leave_edit_mode()

    def leave_edit_mode(self) -> None:
        self.read_only = True
        pane = next((a for a in self.ancestors if isinstance(a, ReportPane)), None)
        if pane is not None:
            pane.update_title()


class ReportPane(Vertical):
    """Reasoning (folded) above the report; the title says streaming / editing / modified."""

    BORDER_TITLE = "Report"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.saved_text = ""
        self.streaming = False

    def compose(self) -> ComposeResult:
        with Collapsible(title="Reasoning", collapsed=True, id="reading-reasoning"):
            yield Static("", id="reading-steps", markup=False)
        yield ReportArea("", id="reading-report", read_only=True, soft_wrap=True)
        yield Static("", id="reading-flags", markup=False)

    @property
    def area(self) -> ReportArea:
        return self.query_one("#reading-report", ReportArea)

    @property
    def reasoning(self) -> Collapsible:
        return self.query_one("#reading-reasoning", Collapsible)

    @property
    def steps_text(self) -> str:
        return str(self.query_one("#reading-steps", Static).content)

    @property
    def text(self) -> str:
        return self.area.text

    @property
    def editing(self) -> bool:
        return not self.area.read_only

    @property
    def dirty(self) -> bool:
        return self.text != self.saved_text

    def update_title(self) -> None:
        marks = [
            m
            for m, on in (
                ("streaming", self.streaming),
                ("editing", self.editing),
                ("modified", self.dirty and not self.streaming),
            )
            if on
        ]
        self.border_title = f"Report ({', '.join(marks)})" if marks else "Report"

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        self.update_title()

    def set_reasoning(self, steps: list[str] | str, title: str = "") -> None:
        text = (
            steps
            if isinstance(steps, str)
            else "\n".join(f"{n}. {s}" for n, s in enumerate(steps, 1))
        )
        self.query_one("#reading-steps", Static).update(text)
        n = len(steps) if isinstance(steps, list) else 0
        self.reasoning.title = title or (f"Reasoning ({n} steps)" if n else "Reasoning")

    def stream(self, reasoning: str, report: str) -> None:
        """The draft so far (read-only while it streams)."""
        self.streaming = True
        self.area.read_only = True
        if reasoning:
            self.set_reasoning(reasoning, "Reasoning (streaming)")
        self.area.load_text(report)
        self.area.scroll_end(animate=False)
        self.update_title()

    def show_record(
        self, record: dict[str, Any] | None, text: str | None = None, saved: str | None = None
    ) -> None:
        """A finished draft (or ``None``: no draft yet); ``text`` an edited version to show;
        ``saved`` the report saved for this image (what ``modified`` compares with)."""
        self.streaming = False
        self.area.read_only = True
        record = record or {}
        self.saved_text = saved if saved is not None else report_text(record) if record else ""
        self.area.load_text(self.saved_text if text is None else text)
        self.set_reasoning(list(record.get("steps") or []))
        flags = list(record.get("flags") or [])
        w = self.query_one("#reading-flags", Static)
        w.update("flagged: " + "; ".join(flags) if flags else "")
        w.set_class(bool(flags), "-problems")
        self.update_title()

    def mark_saved(self) -> None:
        self.saved_text = self.text
        self.update_title()


class LabelsTable(DataTable):
    """CheXpert labels: the model's answer beside the labeler's reading of the impression;
    rows where they differ are marked (and listed in the record's ``disagreements``)."""

    BORDER_TITLE = "Labels"

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.add_columns("label", "model", "labeler", "")

    def show_record(self, record: dict[str, Any] | None) -> list[str]:
        """Fill the table; returns the labels marked as disagreements."""
        self.clear()
        record = record or {}
        model = dict(record.get("labels") or {})
        labeler = dict(record.get("labeler") or {})
        disagree = set(record.get("disagreements") or [])
        names = list(dict.fromkeys([*model, *labeler, *sorted(disagree)]))
        marked = []
        for name in names:
            mark = Text(DISAGREE, style="bold red") if name in disagree else Text("")
            if name in disagree:
                marked.append(name)
            self.add_row(
                Text(name),
                Text(LABEL_WORDS.get(model.get(name), str(model.get(name)))),
                Text(LABEL_WORDS.get(labeler.get(name), str(labeler.get(name)))),
                mark,
                key=name,
            )
        n = len(marked)
        self.border_title = (
            f"Labels ({n} disagreement{'s' if n != 1 else ''})" if names else "Labels"
        )
        return marked


class EhrPanel(Vertical):
    """The patient context sent with the drafts (when it is on)."""

    BORDER_TITLE = "EHR"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path = ""
        self.which = ""
        self.use = False

    def compose(self) -> ComposeResult:
        yield Static("no EHR file (e loads one)", id="reading-ehr-text", markup=False)

    def show(self, path: str, which: str, text: str) -> None:
        """The checked context of the current image (``which``: all images / its case)."""
        if path != self.path:
            self.path, self.use = path, True
        self.which = which
        try:
            data = json.loads(text) if text else {}
        except ValueError:
            data = {"context": text}
        lines = [
            f"{k}: {json.dumps(v) if isinstance(v, (dict, list)) else v}" for k, v in data.items()
        ]
        body = "\n".join(lines) if lines else "no context for this image in the EHR file"
        self.query_one("#reading-ehr-text", Static).update(body)
        self.update_title()

    def update_title(self) -> None:
        state = "" if not self.path else f" {self.which} ({'on' if self.use else 'off'})"
        self.border_title = f"EHR{state}"


class PathPrompt(ModalScreen[str | None]):
    """Ask for a file path (enter: take it, escape: cancel)."""

    BINDINGS = [("escape", "cancel", "cancel")]

    def __init__(self, question: str, value: str = "") -> None:
        super().__init__()
        self.question, self.value = question, value

    def compose(self) -> ComposeResult:
        with Vertical(id="reading-prompt"):
            yield Label(self.question, markup=False)
            yield Input(self.value, id="reading-prompt-input")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)
