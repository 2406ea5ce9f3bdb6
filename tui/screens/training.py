"""The training screen: a fine-tuning run's loss, learning rate and evaluations, live.

Two sources, one view. **Run** a config: a named thread worker calls ``train.sft``/``train.dpo``
through the engine client (in-process, or on the GPU node with ``--engine``) and the engine's
``progress`` notifications carry each step; ``x`` asks the engine to cancel, and ``s`` resumes
from the run's last checkpoint (``save_every``). **Follow** a run started elsewhere (a Slurm job, another
terminal): a thread worker tails its ``metrics.jsonl``. Either way the records go to
:class:`~tui.components.training_metrics.RunMetrics`, and the plot, the table of the last steps
and the status line (step N/M, ETA, checkpoint, resumed from) are redrawn from it.
"""

from __future__ import annotations

import time
import tomllib
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Static
from textual.worker import Worker, WorkerState, get_current_worker

from engine.errors import Cancelled, LlmhError
from engine.rpc.client import EngineGone
from tui.components.training_metrics import (
    MetricsTail,
    RunMetrics,
    fmt,
    fmt_duration,
    from_progress,
    latest_checkpoint,
    metrics_path,
)
from tui.components.training_plot import LossPlot, finite
from tui.components.training_widgets import (
    PathPrompt,
    StepsTable,
    TrainingCommands,
    training_bindings,
)

FOLLOW_EVERY_S = 0.25
CONNECT_WAIT_S = 120.0


class Metrics(Message):
    """New records for the view (``reset``: forget the earlier ones first)."""

    def __init__(self, records: list[dict[str, Any]], reset: bool = False) -> None:
        super().__init__()
        self.records, self.reset = records, reset


class RunEnded(Message):
    def __init__(self, result: Any) -> None:
        super().__init__()
        self.result = result


class EngineNote(Message):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


def read_config(path: str) -> tuple[str, str]:
    """``(kind, output_dir)`` guessed from the TOML when it is on this machine (``sft`` and
    ``""`` otherwise: the engine reads the file; this only helps the view)."""
    p = Path(path).expanduser()
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "sft", ""
    kind = "dpo" if isinstance(doc.get("dpo"), dict) else "sft"
    train = doc.get("train") if isinstance(doc.get("train"), dict) else {}
    out = train.get("output_dir", "runs/train") if isinstance(train, dict) else "runs/train"
    out_p = Path(str(out)).expanduser()
    return kind, str(out_p if out_p.is_absolute() else (p.parent / out_p).resolve())


class TrainingScreen(Screen[None]):
    """``TrainingScreen(config=PATH)`` runs it; ``TrainingScreen(follow=PATH)`` follows a run."""

    BINDINGS = training_bindings()
    COMMANDS = {TrainingCommands}
    DEFAULT_CSS = """
    TrainingScreen { layout: vertical; }
    #train-status { height: auto; max-height: 2; padding: 0 1; background: $boost; }
    #train-status.-error { background: $error; color: $text; text-style: bold; }
    #train-note { height: 1; padding: 0 1; color: $text-muted; }
    #train-plot { height: 3fr; border: round $panel-lighten-2; border-title-color: $text-muted; }
    #train-steps { height: 2fr; border: round $panel-lighten-2; }
    """

    def __init__(
        self, config: str = "", *, kind: str = "", follow: str = "", start: bool = True
    ) -> None:
        super().__init__()
        self.config, self.follow_path, self.autostart = config, follow, start
        guessed, self.output_dir = read_config(config) if config else ("sft", "")
        self.kind = kind or guessed
        if follow:
            self.output_dir = str(metrics_path(follow).parent)
        self.metrics = RunMetrics()
        self.call: Any = None  # the engine request ``x`` cancels
        self.state = "idle"  # idle | starting | running | done | cancelled | failed | following
        self.result: Any = None
        self.error = ""

    @classmethod
    def for_path(cls, text: str) -> TrainingScreen:
        """From the prompt or ``--train``: ``[sft|dpo] CONFIG.toml`` runs, a path follows."""
        kind, _, rest = text.strip().partition(" ")
        if kind not in ("sft", "dpo") or not rest.strip():
            kind, rest = "", text.strip()
        path = rest.strip()
        if path.lower().endswith(".toml"):
            return cls(path, kind=kind)
        return cls(follow=path)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="train-status", markup=False)
        yield Static("", id="train-note", markup=False)
        with Vertical():
            plot = LossPlot(id="train-plot")
            yield plot
            yield StepsTable(id="train-steps")
        yield Footer()

    def on_mount(self) -> None:
        what = self.config or str(metrics_path(self.follow_path))
        title = Text(f"loss: {what}")  # a path is never markup (``a[/]b`` is a valid path)
        self.query_one("#train-plot", LossPlot).border_title = title
        if self.config and self.autostart:
            self.action_start_run()
        elif self.follow_path:
            self.state = "following"
            self.follow_metrics()
        self.show_status()

    # --- the two sources -------------------------------------------------------------------
    def _client(self) -> Any:
        """The app's engine client, once its connection (a worker of its own) is up."""
        app: Any = self.app
        deadline = time.monotonic() + CONNECT_WAIT_S
        while time.monotonic() < deadline and not get_current_worker().is_cancelled:
            c = app.client
            if c is not None and c.alive and c.hello:
                return c
            if app.engine_lost:
                raise EngineGone(app.engine_lost)
            time.sleep(0.05)
        raise EngineGone("no engine connection (see the status line; f6 reconnects)")

    def _on_event(self, method: str, params: dict[str, Any]) -> None:
        """The client's reader thread: post, never touch widgets here."""
        if method == "progress":
            rec = from_progress(params)
            if rec is not None:
                self.post_message(Metrics([rec]))
        elif method == "output" and str(params.get("text", "")).startswith("train:"):
            self.post_message(EngineNote(str(params["text"]).strip()))

    def _got_call(self, call: Any) -> None:
        self.call = call

    @work(thread=True, name="train", group="train", exclusive=True, exit_on_error=False)
    def run_training(self, resume: str = "auto") -> None:
        client = self._client()
        params = {"config": self.config, "resume": resume}
        try:
            res = client.api(
                f"train.{self.kind}", params, on_event=self._on_event, on_call=self._got_call
            )
        finally:
            self.call = None
        self.post_message(RunEnded(res))

    @work(thread=True, name="train_follow", group="train_follow", exclusive=True)
    def follow_metrics(self) -> None:
        tail = MetricsTail(self.follow_path)
        worker = get_current_worker()
        while not worker.is_cancelled:
            reset, recs = tail.read()
            if reset or recs:
                self.post_message(Metrics(recs, reset))
            time.sleep(FOLLOW_EVERY_S)

    # --- what arrives ----------------------------------------------------------------------
    def on_metrics(self, m: Metrics) -> None:
        table = self.query_one(StepsTable)
        if m.reset:
            self.metrics.reset()
            table.clear()
        if self.state == "starting" and m.records:
            self.state = "running"
            self._backfill(m.records[0])
        for rec in m.records:
            if self.metrics.add(rec):
                table.add_record(rec)
        self.redraw()

    def _backfill(self, first: dict[str, Any]) -> None:
        """A resumed run streams only its new steps: the kept ones come from its file (when
        the run folder is on this machine), so the plot reads as one run."""
        step = first.get("step", 0)
        if first.get("type") != "train" or not isinstance(step, int) or step <= 1:
            return
        table = self.query_one(StepsTable)
        old = MetricsTail(metrics_path(self.output_dir)).read()[1] if self.output_dir else []
        for rec in (r for r in old if r["step"] < step):
            if self.metrics.add(rec):
                table.add_record(rec)
        self.metrics.resumed_from = step - 1

    def on_engine_note(self, m: EngineNote) -> None:
        self.query_one("#train-note", Static).update(m.text.splitlines()[0] if m.text else "")

    def on_run_ended(self, m: RunEnded) -> None:
        res = self.result = m.result
        self.state = "done"
        if not self.metrics.train and (res.output_dir or self.output_dir):
            # resumed at its last step (nothing left to train): the run as its file has it
            recs = MetricsTail(metrics_path(res.output_dir or self.output_dir)).read()[1]
            self.on_metrics(Metrics(recs, reset=True))
        self.metrics.resumed_from = res.resumed_from or self.metrics.resumed_from
        self.output_dir = res.output_dir or self.output_dir
        self.query_one("#train-note", Static).update(res.message)
        self._untitle()
        self.notify(res.message, timeout=10)
        self.redraw()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A run's error is shown here too (the app also logs and notifies it)."""
        if event.worker.name != "train" or event.state != WorkerState.ERROR:
            return
        err = event.worker.error
        self.state = "cancelled" if isinstance(err, Cancelled) else "failed"
        text = err.message if isinstance(err, LlmhError) else f"{type(err).__name__}: {err}"
        self.error = str(text).splitlines()[0] if text else self.state
        note = f"{self.state}: {self.error}"
        if self.state == "cancelled":  # the engine finishes the step and checkpoints there
            note = (
                f"cancelled after step {self.metrics.step}: the run saves a checkpoint where it "
                "stops; s resumes from it"
            )
        self.query_one("#train-note", Static).update(note)
        self._untitle()
        self.show_status()

    def _untitle(self) -> None:
        """The header showed the run's progress (the app's own handler): the run is over."""
        self.app.sub_title = str(getattr(self.app, "out_dir", ""))

    # --- the view --------------------------------------------------------------------------
    def redraw(self) -> None:
        self.query_one(LossPlot).set_data(self.metrics.series(), self.metrics.lr())
        self.show_status()

    def status_text(self) -> str:
        m = self.metrics
        total = m.max_steps or "?"
        pct = f" {m.step / m.max_steps:.0%}" if m.max_steps else ""
        parts = [f"{m.kind or self.kind or 'train'} {self.state}", f"step {m.step}/{total}{pct}"]
        loss, lr = m.last("loss"), m.last("lr")
        if finite(loss):
            parts.append(f"loss {fmt(loss)}")
        ev, margin = m.last("eval_loss", evals=True), m.last("margin", evals=True)
        if finite(ev):
            parts.append(f"eval {fmt(ev)}")
        elif finite(margin):  # DPO evaluates the chosen-vs-rejected margin
            parts.append(f"margin {fmt(margin)}")
        if finite(lr):
            parts.append(f"lr {lr:.3g}")
        if self.state in ("running", "following") and not m.finished:
            parts.append(f"ETA {fmt_duration(m.eta_seconds())}")
        ckpt = latest_checkpoint(self.output_dir).removeprefix("step-").lstrip("0")
        parts.append(f"checkpoint {ckpt or '-'}")
        parts.append(f"resumed from {m.resumed_from or '-'}")
        return " · ".join(parts)

    def show_status(self) -> None:
        w = self.query_one("#train-status", Static)
        w.update(self.status_text())
        w.set_class(self.state == "failed", "-error")

    # --- keys --------------------------------------------------------------------------------
    def action_start_run(self) -> None:
        if not self.config:
            self.notify("following a run: open a .toml config (o) to start one")
            return
        if self.busy():
            return
        self.metrics.reset()
        self.query_one(StepsTable).clear()
        self.state, self.error, self.result = "starting", "", None
        self.query_one("#train-note", Static).update(f"starting {self.kind}: {self.config}")
        self.run_training("auto")
        self.redraw()

    def action_cancel_run(self) -> None:
        call = self.call
        if call is None:
            hint = " (cancel it where it runs)" if self.follow_path else ""
            self.notify(f"no run started here is in progress{hint}", severity="warning")
            return
        call.cancel_request()
        self.query_one("#train-note", Static).update("cancel requested")
        self.notify("cancel requested")

    def action_open_path(self) -> None:
        if self.busy():
            return

        def chosen(path: str | None) -> None:
            if path:
                self.app.switch_screen(TrainingScreen.for_path(path))

        self.app.push_screen(PathPrompt(), chosen)

    def action_toggle_log(self) -> None:
        plot = self.query_one(LossPlot)
        plot.log_scale = not plot.log_scale
        plot.refresh()

    def busy(self) -> bool:
        """A run started here is in progress (its worker belongs to this screen): say so."""
        if self.state in ("starting", "running"):
            self.notify("a run is in progress: x cancels it (s resumes from its last checkpoint)")
            return True
        return False

    def action_close(self) -> None:
        if self.busy():
            return
        if len(self.app.screen_stack) > 1:
            self.app.pop_screen()
        else:
            self.app.exit()
