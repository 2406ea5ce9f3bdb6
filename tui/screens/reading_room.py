"""The reading room: chest radiographs one at a time, a drafted report streaming in, edited and
saved by the person.

``llm-heuristics tui OUT --reading-room IMAGES...`` opens it
(:class:`tui.components.reading_app.ReadingApp`). Every engine
call runs in a named thread worker: ``reading.images`` lists the images, ``image.render`` draws
one with the window/level, ``report.draft`` drafts (its tokens arrive as ``delta``
notifications of that call), ``reading.ehr`` reads the patient context and ``reading.save``
writes the person's report (one JSONL line per image, atomically). Records are plain dicts of
the ``DraftRecord`` fields.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Static
from textual.worker import Worker, WorkerState

from engine.rpc.client import EngineClient, EngineGone
from tui.components.reading_keys import ReadingCommands, reading_bindings
from tui.components.reading_panes import (
    REASONING_PHASES,
    EhrPanel,
    LabelsTable,
    PathPrompt,
    ReadingImage,
    ReportPane,
    split_stream,
)
from tui.engine_link import describe_error

IGNORED_PHASES = ("labels", "icd", "json")  # structured output: the table shows it, not the text


@dataclass(eq=False)
class DraftDelta(Message):
    """A piece of the draft of ``image`` (posted from the client's reader thread)."""

    image: str
    text: str
    phase: str = ""
    attempt: str = ""  # the retry (a reply without the four headers) starts the text again


def as_dict(obj: Any) -> dict[str, Any]:
    """A record as a dict: a dataclass from the client's RESULTS, or JSON when the method's
    result type is unknown to this client (an older TUI against a newer engine)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    return dict(obj) if isinstance(obj, dict) else {}


class ReadingRoomScreen(Screen[None]):
    BINDINGS = reading_bindings()
    COMMANDS = {ReadingCommands}
    DEFAULT_CSS = """
    ReadingRoomScreen #reading-main { height: 1fr; }
    ReadingRoomScreen #reading-image { width: 40%; border: round $primary; }
    ReadingRoomScreen #reading-right { width: 1fr; }
    ReadingRoomScreen #reading-report-pane { height: 2fr; border: round $secondary; }
    ReadingRoomScreen #reading-report { height: 1fr; }
    ReadingRoomScreen #reading-flags.-problems { color: $warning; }
    ReadingRoomScreen #reading-bottom { height: 1fr; }
    ReadingRoomScreen #reading-labels { width: 3fr; border: round $secondary; }
    ReadingRoomScreen #reading-ehr { width: 2fr; border: round $secondary; }
    ReadingRoomScreen #reading-status { height: 1; background: $panel; }
    ReadingRoomScreen.-narrow #reading-image { width: 30%; }
    ReadingRoomScreen.-narrow #reading-ehr { display: none; }
    #reading-prompt { width: 70; height: auto; border: thick $primary; background: $surface; }
    PathPrompt { align: center middle; }
    """

    def __init__(
        self,
        paths: list[str],
        *,
        ehr: str = "",
        output: str = "",
        mode: str = "report",
        backend: str = "",
        model: str = "",
        host: str = "",
        base_url: str = "",
        size: int = 512,
    ) -> None:
        super().__init__()
        self.paths = list(paths)
        self.ehr_path = ehr
        self.output = output
        self.mode = mode
        self.llm = {"backend": backend, "model": model, "host": host, "base_url": base_url}
        self.render_size = size
        self.images: list[str] = []
        self.index = 0
        self.records: dict[str, dict[str, Any]] = {}  # image -> the draft's record
        self.edits: dict[str, str] = {}  # image -> unsaved text (kept when moving on)
        self.saved: dict[str, str] = {}  # image -> the report saved in the output file
        self.streams: dict[str, list[tuple[str, str]]] = {}  # image -> [(phase, text)]
        self.attempts: dict[str, str] = {}  # image -> the attempt being streamed
        self.center, self.width = 127.5, 255.0
        self.running: Any = None  # the draft call that x cancels
        self.drafting = ""  # the image being drafted (one draft at a time per engine)
        self._flush_pending = False
        self.quit_warned = False

    # --- layout ------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="reading-main"):
            yield ReadingImage(id="reading-image")
            with Vertical(id="reading-right"):
                yield ReportPane(id="reading-report-pane")
                with Horizontal(id="reading-bottom"):
                    yield LabelsTable(id="reading-labels")
                    yield EhrPanel(id="reading-ehr")
        yield Static("connecting to the engine...", id="reading-status", markup=False)
        yield Footer()

    @property
    def image_pane(self) -> ReadingImage:
        return self.query_one("#reading-image", ReadingImage)

    @property
    def report(self) -> ReportPane:
        return self.query_one("#reading-report-pane", ReportPane)

    @property
    def labels(self) -> LabelsTable:
        return self.query_one("#reading-labels", LabelsTable)

    @property
    def ehr(self) -> EhrPanel:
        return self.query_one("#reading-ehr", EhrPanel)

    @property
    def current(self) -> str:
        return self.images[self.index] if self.images else ""

    def set_status(self, text: str) -> None:
        self.query_one("#reading-status", Static).update(text)

    def _api(self, method: str, params: dict[str, Any], **kw: Any) -> Any:
        client: EngineClient | None = getattr(self.app, "client", None)
        if client is None or not client.alive:
            raise EngineGone("not connected to an engine")
        return client.api(method, params, **kw)

    # --- start: the images, the EHR ----------------------------------------------------------
    @work(thread=True, name="images", group="reading-load", exit_on_error=False)
    def start(self) -> None:
        images: list[str] = list(self._api("reading.images", {"paths": self.paths}))
        if self.output:  # reports saved in an earlier session come back
            text = self._api("reading.saved", {"output": self.output}).text
            self.app.call_from_thread(self._saved_loaded, text)
        self.app.call_from_thread(self._images_loaded, images)
        if self.ehr_path:
            self._load_ehr(self.ehr_path, images[0])

    def _saved_loaded(self, text: str) -> None:
        for n, line in enumerate(text.splitlines(), 1):
            try:
                rec = json.loads(line) if line.strip() else None
            except ValueError:
                self.notify(
                    f"{self.output} line {n} is not JSON (left as it is)", severity="warning"
                )
                continue
            if isinstance(rec, dict) and isinstance(rec.get("image"), str):
                self.records[rec["image"]] = rec
                self.saved[rec["image"]] = str(rec.get("report", ""))

    def _images_loaded(self, images: list[str]) -> None:
        self.images, self.index = images, 0
        self.show_image()

    def show_image(self) -> None:
        """Show the current image, its draft (or edits) and labels; render it."""
        image = self.current
        if not image:
            return
        rec = self.records.get(image)
        self.report.show_record(rec, self.edits.get(image), self.saved.get(image))
        if rec is None and self.streams.get(image):
            self._flush()
        self.labels.show_record(rec)
        self.image_pane.border_title = f"Image {self.index + 1}/{len(self.images)}"
        self._status()
        self.render_image(image, self.center, self.width)
        if self.ehr.path:  # the context of this image (a multi-case file)
            self.load_ehr(self.ehr.path, image)

    def _status(self, extra: str = "") -> None:
        image = self.current
        rec = self.records.get(image)
        what = "no draft (d drafts)" if rec is None else f"draft: {rec.get('model') or '?'}"
        if image in self.saved:
            what += ", saved"
        if image in self.edits:
            what += ", unsaved edits"
        self.set_status(
            f"{self.index + 1}/{len(self.images)} {Path(image).name} | {what}"
            + (f" | {extra}" if extra else "")
        )

    @work(thread=True, name="render", group="reading-render", exclusive=True, exit_on_error=False)
    def render_image(self, image: str, center: float, width: float) -> None:
        p = {"path": image, "size": self.render_size, "center": center, "width": width}
        res = self._api("image.render", p)
        self.app.call_from_thread(self._rendered, image, res)

    def _rendered(self, image: str, res: Any) -> None:
        wanted = (f"{self.center:g}", f"{self.width:g}")
        if image == self.current and (res.info.get("center"), res.info.get("width")) == wanted:
            self.image_pane.show_rendered(Path(image).name, res.png_base64, res.info)

    # --- navigation --------------------------------------------------------------------------
    def _go(self, step: int) -> None:
        if not self.images:
            return
        new = self.index + step
        if not 0 <= new < len(self.images):
            self.notify("last image" if step > 0 else "first image", timeout=2)
            return
        self._keep_edits()
        self.index = new
        self.show_image()

    def _keep_edits(self) -> None:
        image = self.current
        if image and self.report.dirty and not self.report.streaming:
            self.edits[image] = self.report.text
            self.notify(f"unsaved edits of {Path(image).name} kept (ctrl+s saves)", timeout=3)
        elif image:
            self.edits.pop(image, None)

    def action_next_image(self) -> None:
        self._go(1)

    def action_previous_image(self) -> None:
        self._go(-1)

    # --- window/level -------------------------------------------------------------------------
    def action_window(self, factor: float) -> None:
        self.width = min(4096.0, max(1.0, self.width * factor))
        self._rerender()

    def action_level(self, step: float) -> None:
        self.center = min(2048.0, max(-2048.0, self.center + step))
        self._rerender()

    def action_reset_window(self) -> None:
        self.center, self.width = 127.5, 255.0
        self._rerender()

    def _rerender(self) -> None:
        if self.current:
            self.render_image(self.current, self.center, self.width)

    # --- drafting -----------------------------------------------------------------------------
    def action_draft(self) -> None:
        image = self.current
        if not image:
            return
        if self.running is not None or self.drafting:
            self.notify(f"drafting {Path(self.drafting).name} (x cancels it)")
            return
        if self.report.dirty and not self.report.streaming:
            self.notify("the report has edits: save (ctrl+s) or undo them before re-drafting")
            return
        self.drafting = image
        self.streams[image] = []
        self.attempts.pop(image, None)
        self.records.pop(image, None)
        self.edits.pop(image, None)
        self.saved.pop(image, None)  # the new draft is what shows (and what ctrl+s saves)
        self.report.stream("", "")
        self.labels.show_record(None)
        self._status("drafting...")
        self.draft(image)

    @work(thread=True, name="draft", group="reading-draft", exit_on_error=False)
    def draft(self, image: str) -> None:
        params: dict[str, Any] = {
            "images": [image],
            "mode": self.mode,
            "labels": True,
            "stream": True,
            **{k: v for k, v in self.llm.items() if v},
        }
        if self.ehr.use and self.ehr.path and self.ehr.which != "no case":
            params["ehr"] = self.ehr.path  # an image without a case is drafted from the image

        def on_event(method: str, p: dict[str, Any]) -> None:  # the client's reader thread
            if method == "delta":
                img = str(p.get("image") or image)
                text, phase = str(p.get("text", "")), str(p.get("phase", ""))
                self.post_message(DraftDelta(img, text, phase, str(p.get("attempt", ""))))

        try:
            res = self._api(
                "report.draft",
                params,
                on_event=on_event,
                on_call=lambda call: setattr(self, "running", call),
            )
        finally:
            self.running = None
            self.drafting = ""
        result = as_dict(res)
        records = [as_dict(r) if not isinstance(r, dict) else r for r in result.get("records", [])]
        self.app.call_from_thread(self._drafted, image, records, str(result.get("message", "")))

    def on_draft_delta(self, m: DraftDelta) -> None:
        if m.phase in IGNORED_PHASES:
            return
        parts = self.streams.setdefault(m.image, [])
        if m.attempt and m.attempt != self.attempts.get(m.image, m.attempt):
            parts.clear()  # the retry's reply replaces the first one
        self.attempts[m.image] = m.attempt
        parts.append((m.phase, m.text))
        if m.image == self.current and not self._flush_pending:
            self._flush_pending = True
            self.set_timer(0.05, self._flush)  # many tokens, one repaint

    def _flush(self) -> None:
        self._flush_pending = False
        image = self.current
        if image in self.records:
            return  # the finished record is shown already
        parts = self.streams.get(image, [])
        reasoning = "".join(t for ph, t in parts if ph in REASONING_PHASES)
        rest = "".join(t for ph, t in parts if ph not in REASONING_PHASES)
        more, report = split_stream(rest, self.mode)
        self.report.stream(reasoning + more, report)

    def _drafted(self, image: str, records: list[dict[str, Any]], message: str) -> None:
        rec = next((r for r in records if r.get("image") == image), records[0] if records else {})
        if not rec:
            self.notify(message or f"{Path(image).name}: no draft came back", severity="warning")
            return
        self.records[image] = rec
        self.streams.pop(image, None)
        if image == self.current:
            self.report.show_record(rec)
            marked = self.labels.show_record(rec)
            flags = rec.get("flags") or []
            note = f"{len(marked)} label disagreement(s)" if marked else "labels agree"
            self._status(f"drafted; {note}" + (f"; {len(flags)} flag(s)" if flags else ""))
        self.notify(f"drafted {Path(image).name}", timeout=2)

    def action_cancel(self) -> None:
        call = self.running
        if call is None:
            self.notify("nothing is running")
            return
        call.cancel_request()
        self.notify("cancel requested")

    # --- reasoning, editing, saving ----------------------------------------------------------
    def action_toggle_reasoning(self) -> None:
        c = self.report.reasoning
        c.collapsed = not c.collapsed

    def action_edit_report(self) -> None:
        if self.report.streaming:
            self.notify("the draft is still streaming (x cancels it)")
            return
        area = self.report.area
        area.read_only = False
        if area.cursor_location == (0, 0):  # a fresh draft: go on writing after the impression
            area.move_cursor(area.document.end)
        area.focus()
        self.report.update_title()
        self.notify("editing the report: Escape leaves edit mode, ctrl+s saves", timeout=3)

    def action_save_report(self) -> None:
        image = self.current
        if not image or self.report.streaming:
            return
        if not self.output:
            self.notify("no file to save into (--reports FILE)", severity="warning")
            return
        self.save(image, self.report.text, self.records.get(image, {}))

    @work(thread=True, name="save", group="reading-save", exit_on_error=False)
    def save(self, image: str, text: str, record: dict[str, Any]) -> None:
        rec = {k: v for k, v in record.items() if k not in ("image", "report")}
        res = self._api(
            "reading.save", {"output": self.output, "image": image, "text": text, "record": rec}
        )
        self.app.call_from_thread(self._saved, image, text, res.path)

    def _saved(self, image: str, text: str, path: str) -> None:
        self.edits.pop(image, None)
        self.saved[image] = text
        if image == self.current and self.report.text == text:
            self.report.mark_saved()
        self._status(f"saved to {path}")
        self.notify(f"saved {Path(image).name} to {path}", timeout=3)

    # --- EHR ----------------------------------------------------------------------------------
    def action_load_ehr(self) -> None:
        def answered(path: str | None) -> None:
            if path:
                self.load_ehr(path, self.current)

        self.app.push_screen(PathPrompt("EHR JSON file:", self.ehr.path), answered)

    @work(thread=True, name="ehr", group="reading-ehr", exit_on_error=False)
    def load_ehr(self, path: str, image: str) -> None:
        self._load_ehr(path, image)

    def _load_ehr(self, path: str, image: str) -> None:
        res = self._api("reading.ehr", {"path": path, "image": image})
        self.app.call_from_thread(self._ehr_loaded, path, image, res)

    def _ehr_loaded(self, path: str, image: str, res: Any) -> None:
        if image == self.current:
            self.ehr.show(path, res.name, res.text)

    def action_toggle_ehr(self) -> None:
        if not self.ehr.path:
            self.notify("no EHR file loaded (e loads one)")
            return
        self.ehr.use = not self.ehr.use
        self.ehr.update_title()
        self.notify(f"EHR {'on' if self.ehr.use else 'off'} for the next drafts", timeout=2)

    # --- impression in a radiologist's style (issue 20) ---------------------------------------
    @work(thread=True, name="impression", group="reading-impression", exit_on_error=False)
    def action_impression(self) -> None:
        """The findings of the report on screen, to the impression dialog (profiles listed)."""
        from tui.components.reading_impression import ImpressionDialog, findings_of

        rads = [str(r) for r in self._api("report.style_list", {})]
        findings = findings_of(self.report.text)
        llm = {k: v for k, v in self.llm.items() if v}

        def call(params: dict[str, Any]) -> Any:
            return self._api("report.impression", {**llm, **params})

        self.app.call_from_thread(self.app.push_screen, ImpressionDialog(call, rads, findings))

    # --- help, quit, errors -------------------------------------------------------------------
    def action_toggle_help(self) -> None:
        from textual.widgets import HelpPanel

        if self.query(HelpPanel):
            self.app.action_hide_help_panel()
        else:
            self.app.action_show_help_panel()

    def action_quit(self) -> None:
        self._keep_edits()
        if self.edits and not self.quit_warned:
            self.quit_warned = True
            n = len(self.edits)
            self.notify(f"{n} report(s) with unsaved edits: q again quits without them", timeout=5)
            return
        self.app.exit(0)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state != WorkerState.ERROR:
            return
        name, err = event.worker.name, event.worker.error
        if name == "draft":  # what streamed stays on screen, as a draft not yet changed
            self.report.streaming = False
            self.report.saved_text = self.report.text
            self.report.update_title()
        text, severity = describe_error(err)
        first = text.splitlines()[0] if text else "failed"
        self._status(f"{name} failed: {first}")
        self.notify(f"{name}: {first}", severity=severity, timeout=8)  # type: ignore[arg-type]
