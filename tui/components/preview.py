"""Image preview of the selected series' middle slice (PNG from the engine's ``preview``)."""

from __future__ import annotations

import io
import os
from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static


def image_class() -> Any:
    """textual-image's widget: terminal graphics where supported, half-cell text otherwise.

    ``LLMH_TUI_IMAGE=halfcell`` (tests, snapshots) forces the text renderer.
    """
    from textual_image import widget

    if os.environ.get("LLMH_TUI_IMAGE", "").lower() == "halfcell":
        return widget.HalfcellImage
    return widget.Image


class PreviewPane(Vertical):
    BORDER_TITLE = "Preview"
    ALLOW_MAXIMIZE = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.key: str | None = None

    def compose(self) -> ComposeResult:
        yield Static("select a series in the tree", id="preview-info", markup=False)

    def show(self, key: str, png: bytes, info: dict[str, Any]) -> None:
        from PIL import Image as PILImage

        self.key = key
        for old in self.query(".preview-image"):
            old.remove()
        img = PILImage.open(io.BytesIO(png))
        img.load()
        widget = image_class()(img, classes="preview-image")
        self.mount(widget, before=0)
        shape = info.get("shape") or info.get("size") or ""
        self.query_one("#preview-info", Static).update(f"{key.split('|')[-1]} {shape}")

    def show_message(self, text: str) -> None:
        for old in self.query(".preview-image"):
            old.remove()
        self.query_one("#preview-info", Static).update(text)
