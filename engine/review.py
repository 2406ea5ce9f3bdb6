"""The person's review decisions: an append-only journal that always wins over rules and LLM.

Every decision (accept, edit, skip, unskip) and every undo/redo is one JSON line appended to
``OUT/user_decisions.jsonl`` and fsynced before the call returns, so a killed session loses
nothing that was shown as saved. The current state is a replay of the journal: a linear
history with an undo pointer, like an editor's (a new decision after an undo drops the redo
tail). A torn last line (a crash mid-write) is ignored on replay.

:func:`apply_decision` folds one decision into a proposal (``source="user"``); the one place
that does it for a whole workspace is :func:`engine.mapping.effective.effective`.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.bids_schema import BidsName
from engine.errors import UserError
from engine.model import ACTIONS, USER_SKIP, Decision
from engine.workspace import DECISIONS_FILE

_lock = threading.Lock()


def check_name(datatype: str, suffix: str, entities: dict[str, str]) -> list[str]:
    """Why the BIDS schema refuses this as a group's name (empty when valid)."""
    return BidsName.of(datatype, suffix, entities).problems()


# --- the journal --------------------------------------------------------------------------


def journal_path(out_dir: str | os.PathLike[str]) -> Path:
    return Path(out_dir) / DECISIONS_FILE


def read_journal(out_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every complete record of the journal, in order (a torn last line is skipped)."""
    p = journal_path(out_dir)
    if not p.exists():
        return []
    records = []
    with p.open("r", encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a crash mid-append: that decision was never reported as saved
            if isinstance(rec, dict) and rec.get("op") in ("decide", "undo", "redo"):
                records.append(rec)
    return records


def _append(out_dir: Path, record: dict[str, Any]) -> None:
    p = journal_path(out_dir)
    new = not p.exists()
    data = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
    fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if not new and os.fstat(fd).st_size:
            with open(p, "rb") as fh:  # a torn last line must not swallow this record
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    data = b"\n" + data
        os.write(fd, data)
        os.fsync(fd)
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
    last_seq: int = 0

    @property
    def can_undo(self) -> bool:
        return self.pos > 0

    @property
    def can_redo(self) -> bool:
        return self.pos < len(self.history)

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
    st = ReviewState()
    for rec in read_journal(out_dir):
        st.last_seq = max(st.last_seq, int(rec.get("seq") or 0))
        op = rec["op"]
        if op == "decide":
            try:
                d = Decision.from_dict(rec)
            except (KeyError, TypeError, ValueError):
                continue
            del st.history[st.pos :]
            st.history.append(d)
            st.pos = len(st.history)
        elif op == "undo" and st.pos > 0:
            st.pos -= 1
        elif op == "redo" and st.pos < len(st.history):
            st.pos += 1
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
    with _lock:
        st = load_state(out)
        d = Decision(
            group_id=group_id,
            action=action,
            datatype=datatype,
            suffix=suffix,
            entities=entities,
            skip_reason=skip_reason,
            note=note,
            seq=st.last_seq + 1,
            time=time.time(),
        )
        _append(out, d.to_dict())
    return d


def _move(out_dir: str | os.PathLike[str], op: str) -> Decision | None:
    out = _out(out_dir)
    with _lock:
        st = load_state(out)
        if op == "undo" and not st.can_undo:
            return None
        if op == "redo" and not st.can_redo:
            return None
        d = st.history[st.pos - 1] if op == "undo" else st.history[st.pos]
        _append(
            out, {"op": op, "seq": st.last_seq + 1, "time": time.time(), "group_id": d.group_id}
        )
    return d


def undo(out_dir: str | os.PathLike[str]) -> Decision | None:
    """Take back the last decision in effect; returns it (``None`` when there is none)."""
    return _move(out_dir, "undo")


def redo(out_dir: str | os.PathLike[str]) -> Decision | None:
    """Re-apply the last undone decision; returns it (``None`` when there is none)."""
    return _move(out_dir, "redo")


def current_decisions(out_dir: str | os.PathLike[str]) -> dict[str, Decision]:
    return load_state(out_dir).effective()


# --- applying decisions ----------------------------------------------------------------------
