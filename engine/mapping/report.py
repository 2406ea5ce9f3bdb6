"""Human-readable mapping report and the TSV rows of the mapping and assignment tables."""

from __future__ import annotations

from collections import Counter

from engine.model import UNSURE_THRESHOLD, Group, Mapping, SeriesAssignment, SeriesInfo
from engine.text import printable_text


def name_template(m: Mapping) -> str:
    """``func/sub-<label>[_ses-<label>]_task-rest[_run-NN]_bold``: a group's file pattern."""
    n = m.name
    if n is None:
        return ""
    ents = "".join(f"_{k}-{v}" for k, v in n.entities)
    return f"{n.datatype}/sub-<label>[_ses-<label>]{ents}[_run-NN]_{n.suffix}"


def mapping_report(
    series: list[SeriesInfo],
    groups: list[Group],
    mappings: list[Mapping],
    assignments: list[SeriesAssignment],
    unsure: float = UNSURE_THRESHOLD,
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
        mark = "  ?" if m.confidence < unsure else ""
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
    low = [m for m in mappings if m.confidence < unsure and m.source != "user"]
    lines += ["", f"Unsure ({len(low)} group(s) below confidence {unsure}; please review):"]
    for m in low:
        lines.append(
            f"  {m.group_id}: {'skip: ' + m.skip_reason if m.is_skip else name_template(m)}"
            f" ({m.confidence:.2f})"
        )
    if not low:
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
    return printable_text("\n".join(lines) + "\n")  # header text may hold ESC/BEL
