"""Backends by name: :func:`create_backend` builds one of the four implementations.

The interface itself lives in :mod:`engine.llm.base` (which the implementations import, so
this factory can import them without a cycle); its names are re-exported here for callers.
"""

from __future__ import annotations

import importlib
from typing import Any

from engine.llm.base import (  # noqa: F401 - re-exported: the interface's public names
    BACKEND_NAMES,
    Backend,
    BackendError,
    GenerationOptions,
    Message,
    ProgressCallback,
    image_bytes,
    log,
)

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


def normalize_kind(kind: str) -> str:
    """The canonical backend name for ``kind`` (``gguf`` -> ``llama-cpp``, ``hf`` -> ...)."""
    kind = kind.strip().lower().replace("_", "-")
    if kind in {"llamacpp", "llama.cpp", "gguf"}:
        return "llama-cpp"
    if kind in {"hf", "huggingface"}:
        return "transformers"
    return kind


def backend_class(kind: str) -> type[Backend]:
    """The class of backend ``kind`` (imported, its heavy libraries not yet)."""
    kind = normalize_kind(kind)
    if kind == "llama-cpp":
        from engine.llm.llamacpp import LlamaCppBackend as cls
    elif kind == "transformers":
        from engine.llm.transformers_backend import TransformersBackend as cls
    elif kind == "ollama":
        from engine.llm.ollama_backend import OllamaBackend as cls
    elif kind == "openai":
        from engine.llm.openai_backend import OpenAIBackend as cls
    elif kind == "echo":  # model-free: tests and demos
        from engine.llm.echo_backend import EchoBackend as cls
    else:
        raise BackendError(f"unknown backend {kind!r}; choose one of {', '.join(BACKEND_NAMES)}")
    return cls


def create_backend(
    kind: str, model: str, *, isolate: bool | None = False, **options: Any
) -> Backend:
    """Build (not load) a backend by name: ``llama-cpp``, ``transformers``, ``ollama``, ``openai``.

    ``options`` are passed to the backend's constructor (e.g. ``n_gpu_layers``, ``quantization``,
    ``host``, ``base_url``); unknown ones are ignored with a debug message.  With ``isolate`` the
    model runs in a worker process (:class:`engine.llm.worker.WorkerBackend`: a crash there is an
    error, not a dead caller); ``isolate=None`` chooses per backend (the engine's default:
    llama-cpp and transformers in a worker, see :func:`engine.llm.worker.isolate_default`).
    """
    kind = normalize_kind(kind)
    cls = backend_class(kind)
    import inspect

    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "model"}
    kwargs = {k: v for k, v in options.items() if k in accepted and v is not None}
    ignored = sorted(set(options) - accepted)
    if ignored:
        log.debug("backend %s ignores options %s", kind, ", ".join(ignored))
    if isolate is None:
        from engine.llm.worker import isolate_default

        isolate = isolate_default(kind)
    if isolate:
        from engine.llm.worker import WorkerBackend

        return WorkerBackend(kind, model, kwargs)
    return cls(model, **kwargs)
