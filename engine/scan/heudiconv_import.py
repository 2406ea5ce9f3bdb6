"""Import an existing heudiconv header pass (``dicominfo*.tsv`` / a ``.heudiconv`` folder) as is.

heudiconv writes ``.heudiconv/<subject>/[ses-<session>/]info/dicominfo[_ses-<session>].tsv``;
subject and session come from that path, every SeqInfo column is kept unchanged.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from engine.atomic import read_tsv
from engine.model import SeriesInfo
from engine.scan.aggregate import bids_label

_SES_FILE = re.compile(r"dicominfo_ses-([^./]+)\.tsv$")


def find_dicominfo(root: str | os.PathLike[str]) -> list[Path]:
    p = Path(root)
    if p.is_file():
        return [p] if p.name.startswith("dicominfo") and p.suffix == ".tsv" else []
    base = p / ".heudiconv" if (p / ".heudiconv").is_dir() else p
    return sorted(q for q in base.rglob("dicominfo*.tsv") if q.is_file())


def is_heudiconv_input(root: str | os.PathLike[str]) -> bool:
    p = Path(root)
    if p.is_file():
        return p.name.startswith("dicominfo") and p.suffix == ".tsv"
    return p.name == ".heudiconv" or (p / ".heudiconv").is_dir()


def import_dicominfo(root: str | os.PathLike[str]) -> list[SeriesInfo]:
    series: list[SeriesInfo] = []
    for tsv in find_dicominfo(root):
        subject, session = _who(tsv)
        for row in read_tsv(tsv):
            s = SeriesInfo.from_row(row)
            s.subject = s.subject or bids_label(subject or s.patient_id) or "unknown"
            s.session = s.session or bids_label(session)
            if not s.series_number and s.series_id.split("-", 1)[0].isdigit():
                s.series_number = int(s.series_id.split("-", 1)[0])
            if not s.image_type_parts:
                s.image_type_parts = list(s.image_type)
            series.append(s)
    return series


def _who(tsv: Path) -> tuple[str, str]:
    parts = tsv.parts
    session = ""
    m = _SES_FILE.search(tsv.name)
    if m:
        session = m.group(1)
    subject = ""
    if "info" in parts:
        i = len(parts) - 1 - parts[::-1].index("info")
        up = list(parts[:i])
        if up and up[-1].startswith("ses-"):
            session = session or up[-1][4:]
            up.pop()
        if up and up[-1] != ".heudiconv":
            subject = up[-1]
    return subject, session
