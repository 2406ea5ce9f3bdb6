"""The one data model shared by CLI, engine protocol and TUI.

series (one row of ``aggregated_dicominfo.tsv``) -> group (same acquisition protocol)
-> mapping (BIDS name or skip, with evidence, confidence and source rules/llm/user).

The first columns of a series row are heudiconv's ``SeqInfo`` fields with heudiconv's names,
units and meaning (TR in seconds, TE in milliseconds, ``image_type`` as a tuple), so a
``dicominfo.tsv`` written by heudiconv reads straight into :class:`SeriesInfo`.
"""

from __future__ import annotations

import ast
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

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
            row[f.name] = _encode(getattr(self, f.name))
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> SeriesInfo:
        """Parse a TSV row (ours or heudiconv's ``dicominfo.tsv``); unknown columns ignored."""
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in row:
                continue
            kwargs[f.name] = _decode(f.type, row[f.name])
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Mapping:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


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


# --- encoding helpers -------------------------------------------------------------------


def _encode(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, tuple):
        return repr(value)
    if isinstance(value, list | dict):
        return json.dumps(value)
    if isinstance(value, float):
        return repr(value) if value != int(value) or abs(value) >= 1e15 else str(value)
    return str(value)


def _decode(type_name: Any, raw: Any) -> Any:
    """Decode one TSV cell according to the dataclass field's annotation string."""
    t = str(type_name)
    if raw is None or (isinstance(raw, float) and raw != raw):  # NaN from pandas
        raw = ""
    if not isinstance(raw, str):
        raw_s = str(raw)
    else:
        raw_s = raw
    raw_s = raw_s.strip() if t != "str" else raw_s
    if t == "bool":
        return raw_s.strip().lower() in {"true", "1", "yes"}
    if t == "int":
        return int(float(raw_s)) if raw_s.strip() else 0
    if t == "int | None":
        return int(float(raw_s)) if raw_s else None
    if t == "float | None":
        return float(raw_s) if raw_s else None
    if t == "tuple[str, ...]":
        if not raw_s:
            return ()
        try:
            val = ast.literal_eval(raw_s)
        except (ValueError, SyntaxError):
            val = [p for p in raw_s.replace("\\", ",").split(",") if p]
        if isinstance(val, str):
            val = [val]
        return tuple(str(v).strip() for v in val)
    if t.startswith("list["):
        if not raw_s:
            return []
        try:
            val = json.loads(raw_s)
        except json.JSONDecodeError:
            val = ast.literal_eval(raw_s)
        return list(val)
    return raw_s
