"""Evidence-based classification of one protocol group into a BIDS datatype/suffix/entities.

Every decision records the header facts that made it (``evidence``) and a confidence. Facts come
from heudiconv's ``dicominfo.tsv`` columns first (sequence name, ImageType, dims, TR/TE, names);
the richer optional facts (b-values, echo numbers, TI, PE direction) sharpen it when present.
Vendor knowledge: Siemens (tfl3d, spc, tse, tir, fl2d/3d, fm2d, epfid, ep_b, tgse), GE
(efgre3d/BRAVO, Cube, epiRT, epi2, fgre, B0map, 3dasl), Philips (TFE, TSE, FFE, FEEPI, DwiSE).
"""

from __future__ import annotations

import re

from engine.mapping.anat import _anat
from engine.mapping.facts import (  # noqa: F401 - re-exported: what other modules read of a series
    Facts,
    direction_of,
    facts_of,
    phase_by_name,
    task_label,
    volumes,
)
from engine.mapping.reproin import ReproinSpec, parse_reproin
from engine.mapping.rules_base import Decision, skip
from engine.model import SeriesInfo


def _is_vendor_b0_map(f: Facts) -> bool:
    """GE B0map/3db0map and Philips B0 field maps: one series holds a magnitude volume and a
    field map in Hz (two volumes, one echo, or Philips' "MIXED" image type / FIELD_MAP frames),
    not two echoes."""
    if re.search(r"b0map|3db0|b0rf", f.seq):
        return True
    if f.itype & {"FIELD_MAP", "FIELDMAP", "B0", "B0 MAP", "FIELDMAPHZ"}:
        return True
    return f.nvol == 2 and not f.is_phase and (f.echoes <= 1 or "MIXED" in f.itype)


def _b0_map_evidence(f: Facts) -> list[str]:
    """Why a one-series B0 map becomes fieldmap + magnitude, in the vendor's terms."""
    if f.series.manufacturer.upper().startswith("PHILIPS") or "MIXED" in f.itype:
        return [
            f"Philips B0 map: {f.nvol} images per slice, ImageType "
            f"{'/'.join(sorted(f.itype & {'MIXED', 'FIELD_MAP', 'B0'})) or 'MIXED'} (magnitude "
            "frames and B0-map frames in one series)",
            "dcm2niix writes _e1 (magnitude) and _e2_fieldmaphz (Hz) -> fieldmap + magnitude, "
            "named by each file's sidecar at conversion",
        ]
    return [
        f"{f.nvol} volumes, one echo: a B0 map (magnitude + field map in Hz)",
        "dcm2niix writes the field map and its magnitude -> fieldmap + magnitude",
    ]


def _multi_image_fmap(f: Facts) -> bool:
    """One GRE field-map series holding magnitude and phase (and real/imaginary) images of two
    echoes: a Philips enhanced export (4 or 8 images per slice), which dcm2niix splits into one
    file per echo and image kind."""
    return f.nvol >= 3 and (f.echoes >= 2 or f.nvol in (4, 8)) and not f.is_phase


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
        return skip("localizer/scout (ReproIn anat-scout)", 0.95, *ev)
    if f.derived and not f.moco and not (f.itype & {"UNI"}):
        return skip("derived image (ReproIn skips derived series)", 0.9, *ev, "ImageType DERIVED")
    if f.moco:
        return skip("scanner motion-corrected copy (MoCo)", 0.9, *ev, "ImageType MOCO")
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
        return skip(
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
        return skip(
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
            return skip("localizer/scout/calibration", 0.95, f"name {f.name.strip()!r}")
    if f.moco:
        return skip(
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
            return skip("derived T1 map (scanner-computed from MP2RAGE)", 0.7, *ev)
    if f.derived:
        kinds = [v for k, v in _DERIVED_KINDS.items() if k in f.itype]
        extra = ", ".join(kinds) or "scanner-derived image"
        return skip(f"derived: {extra}", 0.9, f"ImageType {'/'.join(sorted(f.itype))}")
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
        if _is_vendor_b0_map(f):
            return Decision(
                "fmap",
                "fieldmap",
                {},
                confidence=0.75,
                evidence=ev + _b0_map_evidence(f),
                extra_suffixes=["magnitude"],
                kind="vendor_b0",
            )
        if _multi_image_fmap(f):
            return Decision(
                "fmap",
                "magnitude1",
                {},
                confidence=0.7,
                evidence=ev
                + [
                    f"{f.nvol} images per slice in one series ({max(f.echoes, 2)} echoes): "
                    "magnitude and phase of each echo (a Philips enhanced export)",
                    "dcm2niix writes one file per echo and image kind (_e1/_e2, _ph, _real, "
                    "_imaginary) -> magnitude1/2 + phase1/2, named by each file's sidecar at "
                    "conversion; real/imaginary parts are set aside",
                ],
                echoes=2,
                extra_suffixes=["magnitude2", "phase1", "phase2"],
                kind="gre_fmap",
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
        return skip(
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
