"""Synthetic multi-vendor MR studies: the fixture every later feature is tested against.

:func:`generate_study` writes real DICOM files (pydicom, MR Image Storage, small matrices,
complete geometry so dcm2niix converts every image series) for ``subjects`` x ``sessions``
sessions on a Siemens-, GE- or Philips-style scanner, plus ``expected_bids.json`` with the
BIDS names a careful curator would choose (conventions in :mod:`engine.synth.expected`).

Output: ``<out_dir>/dicom/`` (the DICOM tree) and ``<out_dir>/expected_bids.json``.  The same
arguments give byte-identical files: no clock is read, UIDs are ``2.25.<hash of seed, ...>``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path

from engine.atomic import write_text_atomic
from engine.bids_schema import get_schema
from engine.synth.conventions import add_conventions, adjust_datasets
from engine.synth.expected import expected_paths
from engine.synth.layout import LAYOUTS, TreeWriter
from engine.synth.protocol import VENDORS, SeriesPlan, session_plan
from engine.synth.writer import StudyContext, build_series, make_uid

__all__ = [
    "fake_identity_values",
    "StudyManifest",
    "SeriesRecord",
    "generate_study",
    "VENDOR_CHOICES",
    "LAYOUTS",
]

VENDOR_CHOICES: tuple[str, ...] = (*VENDORS, "mixed")

_FAKE_NAMES = ("Zabrowski^Helga", "Okonjo^Leopold", "Fairweather^Ottilie", "Quennell^Barnaby")
_FAKE_PLACE = {
    "institution": "Saint Quirinus Clinic",
    "institution_address": "17 Larkspur Lane^Oakhaven^^40217^ZZ",
    "referring": "Pemberton^Ezra",
    "performing": "Vornholt^Idris",
    "operator": "Quillfeather^Tamsin",
    "station": "QUIRINUSMR7",
}
_NAMES = ("Doe^Jane", "Roe^Richard", "Smith^Alice", "Brown^Robert", "Jones^Carol", "Garcia^Dan")


@dataclass
class SeriesRecord:
    """One written series, with the BIDS paths it should become (``[]`` when skipped)."""

    subject: str
    session: str
    vendor: str
    kind: str  # protocol-table key, e.g. "bold_nback", "dwi_adc"
    series_uid: str
    study_uid: str
    series_number: int
    series_description: str
    protocol_name: str
    image_type: tuple[str, ...]
    n_files: int
    n_volumes: int
    n_echoes: int
    paths: list[str]
    skip: str
    files: list[str] = field(default_factory=list)  # relative to StudyManifest.root

    @property
    def is_image(self) -> bool:
        return self.kind != "report"


@dataclass
class StudyManifest:
    """What :func:`generate_study` wrote."""

    out_dir: Path
    root: Path  # the DICOM tree, <out_dir>/dicom
    expected_path: Path  # <out_dir>/expected_bids.json
    n_files: int
    series: list[SeriesRecord]
    layout: str = "nested"
    gzip: bool = False
    vendor: str = "siemens"
    seed: int = 0


def _check_args(subjects: int, sessions: int, layout: str, gzip: bool, vendor: str) -> None:
    if subjects < 1 or sessions < 1:
        raise ValueError("subjects and sessions must be at least 1")
    if subjects > 99:
        raise ValueError("at most 99 subjects")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    if layout == "dicomdir" and gzip:
        raise ValueError("--gzip cannot be combined with the dicomdir layout")
    if vendor not in VENDOR_CHOICES:
        raise ValueError(f"vendor must be one of {', '.join(VENDOR_CHOICES)}, not {vendor!r}")


def generate_study(
    out_dir: str | Path,
    *,
    subjects: int = 2,
    sessions: int = 1,
    layout: str = "nested",
    gzip: bool = False,
    vendor: str = "siemens",
    reproin: bool = False,
    seed: int = 0,
    aborted_sbref: bool = False,
    fake_identities: bool = False,
    conventions: bool = False,
) -> StudyManifest:
    """Write a synthetic study under ``out_dir`` and return its manifest.

    ``vendor="mixed"`` alternates Siemens, GE, Philips over subjects.  Subject ``P01`` repeats
    its T1w in its first session.  ``aborted_sbref``: the aborted nback run has its SBRef (both
    skipped).  Subjects are labelled ``01``, ``02``, ... (the default neutral labels, in study
    order); PatientID is ``P01``, ``P02``, ...  ``fake_identities``: distinctive made-up
    identities instead (MRN-like PatientIDs, names, institution, station, operator and
    physicians, listed by :func:`fake_identity_values`), and the first subject's surname typed
    into its T2w ProtocolName, as technicians do: the privacy acceptance test searches every
    output file for them.  ``conventions``: add the vendor-convention series of
    :mod:`engine.synth.conventions` (XA ``_Pha`` phase, ND/NORM duplicates, a planning scan, a
    Philips B0 map, separate multiband runs; implies ``aborted_sbref``).  Raises :class:`FileExistsError` when ``out_dir/dicom`` already holds files and
    :class:`ValueError` for bad arguments.
    """
    _check_args(subjects, sessions, layout, gzip, vendor)
    out = Path(out_dir)
    root = out / "dicom"
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} already exists and is not empty")
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".dicom.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()

    # --- plan: who, when, what -------------------------------------------------------------
    plan_sessions: list[tuple[str, str, list[SeriesPlan]]] = []
    contexts: list[StudyContext] = []
    for s in range(subjects):
        subj = f"P{s + 1:02d}" if not fake_identities else f"MRN{8675309 + 1111 * s}X"
        label = f"{s + 1:02d}"  # the neutral subject label analyze gives (study order)
        v = VENDORS[s % len(VENDORS)] if vendor == "mixed" else vendor
        birth = date(1975 + (s * 7 + seed) % 30, 1 + (s * 5) % 12, 1 + (s * 11) % 28)
        for ses in range(sessions):
            study_day = date(2024, 3, 4) + timedelta(days=3 * s + 35 * ses)
            age = (
                study_day.year
                - birth.year
                - ((study_day.month, study_day.day) < (birth.month, birth.day))
            )
            ses_label = f"{ses + 1:02d}" if sessions > 1 else ""
            plans = session_plan(
                v,
                reproin=reproin,
                repeat_t1w=(s == 0 and ses == 0),
                aborted_sbref=aborted_sbref or conventions,
            )
            if conventions:
                plans = add_conventions(plans, v)
            names = _FAKE_NAMES if fake_identities else _NAMES
            patient_name = names[(s + seed) % len(names)]
            if fake_identities and s == 0:
                plans = [
                    replace(p, protocol=f"{p.protocol}_{patient_name.split('^')[0]}")
                    if p.kind == "t2w"
                    else p
                    for p in plans
                ]
            plan_sessions.append((label, ses_label, plans))
            contexts.append(
                StudyContext(
                    seed=seed,
                    vendor=v,
                    subject=subj,
                    patient_name=patient_name,
                    birth_date=birth.strftime("%Y%m%d"),
                    sex="FM"[s % 2],
                    age=f"{age:03d}Y",
                    weight=60.0 + (s * 13) % 30,
                    size=1.60 + ((s * 7) % 30) / 100.0,
                    study_uid=make_uid(seed, subj, ses, "study"),
                    frame_uid=make_uid(seed, subj, ses, "frame"),
                    study_date=study_day.strftime("%Y%m%d"),
                    study_time_s=8 * 3600.0 + (s % 4) * 5400.0,
                    accession=f"ACC{(seed * 7919 + s * 100 + ses) % 10**7:07d}",
                    study_id=str(ses + 1),
                    **(_FAKE_PLACE if fake_identities else {}),
                )
            )
    all_paths = expected_paths(plan_sessions)

    # --- write ----------------------------------------------------------------------------
    writer = TreeWriter(tmp, layout, gzip)
    records: list[SeriesRecord] = []
    slots: list[list[list[str]]] = []
    idx = 0
    for (label, ses_label, plans), ctx in zip(plan_sessions, contexts, strict=True):
        subj = ctx.subject
        t = ctx.study_time_s + 60.0
        for number, plan in enumerate(plans, start=1):
            uid = make_uid(seed, subj, ctx.study_uid, number, "series")
            out_series = build_series(plan, ctx, number, uid, t)
            adjust_datasets(plan, out_series.datasets)
            t = out_series.end_s
            series_slots = []
            for ds in out_series.datasets:
                series_slots.append(writer.add(ds, TreeWriter.series_dir(ds)))
            slots.append(series_slots)
            records.append(
                SeriesRecord(
                    subject=label,
                    session=ses_label,
                    vendor=plan.vendor,
                    kind=plan.kind,
                    series_uid=uid,
                    study_uid=ctx.study_uid,
                    series_number=number,
                    series_description=plan.description,
                    protocol_name=plan.protocol,
                    image_type=plan.image_type,
                    n_files=len(out_series.datasets),
                    n_volumes=out_series.n_volumes,
                    n_echoes=out_series.n_echoes,
                    paths=all_paths[idx],
                    skip=plan.skip,
                )
            )
            idx += 1
    writer.close(make_uid(seed, "fileset"))
    for rec, series_slots in zip(records, slots, strict=True):
        rec.files = [s[0] for s in series_slots]
    if root.exists():
        root.rmdir()  # empty, checked above
    tmp.replace(root)

    expected = out / "expected_bids.json"
    doc = {
        "bids_version": get_schema().version,
        "generator": {
            "subjects": subjects,
            "sessions": sessions,
            "layout": layout,
            "gzip": gzip,
            "vendor": vendor,
            "reproin": reproin,
            "seed": seed,
        }
        | ({"aborted_sbref": True} if aborted_sbref or conventions else {})
        | ({"conventions": True} if conventions else {}),
        "series": [
            {k: v for k, v in asdict(r).items() if k not in ("files", "study_uid", "image_type")}
            | {"image_type": list(r.image_type)}
            for r in records
        ],
    }
    write_text_atomic(expected, json.dumps(doc, indent=1) + "\n")
    return StudyManifest(
        out_dir=out,
        root=root,
        expected_path=expected,
        n_files=sum(r.n_files for r in records),
        series=records,
        layout=layout,
        gzip=gzip,
        vendor=vendor,
        seed=seed,
    )


def fake_identity_values(manifest: StudyManifest) -> list[str]:
    """The identities ``generate_study(fake_identities=True)`` wrote: name parts, PatientIDs,
    birth dates, accession numbers, institution, address, station, operator and physicians."""
    import pydicom

    vals: set[str] = set()
    for rec in manifest.series:
        if not rec.files:
            continue
        ds = pydicom.dcmread(manifest.root / rec.files[0], stop_before_pixels=True)
        for kw in ("PatientID", "PatientBirthDate", "AccessionNumber", "InstitutionName",
                   "StationName"):  # fmt: skip
            vals.add(str(ds.get(kw, "")))
        for kw in ("PatientName", "ReferringPhysicianName", "PerformingPhysicianName",
                   "OperatorsName", "InstitutionAddress"):  # fmt: skip
            vals.update(x for x in str(ds.get(kw, "")).split("^") if len(x) >= 3)
    return sorted(v for v in vals if len(v) >= 3)
