"""Run a heuristic's ``infotodict`` over the analysed series and diff it against the mapping.

heudiconv calls ``infotodict`` once per subject/session with ``SeqInfo`` tuples in series-number
order; we do the same with tuples built from the series table, expand the templates the way
heudiconv's ``conversion_info`` does, and check each series lands where the mapping says.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from engine.heuristic.plan import Plan, build_plan, series_order_key
from engine.heuristic.seqinfo import CUSTOM_FIELDS, to_seqinfo
from engine.model import Group, Mapping, SeriesAssignment, SeriesInfo

HEURISTIC_FILE = "heuristic.py"


def load_heuristic(path: str | Path) -> ModuleType:
    """Import a heuristic file as an isolated module (not left in ``sys.modules``)."""
    p = Path(path).resolve()
    name = "_llmh_heuristic_" + hashlib.sha1(str(p).encode()).hexdigest()[:10]
    spec = importlib.util.spec_from_file_location(name, p)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {p}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses/typing in a heuristic look themselves up here
    dont_write = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # no __pycache__ left in OUT next to the heuristic
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.dont_write_bytecode = dont_write
        sys.modules.pop(name, None)
    return mod


@dataclass
class SeriesCheck:
    subject: str
    session: str
    series_id: str
    group_id: str
    expected: str  # relpath without extension, "" = not converted
    produced: list[str] = field(default_factory=list)
    status: str = "ok"  # ok | missing | extra | wrong | twice | collision
    note: str = ""


@dataclass
class ValidationResult:
    checks: list[SeriesCheck] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # heuristic failed to import/run

    @property
    def problems(self) -> list[SeriesCheck]:
        return [c for c in self.checks if c.status != "ok"]

    @property
    def ok(self) -> bool:
        return not self.errors and not self.problems

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for c in self.checks:
            out[c.status] += 1
        return dict(out)

    def summary(self) -> str:
        conv = sum(1 for c in self.checks if c.expected)
        if self.ok:
            return (
                f"OK: {len(self.checks)} series checked, {conv} converted where the mapping says, "
                f"{len(self.checks) - conv} left out as mapped, no collisions"
            )
        parts = ", ".join(f"{n} {k}" for k, n in sorted(self.counts().items()) if k != "ok")
        return f"FAILED: {parts or 'errors'} out of {len(self.checks)} series" + (
            f"; {len(self.errors)} error(s)" if self.errors else ""
        )

    def format_diff(self) -> str:
        lines = [self.summary()]
        lines += [f"error: {e}" for e in self.errors]
        for c in self.problems:
            where = f"sub-{c.subject}" + (f"/ses-{c.session}" if c.session else "")
            head = f"[{c.status}] {where} {c.series_id} (group {c.group_id or '-'})"
            lines.append(head)
            lines.append(f"    mapping:   {c.expected or '(not converted)'}")
            lines.append(f"    heuristic: {', '.join(c.produced) or '(not converted)'}")
            if c.note:
                lines.append(f"    {c.note}")
        return "\n".join(lines)


def _expand(template: str, idx: int, subject: str, session: str, item: Any, subindex: int) -> str:
    params = dict(
        item=idx + 1,
        subject=subject,
        seqitem=item,
        subindex=subindex + 1,
        session=f"ses-{session}",
        bids_subject_session_prefix=f"sub-{subject}" + (f"_ses-{session}" if session else ""),
        bids_subject_session_dir=f"sub-{subject}" + (f"/ses-{session}" if session else ""),
    )
    return template.format(**params)


def run_heuristic(
    mod: ModuleType, series: list[SeriesInfo]
) -> tuple[dict[str, list[str]], list[str]]:
    """Series key -> produced relpaths (no extension), per heudiconv's semantics; plus errors."""
    custom = CUSTOM_FIELDS if hasattr(mod, "custom_seqinfo") else ()
    by_cell: dict[tuple[str, str], list[SeriesInfo]] = defaultdict(list)
    for s in series:
        by_cell[(s.subject, s.session)].append(s)
    produced: dict[str, list[str]] = defaultdict(list)
    errors: list[str] = []
    for (sub, ses), rows in sorted(by_cell.items()):
        rows = sorted(rows, key=series_order_key)
        by_id = {s.series_id: s for s in rows}
        try:
            info = mod.infotodict([to_seqinfo(s, custom) for s in rows])
        except Exception as exc:  # a broken heuristic is a finding, not a crash
            errors.append(f"infotodict failed for sub-{sub} ses-{ses or '-'}: {exc!r}")
            continue
        for key, items in info.items():
            template = key[0] if isinstance(key, tuple) else key
            for idx, group in enumerate(items or []):
                group = group if isinstance(group, list) else [group]
                for subindex, item in enumerate(group):
                    sid = item.get("item") if isinstance(item, dict) else item
                    s = by_id.get(str(sid))
                    if s is None:
                        errors.append(f"sub-{sub}: infotodict returned unknown series {sid!r}")
                        continue
                    try:
                        path = _expand(template, idx, sub, ses, sid, subindex)
                    except (KeyError, IndexError, ValueError) as exc:
                        errors.append(f"template {template!r} cannot be filled: {exc!r}")
                        continue
                    produced[s.key].append(path.replace("//", "/"))
    return dict(produced), errors


def _same(expected: str, got: str, s: SeriesInfo) -> bool:
    if expected == got:
        return True
    # a two-echo magnitude series: heudiconv numbers the echoes itself (_magnitude -> 1, 2)
    if expected.endswith(("_magnitude1", "_magnitude2")) and got == expected[:-1]:
        return True
    # a multi-echo series: heudiconv inserts _echo-N itself
    multi = len(set(s.echo_numbers)) > 1 or len(set(s.echo_times)) > 1
    return multi and re.sub(r"_echo-\d+", "", expected) == got


def compare(plan: Plan, produced: dict[str, list[str]], errors: list[str]) -> ValidationResult:
    res = ValidationResult(errors=list(errors))
    owners: dict[str, list[SeriesCheck]] = defaultdict(list)
    for sub, ses in plan.sessions():
        for s in plan.series_in(sub, ses):
            exp = plan.expected.get(s.key, "")
            got = produced.get(s.key, [])
            c = SeriesCheck(sub, ses, s.series_id, plan.group_of.get(s.key, ""), exp, list(got))
            if len(got) > 1:
                c.status = "twice"
            elif not exp and got:
                c.status = "extra"
                c.note = f"the mapping skips it: {plan.skip_series.get(s.key, '')}"
            elif exp and not got:
                c.status = "missing"
            elif exp and not _same(exp, got[0], s):
                c.status = "wrong"
            for g in got:
                owners[g].append(c)
            res.checks.append(c)
    for path, cs in owners.items():
        if len(cs) > 1:
            for c in cs:
                if c.status == "ok":
                    c.status = "collision"
                c.note = f"{path} is also written by " + ", ".join(
                    o.series_id for o in cs if o is not c
                )
    return res


def validate_module(
    mod: ModuleType,
    series: list[SeriesInfo],
    groups: list[Group],
    mappings: list[Mapping],
    assignments: list[SeriesAssignment] | None = None,
) -> ValidationResult:
    plan = build_plan(series, groups, mappings, assignments)
    produced, errors = run_heuristic(mod, series)
    return compare(plan, produced, errors)
