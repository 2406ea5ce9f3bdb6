"""Ollama backend through the official ``ollama`` Python client.

The server is ``OLLAMA_HOST`` (default ``http://127.0.0.1:11434``); a host that is not this
machine is used only because the user named it, with a loud warning.  Models are never pulled
at run time (``setup_models.sh`` does that); JSON answers use Ollama's ``format=<schema>``.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
from collections.abc import Iterator
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
from engine.llm.privacy import warn_if_remote

log = logging.getLogger(__name__)

DEFAULT_HOST = "http://127.0.0.1:11434"


def default_host() -> str:
    return os.environ.get("OLLAMA_HOST", "").strip() or DEFAULT_HOST


class OllamaBackend(Backend):
    name = "ollama"

    def __init__(
        self,
        model: str,
        *,
        host: str | None = None,
        timeout: float = 600.0,
        keep_alive: str | float | None = "10m",
    ) -> None:
        super().__init__(model)
        self.host = host or default_host()
        self.timeout = timeout
        self.keep_alive = keep_alive
        self._client: Any = None

    def _client_or_new(self) -> Any:
        if self._client is None:
            ollama = _require("ollama", "ollama")
            warn_if_remote(self.host, what="Ollama server")
            self._client = ollama.Client(host=self.host, timeout=self.timeout)
        return self._client

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        import ollama

        try:
            return fn(*args, **kwargs)
        except ollama.ResponseError as exc:
            raise BackendError(
                f"Ollama at {self.host}: {exc.error} (HTTP {exc.status_code})"
            ) from exc
        except (ConnectionError, OSError) as exc:
            raise BackendError(f"Ollama at {self.host} does not answer: {exc}") from exc
        except Exception as exc:
            if exc.__class__.__module__.startswith("httpx"):
                raise BackendError(f"Ollama at {self.host}: {exc}") from exc
            raise

    def tags(self) -> list[str]:
        """Names of the models the server has (``/api/tags``)."""
        client = self._client_or_new()
        resp = self._call(client.list)
        return [m.model for m in resp.models if m.model]

    def _load(self, progress: ProgressCallback) -> None:
        client = self._client_or_new()
        names = self.tags()
        progress(0.3, f"Ollama at {self.host} answers")
        wanted = {self.model, f"{self.model}:latest"}
        if not wanted & set(names):
            raise BackendError(
                f"Ollama at {self.host} has no model {self.model!r} "
                f"(has: {', '.join(names) or 'none'}); run `ollama pull {self.model}` "
                "or setup_models.sh"
            )
        # An empty prompt loads the model into memory without generating.
        self._call(client.generate, model=self.model, prompt="", keep_alive=self.keep_alive)

    def _unload(self) -> None:
        if self._client is not None:
            try:
                self._client.generate(model=self.model, prompt="", keep_alive=0)
            except Exception as exc:  # noqa: BLE001 - unloading is best effort
                log.debug("ollama unload: %s", exc)
        self._client = None

    def _stream(
        self, messages: list[Message], options: GenerationOptions, cancel: threading.Event
    ) -> Iterator[str]:
        client = self._client_or_new()
        payload: list[dict[str, Any]] = []
        for m in messages:
            d = m.to_dict()
            if m.images:
                d["images"] = [base64.b64encode(image_bytes(i)).decode() for i in m.images]
            payload.append(d)
        opts: dict[str, Any] = {
            "temperature": options.temperature,
            "seed": options.seed,
            "num_predict": options.max_tokens,
        }
        if options.stop:
            opts["stop"] = options.stop
        stream = self._call(
            client.chat,
            model=self.model,
            messages=payload,
            stream=True,
            format=options.json_schema,
            options=opts,
            keep_alive=self.keep_alive,
        )
        it = iter(stream)
        try:
            while not cancel.is_set():
                try:
                    chunk = self._call(next, it)
                except StopIteration:
                    break
                text = chunk.message.content if chunk.message else ""
                if text:
                    yield text
                if chunk.done:
                    break
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
