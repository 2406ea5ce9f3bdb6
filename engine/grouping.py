"""Group series that share one acquisition protocol across subjects and sessions.

A group is "the same protocol run again": the protocol/series name with run numbers, dates and
vendor noise stripped, the sequence family, the ImageType flags that change what the images are
(ORIGINAL/DERIVED, magnitude/phase, MOCO, ...), the in-plane geometry, rounded TR/TE/TI/flip,
the echo count and the phase-encoding direction. Volume counts are deliberately *not* part of
the key, so an aborted run stays in its protocol's group and is flagged there.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.bids_schema import sanitize_label
from engine.model import GROUP_COLUMNS, Group, SeriesInfo

# Image types that change what a series *is*, plus the reconstruction variants a scanner saves
# as extra copies of one acquisition (DIS2D/DIS3D distortion-corrected, NORM normalised); ND and
# FILTERED alone do not split a protocol.
_KEY_IMAGE_TYPES = {
    "ORIGINAL",
    "DERIVED",
    "M",
    "P",
    "MAG",
    "PHASE",
    "R",
    "I",
    "REAL",
    "IMAGINARY",
    "MOCO",
    "MPR",
    "PROJECTION IMAGE",
    "MIP",
    "ADC",
    "FA",
    "TRACEW",
    "TENSOR",
    "DIFFUSION",
    "UNI",
    "INV1",
    "INV2",
    "T1 MAP",
    "T1",
    "SUB",
    "PERFUSION",
    "ASL",
    "CSA REPORT",
    "SCREENSHOT",
    "FIELD_MAP",
    "B0",
    "SWI",
    "MNIP",
    "DIS2D",
    "DIS3D",
    "NORM",  # Siemens saves the raw and the intensity-normalised copy as two series:
}  # they are two groups, so that the mapper keeps one and the person can flip it

# Tokens that carry no protocol identity: run/repeat markers, vendor prefixes.
_RUN_RE = re.compile(r"(?i)(?:^|[_\s-])(?:run|rep|repeat)(?:[-_ ]?0*\d+|[+=])(?=$|[_\s-])")
_DATE_RE = re.compile(r"(?<!\d)(?:19|20)\d{6}(?!\d)|(?<!\d)\d{1,2}[./-]\d{1,2}[./-]\d{2,4}(?!\d)")
_DUP_RE = re.compile(r"__.*$")
_VENDOR_PREFIX_RE = re.compile(r"^(?:WIP|PU:|[A-Z]+:)\s*")
_TRAILING_NUM_RE = re.compile(r"[_\s-]+\d+$")


def normalize_name(name: str) -> str:
    """Protocol name without run numbers, dates, ``__dup`` markers and vendor prefixes.

    ``"WIP RESTING FMRI SENSE"`` -> ``"resting fmri sense"``;
    ``"retinotopia_8bar_Run2"`` -> ``"retinotopia_8bar"``.
    """
    s = (name or "").strip()
    s = _DUP_RE.sub("", s)
    s = _VENDOR_PREFIX_RE.sub("", s)
    s = _DATE_RE.sub("", s)
    s = _RUN_RE.sub("", s)
    s = re.sub(r"\s+", " ", s).strip(" _-")
    return s.lower()


def slug(text: str, maxlen: int = 28) -> str:
    s = re.sub(r"[^0-9a-z]+", "_", text.lower()).strip("_")
    return (s[:maxlen].rstrip("_")) or "series"


def sequence_family(s: SeriesInfo) -> str:
    """The sequence family from the vendor sequence name (``*tfl3d1_16ns`` -> ``tfl3d``)."""
    seq = (s.sequence_name or s.pulse_sequence or "").strip().lower().lstrip("*")
    if not seq or seq in {"not found", "none"}:
        return ""
    m = re.match(r"[a-z_]+(?:\d[a-z]+)?", seq)
    fam = m.group(0) if m else seq
    return fam.rstrip("_")


def image_flags(s: SeriesInfo) -> tuple[str, ...]:
    parts = {p.strip().upper() for p in (list(s.image_type) + list(s.image_type_parts)) if p}
    flags = sorted(parts & _KEY_IMAGE_TYPES)
    if s.is_derived and "DERIVED" not in flags:
        flags.append("DERIVED")
    if s.is_motion_corrected and "MOCO" not in flags:
        flags.append("MOCO")
    if s.complex_part:
        flags.append(f"part={s.complex_part}")
    return tuple(sorted(flags))


def _round(v: float | None, nd: int) -> float | None:
    if v is None or v < 0:
        return None
    return round(float(v), nd)


def n_echoes(s: SeriesInfo) -> int:
    return max(len(set(s.echo_numbers)), len(set(s.echo_times)), 1)


def frames(s: SeriesInfo) -> int:
    """A size measure comparable within a protocol: volumes when known, else stacked images."""
    if s.n_volumes and s.n_volumes > 1:
        return s.n_volumes
    if s.dim4 and s.dim4 > 1:
        return s.dim4
    return max(s.dim3 * max(s.dim4, 1), s.series_files, 1)


def acq_order_key(s: SeriesInfo) -> tuple[Any, ...]:
    """Acquisition order within a session: series number, then time, then series id."""
    num = s.series_number
    if num is None:
        m = re.match(r"\s*(\d+)", s.series_id or "")
        num = int(m.group(1)) if m else None
    t = s.acquisition_time or s.time or ""
    return (num if num is not None else 10**9, t, s.series_id)


def subject_of(s: SeriesInfo) -> str:
    return s.subject or sanitize_label(s.patient_id) or "unknown"


def fill_subjects(series: list[SeriesInfo]) -> list[SeriesInfo]:
    """Set ``subject`` from PatientID where it is empty (heudiconv dicominfo.tsv)."""
    for s in series:
        if not s.subject:
            s.subject = subject_of(s)
    return series


def signature(s: SeriesInfo) -> dict[str, Any]:
    proto = normalize_name(s.protocol_name or s.series_description)
    desc = normalize_name(s.series_description or s.protocol_name)
    return {
        "protocol": proto,
        "description": desc,
        "family": sequence_family(s),
        "image_type": image_flags(s),
        "matrix": (s.dim1, s.dim2),
        "orientation": s.orientation,
        "TR": _round(s.TR, 3),
        # a multi-echo series is named by its shortest echo: which echo's file came first
        # (and so filled the heudiconv TE column) is an accident of file order
        "TE": _round(min(s.echo_times) if len(s.echo_times) > 1 else s.TE, 1),
        "TI": _round(s.inversion_time, 0),
        "flip": _round(s.flip_angle, 0),
        "echoes": n_echoes(s),
        "pe": s.pe_direction or s.pe_axis,
        "sop": s.sop_class,
    }


def _sig_key(sig: dict[str, Any]) -> tuple[Any, ...]:
    return tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in sorted(sig.items()))


@dataclass
class GroupingResult:
    groups: list[Group]
    series_group: dict[str, str]  # SeriesInfo.key -> group_id
    matrix: dict[str, dict[str, int]] = field(default_factory=dict)  # group -> "sub/ses" -> n
    series_flags: dict[str, list[str]] = field(default_factory=dict)  # key -> flags
    report: str = ""


def sessions_of(series: list[SeriesInfo]) -> list[tuple[str, str]]:
    return sorted({(subject_of(s), s.session) for s in series})


def _cell(sub: str, ses: str) -> str:
    return f"{sub}/{ses}" if ses else sub


def group_series(series: list[SeriesInfo]) -> GroupingResult:
    """Put every series in exactly one group; flag missing/extra/repeated/aborted/drift."""
    fill_subjects(series)
    ordered = sorted(series, key=lambda s: (subject_of(s), s.session, acq_order_key(s)))
    buckets: dict[tuple[Any, ...], list[SeriesInfo]] = {}
    sigs: dict[tuple[Any, ...], dict[str, Any]] = {}
    for s in ordered:
        sig = signature(s)
        k = _sig_key(sig)
        buckets.setdefault(k, []).append(s)
        sigs.setdefault(k, sig)
    # Stable order: by first acquisition position over sessions, then by name.
    first_pos: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for k, members in buckets.items():
        m0 = members[0]
        first_pos[k] = (acq_order_key(m0)[0], acq_order_key(m0)[1], sigs[k]["protocol"])
    keys = sorted(buckets, key=lambda k: first_pos[k])
    all_cells = [_cell(sub, ses) for sub, ses in sessions_of(series)]
    groups: list[Group] = []
    series_group: dict[str, str] = {}
    matrix: dict[str, dict[str, int]] = {}
    series_flags: dict[str, list[str]] = defaultdict(list)
    used_ids: set[str] = set()
    for i, k in enumerate(keys, 1):
        members = buckets[k]
        sig = sigs[k]
        label = sig["protocol"] or sig["description"] or "unnamed"
        gid = f"g{i:02d}_{slug(label)}"
        while gid in used_ids:
            gid += "_"
        used_ids.add(gid)
        g = Group(group_id=gid, label=label, series_keys=[m.key for m in members])
        g.signature = {k2: (list(v) if isinstance(v, tuple) else v) for k2, v in sig.items()}
        counts = Counter(_cell(subject_of(m), m.session) for m in members)
        matrix[gid] = dict(counts)
        flags: list[str] = []
        if any(c > 1 for c in counts.values()):
            flags.append("repeated")
        present = len(counts)
        if len(all_cells) > 1:
            if present < len(all_cells) and present * 2 > len(all_cells):
                flags.append("missing:" + ",".join(c for c in all_cells if c not in counts))
            elif present * 2 <= len(all_cells) and len(all_cells) > 2:
                flags.append("extra:" + ",".join(sorted(counts)))
        # aborted: too few volumes relative to the group's typical count
        sizes = [frames(m) for m in members]
        typical = statistics.median_high(sizes)
        g.signature["typical_frames"] = typical
        g.signature["n_series"] = len(members)
        for m, n in zip(members, sizes, strict=True):
            if typical >= 10 and n < 0.5 * typical:
                series_flags[m.key].append(f"aborted:{n}/{typical}")
        if any(series_flags[m.key] for m in members):
            flags.append("aborted")
        # parameter drift: facts outside the key that vary inside the group
        for attr in ("dim3", "slice_thickness", "n_slices", "field_strength", "model_name"):
            vals = {getattr(m, attr) for m in members if getattr(m, attr) not in (None, "", 0)}
            if attr == "dim3" and any(m.dim4 <= 1 for m in members):
                continue  # stacked 4D (Philips classic) varies with the volume count
            if len(vals) > 1:
                flags.append(f"drift:{attr}")
        ps = {tuple(m.pixel_spacing) for m in members if m.pixel_spacing}
        if len(ps) > 1:
            flags.append("drift:pixel_spacing")
        g.flags = flags
        groups.append(g)
        for m in members:
            series_group[m.key] = gid
    for g in groups:
        g.series_flags = {k: list(series_flags[k]) for k in g.series_keys if series_flags.get(k)}
    res = GroupingResult(groups, series_group, matrix, dict(series_flags))
    res.report = grouping_report(series, res)
    return res


def group_rows(res: GroupingResult) -> list[dict[str, str]]:
    return [g.to_row() for g in res.groups]


def read_groups(path: str | Path) -> list[Group]:
    """Read ``aggregated_dicominfo_groups.tsv`` back into :class:`Group` objects."""
    from engine.atomic import read_tsv

    return [Group.from_row(r) for r in read_tsv(path)]


def _series_label(s: SeriesInfo | None, key: str) -> str:
    """``sub-01 ses-02 series 13 'ep2d_bold_nback'``: what a person finds on the scanner
    console, not the internal ``subject|session|series_id`` key."""
    if s is None:
        return key
    where = f"sub-{subject_of(s)}" + (f" ses-{s.session}" if s.session else "")
    num = s.series_number if s.series_number is not None else s.series_id
    return f"{where} series {num} {(s.series_description or s.protocol_name)!r}"


def _series_order(by_key: dict[str, SeriesInfo], key: str) -> tuple:
    s = by_key.get(key)
    if s is None:
        return ("", "", 10**9, key)
    num = s.series_number if s.series_number is not None else 10**9
    return (subject_of(s), s.session, num, s.series_id)


def grouping_report(series: list[SeriesInfo], res: GroupingResult) -> str:
    by_key = {s.key: s for s in series}
    cells = [_cell(sub, ses) for sub, ses in sessions_of(series)]
    lines = [
        f"Grouping: {len(series)} series from {len(cells)} subject/session(s) "
        f"-> {len(res.groups)} protocol group(s)",
        "",
        "Groups (same protocol = same normalised name, sequence family, image type, geometry,",
        "TR/TE/TI/flip, echo count and phase-encoding direction):",
    ]
    for g in res.groups:
        sig = g.signature
        ex = by_key.get(g.series_keys[0]) if g.series_keys else None
        desc = ex.series_description if ex else ""
        lines.append(
            f"  {g.group_id:<34} {len(g.series_keys):>3} series  seq={sig.get('family') or '?'}"
            f"  TR={sig.get('TR')}  TE={sig.get('TE')}  type={'/'.join(sig.get('image_type') or [])}"
            f"  e.g. {desc!r}"
        )
        if g.flags:
            lines.append(f"  {'':<34} flags: {', '.join(g.flags)}")
    lines += ["", "Protocol matrix (series count per subject/session; '.' = missing):"]
    width = max([len(c) for c in cells] + [5])
    lines.append(f"  {'group':<34} " + " ".join(f"{c:>{width}}" for c in cells))
    for g in res.groups:
        row = res.matrix.get(g.group_id, {})
        lines.append(
            f"  {g.group_id:<34} "
            + " ".join(f"{(str(row[c]) if c in row else '.'):>{width}}" for c in cells)
        )
    flagged = {k: v for k, v in res.series_flags.items() if v}
    if flagged:
        lines += ["", "Series flags:"]
        for k, v in sorted(flagged.items(), key=lambda kv: _series_order(by_key, kv[0])):
            lines.append(f"  {_series_label(by_key.get(k), k)}: {', '.join(v)}")
    from engine.text import printable_text  # header text may hold ESC/BEL: never shown raw

    return printable_text("\n".join(lines) + "\n")


def write_grouping(out_dir: str | Path, res: GroupingResult) -> None:
    """Write ``aggregated_dicominfo_groups.tsv`` and ``grouping_report.txt`` into OUT."""
    from engine.atomic import write_text_atomic, write_tsv_atomic
    from engine.workspace import GROUPING_REPORT, GROUPS_TSV

    out = Path(out_dir)
    write_tsv_atomic(out / GROUPS_TSV, GROUP_COLUMNS, group_rows(res))
    write_text_atomic(out / GROUPING_REPORT, res.report)
