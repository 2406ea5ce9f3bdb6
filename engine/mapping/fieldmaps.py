"""Which functional/diffusion/perfusion groups each field-map group serves (IntendedFor).

Chosen by session (a field map only serves targets acquired in a session where it was also
acquired), by kind (``acq-dwi`` / ``acq-func``-like labels restrict the targets), and by geometry
for spin-echo EPI field maps (same in-plane matrix as the target when that is known). When a
session holds several field maps of the same kind, each target goes to the field map acquired
closest before it (else closest after).
"""

from __future__ import annotations

from collections import defaultdict

from engine.grouping import acq_order_key, subject_of
from engine.model import Group, Mapping, SeriesInfo

TARGET_DATATYPES = ("func", "dwi", "perf")


def _kind(m: Mapping) -> str:
    acq = m.entities.get("acq", "").lower()
    if "dwi" in acq or "diff" in acq:
        return "dwi"
    if any(w in acq for w in ("func", "bold", "fmri")):
        return "func"
    return ""


def assign_intended_for(
    groups: list[Group], mappings: dict[str, Mapping], series: list[SeriesInfo]
) -> None:
    by_key = {s.key: s for s in series}
    gsessions: dict[str, set[tuple[str, str]]] = {}
    for g in groups:
        gsessions[g.group_id] = {
            (subject_of(by_key[k]), by_key[k].session) for k in g.series_keys if k in by_key
        }
    positions: dict[str, list[tuple[tuple[str, str], tuple]]] = defaultdict(list)
    for g in groups:
        for k in g.series_keys:
            if k in by_key:
                s = by_key[k]
                positions[g.group_id].append(((subject_of(s), s.session), acq_order_key(s)))
    fmaps = [
        g
        for g in groups
        if mappings[g.group_id].datatype == "fmap" and not mappings[g.group_id].is_skip
    ]
    targets = [
        g
        for g in groups
        if mappings[g.group_id].datatype in TARGET_DATATYPES
        and not mappings[g.group_id].is_skip
        and mappings[g.group_id].suffix not in ("m0scan",)
    ]
    for fm in fmaps:
        mf = mappings[fm.group_id]
        kind = _kind(mf)
        chosen = []
        for t in targets:
            mt = mappings[t.group_id]
            if kind and mt.datatype != kind:
                continue
            if not (gsessions[fm.group_id] & gsessions[t.group_id]):
                continue
            if mf.suffix == "epi":
                fmx, tmx = fm.signature.get("matrix"), t.signature.get("matrix")
                if fmx and tmx and list(fmx) != list(tmx) and all(fmx) and all(tmx):
                    continue
            chosen.append(t.group_id)
        mf.intended_for = chosen
        if chosen:
            mf.evidence.append(f"serves {len(chosen)} group(s) acquired in the same session(s)")
    # A target served by several field maps of the same suffix keeps only the nearest in time.
    served: dict[tuple[str, str, tuple], list[str]] = defaultdict(list)
    for fm in fmaps:
        mf = mappings[fm.group_id]
        for t in mf.intended_for:
            served[(t, mf.suffix, tuple(sorted(mf.entities.items())))].append(fm.group_id)
    for (t, _suffix, _ents), fms in served.items():
        if len(fms) <= 1:
            continue
        tpos = positions[t]

        def distance(fid: str, tpos: list = tpos) -> tuple[int, float]:
            best = (1, float("inf"))
            for sess, p in positions[fid]:
                for tsess, tp in tpos:
                    if sess != tsess:
                        continue
                    d = tp[0] - p[0]
                    cand = (0, d) if d >= 0 else (1, -d)
                    best = min(best, cand)
            return best

        keep = min(fms, key=distance)
        for fid in fms:
            if fid != keep and t in mappings[fid].intended_for:
                mappings[fid].intended_for.remove(t)
