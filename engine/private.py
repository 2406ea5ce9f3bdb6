"""The one private file of OUT: who each subject label is, and every identity value of the study.

``OUT/private/subject_map.tsv`` (mode 0600 in a 0700 folder) has one row per PatientID:
``patient_id``, ``subject`` (the BIDS label, ``01``, ``02``, ... by default), ``first_study``
(StudyDate+StudyTime of the first study: the numbering order) and ``identities`` (a JSON list:
PatientName, PatientID, BirthDate, AccessionNumber, institution, station, operator and
physician names seen in that patient's headers). Nothing else in OUT, the heuristic or the BIDS
dataset names a patient: the series table carries the label, free text (protocol and series
names) has these values replaced by :data:`REDACTED`, prompts and reports are built from it.

The heuristic reads this file at run time (beside it, or ``$LLMH_SUBJECT_MAP``) to find a
subject's label without ``-s`` and to redact the same values in the series names heudiconv
hands it, so its conditions match. :func:`redact` and :func:`expand_values` are copied into
the heuristic's source: they import nothing from this package.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

PRIVATE_DIR = "private"
SUBJECT_MAP = "subject_map.tsv"
MAP_ENV = "LLMH_SUBJECT_MAP"
MAP_COLUMNS = ("patient_id", "subject", "first_study", "identities")
LABEL_MODES = ("neutral", "patientid")


@dataclass
class Person:
    patient_id: str
    subject: str = ""
    first_study: str = ""
    identities: list[str] = field(default_factory=list)


def private_dir(out_dir: str | os.PathLike[str], create: bool = True) -> Path:
    """``OUT/private`` (created 0700; an existing one is set to 0700)."""
    p = Path(out_dir) / PRIVATE_DIR
    if create:
        p.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(p, 0o700)
    return p


def map_path(out_dir: str | os.PathLike[str]) -> Path:
    return Path(out_dir) / PRIVATE_DIR / SUBJECT_MAP


def _cell(v: str) -> str:
    return re.sub(r"[\t\r\n]", " ", v)


def read_map(
    out_dir: str | os.PathLike[str] | None = None, path: Path | None = None
) -> list[Person]:
    """The people of the map; [] when there is none."""
    p = path if path is not None else map_path(out_dir or ".")
    try:
        text = p.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return []
    lines = text.splitlines()
    if not lines:
        return []
    cols = lines[0].split("\t")
    people = []
    for line in lines[1:]:
        if not line.strip():
            continue
        row = dict(zip(cols, line.split("\t"), strict=False))
        try:
            ids = json.loads(row.get("identities") or "[]")
        except json.JSONDecodeError:
            ids = []
        people.append(
            Person(
                row.get("patient_id", ""),
                row.get("subject", ""),
                row.get("first_study", ""),
                [str(x) for x in ids],
            )
        )
    return people


def write_map(out_dir: str | os.PathLike[str], people: Iterable[Person]) -> Path:
    """Write the map atomically, 0600 in the 0700 private folder."""
    from engine.atomic import write_text_atomic

    private_dir(out_dir)
    lines = ["\t".join(MAP_COLUMNS)]
    for person in sorted(people, key=lambda x: (_label_key(x.subject), x.patient_id)):
        lines.append(
            "\t".join(
                [
                    _cell(person.patient_id),
                    _cell(person.subject),
                    _cell(person.first_study),
                    json.dumps(sorted(set(person.identities))),
                ]
            )
        )
    path = map_path(out_dir)
    write_text_atomic(path, "\n".join(lines) + "\n", mode=0o600)
    os.chmod(path, 0o600)
    return path


def _label_key(label: str) -> tuple[int, str]:
    return (int(label), label) if label.isdigit() else (10**9, label)


def assign_labels(seen: dict[str, tuple[str, list[str]]], existing: list[Person]) -> list[Person]:
    """Neutral labels: a PatientID keeps the label it had; new ones are numbered after the
    highest, in order of their first study (StudyDate+StudyTime), then PatientID."""
    by_pid = {p.patient_id: p for p in existing}
    used = {p.subject for p in existing}
    nums = [int(p.subject) for p in existing if p.subject.isdigit()]
    n = max(nums, default=0)
    for pid in sorted(seen, key=lambda k: (seen[k][0], k)):
        first, ids = seen[pid]
        person = by_pid.get(pid)
        if person is None:
            n += 1
            while f"{n:02d}" in used:
                n += 1
            person = Person(pid, f"{n:02d}", first)
            used.add(person.subject)
            by_pid[pid] = person
        if first and (not person.first_study or first < person.first_study):
            person.first_study = first
        person.identities = sorted(set(person.identities) | set(ids))
    return list(by_pid.values())


def study_values(people: Iterable[Person]) -> set[str]:
    """Every identity string of these people, expanded (:func:`expand_values`)."""
    raw: list[str] = []
    for p in people:
        raw.append(p.patient_id)
        raw += p.identities
    return expand_values(raw)


def out_values(out_dir: str | os.PathLike[str] | None) -> set[str]:
    """The identity values kept in OUT's private map (empty without one)."""
    if out_dir is None:
        return set()
    return study_values(read_map(out_dir))


# --- copied into the heuristic: no imports from this package below this line ----------------


def expand_values(raw):
    """Identity strings -> the strings to redact: whole values, the parts of a DICOM person
    name (``DOE^JANE`` -> DOE, JANE, ``DOE JANE``), and a birth date's usual spellings; 3 characters at least."""
    import re as _re

    out = set()
    for v in raw:
        v = str(v or "").strip()
        if not v:
            continue
        cands = {v}
        if "^" in v:  # a person name: its parts too (addresses keep their words together)
            cands.add(" ".join(x for x in v.split("^") if x))
            cands.update(_re.split(r"[\^\s,]+", v))
        m = _re.fullmatch(r"((?:19|20)\d\d)(\d\d)(\d\d)", v)
        if m:
            y, mo, d = m.groups()
            cands.update(
                {
                    f"{y}-{mo}-{d}",
                    f"{d}.{mo}.{y}",
                    f"{mo}/{d}/{y}",
                    f"{d}/{mo}/{y}",
                    f"{y}/{mo}/{d}",
                }
            )
        out.update(c.strip() for c in cands if len(c.strip()) >= 3)
    return out


def redact(text, values, token="[redacted]"):
    """``text`` with each value (case-insensitive, not inside a longer word or number)
    replaced by ``token``; longest values first."""
    import re as _re

    if not text or not values:
        return text
    out = str(text)
    for v in sorted(set(values), key=lambda x: (-len(x), x)):
        if v.lower() not in out.lower():
            continue
        left = r"(?<![A-Za-z])" if v[0].isalpha() else r"(?<![0-9])" if v[0].isdigit() else ""
        right = r"(?![A-Za-z])" if v[-1].isalpha() else r"(?![0-9])" if v[-1].isdigit() else ""
        out = _re.sub(left + _re.escape(v) + right, token, out, flags=_re.IGNORECASE)
    return out


REDACTED = "[redacted]"
