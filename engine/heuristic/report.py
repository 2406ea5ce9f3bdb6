"""Plain-text reports of heuristic generation and conversion (also shown by the TUI)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.text import printable_text  # header text may hold ESC/BEL: never shown raw

if TYPE_CHECKING:
    from engine.heuristic.compiler import Compiled
    from engine.heuristic.outcome import ConversionResult, ValidatorResult


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
    return printable_text("\n".join(lines) + "\n")


def conversion_report(
    results: list[ConversionResult],
    verdict: ValidatorResult | None,
    dry_run: bool = False,
    metadata_path: str = "OUT/sidecar_metadata.json",
) -> str:
    from engine.heuristic.sidecars import fix_text, parse_name

    lines: list[str] = []
    for r in results:
        where = f"sub-{r.subject}" + (f" ses-{r.session}" if r.session else "")
        if dry_run:
            lines.append(f"{where}: would write into {r.bids_dir}")
            for sid, stem in r.expected.items():
                files = r.files.get(sid) or ([stem + ".nii.gz"] if stem else [])
                if not files:
                    why = r.skipped.get(sid, "")
                    lines.append(f"  {sid:40s} -> (not converted{': ' + why if why else ''})")
                for i, f in enumerate(files):
                    lines.append(f"  {sid if i == 0 else '':40s} -> {f}")
            if any(r.files.values()):
                lines.append("  (each NIfTI with its .json sidecar; dwi with .bval/.bvec)")
            continue
        status = "OK" if r.ok else ("INCOMPLETE" if r.heudiconv_rc == 0 else "FAILED")
        lines.append(f"{where}: {status} ({len(r.written)} NIfTI file(s) in {r.bids_dir})")
        if r.heudiconv_rc != 0:
            lines.append(f"  heudiconv exited {r.heudiconv_rc}:")
            lines += ["    " + x for x in r.heudiconv_log.splitlines()[-20:]]
        lines += [f"  {w}" for w in r.written]
        lines += _series_lines(r)
        lines += [f"  MISSING {m}" for m in r.missing]
        for old, new in r.renamed:
            lines.append(f"  renamed {old} -> {new} (by its sidecar: dcm2niix split the series)")
        for rel, why in sorted(r.set_aside.items()):
            lines.append(f"  SET ASIDE {rel}: {why} (moved to OUT/bids_set_aside/)")
        for js, targets in sorted(r.intended_for.items()):
            lines.append(f"  IntendedFor {js}: {len(targets)} target(s)")
        for fo in r.sidecars.files if r.sidecars else []:
            for name, src in sorted(fo.filled.items()):
                lines.append(f"  metadata {fo.relpath}: {name} {src}")
        incomplete = (r.sidecars.left_out + r.sidecars.kept_incomplete) if r.sidecars else []
        for fo in incomplete:
            if fo.left_out:
                lines.append(
                    f"  LEFT OUT {fo.relpath}: moved to {fo.left_out} so the dataset stays valid"
                )
            else:
                lines.append(f"  NEEDS METADATA {fo.relpath} (kept in the dataset)")
            for name, rule in sorted(fo.missing.items()):
                lines.append(f"    missing required {name} ({rule})")
            for why in fo.problems:
                lines.append(f"    {why}")
            suffix = parse_name(fo.relpath.rsplit("/", 1)[-1])[1]
            lines += ["    fix: " + x for x in fix_text(fo, metadata_path, suffix)]
            lines.append(f"    then run again: llm-heuristics convert OUT --subject {r.subject}")
    if verdict is not None:
        lines.append(verdict.verdict)
        lines += [f"  ERROR {e}" for e in verdict.errors]
        lines += [f"  warning {w}" for w in verdict.warnings[:30]]
    return printable_text("\n".join(lines) + "\n")


def _series_lines(r: ConversionResult) -> list[str]:
    """Per series: converted (its files), skipped (why), failed (cause and fix), repaired."""
    if not (r.converted or r.skipped or r.failed):
        return []
    lines = [
        f"  series: {len(r.converted)} converted, {len(r.skipped)} skipped, {len(r.failed)} failed"
    ]
    for sid in r.expected:
        if sid in r.failed:
            f = r.failed[sid]
            lines.append(f"    FAILED {sid}: {f.cause}")
            lines.append(f"      fix: {f.fix}")
            lines += ["      | " + x for x in f.log.splitlines()[-6:]]
        elif sid in r.skipped:
            lines.append(f"    skipped {sid}: {r.skipped[sid]}")
        elif sid in r.converted:
            files = ", ".join(r.converted[sid]) or "no file written"
            lines.append(f"    converted {sid}: {files}")
        for what in r.repaired.get(sid, []):
            lines.append(f"      repaired: {what}")
    return lines
