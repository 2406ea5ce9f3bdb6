"""The facts the rules read from one series: names, tokens, sequence, ImageType, volume
count, phase-encoding direction, phase by name, and the task label a protocol name carries."""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.grouping import n_echoes, sequence_family
from engine.model import SeriesInfo

_TOKEN_SPLIT = re.compile(r"[^0-9a-zA-Z*]+")


@dataclass
class Facts:
    """What the rules look at, derived once per group from a representative series."""

    name: str  # protocol + description, lower case
    desc: str
    tokens: set[str]
    seq: str  # vendor sequence name, lower case, no leading '*'
    family: str
    itype: set[str]
    nvol: int
    tr_s: float | None
    te_ms: float | None
    ti_ms: float | None
    echoes: int
    derived: bool
    moco: bool
    direction: str  # AP/PA/LR/RL/SI/IS or ""
    series: SeriesInfo

    @property
    def is_phase(self) -> bool:
        return (
            bool(self.itype & {"P", "PHASE"})
            or self.series.complex_part == "phase"
            or phase_by_name(self.series)
        )

    @property
    def phase_why(self) -> str:
        if self.itype & {"P", "PHASE"}:
            return "ImageType P"
        if self.series.complex_part == "phase":
            return "complex part phase"
        return "description ends in _Pha (Siemens XA marks phase only in the name)"

    @property
    def is_echo2_only(self) -> bool:
        """One echo, numbered 2, not marked magnitude: the phase difference of a GRE field map."""
        return self.series.echo_numbers == [2] and not self.itype & {"M", "MAG"}

    def has(self, *words: str) -> bool:
        return any(w in self.tokens for w in words)

    def name_has(self, pattern: str) -> bool:
        return re.search(pattern, self.name) is not None


_DIR_RE = re.compile(
    r"(?:^|[_\s\-.(=:])(AP|PA|LR|RL|A-P|P-A|L-R|R-L|A>>P|P>>A|R>>L|L>>R)(?=$|[_\s\-.)])", re.I
)
_DIR_SI_RE = re.compile(r"(?:^|[_\s\-.=:])(SI|IS)(?=$|[_\s\-.])")
# PhaseEncodingDirection is in the voxel frame of dcm2niix's NIfTI, so its anatomical meaning
# depends on the slice orientation: there +i runs right->left, and +j runs posterior->anterior
# (axial) or inferior->superior (coronal, sagittal); sagittal +i runs anterior->posterior.
_PE_TO_DIR: dict[str, dict[str, str]] = {
    "tra": {"i": "RL", "i-": "LR", "j": "PA", "j-": "AP", "k": "IS", "k-": "SI"},
    "cor": {"i": "RL", "i-": "LR", "j": "IS", "j-": "SI", "k": "AP", "k-": "PA"},
    "sag": {"i": "AP", "i-": "PA", "j": "IS", "j-": "SI", "k": "LR", "k-": "RL"},
}


_PHASE_NAME_RE = re.compile(r"(?i)[_\s-](?:pha|phase|ph)$")


def phase_by_name(s: SeriesInfo) -> bool:
    """Siemens XA (enhanced) writes ImageType ORIGINAL/PRIMARY/FMRI/NONE for the phase series of
    a BOLD run too: only the ``_Pha`` ending of its series description says it is phase."""
    return bool(_PHASE_NAME_RE.search((s.series_description or "").strip())) and not (
        {p.upper() for p in s.image_type} & {"M", "MAG", "MAGNITUDE"}
    )


def volumes(s: SeriesInfo) -> tuple[int, str]:
    """The number of volumes and where it came from. heudiconv's dim4 is 1 for an enhanced
    (multi-frame) export whose files are one volume each: there the file count is the volume
    count (a classic export has one file per slice, as many as dim3)."""
    if s.n_volumes > 1:
        return s.n_volumes, "volume count"
    if s.dim4 > 1:
        return s.dim4, "dim4"
    files = s.series_files
    itype = {p.upper() for p in s.image_type}
    enhanced = s.is_multiframe or bool(itype & {"FMRI", "DIFFUSION", "ASL", "MFSPLIT"})
    if files > 1 and s.dim3 > 1 and files != s.dim3 and (enhanced or files % s.dim3):
        return files, f"{files} files of {s.dim3} slices each (enhanced export, dim4 1)"
    return 1, ""


def direction_of(s: SeriesInfo) -> tuple[str, str]:
    """Phase-encoding direction label and where it came from (name beats header polarity)."""
    for text in (s.series_description, s.protocol_name):
        m = _DIR_RE.search(text or "") or _DIR_SI_RE.search(text or "")
        if m:
            return re.sub(r"[^A-Z]", "", m.group(1).upper()), f"direction {m.group(1)} in name"
    label = _PE_TO_DIR.get(s.orientation, {}).get(s.pe_direction, "")
    if label:
        return label, f"PhaseEncodingDirection {s.pe_direction} in a {s.orientation} slice"
    return "", ""


def facts_of(s: SeriesInfo) -> Facts:
    parts = [s.protocol_name, s.series_description]
    if (s.series_description or "").strip().lower() == (s.protocol_name or "").strip().lower():
        parts = [s.protocol_name]  # the same text twice would read "localizer localizer"
    name = " ".join(p for p in parts if p).lower()
    tokens = {t for t in _TOKEN_SPLIT.split(name) if t}
    name = re.sub(r"[_()\[\].,;]+", " ", name)  # so that \b splits t1w_3d_tfe into words
    seq = (s.sequence_name or "").strip().lower().lstrip("*")
    if seq in {"not found", "none"}:
        seq = ""
    pseq = (s.pulse_sequence or "").strip().lower().lstrip("*")
    if pseq and pseq not in seq:
        seq = f"{seq} {pseq}".strip()
    if not seq:
        # Philips writes the contrast family into ImageType (M_FFE, M_SE, M_IR, ...)
        fam = [p.split("_", 1)[1] for p in s.image_type if re.match(r"^[MPRI]_[A-Z]+$", p)]
        if fam:
            seq = fam[0].lower()
    itype = {p.strip().upper() for p in list(s.image_type) + list(s.image_type_parts) if p}
    tr = s.TR if s.TR is not None and s.TR > 0 else None
    te = s.TE if s.TE is not None and s.TE > 0 else None
    if s.echo_times:
        te = te or min(s.echo_times)
    nvol, _ = volumes(s)
    direction, _ = direction_of(s)
    return Facts(
        name=name,
        desc=(s.series_description or "").lower(),
        tokens=tokens,
        seq=seq,
        family=sequence_family(s),
        itype=itype,
        nvol=nvol,
        tr_s=tr,
        te_ms=te,
        ti_ms=s.inversion_time if s.inversion_time and s.inversion_time > 0 else None,
        echoes=n_echoes(s),
        derived=s.is_derived or "DERIVED" in itype,
        moco=s.is_motion_corrected or "MOCO" in itype or "mocoseries" in name.replace(" ", ""),
        direction=direction,
        series=s,
    )


# --- task labels -----------------------------------------------------------------------------

_NOISE = re.compile(
    r"^(?:ep2d|ep3d|epi|epfid|bold|fmri|func|functional|moco|mosaic|post|pre|task|s\d+|ch\d+|"
    r"p\d+|mb\d*|sms\d*|iso|\d+(?:p\d+)?mm|wip|sense|clear|slices?|\d+|fe|feepi|sbref|run|"
    r"ap|pa|lr|rl|cmrr|mbep2d|2d|3d|tra|sag|cor|ax|axial|asset|arc|ipat\d*|grappa\d*|"
    r"tr\d+|te\d+|v\d+|x\d+|\d+x\d+|ms|hz|ss|gre|me|multiecho|multiband|hcp|abcd|nd|norm|"
    r"mag|magnitude|phase|pha|ph|mosaic|dir|ep|se|ge|echo|e\d|fov\d*|bw\d*|psn|fs|"
    # acquisition codes that are not the task: multiband/echo (ip2me4, me4, mb3, sb),
    # resolution (2iso, iso2mm, 2p4mm), coil (12channelcoil, 20ch, 64ch), speed, acceleration
    r"ip\d+(?:me\d+)?|me\d+|sb|\d+(?:p\d+)?iso(?:mm)?|iso\d+(?:p\d+)?(?:mm)?|"
    r"\d*ch(?:annel)?(?:coil)?|coil|head|neck|fast|slow|accel\d*|af\d+|hires|highres|lowres|"
    r"\d+(?:p\d+)?(?:s|sec)|tr|te|ms\d+|pmu|physio|eja|ssrb|mosaic\d*)$"
)
_REST = {"rest", "resting", "rs", "rsfmri", "restingstate", "rsbold", "resting-state"}


def task_label(s: SeriesInfo) -> tuple[str, str]:
    """A BIDS task label from the protocol name: vendor noise removed, lower case."""
    text = s.protocol_name or s.series_description
    text = re.sub(r"__.*$", "", text)
    text = re.sub(r"(?i)(?:^|[_\s-])(?:run|rep)[-_ ]?\d+", " ", text)
    text = _DIR_RE.sub(" ", text)
    words = [w.lower() for w in re.split(r"[^0-9a-zA-Z]+", text) if w]
    kept: list[str] = []
    for w in words:
        if w in _REST or w.startswith("resting"):
            return "rest", f"task 'rest' from {w!r} in name"
        if _NOISE.match(w):
            continue
        kept.append(w)
    if not kept:
        return "", ""
    label = "".join(kept)[:40]
    return label, f"task {label!r} from name {text!r}"
