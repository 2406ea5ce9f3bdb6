"""The person's review decisions: an append-only journal that always wins over rules and LLM.

Every decision (accept, edit, skip, unskip) and every undo/redo is one JSON line appended to
``OUT/user_decisions.jsonl`` and fsynced before the call returns, so a killed session loses
nothing that was shown as saved. The current state is a replay of the journal: a linear
history with an undo pointer, like an editor's (a new decision after an undo drops the redo
tail). A torn last line (a crash mid-write) is ignored on replay.

:func:`apply_user_decisions` is what ``map``/``generate`` call: the mappings with the person's
decisions applied, ``source="user"``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import UserError
from engine.model import Mapping

DECISIONS_FILE = "user_decisions.jsonl"
PROPOSED_TSV = "aggregated_dicominfo_mapped.proposed.tsv"
APPLIED_FILE = ".user_decisions.applied"  # sha256 of the mapped TSV our last rewrite wrote
ACTIONS = ("accept", "edit", "skip", "unskip")
USER_SKIP = "skipped by user"

_lock = threading.Lock()


@dataclass
class Decision:
    """One decision about one group. ``datatype``/``suffix``/``entities`` name it (accept, edit,
    unskip with a name); ``skip_reason`` is set for a skip."""

    group_id: str
    action: str
    datatype: str = ""
    suffix: str = ""
    entities: dict[str, str] = field(default_factory=dict)
    skip_reason: str = ""
    note: str = ""
    seq: int = 0
    time: float = 0.0

    @property
    def has_name(self) -> bool:
        return bool(self.datatype and self.suffix)

    def to_dict(self) -> dict[str, Any]:
        return {
            "op": "decide",
            "seq": self.seq,
            "time": self.time,
            "group_id": self.group_id,
            "action": self.action,
            "datatype": self.datatype,
            "suffix": self.suffix,
            "entities": dict(self.entities),
            "skip_reason": self.skip_reason,
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Decision:
        return cls(
            group_id=str(d["group_id"]),
            action=str(d["action"]),
            datatype=str(d.get("datatype") or ""),
            suffix=str(d.get("suffix") or ""),
            entities={str(k): str(v) for k, v in (d.get("entities") or {}).items()},
            skip_reason=str(d.get("skip_reason") or ""),
            note=str(d.get("note") or ""),
            seq=int(d.get("seq") or 0),
            time=float(d.get("time") or 0.0),
        )

    def describe(self) -> str:
        if self.action == "skip":
            return f"skip ({self.skip_reason or USER_SKIP})"
        name = bids_template(self.datatype, self.suffix, self.entities)
        return f"{self.action} {name}" if name else self.action


def bids_template(datatype: str, suffix: str, entities: dict[str, str]) -> str:
    """``func/task-rest_bold``: the name part a group decides (no sub/ses/run)."""
    if not (datatype and suffix):
        return ""
    ents = "_".join(f"{k}-{v}" for k, v in entities.items())
    return f"{datatype}/{ents + '_' if ents else ''}{suffix}"


def parse_template(text: str) -> tuple[str, str, dict[str, str]]:
    """Inverse of :func:`bids_template`: ``"func/task-rest_bold"`` -> datatype, suffix, entities.

    Raises :class:`UserError` with the reason when the text has no ``datatype/`` part or a
    part that is not ``key-value``.
    """
    text = text.strip()
    datatype, sep, rest = text.partition("/")
    if not sep or not datatype or not rest:
        raise UserError(f"{text!r}: write datatype/[entities_]suffix, e.g. func/task-rest_bold")
    *pairs, suffix = rest.split("_")
    entities: dict[str, str] = {}
    for p in pairs:
        k, s, v = p.partition("-")
        if not s or not k or not v:
            raise UserError(f"{p!r} is not a key-value entity (like task-rest)")
        entities[k] = v
    if not suffix or "-" in suffix:
        raise UserError(f"{text!r}: the name must end in a suffix such as bold or T1w")
    return datatype.strip(), suffix.strip(), entities


def check_name(datatype: str, suffix: str, entities: dict[str, str]) -> list[str]:
    """Why the BIDS schema refuses this name (``run`` comes from the series: refused too)."""
    from engine.bids_schema import get_schema

    problems = []
    if "run" in entities:
        problems.append("entity 'run' is numbered from the series order, not set per group")
        entities = {k: v for k, v in entities.items() if k != "run"}
    return problems + get_schema().check(datatype, suffix, entities)


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


def apply_decision(m: Mapping, d: Decision) -> Mapping:
    """A copy of ``m`` with the person's decision applied (``source="user"``)."""
    out = copy.deepcopy(m)
    if d.action == "skip":
        out.skip_reason = d.skip_reason or USER_SKIP
        out.datatype, out.suffix, out.entities = "", "", {}
        out.extra_suffixes = []
    elif d.has_name:
        changed = (d.datatype, d.suffix, d.entities) != (m.datatype, m.suffix, m.entities)
        out.datatype, out.suffix, out.entities = d.datatype, d.suffix, dict(d.entities)
        out.skip_reason = ""
        if changed:
            out.extra_suffixes, out.echoes = [], m.echoes
    elif d.action == "unskip" and m.is_skip:
        return out  # a rules/LLM skip needs a name to be undone; nothing to apply
    out.source = "user"
    out.confidence = 1.0
    note = f"user decision: {d.describe()}"
    out.evidence = [e for e in m.evidence if not e.startswith("user decision: ")] + [note]
    if d.note:
        out.rationale = d.note
    return out


def apply_user_decisions(mappings: list[Mapping], out_dir: str | os.PathLike[str]) -> list[Mapping]:
    """``mappings`` with the person's decisions from ``OUT/user_decisions.jsonl`` winning.

    Decided groups get ``source="user"`` and confidence 1.0; others are returned unchanged
    (copies are made only where a decision applies). Decisions about groups that no longer
    exist are ignored.
    """
    decisions = current_decisions(out_dir) if Path(out_dir).is_dir() else {}
    if not decisions:
        return list(mappings)
    return [
        apply_decision(m, decisions[m.group_id]) if m.group_id in decisions else m for m in mappings
    ]


def _name(m: Mapping) -> tuple[Any, ...]:
    return (m.datatype, m.suffix, sorted(m.entities.items()), m.skip_reason, m.extra_suffixes)


def reviewed_inputs(
    out_dir: str | os.PathLike[str],
    series: list[Any],
    groups: list[Any],
    mappings: list[Mapping],
    assignments: list[Any] | None,
) -> tuple[list[Mapping], list[Any] | None]:
    """``generate``'s hook: the loaded mapping with the decisions applied.

    When a decision changes a group's name or skip (the mapped TSV was written before it),
    IntendedFor and the series assignments are recomputed, exactly as ``map`` would.
    """
    if not (Path(out_dir).is_dir() and current_decisions(out_dir)):
        return mappings, assignments
    from engine.mapping import validate_mapping

    decided = apply_user_decisions(mappings, out_dir)
    changed = False
    for i, (old, new) in enumerate(zip(mappings, decided, strict=True)):
        if new is not old:
            decided[i] = validate_mapping(new)
            changed = changed or _name(decided[i]) != _name(old)
    if not changed:
        return decided, assignments
    from engine.grouping import fill_subjects, group_series
    from engine.mapping.fieldmaps import assign_intended_for
    from engine.mapping.runs import assign_series

    by_id = {m.group_id: m for m in decided}
    for g in groups:
        by_id.setdefault(g.group_id, Mapping(g.group_id, skip_reason="not mapped"))
    fill_subjects(series)
    flags = group_series(series).series_flags
    assign_intended_for(groups, by_id, series)
    series_group = {k: g.group_id for g in groups for k in g.series_keys}
    return decided, assign_series(series, series_group, by_id, flags)


def save_proposal(
    out_dir: str | os.PathLike[str], columns: Any, rows: list[dict[str, Any]]
) -> None:
    """``map`` wrote the mapped TSV with decisions applied: keep the rules/LLM proposal beside it
    (what undo goes back to) and mark the mapped TSV as a reviewed rewrite."""
    from engine.atomic import write_text_atomic, write_tsv_atomic
    from engine.workspace import MAPPED_TSV

    out = Path(out_dir)
    write_tsv_atomic(out / PROPOSED_TSV, columns, rows)
    write_text_atomic(out / APPLIED_FILE, _sha(out / MAPPED_TSV) + "\n")


def write_reviewed_mapping(out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Rewrite OUT's mapping tables with the decisions applied (for generate/validate/convert).

    The rules/LLM proposal is kept once in ``aggregated_dicominfo_mapped.proposed.tsv`` so undo
    works after a rewrite; a fresh ``map`` (no ``user`` rows) replaces that copy.
    """
    import shutil

    from engine.atomic import write_text_atomic, write_tsv_atomic
    from engine.grouping import fill_subjects, group_series
    from engine.heuristic.inputs import ASSIGNMENTS_TSV, read_groups, read_mappings
    from engine.mapping import validate_mapping
    from engine.mapping.fieldmaps import assign_intended_for
    from engine.mapping.report import (
        ASSIGNMENT_COLUMNS,
        MAPPED_COLUMNS,
        assignment_rows,
        mapped_rows,
        mapping_report,
    )
    from engine.mapping.runs import assign_series
    from engine.workspace import GROUPS_TSV, MAPPED_TSV, MAPPING_REPORT, read_series

    out = _out(out_dir)
    mapped, proposed = out / MAPPED_TSV, out / PROPOSED_TSV
    if not mapped.exists():
        raise UserError(f"{mapped} not found: run `llm-heuristics map {out}` first")
    if not _is_ours(out):  # map wrote it since our last rewrite: that is the proposal now
        shutil.copyfile(mapped, proposed)
    series = read_series(out)
    groups = read_groups(out / GROUPS_TSV)
    base = {m.group_id: m for m in read_mappings(proposed)}
    decisions = current_decisions(out)
    mappings = []
    for g in groups:
        m = base.get(g.group_id) or Mapping(g.group_id, skip_reason="not mapped")
        if g.group_id in decisions:
            m = validate_mapping(apply_decision(m, decisions[g.group_id]))
        mappings.append(m)
    by_id = {m.group_id: m for m in mappings}
    fill_subjects(series)
    grouping = group_series(series)
    if decisions:
        assign_intended_for(groups, by_id, series)
    series_group = {k: g.group_id for g in groups for k in g.series_keys}
    assignments = assign_series(series, series_group, by_id, grouping.series_flags)
    write_tsv_atomic(mapped, MAPPED_COLUMNS, mapped_rows(groups, mappings, series))
    write_text_atomic(out / APPLIED_FILE, _sha(mapped) + "\n")
    write_tsv_atomic(out / ASSIGNMENTS_TSV, ASSIGNMENT_COLUMNS, assignment_rows(assignments))
    write_text_atomic(out / MAPPING_REPORT, mapping_report(series, groups, mappings, assignments))
    return {"decisions": len(decisions), "groups": len(groups), "written": str(mapped)}


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _is_ours(out: Path) -> bool:
    """Whether OUT's mapped TSV is the one :func:`write_reviewed_mapping` wrote last."""
    from engine.workspace import MAPPED_TSV

    mapped, stamp, proposed = out / MAPPED_TSV, out / APPLIED_FILE, out / PROPOSED_TSV
    if not (mapped.exists() and stamp.exists() and proposed.exists()):
        return False
    return stamp.read_text().strip() == _sha(mapped)


def proposal_path(out_dir: str | os.PathLike[str]) -> Path:
    """The rules/LLM proposal the decisions apply to (the mapped TSV unless we rewrote it)."""
    from engine.workspace import MAPPED_TSV

    out = Path(out_dir)
    return out / PROPOSED_TSV if _is_ours(out) else out / MAPPED_TSV
