"""llama-cpp-python backend: GGUF files, GPU offload with ``n_gpu_layers``, CPU fallback.

JSON answers are constrained by a GBNF grammar compiled from the answer's JSON schema
(``LlamaGrammar.from_json_schema``, cached per schema).  Images need a multimodal projector
(``mmproj``); without one they are left out with a warning.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from engine.llm.base import (
    Backend,
    BackendError,
    GenerationOptions,
    Message,
    ProgressCallback,
    _require,
    image_bytes,
)

log = logging.getLogger(__name__)


def resolve_gguf(model: str, search_dirs: Sequence[str | Path] = ()) -> Path:
    """A GGUF path: ``model`` itself, or a file of that name (``.gguf`` optional) in a dir."""
    p = Path(os.path.expanduser(model))
    if p.is_file():
        return p
    names = [model] if model.endswith(".gguf") else [model, f"{model}.gguf"]
    for d in search_dirs:
        base = Path(os.path.expanduser(str(d)))
        for n in names:
            if (base / n).is_file():
                return base / n
        if base.is_dir():
            hits = sorted(base.rglob(names[-1]))
            if hits:
                return hits[0]
    where = ", ".join(str(d) for d in search_dirs) or "no GGUF directories configured"
    raise BackendError(f"GGUF model {model!r} not found (looked in: {where})")


class LlamaCppBackend(Backend):
    name = "llama-cpp"

    def __init__(
        self,
        model: str,
        *,
        n_gpu_layers: int = -1,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        seed: int = 0,
        mmproj: str | None = None,
        gguf_dirs: Sequence[str | Path] = (),
        verbose: bool = False,
    ) -> None:
        super().__init__(model)
        self.n_gpu_layers = n_gpu_layers
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.seed = seed
        self.mmproj = mmproj
        self.gguf_dirs = list(gguf_dirs)
        self.verbose = verbose
        self.path: Path | None = None
        self.gpu_layers_used = 0
        self._llm: Any = None
        self._grammars: dict[str, Any] = {}

    @property
    def identity(self) -> str:
        name = self.path.name if self.path else Path(self.model).name
        size = self.path.stat().st_size if self.path and self.path.exists() else 0
        return f"{self.name}:{name}:{size}"

    def _load(self, progress: ProgressCallback) -> None:
        llama_cpp = _require("llama_cpp", "llamacpp")
        self.path = resolve_gguf(self.model, self.gguf_dirs)
        layers = self.n_gpu_layers
        if layers != 0 and not llama_cpp.llama_supports_gpu_offload():
            log.info("llama.cpp was built without GPU support: running on CPU")
            layers = 0
        kwargs: dict[str, Any] = dict(
            model_path=str(self.path),
            n_ctx=self.n_ctx,
            seed=self.seed,
            verbose=self.verbose,
        )
        if self.n_threads:
            kwargs["n_threads"] = self.n_threads
        if self.mmproj:
            from llama_cpp.llama_chat_format import Llava15ChatHandler

            kwargs["chat_handler"] = Llava15ChatHandler(
                clip_model_path=self.mmproj, verbose=self.verbose
            )
        progress(0.1, f"reading {self.path.name}")
        try:
            self._llm = llama_cpp.Llama(n_gpu_layers=layers, **kwargs)
        except (ValueError, RuntimeError) as exc:
            if layers == 0:
                raise BackendError(f"llama.cpp cannot load {self.path}: {exc}") from exc
            log.warning("GPU offload failed (%s); falling back to CPU", exc)
            try:
                self._llm = llama_cpp.Llama(n_gpu_layers=0, **kwargs)
            except (ValueError, RuntimeError) as exc2:
                raise BackendError(f"llama.cpp cannot load {self.path}: {exc2}") from exc2
            layers = 0
        self.gpu_layers_used = layers

    def _unload(self) -> None:
        if self._llm is not None:
            close = getattr(self._llm, "close", None)
            if close is not None:
                close()
        self._llm = None
        self._grammars.clear()

    def grammar(self, schema: dict[str, Any]) -> Any:
        from llama_cpp import LlamaGrammar

        key = json.dumps(schema, sort_keys=True)
        if key not in self._grammars:
            self._grammars[key] = LlamaGrammar.from_json_schema(
                json.dumps(schema), verbose=self.verbose
            )
        return self._grammars[key]

    def _payload(self, messages: list[Message]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        dropped = False
        for m in messages:
            if m.images and self.mmproj:
                parts: list[dict[str, Any]] = [{"type": "text", "text": m.content}]
                for img in m.images:
                    b64 = base64.b64encode(image_bytes(img)).decode()
                    parts.append(
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64}"}}
                    )
                out.append({"role": m.role, "content": parts})
            else:
                dropped = dropped or bool(m.images)
                out.append(m.to_dict())
        if dropped:
            log.warning("no multimodal projector (mmproj) configured: images left out")
        return out

    def _stream(
        self, messages: list[Message], options: GenerationOptions, cancel: threading.Event
    ) -> Iterator[str]:
        kwargs: dict[str, Any] = dict(
            messages=self._payload(messages),
            stream=True,
            temperature=options.temperature,
            seed=options.seed,
            max_tokens=options.max_tokens,
        )
        if options.temperature <= 0:
            kwargs["top_k"] = 1
        if options.stop:
            kwargs["stop"] = options.stop
        if options.json_schema is not None:
            kwargs["grammar"] = self.grammar(options.json_schema)
        try:
            stream = self._llm.create_chat_completion(**kwargs)
        except ValueError as exc:  # e.g. prompt longer than the context window
            raise BackendError(f"llama.cpp: {exc}") from exc
        try:
            for chunk in stream:
                if cancel.is_set():
                    break
                for choice in chunk.get("choices", []):
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        yield text
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
