"""The workspace as the app sees it: parsed once in a worker thread, cheap to query.

Rows come from the engine as TSV-row dicts (or dataclass dicts); the person's decisions are
folded in with :func:`engine.review.apply_decision`, exactly as ``map``/``generate`` do.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from engine.model import Mapping
from engine.review import Decision, apply_decision, bids_template

UNSURE = 0.7


def _listish(raw: Any) -> list[str]:
    from engine.heuristic.inputs import _listish as li

    return li(raw)


def index_rows(res: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of a ``review.index`` answer in either shape (``columns=True`` or not)."""
    if "columns" in res:
        cols = list(res["columns"])
        return [dict(zip(cols, vals, strict=True)) for vals in zip(*res["values"], strict=True)]
    return list(res.get("series", []))


def mapping_from_any(d: dict[str, Any]) -> Mapping:
    if isinstance(d.get("entities"), dict):
        return Mapping.from_dict(d)
    from engine.heuristic.inputs import mapping_from_row

    return mapping_from_row(d)


@dataclass
class GroupView:
    group_id: str
    label: str
    series_keys: list[str]
    flags: list[str]
    signature: dict[str, Any]
    proposed: Mapping  # rules/LLM
    mapping: Mapping  # with the person's decision applied
    decision: Decision | None = None

    @property
    def name(self) -> str:
        m = self.mapping
        if m.is_skip:
            return f"(skip: {m.skip_reason})"
        return bids_template(m.datatype, m.suffix, m.entities)

    @property
    def unsure(self) -> bool:
        return self.decision is None and self.mapping.confidence < UNSURE


@dataclass
class Workspace:
    series: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> series dict
    tree: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # sub -> ses -> keys
    groups: dict[str, GroupView] = field(default_factory=dict)
    series_group: dict[str, str] = field(default_factory=dict)
    review: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        series: list[dict[str, Any]],
        groups: list[dict[str, Any]],
        mappings: list[dict[str, Any]],
        review: dict[str, Any],
    ) -> Workspace:
        ws = cls()
        tree: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        for s in series:
            key = (
                s.get("key")
                or f"{s.get('subject', '')}|{s.get('session', '')}|{s.get('series_id', '')}"
            )
            ws.series[key] = s
            tree[s.get("subject") or s.get("patient_id") or "?"][s.get("session") or ""].append(key)
        ws.tree = {sub: dict(v) for sub, v in sorted(tree.items())}
        by_gid = {}
        for m in mappings:
            mm = mapping_from_any(m)
            by_gid[mm.group_id] = mm
        for g in groups:
            gid = g["group_id"]
            keys = g.get("series_keys") or []
            keys = keys if isinstance(keys, list) else _listish(keys)
            flags = g.get("flags") or []
            flags = flags if isinstance(flags, list) else _listish(flags)
            sig = g.get("signature") if isinstance(g.get("signature"), dict) else dict(g)
            m = by_gid.get(gid) or Mapping(gid, skip_reason="not mapped yet", confidence=0.0)
            ws.groups[gid] = GroupView(gid, g.get("label", ""), keys, flags, sig, m, m)
            for k in keys:
                ws.series_group[k] = gid
        ws.set_review(review)
        return ws

    def set_review(self, review: dict[str, Any]) -> None:
        self.review = review or {}
        decisions = {g: Decision.from_dict(d) for g, d in self.review.get("decisions", {}).items()}
        for gid, gv in self.groups.items():
            d = decisions.get(gid)
            gv.decision = d
            gv.mapping = apply_decision(gv.proposed, d) if d else gv.proposed

    def series_flags(self, key: str) -> list[str]:
        s = self.series.get(key, {})
        flags = []
        gv = self.groups.get(self.series_group.get(key, ""))
        if gv is not None:
            try:
                typical = int(float(gv.signature.get("typical_frames") or 0))
            except (TypeError, ValueError):
                typical = 0
            frames = (
                int(s.get("dim4") or 1) if int(s.get("dim4") or 1) > 1 else int(s.get("dim3") or 0)
            )
            if "aborted" in gv.flags and typical >= 10 and frames < 0.5 * typical:
                flags.append("aborted")
            if any(f.startswith("drift") for f in gv.flags):
                flags.append("drift")
        if str(s.get("is_derived")) in ("True", "true", "1"):
            flags.append("derived")
        return flags

    def subjects(self) -> list[str]:
        return list(self.tree)

    def matrix(self) -> tuple[list[str], list[tuple[str, list[int]]]]:
        """Columns ``sub[/ses]`` and per group the series count in each."""
        cells = [f"{sub}/{ses}" if ses else sub for sub, sess in self.tree.items() for ses in sess]
        rows = []
        for gid, gv in self.groups.items():
            counts: dict[str, int] = defaultdict(int)
            for k in gv.series_keys:
                sub, ses, _ = (k.split("|") + ["", ""])[:3]
                counts[f"{sub}/{ses}" if ses else sub] += 1
            rows.append((gid, [counts.get(c, 0) for c in cells]))
        return cells, rows
