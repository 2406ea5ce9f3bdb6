"""Answers cached by (model, prompt) under ``OUT/llm/cache``: a re-run with the same model and
the same prompt (same facts, rules, context, schema, sampling) reuses the answer instead of
asking again; temperature 0 and a fixed seed make that the answer the model would give."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from engine.atomic import write_text_atomic

CACHE_VERSION = 1


def cache_key(model_identity: str, prompt: str, extra: dict[str, Any] | None = None) -> str:
    payload = json.dumps(
        {"v": CACHE_VERSION, "model": model_identity, "prompt": prompt, "extra": extra or {}},
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class AnswerCache:
    """One JSON file per key; ``directory=None`` disables caching."""

    def __init__(self, directory: str | Path | None) -> None:
        self.directory = Path(directory) if directory is not None else None

    def _path(self, key: str) -> Path | None:
        return None if self.directory is None else self.directory / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        p = self._path(key)
        if p is None or not p.exists():
            return None
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None

    def put(self, key: str, value: dict[str, Any]) -> None:
        p = self._path(key)
        if p is not None:
            write_text_atomic(p, json.dumps(value, indent=1, ensure_ascii=False, sort_keys=True))
