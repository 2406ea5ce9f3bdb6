"""Reading reports and writing labels in the formats people already have.

In: CheXpert's labeler input (a header-less one-column CSV of report texts), a CSV with a header
(an id column and a text column), JSONL (one object per line with an id and a text field), or
Open-i's ``ecgen-radiology`` XML (a folder, or the ``.tgz`` that torchxrayvision ships).
Out: CheXpert's CSV (``Reports`` then the 14 labels, 1.0 / 0.0 / -1.0 / blank), the same with an
``id`` column first when the input had ids, or JSONL.
"""

from __future__ import annotations

import csv
import io
import json
import re
import tarfile
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import UserError
from engine.report.labels import CHEXPERT_LABELS

ID_FIELDS = ("id", "report_id", "study_id", "filename", "uid", "dicom_id", "name")
TEXT_FIELDS = ("text", "report", "reports", "findings_impression", "impression", "findings")


@dataclass(frozen=True)
class Report:
    id: str
    text: str


def _pick(fields: Iterable[str], wanted: tuple[str, ...]) -> str | None:
    low = {f.strip().lower(): f for f in fields if f}
    return next((low[w] for w in wanted if w in low), None)


def _from_records(records: list[dict[str, Any]], source: str) -> list[Report]:
    if not records:
        return []
    keys = list(records[0])
    text_key = _pick(keys, TEXT_FIELDS)
    if text_key is None:
        raise UserError(f"{source}: no text column (one of {', '.join(TEXT_FIELDS)})")
    id_key = _pick(keys, ID_FIELDS)
    return [
        Report(str(r.get(id_key)) if id_key else str(i), str(r.get(text_key) or ""))
        for i, r in enumerate(records)
    ]


def read_reports(path: str | Path) -> tuple[list[Report], bool]:
    """Reports of a file and whether they carried their own ids (else ids are row numbers)."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p}: no such file or folder")
    if p.is_dir() or p.name.endswith((".tgz", ".tar.gz", ".xml")):
        return list(read_openi(p)), True
    text = _read_text(p)
    if p.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        recs = _json_records(text, p)
        reports = _from_records(recs, str(p))
        return reports, bool(recs) and _pick(recs[0], ID_FIELDS) is not None
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return [], False
    header = [h.strip().lower() for h in rows[0]]
    has_header = _pick(header, TEXT_FIELDS) is not None and len(rows[0]) >= 1
    if has_header and not (len(rows[0]) == 1 and len(rows) > 1 and len(rows[0][0]) > 40):
        recs = [dict(zip(rows[0], r, strict=False)) for r in rows[1:]]
        reports = _from_records(recs, str(p))
        return reports, _pick(rows[0], ID_FIELDS) is not None
    if len(rows[0]) > 1:  # neither CheXpert's one column nor a header we know
        raise UserError(
            f"{p}: {len(rows[0])} columns but no text column (one of {', '.join(TEXT_FIELDS)}); "
            "a header-less file must have one column of report texts (quote texts with commas)"
        )
    # CheXpert's input: no header, the report text in the first column.
    return [Report(str(i), r[0] if r else "") for i, r in enumerate(rows)], False


def _read_text(p: Path) -> str:
    try:
        return p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{p}: not UTF-8 text (byte {exc.start}); save the file as UTF-8 and try again"
        ) from exc
    except OSError as exc:
        raise UserError(f"{p}: cannot read ({exc.strerror})") from exc


def _json_records(text: str, p: Path) -> list[dict[str, Any]]:
    """JSONL (one object a line) or one JSON array of objects."""
    if text.lstrip().startswith("["):
        try:
            recs = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"{p}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc
        lines = list(enumerate(recs, 1))
    else:
        lines = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    lines.append((n, json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise UserError(f"{p}: line {n} is not JSON ({exc.msg})") from exc
    for n, rec in lines:
        if not isinstance(rec, dict):
            raise UserError(f"{p}: record {n} is not an object with an id and a text field")
    return [rec for _, rec in lines]


def _openi_text(xml_bytes: bytes) -> tuple[str, str]:
    root = ET.fromstring(xml_bytes)
    uid = root.find("uId")
    rid = uid.get("id", "") if uid is not None else ""
    parts = []
    for node in root.iter("AbstractText"):
        label, body = node.get("Label", ""), (node.text or "").strip()
        if body:
            parts.append(f"{label}: {body}" if label else body)
    return rid, "\n".join(parts)


def read_openi(path: str | Path) -> Iterator[Report]:
    """Open-i reports (id ``CXR<N>``) with their section headers kept in the text."""
    p = Path(path)
    if p.is_dir():
        for f in sorted(p.rglob("*.xml")):
            yield Report(*_openi_text(f.read_bytes()))
    elif p.suffix == ".xml":
        yield Report(*_openi_text(p.read_bytes()))
    else:
        with tarfile.open(p) as tar:
            for m in tar:
                if m.isfile() and m.name.endswith(".xml"):
                    fh = tar.extractfile(m)
                    if fh is not None:
                        yield Report(*_openi_text(fh.read()))


def _cell(v: int | None) -> str:
    return "" if v is None else f"{float(v)}"


def write_labels(
    path: str | Path | None,
    reports: list[Report],
    rows: list[dict[str, int | None]],
    with_ids: bool,
    explanations: list[dict[str, str]] | None = None,
    fmt: str = "",
) -> str:
    """CheXpert CSV (``.csv``) or JSONL (``.jsonl``, or ``fmt``) text, written to ``path`` if given."""
    if not fmt:
        fmt = "jsonl" if path is not None and str(path).endswith((".jsonl", ".ndjson")) else "csv"
    buf = io.StringIO()
    if fmt == "jsonl":
        for i, (rep, labels) in enumerate(zip(reports, rows, strict=True)):
            rec: dict[str, Any] = {"id": rep.id, "labels": labels}
            if explanations is not None:
                rec["explain"] = explanations[i]
            buf.write(json.dumps(rec) + "\n")
    else:
        w = csv.writer(buf, lineterminator="\n")
        w.writerow((["id"] if with_ids else []) + ["Reports", *CHEXPERT_LABELS])
        for rep, labels in zip(reports, rows, strict=True):
            cells = [_cell(labels[k]) for k in CHEXPERT_LABELS]
            w.writerow(([rep.id] if with_ids else []) + [rep.text, *cells])
    if path is not None:
        from engine.atomic import write_text_atomic

        write_text_atomic(path, buf.getvalue())
    return buf.getvalue()


def read_label_table(path: str | Path) -> dict[str, dict[str, int | None]]:
    """Labels by id from a file written by :func:`write_labels` (or CheXpert's own CSV)."""
    p = Path(path)
    out: dict[str, dict[str, int | None]] = {}
    if p.suffix in (".jsonl", ".ndjson"):
        for line in p.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                out[str(rec["id"])] = rec["labels"]
        return out
    with p.open(newline="") as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            rid = row.get("id", str(i))
            out[rid] = {k: _parse_cell(row.get(k, "")) for k in CHEXPERT_LABELS}
    return out


def _parse_cell(s: str | None) -> int | None:
    s = (s or "").strip()
    return None if s == "" else int(float(s))


def openi_number(rid: str) -> int:
    """``CXR123`` -> 123 (sorting Open-i ids numerically)."""
    m = re.search(r"\d+", rid)
    return int(m.group()) if m else -1
