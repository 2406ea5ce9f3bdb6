"""Embedders served over HTTP: Ollama (``POST /api/embed``) and OpenAI-compatible servers
(``POST {base}/embeddings``: llama.cpp's server, vLLM, text-embeddings-inference)."""

from __future__ import annotations

import base64
import json
import logging
import os
import urllib.error
import urllib.request
from typing import Any

import numpy as np

from engine.llm.embed_base import Embedder, EmbedError

log = logging.getLogger(__name__)


class _HTTPEmbedder(Embedder):
    base: str = ""
    what: str = ""

    def __init__(self, model: str, *, timeout: float, dim: int | None, batch_size: int) -> None:
        if not model:
            raise EmbedError(f"{self.kind}: name the embedding model")
        super().__init__(model)
        self.timeout = timeout
        self.batch_size = batch_size
        self._dim = dim
        self._warned = False

    def _headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json", "Accept": "application/json"}

    def _call(self, path: str, body: dict[str, Any] | None = None) -> Any:
        if not self._warned:
            from engine.llm.privacy import warn_if_remote

            warn_if_remote(self.base, what=self.what)
            self._warned = True
        data = None if body is None else json.dumps(body).encode("utf-8")
        req = urllib.request.Request(
            f"{self.base}{path}",
            data=data,
            method="GET" if body is None else "POST",
            headers=self._headers(),
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:500]
            try:
                detail = json.loads(detail).get("error", detail)
                if isinstance(detail, dict):
                    detail = detail.get("message", detail)
            except (ValueError, AttributeError):
                pass
            raise EmbedError(f"{self.base}{path}: HTTP {exc.code}: {detail}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise EmbedError(f"{self.what} at {self.base} does not answer: {exc}") from exc
        try:
            return json.loads(raw.decode("utf-8"))
        except ValueError as exc:
            raise EmbedError(f"{self.base}{path}: not JSON: {raw[:200]!r}") from exc


def _ollama_host(host: str | None) -> str:
    if host is None:
        from engine.llm.ollama_backend import default_host

        host = default_host()
    host = host.strip().rstrip("/")
    return host if "://" in host else f"http://{host}"


class OllamaEmbedder(_HTTPEmbedder):
    """``POST {host}/api/embed`` with ``{"model", "input": [...], "truncate": true}``."""

    kind = "ollama"
    what = "Ollama server"

    def __init__(
        self,
        model: str,
        *,
        host: str | None = None,
        timeout: float = 120.0,
        dim: int | None = None,
        batch_size: int = 64,
        digest: str | None = None,
        keep_alive: str | None = None,
    ) -> None:
        super().__init__(model, timeout=timeout, dim=dim, batch_size=batch_size)
        self.base = _ollama_host(host)
        self.keep_alive = keep_alive
        self._digest = digest

    @property
    def digest(self) -> str:
        """The model's digest from ``/api/tags`` ("" when the server does not list it)."""
        if self._digest is None:
            doc = self._call("/api/tags")
            names = {self.model, f"{self.model}:latest"}
            self._digest = next(
                (
                    str(m.get("digest", ""))
                    for m in doc.get("models", [])
                    if m.get("name") in names or m.get("model") in names
                ),
                "",
            )
            if not self._digest:
                log.warning("Ollama at %s does not list %s", self.base, self.model)
        return self._digest

    def _identity(self) -> dict[str, Any]:
        return {"model": self.model, "digest": self.digest}

    def _embed(self, texts: list[str]) -> np.ndarray:
        body: dict[str, Any] = {"model": self.model, "input": texts, "truncate": True}
        if self.keep_alive is not None:
            body["keep_alive"] = self.keep_alive
        doc = self._call("/api/embed", body)
        vectors = doc.get("embeddings") if isinstance(doc, dict) else None
        if not isinstance(vectors, list):
            raise EmbedError(f"{self.base}/api/embed: no 'embeddings' in the answer")
        return _as_matrix(vectors, self.name)


class OpenAIEmbedder(_HTTPEmbedder):
    """``POST {base_url}/embeddings`` with ``{"model", "input": [...], "encoding_format"}``."""

    kind = "openai"
    what = "OpenAI-compatible server"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
        dim: int | None = None,
        dimensions: int | None = None,
        batch_size: int = 64,
    ) -> None:
        super().__init__(model, timeout=timeout, dim=dimensions or dim, batch_size=batch_size)
        if base_url is None:
            from engine.llm.openai_backend import default_base_url

            base_url = default_base_url()
        self.base = base_url.strip().rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY", "")
        self.dimensions = dimensions  # sent only when asked for (not every server knows it)

    def _headers(self) -> dict[str, str]:
        h = super()._headers()
        if self.api_key:
            h["Authorization"] = f"Bearer {self.api_key}"
        return h

    def _identity(self) -> dict[str, Any]:
        return {"model": self.model, "dimensions": self.dimensions}

    def _embed(self, texts: list[str]) -> np.ndarray:
        body: dict[str, Any] = {"model": self.model, "input": texts, "encoding_format": "float"}
        if self.dimensions:
            body["dimensions"] = self.dimensions
        doc = self._call("/embeddings", body)
        data = doc.get("data") if isinstance(doc, dict) else None
        if not isinstance(data, list) or len(data) != len(texts):
            n = len(data) if isinstance(data, list) else 0
            raise EmbedError(f"{self.base}/embeddings: {n} vectors for {len(texts)} texts")
        rows = sorted(data, key=lambda d: int(d.get("index", 0)))
        vectors = []
        for row in rows:
            emb = row.get("embedding")
            if isinstance(emb, str):  # encoding_format=base64 answered anyway: float32 LE
                emb = np.frombuffer(base64.b64decode(emb), dtype="<f4")
            vectors.append(emb)
        return _as_matrix(vectors, self.name)


def _as_matrix(vectors: list[Any], name: str) -> np.ndarray:
    try:
        v = np.asarray([np.asarray(x, dtype=np.float32) for x in vectors], dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise EmbedError(f"{name}: vectors of different lengths or not numbers") from exc
    if v.ndim != 2 or not v.shape[1] or not np.isfinite(v).all():
        raise EmbedError(f"{name}: unusable vectors (shape {v.shape})")
    return v
