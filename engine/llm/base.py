"""The one interface every local-LLM backend implements (the base the backends import).

A backend is loaded once (with a progress callback), then asked for chat completions that
stream text deltas; a ``threading.Event`` cancels a stream between deltas, and ``unload``
gives the memory back. Heavy libraries (llama_cpp, torch, ollama) are imported lazily so
``engine`` stays importable without them.
"""

from __future__ import annotations

import importlib
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: ``progress(fraction 0..1, message)``; called by :meth:`Backend.load`.
ProgressCallback = Callable[[float, str], None]

BACKEND_NAMES: tuple[str, ...] = ("llama-cpp", "transformers", "ollama", "openai")


class BackendError(RuntimeError):
    """The backend cannot do what was asked (missing library, model, server); says why."""


#: An image in a message: a file path (DICOM, PNG, JPEG...), a file's bytes or a PIL image.
ImageInput = Any


@dataclass
class Message:
    """One chat message; ``images`` (paths, bytes or PIL images) go to vision models.

    DICOM (and anything that is not already PNG/JPEG) is rendered through
    :func:`engine.vision.render.render` before it is sent: see :func:`image_bytes`.
    """

    role: str  # "system" | "user" | "assistant"
    content: str
    images: list[ImageInput] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"role": self.role, "content": self.content}


@dataclass
class GenerationOptions:
    """Sampling settings; greedy (temperature 0) with a fixed seed by default."""

    max_tokens: int = 256
    temperature: float = 0.0
    seed: int = 0
    json_schema: dict[str, Any] | None = None  # constrain the output to this JSON schema
    stop: list[str] = field(default_factory=list)


def _noop_progress(_fraction: float, _message: str) -> None:
    return None


class Backend(ABC):
    """Load / stream / cancel / unload.  Subclasses set ``name``."""

    name: str = ""

    def __init__(self, model: str) -> None:
        self.model = model
        self._loaded = False

    # --- lifecycle ----------------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        return self._loaded

    def load(self, progress: ProgressCallback | None = None) -> None:
        """Load the model (local files only, never a download); idempotent."""
        if self._loaded:
            return
        cb = progress or _noop_progress
        cb(0.0, f"loading {self.name} model {self.model}")
        self._load(cb)
        self._loaded = True
        cb(1.0, f"{self.name} model {self.model} ready")

    def unload(self) -> None:
        if self._loaded:
            self._unload()
        self._loaded = False

    @abstractmethod
    def _load(self, progress: ProgressCallback) -> None: ...

    def _unload(self) -> None:
        return None

    # --- generation ---------------------------------------------------------------------
    def stream_chat(
        self,
        messages: list[Message],
        options: GenerationOptions | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[str]:
        """Yield text deltas; stops early (without error) once ``cancel`` is set."""
        if not self._loaded:
            self.load()
        opts = options or GenerationOptions()
        ev = cancel or threading.Event()
        if ev.is_set():
            return
        gen = self._stream(messages, opts, ev)
        try:
            for delta in gen:
                if delta:
                    yield delta
                if ev.is_set():
                    break
        finally:
            close = getattr(gen, "close", None)
            if close is not None:
                close()

    def chat(
        self,
        messages: list[Message],
        options: GenerationOptions | None = None,
        cancel: threading.Event | None = None,
    ) -> str:
        """The whole answer as one string."""
        return "".join(self.stream_chat(messages, options, cancel))

    @abstractmethod
    def _stream(
        self, messages: list[Message], options: GenerationOptions, cancel: threading.Event
    ) -> Iterator[str]: ...

    @property
    def identity(self) -> str:
        """What answers are cached under: backend and model."""
        return f"{self.name}:{self.model}"

    def __enter__(self) -> Backend:
        self.load()
        return self

    def __exit__(self, *exc: object) -> None:
        self.unload()


def _require(module: str, extra: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackendError(
            f"the Python package {module!r} is not installed: pip install 'llm-heuristics[{extra}]'"
        ) from exc


_PNG = b"\x89PNG"
_JPEG = b"\xff\xd8\xff"


def image_bytes(image: ImageInput) -> bytes:
    """PNG or JPEG bytes of ``image``: PNG/JPEG files and bytes as they are, anything else
    (DICOM, other formats, PIL images) rendered to 8-bit PNG by :mod:`engine.vision.render`."""
    data: bytes | None = None
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
    elif isinstance(image, (str, Path)):
        try:
            data = Path(image).expanduser().read_bytes()
        except OSError as exc:
            raise BackendError(f"cannot read image {image}: {exc}") from exc
    if data is not None and (data.startswith(_PNG) or data.startswith(_JPEG)):
        return data
    from engine.vision.render import RenderError, render, to_png

    try:
        return to_png(render(data if data is not None else image))
    except (RenderError, OSError, ValueError, TypeError) as exc:
        raise BackendError(f"cannot use {_image_name(image)} as an image: {exc}") from exc


def image_mime(data: bytes) -> str:
    """``image/jpeg`` for JPEG bytes, else ``image/png`` (what :func:`image_bytes` returns)."""
    return "image/jpeg" if data.startswith(_JPEG) else "image/png"


def image_data_uri(image: ImageInput) -> str:
    """A ``data:`` URI of the image (OpenAI-compatible ``image_url`` content parts)."""
    import base64

    data = image_bytes(image)
    return f"data:{image_mime(data)};base64,{base64.b64encode(data).decode()}"


def image_pil(image: ImageInput) -> Any:
    """An RGB ``PIL.Image`` of ``image`` (DICOM rendered through :mod:`engine.vision.render`)."""
    from engine.vision.render import RenderError, render

    try:
        return render(image).convert("RGB")
    except (RenderError, OSError, ValueError, TypeError) as exc:
        raise BackendError(f"cannot use {_image_name(image)} as an image: {exc}") from exc


def _image_name(image: ImageInput) -> str:
    if isinstance(image, (str, Path)):
        return str(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return f"{len(image)} bytes"
    return type(image).__name__
