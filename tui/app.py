"""The llm-heuristics review workstation: a thin, never-blocking client of the engine API.

The app holds the connection, runs every engine call in a named thread worker
(``@work(thread=True)``), and routes errors: one handler
(:meth:`LlmhApp.on_worker_state_changed`) turns the engine's typed errors into notifications
and a lost engine into a banner with a reconnect key. The panes own their keys and post
requests (:mod:`tui.messages`); the workers post results to the main screen. The app-wide
keys that are not engine calls (quit, help, cancel) are :mod:`tui.app_actions`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from textual import work
from textual.app import App
from textual.message import Message
from textual.worker import Worker, WorkerState, get_current_worker

from engine.api import types as t
from engine.errors import Cancelled, LlmhError, UserError
from engine.rpc.client import EngineClient, EngineGone
from tui import messages as msg
from tui.app_actions import GENERATED, HEURISTIC, REPORT_FILES, AppActions, convert_summary
from tui.commands import ReviewCommands
from tui.components.preview import probe_graphics
from tui.components.training_widgets import OpenTraining
from tui.engine_link import TuiClient, describe_error, event_message
from tui.keymap import all_keys, bindings, load_keymap
from tui.screens.main import REPORT_LINES, MainScreen


class LlmhApp(AppActions):
    """``LlmhApp(out_dir, engine="inprocess")``; ``client=`` injects a started EngineClient."""

    TITLE = "llm-heuristics"
    CSS_PATH = "app.tcss"
    BINDINGS = bindings("app")
    COMMANDS = App.COMMANDS | {ReviewCommands, OpenTraining}
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]

    def __init__(
        self,
        out_dir: str | Path,
        engine: str = "inprocess",
        *,
        client: EngineClient | None = None,
        backend: str | None = None,
        model: str | None = None,
        dicom_dir: str | None = None,
        keymap: dict[str, str] | None = None,
        train: str | None = None,
    ) -> None:
        probe_graphics()  # before the app runs: never a terminal query once it does
        super().__init__()
        self.out_dir = str(out_dir)
        self.engine_spec = engine
        self.client = client
        self.backend = backend
        self.model = model
        self.dicom_dir = dicom_dir
        self.user_keymap = load_keymap() if keymap is None else keymap
        self.effective_keys = {k.id: self.user_keymap.get(k.id, k.key) for k in all_keys()}
        self.engine_lost = ""
        self.running: Any = None  # the engine call that x cancels (tui.app_actions)
        self.started = time.perf_counter()
        self.ready_at: float | None = None  # seconds from construction to a loaded workspace
        self.quit_after_save = False  # the quit prompt's "save": exit once the engine saved
        self.train = train  # --train: a config to run or a run to follow (the training screen)

    def get_default_screen(self) -> MainScreen:
        return MainScreen()

    def on_mount(self) -> None:
        if self.user_keymap:
            self.set_keymap(self.user_keymap)
        self.sub_title = self.out_dir
        self.call_after_refresh(self.connect)  # first paint, then the engine
        if self.train:
            from tui.screens.training import TrainingScreen

            self.push_screen(TrainingScreen.for_path(self.train))

    def tell(self, m: Message) -> None:
        """A result for the panes (thread-safe)."""
        self.main_screen.post_message(m)

    # --- the engine ----------------------------------------------------------------------------
    def _on_engine_event(self, method: str, params: dict[str, Any]) -> None:
        """Runs on the client's reader thread: only post messages from here."""
        m = event_message(method, params)
        if m is not None:
            self.tell(m)

    def api(self, method: str, params: Any, *, track: bool = False) -> Any:
        """A blocking call of an engine API method (worker threads only): its typed result."""
        client = self.client
        if client is None or not client.alive:
            raise EngineGone(self.engine_lost or "not connected to an engine")
        if not track:
            return client.api(method, params)
        TuiClient.local.sink = lambda call: setattr(self, "running", call)
        try:
            return client.api(method, params)
        finally:
            TuiClient.local.sink = None
            self.running = None

    @work(thread=True, name="connect", group="engine", exit_on_error=False)
    def connect(self) -> None:
        if self.client is None or not self.client.alive:
            self.client = TuiClient(self.engine_spec, on_notification=self._on_engine_event)
            self.client.start()
        elif self.client.on_notification is None:
            self.client.on_notification = self._on_engine_event
        self.engine_lost = ""
        self.tell(msg.EngineReady(dict(self.client.hello)))
        self._load_workspace()

    def _load_workspace(self) -> None:
        view: t.WorkspaceView = self.api("workspace.view", {"out_dir": self.out_dir})
        if get_current_worker().is_cancelled:
            return  # a newer reload is on its way
        self.tell(msg.WorkspaceLoaded(view))
        if view.has_heuristic:
            self.tell(msg.HeuristicText(self._text(HEURISTIC).text))
        if self.main_screen.reports_wanted:
            self._load_reports()

    def _text(self, name: str, max_lines: int = 0) -> t.TextFile:
        params = {"out_dir": self.out_dir, "name": name}
        return self.api(
            "workspace.text", {**params, "max_lines": max_lines} if max_lines else params
        )

    def _load_reports(self) -> None:
        """The step reports (large on big studies: fetched once the Reports tab shows)."""
        for shown, name in REPORT_FILES.items():
            try:
                self.tell(msg.ReportText(shown, self._text(name, REPORT_LINES).text))
            except UserError:  # not written yet: reports appear as steps run
                continue

    @work(thread=True, name="reload", group="reload", exclusive=True, exit_on_error=False)
    def on_reload(self, m: msg.Reload | None = None) -> None:
        self._load_workspace()

    @work(thread=True, name="reports", group="reports", exclusive=True, exit_on_error=False)
    def on_load_reports(self, m: msg.LoadReports) -> None:
        self._load_reports()

    @work(thread=True, name="preview", group="preview", exclusive=True, exit_on_error=False)
    def on_load_preview(self, m: msg.LoadPreview) -> None:
        params = {"out_dir": self.out_dir, "key": m.key, "size": 128, "dicom_dir": self.dicom_dir}
        res: t.Preview = self.api("preview", params)
        self.tell(msg.PreviewReady(m.key, res))

    # --- review --------------------------------------------------------------------------------
    @work(thread=True, name="decide", group="review", exit_on_error=False)
    def on_decide(self, m: msg.Decide) -> None:
        p = t.DecideParams(self.out_dir, m.group_id, m.action, m.name, m.skip_reason, refresh=False)
        res: t.ReviewView = self.api("decide", p)
        self.tell(msg.ReviewChanged(res, f"{m.group_id}: {m.action} saved"))
        if not res.groups:  # an engine that sends no patch: reload the view
            self.call_from_thread(self.on_reload)

    @work(thread=True, name="decide_many", group="review", exit_on_error=False)
    def on_decide_many(self, m: msg.DecideMany) -> None:
        items = [t.DecideItem(d.group_id, d.action, d.name, d.skip_reason) for d in m.decisions]
        p = t.DecideManyParams(self.out_dir, items, refresh=False)
        res: t.ReviewView = self.api("decide_many", p)
        self.tell(msg.ReviewChanged(res, m.what or f"{len(items)} decisions saved (one undo)"))
        if not res.groups:
            self.call_from_thread(self.on_reload)

    @work(thread=True, name="history", group="review", exit_on_error=False)
    def on_history(self, m: msg.History) -> None:
        res: t.ReviewView = self.api(m.op, {"out_dir": self.out_dir, "refresh_files": False})
        ch, n = res.changed, getattr(res, "changed_count", 1)
        what = f"{m.op}: {ch.group_id} {ch.action}" if ch else f"nothing to {m.op}"
        if ch and n > 1:
            what = f"{m.op}: {n} decisions (a bulk review)"
        self.tell(msg.ReviewChanged(res, what))
        if not res.groups:
            self.call_from_thread(self.on_reload)

    @work(thread=True, name="check_name", group="names", exclusive=True, exit_on_error=False)
    def on_check_name(self, m: msg.CheckName) -> None:
        problems: list[str] = self.api("review.check_name", {"name": m.text}) if m.text else []
        try:
            candidates = list(self.api("review.name_candidates", {"text": m.text}))
        except (EngineGone, Cancelled):
            raise
        except LlmhError:  # an engine without completions: the check alone
            candidates = []
        self.call_from_thread(
            lambda: self.screen.post_message(msg.NameChecked(m.text, problems, candidates))
        )

    # --- steps ---------------------------------------------------------------------------------
    @work(thread=True, name="remap", group="task", exclusive=True, exit_on_error=False)
    def on_remap(self, m: msg.Remap) -> None:
        params = {
            "out_dir": self.out_dir,
            "group_ids": m.group_ids,
            "backend": self.backend,
            "model": self.model,
        }
        res: t.MapResult = self.api("review.remap", params, track=True)
        self._load_workspace()
        self.tell(
            msg.TaskDone("remap", True, f"re-mapped {', '.join(res.remapped or m.group_ids)}")
        )

    @work(thread=True, name="generate", group="task", exclusive=True, exit_on_error=False)
    def on_generate(self, m: msg.Generate) -> None:
        target = GENERATED if m.beside_edits else HEURISTIC
        p = t.GenerateParams(self.out_dir, output=str(Path(self.out_dir) / target))
        res: t.GenerateResult = self.api("generate", p, track=True)
        self.tell(msg.ReportText("validation", res.report))
        text = self._text(target).text
        self.tell(
            msg.HeuristicText("", generated=text) if m.beside_edits else msg.HeuristicText(text)
        )
        if res.validation is not None:
            self.tell(msg.ValidationDone(res.validation))
        self.tell(msg.TaskDone("generate", True, f"wrote {target}"))

    @work(thread=True, name="save", group="task", exclusive=True, exit_on_error=False)
    def on_save_heuristic(self, m: msg.SaveHeuristic) -> None:
        self.api("heuristic.save", {"out_dir": self.out_dir, "text": m.text, "name": HEURISTIC})
        self.tell(msg.HeuristicSaved(m.text))
        self._validate()

    @work(thread=True, name="validate", group="task", exclusive=True, exit_on_error=False)
    def on_validate(self, m: msg.Validate) -> None:
        self._validate()

    def _validate(self) -> None:
        res: t.ValidateResult = self.api("validate", {"out_dir": self.out_dir}, track=True)
        self.tell(msg.ValidationDone(res))
        summary = (res.diff.splitlines() or ["OK" if res.ok else "FAILED"])[0]
        self.tell(msg.TaskDone("validate", res.ok, f"validation: {summary}"))

    @work(thread=True, name="convert", group="task", exclusive=True, exit_on_error=False)
    def on_convert(self, m: msg.Convert) -> None:
        p = t.ConvertParams(
            self.out_dir, m.subject, m.session or None, dicom_dir=self.dicom_dir, dry_run=m.dry_run
        )
        res: t.ConvertResult = self.api("convert", p, track=True)
        self.tell(msg.ReportText("conversion", res.report, show=True))
        ok = res.ok and not res.series_failed  # a failed series is a failure, said as one
        self.tell(msg.TaskDone("convert", ok, convert_summary(m, res)))

    # --- errors, cancel, reconnect -------------------------------------------------------------
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place worker errors end up: a lost engine, or a message to the person."""
        if event.state != WorkerState.ERROR:
            return
        err, name = event.worker.error, event.worker.name
        self.sub_title = self.out_dir
        if name == "remap":
            self.main_screen.finish_stream()
        if isinstance(err, EngineGone):
            self.engine_lost = err.message
            self.tell(msg.EngineLost(err.message))
            return
        text, severity = describe_error(err)
        self.tell(msg.EngineLog(f"{name} failed: {text}"))
        if isinstance(getattr(err, "data", None), dict):
            self.tell(
                msg.EngineLog(str(err.data.get("stdout") or "") + str(err.data.get("stderr") or ""))
            )
        first = text.splitlines()[0] if text else "failed"
        self.notify(f"{name}: {first}", severity=severity, timeout=8)  # type: ignore[arg-type]

    def action_reconnect(self) -> None:
        if self.client is not None and self.client.alive:
            self.notify("the engine is connected")
            return
        self.client = None
        self.main_screen.set_status("reconnecting to the engine...")
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
