"""Image preview of the selected series' middle slice (PNG from the engine's ``preview``)."""

from __future__ import annotations

import io
import os
import sys
from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static


def probe_graphics() -> bool:
    """Import textual-image, which asks the terminal what it can draw (``ESC[c``, ``ESC[16t``).

    Call it BEFORE the app runs (``tui/command.py`` does, and so does the app's constructor):
    once Textual owns the terminal, the terminal's answer arrives as keystrokes (``[`` narrowed
    the tree, ``c`` started a dry-run conversion). Returns whether the widget is importable.
    """
    try:
        import textual_image.widget  # noqa: F401 - the import is the probe
    except Exception:  # noqa: BLE001 - no images, text info only
        return False
    return True


def image_class() -> Any:
    """textual-image's widget: terminal graphics where supported, half-cell text otherwise;
    ``None`` when it was not imported before the app started (it is never imported later).

    ``LLMH_TUI_IMAGE=halfcell`` (tests, snapshots) forces the text renderer.
    """
    widget = sys.modules.get("textual_image.widget")
    if widget is None:
        return None
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
        shape = info.get("shape") or info.get("size") or ""
        label = f"{key.split('|')[-1]} {shape}"
        cls = image_class()
        if cls is None:
            self.query_one("#preview-info", Static).update(f"{label} (no image support)")
            return
        img = PILImage.open(io.BytesIO(png))
        img.load()
        self.mount(cls(img, classes="preview-image"), before=0)
        self.query_one("#preview-info", Static).update(label)

    def show_message(self, text: str) -> None:
        for old in self.query(".preview-image"):
            old.remove()
        self.query_one("#preview-info", Static).update(text)
