"""The one data model shared by CLI, engine protocol and TUI.

series (one row of ``aggregated_dicominfo.tsv``) -> group (same acquisition protocol)
-> mapping (BIDS name or skip, with evidence, confidence and source rules/llm/user).

The first columns of a series row are heudiconv's ``SeqInfo`` fields with heudiconv's names,
units and meaning (TR in seconds, TE in milliseconds, ``image_type`` as a tuple), so a
``dicominfo.tsv`` written by heudiconv reads straight into :class:`SeriesInfo`.
"""

from __future__ import annotations

import copy as _copy
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from engine.bids_schema import BidsName
from engine.cells import cell_list, decode, encode, uncell_list

# heudiconv.utils.SeqInfo._fields minus "custom" (heudiconv does not write it to dicominfo.tsv).
SEQINFO_COLUMNS: tuple[str, ...] = (
    "total_files_till_now",
    "example_dcm_file",
    "series_id",
    "dcm_dir_name",
    "series_files",
    "unspecified",
    "dim1",
    "dim2",
    "dim3",
    "dim4",
    "TR",
    "TE",
    "protocol_name",
    "is_motion_corrected",
    "is_derived",
    "patient_id",
    "study_description",
    "referring_physician_name",
    "series_description",
    "sequence_name",
    "image_type",
    "accession_number",
    "patient_age",
    "patient_sex",
    "date",
    "series_uid",
    "time",
)

Source = Literal["rules", "llm", "user"]
UNSURE_THRESHOLD = 0.7  # default of the `confidence_threshold` setting: below it, a person looks
ACTIONS = ("accept", "edit", "skip", "unskip")
USER_SKIP = "skipped by user"


@dataclass
class SeriesInfo:
    """Header facts of one DICOM series (split by SeriesInstanceUID, never merged).

    Units follow heudiconv (TR s, TE ms) and DICOM (TI ms, flip degrees, times HHMMSS.ffffff).
    List-valued extras are empty when unknown; scalar extras are ``None`` or ``""`` when unknown.
    """

    # --- heudiconv SeqInfo columns -------------------------------------------------------
    total_files_till_now: int = 0
    example_dcm_file: str = ""
    series_id: str = ""
    dcm_dir_name: str = ""
    series_files: int = 0
    unspecified: str = ""
    dim1: int = 0
    dim2: int = 0
    dim3: int = 0
    dim4: int = 1
    TR: float | None = None
    TE: float | None = None
    protocol_name: str = ""
    is_motion_corrected: bool = False
    is_derived: bool = False
    patient_id: str = ""
    study_description: str = ""
    referring_physician_name: str = ""
    series_description: str = ""
    sequence_name: str = ""
    image_type: tuple[str, ...] = ()
    accession_number: str = ""
    patient_age: str = ""
    patient_sex: str = ""
    date: str = ""
    series_uid: str = ""
    time: str = ""
    # --- who/when ----------------------------------------------------------------------
    subject: str = ""
    session: str = ""
    # --- extra facts a mapper needs ----------------------------------------------------------
    manufacturer: str = ""
    model_name: str = ""
    field_strength: float | None = None
    study_uid: str = ""
    series_number: int | None = None
    acquisition_time: str = ""
    modality: str = ""
    sop_class: str = ""  # "MR", "EnhancedMR", "SecondaryCapture", "RawData", "MRSpectroscopy", ...
    is_multiframe: bool = False
    mr_acquisition_type: str = ""  # "2D" / "3D"
    scanning_sequence: str = ""
    sequence_variant: str = ""
    scan_options: str = ""
    pulse_sequence: str = ""  # vendor sequence/protocol name (GE PulseSequenceName, Philips, XA)
    pe_axis: str = ""  # InPlanePhaseEncodingDirection: "ROW" / "COL"
    pe_direction: str = ""  # BIDS PhaseEncodingDirection when the polarity is known: i i- j j- k k-
    echo_numbers: list[int] = field(default_factory=list)
    echo_times: list[float] = field(default_factory=list)  # ms, one per echo
    n_volumes: int = 1
    bvalues: list[float] = field(default_factory=list)  # distinct b-values present
    n_diffusion_directions: int = 0
    inversion_time: float | None = None  # ms
    flip_angle: float | None = None  # degrees
    slice_thickness: float | None = None
    pixel_spacing: list[float] = field(default_factory=list)
    n_slices: int = 0
    orientation: str = ""  # "sag" / "cor" / "tra" / "obl" from ImageOrientationPatient
    image_type_parts: list[str] = field(default_factory=list)
    complex_part: str = ""  # "mag" / "phase" / "real" / "imag" when ImageType or vendor says so

    @property
    def key(self) -> str:
        """A stable identity within a workspace: subject, session and series id."""
        return f"{self.subject}|{self.session}|{self.series_id}"

    # --- TSV ---------------------------------------------------------------------------
    def to_row(self) -> dict[str, str]:
        """Strings for a TSV row; tuples as heudiconv writes them, lists as JSON."""
        row: dict[str, str] = {}
        for f in fields(self):
            row[f.name] = encode(getattr(self, f.name))
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> SeriesInfo:
        """Parse a TSV row (ours or heudiconv's ``dicominfo.tsv``); unknown columns ignored."""
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in row:
                continue
            kwargs[f.name] = decode(f.type, row[f.name])
        return cls(**kwargs)


SERIES_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(SeriesInfo))


@dataclass
class Group:
    """Series that share one acquisition protocol across subjects and sessions."""

    group_id: str
    label: str  # normalised protocol name, human readable
    series_keys: list[str] = field(default_factory=list)  # SeriesInfo.key of each member
    signature: dict[str, Any] = field(default_factory=dict)  # the facts that define the group
    flags: list[str] = field(default_factory=list)  # e.g. "aborted", "drift:TR", "repeated"
    series_flags: dict[str, list[str]] = field(default_factory=dict)  # member key -> flags
    # (e.g. "aborted:12/200"): computed once by grouping, read by mapping, review and the TUI

    def to_row(self) -> dict[str, str]:
        """One row of ``aggregated_dicominfo_groups.tsv``: readable facts, JSON for the rest."""
        row = {
            "group_id": self.group_id,
            "label": self.label,
            "n_series": str(len(self.series_keys)),
            "flags": cell_list(self.flags),
            "series_keys": cell_list(self.series_keys),
            "series_flags": json.dumps(self.series_flags, ensure_ascii=False, sort_keys=True),
            "signature": json.dumps(self.signature, ensure_ascii=False, sort_keys=True),
        }
        for c in GROUP_SIGNATURE_COLUMNS:
            v = self.signature.get(c)
            if isinstance(v, list):
                v = "x".join(map(str, v)) if c == "matrix" else "\\".join(map(str, v))
            row[c] = "" if v is None else str(v)
        return row

    @classmethod
    def from_row(cls, r: dict[str, Any]) -> Group:
        sig_raw = r.get("signature") or ""
        if sig_raw.startswith("{"):
            sig = json.loads(sig_raw)
        else:  # written before the signature column: the readable columns as text
            sig = {c: r.get(c, "") for c in GROUP_SIGNATURE_COLUMNS}
        sf_raw = r.get("series_flags") or ""
        return cls(
            group_id=r["group_id"],
            label=r.get("label", ""),
            series_keys=uncell_list(r.get("series_keys")),
            signature=sig,
            flags=uncell_list(r.get("flags")),
            series_flags=json.loads(sf_raw) if sf_raw.startswith("{") else {},
        )


# Readable columns of the groups table (the full signature is in its JSON column).
GROUP_SIGNATURE_COLUMNS: tuple[str, ...] = (
    "protocol",
    "description",
    "family",
    "image_type",
    "matrix",
    "TR",
    "TE",
    "TI",
    "flip",
    "echoes",
    "pe",
    "typical_frames",
)
GROUP_COLUMNS: tuple[str, ...] = (
    "group_id",
    "label",
    "n_series",
    "flags",
    *GROUP_SIGNATURE_COLUMNS,
    "series_keys",
    "series_flags",
    "signature",
)


@dataclass
class Mapping:
    """The decision for one group: a BIDS name (datatype, suffix, entities) or a skip.

    ``entities`` never holds ``sub``/``ses``/``run``: those come from the series.
    """

    group_id: str
    datatype: str = ""
    suffix: str = ""
    entities: dict[str, str] = field(default_factory=dict)
    skip_reason: str = ""  # non-empty means "do not convert"
    confidence: float = 0.0
    evidence: list[str] = field(default_factory=list)
    source: Source = "rules"
    intended_for: list[str] = field(default_factory=list)  # group ids a field map serves
    rationale: str = ""  # free text (LLM stream or user note)
    echoes: int = 0  # echoes held in ONE series of this group (heudiconv adds _echo-N itself)
    extra_suffixes: list[str] = field(default_factory=list)  # more files per series, e.g.
    # ["magnitude2"] beside suffix magnitude1 for a two-echo GRE field-map magnitude series

    @property
    def is_skip(self) -> bool:
        return bool(self.skip_reason)

    @property
    def name(self) -> BidsName | None:
        """The BIDS name this group writes (no sub/ses/run), ``None`` for a skip."""
        if self.is_skip or not (self.datatype and self.suffix):
            return None
        return BidsName.of(self.datatype, self.suffix, self.entities)

    @property
    def display(self) -> str:
        """``func/task-rest_bold`` or ``(skip: reason)``: how a person reads the decision."""
        n = self.name
        return n.template if n is not None else f"(skip: {self.skip_reason or 'no name'})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Mapping:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_row(self) -> dict[str, str]:
        """One row of the mapping tables: every list/dict cell in JSON (any text round-trips)."""
        n = self.name
        return {
            "group_id": self.group_id,
            "datatype": self.datatype,
            "suffix": self.suffix,
            "entities": json.dumps(self.entities, ensure_ascii=False),
            "bids_name": n.template if n else "",
            "skip_reason": self.skip_reason,
            "confidence": repr(float(self.confidence)),
            "evidence": cell_list(self.evidence),
            "source": self.source,
            "intended_for": cell_list(self.intended_for),
            "rationale": self.rationale,
            "echoes": str(self.echoes),
            "extra_suffixes": cell_list(self.extra_suffixes),
        }

    @classmethod
    def from_row(cls, r: dict[str, Any]) -> Mapping:
        ents_raw = (r.get("entities") or "").strip()
        if ents_raw.startswith("{"):
            entities = {str(k): str(v) for k, v in json.loads(ents_raw).items()}
        else:  # legacy "task-rest_acq-x"
            entities = {}
            for part in ents_raw.split("_"):
                k, sep, v = part.partition("-")
                if sep:
                    entities[k.strip()] = v.strip()
        try:
            conf = float(r.get("confidence") or 0.0)
        except ValueError:
            conf = 0.0
        try:
            echoes = int(float(r.get("echoes") or 0))
        except ValueError:
            echoes = 0
        source = (r.get("source") or "rules").strip()
        return cls(
            group_id=r["group_id"],
            datatype=(r.get("datatype") or "").strip(),
            suffix=(r.get("suffix") or "").strip(),
            entities=entities,
            skip_reason=r.get("skip_reason") or "",
            confidence=conf,
            evidence=uncell_list(r.get("evidence"), legacy_sep=" | "),
            source=source if source in ("rules", "llm", "user") else "rules",  # type: ignore[arg-type]
            intended_for=uncell_list(r.get("intended_for")),
            rationale=r.get("rationale") or "",
            echoes=echoes,
            extra_suffixes=uncell_list(r.get("extra_suffixes")),
        )


MAPPING_COLUMNS: tuple[str, ...] = (
    "group_id",
    "datatype",
    "suffix",
    "entities",
    "bids_name",
    "skip_reason",
    "confidence",
    "evidence",
    "source",
    "intended_for",
    "rationale",
    "echoes",
    "extra_suffixes",
)


@dataclass
class SeriesAssignment:
    """Where one series ends up: a BIDS path relative to the dataset root, or a skip."""

    subject: str
    session: str
    series_id: str
    group_id: str
    bids_path: str = ""  # e.g. sub-01/ses-1/func/sub-01_ses-1_task-rest_run-1_bold
    skip_reason: str = ""
    extra_paths: list[str] = field(default_factory=list)  # further files of the same series
    # (e.g. the magnitude2 path beside a magnitude1 bids_path)

    @property
    def key(self) -> str:
        return f"{self.subject}|{self.session}|{self.series_id}"

    def to_row(self) -> dict[str, str]:
        return {
            "subject": self.subject,
            "session": self.session,
            "series_id": self.series_id,
            "group_id": self.group_id,
            "bids_path": self.bids_path,
            "skip_reason": self.skip_reason,
            "extra_paths": cell_list(self.extra_paths),
        }

    @classmethod
    def from_row(cls, r: dict[str, Any]) -> SeriesAssignment:
        return cls(
            subject=r.get("subject", ""),
            session=r.get("session", ""),
            series_id=r.get("series_id", ""),
            group_id=r.get("group_id", ""),
            bids_path=(r.get("bids_path") or "").strip(),
            skip_reason=r.get("skip_reason") or "",
            extra_paths=uncell_list(r.get("extra_paths")),
        )


ASSIGNMENT_COLUMNS: tuple[str, ...] = (
    "subject",
    "session",
    "series_id",
    "group_id",
    "bids_path",
    "skip_reason",
    "extra_paths",
)


@dataclass
class Decision:
    """One decision about one group. ``datatype``/``suffix``/``entities`` name it (accept, edit,
    unskip with a name); ``skip_reason`` is set for a skip."""

    group_id: str
    action: str
    datatype: str = ""
    suffix: str = ""
    entities: dict[str, str] = field(default_factory=dict)
    skip_reason: str = ""
    note: str = ""
    seq: int = 0
    time: float = 0.0

    @property
    def has_name(self) -> bool:
        return bool(self.datatype and self.suffix)

    @property
    def name(self) -> BidsName | None:
        return BidsName.of(self.datatype, self.suffix, self.entities) if self.has_name else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "op": "decide",
            "seq": self.seq,
            "time": self.time,
            "group_id": self.group_id,
            "action": self.action,
            "datatype": self.datatype,
            "suffix": self.suffix,
            "entities": dict(self.entities),
            "skip_reason": self.skip_reason,
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Decision:
        return cls(
            group_id=str(d["group_id"]),
            action=str(d["action"]),
            datatype=str(d.get("datatype") or ""),
            suffix=str(d.get("suffix") or ""),
            entities={str(k): str(v) for k, v in (d.get("entities") or {}).items()},
            skip_reason=str(d.get("skip_reason") or ""),
            note=str(d.get("note") or ""),
            seq=int(d.get("seq") or 0),
            time=float(d.get("time") or 0.0),
        )

    def describe(self) -> str:
        if self.action == "skip":
            return f"skip ({self.skip_reason or USER_SKIP})"
        name = self.name
        return f"{self.action} {name.template}" if name else self.action


def apply_decision(m: Mapping, d: Decision) -> Mapping:
    """A copy of ``m`` with the person's decision applied (``source="user"``)."""
    out = _copy.deepcopy(m)
    if d.action == "skip":
        out.skip_reason = d.skip_reason or USER_SKIP
        out.datatype, out.suffix, out.entities = "", "", {}
        out.extra_suffixes = []
    elif d.has_name:
        changed = (d.datatype, d.suffix, d.entities) != (m.datatype, m.suffix, m.entities)
        out.datatype, out.suffix, out.entities = d.datatype, d.suffix, dict(d.entities)
        out.skip_reason = ""
        if changed:
            out.extra_suffixes, out.echoes = [], m.echoes
    elif d.action == "unskip" and m.is_skip:
        return out  # a rules/LLM skip needs a name to be undone; nothing to apply
    out.source = "user"
    out.confidence = 1.0
    note = f"user decision: {d.describe()}"
    out.evidence = [e for e in m.evidence if not e.startswith("user decision: ")] + [note]
    if d.note:
        out.rationale = d.note
    return out
