"""Plain-text reports of heuristic generation and conversion (also shown by the TUI)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.heuristic.compiler import Compiled
    from engine.heuristic.convert import ConversionResult, ValidatorResult


def generation_report(c: Compiled) -> str:
    lines = [
        f"Heuristic: {len(c.groups)} converted group(s), "
        f"{len(c.plan.groups) - len(c.plan.keys)} skipped, "
        f"{len(c.plan.with_run)} key(s) with run-NN",
    ]
    if c.custom_fields:
        lines.append(f"custom_seqinfo used for: {', '.join(c.custom_fields)}")
    for cg in c.groups:
        lines.append(f"  {cg.group.group_id:8s} {cg.key.datatype}/{cg.key.stem()}")
        lines.append(f"           if {cg.selection.code}")
    for p in c.problems:
        lines.append(f"PROBLEM: {p}")
    return "\n".join(lines) + "\n"


def conversion_report(
    results: list[ConversionResult], verdict: ValidatorResult | None, dry_run: bool = False
) -> str:
    lines: list[str] = []
    for r in results:
        where = f"sub-{r.subject}" + (f" ses-{r.session}" if r.session else "")
        if dry_run:
            lines.append(f"{where}: would write into {r.bids_dir}")
            for sid, stem in r.expected.items():
                lines.append(f"  {sid:40s} -> {stem + '.nii.gz' if stem else '(not converted)'}")
            continue
        status = "OK" if r.heudiconv_rc == 0 and not r.missing else "FAILED"
        lines.append(f"{where}: {status} ({len(r.written)} NIfTI file(s) in {r.bids_dir})")
        if r.heudiconv_rc != 0:
            lines.append(f"  heudiconv exited {r.heudiconv_rc}:")
            lines += ["    " + x for x in r.heudiconv_log.splitlines()[-20:]]
        lines += [f"  {w}" for w in r.written]
        lines += [f"  MISSING {m}" for m in r.missing]
        for js, targets in sorted(r.intended_for.items()):
            lines.append(f"  IntendedFor {js}: {len(targets)} target(s)")
    if verdict is not None:
        lines.append(verdict.verdict)
        lines += [f"  ERROR {e}" for e in verdict.errors]
        lines += [f"  warning {w}" for w in verdict.warnings[:30]]
    return "\n".join(lines) + "\n"
