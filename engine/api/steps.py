"""The pipeline steps as typed functions: analyze, group, map, generate, validate, convert.

Each takes its parameters dataclass and returns its result dataclass; none prints, parses
text, changes the working directory or reads ``sys.argv``. Progress, streamed model text and
cancellation go through :mod:`engine.context`, which is a no-op outside an engine request.
"""

from __future__ import annotations

import re
from pathlib import Path

from engine import context
from engine.api.types import (
    AnalyzeParams,
    AnalyzeResult,
    ConvertParams,
    ConvertResult,
    GenerateParams,
    GenerateResult,
    GroupResult,
    MapParams,
    MapResult,
    ValidateResult,
)
from engine.errors import NotAvailable, NotFound, StepFailed, UserError
from engine.workspace import (
    GROUPING_REPORT,
    HEURISTIC_FILE,
    HEURISTIC_REPORT,
    MAPPING_REPORT,
    SERIES_TSV,
    Workspace,
)


def _check_patterns(p: AnalyzeParams) -> None:
    for name in ("subject_pattern", "session_pattern"):
        pat = getattr(p, name)
        if pat:
            try:
                re.compile(pat)
            except re.error as exc:
                raise UserError(f"--{name.replace('_', '-')}: invalid regex: {exc}") from None


def analyze(p: AnalyzeParams) -> AnalyzeResult:
    """Scan a DICOM tree (or import heudiconv dicominfo) into ``aggregated_dicominfo.tsv``."""
    from engine.scan.heudiconv_import import find_dicominfo, import_dicominfo, is_heudiconv_input

    src, out = Path(p.input), Path(p.out_dir)
    if not src.exists():
        raise UserError(f"{src} does not exist")
    if p.n_cpus is not None and p.n_cpus < 1:
        raise UserError("--n-cpus must be at least 1")
    if p.submit and not p.slurm:
        raise UserError("--submit needs --slurm")
    _check_patterns(p)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    ws = Workspace(out)
    res = AnalyzeResult(out_dir=str(out))
    if is_heudiconv_input(src):
        series = import_dicominfo(src)
        if not series:
            raise UserError(f"no dicominfo*.tsv rows found under {src}")
        ws.write_series(series)
        ws.write_analyze_errors([])
        res.n_series, res.imported = len(series), str(src)
        res.message = (
            f"analyze: imported {len(series)} series from heudiconv dicominfo under {src} "
            f"-> {ws.path(SERIES_TSV)}"
        )
        return res
    if p.slurm:
        return _slurm(p, src, out)
    from engine.scan.pipeline import scan

    sc = scan(
        src,
        out,
        n_cpus=p.n_cpus,
        subject_pattern=p.subject_pattern,
        session_pattern=p.session_pattern,
        progress=p.progress,
        trust_folder_times=p.trust_folder_times,
    )
    ws.write_analyze_errors(list(sc.errors))
    res.n_files, res.n_dicom, res.n_problems = sc.n_files, sc.n_dicom, len(sc.errors)
    res.n_read, res.seconds = sc.n_read, sc.seconds
    res.reused_folders = sc.reused == "folders"
    if not sc.series:
        tsvs = find_dicominfo(src) if src.is_dir() else []
        if tsvs:
            series = import_dicominfo(src)
            ws.write_series(series)
            res.n_series, res.imported = len(series), str(src)
            res.message = (
                f"analyze: no DICOM; imported {len(series)} series from {len(tsvs)} "
                "dicominfo file(s)"
            )
            return res
        raise UserError(
            f"no DICOM image files found in {src} ({sc.n_files} files looked at, "
            f"{len(sc.errors)} problems listed in {out / 'analyze_errors.tsv'})"
        )
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


def _slurm(p: AnalyzeParams, src: Path, out: Path) -> AnalyzeResult:
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
    n = slurm.merge_parts(os.fspath(out))
    context.log(f"analyze: Slurm job {job} finished, merged {n} part(s)")
    from dataclasses import replace

    return analyze(replace(p, slurm=False, submit=False))


def group(out_dir: str) -> GroupResult:
    """Group the series by acquisition protocol; the grouping is stored once, with flags."""
    from engine.grouping import group_series

    ws = Workspace(out_dir).require()
    series = ws.read_series()
    res = group_series(series)
    ws.write_groups(res.groups, res.report)
    return GroupResult(
        out_dir=str(ws.root),
        n_series=len(series),
        n_groups=len(res.groups),
        report=str(ws.path(GROUPING_REPORT)),
        message=f"{len(series)} series -> {len(res.groups)} groups; see {ws.path(GROUPING_REPORT)}",
    )


def map_(p: MapParams) -> MapResult:
    """Propose a BIDS name for every group (rules; the LLM where they are unsure), store the
    proposal, and write the effective mapping (with the person's decisions) for people."""
    from engine import review
    from engine.grouping import group_series
    from engine.mapping import BACKENDS, map_groups
    from engine.mapping.effective import effective

    ws = Workspace(p.out_dir).require()
    series = ws.read_series()
    if ws.has_groups():
        from engine.grouping import GroupingResult, fill_subjects

        fill_subjects(series)
        groups = ws.read_groups()
        grouping = GroupingResult(
            groups,
            {k: g.group_id for g in groups for k in g.series_keys},
            {},
            {k: v for g in groups for k, v in g.series_flags.items()},
        )
        if not any(g.series_flags for g in groups) and any("aborted" in g.flags for g in groups):
            grouping = group_series(series)  # a groups table from before series flags
            ws.write_groups(grouping.groups, grouping.report)
    else:
        grouping = group_series(series)
        ws.write_groups(grouping.groups, grouping.report)
    only = [g.strip() for g in p.groups or [] if g.strip()] or None
    backend = p.backend
    if backend != "rules":
        _register_llm(p, ws, bool(only))
    if backend not in BACKENDS:
        raise NotAvailable(f"backend {p.backend!r} is not available in this installation")
    current = None
    if only:
        known = {g.group_id for g in grouping.groups}
        unknown = [g for g in only if g not in known]
        if unknown:
            raise NotFound(
                f"unknown group(s): {', '.join(unknown)} (see {ws.path('aggregated_dicominfo_groups.tsv')})"
            )
        if ws.has_proposals():
            current = {m.group_id: m for m in ws.read_proposals()}
    decided = review.current_decisions(ws.root)
    res = map_groups(
        series,
        backend=backend,
        grouping=grouping,
        decided=set(decided),
        only=only,
        current=current,
    )
    ws.write_proposals(res.proposed)
    eff = effective(ws)
    ws.write_effective(eff.groups, eff.mappings, eff.assignments, eff.series, eff.report)
    n = sum(1 for a in eff.assignments if a.bids_path)
    mine = [g.group_id for g in eff.groups if g.group_id in decided]
    extra = f"; {len(mine)} decided by you" if mine else ""
    return MapResult(
        out_dir=str(ws.root),
        backend=p.backend,
        n_groups=len(eff.groups),
        n_series=len(eff.assignments),
        n_converted=n,
        decided=mine,
        remapped=list(only or []),
        report=str(ws.path(MAPPING_REPORT)),
        message=f"{len(eff.groups)} groups mapped{extra}; {n} of {len(eff.assignments)} series "
        f"converted; see {ws.path(MAPPING_REPORT)}",
    )


def _register_llm(p: MapParams, ws: Workspace, only: bool) -> None:
    from engine.config import load_settings
    from engine.llm import register_mapping_backend

    cli = {**p.settings, "backend": p.backend, "model": p.model, "quantization": p.quantization}
    if p.context is not None:
        cli["context"] = p.context
    if p.llm_all:
        cli["llm_all"] = True
    settings = load_settings({k: v for k, v in cli.items() if v is not None})
    if only:  # asked for by name: ask the model afresh, however sure the rules are
        settings.llm_all, settings.cache = True, False
    register_mapping_backend(
        p.backend,
        settings,
        ws.root,
        on_delta=lambda gid, phase, text: context.delta(text, group_id=gid, phase=phase),
        cancel=context.cancel_event(),
    )


def _policy_inputs(ws: Workspace):  # noqa: ANN202 - a tuple of the effective tables
    from engine.mapping.effective import effective
    from engine.mapping.policy import load_policy

    eff = effective(ws, policy=load_policy(ws.root))
    return eff, (eff.series, eff.groups, eff.mappings, eff.assignments)


def generate(p: GenerateParams) -> GenerateResult:
    """Compile the effective mapping into ``heuristic.py`` and check it against the series."""
    from engine.atomic import write_text_atomic
    from engine.heuristic.compiler import compile_heuristic
    from engine.heuristic.report import generation_report
    from engine.heuristic.validate import load_heuristic, validate_module
    from engine.mapping.policy import CONTEXT_FILE, Policy, save_policy

    ws = Workspace(p.out_dir).require()
    policy = Policy(
        include_derived=p.include_derived,
        exclude_sbref=p.exclude_sbref,
        exclude_phase=p.exclude_phase,
        exclude_datatypes=list(p.exclude_datatypes),
    )
    save_policy(ws.root, policy)
    if p.context:
        ws.write_text(CONTEXT_FILE, p.context.strip() + "\n")
    ctx_text = p.context
    if not ctx_text and ws.path(CONTEXT_FILE).exists():
        ctx_text = ws.path(CONTEXT_FILE).read_text(encoding="utf-8")
    eff, inputs = _policy_inputs(ws)
    descs = sorted({s.study_description for s in eff.series if s.study_description})
    compiled = compile_heuristic(*inputs, context=ctx_text, title=descs[0] if descs else "")
    target = Path(p.output) if p.output else ws.path(HEURISTIC_FILE)
    write_text_atomic(target, compiled.source)
    report = generation_report(compiled)
    result = validate_module(load_heuristic(target), *inputs)
    report += result.format_diff() + "\n"
    ws.write_text(HEURISTIC_REPORT, report)
    return GenerateResult(
        path=str(target), ok=result.ok, report=report, validation=_validation(result, target)
    )


def _validation(result, path: Path) -> ValidateResult:  # noqa: ANN001
    return ValidateResult(
        ok=result.ok,
        counts=result.counts(),
        diff=result.format_diff(),
        errors=list(result.errors),
        heuristic=str(path),
    )


def validate(out_dir: str, heuristic: str | None = None) -> ValidateResult:
    """Run the heuristic's infotodict over every series and diff it against the mapping."""
    from engine.heuristic.validate import ValidationResult, load_heuristic, validate_module

    ws = Workspace(out_dir).require()
    _, inputs = _policy_inputs(ws)
    path = Path(heuristic) if heuristic else ws.path(HEURISTIC_FILE)
    if not path.is_file():
        raise NotFound(f"{path} not found: run `llm-heuristics generate {ws.root}` first")
    try:
        mod = load_heuristic(path)
    except Exception as exc:  # noqa: BLE001 - any import failure is the heuristic's problem
        return _validation(ValidationResult(errors=[f"cannot import {path}: {exc!r}"]), path)
    return _validation(validate_module(mod, *inputs), path)


def convert(p: ConvertParams) -> ConvertResult:
    """Convert one subject (all sessions or one) with heudiconv + dcm2niix, then validate."""
    from engine.heuristic.convert import convert as run_convert

    ws = Workspace(p.out_dir).require()
    _, inputs = _policy_inputs(ws)
    results, verdict, text = run_convert(
        ws.root,
        inputs,
        p.subject,
        p.session,
        bids_dir=p.bids_dir,
        heuristic=p.heuristic,
        dicom_dir=p.dicom_dir,
        dry_run=p.dry_run,
        validator=p.validator,
        sidecar_metadata=p.sidecar_metadata,
        log=context.log,
    )
    failed = [
        f"sub-{r.subject}" + (f"/ses-{r.session}" if r.session else "") for r in results if not r.ok
    ]
    ok = p.dry_run or (not failed and not (verdict is not None and verdict.errors))
    return ConvertResult(
        ok=ok,
        report=text,
        bids_dir=str(results[0].bids_dir) if results else str(p.bids_dir or ws.path("bids")),
        dry_run=p.dry_run,
        written=sum(len(r.written) for r in results),
        missing=[m for r in results for m in r.missing],
        failed=failed,
        verdict=verdict.verdict if verdict is not None else "",
    )


def require_ok(res: GenerateResult | ValidateResult | ConvertResult, what: str) -> None:
    """Raise :class:`StepFailed` for a result whose check did not pass (for RPC callers that
    want an error rather than ``ok: false``)."""
    if not res.ok:
        raise StepFailed(f"{what} failed", data=None)
