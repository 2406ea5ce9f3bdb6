"""The person's review decisions: an append-only journal that always wins over rules and LLM.

Every decision (accept, edit, skip, unskip) and every undo/redo is one JSON line appended to
``OUT/user_decisions.jsonl`` and fsynced before the call returns, so a killed session loses
nothing that was shown as saved. The current state is a replay of the journal: a linear
history with an undo pointer, like an editor's (a new decision after an undo drops the redo
tail). A bulk review (many groups accepted or skipped in one action) is ONE line,
``{"op": "decide_many", "decisions": [...]}``, and one step of that history: one undo takes
all of it back, one redo re-applies all of it. A torn last line (a crash mid-write) is ignored
on replay, and set aside by the next append. Every other line is validated (types included):
one that fails is never dropped in silence nor allowed to crash a step; it is moved to
``user_decisions.quarantine.jsonl`` with its line number and the reason, and every step warns
about it until that file is deleted.
Writes lock OUT (:func:`engine.workspace.lock_out`): a decision made while another process
writes OUT fails at once, so it is never shown as saved when it was not.

Reading, validating and appending the file's lines is :mod:`engine.journal` (its names are
re-exported here). :func:`apply_decision` folds one decision into a proposal
(``source="user"``); the one place that does it for a whole workspace is
:func:`engine.mapping.effective.effective`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.bids_schema import BidsName
from engine.errors import UserError
from engine.journal import (
    TORN,
    Journal,
    _append,
    _lock,
    _move_bad_lines,
    _warnings,
    check_journal,
    journal_path,
    quarantine_path,
    read_journal,
    record_problem,
)
from engine.model import ACTIONS, USER_SKIP, Decision
from engine.workspace import DECISIONS_FILE, QUARANTINE_FILE, lock_out

__all__ = [
    "DECISIONS_FILE",
    "QUARANTINE_FILE",
    "TORN",
    "Journal",
    "ReviewState",
    "check_journal",
    "check_name",
    "current_decisions",
    "decide",
    "decide_many",
    "journal_path",
    "journal_warnings",
    "load_state",
    "quarantine_path",
    "read_journal",
    "record_problem",
    "redo",
    "redo_step",
    "undo",
    "undo_step",
]


def check_name(datatype: str, suffix: str, entities: dict[str, str]) -> list[str]:
    """Why the BIDS schema refuses this as a group's name (empty when valid)."""
    return BidsName.of(datatype, suffix, entities).problems()


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
