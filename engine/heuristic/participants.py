"""``participants.tsv`` ages as BIDS and the de-identification standard want them.

heudiconv copies DICOM's PatientAge (an Age String: ``nnnD``, ``nnnW``, ``nnnM`` or ``nnnY``)
with its unit cut off, so a newborn's ``001D`` becomes age 1 and an age of 122 stays exact.
BIDS wants years; HIPAA's Safe Harbor method (45 CFR 164.514(b)(2)(i)(C)), which the validator
cites, wants ages over 89 aggregated; the validator asks for ``89+`` from 89 on.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from engine.atomic import write_text_atomic

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([DWMY]?)\s*$", re.I)
_PER_YEAR = {"D": 365.25, "W": 365.25 / 7, "M": 12.0, "Y": 1.0, "": 1.0}
TOP_CODE = 89  # ages from here on are reported as "89+" (what the validator asks)


def age_in_years(raw: str) -> str:
    """``"033Y"`` -> ``"33"``, ``"006M"`` -> ``"0.5"``, ``"122"`` -> ``"89+"``; else ``"n/a"``."""
    text = raw.strip()
    if text.endswith("+") and _AGE.match(text[:-1]):
        text = text[:-1]
    m = _AGE.match(text)
    if not m:
        return "n/a"
    years = float(m.group(1)) / _PER_YEAR[m.group(2).upper()]
    if years >= TOP_CODE:
        return f"{TOP_CODE}+"
    if years >= 1:
        return str(int(years)) if m.group(2).upper() in ("Y", "") else f"{years:.1f}"
    return f"{years:.2f}".rstrip("0").rstrip(".") if years >= 0.005 else "0"


def tidy_participants(bids_dir: Path) -> list[str]:
    """Rewrite the ``age`` column of ``participants.tsv`` in years, top-coded at 89; returns
    what changed (``sub-02: age 1D -> 0``) for the conversion report."""
    path = bids_dir / "participants.tsv"
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8", errors="replace")
    rows = list(csv.reader(io.StringIO(text), delimiter="\t"))
    if not rows or "age" not in rows[0]:
        return []
    col = rows[0].index("age")
    changed: list[str] = []
    for row in rows[1:]:
        if len(row) <= col or row[col] in ("n/a", ""):
            continue
        new = age_in_years(row[col])
        if new != row[col]:
            changed.append(f"{row[0]}: age {row[col]} -> {new}")
            row[col] = new
    if changed:
        out = io.StringIO()
        csv.writer(out, delimiter="\t", lineterminator="\n").writerows(rows)
        write_text_atomic(path, out.getvalue())
    return changed
