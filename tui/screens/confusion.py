"""The image classifier's confusion matrix (its grouped cross-validation), in the terminal.

The engine renders the PNG (``classify.confusion``: saved as ``OUT/image_confusion.png``) and
sends it with its numbers; the screen draws the picture with terminal graphics where the terminal
has them (half-cell text otherwise) and the matrix as a table, so the counts are readable either
way and over SSH.
"""

from __future__ import annotations

import base64
import io
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label, Static

from engine.errors import LlmhError
from tui.components.preview import image_class


class ConfusionScreen(ModalScreen[None]):
    """Asks the engine for the workspace's classifier matrix; escape closes."""

    BINDINGS = [Binding("escape,q,I", "close", "close", id="confusion.close")]
    DEFAULT_CSS = """
    ConfusionScreen { align: center middle; }
    #confusion-dialog { width: 90%; height: 85%; border: thick $accent; background: $surface;
                        padding: 0 1; }
    #confusion-title { text-style: bold; }
    #confusion-info { height: auto; margin-bottom: 1; }
    #confusion-table { width: auto; max-width: 50%; height: 1fr; }
    .confusion-image { width: 1fr; height: 1fr; }
    """

    def __init__(self, out_dir: str) -> None:
        super().__init__()
        self.out_dir = out_dir
        self.result: Any = None

    def compose(self) -> ComposeResult:
        with Vertical(id="confusion-dialog"):
            yield Label("Image classifier: confusion matrix (rows: truth)", id="confusion-title")
            yield Static("asking the engine...", id="confusion-info", markup=False)
            with Horizontal(id="confusion-body"):
                yield DataTable(id="confusion-table", cursor_type="none", zebra_stripes=True)

    def on_mount(self) -> None:
        self.load()

    @work(thread=True, name="confusion", group="confusion", exit_on_error=False)
    def load(self) -> None:
        try:
            res = self.app.api("classify.confusion", {"out_dir": self.out_dir})  # type: ignore[attr-defined]
        except LlmhError as exc:
            self.app.call_from_thread(self.show_error, str(getattr(exc, "message", exc)))
            return
        self.app.call_from_thread(self.show, res)

    def show_error(self, text: str) -> None:
        self.query_one("#confusion-info", Static).update(text)

    def show(self, res: Any) -> None:
        self.result = res
        self.query_one("#confusion-info", Static).update(res.message)
        table = self.query_one("#confusion-table", DataTable)
        table.add_column("true \\ predicted", key="truth")
        for c in res.labels:
            table.add_column(Text(c), key=f"p:{c}")  # class names are data, never markup
        for c, row in zip(res.labels, res.confusion, strict=False):
            table.add_row(Text(c), *[Text(str(n)) for n in row], key=c)
        cls = image_class()
        if cls is None or not res.png_base64:
            return
        from PIL import Image as PILImage

        img = PILImage.open(io.BytesIO(base64.b64decode(res.png_base64)))
        img.load()
        self.query_one("#confusion-body").mount(cls(img, classes="confusion-image"))

    def action_close(self) -> None:
        self.dismiss(None)
