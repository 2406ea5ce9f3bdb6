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


