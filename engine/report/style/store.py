"""Where profiles and indexes live: the user's data folder, and nowhere else.

A radiologist's priors, style profile and embedding index are personal data: they are written
only under ``<user data dir>/style/`` (platformdirs; ``LLMH_STYLE_DIR`` or the ``data_dir``
argument move that folder, e.g. for tests), one sub-folder per radiologist whose name is a safe
slug plus a hash of the real name, so ``../x``, ``a/b``, ``;`` or a newline in a name can never
lead outside it. Files are written atomically (temp file + rename in the same folder).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import NotFound, UserError
from engine.report.style.priors import PriorPair

ENV = "LLMH_STYLE_DIR"
PROFILE, PAIRS, INDEX, INDEX_META = "profile.json", "pairs.jsonl", "index.npy", "index.json"


def data_root(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder that holds every radiologist's style data."""
    if data_dir:
        return Path(data_dir).expanduser()
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    from platformdirs import user_data_dir

    from engine.config import APP_NAME

    return Path(user_data_dir(APP_NAME)) / "style"


def slug(radiologist: str) -> str:
    """A folder name for ``radiologist``: readable, unique, never a path."""
    name = (radiologist or "").strip()
    if not name:
        raise UserError("name the radiologist (--radiologist R)")
    if "\0" in name:
        raise UserError("a radiologist's name cannot contain a NUL character")
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")[:40] or "r"
    return f"{safe}-{hashlib.sha256(name.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"


def folder(radiologist: str, data_dir: str | os.PathLike[str] | None = None) -> Path:
    return data_root(data_dir) / slug(radiologist)


def _atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def save(
    radiologist: str,
    profile: dict[str, Any],
    pairs: list[PriorPair],
    vectors: np.ndarray,
    index_meta: dict[str, Any],
    data_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Write the profile, the pairs and the index of ``radiologist``; return their folder."""
    d = folder(radiologist, data_dir)
    buf = io.BytesIO()
    np.save(buf, np.asarray(vectors, dtype=np.float32), allow_pickle=False)
    _atomic(d / INDEX, buf.getvalue())
    _atomic(d / INDEX_META, json.dumps(index_meta, indent=1).encode())
    lines = "".join(json.dumps(asdict(p)) + "\n" for p in pairs)
    _atomic(d / PAIRS, lines.encode("utf-8"))
    _atomic(d / PROFILE, json.dumps(profile, indent=1).encode())
    return d


def load_profile(
    radiologist: str, data_dir: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    p = folder(radiologist, data_dir) / PROFILE
    if not p.is_file():
        raise NotFound(
            f"no style profile for {radiologist!r} in {data_root(data_dir)}: run "
            f"`llm-heuristics report style build PRIOR_REPORTS --radiologist {radiologist}` first"
        )
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{p}: unreadable profile ({exc}); build it again") from None


def load_pairs(radiologist: str, data_dir: str | os.PathLike[str] | None = None) -> list[PriorPair]:
    p = folder(radiologist, data_dir) / PAIRS
    out = []
    for line in p.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        out.append(PriorPair(rec["id"], rec["findings"], rec["impression"], tuple(rec["sections"])))
    return out


def load_index(
    radiologist: str, data_dir: str | os.PathLike[str] | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    d = folder(radiologist, data_dir)
    meta = json.loads((d / INDEX_META).read_text())
    return np.load(d / INDEX, allow_pickle=False), meta


def profiled(data_dir: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """Radiologist name -> folder, for every profile in the data folder."""
    root = data_root(data_dir)
    out: dict[str, Path] = {}
    if not root.is_dir():
        return out
    for d in sorted(root.iterdir()):
        p = d / PROFILE
        if p.is_file():
            try:
                out[str(json.loads(p.read_text())["radiologist"])] = d
            except (OSError, ValueError, KeyError):
                continue
    return out
