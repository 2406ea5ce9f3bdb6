"""The training screen's keys (ids, palette titles), its path prompt and its table of steps.

The keys are :class:`tui.keymap.KeySpec` like the review keys, kept here so the training screen
is one self-contained addition: :data:`TRAINING_KEYS` become the screen's ``BINDINGS`` and its
palette commands (:class:`TrainingCommands`); :class:`OpenTraining` is the one palette entry the
app itself gets ("Training: open the training screen", which asks for a path).
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Label, Static

from tui.commands import KeyCommands
from tui.components.training_metrics import eval_text, fmt
from tui.keymap import KeySpec

TRAINING_KEYS: tuple[KeySpec, ...] = (
    KeySpec("training.cancel", "x", "cancel_run", "cancel the run (s resumes it)", "training"),
    KeySpec("training.start", "s", "start_run", "start/resume the run of the config", "training"),
    KeySpec("training.open", "o", "open_path", "open a config or a metrics file", "training"),
    KeySpec("training.log_scale", "l", "toggle_log", "loss axis: linear/log", "training"),
    KeySpec("training.close", "escape", "close", "back to the review", "training"),
)
OPEN_TITLE = "Training: open the training screen (a config to run or a run to follow)"


def training_bindings(keymap: dict[str, str] | None = None) -> list[Binding]:
    keymap = keymap or {}
    return [
        Binding(keymap.get(k.id, k.key), k.action, k.description, show=k.show, id=k.id)
        for k in TRAINING_KEYS
    ]


class TrainingCommands(KeyCommands):
    """The training screen's keys in the command palette (on that screen only)."""

    KEY_TABLE = TRAINING_KEYS


class OpenTraining(Provider):
    """Palette entry of the app: ask for a path, then show the training screen for it."""

    async def _open(self) -> None:
        from tui.screens.training import TrainingScreen

        app: Any = self.app

        def chosen(path: str | None) -> None:
            if path:
                app.push_screen(TrainingScreen.for_path(path))

        app.push_screen(PathPrompt(), chosen)

    async def discover(self) -> Hits:
        yield DiscoveryHit(OPEN_TITLE, self._open, help="sft/dpo CONFIG.toml, or a run folder")

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        if (score := matcher.match(OPEN_TITLE)) > 0:
            yield Hit(score, matcher.highlight(OPEN_TITLE), self._open)


class PathPrompt(ModalScreen[str | None]):
    """Asks for ``CONFIG.toml`` (run it; ``dpo CONFIG.toml`` for DPO) or a run folder /
    ``metrics.jsonl`` (follow it). Escape cancels."""

    DEFAULT_CSS = """
    PathPrompt { align: center middle; }
    #train-prompt { width: 80; height: auto; border: thick $accent; background: $surface;
                    padding: 1 2; }
    #train-prompt-help { color: $text-muted; }
    """
    BINDINGS = [Binding("escape", "cancel", "cancel", id="training.prompt_cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(id="train-prompt"):
            yield Label("Training: which run?", markup=False)
            yield Input(placeholder="runs/sft.toml  |  dpo runs/dpo.toml  |  runs/sft", id="path")
            yield Static(
                "A .toml config starts (or resumes) that run; a run folder or metrics.jsonl is "
                "followed live. Enter opens, Escape cancels.",
                id="train-prompt-help",
                markup=False,
            )

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class StepsTable(DataTable):
    """The last steps (newest at the bottom) with the evaluations between them."""

    KEEP = 200
    COLUMNS = ("step", "stage", "loss", "lr", "epoch", "time", "eval")

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        for c in self.COLUMNS:
            self.add_column(c, key=c)

    def add_record(self, rec: dict[str, Any]) -> None:
        is_eval = rec.get("type") == "eval"
        row = [
            Text(str(rec.get("step", ""))),
            Text(fmt(rec.get("stage") or "")),
            Text("" if is_eval else fmt(rec.get("loss"))),
            Text("" if is_eval else fmt(rec.get("lr"))),
            Text(fmt(rec.get("epoch"))),
            Text(fmt(rec.get("elapsed_s"))),
            Text(eval_text(rec) if is_eval else "", style="yellow"),
        ]
        self.add_row(*row)
        while self.row_count > self.KEEP:
            self.remove_row(next(iter(self.rows)))
        self.move_cursor(row=self.row_count - 1, animate=False)

    def cell_texts(self) -> list[list[str]]:
        """The table as plain strings (what a person reads; the tests read it too)."""
        out = []
        for key in self.rows:
            out.append([c.plain if isinstance(c, Text) else str(c) for c in self.get_row(key)])
        return out
