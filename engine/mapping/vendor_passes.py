"""Cross-group passes for vendor conventions that one group alone cannot settle (issue 13).

* ASL: Philips exports a pCASL scan twice, the label/control images (``SOURCE - <name>``) and
  the scanner's subtraction (one perfusion-weighted volume). BIDS ``perf/_asl`` is the
  label/control series; the subtraction is a derived copy. The same holds on any vendor for two
  ASL groups of one acquisition where one holds a single volume and the other many.
* Spin-echo EPI field maps (``fmap/_epi``, a b0 series beside a DWI) need ``dir-``. The name or
  the header polarity (Siemens CSA/XA PhaseEncodingDirectionPositive, GE UserDefineData) gives
  it; Philips DICOM holds only the axis (InPlanePhaseEncodingDirection). A b0 named as the reversed blip
  (``rev``, ``rpe``, ``blip``, ``topup``) beside a DWI or EPI field map whose direction is known
  on the same axis takes the opposite direction; otherwise ``dir-unknown`` with a low
  confidence and a "set dir-" note, so the name stays valid and the person is asked.
"""

from __future__ import annotations

import re

from engine.mapping.facts import facts_of
from engine.mapping.rules_base import Decision
from engine.model import Group, SeriesInfo

_OPPOSITE = {"AP": "PA", "PA": "AP", "LR": "RL", "RL": "LR", "SI": "IS", "IS": "SI"}
# InPlanePhaseEncodingDirection (ROW/COL) in a slice orientation -> the anatomical axis
_AXIS = {
    ("tra", "COL"): "AP",
    ("tra", "ROW"): "LR",
    ("cor", "COL"): "SI",
    ("cor", "ROW"): "LR",
    ("sag", "COL"): "SI",
    ("sag", "ROW"): "AP",
}
_AXIS_WORDS = {"AP": "anterior-posterior", "LR": "left-right", "SI": "superior-inferior"}
_REVERSED = re.compile(
    r"(?:^|[^a-z])(?:rev|reverse[d]?|revpe|rpe|blip|topup|opposite|inv)(?:$|[^a-z0-9])"
)
_SOURCE = re.compile(r"(?:^|[^a-z])source(?:$|[^a-z])")


def _sessions(g: Group) -> set[str]:
    return {k.rsplit("|", 1)[0] for k in g.series_keys}


def axis_of(s: SeriesInfo) -> str:
    """The phase-encoding axis ("AP", "LR", "SI") from InPlanePhaseEncodingDirection and the
    slice orientation; "" when either is unknown (oblique, or not in the header)."""
    return _AXIS.get((s.orientation, (s.pe_axis or "").upper().replace("COLUMN", "COL")), "")


def _same_axis(direction: str, axis: str) -> bool:
    return not axis or set(direction) == set(axis)


def pass_asl_source(
    groups: list[Group], dec: dict[str, Decision], reps: dict[str, SeriesInfo]
) -> None:
    """Two ASL groups of one session: keep the label/control series, skip the subtraction."""
    asl = [g for g in groups if not dec[g.group_id].skip and dec[g.group_id].suffix == "asl"]
    for g in asl:
        for h in asl:
            if h is g or not (_sessions(g) & _sessions(h)) or dec[h.group_id].skip:
                continue
            fg, fh = facts_of(reps[g.group_id]), facts_of(reps[h.group_id])
            g_source = bool(_SOURCE.search(fg.name))
            h_source = bool(_SOURCE.search(fh.name))
            if h_source and not g_source:
                why = f"Philips exports the label/control images as {h.label!r} (SOURCE)"
            elif not (g_source or h_source) and fg.nvol == 1 and fh.nvol > 2:
                why = f"{fh.nvol} label/control volumes in {h.group_id}, one volume here"
            else:
                continue
            d = dec[g.group_id]
            d.skip = (
                f"scanner-computed perfusion (subtraction) of the ASL series {h.group_id}, "
                "which is converted as perf/_asl; unskip to convert this one instead"
            )
            d.confidence = 0.75
            d.evidence.append(why)
            dec[h.group_id].evidence.append(
                f"label/control series of this ASL acquisition ({g.group_id} is its subtraction)"
            )
            break


def pass_epi_dir(
    groups: list[Group], dec: dict[str, Decision], reps: dict[str, SeriesInfo]
) -> None:
    """Every converted ``fmap/_epi`` gets ``dir-``: named, from the header, opposite of its
    partner, or ``unknown`` with a "set dir-" note."""
    known: list[tuple[Group, str]] = [
        (g, dec[g.group_id].entities["dir"])
        for g in groups
        if not dec[g.group_id].skip
        and dec[g.group_id].datatype in ("dwi", "fmap", "func")
        and dec[g.group_id].entities.get("dir")
    ]
    for g in groups:
        d = dec[g.group_id]
        if d.skip or d.datatype != "fmap" or d.suffix != "epi" or d.entities.get("dir"):
            continue
        s = reps[g.group_id]
        f = facts_of(s)
        axis = axis_of(s)
        partners = [
            (h, hdir)
            for h, hdir in known
            if h is not g and _sessions(g) & _sessions(h) and _same_axis(hdir, axis)
        ]
        # a DWI partner first (the b0 of a DWI), then an EPI field map
        partners.sort(key=lambda p: dec[p[0].group_id].datatype != "dwi")
        if _REVERSED.search(f.name) and partners:
            h, hdir = partners[0]
            d.entities["dir"] = _OPPOSITE[hdir]
            d.confidence = min(d.confidence, 0.7)
            d.evidence.append(
                f"dir-{_OPPOSITE[hdir]}: named as the reversed phase encoding of {h.group_id} "
                f"(dir-{hdir}); the header holds no polarity ({s.manufacturer or 'vendor'} "
                f"InPlanePhaseEncodingDirection {s.pe_axis or '?'} only): check it"
            )
            continue
        d.entities["dir"] = "unknown"
        d.confidence = min(d.confidence, 0.4)
        where = (
            f"phase encoded along the {_AXIS_WORDS[axis]} axis (InPlanePhaseEncodingDirection "
            f"{s.pe_axis} in a {s.orientation} slice): {axis} or {_OPPOSITE[axis]}"
            if axis
            else "the phase-encoding axis is not in the header either"
        )
        d.evidence.append(
            "set dir-: the phase-encoding polarity is neither in the name nor in the header "
            f"({s.manufacturer or 'this vendor'} does not store it); {where}. Edit the name "
            "(`e` in the TUI, or `decide OUT GROUP --name`)"
        )
