"""Atomic output writing: a reader never sees a half-written file, a crash never leaves one.

:class:`Batch` goes one step further for a step's several outputs: each is written and fsynced
beside its target first, and only when all are there are they renamed into place, under a
commit manifest, so a failed or killed step leaves either every new file or none (a commit cut
short by ``kill -9`` is finished by :func:`roll_forward` the next time OUT is locked).

A write that fails because the disk is full or the folder is not writable raises
:class:`OutputError` (a :class:`~engine.errors.UserError`): one line that names the file and
the fix, never a traceback; the previous version of the file is left as it was.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from engine.errors import UserError

COMMIT_MANIFEST = ".llmh.commit"  # in OUT while a batch's renames are under way
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


class OutputError(UserError):
    """OUT (or a file in it) cannot be written: no space, read-only, no permission."""


def is_output_errno(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (*_NO_SPACE, *_NOT_WRITABLE)


def output_error(path: str | os.PathLike[str], exc: BaseException) -> OutputError:
    """One line for a person: what could not be written, why, and what to do."""
    p = Path(path)
    folder = p.parent if p.name else p
    num = getattr(exc, "errno", None)
    why = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    if num in _NO_SPACE:
        fix = f"free some space on the disk of {folder} or choose another output folder"
    elif num in _NOT_WRITABLE:
        fix = f"make {folder} writable or choose another output folder"
    else:
        fix = f"check {folder}"
    return OutputError(f"cannot write {p}: {why}; {fix} (earlier outputs are unchanged)")


def cache_error(
    path: str | os.PathLike[str], exc: BaseException, folder: str | os.PathLike[str] | None = None
) -> OutputError:
    """One line for a failed write of the analyze cache ``path`` (SQLite says "database or
    disk is full", "attempt to write a readonly database", "unable to open database file"...);
    with ``folder`` instead: of some SQLite database in that folder."""
    msg = str(exc) or type(exc).__name__
    low = msg.lower()
    what = "the analyze cache" if folder is None else "a database in"
    if folder is not None:
        path = folder
    folder = folder or os.path.dirname(os.fspath(path)) or "."
    if "full" in low or ("i/o error" in low and _disk_full(folder)):
        # on a full tmpfs or overlay SQLite says "disk I/O error": the disk is the cause
        fix = f"free some space on the disk of {folder} or choose another output folder"
    elif "readonly" in low or "read-only" in low or "unable to open" in low or "permission" in low:
        fix = f"make {folder} writable or choose another output folder"
    elif what == "the analyze cache":
        fix = f"delete {path} (it is only a cache) and run again"
    else:
        fix = f"check {folder}"
    return OutputError(f"cannot write {what} {path}: {msg}; {fix}")


def _disk_full(folder: str | os.PathLike[str], spare: int = 1 << 20) -> bool:
    """Less than ``spare`` bytes left for us on the file system of ``folder`` (or above it)."""
    p = Path(folder)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        st = os.statvfs(p)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < spare


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def _write_tmp(target: Path, data: bytes, mode: int) -> Path:
    """``data`` in a new fsynced file beside ``target`` (same suffix: a staged ``.py`` still
    imports); removed again, and :class:`OutputError` raised, when the write fails."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=f".tmp{target.suffix}", dir=target.parent
        )
    except OSError as exc:
        if is_output_errno(exc):
            raise output_error(target, exc) from exc
        raise
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if is_output_errno(exc):
            raise output_error(target, exc) from exc
        raise
    return Path(tmp)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes, mode: int = 0o644) -> Path:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename over ``path``."""
    target = Path(path)
    tmp = _write_tmp(target, data, mode)
    try:
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if is_output_errno(exc):
            raise output_error(target, exc) from exc
        raise
    return target


def write_text_atomic(path: str | os.PathLike[str], text: str, mode: int = 0o644) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"), mode=mode)


def tsv_text(columns: Sequence[str], rows: Iterable[dict[str, object]]) -> str:
    """A tab-separated table with a header row; missing cells are empty."""
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(columns)
    for row in rows:
        cells = ["" if row.get(c) is None else row.get(c) for c in columns]
        if any(isinstance(v, str) and "\r" in v for v in cells):
            buf.write(_cr_safe_line(cells))  # csv leaves a lone \r unquoted: a reader's line end
        else:
            writer.writerow(cells)
    return buf.getvalue()


def _cr_safe_line(cells: list[object]) -> str:
    """One row as csv's QUOTE_MINIMAL writes it, but quoting a cell with a ``\r`` too."""
    out = []
    for v in cells:
        text = str(v)
        if any(ch in text for ch in '\t"\n\r'):
            text = '"' + text.replace('"', '""') + '"'
        out.append(text)
    return "\t".join(out) + "\n"


def write_tsv_atomic(
    path: str | os.PathLike[str], columns: Sequence[str], rows: Iterable[dict[str, object]]
) -> Path:
    """Write a tab-separated table with a header row; missing cells are empty."""
    return write_text_atomic(path, tsv_text(columns, rows))


def read_tsv(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """Read a TSV written by :func:`write_tsv_atomic` (or heudiconv) as a list of str dicts."""
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


class Batch:
    """The output files of one step, committed together or not at all.

    :meth:`write_bytes` stages a file beside its target; :meth:`source` is where a reader in
    the same step finds its current content; :meth:`commit` renames every staged file into
    place (under :data:`COMMIT_MANIFEST` in ``root``), :meth:`abort` deletes them.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.staged: dict[Path, Path] = {}  # target -> staged temporary

    def write_bytes(self, path: str | os.PathLike[str], data: bytes, mode: int = 0o644) -> Path:
        target = Path(path)
        tmp = _write_tmp(target, data, mode)
        old = self.staged.pop(target, None)
        if old is not None:
            with contextlib.suppress(OSError):
                os.unlink(old)
        self.staged[target] = tmp
        return target

    def write_text(self, path: str | os.PathLike[str], text: str) -> Path:
        return self.write_bytes(path, text.encode("utf-8"))

    def write_tsv(
        self,
        path: str | os.PathLike[str],
        columns: Sequence[str],
        rows: Iterable[dict[str, object]],
    ) -> Path:
        return self.write_text(path, tsv_text(columns, rows))

    def source(self, path: str | os.PathLike[str]) -> Path:
        """The staged file for ``path`` when this batch wrote it, else ``path``."""
        return self.staged.get(Path(path), Path(path))

    def commit(self) -> None:
        if not self.staged:
            return
        manifest = self.root / COMMIT_MANIFEST
        doc = [[str(tmp), str(target)] for target, tmp in self.staged.items()]
        try:
            write_text_atomic(manifest, json.dumps(doc) + "\n")
        except BaseException:
            self.abort()
            raise
        self.staged = {}
        roll_forward(self.root)

    def abort(self) -> None:
        for tmp in self.staged.values():
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        self.staged = {}


def roll_forward(root: str | os.PathLike[str]) -> bool:
    """Finish a batch commit that was cut short (its manifest is still in ``root``)."""
    manifest = Path(root) / COMMIT_MANIFEST
    try:
        doc = json.loads(manifest.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        doc = []  # written atomically, so only a hand-made file can be unreadable
    folders = set()
    for tmp, target in doc if isinstance(doc, list) else []:
        if os.path.exists(tmp):
            os.replace(tmp, target)
        folders.add(Path(target).parent)
    for folder in folders:
        _fsync_dir(folder)
    manifest.unlink(missing_ok=True)
    _fsync_dir(Path(root))
    return True
