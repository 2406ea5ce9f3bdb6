"""One encoding for TSV cells of the model's tables (lists and dicts as JSON, tuples as
heudiconv writes them), shared by every row type so any text round-trips."""

from __future__ import annotations

import ast
import json
from typing import Any


def cell_list(values: list[str]) -> str:
    """A list as one TSV cell: JSON, so ``;``, ``|``, tabs and newlines inside items survive."""
    return json.dumps(list(values), ensure_ascii=False)


def uncell_list(raw: Any, legacy_sep: str = ";") -> list[str]:
    """Inverse of :func:`cell_list`; a cell written before JSON cells is split on the one
    separator its old writer used for that column (never guessed)."""
    if isinstance(raw, list):
        return [str(x) for x in raw]
    raw = raw or ""
    if raw.startswith("["):
        try:
            val = json.loads(raw)
        except json.JSONDecodeError:
            val = None
        if isinstance(val, list):
            return [str(x) for x in val]
    return [p.strip() for p in raw.split(legacy_sep) if p.strip()]


def encode(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, tuple):
        return repr(value)
    if isinstance(value, list | dict):
        return json.dumps(value)
    if isinstance(value, float):
        return repr(value) if value != int(value) or abs(value) >= 1e15 else str(value)
    return str(value)


def decode(type_name: Any, raw: Any) -> Any:
    """Decode one TSV cell according to the dataclass field's annotation string."""
    t = str(type_name)
    if raw is None or (isinstance(raw, float) and raw != raw):  # NaN from pandas
        raw = ""
    if not isinstance(raw, str):
        raw_s = str(raw)
    else:
        raw_s = raw
    raw_s = raw_s.strip() if t != "str" else raw_s
    if t == "bool":
        return raw_s.strip().lower() in {"true", "1", "yes"}
    if t == "int":
        return int(float(raw_s)) if raw_s.strip() else 0
    if t == "int | None":
        return int(float(raw_s)) if raw_s else None
    if t == "float | None":
        return float(raw_s) if raw_s else None
    if t == "tuple[str, ...]":
        if not raw_s:
            return ()
        try:
            val = ast.literal_eval(raw_s)
        except (ValueError, SyntaxError):
            val = [p for p in raw_s.replace("\\", ",").split(",") if p]
        if isinstance(val, str):
            val = [val]
        return tuple(str(v).strip() for v in val)
    if t.startswith("list["):
        if not raw_s:
            return []
        try:
            val = json.loads(raw_s)
        except json.JSONDecodeError:
            val = ast.literal_eval(raw_s)
        return list(val)
    return raw_s
