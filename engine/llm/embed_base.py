"""The embedder interface (:class:`Embedder`) and what every embedder shares: unit-length rows,
a fingerprint of what makes the vectors what they are, the one error class."""

from __future__ import annotations

import hashlib
import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from engine.llm.base import BackendError

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
