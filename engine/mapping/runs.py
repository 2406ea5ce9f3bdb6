"""Per-series assignments: run numbering and BIDS paths.

Convention (docs/DEVELOPING.md): a name gets ``run-NN`` (two digits, 1-based, acquisition order
within the session) when it occurs more than once in at least one session of the study; then
every series with that name carries it. Counting is done per final BIDS name (not only per
group) so two groups that end on the same name can never collide. An SBRef takes the run of the
BOLD/DWI series it precedes, and is skipped with it when that run was aborted.

:func:`session_runs` is the one owner of that rule. It is plain Python without imports: the
mapper calls it here, and the compiler writes its source into every generated heuristic, so the
heuristic numbers runs exactly as the mapping did (on any subject of the same protocol).
"""

from __future__ import annotations

from engine.bids_schema import BidsNameError, get_schema
from engine.grouping import acq_order_key, subject_of
from engine.model import Mapping, SeriesAssignment, SeriesInfo

#: skip reasons :func:`session_runs` gives (series a heuristic matches, then leaves out)
SBREF_OF_ABORTED = "SBRef of an aborted run"
SBREF_TAKEN = "SBRef of a run that already has one (same name and run)"


def session_runs(
    events: list[tuple[str, str, str]], run_names: frozenset[str] | set[str] = frozenset()
) -> tuple[dict[str, tuple[int | None, str]], set[str]]:
    """Run numbers of one session, in acquisition order.

    ``events``: ``(series_id, name, state)`` for each series that is converted (state ``""``)
    or is an aborted run (state ``"aborted"``, never converted), in acquisition order; ``name``
    is the BIDS name without subject, session and run, e.g. ``"func/task-rest_bold"``.

    - A name is numbered 1, 2, ... in acquisition order when it is in ``run_names`` (the names
      that repeat in some session of the study) or repeats in this session.
    - An SBRef belongs to the next BOLD/DWI series of its datatype whose entities include its
      own: it takes that run's number, or is skipped when that run was aborted. A second SBRef
      with the same name and run is skipped (the first one acquired is kept).
    - Aborted runs and skipped SBRefs neither count nor take a number.

    Returns ``{series_id: (run or None, skip reason or "")}`` and the names that repeat here.
    """

    def parse(name: str) -> tuple[str, str, dict[str, str]]:
        datatype, _, stem = name.partition("/")
        parts = stem.split("_")
        return datatype, parts[-1], dict(p.partition("-")[::2] for p in parts[:-1])

    out: dict[str, tuple[int | None, str]] = {}
    partner: dict[str, str] = {}
    for i, (sid, name, state) in enumerate(events):
        if state:
            out[sid] = (None, "aborted run")
            continue
        datatype, suffix, ents = parse(name)
        if suffix != "sbref":
            continue
        for sid2, name2, state2 in events[i + 1 :]:
            datatype2, suffix2, ents2 = parse(name2)
            if datatype2 != datatype or suffix2 not in ("bold", "dwi"):
                continue
            if all(ents2.get(k) == v for k, v in ents.items()):
                if state2:
                    out[sid] = (None, "SBRef of an aborted run")
                else:
                    partner[sid] = sid2
                break
    live = [(sid, name) for sid, name, _ in events if sid not in out]
    counts: dict[str, int] = {}
    for _, name in live:
        counts[name] = counts.get(name, 0) + 1
    repeated = {name for name, n in counts.items() if n > 1}
    seen: dict[str, int] = {}
    for sid, name in live:
        if sid not in partner and (name in repeated or name in run_names):
            seen[name] = seen.get(name, 0) + 1
            out[sid] = (seen[name], "")
        elif sid not in partner:
            out[sid] = (None, "")
    taken: set[tuple[str, int | None]] = set()
    for sid, name in live:
        if sid in partner:
            out[sid] = (out[partner[sid]][0], "")
        if (name, out[sid][0]) in taken:
            out[sid] = (None, "SBRef of a run that already has one (same name and run)")
        else:
            taken.add((name, out[sid][0]))
    return out, repeated


def is_run_skip(reason: str) -> bool:
    """A skip :func:`session_runs` decided (the series matches its group, the run rule drops it)."""
    return reason in (SBREF_OF_ABORTED, SBREF_TAKEN)


def ordered_entities(entities: dict[str, object]) -> tuple[tuple[str, str], ...]:
    """Entities without sub/ses/run and empty values, in schema order."""
    order = get_schema().entity_order
    ents = {k: str(v) for k, v in entities.items() if k not in {"sub", "ses", "run"} and v}
    return tuple(sorted(ents.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 999))


def run_name(m: Mapping) -> str:
    """The name :func:`session_runs` counts: ``datatype/entities_suffix`` without sub/ses/run."""
    return f"{m.datatype}/" + "_".join(
        [f"{k}-{v}" for k, v in ordered_entities(m.entities)] + [m.suffix]
    )


def _aborted_reason(flags: list[str]) -> str:
    flag = next((f for f in flags if f.startswith("aborted")), "")
    if not flag:
        return ""
    n, _, typ = flag.partition(":")[2].partition("/")
    return f"aborted run: {n} of a typical {typ} volumes/images"


def assign_series(
    series: list[SeriesInfo],
    series_group: dict[str, str],
    mappings: dict[str, Mapping],
    series_flags: dict[str, list[str]] | None = None,
) -> list[SeriesAssignment]:
    schema = get_schema()
    series_flags = series_flags or {}
    ordered = sorted(series, key=lambda s: (subject_of(s), s.session, acq_order_key(s)))
    out: dict[str, SeriesAssignment] = {}
    sessions: dict[tuple[str, str], list[tuple[str, str, str]]] = {}
    for s in ordered:
        gid = series_group.get(s.key, "")
        m = mappings.get(gid)
        a = SeriesAssignment(subject_of(s), s.session, s.series_id, gid)
        out[s.key] = a
        events = sessions.setdefault((a.subject, a.session), [])
        if m is None:
            a.skip_reason = "no mapping for this group"
        elif m.is_skip:
            a.skip_reason = m.skip_reason
        elif _aborted_reason(series_flags.get(s.key, [])):
            a.skip_reason = _aborted_reason(series_flags[s.key])
            events.append((s.key, run_name(m), "aborted"))
        else:
            events.append((s.key, run_name(m), ""))
    # names that repeat in any session are numbered in every session
    run_names: set[str] = set()
    for events in sessions.values():
        run_names |= session_runs(events)[1]
    run_no: dict[str, int | None] = {}
    for events in sessions.values():
        for key, (run, skip) in session_runs(events, frozenset(run_names))[0].items():
            if skip and not out[key].skip_reason:
                out[key].skip_reason = skip
            run_no[key] = run
    for s in ordered:
        a = out[s.key]
        if a.skip_reason:
            continue
        m = mappings[series_group[s.key]]
        ents = dict(m.entities)
        if run_no.get(s.key) is not None:
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
