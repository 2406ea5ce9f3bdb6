"""Evidence-based classification of one protocol group into a BIDS datatype/suffix/entities.

Every decision records the header facts that made it (``evidence``) and a confidence. Facts come
from heudiconv's ``dicominfo.tsv`` columns first (sequence name, ImageType, dims, TR/TE, names);
the richer optional facts (b-values, echo numbers, TI, PE direction) sharpen it when present.
Vendor knowledge: Siemens (tfl3d, spc, tse, tir, fl2d/3d, fm2d, epfid, ep_b, tgse), GE
(efgre3d/BRAVO, Cube, epiRT, epi2, fgre, B0map, 3dasl), Philips (TFE, TSE, FFE, FEEPI, DwiSE).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from engine.grouping import frames, n_echoes, sequence_family
from engine.mapping.reproin import ReproinSpec, parse_reproin
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


@dataclass
class Decision:
    datatype: str = ""
    suffix: str = ""
    entities: dict[str, str] = field(default_factory=dict)
    skip: str = ""
    confidence: float = 0.0
    evidence: list[str] = field(default_factory=list)
    echoes: int = 0  # echoes held in one series (heudiconv then adds _echo-N itself)
    extra_suffixes: list[str] = field(default_factory=list)  # e.g. magnitude2 beside magnitude1
    kind: str = ""  # internal hint for post-passes: "gre_fmap", "dwi_b0", "sbref", ...
    reproin: bool = False


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


def _is_vendor_b0_map(f: Facts) -> bool:
    """GE B0map/3db0map and Philips B0 field maps: one series holds a magnitude volume and a
    field map in Hz (two volumes, one echo, or Philips' "MIXED" image type), not two echoes."""
    if re.search(r"b0map|3db0|b0rf", f.seq):
        return True
    return f.nvol == 2 and not f.is_phase and (f.echoes <= 1 or "MIXED" in f.itype)


def _is_philips_b0_map(f: Facts) -> bool:
    """Philips keeps its B0 map as two echoes (the second the Hz map): left to a person, since
    heudiconv's echo renaming of that pair is not BIDS."""
    return "MIXED" in f.itype or f.series.manufacturer.upper().startswith("PHILIPS")


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


# --- the rules --------------------------------------------------------------------------------

_NONIMAGE_SOP = {"secondarycapture", "rawdata", "mrspectroscopy", "encapsulatedpdf", "sr"}
_LOCALIZER = {
    "localizer",
    "localiser",
    "scout",
    "survey",
    "loc",
    "3plane",
    "tripilot",
    "aahead",
    "aascout",
    "smartbrain",
    "autoalign",
    "senseref",
    "coilsurvey",
    "refscan",
    "plane",
    "pilot",
    "calibration",
    "cal",
    "setter",
}
_REPORT = {
    "report",
    "phoenix",
    "phoenixzipreport",
    "screenshot",
    "screensave",
    "evidence",
    "dose",
    "physiolog",
    "physio",
    "csa",
    "examcard",
    "exam",
}
_DERIVED_KINDS = {
    "MPR": "multiplanar reformat",
    "MIP": "maximum intensity projection",
    "PROJECTION IMAGE": "projection image",
    "ADC": "ADC map",
    "FA": "FA map",
    "TRACEW": "trace-weighted image",
    "TENSOR": "tensor",
    "SUB": "subtraction",
    "MNIP": "minimum intensity projection",
    "PERFUSION": "perfusion map",
}


def _skip(reason: str, conf: float, *ev: str) -> Decision:
    return Decision(skip=reason, confidence=conf, evidence=[e for e in ev if e])


def _is_epi(f: Facts) -> bool:
    return bool(
        re.search(r"(?:^|\s)(?:epfid|ep2d|ep3d|epi|epse|feepi|fe_epi|seepi|mbep|ep_)", f.seq)
        or "epi" in f.seq
        or f.has("ep2d", "epi", "bold", "fmri", "feepi", "mbep2d")
        or "EP" in (f.series.scanning_sequence or "").upper().replace("\\", " ").split()
        or "FMRI" in f.itype  # Siemens XA: ORIGINAL/PRIMARY/FMRI/NONE, often no sequence name
    )


def _is_dwi(f: Facts) -> tuple[bool, str]:
    if "DIFFUSION" in f.itype:
        return True, "ImageType DIFFUSION"
    if max(f.series.bvalues or [0]) > 50 or f.series.n_diffusion_directions > 0:
        return True, f"b-values {sorted(f.series.bvalues)}"
    if re.search(r"(?:^|\s)(?:ep_b|re_b|ep2d_diff|dwise|dwi|ep_diff|epi2)", f.seq):
        return True, f"diffusion sequence {f.seq!r}"
    words = [
        w
        for w in ("dwi", "dti", "diff", "diffusion", "hardi", "dmri", "noddi", "msdti", "dsi")
        if w in f.tokens
    ]
    if words or re.search(r"\bb\d{3,4}\b|dti|dwi|diffusion", f.name):
        return True, f"diffusion word in name ({', '.join(words) or f.name.strip()!r})"
    return False, ""


def classify(s: SeriesInfo) -> Decision:
    """Decide one group's BIDS name from its representative series (before cross-group passes)."""
    f = facts_of(s)
    spec = parse_reproin(s.protocol_name, s.series_description)
    if spec is not None:
        d = from_reproin(spec, f)
        if d is not None:
            return d
    return from_evidence(f)


def from_reproin(spec: ReproinSpec, f: Facts) -> Decision | None:
    """A ReproIn name, interpreted as heudiconv's reproin heuristic would."""
    ev = [f"ReproIn name {spec.spec!r} ({spec.source_field})"]
    if spec.suffix.startswith("scout") or f.has("scout", "localizer"):
        return _skip("localizer/scout (ReproIn anat-scout)", 0.95, *ev)
    if f.derived and not f.moco and not (f.itype & {"UNI"}):
        return _skip("derived image (ReproIn skips derived series)", 0.9, *ev, "ImageType DERIVED")
    if f.moco:
        return _skip("scanner motion-corrected copy (MoCo)", 0.9, *ev, "ImageType MOCO")
    dt = spec.datatype
    if dt == "behav":
        return None
    suffix = spec.suffix
    ents = dict(spec.entities)
    d = Decision(datatype=dt, confidence=0.95, evidence=ev, reproin=True, echoes=f.echoes)
    if not suffix:
        if dt == "func":
            suffix = "bold"
            if f.is_phase:
                ents.setdefault("part", "phase")
                ev.append(f"{f.phase_why} -> part-phase")
        elif dt == "fmap":
            if f.is_phase or f.is_echo2_only:
                suffix = "phasediff"
                ev.append(f"{f.phase_why} -> phasediff")
            elif "DIFFUSION" in f.itype or "dir" in ents:
                suffix = "epi"
                ev.append("dir- given -> epi")
            else:
                suffix = "magnitude"
                ev.append("ImageType M -> magnitude")
        elif dt == "dwi":
            suffix = "dwi"
        elif dt == "perf":
            suffix = "asl"
        else:
            # anat without a suffix: let the evidence decide the contrast
            e = from_evidence(f)
            if e.datatype == "anat":
                e.entities.update({k: v for k, v in ents.items()})
                e.evidence = ev + e.evidence
                e.reproin = True
                return e
            return None
    if f.desc.endswith("_sbref") or f.has("sbref"):
        suffix = "sbref"
        d.kind = "sbref"
        ev.append("series description ends with _SBRef")
    if dt == "fmap" and suffix == "magnitude":
        if f.echoes == 2 or (f.echoes <= 1 and re.search(r"fm\d?d", f.seq)):
            suffix = "magnitude1"
            d.extra_suffixes = ["magnitude2"]
            d.echoes = 2
            ev.append("GRE field-map magnitude holds two echoes -> magnitude1 + magnitude2")
            d.kind = "gre_fmap"
        else:
            suffix = "magnitude1"
            d.kind = "gre_fmap"
    if dt == "fmap" and suffix in {"phasediff", "phase1", "phase2", "magnitude1", "magnitude2"}:
        d.kind = "gre_fmap"
    if dt == "anat" and (suffix in ("MP2RAGE", "UNIT1") or "mp2rage" in f.name):
        e = from_evidence(f)
        if e.datatype == "anat" and e.suffix in ("MP2RAGE", "UNIT1"):
            e.entities.update({k: v for k, v in ents.items() if k != "inv"})
            e.evidence = ev + e.evidence
            e.confidence = 0.95
            e.reproin = True
            return e
    # leftover non key-value word that is a known suffix
    for lo in spec.leftovers:
        if lo in ("MP2RAGE", "UNIT1", "T1map", "T2starw", "MEGRE"):
            suffix = lo
    if f.is_phase and dt in ("func", "anat", "dwi", "perf") and "part" not in ents:
        ents["part"] = "phase"
        ev.append("phase image (ImageType P / complex part) -> part-phase")
    d.suffix = suffix
    d.entities = ents
    return d


def from_evidence(f: Facts) -> Decision:
    s = f.series
    sop = (s.sop_class or "").lower().replace(" ", "")
    if sop in _NONIMAGE_SOP or (s.modality and s.modality.upper() not in {"MR", ""}):
        return _skip(
            f"not an MR image series ({s.sop_class or s.modality})",
            0.95,
            f"SOP class {s.sop_class or s.modality}",
        )
    rep = f.tokens & _REPORT
    if (
        rep
        or re.search(r"screen[\s_-]?save|exam[\s_-]?card", f.name)
        or f.itype
        & {
            "CSA REPORT",
            "SCREENSHOT",
            "SCREEN SAVE",
            "PHOENIXZIPREPORT",
            "EXAMCARD",
        }
    ):
        return _skip(
            "report/screenshot, not image data",
            0.9,
            f"{sorted(rep or f.itype & {'CSA REPORT', 'SCREENSHOT'})} in name/ImageType",
        )
    loc = f.tokens & _LOCALIZER
    if (
        loc
        or "LOCALIZER" in f.itype
        or re.search(r"aahead|3[-_ ]?plane|localis|localiz|scout|survey", f.name)
    ):
        if not (loc == {"cal"} and _is_epi(f) and f.nvol > 10):
            return _skip("localizer/scout/calibration", 0.95, f"name {f.name.strip()!r}")
    if f.moco:
        return _skip(
            "scanner motion-corrected copy (MoCo); the original is converted",
            0.95,
            "ImageType MOCO / MoCoSeries",
        )
    # MP2RAGE family before the derived skip: UNI images are DERIVED but are the product.
    if "mp2rage" in f.name.replace("-", "").replace("_", "") or f.itype & {"UNI", "INV1", "INV2"}:
        ev = [f"MP2RAGE in name/ImageType ({f.name.strip()!r})"]
        if f.itype & {"UNI"} or re.search(r"uni(?:[_ -]?images|[_ -]?den|t1)?\b", f.name):
            return Decision("anat", "UNIT1", {}, confidence=0.9, evidence=ev + ["UNI image"])
        m = re.search(r"inv[_ -]?([12])", f.name) or (
            re.search(r"([12])", "".join(sorted(f.itype & {"INV1", "INV2"})))
        )
        if m:
            d = Decision(
                "anat",
                "MP2RAGE",
                {"inv": m.group(1)},
                confidence=0.9,
                evidence=ev + [f"inversion {m.group(1)}"],
            )
            if f.is_phase:
                d.entities["part"] = "phase"
            return d
        if re.search(r"t1[_ -]?(?:images|map)", f.name):
            return _skip("derived T1 map (scanner-computed from MP2RAGE)", 0.7, *ev)
    if f.derived:
        kinds = [v for k, v in _DERIVED_KINDS.items() if k in f.itype]
        extra = ", ".join(kinds) or "scanner-derived image"
        return _skip(f"derived: {extra}", 0.9, f"ImageType {'/'.join(sorted(f.itype))}")
    dwi, dwi_ev = _is_dwi(f)
    epi = _is_epi(f)
    # --- diffusion
    if dwi and not re.search(r"fmap|field|sefm|topup|pepolar", f.name):
        ents = {"dir": f.direction} if f.direction else {}
        ev = [dwi_ev]
        if f.direction:
            ev.append(f"phase-encoding direction {f.direction}")
        d = Decision("dwi", "dwi", ents, confidence=0.9, evidence=ev, kind="dwi")
        if f.desc.endswith("_sbref") or f.has("sbref"):
            d.suffix, d.kind = "sbref", "sbref"
            d.evidence.append("_SBRef")
        elif f.is_phase:
            d.entities["part"] = "phase"
        return d
    # --- GRE field maps
    fm_seq = re.search(r"(?:^|\s)(?:fm\d?d|fm_|field)", f.seq) is not None
    fm_name = bool(
        re.search(
            r"field[\s_-]?map|fieldmap|fmap|b0[\s_-]?map|\bb0\b|delta[\s_-]?te|gre[_ ]?field|b0_?shim",
            f.name,
        )
    )
    if (fm_seq or fm_name) and not (epi and f.nvol > 1 and not fm_seq):
        ev = [
            f"field-map sequence {f.seq!r}" if fm_seq else f"field map in name {f.name.strip()!r}"
        ]
        if epi and not fm_seq:
            return _se_epi(f, ev)
        if _is_vendor_b0_map(f) and not _is_philips_b0_map(f):
            return Decision(
                "fmap",
                "fieldmap",
                {},
                confidence=0.75,
                evidence=ev
                + [
                    f"{f.nvol} volumes, one echo: a B0 map (magnitude + field map in Hz)",
                    "dcm2niix writes the field map and its magnitude -> fieldmap + magnitude",
                ],
                extra_suffixes=["magnitude"],
                kind="vendor_b0",
            )
        if _is_vendor_b0_map(f):
            return _skip(
                "Philips B0 map (magnitude and field map in Hz as two echoes of one series): "
                "BIDS fieldmap + magnitude; map by hand",
                0.5,
                *ev,
                f"{f.nvol} volumes in one series with {max(f.echoes, 1)} echo",
            )
        if (
            f.is_phase
            or f.is_echo2_only
            or (not f.itype & {"M", "MAG"} and re.search(r"phase|\bph\b|phdiff", f.desc))
        ):
            return Decision(
                "fmap",
                "phasediff",
                {},
                confidence=0.9 if fm_seq else 0.75,
                evidence=ev + [f.phase_why if f.is_phase else "second echo only / phase in name"],
                kind="gre_fmap",
            )
        gre_like = re.search(
            r"(?:^|\s)(?:gre|fgre|ffe|fl\d?d|fm\d?d|spgr)|\bgre\b", f.seq + " " + f.name
        )
        if f.itype & {"M", "MAG"} or fm_seq or f.echoes == 2 or s.complex_part == "mag" or gre_like:
            d = Decision(
                "fmap",
                "magnitude1",
                {},
                confidence=0.9 if fm_seq else 0.7,
                evidence=ev + ["ImageType M"],
                kind="gre_fmap",
            )
            if f.echoes == 2 or (f.echoes <= 1 and fm_seq and not s.echo_numbers):
                d.extra_suffixes = ["magnitude2"]
                d.echoes = 2
                d.evidence.append(
                    "two echoes in one series -> magnitude1 + magnitude2 at conversion"
                )
            return d
        return _skip(
            "field map of undetermined type (vendor B0 map without ImageType); map by hand",
            0.4,
            *ev,
        )
    # --- perfusion (ASL)
    if f.has("asl", "pcasl", "pasl", "casl", "tgse", "perfusion", "m0", "asl3d") or re.search(
        r"pcasl|pasl|tgse|3dasl|asl", f.seq + " " + f.name
    ):
        ev = [f"ASL in sequence/name ({f.seq or f.name.strip()!r})"]
        if f.has("m0", "m0scan") or re.search(r"m0\b|_m0", f.name):
            return Decision("perf", "m0scan", {}, confidence=0.8, evidence=ev + ["M0 in name"])
        return Decision("perf", "asl", {}, confidence=0.85, evidence=ev)
    # --- SE-EPI field maps
    if (
        epi
        and (
            re.search(
                r"sefm|se[_-]?epi|spin[_ -]?echo|topup|pepolar|blip|distortion|revpe|rpe|fmap|field",
                f.name,
            )
            or re.search(r"epse|seepi|se_epi", f.seq)
        )
        and f.nvol <= 10
    ):
        return _se_epi(f, [f"spin-echo EPI field map ({f.seq or f.name.strip()!r})"])
    # --- functional
    if f.desc.endswith("_sbref") or f.has("sbref"):
        task, tev = task_label(s)
        d = Decision(
            "func",
            "sbref",
            {"task": task or "unknown"},
            confidence=0.9,
            evidence=["_SBRef in description", tev],
            kind="sbref",
        )
        if f.is_phase:
            d.entities["part"] = "phase"
            d.evidence.append(f"{f.phase_why} -> part-phase")
        return d
    func_words = (
        f.has("bold", "fmri", "func", "functional", "task", "rest", "resting", "rsfmri", "movie")
        or "FMRI" in f.itype
    )
    if epi and (f.nvol > 3 or func_words or (f.nvol == 1 and s.dim3 > 200)):
        task, tev = task_label(s)
        ev = [f"gradient-echo EPI ({f.seq or 'EPI word in name'})"]
        if f.nvol > 1:
            why = volumes(s)[1]
            ev.append(f"{f.nvol} volumes" + (f" ({why})" if why.endswith("dim4 1)") else ""))
        elif s.dim3 > 200:
            ev.append(f"{s.dim3} stacked images (4D)")
        if tev:
            ev.append(tev)
        conf = 0.9 if (f.nvol > 10 or s.dim3 > 200) else 0.7
        if not task:
            task = "unknown"
            conf = 0.4
            ev.append(
                "name the task: no task word left in the protocol name once acquisition codes "
                "are removed (edit the name: `e` in the TUI, or `decide OUT GROUP --name`)"
            )
        d = Decision("func", "bold", {"task": task}, confidence=conf, evidence=ev, kind="bold")
        if f.is_phase:
            d.entities["part"] = "phase"
            d.evidence.append(f"{f.phase_why} -> part-phase")
        if f.echoes > 1:
            d.echoes = f.echoes
            d.evidence.append(f"{f.echoes} echoes in one series (heudiconv adds _echo-N)")
        return d
    if epi and f.nvol <= 3:
        d = _se_epi(f, [f"short EPI series ({f.nvol} volume(s))"])
        d.confidence = 0.5
        return d
    return _anat(f)


def _se_epi(f: Facts, ev: list[str]) -> Decision:
    ents = {}
    if f.direction:
        ents["dir"] = f.direction
        ev.append(f"phase-encoding direction {f.direction}")
    d = Decision(
        "fmap", "epi", ents, confidence=0.85 if f.direction else 0.6, evidence=ev, kind="se_epi"
    )
    return d


_CONTRAST_WORDS: list[tuple[str, str]] = [
    (r"flair|dark[\s_-]?fluid|darkfluid|\btirm?\b|spcir", "FLAIR"),
    (
        r"mp-?rage|\bt1w?\b|t1[_ -]|bravo|spgr|\btfe\b|t1tfe|3dt1|\bt1_|\bmprage|\bmpr\b|ir-?fspgr|fspgr",
        "T1w",
    ),
    (
        r"\bt2\*|t2star|t2s\b|\bswi\b|hemo|me[_-]?gre|megre|medic|merge|\bgre\b|t2_?star|susc",
        "T2starw",
    ),
    (r"\bpdw?\b|pd[_-]|proton[_ -]?density", "PDw"),
    (r"\bt2w?\b|t2[_ -]|\bspace\b|\bcube\b|\bspc\b|haste|ssfse", "T2w"),
    (r"\btof\b|angio|mra\b", "angio"),
]


def _planning(f: Facts) -> str:
    """Why a series looks like a 2D planning scan ("" when it does not): a 2D spoiled gradient
    echo with a short TE and a few slices (a sagittal ``t1_fl2d`` of 25 slices) plans the next
    acquisition; a structural scan has many slices or is 3D. T2*-weighted 2D GRE (long TE) and
    spin-echo scans are never taken for planning scans."""
    s = f.series
    two_d = (s.mr_acquisition_type or "").upper() == "2D" or re.search(r"fl2d|gre2d|fgre2d", f.seq)
    slices = s.n_slices or s.dim3
    short_te = f.te_ms is None or f.te_ms < 10
    if (
        two_d
        and 0 < slices <= 32
        and short_te
        and re.search(r"fl2d|fl_2d|flash|fgre|ffe", f.seq + " " + f.name)
    ):
        thick = f" of {s.slice_thickness:g} mm" if s.slice_thickness else ""
        return f"2D gradient echo with {slices} slices{thick} and short TE: a planning scan"
    return ""


def _anat(f: Facts) -> Decision:
    """Contrast by sequence, name and physics; each source votes, the best supported wins."""
    plan = _planning(f)
    if plan:
        return _skip(
            "planning scan (2D, few slices); convert it by editing the name if it is wanted",
            0.6,
            plan,
            f"sequence {f.seq!r}" if f.seq else "",
        )
    votes: dict[str, float] = {}
    ev: dict[str, list[str]] = {}

    def vote(label: str, w: float, why: str) -> None:
        votes[label] = votes.get(label, 0.0) + w
        ev.setdefault(label, []).append(why)

    seq = f.seq
    te, tr, ti = f.te_ms, f.tr_s, f.ti_ms
    # sequence family
    if re.search(r"tfl|mprage|efgre3d|bravo|t1tfe|(?:^|\s)tfe", seq):
        vote("T1w", 2.0, f"T1 gradient-echo sequence {seq!r}")
    elif re.search(r"spcir|tir|(?:^|\s)ir(?:\s|$|_)|flair", seq):
        if (ti and ti > 1400) or (tr and tr > 5) or re.search(r"spcir|flair", seq):
            vote("FLAIR", 2.0, f"inversion-recovery TSE {seq!r} with long TR/TI")
        else:
            vote("T1w", 1.0, f"inversion-recovery sequence {seq!r}")
    elif re.search(r"tse|fse|spc|cube|haste|ssfse|(?:^|\s)se(?:\s|$)|frfse", seq):
        if ti and ti > 1400:
            vote("FLAIR", 2.0, f"spin-echo {seq!r} with inversion TI {ti:g} ms")
        elif te and te >= 60:
            vote("T2w", 2.0, f"spin-echo {seq!r} with TE {te:g} ms")
        elif te and te < 35 and tr and tr > 1.5:
            vote("PDw", 1.5, f"spin-echo {seq!r} with short TE {te:g} ms and long TR")
        elif te and tr and tr < 1.2:
            vote("T1w", 1.5, f"spin-echo {seq!r} with short TR {tr:g} s")
        else:
            vote("T2w", 1.0, f"spin-echo {seq!r}")
    elif re.search(
        r"(?:^|\s)(?:fl\d?d|fl3d|fl2d|gre|ffe|fgre|me2d|me3d|medic|swi|fl_|de\d?d|spgr)", seq
    ):
        if te and te >= 12:
            vote("T2starw", 2.0, f"gradient echo {seq!r} with TE {te:g} ms")
        elif te and tr and tr < 0.05:
            vote("T1w", 1.0, f"spoiled gradient echo {seq!r} with short TR/TE")
        else:
            vote("T2starw", 0.5, f"gradient echo {seq!r}")
    if not votes:
        scan = set((f.series.scanning_sequence or "").upper().replace("\\", " ").split())
        if {"GR", "IR"} <= scan:
            vote("T1w", 1.0, "inversion-prepared gradient echo (ScanningSequence GR\\IR)")
        elif {"SE", "IR"} <= scan:
            vote("FLAIR" if (ti and ti > 1400) else "T1w", 1.0, "inversion-recovery spin echo")
    # names
    for pat, label in _CONTRAST_WORDS:
        m = re.search(pat, f.name)
        if m:
            vote(label, 2.2, f"{m.group(0).strip()!r} in name")
            break
    # physics when nothing else
    if not votes and te and tr:
        if ti and ti > 1400:
            vote("FLAIR", 1.0, f"TI {ti:g} ms")
        elif te >= 60 and tr > 1.5:
            vote("T2w", 1.0, f"TE {te:g} ms, TR {tr:g} s")
        elif te < 10 and tr < 1.0:
            vote("T1w", 1.0, f"TE {te:g} ms, TR {tr:g} s")
    if not votes:
        return _skip(
            "unrecognised series: no sequence, name or timing rule matched",
            0.3,
            f"name {f.name.strip()!r}",
            f"sequence {f.seq!r}" if f.seq else "",
        )
    best = max(votes, key=lambda k: votes[k])
    total = sum(votes.values())
    conf = round(min(0.95, 0.45 + 0.5 * votes[best] / total * min(1.0, votes[best] / 3.0)), 2)
    d = Decision("anat", best, {}, confidence=conf, evidence=ev[best], kind="anat")
    for other in votes:
        if other != best:
            d.evidence.append(f"(against: {other} — {'; '.join(ev[other])})")
    if f.is_phase:
        d.entities["part"] = "phase"
        d.evidence.append(f"{f.phase_why} -> part-phase")
    if f.echoes > 1:
        d.echoes = f.echoes
        d.evidence.append(f"{f.echoes} echoes in one series (heudiconv adds _echo-N)")
    if f.nvol > 1 and frames(f.series) > 1 and best in ("T1w", "T2w"):
        d.evidence.append(f"note: {f.nvol} volumes")
    return d
