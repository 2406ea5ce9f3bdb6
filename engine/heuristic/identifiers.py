"""Take identities out of a converted subject/session (sidecars, ``*_scans.tsv``, heudiconv's book).

Kept apart from the sidecar completion: this runs on every conversion unless
``--keep-identifiers``, and its field list is the de-identification policy, reviewed on its own.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.atomic import read_tsv, write_text_atomic, write_tsv_atomic

#: Sidecar fields (the DICOM keywords dcm2niix writes) that the de-identification profile of
#: DICOM PS3.15 Annex E (Basic Profile, with Retain Device Identity / Longitudinal Temporal
#: Information *not* applied) removes or replaces: the patient, the visit, the people, the
#: place and the device. ``convert`` drops them unless ``--keep-identifiers``.
IDENTIFYING_FIELDS: frozenset[str] = frozenset(
    {
        "PatientName",
        "PatientID",
        "OtherPatientIDs",
        "PatientBirthDate",
        "PatientBirthTime",
        "PatientSex",
        "PatientAge",
        "PatientWeight",
        "PatientSize",
        "PatientAddress",
        "PatientComments",
        "AccessionNumber",
        "StudyID",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "StudyDate",
        "SeriesDate",
        "AcquisitionDate",
        "ContentDate",
        "AcquisitionDateTime",
        "StudyTime",
        "InstitutionName",
        "InstitutionAddress",
        "InstitutionalDepartmentName",
        "StationName",
        "DeviceSerialNumber",
        "ReferringPhysicianName",
        "PerformingPhysicianName",
        "NameOfPhysiciansReadingStudy",
        "OperatorsName",
        "RequestingPhysician",
        "RequestAttributesSequence",
        "FrameOfReferenceUID",
    }
)
#: The columns of ``*_scans.tsv`` kept by default (heudiconv also writes ``operator`` and
#: ``randstr``).
SCANS_COLUMNS = ("filename", "acq_time")


def _redact_json(value: Any, redact_text: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, list):
        return [_redact_json(v, redact_text) for v in value]
    if isinstance(value, dict):
        return {k: _redact_json(v, redact_text) for k, v in value.items()}
    return value


def strip_identifiers(
    bids_dir: Path, subject: str, session: str, values: set[str] | frozenset[str] = frozenset()
) -> list[str]:
    """Take identities out of one subject/session of the BIDS dataset; returns the changed files.

    Sidecars lose :data:`IDENTIFYING_FIELDS` and have the study's identity ``values`` (names,
    IDs... from ``OUT/private``) redacted from every other string (a name typed into a
    protocol name reaches ``ProtocolName``); ``*_scans.tsv`` keeps :data:`SCANS_COLUMNS`;
    heudiconv's bookkeeping of the subject (``.heudiconv/<subject>``: the DICOM headers as a
    table, file lists, a copy of the heuristic) is removed: ``convert`` re-creates it.
    """
    from engine.private import redact

    base = bids_dir / f"sub-{subject}"
    if session:
        base = base / f"ses-{session}"
    changed: list[str] = []
    # heudiconv also writes the fields common to a task's runs into top-level task-*_bold.json
    tops = sorted(bids_dir.glob("*.json"))
    if base.is_dir() or tops:
        for js in [*tops, *sorted(base.rglob("*.json"))]:
            try:
                meta = json.loads(js.read_text())
            except (OSError, ValueError):
                continue
            if not isinstance(meta, dict):
                continue
            new = {
                k: _redact_json(v, lambda t: redact(t, values))
                for k, v in meta.items()
                if k not in IDENTIFYING_FIELDS
            }
            if new != meta:
                write_text_atomic(js, json.dumps(new, indent=2, sort_keys=True) + "\n")
                changed.append(str(js.relative_to(bids_dir)))
        for scans in sorted(base.rglob("*_scans.tsv")):
            rows = read_tsv(scans)
            cols = [c for c in SCANS_COLUMNS if not rows or c in rows[0]]
            if rows and set(rows[0]) != set(cols):
                write_tsv_atomic(scans, cols, [{c: r.get(c, "") for c in cols} for r in rows])
                changed.append(str(scans.relative_to(bids_dir)))
    book = bids_dir / ".heudiconv" / subject
    if book.is_dir():
        shutil.rmtree(book)
        changed.append(str(book.relative_to(bids_dir)))
    return changed
