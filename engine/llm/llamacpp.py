"""llama-cpp-python backend: GGUF files, GPU offload with ``n_gpu_layers``, CPU fallback.

JSON answers are constrained by a GBNF grammar compiled from the answer's JSON schema
(``LlamaGrammar.from_json_schema``, cached per schema).  Images need a multimodal projector
(``mmproj``: given, or a ``*mmproj*.gguf`` beside the model, see :func:`find_mmproj`) and a
chat handler of ``llama_cpp.llama_chat_format`` that fits the model (:func:`chat_handler_name`,
LLaVA 1.5 style unless the file name says otherwise); without a projector images are left out
with a warning.
"""

from __future__ import annotations

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
    image_data_uri,
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


def find_mmproj(gguf: Path) -> Path | None:
    """A multimodal projector beside ``gguf``: ``*mmproj*.gguf`` sharing the longest name prefix."""
    try:
        candidates = sorted(p for p in gguf.parent.glob("*.gguf") if "mmproj" in p.name.lower())
    except OSError:
        return None
    if not candidates:
        return None

    def shared(p: Path) -> int:
        a, b = p.name.lower(), gguf.name.lower()
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        return n

    return max(candidates, key=shared)


#: File-name hints -> the ``llama_cpp.llama_chat_format`` handler class for image chats.
CHAT_HANDLERS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("qwen2.5-vl", "qwen2_5_vl", "qwen25vl", "qwen2.5vl"), "Qwen25VLChatHandler"),
    (("llava-v1.6", "llava-1.6", "llava16", "llava-next"), "Llava16ChatHandler"),
    (("minicpm",), "MiniCPMv26ChatHandler"),
    (("moondream",), "MoondreamChatHandler"),
    (("nanollava",), "NanoLlavaChatHandler"),
    (("llama-3-vision", "llama3-vision"), "Llama3VisionAlphaChatHandler"),
    (("obsidian",), "ObsidianChatHandler"),
)


def chat_handler_name(model_path: str | Path, wanted: str | None = None) -> str:
    """The chat handler class for a vision GGUF: ``wanted``, or one its name suggests."""
    if wanted:
        return wanted
    name = Path(model_path).name.lower()
    for hints, handler in CHAT_HANDLERS:
        if any(h in name for h in hints):
            return handler
    return "Llava15ChatHandler"


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
        chat_handler: str | None = None,
        gguf_dirs: Sequence[str | Path] = (),
        verbose: bool = False,
    ) -> None:
        super().__init__(model)
        self.n_gpu_layers = n_gpu_layers
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.seed = seed
        self.mmproj = mmproj
        self.chat_handler = chat_handler
        self.vision = False
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
        if not self.mmproj:
            found = find_mmproj(self.path)
            if found is not None:
                log.info("using the multimodal projector %s beside the model", found.name)
                self.mmproj = str(found)
        if self.mmproj:
            kwargs["chat_handler"] = self._make_chat_handler()
            self.vision = True
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

    def _make_chat_handler(self) -> Any:
        from llama_cpp import llama_chat_format

        name = chat_handler_name(self.path or self.model, self.chat_handler)
        cls = getattr(llama_chat_format, name, None)
        if cls is None:
            raise BackendError(f"llama-cpp-python {_version()} has no chat handler {name!r}")
        if not Path(str(self.mmproj)).is_file():
            raise BackendError(f"multimodal projector {self.mmproj} not found")
        return cls(clip_model_path=str(self.mmproj), verbose=self.verbose)

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
                    parts.append({"type": "image_url", "image_url": {"url": image_data_uri(img)}})
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


def _version() -> str:
    try:
        import llama_cpp

        return str(llama_cpp.__version__)
    except ImportError:
        return "(not installed)"
