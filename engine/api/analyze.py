"""The ``analyze`` step: scan a DICOM tree (or import heudiconv's dicominfo) into OUT.

Split from :mod:`engine.api.steps` (which re-exports :func:`analyze`): the input checks, the
scan, the heudiconv import and the Slurm path are one concern, larger than the other steps.
"""

from __future__ import annotations

import re
from pathlib import Path

from engine import context
from engine.api.types import AnalyzeParams, AnalyzeResult
from engine.atomic import output_error
from engine.errors import UserError
from engine.workspace import SERIES_TSV, Workspace


def _check_patterns(p: AnalyzeParams) -> None:
    for name in ("subject_pattern", "session_pattern"):
        pat = getattr(p, name)
        if pat:
            try:
                re.compile(pat)
            except re.error as exc:
                raise UserError(f"--{name.replace('_', '-')}: invalid regex: {exc}") from None


def _check_out_outside_input(src: Path, out: Path) -> None:
    """OUT must not be INPUT or inside it: analyze never writes into the input tree."""
    if not src.is_dir():
        return
    rs, ro = src.resolve(), out.resolve()
    if ro == rs or rs in ro.parents:
        raise UserError(
            f"the output folder {out} is {'the input' if ro == rs else 'inside the input'} {src}: "
            "analyze never writes into the input tree (its cache and tables would land there); "
            f"use a folder outside it, e.g. {rs.parent / (rs.name + '_llmh')}"
        )


def analyze(p: AnalyzeParams) -> AnalyzeResult:
    """Scan a DICOM tree (or import heudiconv dicominfo) into ``aggregated_dicominfo.tsv``."""
    src, out = Path(p.input), Path(p.out_dir)
    for what, path in (("input", src), ("output folder", out)):
        try:
            str(path).encode("utf-8")
        except UnicodeEncodeError:
            raise UserError(f"the {what} path is not valid UTF-8: rename it") from None
    if not src.exists():
        raise UserError(f"{src} does not exist")
    _check_out_outside_input(src, out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(out, exc) from exc
    from engine.review import journal_warnings

    ws = Workspace(out)
    with ws.step(f"analyze {src}"):
        res = _analyze(p, src, out, ws)
    res.warnings = res.warnings + journal_warnings(out)
    return res


def _analyze(p: AnalyzeParams, src: Path, out: Path, ws: Workspace) -> AnalyzeResult:
    from engine.scan.discover import EXTERNAL, NOT_UTF8
    from engine.scan.heudiconv_import import find_dicominfo, import_dicominfo, is_heudiconv_input

    if p.n_cpus is not None and p.n_cpus < 1:
        raise UserError("--n-cpus must be at least 1")
    if p.submit and not p.slurm:
        raise UserError("--submit needs --slurm")
    _check_patterns(p)
    from engine.private import LABEL_MODES
    from engine.scan.aggregate import people_from_series, pseudonymize

    if p.subject_labels not in LABEL_MODES:
        raise UserError(f"--subject-labels must be one of {', '.join(LABEL_MODES)}")
    labels = "pattern" if p.subject_pattern else p.subject_labels
    res = AnalyzeResult(out_dir=str(out))
    if is_heudiconv_input(src):
        series = import_dicominfo(src)
        if not series:
            raise UserError(f"no dicominfo*.tsv rows found under {src}")
        series = pseudonymize(
            series, people_from_series(series), out, _import_labels(series, labels)
        )
        ws.write_series(series)
        ws.write_analyze_errors([])
        res.n_series, res.imported = len(series), str(src)
        res.message = (
            f"analyze: imported {len(series)} series from heudiconv dicominfo under {src} "
            f"-> {ws.path(SERIES_TSV)}"
        )
        return res
    if p.slurm:
        return _slurm(p, src, out, ws)
    from engine.scan.pipeline import scan

    sc = scan(
        src,
        out,
        n_cpus=p.n_cpus,
        subject_pattern=p.subject_pattern,
        session_pattern=p.session_pattern,
        progress=p.progress,
        trust_folder_times=p.trust_folder_times,
        follow_external_links=p.follow_external_links,
    )
    ws.write_analyze_errors(list(sc.errors))
    external = EXTERNAL.split("(", 1)[0]
    n_ext = sum(1 for _p, r in sc.errors if r.startswith(external))
    n_name = sum(1 for _p, r in sc.errors if r == NOT_UTF8)
    if n_ext:
        res.warnings.append(
            f"{n_ext} symbolic link(s) lead out of {src} and were not followed (listed in "
            "analyze_errors.tsv; --follow-external-links follows them)"
        )
    if n_name:
        res.warnings.append(
            f"{n_name} file or folder name(s) are not valid UTF-8 and were not read (listed "
            "in analyze_errors.tsv with \\xNN escapes): rename them to read them"
        )
    res.n_files, res.n_dicom, res.n_problems = sc.n_files, sc.n_dicom, len(sc.errors)
    res.n_read, res.seconds = sc.n_read, sc.seconds
    res.reused_folders = sc.reused == "folders"
    if not sc.series:
        tsvs = find_dicominfo(src) if src.is_dir() else []
        if tsvs:
            series = import_dicominfo(src)
            people = people_from_series(series)
            series = pseudonymize(series, people, out, _import_labels(series, labels))
            ws.write_series(series)
            res.n_series, res.imported = len(series), str(src)
            res.message = (
                f"analyze: no DICOM; imported {len(series)} series from {len(tsvs)} "
                "dicominfo file(s)"
            )
            return res
        ws.commit()  # the problem list the message points to
        raise UserError(
            f"no DICOM image files found in {src} ({sc.n_files} files looked at, "
            f"{len(sc.errors)} problems listed in {out / 'analyze_errors.tsv'})"
        )
    sc.series = pseudonymize(sc.series, sc.people, out, labels)
    ws.write_series(sc.series)
    ws.write_analyze_input([src])
    res.n_series = len(sc.series)
    res.n_subjects = len({s.subject for s in sc.series})
    res.message = (
        f"analyze: {sc.n_files} files, {sc.n_dicom} DICOM, {res.n_series} series, "
        f"{res.n_subjects} subject(s); {res.n_problems} problem(s) listed in analyze_errors.tsv; "
        f"read {sc.n_read} header(s) in {sc.seconds:.3f} s"
        f"{' (no folder changed since the last scan)' if res.reused_folders else ''}"
        f" -> {ws.path(SERIES_TSV)}"
    )
    return res


def _import_labels(series: list, labels: str) -> str:
    """heudiconv's folders (``.heudiconv/<subject>``) already name the subjects: kept."""
    return "pattern" if series and all(s.subject for s in series) else labels


def _slurm(p: AnalyzeParams, src: Path, out: Path, ws: Workspace) -> AnalyzeResult:
    import os
    import sys

    from engine.scan import slurm

    extra = []
    if p.subject_pattern:
        extra += ["--subject-pattern", p.subject_pattern]
    if p.session_pattern:
        extra += ["--session-pattern", p.session_pattern]
    script = slurm.write_job(
        os.fspath(src), os.fspath(out), files_per_task=p.files_per_task, extra_args=extra
    )
    if not p.submit:
        return AnalyzeResult(
            out_dir=str(out),
            slurm_script=str(script),
            message=f"analyze: wrote {script}; submit with `sbatch {script}`; when it has "
            f"finished, run `{sys.executable} -m engine.scan.slurm merge {out} {src}` and then "
            f"`llm-heuristics analyze {src} {out}` (it reads the merged headers, no re-scan)",
        )
    job = slurm.submit_and_wait(script)
    slurm.check_parts(os.fspath(out))
    n = slurm.merge_parts(os.fspath(out), os.fspath(src))
    context.log(f"analyze: Slurm job {job} finished, merged {n} part(s)")
    from dataclasses import replace

    return _analyze(replace(p, slurm=False, submit=False), src, out, ws)
