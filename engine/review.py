"""The person's review decisions: an append-only journal that always wins over rules and LLM.

Every decision (accept, edit, skip, unskip) and every undo/redo is one JSON line appended to
``OUT/user_decisions.jsonl`` and fsynced before the call returns, so a killed session loses
nothing that was shown as saved. The current state is a replay of the journal: a linear
history with an undo pointer, like an editor's (a new decision after an undo drops the redo
tail). A bulk review (many groups accepted or skipped in one action) is ONE line,
``{"op": "decide_many", "decisions": [...]}``, and one step of that history: one undo takes
all of it back, one redo re-applies all of it. A torn last line (a crash mid-write) is ignored on replay, and set aside by the next
append. Every other line is validated (types included): one that fails is never dropped in
silence nor allowed to crash a step; it is moved to ``user_decisions.quarantine.jsonl`` with
its line number and the reason, and every step warns about it until that file is deleted.
Writes lock OUT (:func:`engine.workspace.lock_out`): a decision made while another process
writes OUT fails at once, so it is never shown as saved when it was not.

:func:`apply_decision` folds one decision into a proposal (``source="user"``); the one place
that does it for a whole workspace is :func:`engine.mapping.effective.effective`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.atomic import output_error, write_bytes_atomic
from engine.bids_schema import BidsName
from engine.errors import UserError
from engine.model import ACTIONS, USER_SKIP, Decision
from engine.workspace import DECISIONS_FILE, QUARANTINE_FILE, lock_out

_lock = threading.RLock()  # one writer of the journal at a time in this process
TORN = "torn: a crash while it was written (that decision was never reported as saved)"


def check_name(datatype: str, suffix: str, entities: dict[str, str]) -> list[str]:
    """Why the BIDS schema refuses this as a group's name (empty when valid)."""
    return BidsName.of(datatype, suffix, entities).problems()


# --- the journal --------------------------------------------------------------------------


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
        os.write(fd, data)
        os.fsync(fd)
    except OSError as exc:
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


@dataclass
class ReviewState:
    """The replayed journal: ``history`` of decisions, ``pos`` of them in effect."""

    history: list[Decision] = field(default_factory=list)
    pos: int = 0
    steps: list[int] = field(default_factory=list)  # decisions per history step (bulk: many)
    last_seq: int = 0
    warnings: list[str] = field(default_factory=list)  # about the journal, for every step

    @property
    def can_undo(self) -> bool:
        return self.pos > 0

    @property
    def can_redo(self) -> bool:
        return self.pos < len(self.history)

    def _bounds(self) -> list[int]:
        """Where each history step ends: ``[0, e1, e2, ...]`` (``pos`` is always one of them)."""
        out = [0]
        for n in self.steps:
            out.append(out[-1] + n)
        return out

    def push(self, decisions: list[Decision]) -> None:
        """A new step (one decision, or a bulk one): drops the redo tail."""
        b = self._bounds()
        del self.history[self.pos :]
        self.steps = self.steps[: b.index(self.pos)] if self.pos in b else self.steps
        self.history.extend(decisions)
        self.steps.append(len(decisions))
        self.pos = len(self.history)

    def step_back(self) -> list[Decision]:
        """Undo one step: the decisions it takes back (``[]`` when there is none)."""
        b = self._bounds()
        i = b.index(self.pos) if self.pos in b else len(b) - 1
        if i == 0:
            return []
        self.pos = b[i - 1]
        return self.history[b[i - 1] : b[i]]

    def step_forward(self) -> list[Decision]:
        """Redo one step: the decisions it re-applies (``[]`` when there is none)."""
        b = self._bounds()
        i = b.index(self.pos) if self.pos in b else len(b) - 1
        if i + 1 >= len(b):
            return []
        self.pos = b[i + 1]
        return self.history[b[i] : b[i + 1]]

    def effective(self) -> dict[str, Decision]:
        """group_id -> the decision in effect (a folded unskip becomes the state before skip)."""
        state: dict[str, Decision] = {}
        before_skip: dict[str, Decision | None] = {}
        for d in self.history[: self.pos]:
            cur = state.get(d.group_id)
            if d.action == "skip":
                if cur is None or cur.action != "skip":
                    before_skip[d.group_id] = cur
                state[d.group_id] = d
            elif d.action == "unskip" and not d.has_name:
                if cur is None or cur.action != "skip":
                    continue  # nothing of the person's to take back (a rules skip needs a name)
                prev = before_skip.pop(d.group_id, None)
                if prev is None:
                    state.pop(d.group_id)  # back to the rules/LLM proposal
                else:
                    state[d.group_id] = prev
            else:
                state[d.group_id] = d
        return state

    def to_dict(self) -> dict[str, Any]:
        return {
            "decisions": {g: d.to_dict() for g, d in sorted(self.effective().items())},
            "history": [d.to_dict() for d in self.history[: self.pos]],
            "redo": [d.to_dict() for d in self.history[self.pos :]],
            "can_undo": self.can_undo,
            "can_redo": self.can_redo,
            "last_seq": self.last_seq,
        }


def load_state(out_dir: str | os.PathLike[str]) -> ReviewState:
    """Replay the journal. Lines that fail validation never crash a step: they are left out,
    moved to the quarantine file when OUT can be locked, and named in ``warnings``."""
    out = Path(out_dir)
    st = ReviewState()
    j = check_journal(out)
    moved = 0
    if j.bad:
        try:
            with lock_out(out, "set aside invalid journal lines"):
                moved = _move_bad_lines(out)
            j.bad = []
        except UserError:
            pass  # busy or read-only: warned below, moved by a later step
    st.warnings = _warnings(out, j, moved)
    for rec in j.records:
        st.last_seq = max(st.last_seq, int(rec.get("seq") or 0))
        op = rec["op"]
        if op in ("decide", "decide_many"):
            items = rec["decisions"] if op == "decide_many" else [rec]
            try:
                ds = [Decision.from_dict({**d, "op": "decide"}) for d in items]
            except (KeyError, TypeError, ValueError, AttributeError):
                continue
            st.push(ds)
        elif op == "undo":
            st.step_back()
        elif op == "redo":
            st.step_forward()
    return st


def _out(out_dir: str | os.PathLike[str]) -> Path:
    p = Path(out_dir).expanduser()
    if not p.is_dir():
        raise UserError(f"{p} is not a folder")
    return p


def decide(
    out_dir: str | os.PathLike[str],
    group_id: str,
    action: str,
    *,
    datatype: str = "",
    suffix: str = "",
    entities: dict[str, str] | None = None,
    skip_reason: str = "",
    note: str = "",
) -> Decision:
    """Record one decision (fsynced before returning). Names are checked against the schema;
    an invalid one raises :class:`UserError` with every reason."""
    out = _out(out_dir)
    fields = _checked(
        group_id, action, datatype, suffix, entities or {}, skip_reason=skip_reason, note=note
    )
    with lock_out(out, "decide"), _lock:
        st = load_state(out)
        d = Decision(**fields, seq=st.last_seq + 1, time=time.time())
        _append(out, d.to_dict())
    return d


def decide_many(out_dir: str | os.PathLike[str], items: list[dict[str, Any]]) -> list[Decision]:
    """Record many decisions as ONE journal line and one history step (one undo takes all of
    them back). ``items``: ``decide``'s keyword arguments with ``group_id`` and ``action``.
    Every item is checked first: one invalid item records nothing."""
    out = _out(out_dir)
    if not items:
        raise UserError("no decisions given")
    checked = [
        _checked(
            str(it.get("group_id") or ""),
            str(it.get("action") or ""),
            str(it.get("datatype") or ""),
            str(it.get("suffix") or ""),
            dict(it.get("entities") or {}),
            skip_reason=str(it.get("skip_reason") or ""),
            note=str(it.get("note") or ""),
        )
        for it in items
    ]
    with lock_out(out, "decide"), _lock:
        st = load_state(out)
        seq, now = st.last_seq + 1, time.time()
        ds = [Decision(**f, seq=seq, time=now) for f in checked]
        rec = {"op": "decide_many", "seq": seq, "time": now}
        rec["decisions"] = [{k: v for k, v in d.to_dict().items() if k != "op"} for d in ds]
        _append(out, rec)
    return ds


def _checked(
    group_id: str,
    action: str,
    datatype: str,
    suffix: str,
    entities: dict[str, str],
    *,
    skip_reason: str = "",
    note: str = "",
) -> dict[str, Any]:
    """One decision's fields, checked (names against the schema), as ``Decision`` kwargs."""
    if action not in ACTIONS:
        raise UserError(f"unknown action {action!r} (one of {', '.join(ACTIONS)})")
    if not group_id:
        raise UserError("no group given")
    entities = {str(k): str(v) for k, v in (entities or {}).items()}
    if action == "edit" and not (datatype and suffix):
        raise UserError("an edit needs a datatype and a suffix")
    if action in ("accept", "edit", "unskip") and (datatype or suffix):
        problems = check_name(datatype, suffix, entities)
        if problems:
            raise UserError("invalid BIDS name: " + "; ".join(problems))
    if action == "skip":
        datatype, suffix, entities = "", "", {}
        skip_reason = skip_reason or USER_SKIP
    return {
        "group_id": group_id,
        "action": action,
        "datatype": datatype,
        "suffix": suffix,
        "entities": entities,
        "skip_reason": skip_reason,
        "note": note,
    }


def _move(out_dir: str | os.PathLike[str], op: str) -> list[Decision]:
    """Undo or redo one history step (a bulk step: all its decisions); returns them."""
    out = _out(out_dir)
    with lock_out(out, op), _lock:
        st = load_state(out)
        ds = st.step_back() if op == "undo" else st.step_forward()
        if not ds:
            return []
        rec: dict[str, Any] = {"op": op, "seq": st.last_seq + 1, "time": time.time()}
        rec["group_id"] = ds[-1].group_id
        if len(ds) > 1:
            rec["count"] = len(ds)
        _append(out, rec)
    return ds


def undo_step(out_dir: str | os.PathLike[str]) -> list[Decision]:
    """Take back the last step in effect (one decision, or a whole bulk review)."""
    return _move(out_dir, "undo")


def redo_step(out_dir: str | os.PathLike[str]) -> list[Decision]:
    """Re-apply the last undone step (one decision, or a whole bulk review)."""
    return _move(out_dir, "redo")


def undo(out_dir: str | os.PathLike[str]) -> Decision | None:
    """Take back the last decision in effect; returns it (``None`` when there is none); a
    bulk step is taken back whole (its last decision is returned)."""
    ds = undo_step(out_dir)
    return ds[-1] if ds else None


def redo(out_dir: str | os.PathLike[str]) -> Decision | None:
    """Re-apply the last undone decision; returns it (``None`` when there is none)."""
    ds = redo_step(out_dir)
    return ds[-1] if ds else None


def current_decisions(out_dir: str | os.PathLike[str]) -> dict[str, Decision]:
    return load_state(out_dir).effective()


def journal_warnings(out_dir: str | os.PathLike[str]) -> list[str]:
    """What every step must say about the journal (bad lines set aside), else ``[]``."""
    if not journal_path(out_dir).exists() and not quarantine_path(out_dir).exists():
        return []
    return load_state(out_dir).warnings


# --- applying decisions ----------------------------------------------------------------------
