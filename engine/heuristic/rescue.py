"""One bad series never loses a subject: when heudiconv fails on a session, repair what is a
header value, find the series that still fail, convert everything else.

1. Header repair (:func:`repair_headers`): dates and times heudiconv parses (an anonymised
   ``SeriesDate`` of ``***``, a malformed ``AcquisitionTime``...) are replaced in the *staged*
   copy of the file (a symlink is replaced by a repaired copy; the input is never written) by the
   same file's valid date/time, else ``19000101``/``000000``.
2. The failing series: the one heudiconv was converting when it stopped (its log names the
   output, "Converting PREFIX (N DICOMs)"), else by bisection: heudiconv on halves of the
   series, staged alone, into a scratch folder (:func:`find_failing`).
3. The session is converted again without the failing series (the heuristic still sees them,
   so run numbers do not move; a series heudiconv cannot even read is left out of the staging).

Each failing series is reported with its cause and the fix (:func:`diagnose`).
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from engine.heuristic.outcome import SeriesFailure
from engine.heuristic.staging import SessionStage

DATE_FIELDS = ("AcquisitionDate", "SeriesDate", "ContentDate", "StudyDate")
TIME_FIELDS = ("AcquisitionTime", "SeriesTime", "ContentTime", "StudyTime")
DATETIME_FIELDS = ("AcquisitionDateTime",)
FALLBACK_DATE, FALLBACK_TIME = "19000101", "000000"

_TM = re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$")
_DT = re.compile(r"^(\d{8})(\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?)?([+-]\d{4})?$")


def valid_date(v: str) -> bool:
    try:
        dt.datetime.strptime(v, "%Y%m%d")
    except ValueError:
        return False
    return True


def valid_time(v: str) -> bool:
    if not _TM.match(v):
        return False
    hh, mm, ss = int(v[:2]), int(v[2:4] or 0), int(v[4:6] or 0)
    return hh < 24 and mm < 60 and ss < 61


def valid_datetime(v: str) -> bool:
    m = _DT.match(v)
    return bool(m) and valid_date(m[1]) and (not m[2] or valid_time(m[2]))


def _text(ds, name: str) -> str:  # noqa: ANN001
    el = ds.get(name)
    return "" if el is None else str(el).strip()


def bad_values(ds) -> dict[str, tuple[str, str]]:  # noqa: ANN001
    """Field -> (bad value, replacement) for the dates/times heudiconv cannot parse."""
    dates = [_text(ds, f) for f in DATE_FIELDS]
    times = [_text(ds, f) for f in TIME_FIELDS]
    good_date = next((d for d in dates if d and valid_date(d)), FALLBACK_DATE)
    good_time = next((t for t in times if t and valid_time(t)), FALLBACK_TIME)
    out: dict[str, tuple[str, str]] = {}
    for f, v in zip(DATE_FIELDS, dates, strict=True):
        if v and not valid_date(v):
            out[f] = (v, good_date)
    for f, v in zip(TIME_FIELDS, times, strict=True):
        if v and not valid_time(v):
            out[f] = (v, good_time)
    for f in DATETIME_FIELDS:
        v = _text(ds, f)
        if v and not valid_datetime(v):
            out[f] = (v, good_date + good_time)
    return out


def repair_headers(folders: dict[str, Path]) -> dict[str, list[str]]:
    """Repair unparseable dates/times in the staged files; series UID -> what was done."""
    import pydicom

    done: dict[str, list[str]] = {}
    for uid, folder in sorted(folders.items()):
        seen: dict[str, tuple[str, str]] = {}
        for f in sorted(folder.iterdir()):
            try:
                head = pydicom.dcmread(f, stop_before_pixels=True, force=True)
            except Exception:
                continue
            bad = bad_values(head)
            if not bad:
                continue
            ds = pydicom.dcmread(f, force=True)
            for name, (_old, new) in bad.items():
                setattr(ds, name, new)
            f.unlink()  # a symlink to the input: the repaired copy replaces the link only
            ds.save_as(f)
            for name, pair in bad.items():
                seen.setdefault(name, pair)
        if seen:
            done[uid] = [
                f"{name} {old!r} replaced by {new!r} in the staged copy only (input unchanged)"
                for name, (old, new) in sorted(seen.items())
            ]
    return done


_CONVERTING = re.compile(r"Converting (\S+) \(\d+ DICOMs\)")


def converting_prefix(log: str) -> str | None:
    """The output heudiconv was writing last (its "Converting PREFIX" line), if any."""
    found = _CONVERTING.findall(log)
    return found[-1] if found else None


def _norm(stem: str) -> str:
    return re.sub(r"_echo-\d+", "", stem).rstrip("0123456789")


def series_of_prefix(prefix: str, bids: Path, expected: dict[str, str]) -> str | None:
    """The series id whose expected path is heudiconv's output ``prefix`` (None if unsure)."""
    try:
        rel = str(Path(prefix).resolve().relative_to(bids.resolve()))
    except ValueError:
        rel = prefix
    hits = [sid for sid, stem in expected.items() if stem and _norm(stem) == _norm(rel)]
    return hits[0] if len(hits) == 1 else None


_CAUSES: list[tuple[re.Pattern[str], str, str]] = [
    (
        re.compile(r"Unable to parse datetime string: ?(.*)"),
        "a date/time in the header cannot be parsed{0}",
        "correct the series' dates/times (e.g. dcmodify -m SeriesDate=YYYYMMDD) or re-export "
        "it from the scanner/PACS",
    ),
    (
        re.compile(r"(?:WrapperError|Non-singular index precedes the slice index)(.*)"),
        "nibabel cannot read this series' multi-frame layout (WrapperError{0})",
        "convert this series by hand (dcm2niix -b y -z y -o DIR SERIES_FOLDER, then name it as "
        "the mapping says) or skip it: llm-heuristics decide OUT GROUP --skip",
    ),
    (
        re.compile(r"we do expect some files|No valid DICOM|File not large enough"),
        "dcm2niix wrote no image for this series (its pixel data is unreadable or truncated)",
        "check the files (dcm2niix -v 1 SERIES_FOLDER says why), re-export the series from the "
        "scanner/PACS, or skip it: llm-heuristics decide OUT GROUP --skip",
    ),
]


def diagnose(log: str) -> SeriesFailure:
    """Cause and fix of a failed heudiconv run, read from its output."""
    tail = "\n".join(log.splitlines()[-15:])
    for pat, cause, fix in _CAUSES:
        m = pat.search(log)
        if m:
            detail = ((m.group(1) if m.groups() else "") or "").strip()[:120]
            return SeriesFailure(cause.format(": " + detail if detail else ""), fix, tail)
    last = next((x.strip() for x in reversed(log.splitlines()) if x.strip()), "no output")
    return SeriesFailure(
        f"heudiconv failed: {last[:200]}",
        "see the heudiconv output in this report; convert the series by hand with dcm2niix or "
        "skip it: llm-heuristics decide OUT GROUP --skip",
        tail,
    )


Probe = Callable[[list[str]], tuple[int, str]]


def find_failing(ids: list[str], probe: Probe) -> dict[str, str]:
    """The series of ``ids`` that fail when converted on their own (by bisection);
    id -> heudiconv's output for it. {} when every part converts alone."""
    rc, log = probe(ids)
    if rc == 0:
        return {}
    if len(ids) == 1:
        return {ids[0]: log}
    mid = len(ids) // 2
    return find_failing(ids[:mid], probe) | find_failing(ids[mid:], probe)


_EXT = re.compile(r"(\.nii\.gz|\.nii|\.json|\.bval|\.bvec)$")


def remove_outputs(bids: Path, stem: str) -> list[str]:
    """Delete what a failed series left in the dataset (its NIfTI/sidecars, every echo)."""
    folder = (bids / stem).parent
    if not stem or not folder.is_dir():
        return []
    want = _norm(Path(stem).name)
    gone = []
    for p in sorted(folder.iterdir()):
        if p.is_file() and _EXT.search(p.name) and _norm(_EXT.sub("", p.name)) == want:
            p.unlink()
            gone.append(str(p.relative_to(bids)))
    return gone


def rescue(
    stage: SessionStage,
    conv: dict[str, str],
    expected: dict[str, str],
    bids: Path,
    first: tuple[int, str],
    sid_of_uid: dict[str, str],
    log: Callable[[str], object] = print,
) -> tuple[int, str, dict[str, list[str]], dict[str, SeriesFailure]]:
    """After heudiconv failed (``first``) on the session staged in ``stage``: repair headers,
    find the failing series among ``conv`` (series id -> UID, the converted ones), convert the
    rest into ``bids``. Returns (exit status, output) of the last run, the repairs (series id ->
    what) and the failures (series id -> cause and fix)."""
    repaired = {
        sid_of_uid.get(uid, uid): what for uid, what in repair_headers(stage.folders).items()
    }
    rc, text = first
    if repaired:
        log(f"  repaired header values of {', '.join(sorted(repaired))} (staged copy); again")
        rc, text = stage.run(bids)
    failed: dict[str, SeriesFailure] = {}
    dropped: set[str] = set()  # UIDs heudiconv cannot even read: not staged at all
    scratch = stage.work / "probe_bids"

    def probe(ids: list[str]) -> tuple[int, str]:
        shutil.rmtree(scratch, ignore_errors=True)
        try:
            return stage.run(scratch, select=ids, uids=[conv[i] for i in ids])
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    for _ in range(len(conv)):
        if rc == 0:
            break
        named = series_of_prefix(converting_prefix(text) or "", bids, expected)
        if named in conv and named not in failed:
            new = {named: text}
        else:
            log("  finding the failing series (heudiconv on parts of the session)")
            new = find_failing([s for s in conv if s not in failed], probe)
            if not new:
                break
        for sid, out in new.items():
            failed[sid] = diagnose(out)
            if converting_prefix(out) is None:
                dropped.add(conv[sid])
            remove_outputs(bids, expected.get(sid, ""))
            log(f"  series {sid} failed: {failed[sid].cause}; converting the others")
        keep = [s for s in conv if s not in failed]
        rc, text = stage.run(bids, select=keep, uids=[u for u in stage.folders if u not in dropped])
    return rc, text, repaired, failed
