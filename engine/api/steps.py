"""The pipeline steps as typed functions: analyze, group, map, generate, validate, convert.

``analyze`` lives in :mod:`engine.api.analyze` and is re-exported here.

Each takes its parameters dataclass and returns its result dataclass; none prints, parses
text, changes the working directory or reads ``sys.argv``. Progress, streamed model text and
cancellation go through :mod:`engine.context`, which is a no-op outside an engine request.

Every step that writes OUT runs inside :meth:`Workspace.step`: OUT is locked (a second writer
fails at once, naming the first), the step's output files are committed together or not at
all, and a full disk or a read-only OUT is one clean line. Each result's ``warnings`` carries
what a person must hear (journal lines set aside, links not followed...).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from engine import context
from engine.api.analyze import analyze
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
from engine.errors import NotAvailable, NotFound, StepFailed
from engine.text import printable_text
from engine.workspace import (
    GROUPING_REPORT,
    HEURISTIC_FILE,
    HEURISTIC_REPORT,
    MAPPING_REPORT,
    Workspace,
)

__all__ = [
    "AnalyzeParams",
    "AnalyzeResult",
    "ConvertParams",
    "ConvertResult",
    "GenerateParams",
    "GenerateResult",
    "GroupResult",
    "MapParams",
    "MapResult",
    "ValidateResult",
    "analyze",
    "convert",
    "generate",
    "group",
    "map_",
    "require_ok",
    "validate",
]


def _journal_warnings(out: Path | str) -> list[str]:
    from engine import review

    return review.journal_warnings(out)


def group(out_dir: str) -> GroupResult:
    """Group the series by acquisition protocol; the grouping is stored once, with flags."""
    from engine.grouping import group_series

    ws = Workspace(out_dir).require()
    with ws.step("group"):
        series = ws.read_series()
        res = group_series(series)
        ws.write_groups(res.groups, res.report)
    return GroupResult(
        out_dir=str(ws.root),
        n_series=len(series),
        n_groups=len(res.groups),
        report=str(ws.path(GROUPING_REPORT)),
        message=f"{len(series)} series -> {len(res.groups)} groups; see {ws.path(GROUPING_REPORT)}",
        warnings=_journal_warnings(ws.root),
    )


def map_(p: MapParams) -> MapResult:
    """Propose a BIDS name for every group (rules; the LLM where they are unsure), store the
    proposal, and write the effective mapping (with the person's decisions) for people."""
    ws = Workspace(p.out_dir).require()
    with ws.step("map"):
        return _map(p, ws)


def _map(p: MapParams, ws: Workspace) -> MapResult:
    from engine import review
    from engine.grouping import group_series
    from engine.mapping import BACKENDS, map_groups
    from engine.mapping.effective import effective

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
    p = _resolve_backend(p)
    backend = p.backend or "rules"
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
    state = review.load_state(ws.root)
    decided = state.effective()
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
        warnings=list(state.warnings),
    )


def _resolve_backend(p: MapParams) -> MapParams:
    """No ``--backend``: the LLM when a model is given (``--model``, ``LLM_MODEL_NAME`` or the
    config file: the original workflow's ``map OUT --model M``), else the rules."""
    if p.backend:
        return p
    from dataclasses import replace

    from engine.config import load_settings

    s = load_settings({"model": p.model} if p.model else None)
    return replace(p, backend=s.backend if s.model else "rules", model=p.model or s.model or None)


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

    ws = Workspace(p.out_dir).require()
    with ws.step("generate"):
        return _generate(p, ws)


def _generate(p: GenerateParams, ws: Workspace) -> GenerateResult:
    from engine.heuristic.compiler import compile_heuristic
    from engine.heuristic.report import generation_report
    from engine.heuristic.validate import load_heuristic, validate_module
    from engine.mapping.effective import effective
    from engine.mapping.policy import CONTEXT_FILE, POLICY_FILE, Policy

    policy = Policy(
        include_derived=p.include_derived,
        exclude_sbref=p.exclude_sbref,
        exclude_phase=p.exclude_phase,
        exclude_datatypes=list(p.exclude_datatypes),
    )
    # staged with the heuristic and its report: all of generate's outputs, or none
    ws.write_text(POLICY_FILE, json.dumps(asdict(policy), indent=2) + "\n")
    if p.context:
        ws.write_text(CONTEXT_FILE, p.context.strip() + "\n")
    ctx_text = p.context
    if not ctx_text and ws.path(CONTEXT_FILE).exists():
        ctx_text = ws.path(CONTEXT_FILE).read_text(encoding="utf-8")
    from engine.api.review import refresh

    refresh(ws)  # decisions made without rewriting the effective files (TUI) reach them now
    eff = effective(ws, policy=policy)
    inputs = (eff.series, eff.groups, eff.mappings, eff.assignments)
    descs = sorted({s.study_description for s in eff.series if s.study_description})
    compiled = compile_heuristic(*inputs, context=ctx_text, title=descs[0] if descs else "")
    target = Path(p.output) if p.output else ws.path(HEURISTIC_FILE)
    ws.write_file(target, compiled.source)  # with the report, or not at all
    report = generation_report(compiled)
    result = validate_module(load_heuristic(ws.source(target)), *inputs)
    report = printable_text(report + result.format_diff() + "\n")
    ws.write_text(HEURISTIC_REPORT, report)
    return GenerateResult(
        path=str(target),
        ok=result.ok,
        report=report,
        validation=_validation(result, target),
        warnings=_journal_warnings(ws.root),
    )


def _validation(result, path: Path) -> ValidateResult:  # noqa: ANN001
    return ValidateResult(
        ok=result.ok,
        counts=result.counts(),
        diff=printable_text(result.format_diff()),
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
        res = _validation(ValidationResult(errors=[f"cannot import {path}: {exc!r}"]), path)
    else:
        res = _validation(validate_module(mod, *inputs), path)
    res.warnings = _journal_warnings(ws.root)
    return res


def convert(p: ConvertParams) -> ConvertResult:
    """Convert one subject (all sessions or one) with heudiconv + dcm2niix, then validate."""
    from engine.heuristic.convert import convert as run_convert

    ws = Workspace(p.out_dir).require()
    with ws.step(f"convert {p.subject}"):
        return _convert(p, ws, run_convert)


def _convert(p: ConvertParams, ws: Workspace, run_convert) -> ConvertResult:  # noqa: ANN001
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
        keep_identifiers=p.keep_identifiers,
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
        warnings=_journal_warnings(ws.root),
        series_failed=[
            f"{_where(r)} {sid}: {f.cause}; fix: {f.fix}"
            for r in results
            for sid, f in r.failed.items()
        ],
        series_repaired=[
            f"{_where(r)} {sid}: {what}"
            for r in results
            for sid, whats in r.repaired.items()
            for what in whats
        ],
        series_skipped=[
            f"{_where(r)} {sid}: {why}" for r in results for sid, why in r.skipped.items()
        ],
        converted_series=sum(len(r.converted) for r in results),
    )


def _where(r) -> str:  # noqa: ANN001  (a ConversionResult)
    return f"sub-{r.subject}" + (f"/ses-{r.session}" if r.session else "")


def require_ok(res: GenerateResult | ValidateResult | ConvertResult, what: str) -> None:
    """Raise :class:`StepFailed` for a result whose check did not pass (for RPC callers that
    want an error rather than ``ok: false``)."""
    if not res.ok:
        raise StepFailed(f"{what} failed", data=None)
