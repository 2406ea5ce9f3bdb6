"""What the mapping asks for, series by series: the BIDS key of each group and the expected path.

The compiler turns this plan into a heuristic; the validator runs the heuristic and compares its
output with this plan (or with ``series_assignments.tsv`` when the mapper wrote one).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from engine.model import Group, Mapping, SeriesAssignment, SeriesInfo

# heudiconv fills these; a template made of them works with and without a session level.
DIR_FIELD = "{bids_subject_session_dir}"
PREFIX_FIELD = "{bids_subject_session_prefix}"
RUN_FIELD = "run-{item:02d}"

_SERIES_NUM = re.compile(r"\s*(\d+)")


def series_order_key(s: SeriesInfo) -> tuple[int, str]:
    """heudiconv's order within a study: (SeriesNumber, ProtocolName), i.e. ``series_id``."""
    num = s.series_number
    if num is None:
        m = _SERIES_NUM.match(s.series_id or "")
        num = int(m.group(1)) if m else 10**9
    return (num, s.series_id)


@dataclass(frozen=True)
class BidsKey:
    """A BIDS name without sub/ses/run: what one heudiconv key writes."""

    datatype: str
    suffix: str
    entities: tuple[tuple[str, str], ...]  # schema order, no sub/ses/run

    def stem(self, run: str = "") -> str:
        parts = [f"{k}-{v}" for k, v in self.entities]
        if run:
            # run sits after task/acq/ce/rec/dir and before echo/part/... (schema order)
            parts = _insert_run(list(self.entities), run)
        return "_".join(parts + [self.suffix])

    def template(self, with_run: bool, suffix: str = "", drop: tuple[str, ...] = ()) -> str:
        """heudiconv's template; ``suffix`` overrides ours (``magnitude`` for a 2-echo series),
        ``drop`` leaves out entities heudiconv adds itself (``echo`` of a multi-echo series)."""
        key = BidsKey(
            self.datatype, self.suffix, tuple(e for e in self.entities if e[0] not in drop)
        )
        body = key.stem(RUN_FIELD if with_run else "")
        if suffix:
            body = body[: -len(self.suffix)] + suffix
        return f"{DIR_FIELD}/{self.datatype}/{PREFIX_FIELD}_{body}"

    def relpath(self, subject: str, session: str, run: int | None) -> str:
        folder = f"sub-{subject}" + (f"/ses-{session}" if session else "")
        prefix = f"sub-{subject}" + (f"_ses-{session}" if session else "")
        body = self.stem(f"run-{run:02d}" if run is not None else "")
        return f"{folder}/{self.datatype}/{prefix}_{body}"

    @property
    def ident(self) -> str:
        """A Python-identifier-ish name for the key variable in the heuristic."""
        raw = "_".join([self.datatype, *(f"{k}_{v}" for k, v in self.entities), self.suffix])
        ident = re.sub(r"\W+", "_", raw, flags=re.ASCII).strip("_").lower()
        return ident or "key"


def _insert_run(entities: list[tuple[str, str]], run: str) -> list[str]:
    from engine.bids_schema import get_schema

    order = get_schema().entity_order
    pos = order.index("run")
    out: list[str] = []
    placed = False
    for k, v in entities:
        if not placed and k in order and order.index(k) > pos:
            out.append(run)
            placed = True
        out.append(f"{k}-{v}")
    if not placed:
        out.append(run)
    return out


def key_of(m: Mapping) -> BidsKey:
    """The :class:`BidsKey` of a non-skip mapping, entities in schema order."""
    from engine.bids_schema import get_schema

    order = get_schema().entity_order
    ents = {k: str(v) for k, v in m.entities.items() if k not in {"sub", "ses", "run"} and v}
    ordered = sorted(ents.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 999)
    return BidsKey(m.datatype, m.suffix, tuple(ordered))


@dataclass
class Plan:
    """Series, groups and decisions joined: who goes where."""

    series: list[SeriesInfo]
    groups: list[Group]
    mappings: dict[str, Mapping]  # group_id -> mapping
    group_of: dict[str, str] = field(default_factory=dict)  # series key -> group id
    keys: dict[str, BidsKey] = field(default_factory=dict)  # group id -> key (converted only)
    with_run: set[BidsKey] = field(default_factory=set)
    expected: dict[str, str] = field(default_factory=dict)  # series key -> relpath or ""
    skip_series: dict[str, str] = field(default_factory=dict)  # series key -> why skipped

    def converted_groups(self) -> list[Group]:
        return [g for g in self.groups if g.group_id in self.keys]

    def sessions(self) -> list[tuple[str, str]]:
        return sorted({(s.subject, s.session) for s in self.series})

    def series_in(self, subject: str, session: str) -> list[SeriesInfo]:
        rows = [s for s in self.series if s.subject == subject and s.session == session]
        return sorted(rows, key=series_order_key)


def build_plan(
    series: list[SeriesInfo],
    groups: list[Group],
    mappings: list[Mapping],
    assignments: list[SeriesAssignment] | None = None,
) -> Plan:
    """Join the inputs; compute runs (per BIDS key, per session) and every expected path.

    A key gets ``run-NN`` when it receives more than one series in at least one session. When
    ``assignments`` are given, their per-series skips are honoured (e.g. an aborted run inside a
    converted group) and their paths become the expectation.
    """
    plan = Plan(
        series=list(series), groups=list(groups), mappings={m.group_id: m for m in mappings}
    )
    for g in groups:
        for k in g.series_keys:
            plan.group_of[k] = g.group_id
    for g in groups:
        m = plan.mappings.get(g.group_id)
        if m is not None and not m.is_skip and m.datatype and m.suffix:
            plan.keys[g.group_id] = key_of(m)
    assigned = {(a.subject, a.session, a.series_id): a for a in assignments or []}
    for s in series:
        a = assigned.get((s.subject, s.session, s.series_id))
        gid = plan.group_of.get(s.key)
        if a is not None and (a.skip_reason or not a.bids_path):
            plan.skip_series[s.key] = a.skip_reason or "skipped by assignment"
        elif gid is None:
            plan.skip_series[s.key] = "not in any group"
        elif gid not in plan.keys:
            m = plan.mappings.get(gid)
            plan.skip_series[s.key] = (m.skip_reason if m else "") or "group not mapped"
    # runs: count series per key per session
    counts: Counter[tuple[str, str, BidsKey]] = Counter()
    for s in series:
        if s.key in plan.skip_series:
            continue
        counts[(s.subject, s.session, plan.keys[plan.group_of[s.key]])] += 1
    plan.with_run = {k for (_, _, k), n in counts.items() if n > 1}
    for sub, ses in plan.sessions():
        seen: dict[BidsKey, int] = defaultdict(int)
        for s in plan.series_in(sub, ses):
            if s.key in plan.skip_series:
                plan.expected[s.key] = ""
                continue
            key = plan.keys[plan.group_of[s.key]]
            seen[key] += 1
            run = seen[key] if key in plan.with_run else None
            plan.expected[s.key] = key.relpath(sub, ses, run)
    for s in series:
        a = assigned.get((s.subject, s.session, s.series_id))
        if a is not None and a.bids_path and not a.skip_reason and s.key not in plan.skip_series:
            plan.expected[s.key] = _strip_ext(a.bids_path)
    return plan


def _strip_ext(path: str) -> str:
    for ext in (".nii.gz", ".nii", ".json"):
        if path.endswith(ext):
            return path[: -len(ext)]
    return path
