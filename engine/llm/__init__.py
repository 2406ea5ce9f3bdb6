"""Local LLMs for the groups the rules are unsure of.

``create_backend(kind, model, **options)`` builds one of four backends behind one interface
(:class:`~engine.llm.backend.Backend`: load with progress, streamed deltas, cancel, unload);
:func:`map_with_llm` asks it about groups and returns :class:`~engine.model.Mapping` objects.
Heavy libraries are imported only when a backend loads.
"""

from __future__ import annotations

from typing import Any

from engine.llm.backend import (
    BACKEND_NAMES,
    Backend,
    BackendError,
    GenerationOptions,
    Message,
    create_backend,
)
from engine.llm.mapper import DEFAULT_THRESHOLD, map_with_llm, needs_llm


def backend_from_settings(settings: Any, *, isolate: bool | None = None) -> Backend:
    """A backend built from :class:`engine.config.Settings` (not loaded yet).

    llama-cpp and transformers models run in a worker process unless ``isolate`` says otherwise
    (``LLMH_MODEL_WORKERS=0`` too): a native crash is then a clear error, not a dead process.
    """
    if not settings.model:
        raise BackendError(
            "no model given: pass --model (or set LLM_MODEL_NAME); `llm-heuristics models` "
            "lists what is available here"
        )
    return create_backend(
        settings.backend, settings.model, isolate=isolate, **settings.backend_options()
    )


def llm_mapping_backend(
    settings: Any,
    out_dir: Any = None,
    *,
    on_delta: Any = None,
    cancel: Any = None,
    backend: Backend | None = None,
) -> Any:
    """A callable with the signature of :data:`engine.mapping.BACKENDS` entries:
    ``(series, groups) -> {group_id: Mapping}``: the rules first, then the model where the rules
    are unsure (all groups with ``settings.llm_all``)."""

    def run(series: list, groups: list) -> dict:
        from engine.errors import UserError
        from engine.mapping import rules_backend

        rules = rules_backend(series, groups)
        try:
            b = backend or backend_from_settings(settings)
        except BackendError as exc:
            raise UserError(str(exc)) from exc
        try:
            mapped = map_with_llm(
                series,
                groups,
                list(rules.values()),
                b,
                context=settings.context,
                llm_all=settings.llm_all,
                threshold=settings.confidence_threshold,
                out_dir=out_dir,
                on_delta=on_delta,
                cancel=cancel,
                rationale_tokens=settings.rationale_tokens,
                answer_tokens=settings.answer_tokens,
                seed=settings.seed,
                temperature=settings.temperature,
                use_cache=settings.cache,
            )
        except BackendError as exc:  # the model could not load: the user can fix that
            raise UserError(str(exc)) from exc
        finally:
            if backend is None:
                b.unload()
        return {m.group_id: m for m in mapped}

    return run


def register_mapping_backend(
    name: str, settings: Any, out_dir: Any = None, *, on_delta: Any = None, cancel: Any = None
) -> str:
    """Put an LLM mapping backend under ``name`` into :data:`engine.mapping.BACKENDS` (the map
    engine's registry) bound to ``settings``; ``map_groups(..., backend=name)`` then uses it."""
    from engine.mapping import BACKENDS

    BACKENDS[name] = llm_mapping_backend(settings, out_dir, on_delta=on_delta, cancel=cancel)
    return name


def print_deltas_to_stderr() -> Any:
    """An ``on_delta`` that streams rationales to stderr, one header per group."""
    import sys

    state = {"gid": None}

    def on_delta(gid: str, phase: str, text: str) -> None:
        if phase != "rationale":
            return
        if state["gid"] != gid:
            print(f"\n[{gid}] ", end="", file=sys.stderr)
            state["gid"] = gid
        print(text, end="", file=sys.stderr, flush=True)

    return on_delta


__all__ = [
    "print_deltas_to_stderr",
    "register_mapping_backend",
    "BACKEND_NAMES",
    "DEFAULT_THRESHOLD",
    "Backend",
    "BackendError",
    "GenerationOptions",
    "Message",
    "backend_from_settings",
    "create_backend",
    "llm_mapping_backend",
    "map_with_llm",
    "needs_llm",
]
