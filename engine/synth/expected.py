"""The BIDS names a careful curator would give each synthetic series (``expected_bids.json``).

Conventions (the contract the mapper is scored against):

* Subject label = the neutral label analyze gives (``01``, ``02``, ... in study order; the
  PatientIDs are ``P01``, ``P02``, ...).  Session: with more than one session per
  subject, ``ses-01``, ``ses-02``, ... in StudyDate order; with one session, no session level.
* ``run-NN`` (two digits, 1-based, acquisition order within the session) only on names that
  occur more than once in at least one session anywhere in the study -- then on every
  occurrence of that name in every session (one subject repeats its T1w, so every subject's
  T1w is ``run-01``, the repeat ``run-02``).  Skipped series (aborted, MoCo, derived, ...)
  neither count nor take a number.  Names are compared without ``run``; with a single vendor
  this is the same as "the protocol occurs more than once".
* anat: ``_T1w``, ``_T2w``, ``_FLAIR``, ``_inv-1_MP2RAGE``, ``_inv-2_MP2RAGE``, ``_UNIT1``.
* func: ``_task-<label>[_run-NN]_bold`` and ``_sbref`` with the same entities; task labels
  ``nback`` and ``rest``; the 3-echo BOLD is ``task-memory`` with ``_echo-1_bold`` ..
  ``_echo-3_bold`` (one series, three paths); the magnitude/phase BOLD is ``task-motor`` with
  ``_part-mag_bold`` / ``_part-phase_bold``.
* dwi: ``dwi/..._dir-AP_dwi``; the b0 PA series is ``fmap/..._acq-dwi_dir-PA_epi``.  SE-EPI
  field maps are ``fmap/..._dir-AP_epi`` / ``_dir-PA_epi``; the GRE field map gives
  ``_magnitude1`` + ``_magnitude2`` (one two-echo series) and ``_phasediff``.
* skipped, with ``skip`` set to the reason word: ``localizer``, ``derived`` (ADC/FA/TRACEW),
  ``motion-corrected`` (MoCo), ``aborted`` (BOLD stopped after 3 volumes), ``non-image``
  (report object).  Skipped series have ``paths == []``.

Paths have no extension and each passes ``get_schema().check_relpath``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from engine.bids_schema import get_schema
from engine.synth.protocol import SeriesPlan

NameKey = tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...]


def _key(plan: SeriesPlan) -> NameKey:
    return tuple((dt, suf, tuple(sorted(ents.items()))) for dt, suf, ents in plan.bids)


def expected_paths(sessions: Sequence[tuple[str, str, Sequence[SeriesPlan]]]) -> list[list[str]]:
    """BIDS paths (no extension) for every series of ``(subject, session, plans)`` in order."""
    schema = get_schema()
    needs_run: set[NameKey] = set()
    for _sub, _ses, plans in sessions:
        counts = Counter(_key(p) for p in plans if not p.skip)
        needs_run |= {k for k, c in counts.items() if c > 1}
    out: list[list[str]] = []
    for sub, ses, plans in sessions:
        seen: Counter[NameKey] = Counter()
        for p in plans:
            if p.skip:
                out.append([])
                continue
            k = _key(p)
            seen[k] += 1
            paths = []
            for dt, suf, ents in p.bids:
                e = dict(ents)
                if k in needs_run:
                    e["run"] = f"{seen[k]:02d}"
                paths.append(schema.make_name(dt, suf, e).relpath(sub, ses))
            out.append(paths)
    return out
