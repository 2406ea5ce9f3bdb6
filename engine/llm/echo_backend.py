"""A model-free backend that echoes the last user message word by word (tests and demos).

It loads nothing, so it shows what the engine does around a model: streaming, cancel, images
arriving (each image is announced as ``[image WxH sha256:xxxxxxxx]``), and, run in a worker
process (:mod:`engine.llm.worker`), what happens when that process dies mid-generation
(``delay`` seconds between deltas leave time to kill it).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator

from engine.llm.base import (
    Backend,
    GenerationOptions,
    Message,
    ProgressCallback,
    image_bytes,
    image_pil,
)


class EchoBackend(Backend):
    name = "echo"

    def __init__(self, model: str, *, delay: float = 0.0, repeat: int = 1) -> None:
        super().__init__(model)
        self.delay = max(0.0, float(delay))
        self.repeat = max(1, int(repeat))

    def _load(self, progress: ProgressCallback) -> None:
        progress(0.5, "echo: nothing to load")

    def _stream(
        self, messages: list[Message], options: GenerationOptions, cancel: threading.Event
    ) -> Iterator[str]:
        last = next((m for m in reversed(messages) if m.role == "user"), None)
        if last is None:
            return
        words: list[str] = []
        for img in last.images:
            data = image_bytes(img)
            w, h = image_pil(data).size
            words.append(f"[image {w}x{h} sha256:{hashlib.sha256(data).hexdigest()[:8]}]")
        words += last.content.split() * self.repeat
        for i, word in enumerate(words[: max(options.max_tokens, 0)]):
            if cancel.is_set():
                return
            if i and self.delay:
                if cancel.wait(self.delay):
                    return
            yield word if i == 0 else " " + word
