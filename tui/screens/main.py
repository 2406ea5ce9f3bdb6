"""The main screen: the panes, the workspace-wide keys, and what the engine's answers change.

Requests go up to the app as messages (:mod:`tui.messages`); the app's workers post their
results here, and the handlers below update the panes. Nothing here calls the engine.
"""

from __future__ import annotations

import base64
import gc
import time
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import DataTable, Footer, Header, Static, TabbedContent, TabPane, Tree

from tui import messages as msg
from tui.components.editor import HeuristicEditor, unified_diff
from tui.components.groups import GroupsPane
from tui.components.preview import PreviewPane
from tui.components.rationale import RationalePane
from tui.components.reports import ReportsPane
from tui.components.tree import DicomTree
from tui.keymap import bindings
from tui.viewmodel import Workspace

FULL_GC_EVERY = 1000  # generation-1 collections between two full ones (Python's default: 10)
DELTA_INTERVAL = 0.1  # seconds between two redraws of a streaming rationale
PANES = (DicomTree, GroupsPane, RationalePane, PreviewPane, HeuristicEditor, ReportsPane)


REPORT_LINES = 1000  # a report pane shows this many lines; a 10k-series report (1 MB) would
# hold the screen for seconds while the editor widget lays it out, and nobody scrolls it there


def clip_report(text: str, name: str, out_dir: str) -> str:
    """The first :data:`REPORT_LINES` lines of a report, saying where the rest is."""
    lines = text.split("\n", REPORT_LINES)
    if len(lines) <= REPORT_LINES:
        return text
    more = lines[-1].count("\n") + 1
    return "\n".join(
        [*lines[:-1], f"... {more} more lines: the whole {name} report is in {out_dir}"]
    )


class MainScreen(Screen[None]):
    BINDINGS = bindings("screen")

    def __init__(self) -> None:
        super().__init__()
        self.ws = Workspace()
        self.reports_wanted = False  # the Reports tab was shown: keep its texts loaded
        self._deltas: list[tuple[str, str]] = []  # streamed tokens not shown yet
        self._warned: set[str] = set()  # warnings already said (once each)

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
        self.groups.table.focus()

    # --- pieces ------------------------------------------------------------------------------
    @property
    def groups(self) -> GroupsPane:
        return self.query_one(GroupsPane)

    @property
    def editor(self) -> HeuristicEditor:
        return self.query_one(HeuristicEditor)

    @property
    def reports(self) -> ReportsPane:
        return self.query_one(ReportsPane)

    @property
    def rationale(self) -> RationalePane:
        return self.query_one(RationalePane)

    def set_status(self, text: str, error: bool = False) -> None:
        w = self.query_one("#status", Static)
        w.update(text)
        w.set_class(error, "-error")

    def selected_subject(self) -> tuple[str, str]:
        """The subject (and session) of the tree's cursor; the first subject otherwise."""
        node = self.query_one(DicomTree).cursor_node
        data = node.data if node is not None else None
        if data:
            return data.get("subject", ""), data.get("session", "")
        subs = self.ws.subjects()
        return (subs[0] if subs else ""), ""

    def _show_selected(self) -> None:
        self.rationale.show(self.groups.current())

    # --- the engine's answers ----------------------------------------------------------------
    def on_engine_ready(self, m: msg.EngineReady) -> None:
        h = m.hello
        where = f"{h.get('host', '?')} ({h.get('mode', '?')}, pid {h.get('pid', '?')})"
        self.set_status(f"engine: {where}   OUT: {self.app.out_dir}")  # type: ignore[attr-defined]
        self.reports.log_line(f"connected to engine {where}")

    def on_engine_lost(self, m: msg.EngineLost) -> None:
        key = self.app.effective_keys.get("engine.reconnect", "f6")  # type: ignore[attr-defined]
        self.set_status(
            f"ENGINE LOST: {m.reason.splitlines()[0]}   press {key} to reconnect", error=True
        )
        self.reports.log_line(f"engine lost: {m.reason}")
        self.notify(f"engine lost; press {key} to reconnect", severity="error", timeout=10)

    def on_workspace_loaded(self, m: msg.WorkspaceLoaded) -> None:
        keep = self.groups.selected()
        self.ws = Workspace.build(m.view)
        self.query_one(DicomTree).load(self.ws)
        self.groups.load(self.ws, keep)
        self._show_selected()
        for line in m.view.missing:
            self.reports.log_line(line)
        self._say_warnings(m.view.review.warnings)
        if m.view.missing and not self.ws.groups:
            # not a workspace (yet): say what to run, never leave the panes silently empty
            text = f"{self.app.out_dir} is not a review workspace yet:"  # type: ignore[attr-defined]
            self.rationale.show_message("\n".join([text, *m.view.missing]))
            self.set_status(f"{text} {m.view.missing[0]}", error=True)
            self.notify("\n".join(m.view.missing), severity="warning", timeout=10)
        # a 10k-series workspace is ~10^6 objects that live until the next view: out of the
        # cyclic collector's sight, or each full collection stalls the keys for 0.1-0.5 s; and
        # full collections rare (rendering makes short-lived cycles only: gen0/1 take them)
        gc.freeze()
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, FULL_GC_EVERY)
        app: Any = self.app
        if app.ready_at is None:
            app.ready_at = time.perf_counter() - app.started
        n_user = len(m.view.review.decisions)
        self.reports.log_line(
            f"workspace: {len(self.ws.series)} series, {len(self.ws.groups)} groups, "
            f"{n_user} decided by you"
        )

    def _say_warnings(self, warnings: list[str]) -> None:
        """Loudly, once each: decisions set aside (bad journal lines) are not in effect."""
        new = [w for w in warnings if w not in self._warned]
        if not new:
            return
        self._warned.update(new)
        for w in new:
            self.reports.log_line(f"WARNING: {w}")
        self.set_status(f"WARNING: {new[0]}", error=True)
        self.notify("\n".join(new), severity="error", timeout=20)

    def on_review_changed(self, m: msg.ReviewChanged) -> None:
        for gid in self.ws.set_review(m.review):
            self.groups.update_group(gid)
        self._show_selected()
        self._say_warnings(m.review.warnings)
        if m.what:
            self.reports.log_line(m.what)
            self.notify(m.what, timeout=3)

    def on_engine_delta(self, m: msg.EngineDelta) -> None:
        """A streamed token: gathered and shown ten times a second, not once per token (each
        redraw lays the screen out again: 30 tokens/s would cost the keys their frames)."""
        if m.phase not in ("rationale", ""):
            return
        if not self._deltas:
            self.set_timer(DELTA_INTERVAL, self._flush_deltas)
        self._deltas.append((m.group_id, m.text))

    def finish_stream(self) -> None:
        """The stream ended (done or failed): its last tokens, then it is kept as history."""
        self._flush_deltas()
        self.rationale.finish()

    def _flush_deltas(self) -> None:
        pending, self._deltas = self._deltas, []
        joined: dict[str, str] = {}
        for gid, text in pending:
            joined[gid] = joined.get(gid, "") + text
        for gid, text in joined.items():
            self.rationale.delta(gid, text)

    def on_engine_log(self, m: msg.EngineLog) -> None:
        for line in m.text.rstrip("\n").splitlines():
            self.reports.log_line(line)

    def on_progress(self, m: msg.Progress) -> None:
        pct = f"{m.fraction * 100:.0f}% " if isinstance(m.fraction, int | float) else ""
        self.app.sub_title = f"{pct}{m.message}"

    def on_report_text(self, m: msg.ReportText) -> None:
        out = self.app.out_dir  # type: ignore[attr-defined]
        self.reports.set_report(m.name, clip_report(m.text, m.name, out), show=m.show)

    def on_heuristic_text(self, m: msg.HeuristicText) -> None:
        ed = self.editor
        if m.generated:
            ed.pending_generated = m.generated
            self.reports.set_report("diff", unified_diff(ed.text, m.generated) or "(no difference)")
            self.reports.show("diff")
            key = self.app.effective_keys.get("heuristic.replace", "ctrl+g")  # type: ignore[attr-defined]
            self.notify(
                f"regenerated beside your edits: see the Diff tab; {key} in the editor takes it"
            )
            return
        ed.load(m.text, generated=True)

    def on_heuristic_saved(self, m: msg.HeuristicSaved) -> None:
        if self.editor.text == m.text:
            self.editor.mark_saved()
        app: Any = self.app
        if app.quit_after_save:
            app.exit()

    def on_validation_done(self, m: msg.ValidationDone) -> None:
        self.editor.show_validation(m.result)
        self.reports.set_report("validation", m.result.diff)

    def on_preview_ready(self, m: msg.PreviewReady) -> None:
        self.query_one(PreviewPane).show(
            m.key, base64.b64decode(m.preview.png_base64), m.preview.info
        )

    def on_task_done(self, m: msg.TaskDone) -> None:
        self.app.sub_title = self.app.out_dir  # type: ignore[attr-defined]
        if m.name == "remap":
            self.finish_stream()
        if m.message:
            self.reports.log_line(f"{m.name}: {m.message}")
            self.notify(m.message, severity="information" if m.ok else "error", timeout=8)

    def on_name_checked(self, m: msg.NameChecked) -> None:
        pass  # the edit dialog was closed before the engine answered

    # --- selection ---------------------------------------------------------------------------
    @on(DataTable.RowHighlighted, "#groups-table")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_selected()

    @on(Tree.NodeHighlighted, "#tree")
    def _tree_highlighted(self, event: Tree.NodeHighlighted[dict[str, Any]]) -> None:
        """A series under the tree's cursor: its group under the table's cursor, its preview."""
        data = event.node.data or {}
        if data.get("kind") == "series":
            if data.get("group_id"):
                self.groups.select(data["group_id"])
            self.post_message(msg.LoadPreview(data["key"]))

    @on(Tree.NodeSelected, "#tree")
    def _tree_selected(self, event: Tree.NodeSelected[dict[str, Any]]) -> None:
        """Enter on a series: on to its group, where the review keys act."""
        data = event.node.data or {}
        if data.get("kind") == "series" and data.get("group_id"):
            self.groups.select(data["group_id"])
            self.groups.table.focus()

    @on(TabbedContent.TabActivated, "#side")
    def _side_tab(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id == "side-reports":
            self.reports.build()
            if not self.reports_wanted:
                self.reports_wanted = True
                self.post_message(msg.LoadReports())

    # --- workspace-wide keys -----------------------------------------------------------------
    def action_close(self) -> None:
        """Escape: close the keys panel, else leave (and clear) the groups filter."""
        app: Any = self.app
        if app.help_shown():
            app.action_hide_help_panel()
            return
        flt = self.groups.query_one("#group-filter")
        if flt.has_focus or getattr(flt, "value", ""):
            flt.value = ""  # type: ignore[attr-defined]
            self.groups.table.focus()

    def action_undo(self) -> None:
        self.post_message(msg.History("undo"))

    def action_redo(self) -> None:
        self.post_message(msg.History("redo"))

    def action_generate(self) -> None:
        self.post_message(msg.Generate(self.editor.hand_edited))

    def action_validate(self) -> None:
        if self.editor.dirty:
            self.editor.action_save()  # saving validates
        else:
            self.post_message(msg.Validate())

    def action_convert(self, dry_run: bool = True) -> None:
        sub, ses = self.selected_subject()
        if not sub:
            self.notify("no subject to convert", severity="error")
            return
        if dry_run:
            self.post_message(msg.Convert(sub, ses, dry_run))
            return
        from tui.screens.choice import ChoiceScreen

        def answered(answer: str | None) -> None:
            if answer == "convert":
                self.post_message(msg.Convert(sub, ses, False))
            else:
                self.notify("conversion cancelled", timeout=3)

        what = f"sub-{sub}" + (f" ses-{ses}" if ses else " (all its sessions)")
        target = f"{self.app.out_dir.rstrip('/')}/bids"  # type: ignore[attr-defined]
        self.app.push_screen(
            ChoiceScreen(
                f"Convert {what}?",
                [
                    f"subject: {what}",
                    f"into:    {target}",
                    f"overwrite: files of sub-{sub} already there are replaced",
                    "dcm2niix writes NIfTI files; this can take minutes (x cancels).",
                ],
                [("convert", "y", "Convert"), ("cancel", "n", "Cancel")],
            ),
            answered,
        )

    def action_refresh(self) -> None:
        self.post_message(msg.Reload())

    def action_matrix(self) -> None:
        from tui.screens.matrix import MatrixScreen

        def done(gid: str | None) -> None:
            if gid:
                self.groups.select(gid)

        self.app.push_screen(MatrixScreen(self.ws), done)

    def action_confusion(self) -> None:
        """The image classifier's cross-validated confusion matrix (after a second opinion)."""
        from tui.screens.confusion import ConfusionScreen

        self.app.push_screen(ConfusionScreen(self.app.out_dir))  # type: ignore[attr-defined]

    def action_maximize(self) -> None:
        if self.maximized is not None:
            self.minimize()
            return
        w: Widget | None = self.focused
        while w is not None and not isinstance(w, PANES):
            w = w.parent  # type: ignore[assignment]
        self.maximize(w or self.groups, container=False)

    def action_toggle_side(self) -> None:
        """Switch the side area between the heuristic editor and the reports, focusing it."""
        side = self.query_one("#side", TabbedContent)
        side.active = "side-reports" if side.active == "side-heuristic" else "side-heuristic"
        if side.active == "side-reports":
            self.reports.focus_tabs()
        else:
            self.call_after_refresh(self.editor.area.focus)

    def action_resize(self, delta: int) -> None:
        left = self.query_one("#left")
        width = left.styles.width.value if left.styles.width is not None else 28
        left.styles.width = max(12, min(80, int(width) + delta))
