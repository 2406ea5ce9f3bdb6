"""Anatomical contrast by sequence, name and physics (each source votes), and 2D planning
scans, which are not anatomy to convert."""

from __future__ import annotations

import re

from engine.grouping import frames
from engine.mapping.facts import Facts
from engine.mapping.rules_base import Decision, skip

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
        return skip(
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
        return skip(
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
