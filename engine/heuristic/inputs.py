"""Read what the earlier steps wrote into OUT: series, groups, mappings, series assignments.

The mapper's own readers are used when present; otherwise the TSVs are parsed here with the
column names of the :mod:`engine.model` dataclasses (JSON for lists/dicts, ``;`` also accepted).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.atomic import read_tsv
from engine.errors import UserError
from engine.model import Group, Mapping, SeriesAssignment, SeriesInfo
from engine.workspace import GROUPS_TSV, MAPPED_TSV, read_series

ASSIGNMENTS_TSV = "series_assignments.tsv"


def _listish(raw: Any) -> list[str]:
    if isinstance(raw, list):
        return [str(x) for x in raw]
    raw = (raw or "").strip()
    if not raw:
        return []
    if raw.startswith("["):
        try:
            return [str(x) for x in json.loads(raw)]
        except json.JSONDecodeError:
            pass
    sep = ";" if ";" in raw else ("|" if "|" in raw else ",")
    return [p.strip() for p in raw.split(sep) if p.strip()]


def _dictish(raw: Any) -> dict[str, str]:
    if isinstance(raw, dict):
        return {str(k): str(v) for k, v in raw.items()}
    raw = (raw or "").strip()
    if not raw:
        return {}
    if raw.startswith("{"):
        return {str(k): str(v) for k, v in json.loads(raw).items()}
    out = {}
    for part in raw.replace(";", "_").split("_"):  # "task-rest_acq-x"
        k, sep, v = part.partition("-")
        if sep:
            out[k.strip()] = v.strip()
    return out


def mapping_from_row(r: dict[str, Any]) -> Mapping:
    try:
        conf = float(r.get("confidence") or 0.0)
    except ValueError:
        conf = 0.0
    return Mapping(
        group_id=r["group_id"],
        datatype=(r.get("datatype") or "").strip(),
        suffix=(r.get("suffix") or "").strip(),
        entities=_dictish(r.get("entities")),
        skip_reason=(r.get("skip_reason") or "").strip(),
        confidence=conf,
        evidence=_listish(r.get("evidence")),
        source=(r.get("source") or "rules").strip() or "rules",  # type: ignore[arg-type]
        intended_for=_listish(r.get("intended_for")),
        rationale=r.get("rationale") or "",
        **_optional_fields(r),
    )


def _optional_fields(r: dict[str, Any]) -> dict[str, Any]:
    """Fields later added to :class:`Mapping` (echoes, extra_suffixes), when the model has them."""
    names = Mapping.__dataclass_fields__
    out: dict[str, Any] = {}
    if "echoes" in names and "echoes" in r:
        try:
            out["echoes"] = int(float(r.get("echoes") or 0))
        except ValueError:
            pass
    if "extra_suffixes" in names and "extra_suffixes" in r:
        out["extra_suffixes"] = _listish(r.get("extra_suffixes"))
    return out


def read_mappings(path: str | Path) -> list[Mapping]:
    try:  # the mapper's reader, when it exists, knows its own format best
        from engine.mapping import io as _mio  # type: ignore[attr-defined]

        reader = getattr(_mio, "read_mappings", None)
        if reader is not None:
            return list(reader(path))
    except ImportError:
        pass
    return [mapping_from_row(r) for r in read_tsv(path)]


def read_groups(path: str | Path) -> list[Group]:
    try:
        from engine.grouping import read_groups as _rg

        return _rg(path)
    except ImportError:
        return [
            Group(
                group_id=r["group_id"],
                label=r.get("label", ""),
                series_keys=_listish(r.get("series_keys")),
                flags=_listish(r.get("flags")),
            )
            for r in read_tsv(path)
        ]


def read_assignments(path: str | Path) -> list[SeriesAssignment]:
    return [
        SeriesAssignment(
            subject=r.get("subject", ""),
            session=r.get("session", ""),
            series_id=r.get("series_id", ""),
            group_id=r.get("group_id", ""),
            bids_path=(r.get("bids_path") or "").strip(),
            skip_reason=(r.get("skip_reason") or r.get("skip") or "").strip(),
        )
        for r in read_tsv(path)
    ]


def load_inputs(
    out_dir: str | Path,
) -> tuple[list[SeriesInfo], list[Group], list[Mapping], list[SeriesAssignment] | None]:
    """Everything ``generate``/``validate``/``convert`` need; a :class:`UserError` names the step."""
    out = Path(out_dir)
    if not out.is_dir():
        raise UserError(f"{out} is not a folder")
    try:
        series = read_series(out)
    except FileNotFoundError as exc:
        raise UserError(str(exc)) from None
    if not (out / GROUPS_TSV).exists():
        raise UserError(f"{out / GROUPS_TSV} not found: run `llm-heuristics group {out}` first")
    if not (out / MAPPED_TSV).exists():
        raise UserError(f"{out / MAPPED_TSV} not found: run `llm-heuristics map {out}` first")
    groups = read_groups(out / GROUPS_TSV)
    mappings = read_mappings(out / MAPPED_TSV)
    assignments = (
        read_assignments(out / ASSIGNMENTS_TSV) if (out / ASSIGNMENTS_TSV).exists() else None
    )
    return series, groups, mappings, assignments
