"""The workspace as the app sees it: the engine's :class:`WorkspaceView`, indexed for the panes.

Nothing here parses files or re-derives a rule: series flags, group membership, the effective
mapping and ``unsure`` all come from the engine. A decision's result carries the views of the
groups it changed, which replace those rows (no reload of the whole workspace).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace

from engine.api.types import GroupView, ReviewView, SeriesRow, WorkspaceView
from engine.model import apply_decision


def group_name(g: GroupView) -> str:
    """``func/task-rest_bold`` or ``(skip: reason)``."""
    return g.mapping.display


@dataclass
class Workspace:
    view: WorkspaceView = field(default_factory=lambda: WorkspaceView(out_dir=""))
    series: dict[str, SeriesRow] = field(default_factory=dict)  # key -> row
    tree: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # sub -> ses -> keys
    groups: dict[str, GroupView] = field(default_factory=dict)

    @classmethod
    def build(cls, view: WorkspaceView) -> Workspace:
        ws = cls(view=view)
        tree: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        for s in view.series:
            ws.series[s.key] = s
            tree[s.subject or "?"][s.session].append(s.key)
        ws.tree = {sub: dict(v) for sub, v in sorted(tree.items())}
        ws.groups = {g.group_id: g for g in view.groups}
        return ws

    @property
    def review(self) -> ReviewView:
        return self.view.review

    def group_of(self, key: str) -> str:
        s = self.series.get(key)
        return s.group_id if s is not None else ""

    def set_review(self, review: ReviewView) -> list[str]:
        """The engine's journal after a decision/undo/redo: the groups whose view changed.

        The engine sends the changed groups' views (``review.groups``): they replace ours, so
        a decision costs a row, not a reload. Without them (an older engine), the decision is
        applied here with :func:`apply_decision` until the next view arrives."""
        self.view.review = review
        changed = []
        for new in review.groups:
            old = self.groups.get(new.group_id)
            if old is None:
                continue
            if not new.image_says and old.image_says:
                new = replace(new, image_says=old.image_says, image_probs=old.image_probs)
            if new != old:
                self.groups[new.group_id] = new
                changed.append(new.group_id)
        patched = {g.group_id for g in review.groups}
        for gid, g in self.groups.items():
            d = review.decisions.get(gid)
            if gid in patched or d == g.decision:
                continue
            m = apply_decision(g.proposal, d) if d is not None else g.proposal
            unsure = d is None and m.confidence < self.view.unsure_threshold
            self.groups[gid] = replace(g, mapping=m, decision=d, unsure=unsure)
            changed.append(gid)
        return changed

    def subjects(self) -> list[str]:
        return list(self.tree)

    def matrix(self) -> tuple[list[str], list[tuple[str, list[int]]]]:
        """Columns ``sub[/ses]`` and per group the series count in each."""
        cells = [f"{sub}/{ses}" if ses else sub for sub, sess in self.tree.items() for ses in sess]
        counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for s in self.series.values():
            sub = s.subject or "?"
            counts[s.group_id][f"{sub}/{s.session}" if s.session else sub] += 1
        rows = [(gid, [counts[gid].get(c, 0) for c in cells]) for gid in self.groups]
        return cells, rows
