"""The drafts file: one JSON record per image, appended safely, read back for resuming.

Each record is one ``os.write`` of a whole line on an ``O_APPEND`` descriptor, then fsync, so
a crash leaves at most one partial last line; opening the file again cuts that partial line
before anything is appended. An image is done when a record
with its resolved path and sha256 is in the file.
"""

from __future__ import annotations

import fcntl
import json
import os
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
    """Append-only JSONL with the keys of the images already drafted; one writer at a time
    (an exclusive ``flock`` held until :meth:`close`: a second run on the same file is refused
    instead of drafting the same images twice)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise UserError(f"{self.path} is a folder; -o names the JSONL file to write")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UserError(f"cannot write {self.path}: {exc}") from exc
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._fd)
            raise UserError(
                f"{self.path} is being written by another run; wait for it or choose another -o"
            ) from None
        try:
            self._drop_partial_line()
            self.records = read_records(self.path)
        except BaseException:
            self.close()
            raise
        self.done = {image_key(r["image"], r.get("image_sha256", "")) for r in self.records}

    def _drop_partial_line(self) -> None:
        """Cut a partial last line (a run killed mid-write): only that garbage goes."""
        size = os.fstat(self._fd).st_size
        if not size:
            return
        tail = os.pread(self._fd, min(size, 1 << 20), max(0, size - (1 << 20)))
        if tail.endswith(b"\n"):
            return
        cut = tail.rfind(b"\n")
        if cut < 0 and size > len(tail):  # a partial line longer than the tail read
            whole = os.pread(self._fd, size, 0)
            cut, tail = whole.rfind(b"\n"), whole
        keep = size - len(tail) + cut + 1 if cut >= 0 else 0
        os.ftruncate(self._fd, keep)
        os.fsync(self._fd)

    def is_done(self, path: str, sha256: str) -> bool:
        return image_key(path, sha256) in self.done

    def latest(self, path: str, sha256: str) -> dict[str, Any]:
        """The newest record of an image that :meth:`is_done`."""
        key = image_key(path, sha256)
        return next(
            r
            for r in reversed(self.records)
            if image_key(r["image"], r.get("image_sha256", "")) == key
        )

    def append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, ensure_ascii=True) + "\n").encode("ascii")
        view = memoryview(line)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        os.fsync(self._fd)
        self.records.append(record)
        self.done.add(image_key(record["image"], record.get("image_sha256", "")))

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # releases the lock
            self._fd = -1

    def __enter__(self) -> DraftsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
