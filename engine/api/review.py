"""The person's review through the API: decisions, undo/redo, the workspace view, previews.

Every decision is journalled (fsynced) first; then OUT's effective-mapping files are rewritten
so that a person or another tool reading ``aggregated_dicominfo_mapped.tsv`` sees it too.
Nothing reads those files back: consumers call :func:`engine.mapping.effective.effective`.
"""

from __future__ import annotations

import base64
import logging

from engine import review as journal
from engine.api import view_cache
from engine.api.types import (
    DecideItem,
    DecideManyParams,
    DecideParams,
    GroupView,
    MapParams,
    MapResult,
    Preview,
    ReviewView,
    SeriesRow,
    TextFile,
    WorkspaceView,
)
from engine.bids_schema import BidsName
from engine.errors import InvalidParams, NotFound, UserError
from engine.model import (
    UNSURE_THRESHOLD,
    Decision,
    Group,
    Mapping,
    SeriesInfo,
    apply_decision,
)
from engine.workspace import HEURISTIC_FILE, REPORTS, Workspace

log = logging.getLogger(__name__)


def review_view(
    out_dir: str,
    changed: Decision | None = None,
    changed_count: int | None = None,
    patch: list[Decision] | None = None,
) -> ReviewView:
    """The journal replayed; ``patch``: the decisions a call just made/took back, whose groups'
    views come along (:func:`view_cache.group_views`) so that a client patches its rows."""
    ws = Workspace(out_dir).require()
    st = journal.load_state(ws.root)
    decisions = st.effective()
    groups: list[GroupView] = []
    if patch:
        groups = view_cache.group_views(ws, decisions, {d.group_id for d in patch}, _threshold())
        _add_opinions(ws, groups)
    return ReviewView(
        decisions=dict(sorted(decisions.items())),
        history=st.history[: st.pos],
        redo=st.history[st.pos :],
        can_undo=st.can_undo,
        can_redo=st.can_redo,
        last_seq=st.last_seq,
        changed=changed,
        changed_count=(1 if changed is not None else 0) if changed_count is None else changed_count,
        warnings=list(getattr(st, "warnings", [])),
        groups=groups,
    )


def _threshold() -> float:
    from engine.config import load_settings

    try:
        return float(load_settings().confidence_threshold)
    except Exception:  # noqa: BLE001 - a broken config must not keep the workspace closed
        return UNSURE_THRESHOLD


def _add_opinions(ws: Workspace, views: list[GroupView]) -> None:
    """The image classifier's second opinion, where one was made."""
    from engine.classify.workspace import read_opinions

    opinions = read_opinions(ws.root)
    for gv in views:
        op = opinions.get(gv.group_id)
        if op is not None:
            gv.image_says = str(getattr(op, "image_says", "") or "")
            gv.image_probs = {str(k): float(v) for k, v in (getattr(op, "probs", {}) or {}).items()}


def refresh(ws: Workspace) -> None:
    """Rewrite the effective-mapping files after a decision (skipped before ``map`` ran)."""
    from engine.mapping.effective import effective

    if not (ws.has_series() and ws.has_groups() and ws.has_proposals()):
        return
    eff = effective(ws)
    ws.write_effective(eff.groups, eff.mappings, eff.assignments, eff.series, eff.report)


def _fields(ws: Workspace, groups: set[str], item: DecideItem) -> dict[str, object]:
    """``journal.decide``'s arguments for one decision about a group that exists (an accept
    without a name takes the name shown now)."""
    if item.group_id not in groups:
        raise NotFound(
            f"no group {item.group_id!r} in {ws.root} (see aggregated_dicominfo_groups.tsv)"
        )
    datatype = suffix = ""
    entities: dict[str, str] = {}
    if item.name:
        name = BidsName.parse(item.name)
        datatype, suffix, entities = name.datatype, name.suffix, name.entity_dict
    elif item.action == "accept" and ws.has_proposals():  # accept the name shown now
        m = next((x for x in view_cache.proposals(ws) if x.group_id == item.group_id), None)
        before = journal.current_decisions(ws.root).get(item.group_id)
        if m is not None and before is not None:
            m = apply_decision(m, before)
        if m is not None and m.name is not None:
            datatype, suffix, entities = m.datatype, m.suffix, dict(m.entities)
    return {
        "group_id": item.group_id,
        "action": item.action,
        "datatype": datatype,
        "suffix": suffix,
        "entities": entities,
        "skip_reason": item.skip_reason,
        "note": item.note,
    }


def decide(p: DecideParams) -> ReviewView:
    """Record one decision (accept / edit NAME / skip / unskip) about a group that exists."""
    ws = Workspace(p.out_dir).require()
    groups = {g.group_id for g in view_cache.groups(ws)}
    item = DecideItem(p.group_id, p.action, p.name, p.skip_reason, p.note)
    f = _fields(ws, groups, item)
    d = journal.decide(ws.root, str(f.pop("group_id")), str(f.pop("action")), **f)  # type: ignore[arg-type]
    if p.refresh:
        refresh(ws)
    return review_view(p.out_dir, d, patch=[d])


def decide_many(p: DecideManyParams) -> ReviewView:
    """Record many decisions (a bulk review: accept or skip the selected groups) as ONE
    journal entry: one undo takes all of them back. Nothing is recorded when one is invalid."""
    ws = Workspace(p.out_dir).require()
    groups = {g.group_id for g in view_cache.groups(ws)}
    items = [_fields(ws, groups, it) for it in p.decisions]
    ds = journal.decide_many(ws.root, items)
    if p.refresh:
        refresh(ws)
    return review_view(p.out_dir, ds[-1], len(ds), patch=ds)


def undo(out_dir: str, refresh_files: bool = True) -> ReviewView:
    """Take back the last decision, or the last bulk review whole (``refresh_files=False``:
    leave the effective-mapping files to the next map/generate, as the TUI does: rewriting
    them costs seconds on 10k series)."""
    ws = Workspace(out_dir).require()
    ds = journal.undo_step(ws.root)
    if refresh_files:
        refresh(ws)
    return review_view(out_dir, ds[-1] if ds else None, len(ds), patch=ds)


def redo(out_dir: str, refresh_files: bool = True) -> ReviewView:
    ws = Workspace(out_dir).require()
    ds = journal.redo_step(ws.root)
    if refresh_files:
        refresh(ws)
    return review_view(out_dir, ds[-1] if ds else None, len(ds), patch=ds)


def check_name(name: str) -> list[str]:
    """Why the schema refuses ``name`` (``func/task-rest_bold``) as a group's name."""
    try:
        return BidsName.parse(name).problems()
    except UserError as exc:
        return [str(exc)]


def name_candidates(text: str) -> list[str]:
    """Completions of a partly typed BIDS name, from the schema (the edit dialog's list)."""
    from engine.bids_schema import name_candidates as candidates

    return candidates(text)[:200]


def remap(
    out_dir: str, group_ids: list[str], backend: str | None = None, model: str | None = None
) -> MapResult:
    """Ask the LLM again about these groups only; the person's decisions still win."""
    from engine.api.steps import map_
    from engine.config import load_settings

    gids = [g for g in (str(x).strip() for x in group_ids or []) if g]
    if not gids:
        raise InvalidParams("remap: no group given")
    if not backend or backend == "rules":
        backend = load_settings().backend
    return map_(MapParams(out_dir=out_dir, backend=backend, model=model, groups=gids))


def _series_rows(groups: list[Group], series: list[SeriesInfo]) -> list[SeriesRow]:
    from engine.mapping.effective import series_flags

    flags = series_flags(groups, series)
    gid_of = {k: g.group_id for g in groups for k in g.series_keys}
    drift = {g.group_id for g in groups if any(f.startswith("drift") for f in g.flags)}
    rows = []
    for s in series:
        f = ["aborted" for x in flags.get(s.key, []) if x.startswith("aborted")][:1]
        if gid_of.get(s.key) in drift:
            f.append("drift")
        if s.is_derived:
            f.append("derived")
        rows.append(
            SeriesRow(
                key=s.key,
                subject=s.subject or s.patient_id,
                session=s.session,
                series_id=s.series_id,
                description=s.series_description,
                protocol=s.protocol_name,
                n_files=s.series_files,
                dim3=s.dim3,
                dim4=s.dim4,
                group_id=gid_of.get(s.key, ""),
                flags=f,
            )
        )
    return rows


def workspace_view(out_dir: str) -> WorkspaceView:
    """Everything the review workstation shows, with the person's decisions applied.

    The tables are parsed once per file version, and the mappings kept per version of them
    and of the journal (:mod:`engine.api.view_cache`): a reload with nothing changed costs the
    replay of the journal and the copy of the rows, one after a decision the mappings alone
    (not the run numbering and report of ``effective``, which the view does not show)."""
    from engine.grouping import fill_subjects, group_series

    ws = Workspace(out_dir).require()
    view = WorkspaceView(out_dir=str(ws.root))
    view.unsure_threshold = _threshold()
    if not ws.has_series():
        view.missing.append(f"no series table: run `llm-heuristics analyze DICOM_DIR {ws.root}`")
        return view
    if not ws.has_groups():
        view.missing.append(f"not grouped yet: run `llm-heuristics group {ws.root}`")
    if not ws.has_proposals():
        view.missing.append(f"not mapped yet: run `llm-heuristics map {ws.root}`")
    root = str(ws.root.resolve())
    version = view_cache.inputs_version(ws)

    def tables():  # noqa: ANN202 - (series, groups, the tree's rows)
        series = view_cache.series(ws)
        fill_subjects(series)
        groups = view_cache.groups(ws) if ws.has_groups() else group_series(series).groups
        return series, groups, _series_rows(groups, series)

    series, groups, rows = view_cache.cached((root, "tables"), version[:2], tables)

    def mapped():  # noqa: ANN202 - (decisions, proposals, mappings by group)
        props = view_cache.proposals(ws) if ws.has_proposals() else []
        decisions = journal.current_decisions(ws.root)
        return decisions, props, view_cache.mappings(series, groups, props, decisions)

    decisions, props, by_id = view_cache.cached((root, "view"), version, mapped)
    base = {m.group_id: m for m in props}
    view.series = list(rows)
    for g in groups:
        prop = base.get(g.group_id) or Mapping(g.group_id, skip_reason="not mapped")
        m, d = by_id[g.group_id], decisions.get(g.group_id)
        view.groups.append(
            GroupView(g, prop, m, d, d is None and m.confidence < view.unsure_threshold)
        )
    _add_opinions(ws, view.groups)
    view.review = review_view(out_dir)
    view.has_heuristic = ws.path(HEURISTIC_FILE).is_file()
    view.dicom_inputs = [str(p) for p in ws.analyze_inputs()]
    return view


def read_text(out_dir: str, name: str, max_lines: int = 0) -> TextFile:
    """A report (``grouping``, ``mapping``, ``heuristic``, ``conversion``) or a file in OUT;
    ``max_lines`` > 0: its first lines and where the rest is (a 10k-series report is 1 MB,
    which a viewer pane neither needs nor can lay out quickly)."""
    ws = Workspace(out_dir).require()
    path = ws.inside(REPORTS.get(name, name))
    text = ws.read_text(name)
    if max_lines > 0:
        lines = text.split("\n", max_lines)
        if len(lines) > max_lines:
            more = lines[-1].count("\n") + 1
            text = "\n".join([*lines[:-1], f"... {more} more lines in {path}"])
    return TextFile(name=name, path=str(path), text=text)


def save_heuristic(out_dir: str, text: str, name: str = HEURISTIC_FILE) -> TextFile:
    """Hand edits of the heuristic, written atomically (a ``.py`` file directly in OUT only)."""
    ws = Workspace(out_dir).require()
    target = ws.inside(name)
    if target.parent != ws.root.resolve() or target.suffix != ".py":
        raise InvalidParams(f"{name!r}: only a .py file directly inside {ws.root}")
    ws.write_text(name, text)
    return TextFile(name=name, path=str(target), text=text)


MAX_PREVIEW = 2048


def preview(
    out_dir: str,
    key: str,
    size: int = 256,
    low: float = 1.0,
    high: float = 99.0,
    dicom_dir: str | None = None,
) -> Preview:
    """A PNG of a series' middle slice; its files are found where ``analyze`` read them."""
    from engine.vision import preview as pv

    if not 8 <= size <= MAX_PREVIEW:
        raise InvalidParams(f"size must be 8..{MAX_PREVIEW} pixels, not {size}")
    ws = Workspace(out_dir).require()
    match = [s for s in view_cache.series(ws) if s.key == key]
    if not match:
        raise NotFound(f"no series {key!r} in {ws.root}")
    roots = [dicom_dir] if dicom_dir else [str(p) for p in ws.analyze_inputs()]
    last: Exception | None = None
    for root in roots or [None]:
        try:
            png, info = pv.series_preview(match[0], size=size, low=low, high=high, dicom_dir=root)
            break
        except FileNotFoundError as exc:
            last = exc
    else:
        raise NotFound(
            f"{last}; the files are looked for where `analyze` read them "
            "(OUT/analyze_input.json) or under --dicom-dir"
        )
    import io

    from PIL import Image

    im = Image.open(io.BytesIO(png))
    return Preview(
        png_base64=base64.b64encode(png).decode("ascii"),
        width=im.width,
        height=im.height,
        info={str(k): str(v) for k, v in info.items()},
    )
