"""A radiologist's prior reports as (findings -> impression) pairs.

Two inputs: JSONL (one object a line: ``findings``, ``impression``, optional ``id``) or a
folder of report text files (``*.txt``; FINDINGS and IMPRESSION found by
:func:`engine.report.sections.split_sections`, so any header spelling it knows works). Bad
lines and files are named in the error, with what to fix; a report without both sections is
skipped and counted, not fatal (a folder of real reports always has a few).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import UserError
from engine.report.sections import split_sections


@dataclass(frozen=True)
class PriorPair:
    id: str
    findings: str
    impression: str
    sections: tuple[str, ...] = ()  # section headers of the source report, in order


@dataclass
class Priors:
    pairs: list[PriorPair] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "where: why"
    kind: str = ""  # "jsonl" | "folder"
    section_counts: Counter[str] = field(default_factory=Counter)


def _text(v: object) -> str:
    return v.strip() if isinstance(v, str) else ""


def read_jsonl(path: Path) -> Priors:
    out = Priors(kind="jsonl")
    try:
        raw = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    for n, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path} line {n}: not JSON ({exc.msg}); one object per line") from None
        if not isinstance(rec, dict):
            raise UserError(f"{path} line {n}: expected an object with findings and impression")
        findings, impression = _text(rec.get("findings")), _text(rec.get("impression"))
        rid = str(rec.get("id", n))
        if not findings or not impression:
            missing = "findings" if not findings else "impression"
            out.skipped.append(f"{path} line {n}: no {missing} text")
            continue
        secs = ("FINDINGS", "IMPRESSION")
        out.section_counts.update(secs)
        out.pairs.append(PriorPair(rid, findings, impression, secs))
    return out


def read_folder(path: Path) -> Priors:
    out = Priors(kind="folder")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in (".txt", ""))
    if not files:
        raise UserError(f"{path}: no report text files (*.txt) in this folder")
    for f in files:
        try:
            text = f.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            text = f.read_bytes().decode("latin-1")  # old exports; the sections still parse
        except OSError as exc:
            out.skipped.append(f"{f}: unreadable ({exc.strerror})")
            continue
        parts = split_sections(text)
        names = tuple(dict.fromkeys(n for n, _ in parts))
        out.section_counts.update(names)
        secs = {}
        for name, body in parts:
            secs.setdefault(name, body)
        findings, impression = secs.get("FINDINGS", ""), secs.get("IMPRESSION", "")
        if not findings or not impression:
            out.skipped.append(f"{f}: no {'FINDINGS' if not findings else 'IMPRESSION'} section")
            continue
        out.pairs.append(PriorPair(str(f.relative_to(path)), findings, impression, names))
    return out


def read_priors(path: str | Path) -> Priors:
    """The pairs of a JSONL file or a folder of report texts; UserError says what is wrong."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p}: no such file or folder (give a JSONL file or a folder of reports)")
    priors = read_folder(p) if p.is_dir() else read_jsonl(p)
    if not priors.pairs:
        why = "; ".join(priors.skipped[:3]) or "empty"
        raise UserError(f"{p}: no (findings, impression) pair found ({why})")
    return priors
