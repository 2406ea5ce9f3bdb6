"""What the mapping asks for, series by series: the BIDS key of each group and the expected path.

The compiler turns this plan into a heuristic; the validator runs the heuristic and compares its
output with this plan (or with ``series_assignments.tsv`` when the mapper wrote one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from engine.mapping.runs import is_run_skip, ordered_entities, session_runs
from engine.model import Group, Mapping, SeriesAssignment, SeriesInfo

# heudiconv fills these; a template made of them works with and without a session level.
DIR_FIELD = "{bids_subject_session_dir}"
PREFIX_FIELD = "{bids_subject_session_prefix}"
RUN_SLOT = "{run}"  # in a heuristic's TEMPLATES: "_run-NN" or nothing
_RUN_MARK = "\x00run"

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

    def template(self, suffix: str = "", drop: tuple[str, ...] = ()) -> str:
        """heudiconv's template with a ``{run}`` slot where ``_run-NN`` goes (the heuristic fills
        it in, or drops it); ``suffix`` overrides ours (``magnitude`` for a 2-echo series),
        ``drop`` leaves out entities heudiconv adds itself (``echo`` of a multi-echo series)."""
        key = BidsKey(
            self.datatype, self.suffix, tuple(e for e in self.entities if e[0] not in drop)
        )
        body = key.stem(_RUN_MARK)
        if suffix:
            body = body[: -len(self.suffix)] + suffix
        text = f"{DIR_FIELD}/{self.datatype}/{PREFIX_FIELD}_{body}"
        return text.replace("_" + _RUN_MARK, RUN_SLOT)

    def relpath(self, subject: str, session: str, run: int | None) -> str:
        folder = f"sub-{subject}" + (f"/ses-{session}" if session else "")
        prefix = f"sub-{subject}" + (f"_ses-{session}" if session else "")
        body = self.stem(f"run-{run:02d}" if run is not None else "")
        return f"{folder}/{self.datatype}/{prefix}_{body}"

    @property
    def name(self) -> str:
        """The name :func:`engine.mapping.runs.session_runs` counts (``func/task-rest_bold``)."""
        return f"{self.datatype}/{self.stem()}"

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
    return BidsKey(m.datatype, m.suffix, ordered_entities(m.entities))


@dataclass
class Plan:
    """Series, groups and decisions joined: who goes where."""

    series: list[SeriesInfo]
    groups: list[Group]
    mappings: dict[str, Mapping]  # group_id -> mapping
    group_of: dict[str, str] = field(default_factory=dict)  # series key -> group id
    keys: dict[str, BidsKey] = field(default_factory=dict)  # group id -> key (converted only)
    with_run: set[BidsKey] = field(default_factory=set)  # keys whose name is in run_names
    run_names: set[str] = field(default_factory=set)  # names numbered run-NN in this study
    expected: dict[str, str] = field(default_factory=dict)  # series key -> relpath or ""
    skip_series: dict[str, str] = field(default_factory=dict)  # series key -> why skipped
    # aborted runs of converted groups (skipped; an SBRef before one is skipped with it)
    aborted: set[str] = field(default_factory=set)
    # series their group's conditions take and the run rule drops (an aborted run's SBRef)
    run_skips: dict[str, str] = field(default_factory=dict)
    runs: dict[str, int | None] = field(default_factory=dict)  # series key -> run number

    def converted_groups(self) -> list[Group]:
        return [g for g in self.groups if g.group_id in self.keys]

    def intended_for(self) -> dict[str, list[str]]:
        """Field-map name -> the names it serves (the mapping's IntendedFor, converted groups
        only), sorted: the table the heuristic and ``convert`` write the sidecars from."""
        out: dict[str, set[str]] = {}
        for gid, key in self.keys.items():
            m = self.mappings[gid]
            targets = {self.keys[t].name for t in m.intended_for if t in self.keys}
            if targets:
                out.setdefault(key.name, set()).update(targets)
        return {k: sorted(v) for k, v in sorted(out.items())}

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
    """Join the inputs; compute runs (:func:`~engine.mapping.runs.session_runs`, the mapper's own
    rule) and every expected path.

    When ``assignments`` are given, their per-series skips are honoured (e.g. an aborted run
    inside a converted group) and their paths become the expectation; without them, the
    grouping's ``aborted`` series flags are (as the mapper does).
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
    flagged = {
        k
        for g in groups
        for k, flags in g.series_flags.items()
        if any(f.startswith("aborted") for f in flags)
    }
    assigned = {(a.subject, a.session, a.series_id): a for a in assignments or []}
    for s in series:
        a = assigned.get((s.subject, s.session, s.series_id))
        gid = plan.group_of.get(s.key)
        if gid is None:
            plan.skip_series[s.key] = "not in any group"
        elif gid not in plan.keys:
            m = plan.mappings.get(gid)
            plan.skip_series[s.key] = (m.skip_reason if m else "") or "group not mapped"
        elif a is not None and is_run_skip(a.skip_reason):
            continue  # the run rule below decides
        elif a is not None and (a.skip_reason or not a.bids_path):
            plan.skip_series[s.key] = a.skip_reason or "skipped by assignment"
            if a.skip_reason.startswith("aborted"):
                plan.aborted.add(s.key)
        elif a is None and s.key in flagged:
            plan.skip_series[s.key] = "aborted run"
            plan.aborted.add(s.key)
    events: dict[tuple[str, str], list[tuple[str, str, str]]] = {}
    for sub, ses in plan.sessions():
        events[(sub, ses)] = [
            (
                s.key,
                plan.keys[plan.group_of[s.key]].name,
                "aborted" if s.key in plan.aborted else "",
            )
            for s in plan.series_in(sub, ses)
            if s.key not in plan.skip_series or s.key in plan.aborted
        ]
    for ev in events.values():
        plan.run_names |= session_runs(ev)[1]
    plan.with_run = {k for k in plan.keys.values() if k.name in plan.run_names}
    for (sub, ses), ev in events.items():
        runs, _ = session_runs(ev, frozenset(plan.run_names))
        for s in plan.series_in(sub, ses):
            run, skip = runs.get(s.key, (None, ""))
            if s.key in plan.skip_series:
                plan.expected[s.key] = ""
            elif skip:
                plan.run_skips[s.key] = skip
                plan.expected[s.key] = ""
            else:
                plan.runs[s.key] = run
                plan.expected[s.key] = plan.keys[plan.group_of[s.key]].relpath(sub, ses, run)
    for s in series:  # the mapper's own paths are the expectation (should the two ever differ)
        a = assigned.get((s.subject, s.session, s.series_id))
        if a is not None and s.key not in plan.skip_series:
            ok = a.bids_path and not a.skip_reason
            plan.expected[s.key] = _strip_ext(a.bids_path) if ok else ""
    return plan


def _strip_ext(path: str) -> str:
    for ext in (".nii.gz", ".nii", ".json"):
        if path.endswith(ext):
            return path[: -len(ext)]
    return path
