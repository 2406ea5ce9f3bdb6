"""The one interface every local-LLM backend implements.

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


@dataclass
class Message:
    """One chat message; ``images`` are file paths or raw bytes (used by vision models)."""

    role: str  # "system" | "user" | "assistant"
    content: str
    images: list[str | bytes] = field(default_factory=list)

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


# Backend name, the module it needs, and the pip extra that installs it.
BACKEND_MODULES: tuple[tuple[str, str, str], ...] = (
    ("llama-cpp", "llama_cpp", "llamacpp"),
    ("transformers", "transformers", "hf"),
    ("ollama", "ollama", "ollama"),
)


def available_backends() -> dict[str, str]:
    """Backend name -> "" when its library imports here, else the reason it does not."""
    out: dict[str, str] = {}
    for name, module, extra in BACKEND_MODULES:
        try:
            importlib.import_module(module)
            out[name] = ""
        except Exception as exc:  # noqa: BLE001 - any import failure makes it unusable
            out[name] = f"{module} not importable ({exc.__class__.__name__}); install [{extra}]"
    out["openai"] = ""  # stdlib HTTP only
    return out


def create_backend(kind: str, model: str, **options: Any) -> Backend:
    """Build (not load) a backend by name: ``llama-cpp``, ``transformers``, ``ollama``, ``openai``.

    ``options`` are passed to the backend's constructor (e.g. ``n_gpu_layers``, ``quantization``,
    ``host``, ``base_url``); unknown ones are ignored with a debug message.
    """
    kind = kind.strip().lower().replace("_", "-")
    if kind in {"llamacpp", "llama.cpp", "gguf"}:
        kind = "llama-cpp"
    if kind in {"hf", "huggingface"}:
        kind = "transformers"
    if kind == "llama-cpp":
        from engine.llm.llamacpp import LlamaCppBackend as cls
    elif kind == "transformers":
        from engine.llm.transformers_backend import TransformersBackend as cls
    elif kind == "ollama":
        from engine.llm.ollama_backend import OllamaBackend as cls
    elif kind == "openai":
        from engine.llm.openai_backend import OpenAIBackend as cls
    else:
        raise BackendError(f"unknown backend {kind!r}; choose one of {', '.join(BACKEND_NAMES)}")
    import inspect

    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "model"}
    kwargs = {k: v for k, v in options.items() if k in accepted and v is not None}
    ignored = sorted(set(options) - accepted)
    if ignored:
        log.debug("backend %s ignores options %s", kind, ", ".join(ignored))
    return cls(model, **kwargs)


def image_bytes(image: str | bytes) -> bytes:
    return image if isinstance(image, bytes) else Path(image).read_bytes()
