"""Compile a mapping (rules, LLM or user decisions alike) into a heudiconv heuristic module.

Deterministic: the same series, groups and mappings always give the same source text. The
module defines ``create_key``, ``infotodict``, ``infotoids``, with field maps ``custom_callable``
(which writes IntendedFor and B0FieldIdentifier/B0FieldSource, :mod:`.b0fields`) and, only when a
group can be told apart by nothing else, ``custom_seqinfo``. The text is the same whatever tools
are installed (no formatter runs over it).
"""

from __future__ import annotations

import inspect
import textwrap
from dataclasses import dataclass, field

from engine import __version__
from engine.heuristic import b0fields
from engine.heuristic.conditions import HELPER_SOURCE, Condition, Selection, is_volume, select
from engine.heuristic.layout import blank_lines, table
from engine.heuristic.plan import BidsKey, Plan, build_plan, series_order_key
from engine.heuristic.seqinfo import CUSTOM_FIELDS, custom_seqinfo_source, to_seqinfo
from engine.mapping.runs import session_runs
from engine.model import Group, Mapping, SeriesAssignment, SeriesInfo
from engine.private import REDACTED, expand_values, redact

# the run rule the mapper applies, written into every heuristic (one owner of run numbers)
RUNS_SOURCE = inspect.getsource(session_runs)

# what the heuristic needs of engine.private: the map reader and the redaction of the table
_REDACTABLE = ("protocol_name", "series_description", "study_description", "sequence_name")
PRIVATE_SOURCE = "\n\n".join(
    [
        inspect.getsource(expand_values).strip(),
        inspect.getsource(redact).strip(),
        "_IDENTITIES = set()  # filled by _subject_map()",
        '''def _subject_map():
    """PatientID -> label, and the identity values, from the private map (none: {})."""
    import json as _json
    import os as _os

    here = _os.path.dirname(_os.path.abspath(__file__)) if "__file__" in globals() else "."
    for path in (
        _os.environ.get("LLMH_SUBJECT_MAP", ""),
        _os.path.join(here, "private", "subject_map.tsv"),
    ):
        if path and _os.path.isfile(path):
            with open(path, encoding="utf-8") as fh:
                lines = fh.read().splitlines()
            cols = lines[0].split("\\t") if lines else []
            out, raw = {}, []
            for line in lines[1:]:
                row = dict(zip(cols, line.split("\\t"), strict=False))
                out[row.get("patient_id", "")] = row.get("subject", "")
                raw += [row.get("patient_id", "")] + _json.loads(row.get("identities") or "[]")
            _IDENTITIES.update(expand_values(raw))
            return out
    return {}''',
    ]
)
# field-map intent, written by the heuristic itself when heudiconv runs it (engine.heuristic.b0fields)
B0_SOURCE = "\n\n".join(
    [
        f"_NOT_IN_NAME = {b0fields._NOT_IN_NAME!r}",
        f"_FMAP_SUFFIXES = {b0fields._FMAP_SUFFIXES!r}",
        *(
            inspect.getsource(f).strip()
            for f in (
                b0fields.b0_name,
                b0fields.b0_identifier,
                b0fields.write_b0_fields,
                b0fields._rewrite_json,
            )
        ),
    ]
)
CALLABLE_SOURCE = '''def custom_callable(prefix, outtypes, item_dicoms):
    """heudiconv calls this after converting each series: the field maps of its session get
    IntendedFor and B0FieldIdentifier, their targets B0FieldSource, as INTENDED_FOR says."""
    session_dir = os.path.dirname(os.path.dirname(os.path.abspath(prefix)))
    if os.path.basename(session_dir).startswith(("sub-", "ses-")):
        write_b0_fields(session_dir, INTENDED_FOR)
'''
REDACT_SEQINFO_SOURCE = f'''def _redacted(s):
    """The series with the study's identity values redacted from its names, as they are in
    the series table these conditions were built from (series_id stays heudiconv's)."""
    if not _IDENTITIES:
        return s
    return s._replace(**{{a: redact(getattr(s, a), _IDENTITIES) for a in {_REDACTABLE!r}}})
'''


@dataclass
class CompiledGroup:
    group: Group
    mapping: Mapping
    key: BidsKey
    selection: Selection
    aborted: Selection | None = None  # recognises this group's aborted runs (time series)


@dataclass
class Compiled:
    """The heuristic source plus what went into it (for reports and the TUI)."""

    source: str
    plan: Plan
    groups: list[CompiledGroup] = field(default_factory=list)
    custom_fields: tuple[str, ...] = ()
    problems: list[str] = field(default_factory=list)  # groups that could not be separated


def _select_all(
    plan: Plan, custom_fields: tuple[str, ...]
) -> tuple[list[CompiledGroup], list[str]]:
    seq = {s.key: to_seqinfo(s, custom_fields) for s in plan.series}
    out: list[CompiledGroup] = []
    problems: list[str] = []
    first_seen = {}
    for s in sorted(plan.series, key=lambda s: (s.subject, s.session, series_order_key(s))):
        gid = plan.group_of.get(s.key)
        if gid is not None and gid not in first_seen:
            first_seen[gid] = len(first_seen)
    groups = sorted(
        plan.converted_groups(), key=lambda g: (first_seen.get(g.group_id, 10**9), g.group_id)
    )
    for g in groups:
        key = plan.keys[g.group_id]
        pos_keys = [k for k in g.series_keys if k in seq and k not in plan.skip_series]
        if not pos_keys:
            continue
        neg_keys = [
            s.key
            for s in plan.series
            if s.key in plan.skip_series or plan.keys.get(plan.group_of.get(s.key, "")) != key
        ]
        pos = [seq[k] for k in pos_keys]
        neg = [seq[k] for k in neg_keys]
        guard = key.datatype in {"func", "dwi", "perf"} and key.suffix not in {"sbref", "events"}
        te_ok = not _multi_echo(
            plan, [CompiledGroup(g, plan.mappings[g.group_id], key, Selection())]
        )
        sel = select(pos, neg, custom_fields, guard_volumes=guard, te_ok=te_ok)
        if sel.unresolved:
            names = sorted({neg[i].series_id for i in sel.unresolved})
            problems.append(
                f"group {g.group_id} ({g.label}): cannot be told apart from {', '.join(names[:5])}"
            )
        out.append(CompiledGroup(g, plan.mappings[g.group_id], key, sel))
    problems += _aborted_matchers(plan, out, seq, custom_fields)
    return out, problems


def _aborted_matchers(
    plan: Plan, compiled: list[CompiledGroup], seq: dict[str, object], custom: tuple[str, ...]
) -> list[str]:
    """Give each BOLD/DWI group a test for its aborted runs: its own conditions with the volume
    guard turned round. The run rule skips an SBRef taken just before an aborted run, so the
    heuristic must see those runs where the mapper did (checked here on the whole study)."""
    keys = [s.key for s in plan.series]
    seqs = [seq[k] for k in keys]
    for cg in compiled:
        vol = [c for c in cg.selection.conditions if is_volume(c)]
        if cg.key.suffix not in ("bold", "dwi") or not vol:
            continue
        rest = [c for c in cg.selection.conditions if not is_volume(c)]
        cg.aborted = Selection([*rest, Condition(_negate(vol), 9.0)])
    want = {k: plan.keys[plan.group_of[k]].name for k in plan.aborted}
    got = _aborted_seen(compiled, keys, seqs)
    if got == want or _run_outcome(plan, got) == _run_outcome(plan, want):
        return []
    for cg in compiled:  # tell the aborted runs apart from what else the test takes
        if cg.aborted is None:
            continue
        wrong = [
            seqs[i]
            for i, k in enumerate(keys)
            if got.get(k) == cg.key.name and want.get(k) != cg.key.name
        ]
        members = [seq[k] for k in cg.group.series_keys if k in seq]
        if wrong and members:
            extra = select(members, wrong, custom, volume_ok=False)
            known = {c.code for c in cg.aborted.conditions}
            add = [c for c in extra.conditions if c.code not in known]
            cg.aborted = Selection([*add, *cg.aborted.conditions])
    got = _aborted_seen(compiled, keys, seqs)
    if _run_outcome(plan, got) == _run_outcome(plan, want):
        return []
    odd = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
    return [
        "aborted runs: the heuristic's tests and the mapping disagree on "
        + ", ".join(k.rsplit("|", 1)[-1] for k in odd[:5])
        + " (SBRef runs may differ)"
    ]


def _run_outcome(plan: Plan, aborted: dict[str, str]) -> list[dict[str, tuple[int | None, str]]]:
    """What the run rule decides in every session when ``aborted`` are the aborted runs."""
    out = []
    for sub, ses in plan.sessions():
        events = []
        for s in plan.series_in(sub, ses):
            if s.key in aborted:
                events.append((s.key, aborted[s.key], "aborted"))
            elif s.key not in plan.skip_series:
                events.append((s.key, plan.keys[plan.group_of[s.key]].name, ""))
        runs = session_runs(events, frozenset(plan.run_names))[0]
        out.append({k: v for k, v in runs.items() if k not in aborted})
    return out


def _negate(conds: list[Condition]) -> str:
    """``not (a and b)``, written ``s.dim4 < 6`` for one plain comparison."""
    if len(conds) == 1:
        for op, inv in ((" >= ", " < "), (" > ", " <= ")):
            left, sep, right = conds[0].code.rpartition(op)
            if sep and right.strip().isdigit():
                return f"{left}{inv}{right}"
    return "not (" + " and ".join(c.code for c in conds) + ")"


def _fires(sel: Selection, s: object) -> bool:
    return all(c.evaluate([s])[0] for c in sel.conditions)


def _aborted_seen(
    compiled: list[CompiledGroup], keys: list[str], seqs: list[object]
) -> dict[str, str]:
    """Series key -> name, for the series the heuristic would list as aborted runs."""
    out: dict[str, str] = {}
    for k, s in zip(keys, seqs, strict=True):
        if any(_fires(cg.selection, s) for cg in compiled):
            continue
        for cg in compiled:
            if cg.aborted is not None and _fires(cg.aborted, s):
                out[k] = cg.key.name
                break
    return out


def compile_heuristic(
    series: list[SeriesInfo],
    groups: list[Group],
    mappings: list[Mapping],
    assignments: list[SeriesAssignment] | None = None,
    *,
    context: str = "",
    title: str = "",
) -> Compiled:
    """Build the heuristic source for this study; see :class:`Compiled`."""
    plan = build_plan(series, groups, mappings, assignments)
    compiled, problems = _select_all(plan, ())
    custom: tuple[str, ...] = ()
    if problems:
        with_custom, problems2 = _select_all(plan, CUSTOM_FIELDS)
        if len(problems2) < len(problems):
            compiled, problems, custom = with_custom, problems2, CUSTOM_FIELDS
            used = {
                f
                for cg in compiled
                for c in cg.selection.conditions
                for f in CUSTOM_FIELDS
                if f"'{f}'" in c.code
            }
            custom = tuple(f for f in CUSTOM_FIELDS if f in used) or ()
            if custom != CUSTOM_FIELDS:
                compiled, problems = _select_all(plan, custom)
    source = render(plan, compiled, custom, context=context, title=title)
    return Compiled(source, plan, compiled, custom, problems)


# --- rendering -------------------------------------------------------------------------------


def _comment(text: str, indent: str = "", width: int = 96) -> list[str]:
    text = " ".join(str(text).split())
    if not text:
        return []
    return [f"{indent}# {line}" for line in textwrap.wrap(text, width - len(indent) - 2)]


def _docstring(text: str) -> str:
    body = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    return f'"""{body}\n"""'


def render(
    plan: Plan,
    compiled: list[CompiledGroup],
    custom: tuple[str, ...],
    *,
    context: str = "",
    title: str = "",
) -> str:
    n_conv = len(compiled)
    skipped = [g for g in plan.groups if g.group_id not in plan.keys]
    subjects = sorted({s.subject for s in plan.series})
    has_sessions = any(s.session for s in plan.series)
    doc = [
        f"heudiconv heuristic{' for ' + title if title else ''}, generated by llm-heuristics {__version__}.",
        "",
        f"{n_conv} group(s) converted, {len(skipped)} skipped; built from {len(plan.series)} series of "
        f"{len(subjects)} subject(s){' with sessions' if has_sessions else ''}.",
        "Conditions test stable series properties only (protocol and series names, ImageType,",
        "sequence, dims, TE/TR, volume count), never series numbers or UIDs, so this file serves",
        "every subject scanned with the same protocol. ``run-NN`` appears only on names that",
        "repeat within a session somewhere in the study.",
        "",
        "Use: heudiconv --files DICOM_DIR -f this_file.py -c dcm2niix -b -o BIDS_DIR",
        "(infotoids names each study's subject and session from private/subject_map.tsv beside",
        "this file or $LLMH_SUBJECT_MAP; or give -s SUBJECT [-ss SESSION] for a single study).",
    ]
    if context.strip():
        doc += [
            "",
            "Study context given by the user:",
            *textwrap.wrap(" ".join(context.split()), 92),
        ]
    parts: list[str] = [_docstring("\n".join(doc)), ""]
    intended = plan.intended_for()
    if intended:
        parts += ["import json", "import os", "import re", ""]
    elif any(cg.selection.code.find("re.fullmatch") >= 0 for cg in compiled):
        parts += ["import re", ""]
    if intended:
        parts += [
            "# Field maps: field-map name -> the names it serves (BIDS names without subject,",
            "# session and run). heudiconv calls custom_callable after each series; it writes",
            "# IntendedFor, B0FieldIdentifier and B0FieldSource from this table (heudiconv's own",
            "# POPULATE_INTENDED_FOR_OPTS matching is not used: it cannot express the mapping).",
            *table("INTENDED_FOR", intended),
            "",
        ]
    # subject/session ids for runs without -s/-ss: the PatientID -> label map is read at run
    # time from OUT/private (engine.private); only labels and dates are written here
    labels = sorted({s.subject for s in plan.series if s.subject})
    ses_pairs: dict[tuple[str, str], set[str]] = {}
    for s in plan.series:
        if s.session:
            ses_pairs.setdefault((s.subject, s.date), set()).add(s.session)
    ses_table = sorted((k, next(iter(v))) for k, v in ses_pairs.items() if len(v) == 1)
    redacting = any(REDACTED in str(getattr(s, a, "")) for s in plan.series for a in _REDACTABLE)
    parts += [
        PRIVATE_SOURCE,
        "",
        "SUBJECTS = _subject_map()  # PatientID -> subject label (OUT/private/subject_map.tsv)",
        "LABELS = {" + ", ".join(repr(x) for x in labels) + "}",
        "# (subject label, acquisition date) -> session label",
        *table("SESSIONS", dict(ses_table)),
        "",
        "",
        'def create_key(template, outtype=("nii.gz",), annotation_classes=None):',
        "    if template is None or not template:",
        '        raise ValueError("Template must be a valid format string")',
        "    return template, outtype, annotation_classes",
        "",
        "",
        "def infotoids(seqinfos, outdir):",
        '    """Subject and session of one study, when heudiconv runs without -s/-ss."""',
        "    s = next(iter(seqinfos))",
        "    pid = str(s.patient_id)",
        "    subject = SUBJECTS.get(pid) or (pid if pid in LABELS else None)",
        "    if subject is None:",
        "        raise ValueError(",
        '            "no subject label for this PatientID: run heudiconv with -s LABEL, or keep "',
        '            "private/subject_map.tsv beside this file (or name it in $LLMH_SUBJECT_MAP)"',
        "        )",
        '    return {"locator": None, "session": SESSIONS.get((subject, s.date)), "subject": subject}',
        "",
    ]
    if redacting:
        parts += ["", REDACT_SEQINFO_SOURCE]
    if intended:
        parts += ["", B0_SOURCE, "", CALLABLE_SOURCE]
    if custom:
        parts += ["", custom_seqinfo_source(custom)]
    if custom or any("_custom(" in cg.selection.code for cg in compiled):
        parts += ["", HELPER_SOURCE.strip() + "\n"]
    parts += ["", RUNS_SOURCE.strip() + "\n"]
    # data tables: BIDS name -> heudiconv template, and the names numbered run-NN
    templates: dict[str, str] = {}
    for cg in compiled:
        if cg.key.name not in templates:
            cgs = [c for c in compiled if c.key == cg.key]
            drop = ("echo",) if _multi_echo(plan, cgs) else ()
            templates[cg.key.name] = cg.key.template(_template_suffix(cg.key, plan, cgs), drop)
    run_names = sorted(n for n in plan.run_names if n in templates)
    body = [
        "",
        "# Names numbered _run-NN (they repeat within a session somewhere in this study; a name",
        "# that repeats in a new session is numbered there too). Counted by session_runs above.",
        "RUN_NAMES = {" + ", ".join(repr(n) for n in run_names) + "}"
        if run_names
        else "RUN_NAMES = set()",
        "# BIDS name (no subject, session, run) -> heudiconv template; {run} is _run-NN or nothing",
        *table("TEMPLATES", templates),
        "",
        "",
        "def infotodict(seqinfo):",
        '    """Map each series to its BIDS key; series matching no block are not converted.',
        "",
        "    Each block names a series; session_runs then numbers the runs (and leaves out the SBRef",
        '    of an aborted run) exactly as the mapping did."""',
        '    found = []  # (series id, BIDS name without run, "" or "aborted"), in acquisition order',
        "    for s in seqinfo:",
    ]
    if redacting:
        body.append("        s = _redacted(s)  # names typed into protocol names, as in the table")
    if not compiled:
        body.append("        pass")
    for cg in compiled:
        body += _group_block(cg, plan)
    for cg in compiled:
        if cg.aborted is not None:
            body += _aborted_block(cg)
    if skipped:
        body.append("        # Not converted:")
        for g in skipped:
            m = plan.mappings.get(g.group_id)
            why = (m.skip_reason if m else "") or "no mapping"
            src = f" [{m.source}]" if m else ""
            body += _comment(f"{g.group_id} {g.label!r}: {why}{src}", "        ")
    body += [
        "    runs, _ = session_runs(found, RUN_NAMES)",
        "    info = {}",
        "    for series_id, name, _state in found:",
        "        run, skip = runs[series_id]",
        "        if not skip:",
        '            template = TEMPLATES[name].replace("{run}", f"_run-{run:02d}" if run else "")',
        "            info.setdefault(create_key(template), []).append(series_id)",
    ]
    body.append("    return info")
    parts += body
    return blank_lines("\n".join(parts)).rstrip("\n") + "\n"


def _multi_echo(plan: Plan, cgs: list[CompiledGroup]) -> bool:
    """Every series of these groups holds several echoes: heudiconv adds ``_echo-N`` itself."""
    by_key = {s.key: s for s in plan.series}
    members = [by_key[k] for cg in cgs for k in cg.group.series_keys if k in by_key]
    return bool(members) and all(
        len(set(s.echo_numbers)) > 1 or len(set(s.echo_times)) > 1 for s in members
    )


def _template_suffix(key: BidsKey, plan: Plan, cgs: list[CompiledGroup]) -> str:
    """``magnitude`` when a magnitude1 series holds both echoes: heudiconv then writes
    ``_magnitude1``/``_magnitude2`` itself (it appends the echo index to ``_magnitude``)."""
    if key.datatype != "fmap" or key.suffix != "magnitude1":
        return ""
    if any("magnitude2" in getattr(cg.mapping, "extra_suffixes", []) for cg in cgs):
        return "magnitude"
    by_key = {s.key: s for s in plan.series}
    members = [by_key[k] for cg in cgs for k in cg.group.series_keys if k in by_key]
    if members and all(
        len(set(s.echo_numbers)) > 1
        or len(s.echo_times) > 1
        or (not s.echo_numbers and s.dim4 == 2)
        for s in members
    ):
        return "magnitude"
    return ""


def _group_block(cg: CompiledGroup, plan: Plan) -> list[str]:
    m, g = cg.mapping, cg.group
    name = cg.key.stem("run-NN" if cg.key in plan.with_run else "")
    lines = _comment(
        f"{g.group_id} {g.label!r} -> {cg.key.datatype}/{name} "
        f"({m.source}, confidence {m.confidence:.2f}, {len(g.series_keys)} series)",
        "        ",
    )
    for ev in m.evidence[:4]:
        lines += _comment(f"- {ev}", "        ")
    if m.intended_for:
        lines += _comment(f"field map for: {', '.join(m.intended_for)}", "        ")
    if cg.selection.unresolved:
        lines += _comment("WARNING: these conditions also match series of other groups", "        ")
    cond = cg.selection.code or "True"
    lines.append(f"        if {cond}:")
    lines.append(f"            found.append((s.series_id, {cg.key.name!r}, ''))")
    lines.append("            continue")
    return lines


def _aborted_block(cg: CompiledGroup) -> list[str]:
    assert cg.aborted is not None
    lines = _comment(
        f"{cg.group.group_id}: an aborted run (too few volumes), not converted; the SBRef taken "
        "just before it is left out with it",
        "        ",
    )
    lines.append(f"        if {cg.aborted.code}:")
    lines.append(f"            found.append((s.series_id, {cg.key.name!r}, 'aborted'))")
    lines.append("            continue")
    return lines
