"""OpenAI-compatible chat completions over HTTP (vLLM, llama.cpp's server, llama_cpp.server).

Standard library only (``urllib``): ``POST {base_url}/chat/completions`` with ``stream=true``
and server-sent events.  JSON answers use ``response_format`` ``json_schema`` (OpenAI, vLLM,
llama.cpp); servers that only know ``{"type": "json_object", "schema": ...}``
(llama-cpp-python) are detected by their error answer (4xx, or llama-cpp-python's
500 naming ``response_format``) and asked that way from then on.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

from engine.llm.base import (
    Backend,
    BackendError,
    GenerationOptions,
    Message,
    ProgressCallback,
    image_data_uri,
)
from engine.llm.privacy import warn_if_remote

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
FORMAT_STYLES = ("json_schema", "json_object")


def default_base_url() -> str:
    return os.environ.get("OPENAI_BASE_URL", "").strip() or DEFAULT_BASE_URL


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 600.0,
        format_style: str | None = None,
    ) -> None:
        super().__init__(model)
        self.base_url = (base_url or default_base_url()).rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY", "")
        self.timeout = timeout
        self.format_style = format_style  # None: try json_schema, fall back to json_object
        self.server_models: list[str] = []

    # --- HTTP ---------------------------------------------------------------------------
    def _request(self, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode("utf-8")
        req = urllib.request.Request(
            f"{self.base_url}{path}",
            data=data,
            method="GET" if body is None else "POST",
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        if self.api_key:
            req.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            return urllib.request.urlopen(req, timeout=self.timeout)  # noqa: S310 - user's URL
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:500]
            raise _HTTPError(exc.code, f"{self.base_url}{path}: HTTP {exc.code}: {detail}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise BackendError(f"{self.base_url} does not answer: {exc}") from exc

    def list_models(self) -> list[str]:
        with self._request("/models") as resp:
            doc = json.loads(resp.read().decode("utf-8"))
        return [m.get("id", "") for m in doc.get("data", []) if isinstance(m, dict)]

    # --- lifecycle ----------------------------------------------------------------------
    def _load(self, progress: ProgressCallback) -> None:
        warn_if_remote(self.base_url, what="OpenAI-compatible server")
        try:
            self.server_models = self.list_models()
        except _HTTPError as exc:
            raise BackendError(str(exc)) from exc
        progress(0.5, f"{self.base_url} answers")
        if self.server_models and self.model not in self.server_models:
            log.warning(
                "server %s lists %s, not %r; asking for %r anyway",
                self.base_url,
                ", ".join(self.server_models),
                self.model,
                self.model,
            )

    # --- generation ---------------------------------------------------------------------
    def _body(self, messages: list[Message], o: GenerationOptions, style: str) -> dict[str, Any]:
        msgs: list[dict[str, Any]] = []
        for m in messages:
            if m.images:
                parts: list[dict[str, Any]] = [{"type": "text", "text": m.content}]
                for img in m.images:
                    parts.append({"type": "image_url", "image_url": {"url": image_data_uri(img)}})
                msgs.append({"role": m.role, "content": parts})
            else:
                msgs.append(m.to_dict())
        body: dict[str, Any] = {
            "model": self.model,
            "messages": msgs,
            "stream": True,
            "temperature": o.temperature,
            "seed": o.seed,
            "max_tokens": o.max_tokens,
        }
        if o.stop:
            body["stop"] = o.stop
        if o.json_schema is not None:
            if style == "json_schema":
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "bids_mapping", "schema": o.json_schema},
                }
            else:
                body["response_format"] = {"type": "json_object", "schema": o.json_schema}
        return body

    def _stream(
        self, messages: list[Message], options: GenerationOptions, cancel: threading.Event
    ) -> Iterator[str]:
        styles = [self.format_style] if self.format_style else list(FORMAT_STYLES)
        resp = None
        for i, style in enumerate(styles):
            try:
                resp = self._request("/chat/completions", self._body(messages, options, style))
                if options.json_schema is not None:
                    self.format_style = style
                break
            except _HTTPError as exc:
                last_try = i == len(styles) - 1 or options.json_schema is None
                rejected = exc.code in {400, 404, 415, 422} or "response_format" in str(exc)
                if last_try or not rejected:
                    raise BackendError(str(exc)) from exc
                log.info("server rejected response_format %s; trying %s", style, styles[i + 1])
        assert resp is not None
        try:
            for raw in resp:
                if cancel.is_set():
                    break
                line = raw.decode("utf-8", "replace").strip()
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                try:
                    event = json.loads(data)
                except json.JSONDecodeError:
                    continue
                if "error" in event:
                    raise BackendError(f"{self.base_url}: {event['error']}")
                for choice in event.get("choices", []):
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        yield text
        finally:
            resp.close()


class _HTTPError(BackendError):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
