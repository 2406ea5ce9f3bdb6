"""Convert one subject/session with heudiconv + dcm2niix, fix IntendedFor, complete the
sidecars (:mod:`.sidecars`), run bids-validator.

The session's DICOM is staged (read only) and heudiconv run there by :mod:`.staging`; everything
staged (``OUT/.convert_work``) is removed afterwards. When heudiconv fails, :mod:`.rescue`
repairs header values in the staged copy, finds the failing series and converts the others: one
bad series never loses a subject. Each series is reported converted (its files), skipped (the
mapping's reason) or failed (cause and fix).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from engine.atomic import write_text_atomic
from engine.errors import UserError
from engine.heuristic.b0fields import write_b0_fields
from engine.heuristic.multifile import name_split_outputs, set_aside_3d_bold
from engine.heuristic.outcome import ConversionResult, ValidatorResult
from engine.heuristic.participants import tidy_participants
from engine.heuristic.plan import Plan
from engine.heuristic.sidecars import (
    INCOMPLETE_DIR,
    SIDECAR_METADATA_FILE,
    complete_sidecars,
    load_study_metadata,
    restore_previous,
    strip_identifiers,
)
from engine.heuristic.staging import (  # noqa: F401  (re-exported: the API of this module)
    ANALYZE_INPUT_FILE,
    FILES_TABLES,
    SessionStage,
    analyze_inputs,
    beside_interpreter,
    files_for_series,
    heudiconv_command,
    heudiconv_executable,
    is_gzip,
    link_files,
    write_dcm2niix_wrapper,
)
from engine.model import Group, Mapping, SeriesAssignment, SeriesInfo


def written_niftis(bids_dir: Path, subject: str, session: str) -> list[str]:
    base = bids_dir / f"sub-{subject}"
    if session:
        base = base / f"ses-{session}"
    if not base.is_dir():
        return []
    return sorted(str(p.relative_to(bids_dir)) for p in base.rglob("*.nii*"))


def fix_intended_for(
    plan: Plan, bids_dir: Path, subject: str, session: str
) -> dict[str, list[str]]:
    """Write each field map's IntendedFor (same session only) and B0FieldIdentifier/
    B0FieldSource as the mapping says: the code the heuristic runs under heudiconv, run again
    after the vendor field maps are renamed and the rescue's series-by-series runs."""
    folder = bids_dir / f"sub-{subject}" / (f"ses-{session}" if session else "")
    done = write_b0_fields(str(folder), plan.intended_for())
    return {str(Path(p).relative_to(bids_dir)): t for p, t in sorted(done.items())}


def tidy_dataset(bids_dir: Path, title: str = "") -> None:
    """Make heudiconv's top-level files validator-clean: a real Name/README, ages in years and
    top-coded at 89, ignore .heudiconv."""
    dd = bids_dir / "dataset_description.json"
    meta = json.loads(dd.read_text()) if dd.exists() else {}
    if not meta.get("Name") or str(meta.get("Name", "")).startswith("TODO"):
        meta["Name"] = title or bids_dir.resolve().name
    meta.setdefault("BIDSVersion", "1.8.0")
    meta.setdefault("DatasetType", "raw")
    for k in [k for k, v in meta.items() if isinstance(v, str) and v.startswith("TODO")]:
        meta.pop(k)
    for k in [
        k for k, v in meta.items() if isinstance(v, list) and any("TODO" in str(x) for x in v)
    ]:
        meta.pop(k)
    write_text_atomic(dd, json.dumps(meta, indent=2) + "\n")
    tidy_participants(bids_dir)
    readme = bids_dir / "README"
    if not readme.exists() or "TODO" in readme.read_text(errors="replace")[:200]:
        write_text_atomic(
            readme,
            f"{meta['Name']}\n\nMRI data converted from DICOM with heudiconv and dcm2niix, using a "
            "heuristic generated and validated by llm-heuristics.\n",
        )
    changes = bids_dir / "CHANGES"
    if changes.exists() and "TODO" in changes.read_text(errors="replace"):
        changes.unlink()
    ign = bids_dir / ".bidsignore"
    lines = ign.read_text().splitlines() if ign.exists() else []
    if ".heudiconv/" not in lines:
        write_text_atomic(ign, "\n".join([*lines, ".heudiconv/"]) + "\n")


def run_bids_validator(bids_dir: Path, timeout: int = 900) -> ValidatorResult:
    exe = shutil.which("bids-validator")
    if exe is None:
        return ValidatorResult(False)
    proc = subprocess.run(
        [exe, str(bids_dir), "--json"],  # the validator's default options, as users run it
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    out = proc.stdout.strip()
    res = ValidatorResult(True, raw=out or proc.stderr)
    try:
        data = json.loads(out[out.index("{") :]) if "{" in out else {}
    except json.JSONDecodeError:
        res.errors.append(f"could not read bids-validator output: {(out or proc.stderr)[:300]}")
        return res
    issues = data.get("issues", {})
    for kind, target in (("errors", res.errors), ("warnings", res.warnings)):
        for issue in issues.get(kind, []):
            files = [
                (f.get("file") or {}).get("relativePath", "") for f in issue.get("files", [])[:3]
            ]
            target.append(
                f"{issue.get('key')}: {issue.get('reason', '')} {' '.join(filter(None, files))}".strip()
            )
    if proc.returncode != 0 and not res.errors and not data:
        res.errors.append(f"bids-validator exited {proc.returncode}: {proc.stderr[:300]}")
    return res


def convert(
    out_dir: str | Path,
    inputs: tuple[list[SeriesInfo], list[Group], list[Mapping], list[SeriesAssignment]],
    subject: str,
    session: str | None = None,
    *,
    bids_dir: str | Path | None = None,
    heuristic: str | Path | None = None,
    dicom_dir: str | Path | None = None,
    dry_run: bool = False,
    validator: bool = True,
    sidecar_metadata: str | Path | None = None,
    keep_identifiers: bool = False,
    log=print,
) -> tuple[list[ConversionResult], ValidatorResult | None, str]:
    """Convert one subject (all its sessions, or one); returns results, verdict, report text.

    ``inputs``: the effective mapping (series, groups, mappings, assignments) to convert by.

    ``sidecar_metadata``: the study metadata file (default ``OUT/sidecar_metadata.json``) with
    the sidecar facts DICOM lacks; see :mod:`engine.heuristic.sidecars`.

    ``keep_identifiers``: leave the identifying sidecar fields, the ``operator`` column of
    ``*_scans.tsv`` and ``.heudiconv/<subject>`` as heudiconv wrote them (default: removed,
    :func:`~engine.heuristic.sidecars.strip_identifiers`).
    """
    from engine import private
    from engine.heuristic.plan import build_plan
    from engine.heuristic.report import conversion_report
    from engine.heuristic.rescue import rescue
    from engine.heuristic.validate import HEURISTIC_FILE

    out = Path(out_dir)
    series, groups, mappings, assignments = inputs
    plan = build_plan(series, groups, mappings, assignments)
    h = Path(heuristic) if heuristic else out / HEURISTIC_FILE
    if not h.exists():
        raise UserError(f"{h} not found: run `llm-heuristics generate {out}` first")
    cells = [c for c in plan.sessions() if c[0] == subject]
    if not cells:
        known = ", ".join(sorted({s for s, _ in plan.sessions()}))
        raise UserError(f"no subject {subject!r} in {out} (known: {known})")
    if session is not None:
        cells = [c for c in cells if c[1] == session]
        if not cells:
            raise UserError(f"subject {subject!r} has no session {session!r}")
    bids = Path(bids_dir) if bids_dir else out / "bids"
    meta_path = Path(sidecar_metadata) if sidecar_metadata else out / SIDECAR_METADATA_FILE
    if sidecar_metadata and not meta_path.exists():
        raise UserError(f"{meta_path} not found (--sidecar-metadata)")
    entries = load_study_metadata(meta_path)
    incomplete = out / INCOMPLETE_DIR
    identities = private.out_values(out)
    results: list[ConversionResult] = []
    for sub, ses in cells:
        rows = plan.series_in(sub, ses)
        res = ConversionResult(sub, ses, bids)
        res.expected = {s.series_id: plan.expected.get(s.key, "") for s in rows}
        res.files = {s.series_id: expected_files(plan, s) for s in rows}
        res.skipped = {
            s.series_id: skip_reason(plan, s) for s in rows if not res.expected[s.series_id]
        }
        if dry_run:
            results.append(res)
            continue
        conv_rows = [s for s in rows if plan.expected.get(s.key)]
        files = files_for_series(out, rows, Path(dicom_dir) if dicom_dir else None)
        lacking = [s.series_id for s in conv_rows if s.series_uid not in files]
        if lacking:
            raise UserError(f"no DICOM files found for series {', '.join(lacking)}")
        work = out / ".convert_work" / f"sub-{sub}" / (f"ses-{ses}" if ses else "nosession")
        bids.mkdir(parents=True, exist_ok=True)
        restore_previous(bids, incomplete, sub, ses)
        stage = SessionStage(work, files, h.resolve(), sub, ses)
        stage.env[private.MAP_ENV] = str(private.map_path(out).resolve())  # the heuristic reads it
        try:
            log(f"sub-{sub}{' ses-' + ses if ses else ''}: {' '.join(stage.command(bids))}")
            rc, text = stage.run(bids)
            if rc != 0:
                log(f"sub-{sub}: heudiconv exited {rc}; converting series by series")
                rc, text, res.repaired, res.failed = rescue(
                    stage,
                    {s.series_id: s.series_uid for s in conv_rows},
                    {s.series_id: plan.expected.get(s.key, "") for s in conv_rows},
                    bids,
                    (rc, text),
                    {s.series_uid: s.series_id for s in rows},
                    log=log,
                )
        finally:
            stage.remove()
        res.heudiconv_rc = rc
        res.heudiconv_log = private.redact(text[-4000:], identities)
        if rc != 0:
            results.append(res)
            continue
        res.renamed, res.set_aside = name_split_outputs(bids, sub, ses, out)
        res.set_aside.update(set_aside_3d_bold(bids, sub, ses, out))
        new_of = {new: old for old, new in res.renamed}
        res.intended_for = fix_intended_for(plan, bids, sub, ses)
        res.sidecars = complete_sidecars(
            bids,
            written_niftis(bids, sub, ses),
            entries,
            incomplete_dir=incomplete,
            metadata_file=str(meta_path),
        )
        if not keep_identifiers:
            strip_identifiers(bids, sub, ses, identities)
        res.written = written_niftis(bids, sub, ses)
        gone = res.left_out + list(res.set_aside)
        for sid, stem in res.expected.items():
            if sid in res.failed or not stem:
                continue
            res.converted[sid] = [w for w in res.written if _same_output(new_of.get(w, w), stem)]
            base = re.sub(r"_echo-\d+", "", stem.rstrip("0123456789"))

            def placed(paths: list[str], base: str = base) -> bool:
                return any(re.sub(r"_echo-\d+", "", w).startswith(base) for w in paths)

            if stem and not placed(res.written) and not placed(gone):
                res.missing.append(stem)
        results.append(res)
    verdict = None
    if not dry_run and results and all(r.heudiconv_rc == 0 for r in results):
        tidy_dataset(bids, title=_title(series))
        if validator:
            verdict = run_bids_validator(bids)
    text = conversion_report(results, verdict, dry_run=dry_run, metadata_path=str(meta_path))
    if not dry_run:
        write_reports(out, results, verdict, str(meta_path))
    return results, verdict, text


REPORTS_DIR = "conversion_reports"


def write_reports(
    out: Path, results: list[ConversionResult], verdict: ValidatorResult | None, metadata_path: str
) -> None:
    """One report per subject/session in ``OUT/conversion_reports/`` (a later subject's run
    does not wipe an earlier one's), and ``OUT/conversion_report.txt``: all of them, then the
    verdict on the whole dataset from this run."""
    from engine.heuristic.report import conversion_report

    folder = out / REPORTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for r in results:
        name = f"sub-{r.subject}" + (f"_ses-{r.session}" if r.session else "") + ".txt"
        write_text_atomic(folder / name, conversion_report([r], None, metadata_path=metadata_path))
    parts = [p.read_text() for p in sorted(folder.glob("sub-*.txt"))]
    if verdict is not None:
        parts.append(conversion_report([], verdict))
    write_text_atomic(out / "conversion_report.txt", "".join(parts))


def _title(series: list[SeriesInfo]) -> str:
    descs = sorted({s.study_description for s in series if s.study_description})
    return descs[0] if len(descs) == 1 else "MRI study"


def _norm(stem: str) -> str:
    return re.sub(r"_echo-\d+", "", stem).rstrip("0123456789")


def _same_output(path: str, stem: str) -> bool:
    """``path`` (a written NIfTI) is one of the files of the series expected at ``stem``."""
    head = re.sub(r"\.nii(\.gz)?$", "", path)
    return bool(stem) and _norm(head) == _norm(stem)


def skip_reason(plan: Plan, s: SeriesInfo) -> str:
    """Why the mapping does not convert this series."""
    return (
        plan.skip_series.get(s.key) or plan.run_skips.get(s.key) or "not converted by the mapping"
    )


def expected_files(plan: Plan, s: SeriesInfo) -> list[str]:
    """Every NIfTI the real run writes for this series: all echoes of a multi-echo series
    (``echo-1..N``), ``magnitude1`` and ``magnitude2`` of a two-echo field-map magnitude."""
    stem = plan.expected.get(s.key, "")
    if not stem:
        return []
    echoes = max(len(set(s.echo_numbers)), len(set(s.echo_times)))
    if re.search(r"_echo-1_", stem) and echoes > 1:
        return [stem.replace("_echo-1_", f"_echo-{n}_") + ".nii.gz" for n in range(1, echoes + 1)]
    m = plan.mappings.get(plan.group_of.get(s.key, ""))
    extras = list(getattr(m, "extra_suffixes", []) or [])
    if m is not None and extras and stem.endswith("_" + m.suffix):
        # one series, several files (B0 map, multi-part field map): named by their sidecars
        head = stem[: -len(m.suffix)]
        return [stem + ".nii.gz"] + [head + x + ".nii.gz" for x in extras]
    if stem.endswith("_magnitude1"):
        two = (
            echoes > 1
            or "magnitude2" in getattr(m, "extra_suffixes", [])
            or (not s.echo_numbers and s.dim4 == 2)
        )
        if two:
            return [stem + ".nii.gz", stem[:-1] + "2.nii.gz"]
    return [stem + ".nii.gz"]
