"""Per-series assignments: run numbering and BIDS paths.

Convention (docs/DEVELOPING.md): a name gets ``run-NN`` (two digits, 1-based, acquisition order
within the session) when it occurs more than once in at least one session of the study; then
every series with that name carries it. Counting is done per final BIDS name (not only per
group) so two groups that end on the same name can never collide. An SBRef takes the run of the
BOLD series it precedes.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from engine.bids_schema import BidsNameError, get_schema
from engine.grouping import acq_order_key, subject_of
from engine.model import Mapping, SeriesAssignment, SeriesInfo


def _name_key(m: Mapping) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    return (m.datatype, m.suffix, tuple(sorted(m.entities.items())))


def assign_series(
    series: list[SeriesInfo],
    series_group: dict[str, str],
    mappings: dict[str, Mapping],
    series_flags: dict[str, list[str]] | None = None,
) -> list[SeriesAssignment]:
    schema = get_schema()
    series_flags = series_flags or {}
    ordered = sorted(series, key=lambda s: (subject_of(s), s.session, acq_order_key(s)))
    live: list[SeriesInfo] = []
    out: dict[str, SeriesAssignment] = {}
    for s in ordered:
        gid = series_group.get(s.key, "")
        m = mappings.get(gid)
        a = SeriesAssignment(subject_of(s), s.session, s.series_id, gid)
        out[s.key] = a
        if m is None:
            a.skip_reason = "no mapping for this group"
        elif m.is_skip:
            a.skip_reason = m.skip_reason
        elif any(f.startswith("aborted") for f in series_flags.get(s.key, [])):
            flag = next(f for f in series_flags[s.key] if f.startswith("aborted"))
            n, _, typ = flag.partition(":")[2].partition("/")
            a.skip_reason = f"aborted run: {n} of a typical {typ} volumes/images"
        else:
            live.append(s)
    # count each name per session
    per_session: Counter[tuple[str, str, tuple]] = Counter()
    for s in live:
        per_session[(subject_of(s), s.session, _name_key(mappings[series_group[s.key]]))] += 1
    needs_run = {k[2] for k, n in per_session.items() if n > 1}
    run_no: dict[str, int] = {}
    counters: defaultdict[tuple, int] = defaultdict(int)
    for s in live:
        nk = _name_key(mappings[series_group[s.key]])
        if nk in needs_run:
            counters[(subject_of(s), s.session, nk)] += 1
            run_no[s.key] = counters[(subject_of(s), s.session, nk)]
    # SBRef shares its BOLD's run: the next BOLD with the same entities in the session
    by_session: defaultdict[tuple[str, str], list[SeriesInfo]] = defaultdict(list)
    for s in live:
        by_session[(subject_of(s), s.session)].append(s)
    for sess in by_session.values():
        for i, s in enumerate(sess):
            m = mappings[series_group[s.key]]
            if m.suffix != "sbref":
                continue
            for t in sess[i + 1 :]:
                mt = mappings[series_group[t.key]]
                if (
                    mt.datatype == m.datatype
                    and mt.suffix in ("bold", "dwi")
                    and all(mt.entities.get(k) == v for k, v in m.entities.items())
                ):
                    if t.key in run_no:
                        run_no[s.key] = run_no[t.key]
                    else:
                        run_no.pop(s.key, None)
                    break
    for s in live:
        a = out[s.key]
        m = mappings[series_group[s.key]]
        ents = dict(m.entities)
        if s.key in run_no:
            ents["run"] = f"{run_no[s.key]:02d}"
        try:
            name = schema.make_name(m.datatype, m.suffix, ents)
        except BidsNameError as exc:  # pragma: no cover - mappings are checked before
            a.skip_reason = f"invalid BIDS name: {exc}"
            continue
        a.bids_path = name.relpath(a.subject, a.session)
        if (
            m.echoes > 1
            and not m.extra_suffixes
            and "echo" not in ents
            and "echo" in schema.allowed_entities(m.datatype, m.suffix)
        ):
            # one series holding N echoes: dcm2niix writes _eN, heudiconv renames to _echo-N
            paths = [
                schema.make_name(m.datatype, m.suffix, {**ents, "echo": str(e)}).relpath(
                    a.subject, a.session
                )
                for e in range(1, m.echoes + 1)
            ]
            a.bids_path, a.extra_paths = paths[0], paths[1:]
        for extra in m.extra_suffixes:
            try:
                xname = schema.make_name(m.datatype, extra, ents)
            except BidsNameError:
                continue
            a.extra_paths.append(xname.relpath(a.subject, a.session))
    return [out[s.key] for s in ordered]
