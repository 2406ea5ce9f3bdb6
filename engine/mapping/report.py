"""Human-readable mapping report and the TSV rows of the mapping and assignment tables."""

from __future__ import annotations

import json
from collections import Counter

from engine.model import Group, Mapping, SeriesAssignment, SeriesInfo

MAPPED_COLUMNS = (
    "group_id",
    "label",
    "n_series",
    "example_description",
    "datatype",
    "suffix",
    "entities",
    "bids_name",
    "skip_reason",
    "confidence",
    "evidence",
    "source",
    "intended_for",
    "echoes",
    "extra_suffixes",
)
ASSIGNMENT_COLUMNS = (
    "subject",
    "session",
    "series_id",
    "group_id",
    "bids_path",
    "skip_reason",
    "extra_paths",
)
UNSURE = 0.7


def name_template(m: Mapping) -> str:
    if m.is_skip:
        return ""
    ents = "".join(f"_{k}-{v}" for k, v in m.entities.items())
    return f"{m.datatype}/sub-<label>[_ses-<label>]{ents}[_run-NN]_{m.suffix}"


def mapped_rows(
    groups: list[Group], mappings: list[Mapping], series: list[SeriesInfo]
) -> list[dict[str, str]]:
    by_key = {s.key: s for s in series}
    rows = []
    for g, m in zip(groups, mappings, strict=True):
        ex = by_key.get(g.series_keys[0]) if g.series_keys else None
        rows.append(
            {
                "group_id": m.group_id,
                "label": g.label,
                "n_series": str(len(g.series_keys)),
                "example_description": ex.series_description if ex else "",
                "datatype": m.datatype,
                "suffix": m.suffix,
                "entities": json.dumps(m.entities),
                "bids_name": name_template(m),
                "skip_reason": m.skip_reason,
                "confidence": f"{m.confidence:.2f}",
                "evidence": " | ".join(m.evidence),
                "source": m.source,
                "intended_for": ";".join(m.intended_for),
                "echoes": str(m.echoes),
                "extra_suffixes": ";".join(m.extra_suffixes),
            }
        )
    return rows


def assignment_rows(assignments: list[SeriesAssignment]) -> list[dict[str, str]]:
    return [
        {
            "subject": a.subject,
            "session": a.session,
            "series_id": a.series_id,
            "group_id": a.group_id,
            "bids_path": a.bids_path,
            "skip_reason": a.skip_reason,
            "extra_paths": ";".join(a.extra_paths),
        }
        for a in assignments
    ]


def mapping_report(
    series: list[SeriesInfo],
    groups: list[Group],
    mappings: list[Mapping],
    assignments: list[SeriesAssignment],
) -> str:
    by_key = {s.key: s for s in series}
    n_conv = sum(1 for a in assignments if a.bids_path)
    lines = [
        f"Mapping: {len(groups)} group(s), {len(series)} series -> {n_conv} converted, "
        f"{len(series) - n_conv} skipped",
        "",
        "Per group (what maps where, and why):",
    ]
    for g, m in zip(groups, mappings, strict=True):
        ex = by_key.get(g.series_keys[0]) if g.series_keys else None
        desc = ex.series_description if ex else ""
        target = f"SKIP ({m.skip_reason})" if m.is_skip else name_template(m)
        mark = "  ?" if m.confidence < UNSURE else ""
        lines.append(f"  {g.group_id} [{len(g.series_keys)} series, e.g. {desc!r}]{mark}")
        lines.append(f"      -> {target}   confidence {m.confidence:.2f} ({m.source})")
        for e in m.evidence:
            lines.append(f"         because: {e}")
        if m.extra_suffixes:
            lines.append(f"         also writes: {', '.join(m.extra_suffixes)}")
        if m.echoes > 1:
            lines.append(f"         {m.echoes} echoes per series: heudiconv adds _echo-N")
        if m.intended_for:
            lines.append(f"         IntendedFor: {', '.join(m.intended_for)}")
        if g.flags:
            lines.append(f"         group flags: {', '.join(g.flags)}")
    unsure = [m for m in mappings if m.confidence < UNSURE]
    lines += ["", f"Unsure ({len(unsure)} group(s) below confidence {UNSURE}; please review):"]
    for m in unsure:
        lines.append(
            f"  {m.group_id}: {'skip: ' + m.skip_reason if m.is_skip else name_template(m)}"
            f" ({m.confidence:.2f})"
        )
    if not unsure:
        lines.append("  none")
    skips = Counter(a.skip_reason for a in assignments if a.skip_reason)
    lines += ["", "Skipped series by reason:"]
    for reason, n in skips.most_common():
        lines.append(f"  {n:>3}  {reason}")
    lines += ["", "Per series:"]
    for a in assignments:
        where = a.bids_path or f"SKIP: {a.skip_reason}"
        if a.extra_paths:
            where += " (+ " + ", ".join(a.extra_paths) + ")"
        ses = f"/{a.session}" if a.session else ""
        lines.append(f"  {a.subject}{ses} {a.series_id:<40} -> {where}")
    return "\n".join(lines) + "\n"
