"""Choose, for each converted group, the fewest stable conditions that tell it apart.

A condition is a Python expression over heudiconv's ``SeqInfo`` ``s``. It only reads stable
series properties (names, ImageType flags, sequence, dims, TE/TR, volume count, custom facts),
never series numbers or UIDs, so one heuristic serves every subject of the study. Each candidate
is *evaluated as the exact code that will be written*, so what we select is what runs.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from statistics import median
from typing import Any

# helpers the generated heuristic defines too (keep the two in sync: see compiler._HELPERS)
HELPER_SOURCE = '''
def _custom(s, name):
    """A fact ``custom_seqinfo`` added to the SeqInfo (``None`` when absent)."""
    return dict(s.custom or ()).get(name)
'''

# ImageType values whose meaning is stable across vendors (preferred over opaque ones)
WELL_KNOWN_FLAGS = frozenset(
    "ORIGINAL DERIVED PRIMARY SECONDARY M P MAG PHASE R I REAL IMAGINARY MOCO MPR PROJECTION "
    "ADC TRACEW FA DIFFUSION FMRI NORM DIS2D DIS3D SBREF".split()
)

_NS: dict[str, Any] = {"re": re}
exec(HELPER_SOURCE, _NS)  # noqa: S102 - our own constant source


@dataclass(frozen=True)
class Condition:
    code: str  # expression over ``s``
    cost: float  # lower is preferred: names and flags before numbers
    why: str = ""  # short human reason (for comments)

    def evaluate(self, seqinfos: Sequence[Any]) -> tuple[bool, ...]:
        fn = eval(f"lambda s: bool({self.code})", _NS)  # noqa: S307 - code we generated
        out = []
        for s in seqinfos:
            try:
                out.append(fn(s))
            except Exception:  # a None TE, a missing custom value: the condition fails
                out.append(False)
        return tuple(out)


@dataclass
class Selection:
    conditions: list[Condition] = field(default_factory=list)
    unresolved: list[int] = field(default_factory=list)  # indexes of negatives still matched

    @property
    def code(self) -> str:
        return " and ".join(f"({c.code})" if " or " in c.code else c.code for c in self.conditions)


def _eq_or_in(attr: str, values: list[str], cost: float) -> list[Condition]:
    vals = sorted(set(values))
    if len(vals) == 1:
        return [Condition(f"s.{attr} == {vals[0]!r}", cost)]
    out = [Condition(f"s.{attr} in {tuple(vals)!r}", cost + 0.3)]
    # names that differ only in numbers (run1/run2): a pattern also serves unseen repeats
    shapes = {re.sub(r"\d+", "#", v) for v in vals}
    if len(shapes) == 1:
        shape = shapes.pop()
        if "#" in shape:
            pat = "".join(r"\d+" if p == "#" else re.escape(p) for p in re.split(r"(#)", shape))
            out.append(Condition(f"re.fullmatch({pat!r}, s.{attr}) is not None", cost + 0.1))
    return out


VOLUME_CODES = ("s.dim4 ", "s.dim3 * s.dim4 ")  # conditions on the volume/frame count


def is_volume(c: Condition) -> bool:
    """A condition on the volume (or frame) count: what tells an aborted run from a full one."""
    return c.code.startswith(VOLUME_CODES)


def candidates(
    pos: Sequence[Any],
    neg: Sequence[Any],
    custom_fields: Iterable[str] = (),
    te_ok: bool = True,
    volume_ok: bool = True,
) -> list[Condition]:
    """Every condition that all positives satisfy, cheapest first (``volume_ok=False``: none on
    the volume count)."""
    cands: list[Condition] = []
    cands += _eq_or_in("protocol_name", [p.protocol_name for p in pos], 1.0)
    cands += _eq_or_in("series_description", [p.series_description for p in pos], 1.5)
    pos_flags = [set(p.image_type) for p in pos]
    common = set.intersection(*pos_flags) if pos_flags else set()
    union = set.union(*pos_flags) if pos_flags else set()
    neg_flags = set().union(*(set(n.image_type) for n in neg)) if neg else set()
    for f in sorted(common):
        cands.append(Condition(f"{f!r} in s.image_type", 1.1 if f in WELL_KNOWN_FLAGS else 1.4))
    for f in sorted(neg_flags - union):
        cands.append(Condition(f"{f!r} not in s.image_type", 1.2 if f in WELL_KNOWN_FLAGS else 1.5))
    if len({tuple(p.image_type) for p in pos}) == 1 and pos[0].image_type:
        cands.append(Condition(f"s.image_type == {tuple(pos[0].image_type)!r}", 2.2))
    seqs = [p.sequence_name for p in pos]
    if all(seqs):
        cands += _eq_or_in("sequence_name", seqs, 2.0)
    for attr in ("is_derived", "is_motion_corrected"):
        vals = {bool(getattr(p, attr)) for p in pos}
        if len(vals) == 1:
            v = vals.pop()
            cands.append(Condition(f"s.{attr}" if v else f"not s.{attr}", 1.6))
    dim4 = [int(p.dim4) for p in pos]
    if min(dim4) > 1:
        t = max(2, math.ceil(median(dim4) / 2))
        t = min(t, min(dim4))
        cands.append(Condition(f"s.dim4 >= {t}", 2.5, "aborted runs have fewer volumes"))
        neg_below = [int(n.dim4) for n in neg if int(n.dim4) < min(dim4)]
        if neg_below and max(neg_below) >= t:
            cands.append(Condition(f"s.dim4 > {max(neg_below)}", 2.6))
    elif max(dim4) == 1:
        cands.append(Condition("s.dim4 == 1", 2.5))
        # one file per slice (classic DICOM): heudiconv counts files in dim3, so frames = dim3*dim4
        frames = [int(p.dim3) * int(p.dim4) for p in pos]
        if min(frames) > 1:
            t = min(max(2, math.ceil(median(frames) / 2)), min(frames))
            cands.append(
                Condition(f"s.dim3 * s.dim4 >= {t}", 2.5, "aborted runs have fewer frames")
            )
    # the TE of a multi-echo series is whichever echo's file came first: not a stable fact
    tes = set() if not te_ok else {round(float(p.TE), 2) for p in pos if p.TE is not None}
    if len(tes) == 1 and all(p.TE is not None for p in pos):
        cands.append(Condition(f"abs(s.TE - {tes.pop()!r}) < 0.01", 3.0))
    elif tes:
        lo, hi = min(tes), max(tes)
        cands.append(Condition(f"{lo - 0.01!r} < s.TE < {hi + 0.01!r}", 3.2))
    trs = {round(float(p.TR), 4) for p in pos if p.TR is not None}
    if len(trs) == 1 and all(p.TR is not None for p in pos):
        cands.append(Condition(f"abs(s.TR - {trs.pop()!r}) < 0.0001", 3.1))
    for attr in ("dim1", "dim2", "dim3"):
        vals = {int(getattr(p, attr)) for p in pos}
        if len(vals) == 1:
            cands.append(Condition(f"s.{attr} == {vals.pop()}", 3.3))
    for name in custom_fields:
        vals = {dict(p.custom or ()).get(name) for p in pos}
        if len(vals) == 1:
            v = vals.pop()
            if v not in (None, "", 0):
                cands.append(Condition(f"_custom(s, {name!r}) == {v!r}", 4.0))
    # keep only conditions all positives satisfy (a safety net for the evaluated code)
    keep = []
    seen: set[str] = set()
    for c in sorted(cands, key=lambda c: c.cost):
        if c.code in seen or (not volume_ok and is_volume(c)):
            continue
        seen.add(c.code)
        if all(c.evaluate(pos)):
            keep.append(c)
    return keep


def select(
    pos: Sequence[Any],
    neg: Sequence[Any],
    custom_fields: Iterable[str] = (),
    max_exact: int = 3,
    guard_volumes: bool = False,
    te_ok: bool = True,
    volume_ok: bool = True,
) -> Selection:
    """The smallest, then cheapest, set of conditions that all ``pos`` meet and each ``neg`` fails.

    The protocol-name condition is always kept (a heuristic reads like its protocol); the rest is
    an exact search up to ``max_exact`` extra conditions, then a greedy cover.
    """
    cands = candidates(pos, neg, custom_fields, te_ok, volume_ok)
    if not cands:
        return Selection([], list(range(len(neg))))
    rejects = [frozenset(i for i, ok in enumerate(c.evaluate(neg)) if not ok) for c in cands]
    everyone = frozenset(range(len(neg)))
    base_idx = next(
        (
            i
            for i, c in enumerate(cands)
            if c.code.startswith(("s.protocol_name", "re.fullmatch"))
            and "s.protocol_name" in c.code
        ),
        None,
    )
    base = [base_idx] if base_idx is not None else []
    if guard_volumes:  # time series: an aborted run (fewer than half the volumes) never matches
        base += [
            i
            for i, c in enumerate(cands)
            if c.code.startswith(("s.dim4 >= ", "s.dim3 * s.dim4 >= "))
        ][:1]
    covered = frozenset().union(*(rejects[i] for i in base)) if base else frozenset()
    if covered == everyone:
        return Selection([cands[i] for i in base])
    pool = [i for i in range(len(cands)) if i not in base and rejects[i] - covered][:28]
    for k in range(1, max_exact + 1):
        best: tuple[float, tuple[int, ...]] | None = None
        for combo in itertools.combinations(pool, k):
            if covered.union(*(rejects[i] for i in combo)) == everyone:
                cost = sum(cands[i].cost for i in combo)
                if best is None or cost < best[0]:
                    best = (cost, combo)
        if best is not None:
            return Selection(
                [cands[i] for i in base + sorted(best[1], key=lambda i: cands[i].cost)]
            )
    chosen = list(base)
    while covered != everyone:
        gain = [(len(rejects[i] - covered), -cands[i].cost, -i) for i in pool if i not in chosen]
        if not gain or max(gain)[0] == 0:
            break
        i = -max(gain)[2]
        chosen.append(i)
        covered = covered | rejects[i]
    return Selection([cands[i] for i in chosen], sorted(everyone - covered))
