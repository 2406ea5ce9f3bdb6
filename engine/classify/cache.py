"""A sqlite cache of image descriptions and text embeddings, so a re-run costs nothing.

Descriptions are keyed by the image's SHA-256, the prompt's hash and the model's identity with
its sampling settings (backend:model, temperature, seed, max tokens); vectors by the text's hash
and the embedder's fingerprint. An interrupted ``train`` resumes where it stopped: every answer
is committed as it arrives. The default place is the user's cache dir
(``$XDG_CACHE_HOME/llm-heuristics/classify.sqlite``); ``--cache DIR`` puts it elsewhere (e.g.
beside the bundle).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from pathlib import Path

import numpy as np

__all__ = ["DescriptionCache", "default_cache_path", "text_hash"]


def default_cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "llm-heuristics" / "classify.sqlite"


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def description_key(image_sha: str, prompt: str, model_identity: str) -> str:
    return text_hash("\x1f".join((image_sha, text_hash(prompt), model_identity)))


class DescriptionCache:
    """Thread-safe (one connection, one lock): the describer writes from worker threads."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        p = Path(path) if path else default_cache_path()
        if p.is_dir() or (not p.suffix and not p.exists()):
            p = p / "classify.sqlite"
        p.parent.mkdir(parents=True, exist_ok=True)
        self.path = p
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(p), check_same_thread=False, timeout=30)
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS descriptions (key TEXT PRIMARY KEY, text TEXT)"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS vectors (text_sha TEXT, fingerprint TEXT, "
                "vec BLOB, PRIMARY KEY (text_sha, fingerprint))"
            )
            self._db.commit()
        self.hits = 0
        self.misses = 0

    # --- descriptions -------------------------------------------------------------------
    def get_description(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT text FROM descriptions WHERE key=?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return str(row[0])

    def put_description(self, key: str, text: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO descriptions VALUES (?, ?)", (key, text))
            self._db.commit()

    # --- vectors ------------------------------------------------------------------------
    def get_vectors(self, texts: list[str], fingerprint: str) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        shas = sorted({text_hash(t) for t in texts})
        with self._lock:
            for i in range(0, len(shas), 500):
                chunk = shas[i : i + 500]
                marks = ",".join("?" * len(chunk))
                for sha, blob in self._db.execute(
                    f"SELECT text_sha, vec FROM vectors WHERE fingerprint=? AND text_sha IN ({marks})",
                    (fingerprint, *chunk),
                ):
                    out[sha] = np.frombuffer(blob, dtype=np.float32)
        return out

    def put_vectors(self, texts: list[str], vectors: np.ndarray, fingerprint: str) -> None:
        rows = [
            (text_hash(t), fingerprint, np.asarray(v, dtype=np.float32).tobytes())
            for t, v in zip(texts, vectors, strict=True)
        ]
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)", rows)
            self._db.commit()

    def embed(self, embedder: object, texts: list[str]) -> np.ndarray:
        """``embedder.embed(texts)`` through the cache (only unseen texts are embedded)."""
        fp = embedder.fingerprint  # type: ignore[attr-defined]
        have = self.get_vectors(texts, fp)
        todo = sorted({t for t in texts if text_hash(t) not in have})
        if todo:
            vecs = embedder.embed(todo)  # type: ignore[attr-defined]
            self.put_vectors(todo, vecs, fp)
            have.update({text_hash(t): v for t, v in zip(todo, vecs, strict=True)})
        if not texts:
            return np.zeros((0, embedder.dim), dtype=np.float32)  # type: ignore[attr-defined]
        return np.stack([have[text_hash(t)] for t in texts]).astype(np.float32)

    def close(self) -> None:
        with self._lock:
            self._db.close()
