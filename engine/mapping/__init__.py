"""Map protocol groups to BIDS names: ``map_groups(series, groups, backend="rules")``.

The rules backend classifies each group from its header facts (:mod:`engine.mapping.rules`),
then cross-group passes settle what one group alone cannot: magnitude/phase pairs (``part-``),
echoes split over series (``echo-``), SBRef entities, the b0 series with reversed phase encoding
(``fmap/acq-dwi_dir-XX_epi``), schema validation, and field-map IntendedFor. Other backends (LLM)
register in :data:`BACKENDS` with the same signature as :func:`rules_backend`.
"""

from __future__ import annotations

import copy
import re
from collections import defaultdict
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from engine.bids_schema import get_schema, sanitize_label
from engine.grouping import GroupingResult, fill_subjects, group_series
from engine.mapping.fieldmaps import assign_intended_for
from engine.mapping.report import mapping_report
from engine.mapping.rules import Decision, classify, facts_of
from engine.mapping.runs import assign_series
from engine.mapping.vendor_passes import pass_asl_source, pass_epi_dir
from engine.model import Group, Mapping, SeriesAssignment, SeriesInfo

Backend = Callable[[list[SeriesInfo], list[Group]], dict[str, Mapping]]


@dataclass
class MappingResult:
    mappings: list[Mapping]
    assignments: list[SeriesAssignment]
    report: str = ""
    groups: list[Group] = field(default_factory=list)
    proposed: list[Mapping] = field(default_factory=list)  # before the person's decisions
    decided: list[str] = field(default_factory=list)  # group ids a user decision settled


def representative(group: Group, by_key: dict[str, SeriesInfo]) -> SeriesInfo:
    """The group's most typical member: the one with the median size, first in order."""
    members = [by_key[k] for k in group.series_keys if k in by_key]
    members.sort(key=lambda s: -(s.dim4 * max(s.dim3, 1)))
    return (
        members[len(members) // 2 - (1 if len(members) % 2 == 0 else 0)]
        if members
        else SeriesInfo()
    )


def rules_backend(series: list[SeriesInfo], groups: list[Group]) -> dict[str, Mapping]:
    by_key = {s.key: s for s in series}
    decisions: dict[str, Decision] = {}
    reps: dict[str, SeriesInfo] = {}
    for g in groups:
        rep = representative(g, by_key)
        reps[g.group_id] = rep
        decisions[g.group_id] = classify(rep)
    _pass_dwi_b0(groups, decisions, reps)
    _pass_recon_copies(groups, decisions, reps)
    _pass_sbref(groups, decisions, reps)
    _pass_echoes(groups, decisions, reps)
    _pass_part(groups, decisions)
    _pass_gre_fmap(groups, decisions, reps)
    pass_asl_source(groups, decisions, reps)
    pass_epi_dir(groups, decisions, reps)
    return {gid: _to_mapping(gid, d) for gid, d in decisions.items()}


BACKENDS: dict[str, Backend] = {"rules": rules_backend}


def map_groups(
    series: list[SeriesInfo],
    groups: list[Group] | None = None,
    backend: str = "rules",
    grouping: GroupingResult | None = None,
    *,
    decided: Collection[str] = (),
    only: Collection[str] | None = None,
    current: dict[str, Mapping] | None = None,
) -> MappingResult:
    """Propose a mapping for every group and assign every series; writes nothing.

    ``decided``: groups the person has decided (an LLM backend is never asked about them; the
    decisions themselves are applied by :mod:`engine.mapping.effective`). ``only``: the LLM
    backend is asked about these groups alone; every other group keeps its mapping from
    ``current`` (the proposal on disk), or the rules' when it has none.
    """
    fill_subjects(series)
    if grouping is None:
        grouping = group_series(series)
    if groups is None:
        groups = grouping.groups
    series_group = {k: g.group_id for g in groups for k in g.series_keys}
    if backend not in BACKENDS:
        raise ValueError(f"unknown mapping backend {backend!r} (have: {', '.join(BACKENDS)})")
    rules = rules_backend(series, groups)  # cross-group passes see every group
    mappings = dict(rules)
    if backend != "rules":
        ask = [
            g for g in groups if g.group_id not in decided and (only is None or g.group_id in only)
        ]
        answered = BACKENDS[backend](series, ask) if ask else {}
        for gid, m in answered.items():
            if m.source == "llm" or gid not in rules:
                mappings[gid] = m
            else:  # no usable answer: the rules' mapping (seen with all groups) and the reason
                r = copy.deepcopy(rules[gid])
                r.evidence += [e for e in m.evidence if e not in r.evidence]
                r.rationale = m.rationale or r.rationale
                mappings[gid] = r
    if only is not None:
        for gid, m in (current or {}).items():
            if gid in mappings and gid not in only:
                mappings[gid] = copy.deepcopy(m)
    for g in groups:
        mappings.setdefault(g.group_id, Mapping(g.group_id, skip_reason="not mapped by backend"))
        validate_mapping(mappings[g.group_id])
    assign_intended_for(groups, mappings, series)
    flags = {k: v for g in groups for k, v in g.series_flags.items()} or grouping.series_flags
    assignments = assign_series(series, series_group, mappings, flags)
    ordered = [mappings[g.group_id] for g in groups]
    report = mapping_report(series, groups, ordered, assignments)
    return MappingResult(ordered, assignments, report, groups, ordered, [])


# --- validation ------------------------------------------------------------------------------


def validate_mapping(m: Mapping) -> Mapping:
    """Never leave an invalid name: drop bad optional entities, else turn it into a skip."""
    if m.is_skip:
        m.datatype, m.suffix, m.entities = "", "", {}
        return m
    schema = get_schema()
    for k in list(m.entities):
        if k in ("sub", "ses", "run"):
            m.entities.pop(k)
            continue
        v = str(m.entities[k])
        if not schema.value_ok(k, v) and k not in schema.entity_values(k):
            fixed = sanitize_label(v)
            if fixed and schema.value_ok(k, fixed):
                m.entities[k] = fixed
    problems = schema.check(m.datatype, m.suffix, m.entities)
    if problems:
        required = set(schema.required_entities(m.datatype, m.suffix))
        for k in list(m.entities):
            if k not in required and schema.check(m.datatype, m.suffix, {k: m.entities[k]}):
                m.evidence.append(f"dropped entity {k}-{m.entities[k]} (schema: not allowed)")
                m.entities.pop(k)
        for k in required:
            if k not in m.entities and k == "task":
                m.entities["task"] = "unknown"
                m.confidence = min(m.confidence, 0.5)
        problems = schema.check(m.datatype, m.suffix, m.entities)
    if problems:
        m.skip_reason = "no valid BIDS name: " + "; ".join(problems)
        m.datatype, m.suffix, m.entities = "", "", {}
        m.confidence = min(m.confidence, 0.3)
    else:
        m.extra_suffixes = [
            x for x in m.extra_suffixes if not schema.check(m.datatype, x, m.entities)
        ]
    return m


def _to_mapping(gid: str, d: Decision) -> Mapping:
    return Mapping(
        group_id=gid,
        datatype="" if d.skip else d.datatype,
        suffix="" if d.skip else d.suffix,
        entities={} if d.skip else dict(d.entities),
        skip_reason=d.skip,
        confidence=round(float(d.confidence), 2),
        evidence=[e for e in d.evidence if e],
        source="rules",
        echoes=d.echoes,
        extra_suffixes=list(d.extra_suffixes),
    )


# --- cross-group passes ----------------------------------------------------------------------


def _base(label: str) -> str:
    """Group label without SBRef / part / echo words, to find siblings of one acquisition."""
    s = re.sub(r"[_\s-]*sbref\b", "", label)
    s = re.sub(r"[_\s-]+(?:mag|magnitude|pha|phase|ph|e\d|echo[_-]?\d)\b", "", s)
    return s


def _sessions(g: Group) -> set[str]:
    return {k.rsplit("|", 1)[0] for k in g.series_keys}


def _pass_dwi_b0(
    groups: list[Group], dec: dict[str, Decision], reps: dict[str, SeriesInfo]
) -> None:
    """A few-volume diffusion series beside a full DWI: the reversed-PE b0 -> fmap epi."""
    dwis = [g for g in groups if dec[g.group_id].kind == "dwi" and not dec[g.group_id].skip]
    if len(dwis) < 2:
        return
    size = {g.group_id: facts_of(reps[g.group_id]).nvol for g in dwis}
    main = max(dwis, key=lambda g: size[g.group_id])
    mdir = dec[main.group_id].entities.get("dir", "")
    for g in dwis:
        if g is main:
            continue
        d = dec[g.group_id]
        n = size[g.group_id]
        gdir = d.entities.get("dir", "")
        small = n <= max(7, 0.2 * size[main.group_id]) and size[main.group_id] > n
        if small and (not gdir or not mdir or gdir != mdir):
            ents = {"acq": "dwi"}
            if gdir:
                ents["dir"] = gdir
            dec[g.group_id] = Decision(
                "fmap",
                "epi",
                ents,
                confidence=0.8,
                evidence=d.evidence
                + [f"only {n} volume(s) vs {size[main.group_id]} in the main DWI {main.group_id}"]
                + ([f"PE {gdir} opposite to DWI {mdir}"] if gdir and mdir else []),
                kind="se_epi",
            )


def _pass_sbref(groups: list[Group], dec: dict[str, Decision], reps: dict[str, SeriesInfo]) -> None:
    """SBRef takes the entities of the BOLD/DWI it belongs to (same base protocol name)."""
    for g in groups:
        d = dec[g.group_id]
        if d.skip or d.suffix != "sbref":
            continue
        base = _base(g.label)
        part = d.entities.get("part")
        # the BOLD of the same part first: a phase SBRef goes with the phase BOLD
        for h in sorted(groups, key=lambda x: dec[x.group_id].entities.get("part") != part):
            dh = dec[h.group_id]
            if h is g or dh.skip or dh.suffix not in ("bold", "dwi") or _base(h.label) != base:
                continue
            if not (_sessions(g) & _sessions(h)):
                continue
            d.datatype = dh.datatype
            d.entities = {k: v for k, v in dh.entities.items() if k != "part"}
            if part:
                d.entities["part"] = part
            d.evidence.append(f"entities of its {dh.suffix} group {h.group_id}")
            break


def _pass_echoes(
    groups: list[Group], dec: dict[str, Decision], reps: dict[str, SeriesInfo]
) -> None:
    """Groups with one name and protocol that differ only in TE are echoes of one acquisition."""
    buckets: dict[tuple, list[Group]] = defaultdict(list)
    for g in groups:
        d = dec[g.group_id]
        if d.skip or d.kind in ("gre_fmap",) or d.datatype == "fmap":
            continue
        key = (
            d.datatype,
            d.suffix,
            tuple(sorted(d.entities.items())),
            _base(g.label),
            tuple(g.signature.get("image_type") or ()),
        )
        buckets[key].append(g)
    for members in buckets.values():
        tes = {g.group_id: reps[g.group_id].TE for g in members}
        distinct = sorted({t for t in tes.values() if t is not None})
        if len(distinct) < 2 or len(distinct) != len(members):
            continue
        if not _one_acquisition([reps[g.group_id] for g in members]):
            continue  # separate runs that differ in TE (e.g. other multiband factors): no echo-
        for g in members:
            d = dec[g.group_id]
            if "echo" in d.entities:
                continue
            d.entities["echo"] = str(distinct.index(tes[g.group_id]) + 1)
            d.evidence.append(
                f"echo {d.entities['echo']} of {len(distinct)} (TE {tes[g.group_id]} ms)"
            )
            if d.datatype == "anat" and d.suffix == "T2starw":
                d.suffix = "MEGRE"


def _one_acquisition(reps: list[SeriesInfo]) -> bool:
    """Whether series that differ in TE are the echoes of ONE acquisition: same TR, same matrix
    and volume count, and acquired together (the same acquisition time, or consecutive series
    numbers). Single-echo runs with other TEs (say, other multiband factors) are separate runs."""
    trs = {round(r.TR, 3) for r in reps if r.TR is not None and r.TR > 0}
    if len(trs) > 1:
        return False
    if len({(r.dim1, r.dim2, r.dim3) for r in reps}) > 1:
        return False
    from engine.mapping.rules import volumes

    if len({volumes(r)[0] for r in reps}) > 1:
        return False
    times = {r.acquisition_time for r in reps if r.acquisition_time}
    if len(times) == 1 and len([r for r in reps if r.acquisition_time]) == len(reps):
        return True
    nums = sorted(r.series_number for r in reps if r.series_number is not None)
    if len(nums) == len(reps) and nums == list(range(nums[0], nums[0] + len(nums))):
        return True
    return False


_RECON = {"ND": -1, "NORM": 1, "DIS2D": 2, "DIS3D": 2, "FILTERED": 1}


def _pass_recon_copies(
    groups: list[Group], dec: dict[str, Decision], reps: dict[str, SeriesInfo]
) -> None:
    """The raw and the processed copy of one acquisition (ND vs NORM, ND vs DIS2D): convert the
    processed one, which is what curators keep, and skip the other with the reason."""
    for g in groups:
        d = dec[g.group_id]
        if d.skip:
            continue
        it_g = {p.upper() for p in reps[g.group_id].image_type}
        for h in groups:
            dh = dec[h.group_id]
            if (
                h is g
                or dh.skip
                or (dh.datatype, dh.suffix, dh.entities)
                != (
                    d.datatype,
                    d.suffix,
                    d.entities,
                )
            ):
                continue
            it_h = {p.upper() for p in reps[h.group_id].image_type}
            diff = it_g ^ it_h
            if not diff or not diff <= set(_RECON) or g.label != h.label:
                continue
            if _sessions(g) != _sessions(h) or len(g.series_keys) != len(h.series_keys):
                continue
            rank_g = sum(_RECON.get(p, 0) for p in it_g)
            rank_h = sum(_RECON.get(p, 0) for p in it_h)
            if rank_g >= rank_h:
                continue
            raw = "/".join(sorted(it_g & set(_RECON))) or "no " + "/".join(
                sorted(it_h & set(_RECON))
            )
            d.skip = (
                f"duplicate: the {raw} copy of the acquisition that {h.group_id} converts "
                f"({'/'.join(sorted(it_h & set(_RECON)))}); unskip to convert this copy instead"
            )
            d.confidence = 0.75
            d.evidence.append(
                f"same name, sessions and series count as {h.group_id}; ImageType "
                f"differs only in {', '.join(sorted(diff))}"
            )
            break


def _pass_part(groups: list[Group], dec: dict[str, Decision]) -> None:
    """When a phase group has a magnitude twin, the twin gets ``part-mag``."""
    for g in groups:
        d = dec[g.group_id]
        if d.skip or d.entities.get("part") != "phase" or d.datatype == "fmap":
            continue
        want = {k: v for k, v in d.entities.items() if k != "part"}
        for h in groups:
            dh = dec[h.group_id]
            if h is g or dh.skip or dh.suffix != d.suffix or dh.datatype != d.datatype:
                continue
            if "part" in dh.entities or dh.entities != want:
                continue
            if not (_sessions(g) & _sessions(h)):
                continue
            dh.entities["part"] = "mag"
            dh.evidence.append(f"magnitude twin of phase group {g.group_id} -> part-mag")


def _pass_gre_fmap(
    groups: list[Group], dec: dict[str, Decision], reps: dict[str, SeriesInfo]
) -> None:
    """Two phase groups of one field map (different TE) are phase1/phase2, not phasediff."""
    phases: dict[str, list[Group]] = defaultdict(list)
    mags: dict[str, list[Group]] = defaultdict(list)
    for g in groups:
        d = dec[g.group_id]
        if d.skip or d.kind != "gre_fmap":
            continue
        (phases if d.suffix == "phasediff" else mags)[_base(g.label)].append(g)
    for base, ph in phases.items():
        tes = sorted({reps[g.group_id].TE for g in ph if reps[g.group_id].TE is not None})
        if len(ph) == 2 and len(tes) == 2:
            for g in ph:
                i = tes.index(reps[g.group_id].TE) + 1
                dec[g.group_id].suffix = f"phase{i}"
                dec[g.group_id].evidence.append(f"phase of echo {i} (TE {reps[g.group_id].TE} ms)")
            for g in mags.get(base, []):
                d = dec[g.group_id]
                if len(mags[base]) == 2:
                    mtes = sorted({reps[h.group_id].TE or 0 for h in mags[base]})
                    i = mtes.index(reps[g.group_id].TE or 0) + 1
                    d.suffix, d.extra_suffixes = f"magnitude{i}", []
    for _base_label, mg in mags.items():
        tes = sorted({reps[g.group_id].TE for g in mg if reps[g.group_id].TE is not None})
        if len(mg) == 2 and len(tes) == 2 and not any(dec[g.group_id].extra_suffixes for g in mg):
            for g in mg:
                d = dec[g.group_id]
                i = tes.index(reps[g.group_id].TE) + 1
                d.suffix, d.extra_suffixes, d.echoes = f"magnitude{i}", [], 1
                d.evidence.append(f"magnitude of echo {i} (TE {reps[g.group_id].TE} ms)")


__all__ = [
    "BACKENDS",
    "MappingResult",
    "facts_of",
    "map_groups",
    "rules_backend",
    "validate_mapping",
]
