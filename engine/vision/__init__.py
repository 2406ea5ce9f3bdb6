"""Images for people and models: one DICOM/PNG/JPEG renderer (:mod:`engine.vision.render`)."""

from __future__ import annotations

from engine.vision.render import Rendered, RenderError, frame_count, render, render_info, to_png

__all__ = ["RenderError", "Rendered", "frame_count", "render", "render_info", "to_png"]
