"""The effective mapping: the rules/LLM proposal, the person's decisions and field-map intents.

This is the one place that combines them. ``generate``, ``validate``, ``convert``, the reports,
the engine's review methods and the TUI all read :func:`effective`, so a decision made anywhere
(TUI, ``llm-heuristics decide``) means the same thing everywhere.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from engine import review
from engine.grouping import fill_subjects, group_series
from engine.mapping import validate_mapping
from engine.mapping.fieldmaps import assign_intended_for
from engine.mapping.policy import Policy
from engine.mapping.report import mapping_report
from engine.mapping.runs import assign_series
from engine.model import Decision, Group, Mapping, SeriesAssignment, SeriesInfo, apply_decision
from engine.workspace import Workspace


@dataclass
class Effective:
    """Everything a consumer of the mapping needs, in group order."""

    series: list[SeriesInfo]
    groups: list[Group]
    proposals: list[Mapping]  # rules/LLM, one per group
    mappings: list[Mapping]  # with the person's decisions (and the policy, when asked)
    assignments: list[SeriesAssignment]
    decisions: dict[str, Decision] = field(default_factory=dict)
    report: str = ""

    @property
    def by_group(self) -> dict[str, Mapping]:
        return {m.group_id: m for m in self.mappings}


def series_flags(groups: list[Group], series: list[SeriesInfo]) -> dict[str, list[str]]:
    """Per-series flags as grouping stored them (recomputed for a groups table that predates
    the ``series_flags`` column)."""
    if any(g.series_flags for g in groups) or not any("aborted" in g.flags for g in groups):
        return {k: list(v) for g in groups for k, v in g.series_flags.items()}
    return group_series(series).series_flags


def decided_mappings(
    series: list[SeriesInfo],
    groups: list[Group],
    proposals: list[Mapping],
    decisions: dict[str, Decision],
    policy: Policy | None = None,
) -> dict[str, Mapping]:
    """Each group's proposal with the person's decision (and the policy) applied, and the
    field maps' IntendedFor: the part of :func:`combine` the review view also needs (it shows
    neither run numbers nor the report)."""
    fill_subjects(series)
    base = {m.group_id: m for m in proposals}
    by_id: dict[str, Mapping] = {}
    for g in groups:
        m = copy.deepcopy(base.get(g.group_id) or Mapping(g.group_id, skip_reason="not mapped"))
        d = decisions.get(g.group_id)
        if d is not None:
            m = validate_mapping(apply_decision(m, d))
        by_id[g.group_id] = m
    if policy is not None and not policy.is_default():
        by_id = {m.group_id: m for m in policy.apply([by_id[g.group_id] for g in groups])}
    if any(m.datatype == "fmap" and not m.is_skip for m in by_id.values()):
        assign_intended_for(groups, by_id, series)  # sets the field maps' IntendedFor only
    return by_id


def combine(
    series: list[SeriesInfo],
    groups: list[Group],
    proposals: list[Mapping],
    decisions: dict[str, Decision],
    policy: Policy | None = None,
) -> Effective:
    """Proposals + decisions (+ policy) -> mappings, IntendedFor, series assignments, report."""
    base = {m.group_id: m for m in proposals}
    by_id = decided_mappings(series, groups, proposals, decisions, policy)
    series_group = {k: g.group_id for g in groups for k in g.series_keys}
    assignments = assign_series(series, series_group, by_id, series_flags(groups, series))
    mappings = [by_id[g.group_id] for g in groups]
    report = mapping_report(series, groups, mappings, assignments)
    ordered = [
        base.get(g.group_id) or Mapping(g.group_id, skip_reason="not mapped") for g in groups
    ]
    return Effective(series, groups, ordered, mappings, assignments, dict(decisions), report)


def effective(ws: Workspace, *, policy: Policy | None = None) -> Effective:
    """OUT's effective mapping; ``policy`` adds generate's switches (``--exclude-sbref``...)."""
    ws.require()
    series = ws.read_series()
    groups = ws.read_groups()
    proposals = ws.read_proposals()
    decisions = review.current_decisions(ws.root)
    return combine(series, groups, proposals, decisions, policy)
