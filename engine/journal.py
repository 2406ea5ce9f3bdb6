"""The decisions journal on disk: ``OUT/user_decisions.jsonl`` read, validated, appended.

One JSON line per record, fsynced on append. Reading never drops a line in silence: a torn last
line (a crash mid-append) is tolerated and set aside by the next append; any other line that
fails validation (types included) is moved to ``user_decisions.quarantine.jsonl`` with its line
number and the reason. Replaying the records into a history is :mod:`engine.review`'s job.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.atomic import output_error, write_bytes_atomic
from engine.model import ACTIONS
from engine.workspace import DECISIONS_FILE, QUARANTINE_FILE

_lock = threading.RLock()  # one writer of the journal at a time in this process
TORN = "torn: a crash while it was written (that decision was never reported as saved)"


def journal_path(out_dir: str | os.PathLike[str]) -> Path:
    return Path(out_dir) / DECISIONS_FILE


def quarantine_path(out_dir: str | os.PathLike[str]) -> Path:
    return Path(out_dir) / QUARANTINE_FILE


def _whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def record_problem(rec: Any) -> str:
    """Why a parsed journal line is not a record this engine wrote ("" when it is one)."""
    if not isinstance(rec, dict):
        return "not a JSON object"
    op = rec.get("op")
    if op not in ("decide", "decide_many", "undo", "redo"):
        return f"unknown op {op!r}"
    if rec.get("seq") is not None and not _whole(rec["seq"]):
        return f"seq {rec['seq']!r} is not a whole number"
    if rec.get("time") is not None and not _number(rec["time"]):
        return f"time {rec['time']!r} is not a number"
    gid = rec.get("group_id")
    if op == "decide_many":
        items = rec.get("decisions")
        if not isinstance(items, list) or not items:
            return "decisions is missing or not a non-empty list"
        for i, d in enumerate(items):
            why = _decision_problem(d) if isinstance(d, dict) else "not a JSON object"
            if why:
                return f"decisions[{i}]: {why}"
        return ""
    if op != "decide":
        return "" if gid is None or isinstance(gid, str) else "group_id is not a string"
    return _decision_problem(rec)


def _decision_problem(rec: dict[str, Any]) -> str:
    """Why one decision's fields are not valid ("" when they are)."""
    gid = rec.get("group_id")
    if not isinstance(gid, str) or not gid:
        return "group_id is missing or not a string"
    if rec.get("action") not in ACTIONS:
        return f"action {rec.get('action')!r} is not one of {', '.join(ACTIONS)}"
    for k in ("datatype", "suffix", "skip_reason", "note"):
        if rec.get(k) is not None and not isinstance(rec[k], str):
            return f"{k} is not a string"
    ents = rec.get("entities")
    if ents is not None:
        if not isinstance(ents, dict):
            return "entities is not an object"
        if not all(isinstance(v, str) for v in ents.values()):
            return "an entity value is not a string"
    return ""


def _valid_line(text: str) -> bool:
    try:
        return not record_problem(json.loads(text))
    except ValueError:
        return False


@dataclass
class Journal:
    """The journal as read: good records, bad lines ``(line number, text, why)``, and
    whether the last line is torn (tolerated: a crash mid-append)."""

    records: list[dict[str, Any]] = field(default_factory=list)
    bad: list[tuple[int, str, str]] = field(default_factory=list)
    torn: bool = False


def check_journal(out_dir: str | os.PathLike[str]) -> Journal:
    """Read and validate every line of the journal; nothing is dropped without a reason."""
    j = Journal()
    p = journal_path(out_dir)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        return j
    lines = data.split(b"\n")
    last = len(lines) - 1  # the bytes after the final newline: "" unless torn
    for i, raw in enumerate(lines):
        text = raw.decode("utf-8", "replace").strip()
        if not text:
            continue
        try:
            rec = json.loads(text)
        except ValueError:
            if i == last:
                j.torn = True  # a crash mid-append: that decision was never reported as saved
            else:
                j.bad.append((i + 1, text, "not valid JSON"))
            continue
        why = record_problem(rec)
        if why:
            j.bad.append((i + 1, text, why))
        else:
            j.records.append(rec)
    return j


def read_journal(out_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every valid record of the journal, in order (a torn last line is skipped; bad lines
    are left out here and moved aside by :func:`load_state`)."""
    return check_journal(out_dir).records


def _quarantine(out: Path, lines: list[tuple[int, str, str]], torn: bool = False) -> None:
    """Append ``lines`` to the quarantine file (fsynced) with their line number and why."""
    now = time.time()
    data = "".join(
        json.dumps({"line": n, "reason": why, "text": text, "time": now, "torn": torn}) + "\n"
        for n, text, why in lines
    ).encode("utf-8")
    q = quarantine_path(out)
    try:
        fd = os.open(q, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise output_error(q, exc) from exc


def _move_bad_lines(out: Path) -> int:
    """With OUT locked: move the journal's bad lines to the quarantine file and rewrite the
    journal without them (atomically). Returns how many were moved."""
    with _lock:
        j = check_journal(out)
        if not j.bad:
            return 0
        _quarantine(out, j.bad)
        drop = {n for n, _t, _w in j.bad}
        p = journal_path(out)
        lines = p.read_bytes().split(b"\n")
        keep = [ln for i, ln in enumerate(lines) if i + 1 not in drop]
        write_bytes_atomic(p, b"\n".join(keep))
        return len(j.bad)


def _quarantined(out: Path) -> list[dict[str, Any]]:
    """The lines set aside for failing validation (torn ones are not counted)."""
    try:
        text = quarantine_path(out).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    out_lines = []
    for ln in text.splitlines():
        try:
            rec = json.loads(ln)
        except ValueError:
            rec = {"reason": "unreadable quarantine line"}
        if isinstance(rec, dict) and not rec.get("torn"):
            out_lines.append(rec)
    return out_lines


def _warnings(out: Path, j: Journal, moved: int) -> list[str]:
    """What a person must hear about the journal (in every step's output until handled)."""
    warns = []
    if j.bad:  # could not be moved (OUT busy or not writable): still not in effect
        why = "; ".join(f"line {n}: {w}" for n, _t, w in j.bad[:5])
        warns.append(
            f"{journal_path(out)}: {len(j.bad)} invalid line(s) ignored ({why}); they are moved "
            f"to {QUARANTINE_FILE} by the next step that can write OUT"
        )
    q = _quarantined(out)
    if q:
        why = "; ".join(f"line {r.get('line', '?')}: {r.get('reason', '?')}" for r in q[:5])
        verb = f"moved {moved} invalid line(s)" if moved else f"{len(q)} invalid line(s) are"
        warns.append(
            f"{journal_path(out).name}: {verb} set aside in {quarantine_path(out)} ({why}); "
            "those decisions are not in effect: make them again, then delete that file"
        )
    return warns


def _append(out_dir: Path, record: dict[str, Any]) -> None:
    p = journal_path(out_dir)
    new = not p.exists()
    data = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
    try:
        fd = os.open(p, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:
        raise output_error(p, exc) from exc
    start = -1  # the journal's size before this record: a failed append is cut back to it
    try:
        size = os.fstat(fd).st_size
        if not new and size and os.pread(fd, 1, size - 1) != b"\n":
            whole = os.pread(fd, size, 0)
            cut = whole.rfind(b"\n")
            last = whole[cut + 1 :].decode("utf-8", "replace")
            if _valid_line(last):  # a whole record without its newline (edited by hand)
                data = b"\n" + data
            else:
                # a torn last line (a crash mid-append): set it aside, then append after the
                # last complete line, so it can never swallow this record
                keep = cut + 1
                n = whole[:keep].count(b"\n") + 1
                _quarantine(out_dir, [(n, last.strip(), TORN)], torn=True)
                os.ftruncate(fd, keep)
        start = os.fstat(fd).st_size
        if os.write(fd, data) != len(data):  # a full disk may take part of it without an error
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(p))
        os.fsync(fd)
    except OSError as exc:
        # never a torn record that a later append would set aside: the decision was not saved
        with contextlib.suppress(OSError):
            if start >= 0:
                os.ftruncate(fd, start)
            if new and os.fstat(fd).st_size == 0:
                os.unlink(p)
        raise output_error(p, exc) from exc
    finally:
        os.close(fd)
    if new:
        with contextlib.suppress(OSError):
            dfd = os.open(p.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
