"""The JSONL training files and their schema checks.

SFT records: ``{"prompt", "target", "image"?, "stage"?, "mode"?, "id"?, "meta"?}``;
preference pairs: ``{"prompt", "chosen", "rejected", "image"?, "id"?, "meta"?}``.
A bad record is refused with its file, line and id, all bad records at once: fixing a
thousand-line file one error per run is not a workflow.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean
from typing import Any

from engine.errors import UserError

SFT_REQUIRED = ("prompt", "target")
SFT_OPTIONAL = ("image", "stage", "mode", "id", "meta")
DPO_REQUIRED = ("prompt", "chosen", "rejected")
DPO_OPTIONAL = ("image", "id", "meta")
MAX_LISTED = 20


@dataclass
class DataSummary:
    """What a data file holds, or what a builder wrote (and refused)."""

    path: str = ""
    kind: str = "sft"  # sft | dpo
    n_records: int = 0
    n_images: int = 0
    by_stage: dict[str, int] = field(default_factory=dict)
    by_mode: dict[str, int] = field(default_factory=dict)
    mean_prompt_chars: float = 0.0
    mean_target_chars: float = 0.0  # SFT target, or DPO chosen
    n_rejected: int = 0
    rejected: list[str] = field(default_factory=list)  # one message per refused record

    def lines(self) -> list[str]:
        out = [
            f"{self.path}: {self.n_records} {self.kind} record(s), {self.n_images} with an image",
            f"  mean prompt {self.mean_prompt_chars:.0f} chars, "
            f"mean {'target' if self.kind == 'sft' else 'chosen'} "
            f"{self.mean_target_chars:.0f} chars",
        ]
        if self.by_stage:
            out.append("  stages: " + ", ".join(f"{k}={v}" for k, v in self.by_stage.items()))
        if self.by_mode:
            out.append("  modes: " + ", ".join(f"{k}={v}" for k, v in self.by_mode.items()))
        if self.n_rejected:
            out.append(f"  refused {self.n_rejected} record(s):")
            out += [f"    {m}" for m in self.rejected[:MAX_LISTED]]
        return out


def record_name(rec: Any, where: str) -> str:
    """``file:line (id=X)`` — how every message names a record."""
    rid = rec.get("id") if isinstance(rec, dict) else None
    return f"{where} (id={rid})" if rid not in (None, "") else where


def check_record(rec: Any, kind: str, base: Path | None = None) -> list[str]:
    """Problems of one record (empty when it is fine)."""
    if not isinstance(rec, dict):
        return [f"not a JSON object but {type(rec).__name__}"]
    required, optional = (
        (SFT_REQUIRED, SFT_OPTIONAL)
        if kind == "sft"
        else (
            DPO_REQUIRED,
            DPO_OPTIONAL,
        )
    )
    errs = []
    for key in required:
        v = rec.get(key)
        if key not in rec:
            errs.append(f"'{key}' is missing")
        elif not isinstance(v, str):
            errs.append(f"'{key}' must be a string, got {type(v).__name__}")
        elif not v.strip():
            errs.append(f"'{key}' is empty")
    unknown = sorted(set(rec) - set(required) - set(optional))
    if unknown:
        errs.append(f"unknown field(s) {', '.join(unknown)}")
    for key in ("image", "stage", "mode"):
        if key in rec and (not isinstance(rec[key], str) or not rec[key].strip()):
            errs.append(f"'{key}' must be a non-empty string")
    if "id" in rec and (isinstance(rec["id"], bool) or not isinstance(rec["id"], (str, int))):
        errs.append("'id' must be a string or an integer")
    if "meta" in rec and not isinstance(rec["meta"], dict):
        errs.append("'meta' must be an object")
    img = rec.get("image")
    if isinstance(img, str) and img and base is not None:
        p = Path(img) if Path(img).is_absolute() else base / img
        if not p.is_file():
            errs.append(f"image {img} not found")
    if kind == "dpo" and not errs and rec["chosen"].strip() == rec["rejected"].strip():
        errs.append("'chosen' and 'rejected' are the same text")
    return errs


def summarize(records: list[dict[str, Any]], kind: str, path: str = "") -> DataSummary:
    target = "target" if kind == "sft" else "chosen"
    return DataSummary(
        path=path,
        kind=kind,
        n_records=len(records),
        n_images=sum(1 for r in records if r.get("image")),
        by_stage=dict(sorted(Counter(str(r["stage"]) for r in records if "stage" in r).items())),
        by_mode=dict(sorted(Counter(str(r["mode"]) for r in records if "mode" in r).items())),
        mean_prompt_chars=fmean(len(r["prompt"]) for r in records) if records else 0.0,
        mean_target_chars=fmean(len(r[target]) for r in records) if records else 0.0,
    )


def read_jsonl(path: str | Path, kind: str = "sft") -> list[dict[str, Any]]:
    """The checked records of a JSONL file, image paths made absolute.

    Raises :class:`UserError` naming every malformed record (file, line, id, what is wrong).
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"{p}: no such data file")
    base = p.resolve().parent
    records: list[dict[str, Any]] = []
    problems: list[str] = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{p.name}:{n}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{where}: not valid JSON ({exc.msg})")
            continue
        errs = check_record(rec, kind, base)
        if errs:
            problems.append(f"{record_name(rec, where)}: {'; '.join(errs)}")
            continue
        if rec.get("image") and not Path(rec["image"]).is_absolute():
            rec["image"] = str(base / rec["image"])
        records.append(rec)
    if problems:
        more = (
            f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        )
        raise UserError(
            f"{p}: {len(problems)} malformed record(s):\n  "
            + "\n  ".join(problems[:MAX_LISTED])
            + more
        )
    if not records:
        raise UserError(f"{p}: no records")
    return records


def write_jsonl(path: str | Path, records: list[dict[str, Any]]) -> Path:
    from engine.atomic import write_text_atomic

    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    return write_text_atomic(path, text)


def check_file(path: str | Path, kind: str = "sft") -> DataSummary:
    """Check a data file and summarise it (``train data check``)."""
    return summarize(read_jsonl(path, kind), kind, str(path))
