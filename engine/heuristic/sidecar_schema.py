"""The BIDS schema's sidecar rules for one file: which fields are REQUIRED, and value checks.

The schema states its sidecar rules as selector expressions over the file (``datatype``,
``suffix``, ``entities``, ``sidecar``); they are evaluated here with a tiny sandbox rather than a
hand-written table so a new bidsschematools release brings its rules with it.
"""

from __future__ import annotations

import json
import re
import warnings
from functools import lru_cache
from typing import Any


class _Obj:
    """A schema-expression object: ``a.b`` is ``None`` when absent, ``"b" in a`` works."""

    def __init__(self, d: dict[str, Any]) -> None:
        self._d = d

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self._d.get(name)

    def __contains__(self, name: str) -> bool:
        return name in self._d


class _Unknown:
    """Facts we do not have (``dataset.*``): any use makes the selector unknown."""

    def __getattr__(self, name: str) -> Any:
        raise LookupError(name)


def _intersects(a: Any, b: Any) -> bool:
    a = a if isinstance(a, list) else [a]
    b = b if isinstance(b, list) else [b]
    return any(x in b for x in a if x is not None)


def _type(x: Any) -> str:
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "boolean"
    if isinstance(x, int | float):
        return "number"
    if isinstance(x, str):
        return "string"
    if isinstance(x, list):
        return "array"
    return "object"


_FUNCS = {
    "intersects": _intersects,
    "match": lambda s, p: s is not None and re.search(p, str(s)) is not None,
    "type": _type,
    "length": lambda x: len(x) if x is not None else None,
    "exists": lambda *a: 0,
}


@lru_cache(maxsize=512)
def _compile(expr: str):
    py = re.sub(r"!(?!=)", " not ", expr).strip().replace("&&", " and ").replace("||", " or ")
    with warnings.catch_warnings():  # schema regexes ("\\.nii") are not Python escapes
        warnings.simplefilter("ignore", (DeprecationWarning, SyntaxWarning))
        return compile(py, "<schema selector>", "eval")


def selector_true(expr: str, ctx: dict[str, Any]) -> bool | None:
    """Evaluate one schema selector; ``None`` when it needs a fact we do not have."""
    ns = dict(_FUNCS, true=True, false=False, null=None, **ctx)
    try:
        return bool(eval(_compile(expr), {"__builtins__": {}}, ns))  # noqa: S307 (schema text)
    except (LookupError, SyntaxError, TypeError, NameError, re.error):
        return None


def _context(datatype: str, suffix: str, entities: dict[str, str], sidecar: dict, ext: str):
    return {
        "datatype": datatype,
        "suffix": suffix,
        "extension": ext,
        "modality": "mri",
        "entities": _Obj(entities),
        "sidecar": _Obj(sidecar),
        "dataset": _Unknown(),
    }


def required_fields(
    datatype: str,
    suffix: str,
    entities: dict[str, str],
    sidecar: dict[str, Any],
    ext: str = ".nii.gz",
) -> dict[str, str]:
    """REQUIRED sidecar field -> the schema rule that requires it, for this file as it is now."""
    raw = _bst_schema()
    ctx = _context(datatype, suffix, entities, sidecar, ext)
    out: dict[str, str] = {}
    for group, rules in raw["rules"]["sidecars"].items():
        for name, rule in rules.items():
            sels = list(rule.get("selectors", []))
            if not sels or not all(selector_true(s, ctx) for s in sels):
                continue
            for fname, level in rule.get("fields", {}).items():
                lvl = level if isinstance(level, str) else level.get("level")
                if lvl == "required":
                    out.setdefault(fname, f"{group}.{name}")
    return out


@lru_cache(maxsize=1)
def _bst_schema() -> Any:
    from bidsschematools import schema as bst

    return bst.load_schema()


def metadata_definition(name: str) -> dict[str, Any]:
    try:
        return dict(_bst_schema()["objects"]["metadata"][name])
    except KeyError:
        return {}


def check_value(name: str, value: Any) -> str:
    """'' when ``value`` fits the schema's definition of ``name``, else why not."""
    d = metadata_definition(name)
    if not d:
        return ""
    if "enum" in d and value not in d["enum"]:
        return f"{name} must be one of {', '.join(map(json.dumps, d['enum']))}, not {value!r}"
    kinds = [d.get("type")] if d.get("type") else [a.get("type") for a in d.get("anyOf", [])]
    kinds = [k for k in kinds if k]
    if (
        kinds
        and _type(value) not in kinds
        and not (_type(value) == "number" and "integer" in kinds)
    ):
        return f"{name} must be {' or '.join(kinds)}, not {value!r}"
    return ""


def placeholder(name: str) -> str:
    """What to write for ``name`` in the fix, from the schema definition."""
    d = metadata_definition(name)
    if "enum" in d:
        return '"' + "|".join(map(str, d["enum"])) + '"'
    kinds = [d.get("type")] if d.get("type") else [a.get("type") for a in d.get("anyOf", [])]
    if "boolean" in kinds:
        return "true|false"
    if "number" in kinds:
        return "<number>"
    return "<value>"
