"""Per-file facts -> one :class:`SeriesInfo` per series (split by Study/SeriesInstanceUID).

Column meaning follows heudiconv 1.5 ``create_seqinfo``: ``series_id`` is
``"{SeriesNumber}-{ProtocolName}"`` (CSA ``tProtocolName`` or SeriesDescription when the
ProtocolName is empty), dims are the image shape plus the number of files, TR in seconds,
TE in milliseconds, ``date``/``time`` from AcquisitionDate/Time (else AcquisitionDateTime,
else SeriesDate/Time).
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from engine.model import SeriesInfo

SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.4": "MR",
    "1.2.840.10008.5.1.4.1.1.4.1": "EnhancedMR",
    "1.2.840.10008.5.1.4.1.1.4.2": "MRSpectroscopy",
    "1.2.840.10008.5.1.4.1.1.4.3": "EnhancedMRColor",
    "1.2.840.10008.5.1.4.1.1.4.4": "LegacyConvertedEnhancedMR",
    "1.2.840.10008.5.1.4.1.1.7": "SecondaryCapture",
    "1.2.840.10008.5.1.4.1.1.66": "RawData",
    "1.2.840.10008.5.1.4.1.1.11.1": "PresentationState",
    "1.2.840.10008.5.1.4.1.1.2": "CT",
    "1.2.840.10008.5.1.4.1.1.2.1": "EnhancedCT",
    "1.2.840.10008.5.1.4.1.1.128": "PET",
    "1.2.840.10008.5.1.4.1.1.88.22": "SR",
    "1.2.840.10008.5.1.4.1.1.104.1": "EncapsulatedPDF",
}

_COMPLEX = {"MAGNITUDE": "mag", "PHASE": "phase", "REAL": "real", "IMAGINARY": "imag"}
_IMAGE_TYPE_COMPLEX = {"M": "mag", "P": "phase", "R": "real", "I": "imag", **_COMPLEX}


def bids_label(value: str) -> str:
    """Alphanumerics only (BIDS label); empty stays empty."""
    return re.sub(r"[^A-Za-z0-9]", "", value or "")


def _orientation(iop: list[float]) -> str:
    if len(iop) != 6:
        return ""
    r, c = iop[:3], iop[3:]
    n = (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])
    a = [abs(x) for x in n]
    m = max(a)
    if m == 0:
        return ""
    if m < 0.8:
        return "obl"
    return ("sag", "cor", "tra")[a.index(m)]


def _pe_direction(pe_axis: str, positives: set[str], manufacturer: str, ge_view_order: str) -> str:
    """BIDS PhaseEncodingDirection in dcm2niix's convention (rows flipped: j- is A>P for COL).

    Siemens CSA / XA PhaseEncodingDirectionPositive: COL 1 -> ``j-``, 0 -> ``j``; ROW 1 -> ``i``, 0 -> ``i-``.
    GE's UserDefineData polarity arrives in the same words (unflipped = 1).
    """
    axis = {"ROW": "i", "COL": "j", "COLUMN": "j"}.get(pe_axis.upper().strip(), "")
    if not axis:
        return ""
    if len(positives) == 1:
        val = next(iter(positives))
        # dcm2niix flips the row order, so the sign of j (not i) is inverted.
        flip = axis == "j"
        if val == "1":
            return axis + ("-" if flip else "")
        if val == "0":
            return axis + ("" if flip else "-")
    return ""


def _other_image_types(members: list, image_type: list[str]) -> list[str]:
    """ImageType values that other files (classic) or frames (enhanced FrameType) of the series
    hold beyond the first file's: a Philips B0 map keeps magnitude (M) and B0-map (B0 MAP,
    FIELD_MAP) images in one series, which is what tells it from a two-echo magnitude."""
    have = {v.upper() for v in image_type}
    extra: list[str] = []
    for _, f in members:
        values = list(f.get("image_type") or [])
        for ft in f.get("frame_types") or []:
            values += str(ft).split("\\")
        for v in values:
            v = str(v).strip()
            if v and v.upper() not in have:
                have.add(v.upper())
                extra.append(v)
    return extra


def _complex_part(parts: set[str], image_type: list[str]) -> str:
    """ComplexImageComponent or vendor tag (GE (0043,102F), Philips (2005,1011)), else ImageType.

    A series mixing parts (rare: some GE field maps) reports the first of mag, phase, real,
    imag it holds, so the answer does not depend on set order.
    """
    found = {_COMPLEX[p.upper()] for p in parts if p.upper() in _COMPLEX}
    for part in ("mag", "phase", "real", "imag"):
        if part in found:
            return part
    # Siemens: ImageType[2] is M/P/R/I; also a trailing MAGNITUDE/PHASE (XA, GE, Philips).
    for i, t in enumerate(image_type):
        tu = t.upper()
        if tu in _COMPLEX:
            return _COMPLEX[tu]
        if i == 2 and tu in _IMAGE_TYPE_COMPLEX:
            return _IMAGE_TYPE_COMPLEX[tu]
    return ""


def _heudiconv_date_time(f: dict[str, Any]) -> tuple[str, str]:
    date, time = f.get("acquisition_date", ""), f.get("acquisition_time", "")
    if date and time:
        return date, time
    dt = f.get("acquisition_datetime", "")
    if len(dt) >= 14:
        frac = dt[14:].split("+")[0].split("-")[0]
        frac = frac.lstrip(".")
        return dt[:8], f"{dt[8:14]}.{(frac + '000000')[:6]}"
    if f.get("series_date") and f.get("series_time"):
        return f["series_date"], f["series_time"]
    return date, time


def _match(pattern: re.Pattern[str] | None, path: str, name: str) -> str | None:
    if pattern is None:
        return None
    m = pattern.search(path)
    if not m:
        return None
    if name in m.groupdict() and m.group(name) is not None:
        return m.group(name)
    return m.group(1) if m.groups() else m.group(0)


def aggregate(
    records: Iterable[tuple[str, dict[str, Any]]],
    subject_pattern: str | None = None,
    session_pattern: str | None = None,
    people: dict[str, tuple[str, list[str]]] | None = None,
) -> list[SeriesInfo]:
    """Build the series table from ``(path, facts)`` pairs of image files.

    ``people`` (when given) is filled with PatientID -> (first StudyDate+StudyTime, identity
    values): what :func:`pseudonymize` keeps in OUT's private map. The rows still carry the
    PatientID; :func:`pseudonymize` replaces it before anything is written outside the private
    folder."""
    by_series: dict[tuple[str, str], list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for path, facts in records:
        if facts.get("kind") != "image":
            continue
        by_series[(facts.get("study_uid", ""), facts["series_uid"])].append((path, facts))
    sub_re = re.compile(subject_pattern) if subject_pattern else None
    ses_re = re.compile(session_pattern) if session_pattern else None

    rows: list[tuple[tuple, SeriesInfo]] = []
    for (study_uid, series_uid), members in by_series.items():
        members.sort(key=lambda pf: (pf[1].get("instance_number") or 0, pf[0]))
        files_sorted = sorted(p for p, _ in members)
        first_path = files_sorted[0]
        f0 = dict(members[0][1])
        for p, f in members:
            if p == first_path:
                f0 = f
                break
        s = _series_from(f0, members, first_path)
        s.study_uid = study_uid
        s.series_uid = series_uid
        subj = _match(sub_re, first_path, "subject")
        s.subject = bids_label(subj if subj is not None else f0.get("patient_id", "")) or "unknown"
        ses = _match(ses_re, first_path, "session")
        s.session = bids_label(ses) if ses is not None else ""
        sort_key = (
            s.subject,
            f0.get("study_date", ""),
            f0.get("study_time", ""),
            study_uid,
            s.series_number if s.series_number is not None else 0,
            s.date,
            s.time,
            series_uid,
        )
        rows.append((sort_key, s))
        if people is not None:
            _remember_person(people, f0)
    rows.sort(key=lambda r: r[0])
    series = [s for _, s in rows]
    if ses_re is None:
        _number_sessions(series, rows)
    total = 0
    for s in series:
        total += s.series_files
        s.total_files_till_now = total
    return series


# person-name facts (DICOM PN: ``^`` between the parts; several names separated by ``\\``)
_PN_FACTS = (
    "patient_name",
    "referring_physician_name",
    "performing_physician_name",
    "reading_physician_name",
    "operators_name",
)
_OTHER_FACTS = (
    "patient_id",
    "other_patient_ids",
    "patient_birth_date",
    "patient_address",
    "accession_number",
    "institution_name",
    "institution_address",
    "institution_department",
    "station_name",
)
# free text of the series table that may hold a typed name: redacted (engine.private.redact)
REDACTED_FIELDS = (
    "protocol_name",
    "series_description",
    "study_description",
    "series_id",
    "sequence_name",
    "dcm_dir_name",
    "example_dcm_file",
)


def _remember_person(people: dict[str, tuple[str, list[str]]], f: dict[str, Any]) -> None:
    pid = f.get("patient_id", "")
    first = f"{f.get('study_date', '')}{f.get('study_time', '')}"
    old_first, ids = people.get(pid, (first, []))
    vals = set(ids)
    for key in _PN_FACTS:
        for name in str(f.get(key) or "").split("\\"):
            name = name.strip()
            if name:  # typed without carets ("Jane Doe"): still a person name with parts
                vals.add(name if "^" in name else "^".join(name.split()))
    for key in _OTHER_FACTS:
        for v in str(f.get(key) or "").split("\\"):
            v = v.replace("^", ", ").strip(" ,")
            if v:
                vals.add(v)
    people[pid] = (min(old_first, first) if old_first else first, sorted(vals))


def people_from_series(series: list[SeriesInfo]) -> dict[str, tuple[str, list[str]]]:
    """The identity values a series table itself holds (heudiconv dicominfo imports)."""
    people: dict[str, tuple[str, list[str]]] = {}
    for s in series:
        _remember_person(
            people,
            {
                "patient_id": s.patient_id,
                "study_date": s.date,
                "study_time": s.time,
                "accession_number": s.accession_number,
                "referring_physician_name": s.referring_physician_name,
            },
        )
    return people


def pseudonymize(
    series: list[SeriesInfo],
    people: dict[str, tuple[str, list[str]]],
    out_dir: str | os.PathLike[str],
    labels: str = "neutral",
) -> list[SeriesInfo]:
    """Give the series their subject labels and take every identity out of them.

    ``labels="neutral"``: ``01``, ``02``, ... (:func:`engine.private.assign_labels`: stable
    over re-runs, a new subject gets the next number); ``"patientid"``: keep the label the
    scan gave (the PatientID made alphanumeric, or ``--subject-pattern``'s). The PatientID ->
    label map and the identity values go to ``OUT/private/subject_map.tsv`` only; in the
    series the ``patient_id`` column carries the label, accession and referring physician are
    emptied, and the identity values are redacted from protocol/series names and file names.
    """
    from engine.private import Person, assign_labels, read_map, redact, study_values, write_map

    existing = read_map(out_dir)
    if labels == "neutral":
        persons = assign_labels(people, existing)
    else:
        by_pid = {p.patient_id: p for p in existing}
        for s in series:
            p = by_pid.setdefault(s.patient_id, Person(s.patient_id))
            p.subject = s.subject
        for pid, (first, ids) in people.items():
            p = by_pid.setdefault(pid, Person(pid, bids_label(pid) or "unknown"))
            p.first_study = min(filter(None, [p.first_study, first]), default="")
            p.identities = sorted(set(p.identities) | set(ids))
        persons = list(by_pid.values())
    write_map(out_dir, persons)
    label = {p.patient_id: p.subject for p in persons}
    values = study_values(persons)
    for s in series:
        if labels == "neutral":
            s.subject = label.get(s.patient_id, s.subject)
        s.patient_id = s.subject
        s.accession_number = ""
        s.referring_physician_name = ""
        for attr in REDACTED_FIELDS:
            setattr(s, attr, redact(getattr(s, attr), values))
    series.sort(key=lambda s: s.subject)  # stable: acquisition order within a subject
    total = 0
    for s in series:
        total += s.series_files
        s.total_files_till_now = total
    return series


def _number_sessions(series: list[SeriesInfo], rows: list[tuple[tuple, SeriesInfo]]) -> None:
    studies: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for key, s in rows:
        k = (key[1], key[2], s.study_uid)
        if k not in studies[s.subject]:
            studies[s.subject].append(k)
    if not any(len(v) > 1 for v in studies.values()):
        return
    label: dict[tuple[str, str], str] = {}
    for subj, lst in studies.items():
        for i, k in enumerate(sorted(lst), start=1):
            label[(subj, k[2])] = f"{i:02d}"
    for s in series:
        s.session = label[(s.subject, s.study_uid)]


def _series_from(
    f0: dict[str, Any], members: list[tuple[str, dict[str, Any]]], first_path: str
) -> SeriesInfo:
    n_files = len(members)
    image_type = list(f0.get("image_type") or [])
    protocol = f0.get("protocol_name", "")
    if not protocol.strip():
        protocol = f0.get("csa_protocol_name", "") or f0.get("series_description", "")
    sn = f0.get("series_number")
    rows, cols = f0.get("rows", 0), f0.get("columns", 0)
    # slices / volumes
    ipps: set[tuple[float, ...]] = set()
    echo_numbers: set[int] = set()
    echo_times: set[float] = set()
    bvals: set[float] = set()
    bdirs: set[tuple[float, ...]] = set()
    complex_parts: set[str] = set()
    positives: set[str] = set()
    total_frames = 0
    multiframe = False
    for _, f in members:
        ipps.update(tuple(p) for p in f.get("ipps", []))
        echo_numbers.update(f.get("echo_numbers", []))
        echo_times.update(f.get("echo_times", []))
        bvals.update(f.get("bvalues", []))
        bdirs.update(tuple(d) for d in f.get("bdirs", []))
        complex_parts.update(f.get("complex_parts", []))
        positives.update(f.get("pe_positive", []))
        nf = int(f.get("n_frames") or 1)
        total_frames += nf
        multiframe = multiframe or nf > 1
    if f0.get("is_mosaic"):
        n_slices = int(f0.get("n_mosaic") or 1)
        n_volumes = n_files
        mosaic_n = int(-(-(n_slices**0.5) // 1)) if n_slices else 1
        shape = [rows // max(mosaic_n, 1), cols // max(mosaic_n, 1), n_slices]
    else:
        n_slices = max(len(ipps), 1)
        n_volumes = max(total_frames // n_slices, 1)
        if multiframe:
            nf0 = int(f0.get("n_frames") or 1)
            slices0 = max(len(f0.get("ipps", [])), 1)
            shape = [rows, cols]
            if nf0 > 1:
                shape.append(slices0)
                if nf0 // slices0 > 1:
                    shape.append(nf0 // slices0)
        else:
            shape = [rows, cols]
    size = shape + [n_files]
    if len(size) < 4:
        size.append(1)
    date, time = _heudiconv_date_time(f0)
    manufacturer = f0.get("manufacturer", "")
    tr = f0.get("TR_ms")
    te = f0.get("TE_ms")
    sop_uid = f0.get("sop_class_uid", "")
    return SeriesInfo(
        example_dcm_file=os.path.basename(first_path),
        series_id=f"{sn if sn is not None else ''}-{protocol}",
        dcm_dir_name=os.path.basename(os.path.dirname(first_path)),
        series_files=n_files,
        dim1=int(size[0]),
        dim2=int(size[1]),
        dim3=int(size[2]),
        dim4=int(size[3]),
        TR=(tr / 1000.0) if tr is not None else None,
        TE=te,
        protocol_name=protocol,
        is_motion_corrected="MOCO" in image_type,
        is_derived="derived" in [x.lower() for x in image_type],
        patient_id=f0.get("patient_id", ""),
        study_description=f0.get("study_description", ""),
        referring_physician_name=f0.get("referring_physician_name", ""),
        series_description=f0.get("series_description", ""),
        sequence_name=f0.get("sequence_name", ""),
        image_type=tuple(image_type),
        accession_number=f0.get("accession_number", ""),
        patient_age=f0.get("patient_age", ""),
        patient_sex=f0.get("patient_sex", ""),
        date=date,
        time=time,
        manufacturer=manufacturer,
        model_name=f0.get("model_name", ""),
        field_strength=f0.get("field_strength"),
        series_number=sn,
        acquisition_time=f0.get("acquisition_time", "") or time,
        modality=f0.get("modality", ""),
        sop_class=SOP_CLASSES.get(sop_uid, sop_uid),
        is_multiframe=multiframe,
        mr_acquisition_type=f0.get("mr_acquisition_type", ""),
        scanning_sequence=f0.get("scanning_sequence", ""),
        sequence_variant=f0.get("sequence_variant", ""),
        scan_options=f0.get("scan_options", ""),
        pulse_sequence=f0.get("pulse_sequence", ""),
        pe_axis=f0.get("pe_axis", ""),
        pe_direction=_pe_direction(
            f0.get("pe_axis", ""), positives, manufacturer, f0.get("ge_view_order", "")
        ),
        echo_numbers=sorted(echo_numbers),
        echo_times=sorted(echo_times),
        n_volumes=n_volumes,
        bvalues=sorted(bvals),
        n_diffusion_directions=len(bdirs),
        inversion_time=f0.get("TI_ms"),
        flip_angle=f0.get("flip_angle"),
        slice_thickness=f0.get("slice_thickness"),
        pixel_spacing=list(f0.get("pixel_spacing") or []),
        n_slices=n_slices,
        orientation=_orientation(f0.get("iop") or []),
        image_type_parts=image_type + _other_image_types(members, image_type),
        complex_part=_complex_part(complex_parts, image_type),
    )
