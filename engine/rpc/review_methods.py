"""Engine methods for the person's review: ``decide``, ``undo``, ``redo``, ``decisions``.

The journal lives in OUT on the engine's side (the TUI may run elsewhere); every answer
carries the full review state so the client never has to replay the journal itself.
"""

from __future__ import annotations

from typing import Any

from engine import review
from engine.rpc.methods import method


def _state(out_dir: str, **extra: Any) -> dict[str, Any]:
    return {**review.load_state(out_dir).to_dict(), **extra}


@method("decide")
def m_decide(
    ctx: Any,
    out_dir: str,
    group_id: str,
    action: str,
    datatype: str = "",
    suffix: str = "",
    entities: dict[str, str] | None = None,
    skip_reason: str = "",
    note: str = "",
) -> dict[str, Any]:
    """Record a review decision (accept/edit/skip/unskip) for one group; fsynced when answered."""
    d = review.decide(
        out_dir,
        group_id,
        action,
        datatype=datatype,
        suffix=suffix,
        entities=entities,
        skip_reason=skip_reason,
        note=note,
    )
    return _state(out_dir, decision=d.to_dict())


@method("undo")
def m_undo(ctx: Any, out_dir: str) -> dict[str, Any]:
    """Take back the last review decision."""
    d = review.undo(out_dir)
    return _state(out_dir, changed=d.to_dict() if d else None)


@method("redo")
def m_redo(ctx: Any, out_dir: str) -> dict[str, Any]:
    """Re-apply the last undone review decision."""
    d = review.redo(out_dir)
    return _state(out_dir, changed=d.to_dict() if d else None)


@method("decisions")
def m_decisions(ctx: Any, out_dir: str) -> dict[str, Any]:
    """The review state: decisions in effect, history, what undo/redo would do."""
    return _state(out_dir)


@method("review.apply", interruptible=True)
def m_review_apply(ctx: Any, out_dir: str) -> dict[str, Any]:
    """Rewrite OUT's mapping tables with the review decisions applied (before generate)."""
    return review.write_reviewed_mapping(out_dir)


@method("review.remap", interruptible=True)
def m_review_remap(
    ctx: Any,
    out_dir: str,
    group_ids: list[str],
    backend: str | None = None,
    model: str | None = None,
    args: list[str] | None = None,
) -> dict[str, Any]:
    """Ask the LLM again about ``group_ids`` only (``map --groups``); every other group keeps its
    mapping and the person's decisions still win. The rationale streams as ``delta``
    notifications with ``group_id`` and ``phase``; the client's cancel stops the model."""
    from engine.errors import UserError
    from engine.rpc.methods import _step

    gids = [str(g) for g in group_ids or [] if str(g).strip()]
    if not gids:
        raise UserError("review.remap: no group given")
    if not backend or backend == "rules":
        from engine.config import load_settings

        backend = load_settings().backend
    argv = ["map", out_dir, "--groups", ",".join(gids), "--backend", backend]
    if model:
        argv += ["--model", model]
    res = _step(ctx, [*argv, *[str(a) for a in args or []]])
    return {**res, "group_ids": gids, "backend": backend}


@method("review.proposed")
def m_review_proposed(ctx: Any, out_dir: str) -> dict[str, Any]:
    """The rules/LLM mapping rows the decisions apply to (kept aside once decisions are applied)."""
    from engine.atomic import read_tsv
    from engine.errors import UserError

    path = review.proposal_path(out_dir)
    if not path.exists():
        raise UserError(f"{path} not found: run `llm-heuristics map {out_dir}` first")
    return {"mappings": read_tsv(path), "path": str(path)}


@method("review.check_name")
def m_check_name(
    ctx: Any, datatype: str, suffix: str, entities: dict[str, str] | None = None
) -> dict[str, Any]:
    """Why the BIDS schema refuses a group name (empty when valid)."""
    return {"problems": review.check_name(datatype, suffix, dict(entities or {}))}


@method("heuristic.save")
def m_heuristic_save(
    ctx: Any, out_dir: str, text: str, name: str = "heuristic.py"
) -> dict[str, Any]:
    """Write hand edits of the heuristic atomically into OUT (a file name inside OUT only)."""
    from pathlib import Path

    from engine.atomic import write_text_atomic
    from engine.errors import UserError

    out = Path(out_dir).expanduser().resolve()
    if not out.is_dir():
        raise UserError(f"{out} is not a folder")
    target = (out / name).resolve()
    if target.parent != out or target.suffix != ".py":
        raise UserError(f"{name!r}: only a .py file directly inside {out}")
    write_text_atomic(target, text)
    return {"path": str(target), "bytes": len(text.encode("utf-8"))}


INDEX_COLUMNS = (
    "subject",
    "session",
    "series_id",
    "series_description",
    "protocol_name",
    "series_files",
    "dim3",
    "dim4",
    "is_derived",
    "patient_id",
)


@method("review.index")
def m_review_index(ctx: Any, out_dir: str, columns: bool = False) -> dict[str, Any]:
    """The few series columns a tree needs, read straight from the TSV (fast on 10k series).

    ``columns=True``: ``{"columns": [name, ...], "values": [[column 0...], ...], "n": N}``, one
    array per column and no ``key`` (the client joins ``subject|session|series_id``): a third
    of the bytes, and no per-row objects to encode and decode. Otherwise ``{"series": [row]}``.
    """
    import csv
    import io
    from pathlib import Path

    from engine.errors import UserError
    from engine.workspace import SERIES_TSV

    path = Path(out_dir).expanduser() / SERIES_TSV
    if not path.is_file():
        raise UserError(f"{path} not found: run `llm-heuristics analyze DICOM_DIR {out_dir}` first")
    text = path.read_text(encoding="utf-8")
    if '"' in text:  # csv quoted a cell (a tab, newline or quote in it): the csv module's job
        parsed = [r for r in csv.reader(io.StringIO(text, newline=""), delimiter="\t") if r]
    else:  # nothing quoted: a plain split is exact and several times faster
        parsed = [ln.rstrip("\r").split("\t") for ln in text.split("\n") if ln.strip("\r")]
    header, table = (parsed[0], parsed[1:]) if parsed else ([], [])
    idx = [(c, header.index(c)) for c in INDEX_COLUMNS if c in header]
    width = len(header)
    table = [r if len(r) >= width else r + [""] * (width - len(r)) for r in table]
    if columns:
        return {
            "columns": [c for c, _ in idx],
            "values": [[r[i] for r in table] for _, i in idx],
            "n": len(table),
        }
    rows = [{c: r[i] for c, i in idx} for r in table]
    for r in rows:
        r["key"] = f"{r.get('subject', '')}|{r.get('session', '')}|{r.get('series_id', '')}"
    return {"series": rows}
