"""The llm-heuristics review workstation: a thin, never-blocking client of the engine.

Every engine call runs in a named thread worker (``@work(thread=True)``) that posts a small
message back; one handler (:meth:`LlmhApp.on_worker_state_changed`) turns worker errors into
notifications, and a lost engine into a banner with a reconnect key.
"""

from __future__ import annotations

import base64
import logging
import time
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import App, ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import (
    DataTable,
    Footer,
    Header,
    Input,
    Static,
    TabbedContent,
    TabPane,
    Tree,
)
from textual.worker import Worker, WorkerState

from tui import messages as msg
from tui.commands import ReviewCommands
from tui.components.editor import HeuristicEditor, syntax_problems, unified_diff
from tui.components.groups import GroupsPane
from tui.components.preview import PreviewPane
from tui.components.rationale import RationalePane
from tui.components.reports import ReportsPane
from tui.components.tree import DicomTree
from tui.keymap import KEYS, bindings, load_keymap
from tui.viewmodel import GroupView, Workspace, index_rows

log = logging.getLogger(__name__)

HEURISTIC = "heuristic.py"
GENERATED = "heuristic.generated.py"


class LlmhApp(App[int]):
    """``LlmhApp(out_dir, engine="inprocess")``; ``client=`` injects a started EngineClient."""

    TITLE = "llm-heuristics"
    CSS_PATH = "app.tcss"
    BINDINGS = bindings()
    COMMANDS = App.COMMANDS | {ReviewCommands}
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]

    def __init__(
        self,
        out_dir: str | Path,
        engine: str = "inprocess",
        *,
        client: Any = None,
        backend: str | None = None,
        model: str | None = None,
        dicom_dir: str | None = None,
        keymap: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.out_dir = str(out_dir)
        self.engine_spec = engine
        self.client = client
        self.backend = backend
        self.model = model
        self.dicom_dir = dicom_dir
        self.user_keymap = load_keymap() if keymap is None else keymap
        self.effective_keys = {k.id: self.user_keymap.get(k.id, k.key) for k in KEYS}
        self.ws = Workspace()
        self.engine_methods: set[str] = set()
        self.engine_lost = ""
        self.running: Any = None  # the engine call that x cancels
        self.remap_group: str | None = None
        self.reports_wanted = False  # the Reports tab was shown: keep its texts loaded
        self.started = time.perf_counter()
        self.ready_at: float | None = None  # seconds from construction to a loaded workspace

    # --- layout ------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("connecting to the engine...", id="status", markup=False)
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield DicomTree(id="tree")
                yield PreviewPane(id="preview")
            with Vertical(id="work"):
                yield GroupsPane(id="groups")  # the heart of the review: the widest pane
                with Horizontal(id="bottom"):
                    yield RationalePane(id="rationale")
                    with TabbedContent(id="side", initial="side-heuristic"):
                        with TabPane("Heuristic", id="side-heuristic"):
                            yield HeuristicEditor(id="editor")
                        with TabPane("Reports", id="side-reports"):
                            yield ReportsPane(id="reports")
        yield Footer()

    def on_mount(self) -> None:
        if self.user_keymap:
            self.set_keymap(self.user_keymap)
        self.sub_title = self.out_dir
        self.query_one(GroupsPane).table.focus()
        self.call_after_refresh(self.connect)  # first paint, then the engine

    # --- pieces --------------------------------------------------------------------------
    @property
    def main_screen(self) -> Any:
        return self.screen_stack[0] if self.screen_stack else self.screen

    @property
    def groups(self) -> GroupsPane:
        return self.main_screen.query_one(GroupsPane)

    @property
    def editor(self) -> HeuristicEditor:
        return self.main_screen.query_one(HeuristicEditor)

    @property
    def reports(self) -> ReportsPane:
        return self.main_screen.query_one(ReportsPane)

    @property
    def rationale(self) -> RationalePane:
        return self.main_screen.query_one(RationalePane)

    def selected_group(self) -> GroupView | None:
        gid = self.groups.selected()
        return self.ws.groups.get(gid) if gid else None

    def selected_subject(self) -> tuple[str, str]:
        tree = self.main_screen.query_one(DicomTree)
        node = tree.cursor_node
        data = node.data if node is not None else None
        if data and data.get("kind") == "series":
            sub, ses, _ = data["key"].split("|", 2)
            return sub, ses
        if data:
            return data.get("subject", ""), data.get("session", "")
        subs = self.ws.subjects()
        return (subs[0] if subs else ""), ""

    def set_status(self, text: str, error: bool = False) -> None:
        w = self.main_screen.query_one("#status", Static)
        w.update(text)
        w.set_class(error, "-error")

    # --- the engine --------------------------------------------------------------------
    def _on_engine_event(self, method: str, params: dict[str, Any]) -> None:
        """Runs on the client's reader thread: only post messages from here."""
        if method == "delta":
            gid = params.get("group_id") or self.remap_group or ""
            self.post_message(
                msg.EngineDelta(params.get("text", ""), gid, params.get("phase", "rationale"))
            )
        elif method == "output":
            self.post_message(
                msg.EngineOutput(params.get("text", ""), params.get("stream", "stdout"))
            )
        elif method == "log":
            self.post_message(
                msg.EngineLog(
                    str(params.get("level", "")),
                    str(params.get("logger", "")),
                    str(params.get("message", "")),
                )
            )
        elif method == "progress":
            self.post_message(msg.Progress(params.get("fraction"), str(params.get("message", ""))))

    def call_engine(
        self, method: str, params: dict[str, Any] | None = None, *, track: bool = False
    ) -> Any:
        """A blocking engine call, for worker threads only."""
        if self.client is None or not self.client.alive:
            from engine.rpc.protocol import EngineGone

            raise EngineGone(self.engine_lost or "not connected to an engine")
        call = self.client.request(method, params or {}, on_event=None)
        if track:
            self.running = call
        try:
            return call.result()
        finally:
            if track:
                self.running = None

    @work(thread=True, name="connect", group="engine", exit_on_error=False)
    def connect(self) -> None:
        if self.client is None or not self.client.alive:
            from engine.rpc.client import EngineClient

            if self.engine_spec.split("+")[0].split(":")[0] == "inprocess":
                import engine.rpc.review_methods  # noqa: F401 - registers decide/undo/...

            self.client = EngineClient(self.engine_spec, on_notification=self._on_engine_event)
            self.client.start()
        elif self.client.on_notification is None:
            self.client.on_notification = self._on_engine_event
        # known here, before the loads below pick their methods (the handler of EngineReady
        # runs later, on the app's thread: waiting for it meant the slow fallbacks)
        self.engine_methods = set(self.client.hello.get("methods", []))
        self.post_message(msg.EngineReady(dict(self.client.hello)))
        self._load_workspace()

    def _load_workspace(self) -> None:
        out = self.out_dir
        missing: list[str] = []

        def get(method: str, key: str) -> list[dict[str, Any]]:
            try:
                return list(self.call_engine(method, {"out_dir": out})[key])
            except Exception as exc:  # noqa: BLE001 - a missing step is shown, not fatal
                from engine.rpc.protocol import EngineGone

                if isinstance(exc, EngineGone):
                    raise
                missing.append(f"{method}: {getattr(exc, 'message', exc)}")
                return []

        if "review.index" in self.engine_methods:
            series = self._series_index(missing)
        else:
            series = get("workspace.series", "series")
        groups = get("workspace.groups", "groups")
        proposal = (
            "review.proposed" if "review.proposed" in self.engine_methods else "workspace.mappings"
        )
        mappings = get(proposal, "mappings")
        review: dict[str, Any] = {}
        if "decisions" in self.engine_methods:
            review = self.call_engine("decisions", {"out_dir": out})
        self.post_message(msg.WorkspaceLoaded(series, groups, mappings, review, missing))
        try:
            text = self.call_engine("workspace.report", {"out_dir": out, "name": HEURISTIC})["text"]
            self.post_message(msg.HeuristicText(text))
        except Exception:  # noqa: BLE001 - not generated yet
            pass
        if self.reports_wanted:
            self._load_reports()

    def _series_index(self, missing: list[str]) -> list[dict[str, Any]]:
        """``review.index`` in its compact (column arrays) shape; the row shape from an engine
        that does not know ``columns``."""
        from engine.rpc.protocol import EngineGone, RpcError

        for params in ({"out_dir": self.out_dir, "columns": True}, {"out_dir": self.out_dir}):
            try:
                return index_rows(self.call_engine("review.index", params))
            except EngineGone:
                raise
            except RpcError as exc:
                if exc.code == -32602 and "columns" in params:  # invalid params: an older engine
                    continue
                missing.append(f"review.index: {exc.message}")
                return []
        return []

    def _load_reports(self) -> None:
        """The step reports (large on big studies: fetched only once the Reports tab shows)."""
        for name in ("grouping", "mapping", "heuristic_report.txt", "conversion_report.txt"):
            try:
                res = self.call_engine("workspace.report", {"out_dir": self.out_dir, "name": name})
            except Exception as exc:  # noqa: BLE001 - reports appear as steps run
                from engine.rpc.protocol import EngineGone

                if isinstance(exc, EngineGone):
                    raise
                continue
            self.post_message(msg.ReportText(name, res["text"]))

    @work(thread=True, name="reports", group="reports", exclusive=True, exit_on_error=False)
    def load_reports(self) -> None:
        self._load_reports()

    @on(TabbedContent.TabActivated, "#side")
    def _side_tab(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id == "side-reports":
            self.reports.build()
            if not self.reports_wanted:
                self.reports_wanted = True
                self.load_reports()

    def on_engine_ready(self, m: msg.EngineReady) -> None:
        self.engine_lost = ""
        self.engine_methods = set(m.hello.get("methods", []))
        where = f"{m.hello.get('host', '?')} ({m.hello.get('mode', '?')}, pid {m.hello.get('pid', '?')})"
        self.set_status(f"engine: {where}   OUT: {self.out_dir}")
        self.reports.log_line(f"connected to engine {where}")

    def on_engine_lost(self, m: msg.EngineLost) -> None:
        self.engine_lost = m.reason
        key = self.effective_keys.get("engine.reconnect", "f6")
        self.set_status(
            f"ENGINE LOST: {m.reason.splitlines()[0]}   press {key} to reconnect", error=True
        )
        self.reports.log_line(f"engine lost: {m.reason}")
        self.notify(f"engine lost; press {key} to reconnect", severity="error", timeout=10)

    def on_workspace_loaded(self, m: msg.WorkspaceLoaded) -> None:
        keep = self.groups.selected()
        self.ws = Workspace.build(m.series, m.groups, m.mappings, m.review)
        self.main_screen.query_one(DicomTree).load(self.ws)
        self.groups.load(self.ws, keep)
        self._show_selected()
        for line in m.missing:
            self.reports.log_line(line)
        if self.ready_at is None:
            self.ready_at = time.perf_counter() - self.started
        n_user = sum(1 for g in self.ws.groups.values() if g.decision)
        self.reports.log_line(
            f"workspace: {len(self.ws.series)} series, {len(self.ws.groups)} groups, {n_user} decided by you"
        )

    def on_report_text(self, m: msg.ReportText) -> None:
        name = {"heuristic_report.txt": "validation", "conversion_report.txt": "conversion"}.get(
            m.name, m.name
        )
        self.reports.set_report(name, m.text)

    def on_heuristic_text(self, m: msg.HeuristicText) -> None:
        if m.generated:
            self.editor.pending_generated = m.generated
            diff = unified_diff(self.editor.text, m.generated)
            self.reports.set_report("diff", diff or "(no difference)", show=True)
            key = self.effective_keys.get("heuristic.replace", "ctrl+g")
            self.notify(f"regenerated beside your edits: see the Diff tab; {key} takes it")
            return
        self.editor.load(m.text, generated=True)

    def on_engine_delta(self, m: msg.EngineDelta) -> None:
        if m.phase in ("rationale", ""):
            self.rationale.delta(m.group_id, m.text)

    def on_engine_output(self, m: msg.EngineOutput) -> None:
        for line in m.text.rstrip("\n").splitlines():
            self.reports.log_line(line)

    def on_engine_log(self, m: msg.EngineLog) -> None:
        self.reports.log_line(f"{m.level} {m.logger}: {m.message}")

    def on_progress(self, m: msg.Progress) -> None:
        pct = f"{m.fraction * 100:.0f}% " if isinstance(m.fraction, int | float) else ""
        self.sub_title = f"{pct}{m.message}"

    def on_review_changed(self, m: msg.ReviewChanged) -> None:
        before = {gid: g.mapping for gid, g in self.ws.groups.items()}
        self.ws.set_review(m.review)
        for gid, g in self.ws.groups.items():
            if g.mapping is not before.get(gid):
                self.groups.update_group(gid)
        self._show_selected()
        if m.what:
            self.reports.log_line(m.what)
            self.notify(m.what, timeout=3)

    def on_validation_done(self, m: msg.ValidationDone) -> None:
        self.editor.set_problems(m.problems, ok_text="validation: OK" if m.ok else "")
        if m.text:
            self.reports.set_report("validation", m.text)

    def on_preview_ready(self, m: msg.PreviewReady) -> None:
        self.main_screen.query_one(PreviewPane).show(m.key, m.png, m.info)

    def on_task_done(self, m: msg.TaskDone) -> None:
        self.sub_title = self.out_dir
        if m.name.startswith("remap"):
            self.remap_group = None
            self.rationale.finish()
        if m.message:
            self.notify(m.message, severity="information" if m.ok else "error", timeout=5)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place worker errors end up: a lost engine, or a message to the person."""
        if event.state != WorkerState.ERROR:
            return
        from engine.rpc.protocol import EngineGone, RpcError

        err = event.worker.error
        name = event.worker.name
        if name.startswith("remap"):
            self.remap_group = None
            self.rationale.finish()
        self.sub_title = self.out_dir
        if isinstance(err, EngineGone):
            self.post_message(msg.EngineLost(err.message))
            return
        text = err.message if isinstance(err, RpcError) else f"{type(err).__name__}: {err}"
        data = getattr(err, "data", None)
        self.reports.log_line(f"{name} failed: {text}")
        if isinstance(data, dict) and (data.get("stdout") or data.get("stderr")):
            self.reports.log_line((data.get("stdout") or "") + (data.get("stderr") or ""))
        self.notify(
            f"{name}: {text.splitlines()[0] if text else 'failed'}", severity="error", timeout=8
        )

    # --- selection -------------------------------------------------------------------------
    def _show_selected(self) -> None:
        from textual.app import ScreenStackError
        from textual.css.query import NoMatches

        try:
            self.rationale.show(self.selected_group())
        except (NoMatches, ScreenStackError):  # shutting down
            pass

    @on(DataTable.RowHighlighted, "#groups-table")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_selected()

    @on(Tree.NodeHighlighted, "#tree")
    def _tree_highlighted(self, event: Tree.NodeHighlighted[dict[str, Any]]) -> None:
        data = event.node.data or {}
        if data.get("kind") == "series":
            gid = self.ws.series_group.get(data["key"])
            if gid:
                self.groups.select(gid)
            self.load_preview(data["key"])

    @work(thread=True, name="preview", group="preview", exclusive=True, exit_on_error=False)
    def load_preview(self, key: str) -> None:
        params: dict[str, Any] = {"out_dir": self.out_dir, "key": key, "size": 128}
        if self.dicom_dir:
            params["dicom_dir"] = self.dicom_dir
        res = self.call_engine("preview", params)
        self.post_message(msg.PreviewReady(key, base64.b64decode(res["png_base64"]), res))

    # --- review actions --------------------------------------------------------------------
    def _need_review(self) -> bool:
        if "decide" not in self.engine_methods:
            self.notify("this engine has no review methods (decide/undo/redo)", severity="error")
            return False
        return True

    @work(thread=True, name="decide", group="review", exit_on_error=False)
    def decide(self, group_id: str, action: str, **fields: Any) -> None:
        res = self.call_engine(
            "decide", {"out_dir": self.out_dir, "group_id": group_id, "action": action, **fields}
        )
        d = res.get("decision", {})
        self.post_message(msg.ReviewChanged(res, f"{group_id}: {action} saved"))
        del d

    def action_accept(self) -> None:
        g = self.selected_group()
        if g is None or not self._need_review():
            return
        m = g.mapping
        if m.is_skip:
            self.decide(g.group_id, "skip", skip_reason=m.skip_reason)
        else:
            self.decide(
                g.group_id, "accept", datatype=m.datatype, suffix=m.suffix, entities=m.entities
            )
        self._cursor_down()

    def _cursor_down(self) -> None:
        t = self.groups.table
        if t.cursor_row < t.row_count - 1:
            t.move_cursor(row=t.cursor_row + 1, animate=False)

    def action_edit_name(self) -> None:
        from tui.screens.edit_name import EditNameScreen

        g = self.selected_group()
        if g is None or not self._need_review():
            return
        current = "" if g.mapping.is_skip else g.name

        def done(result: tuple[str, str, dict[str, str]] | None) -> None:
            if result is not None:
                dt, suffix, ents = result
                self.decide(g.group_id, "edit", datatype=dt, suffix=suffix, entities=ents)

        self.push_screen(EditNameScreen(g.group_id, current), done)

    def action_skip(self) -> None:
        g = self.selected_group()
        if g is not None and self._need_review():
            self.decide(g.group_id, "skip")

    def action_unskip(self) -> None:
        g = self.selected_group()
        if g is None or not self._need_review():
            return
        if g.decision is not None and g.decision.action == "skip":
            self.decide(g.group_id, "unskip")
        elif g.mapping.is_skip:
            self.notify("skipped by the rules: give it a name instead (edit)")
            self.action_edit_name()
        else:
            self.notify(f"{g.group_id} is not skipped")

    @work(thread=True, name="undo", group="review", exit_on_error=False)
    def _move(self, op: str) -> None:
        res = self.call_engine(op, {"out_dir": self.out_dir})
        ch = res.get("changed")
        what = f"{op}: {ch['group_id']} {ch['action']}" if ch else f"nothing to {op}"
        self.post_message(msg.ReviewChanged(res, what))

    def action_undo(self) -> None:
        if self._need_review():
            self._move("undo")

    def action_redo(self) -> None:
        if self._need_review():
            self._move("redo")

    # --- engine tasks ----------------------------------------------------------------------
    def _llm_args(self) -> list[str]:
        args = ["--backend", self.backend or "llama-cpp"]
        if self.model:
            args += ["--model", self.model]
        return args

    @work(thread=True, name="remap", group="task", exclusive=True, exit_on_error=False)
    def remap(self, group_id: str | None) -> None:
        self.remap_group = group_id
        if group_id and "review.remap" in self.engine_methods:
            params = {
                "out_dir": self.out_dir,
                "group_ids": [group_id],
                "backend": self.backend,
                "model": self.model,
            }
            self.call_engine("review.remap", params, track=True)
        else:
            self.call_engine("map", {"out_dir": self.out_dir, "args": self._llm_args()}, track=True)
        self._load_workspace()
        self.post_message(msg.TaskDone("remap", True, f"re-mapped {group_id or 'unsure groups'}"))

    def action_remap(self) -> None:
        g = self.selected_group()
        if g is not None:
            self.rationale.live.pop(g.group_id, None)
            self.remap(g.group_id)

    def action_remap_unsure(self) -> None:
        self.remap(None)

    def action_cancel(self) -> None:
        call = self.running
        if call is not None:
            call.cancel_request()
            self.notify("cancel requested")
        else:
            self.notify("nothing is running")

    @work(thread=True, name="generate", group="task", exclusive=True, exit_on_error=False)
    def generate(self, beside_edits: bool) -> None:
        if "review.apply" in self.engine_methods:
            self.call_engine("review.apply", {"out_dir": self.out_dir})
        target = GENERATED if beside_edits else HEURISTIC
        res = self.call_engine(
            "generate",
            {"out_dir": self.out_dir, "output": str(Path(self.out_dir) / target)},
            track=True,
        )
        text = self.call_engine("workspace.report", {"out_dir": self.out_dir, "name": target})[
            "text"
        ]
        self.post_message(msg.ReportText("validation", res.get("stdout", "")))
        if beside_edits:
            self.post_message(msg.HeuristicText("", generated=text))
        else:
            self.post_message(msg.HeuristicText(text))
            self._load_workspace()
        self.post_message(msg.TaskDone("generate", True, f"wrote {target}"))

    def action_generate(self) -> None:
        self.generate(self.editor.hand_edited)

    def action_take_generated(self) -> None:
        ed = self.editor
        if not ed.pending_generated:
            self.notify("no regenerated version waiting")
            return
        text, ed.pending_generated = ed.pending_generated, ""
        ed.load(text, generated=True)
        ed.saved_text = ""  # force the save
        self.save_heuristic(text)

    @work(thread=True, name="save", group="task", exclusive=True, exit_on_error=False)
    def save_heuristic(self, text: str) -> None:
        self.call_engine("heuristic.save", {"out_dir": self.out_dir, "text": text})
        self.call_from_thread(self.editor.mark_saved)
        self._validate()

    def action_save_heuristic(self) -> None:
        text = self.editor.text
        problems = syntax_problems(text)
        if problems:
            self.editor.set_problems(problems)
            self.notify("not saved: fix the syntax error first", severity="error")
            return
        self.save_heuristic(text)

    def _validate(self) -> None:
        from engine.rpc.protocol import RpcError

        try:
            res = self.call_engine("validate", {"out_dir": self.out_dir}, track=True)
            text = res.get("stdout", "")
            self.post_message(msg.ValidationDone(True, [], text))
            self.post_message(
                msg.TaskDone("validate", True, (text.strip().splitlines() or ["validated"])[-1])
            )
        except RpcError as exc:
            if exc.code not in (-32003, -32002):  # engine gone, cancelled: the handler's business
                raise
            data = exc.data if isinstance(exc.data, dict) else {}
            text = (data.get("stdout") or "") + (data.get("stderr") or "") or exc.message
            self.post_message(msg.ValidationDone(False, problem_lines(text), text))
            self.post_message(msg.TaskDone("validate", False, "validation found problems"))

    @work(thread=True, name="validate", group="task", exclusive=True, exit_on_error=False)
    def validate(self) -> None:
        self._validate()

    def action_validate(self) -> None:
        if self.editor.dirty:
            self.action_save_heuristic()  # saving validates
        else:
            self.validate()

    @work(thread=True, name="convert", group="task", exclusive=True, exit_on_error=False)
    def convert(self, subject: str, session: str, dry_run: bool) -> None:
        params: dict[str, Any] = {
            "out_dir": self.out_dir,
            "subject": subject,
            "args": ["--dry-run"] if dry_run else [],
        }
        if session:
            params["session"] = session
        if self.dicom_dir:
            params["args"] = [*params["args"], "--dicom-dir", self.dicom_dir]
        res = self.call_engine("convert", params, track=True)
        self.post_message(
            msg.ReportText("conversion", res.get("stdout", "") + res.get("stderr", ""))
        )
        self.call_from_thread(self.reports.show, "conversion")
        self.post_message(
            msg.TaskDone("convert", True, f"{'dry run of ' if dry_run else ''}sub-{subject} done")
        )

    def action_convert(self, dry_run: bool = True) -> None:
        sub, ses = self.selected_subject()
        if not sub:
            self.notify("no subject to convert", severity="error")
            return
        self.convert(sub, ses, dry_run)

    # --- views ----------------------------------------------------------------------------
    def action_matrix(self) -> None:
        from tui.screens.matrix import MatrixScreen

        def done(gid: str | None) -> None:
            if gid:
                self.groups.select(gid)

        self.push_screen(MatrixScreen(self.ws), done)

    def action_focus_filter(self) -> None:
        self.query_one("#group-filter", Input).focus()

    def action_sort(self) -> None:
        self.groups.sort_by()
        self.notify(f"sorted by {self.groups.sort_col}", timeout=2)

    def _pane_of(self, w: Widget | None) -> Widget | None:
        panes = (DicomTree, GroupsPane, RationalePane, PreviewPane, HeuristicEditor, ReportsPane)
        while w is not None and not isinstance(w, panes):
            w = w.parent  # type: ignore[assignment]
        return w

    def action_maximize(self) -> None:
        if self.screen.maximized is not None:
            self.screen.minimize()
            return
        pane = self._pane_of(self.focused) or self.groups
        self.screen.maximize(pane, container=False)

    def action_toggle_side(self) -> None:
        """Switch the side area between the heuristic editor and the reports, focusing it."""
        side = self.main_screen.query_one("#side", TabbedContent)
        side.active = "side-reports" if side.active == "side-heuristic" else "side-heuristic"
        if side.active == "side-reports":
            self.reports.focus_tabs()
        else:
            self.call_after_refresh(self.editor.area.focus)

    def action_resize(self, delta: int) -> None:
        left = self.query_one("#left")
        width = left.styles.width.value if left.styles.width is not None else 28
        left.styles.width = max(12, min(80, int(width) + delta))

    def action_refresh(self) -> None:
        self.reload()

    @work(thread=True, name="reload", group="engine", exclusive=True, exit_on_error=False)
    def reload(self) -> None:
        self._load_workspace()

    def action_reconnect(self) -> None:
        if self.client is not None and self.client.alive:
            self.notify("the engine is connected")
            return
        self.client = None
        self.set_status("reconnecting to the engine...")
        self.connect()

    def on_unmount(self) -> None:
        c = self.client
        if c is not None:
            try:
                c.close(
                    shutdown=not c.launcher.can_resume and c.launcher.stages[0].kind != "inprocess"
                )
            except Exception:  # noqa: BLE001 - leaving anyway
                pass


def problem_lines(text: str) -> list[tuple[int, str]]:
    """Validation output as ``(line, message)``; ``line`` from ``line N`` / ``:N:`` when given."""
    import re

    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("OK"):
            continue
        m = re.search(r"(?:line |heuristic\.py\", line |\.py:)(\d+)", line)
        out.append((int(m.group(1)) if m else 0, line))
    return out[:50]
