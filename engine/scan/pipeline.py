"""The scan: discover files, read changed headers in parallel (cached), aggregate series."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from engine.model import SeriesInfo
from engine.scan.aggregate import aggregate
from engine.scan.cache import CACHE_NAME, TEMPLATE, FactsCache, cache_error
from engine.scan.discover import discover
from engine.scan.header import NotDicom, Reader

# Files per worker task (the cache commits once per finished task): about four tasks per
# worker for balance, within these bounds.  Bigger tasks mean fewer commits and less IPC, and
# more files per series template (each task's first file of a series is decoded in full).
CHUNK_MIN = 32
CHUNK_MAX = 512


def chunk_size(n_files: int, n_cpus: int) -> int:
    return max(CHUNK_MIN, min(CHUNK_MAX, -(-n_files // (4 * max(n_cpus, 1)))))


@dataclass
class ScanResult:
    series: list[SeriesInfo] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    n_files: int = 0
    n_dicom: int = 0
    n_read: int = 0
    seconds: float = 0.0
    # how an unchanged tree was recognised: "" (headers read), "files" (every path, size
    # and mtime as before), "folders" (no folder changed; --trust-folder-times)
    reused: str = ""
    # PatientID -> (first StudyDate+StudyTime, identity values): for OUT/private only
    people: dict[str, tuple[str, list[str]]] = field(default_factory=dict)


Row = tuple[str, int, int, str, str | None, str]  # path, size, mtime, status, facts JSON, error


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def read_one(item: tuple[str, int, int], reader: Reader | None = None) -> Row:
    """One file -> a cache row; with a shared ``reader`` the facts of a file that belongs to
    the reader's current series template are stored as ``{"@": template id, per-file facts}``."""
    path, size, mtime = item
    try:
        r = reader or Reader()
        facts = r.read(path)
        if r.delta is not None and reader is not None:
            return path, size, mtime, "image", _dumps({"@": r.tpl_id, **r.delta}), ""
        return path, size, mtime, facts.get("kind", "image"), _dumps(facts), ""
    except NotDicom as exc:
        return path, size, mtime, "error", None, f"not DICOM: {exc}"
    except OSError as exc:
        return path, size, mtime, "error", None, f"unreadable: {exc.strerror or exc}"
    except Exception as exc:  # noqa: BLE001 - a scan never stops on one bad file
        return path, size, mtime, "error", None, f"unexpected {type(exc).__name__}: {exc}"


_READER: Reader | None = None  # one per process: template and prefix size carry across tasks


def read_chunk(items: list[tuple[str, int, int]]) -> list[Row]:
    """Read a chunk in order with one :class:`Reader` (prefix size and series template carry).

    Each series template met is returned once as a row with status ``"template"`` (path =
    template id, facts = its JSON), before the first file row that refers to it.
    """
    global _READER
    if _READER is None:
        _READER = Reader()
    reader = _READER
    rows: list[Row] = []
    seen: set[str] = set()
    for item in items:
        row = read_one(item, reader)
        if reader.delta is not None and reader.tpl_id not in seen:
            seen.add(reader.tpl_id)
            rows.append((reader.tpl_id, 0, 0, TEMPLATE, reader.tpl_json, ""))
        rows.append(row)
    return rows


def _chunks(items: list[Any], n: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def read_into_cache(
    cache: FactsCache,
    todo: list[tuple[str, int, int]],
    n_cpus: int,
    on_progress: Callable[[int], None] | None = None,
) -> None:
    """Read ``todo`` (in parallel when worthwhile) and commit each finished chunk."""
    global _READER
    _READER = None  # no template from an earlier scan (files may have changed since)
    if not todo:
        return
    size = chunk_size(len(todo), n_cpus)
    chunks = list(_chunks(todo, size))
    if n_cpus <= 1 or len(chunks) < 2:
        for c in chunks:
            cache.put_many(read_chunk(c))
            if on_progress:
                on_progress(len(c))
        return
    import multiprocessing as mp  # here: a re-scan that reads nothing need not load it

    ctx = mp.get_context("fork") if sys.platform.startswith("linux") else mp.get_context()
    with ctx.Pool(processes=min(n_cpus, len(chunks))) as pool:
        for rows in pool.imap_unordered(read_chunk, chunks):
            cache.put_many(rows)
            if on_progress:
                on_progress(sum(1 for r in rows if r[3] != TEMPLATE))


def default_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def scan(
    input_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    n_cpus: int | None = None,
    subject_pattern: str | None = None,
    session_pattern: str | None = None,
    progress: bool = True,
    files: list[str] | None = None,
    trust_folder_times: bool = False,
    follow_external_links: bool = False,
) -> ScanResult:
    """Scan ``input_path`` (or just ``files``) into the cache in ``out_dir``; aggregate series.

    An unchanged file set (every path, size and mtime) gives the last result without reading
    a header.  ``trust_folder_times`` skips even the stat of each file when no folder of the
    last scan changed (see :meth:`FactsCache.unchanged_signature`).

    Symbolic links that lead out of ``input_path`` are listed, not followed, unless
    ``follow_external_links``.  The cache belongs to one input: scanning another into the same
    OUT starts it afresh, and a file whose row went missing during the scan (another process
    scanning into the same cache) is read again, so a memoised result is always complete.
    """
    cache_path = os.path.join(os.path.abspath(out_dir), CACHE_NAME)
    try:
        return _scan(
            input_path, out_dir, n_cpus, subject_pattern, session_pattern, progress, files,
            trust_folder_times, follow_external_links,
        )  # fmt: skip
    except sqlite3.Error as exc:
        raise cache_error(cache_path, exc) from exc


def _scan(
    input_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    n_cpus: int | None,
    subject_pattern: str | None,
    session_pattern: str | None,
    progress: bool,
    files: list[str] | None,
    trust_folder_times: bool,
    follow_external_links: bool,
) -> ScanResult:
    t0 = time.perf_counter()
    began_ns = time.time_ns()
    out_dir = os.path.abspath(out_dir)
    n_cpus = n_cpus or default_cpus()
    root = os.path.realpath(input_path) if files is None else "files:" + repr(files)
    options = repr(
        (
            os.path.abspath(input_path),
            subject_pattern,
            session_pattern,
            files,
            follow_external_links,
        )
    )
    _private_cache(out_dir)
    cache = FactsCache(os.path.join(out_dir, CACHE_NAME))
    cache.use_input(root)
    if trust_folder_times and files is None:
        sig = cache.unchanged_signature(options)
        memo = cache.get_result(sig) if sig else None
        if memo is not None and "n_files" in memo:
            cache.close()
            return _from_memo(memo, memo["n_files"], t0, "folders")
    if files is None:
        found = discover(
            os.fspath(input_path), exclude=(out_dir,), follow_external=follow_external_links
        )
    else:
        found = discover_list(files)
    sig = _signature(
        found.files, found.errors, root, subject_pattern, session_pattern, _MEMO_VERSION
    )
    memo = cache.get_result(sig)
    if memo is not None:
        if files is None:
            cache.put_folders(found.folders, sig, options, began_ns)
        cache.close()
        return _from_memo(memo, len(found.files), t0, "files")
    try:
        todo, gone = cache.stale(found.files)
        if gone:
            cache.forget(gone)
        if progress and todo:
            _with_progress(cache, todo, n_cpus)
        else:
            read_into_cache(cache, todo, n_cpus)
        res = ScanResult(n_files=len(found.files), n_read=len(todo))
        res.errors = list(found.errors)
        present = {p for p, _, _ in found.files}
        errors, records, seen = _collect(cache, present)
        if len(seen) < len(present):
            # rows went missing under us (another analyze on this OUT): read those again
            lost = [f for f in found.files if f[0] not in seen]
            read_into_cache(cache, lost, n_cpus)
            res.n_read += len(lost)
            errors, records, seen = _collect(cache, present)
        res.errors += errors
        res.n_dicom = len(records)
        res.series = aggregate(records, subject_pattern, session_pattern, res.people)
        res.errors.sort()
        if len(seen) < len(present):
            raise sqlite3.OperationalError(
                "rows of this scan vanished twice: is another analyze writing this OUT?"
            )
        cache.put_result(
            sig,
            {
                "n_files": res.n_files,
                "n_dicom": res.n_dicom,
                "series": [s.to_row() for s in res.series],
                "errors": res.errors,
                "people": {k: list(v) for k, v in res.people.items()},
            },
        )
        if files is None:
            cache.put_folders(found.folders, sig, options, began_ns)
    finally:
        cache.close()
    res.seconds = time.perf_counter() - t0
    return res


def _collect(
    cache: FactsCache, present: set[str]
) -> tuple[list[tuple[str, str]], list[tuple[str, dict[str, Any]]], set[str]]:
    """(errors, image records, every present path that has a row)."""
    errors, records, seen = [], [], set()
    for path, status, facts, err in cache.rows():
        if path not in present:
            continue
        seen.add(path)
        if status == "error":
            errors.append((path, err))
        elif status == "image" and facts:
            records.append((path, facts))
    return errors, records, seen


def _from_memo(memo: dict[str, Any], n_files: int, t0: float, reused: str) -> ScanResult:
    res = ScanResult(n_files=n_files, n_dicom=memo["n_dicom"], n_read=0, reused=reused)
    res.series = [SeriesInfo.from_row(r) for r in memo["series"]]
    res.errors = [tuple(e) for e in memo["errors"]]
    res.people = {k: (v[0], list(v[1])) for k, v in memo.get("people", {}).items()}
    res.seconds = time.perf_counter() - t0
    return res


_MEMO_VERSION = "people-1"  # memos from before the identity values were kept are not reused


def _private_cache(out_dir: str) -> None:
    """The cache lives in OUT/private (0700); one left at OUT's top by an older version is
    moved there."""
    from engine.private import private_dir
    from engine.scan.cache import LEGACY_CACHE_NAME

    private_dir(out_dir)
    old = os.path.join(out_dir, LEGACY_CACHE_NAME)
    if os.path.exists(old) and not os.path.exists(os.path.join(out_dir, CACHE_NAME)):
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(old + suffix):
                os.replace(old + suffix, os.path.join(out_dir, CACHE_NAME) + suffix)
    elif os.path.exists(old):
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(old + suffix):
                os.unlink(old + suffix)


def _signature(files: list[tuple[str, int, int]], errors: list[tuple[str, str]], *opts: Any) -> str:
    """A digest of the file set (path, size, mtime), discovery problems and options."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr(opts).encode())
    for p, s, m in files:
        h.update(f"{p}\0{s}\0{m}\n".encode("utf-8", "surrogateescape"))
    for p, r in errors:
        h.update(f"E{p}\0{r}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def discover_list(files: list[str]):
    from engine.scan.discover import Discovered

    d = Discovered()
    for p in files:
        try:
            st = os.stat(p)
            d.files.append((os.path.abspath(p), st.st_size, st.st_mtime_ns))
        except OSError as exc:
            d.errors.append((p, f"cannot stat: {exc.strerror or exc}"))
    return d


def _with_progress(cache: FactsCache, todo: list[tuple[str, int, int]], n_cpus: int) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    console = Console(stderr=True)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as bar:
        task = bar.add_task("reading headers", total=len(todo))
        read_into_cache(cache, todo, n_cpus, lambda n: bar.advance(task, n))
