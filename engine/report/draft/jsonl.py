"""The drafts file: one JSON record per image, appended safely, read back for resuming.

Each record is one ``os.write`` of a whole line on an ``O_APPEND`` descriptor, then fsync, so
a crash leaves at most one partial last line; opening the file again drops that partial line
(rewriting the file atomically) before anything is appended. An image is done when a record
with its resolved path and sha256 is in the file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from engine.errors import UserError


def image_key(path: str, sha256: str) -> tuple[str, str]:
    return os.path.normpath(os.path.abspath(path)), sha256


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The complete records of a drafts file (a partial last line is left out)."""
    p = Path(path)
    if not p.exists():
        return []
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {p}: {exc}") from exc
    out: list[dict[str, Any]] = []
    lines = data.split(b"\n")
    for n, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            if n == len(lines):  # the partial last line of an interrupted run
                break
            raise UserError(
                f"{p} line {n} is not a JSON record; it is not a drafts file (choose another -o)"
            ) from None
        if not isinstance(rec, dict) or "image" not in rec:
            raise UserError(f"{p} line {n} is not a draft record (no 'image')")
        out.append(rec)
    return out


class DraftsFile:
    """Append-only JSONL with the keys of the images already drafted."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise UserError(f"{self.path} is a folder; -o names the JSONL file to write")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair_tail()
        self.records = read_records(self.path)
        self.done = {image_key(r["image"], r.get("image_sha256", "")) for r in self.records}

    def _repair_tail(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if not data or data.endswith(b"\n"):
            return
        keep = data[: data.rfind(b"\n") + 1]  # drop the partial last line
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(keep)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def is_done(self, path: str, sha256: str) -> bool:
        return image_key(path, sha256) in self.done

    def append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, ensure_ascii=True) + "\n").encode("ascii")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(line)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
        finally:
            os.close(fd)
        self.records.append(record)
        self.done.add(image_key(record["image"], record.get("image_sha256", "")))
