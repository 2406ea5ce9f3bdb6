"""Every file of one output folder (``OUT``): names defined once, typed reads and writes.

One encoding for every table: tab-separated with csv quoting (tabs, newlines and quotes in a
cell survive), list and dict cells in JSON (``;``, ``|`` and ``,`` inside a value survive).
Steps read and write OUT only through :class:`Workspace`; what the pipeline *means* by the
current mapping (proposal + the person's decisions) is :func:`engine.mapping.effective`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from engine.atomic import (
    Batch,
    cache_error,
    is_output_errno,
    output_error,
    read_tsv,
    roll_forward,
    write_text_atomic,
    write_tsv_atomic,
)
from engine.errors import InvalidParams, NotFound, UserError
from engine.model import (
    ASSIGNMENT_COLUMNS,
    GROUP_COLUMNS,
    MAPPING_COLUMNS,
    SERIES_COLUMNS,
    Group,
    Mapping,
    SeriesAssignment,
    SeriesInfo,
)

SERIES_TSV = "aggregated_dicominfo.tsv"
ANALYZE_ERRORS_TSV = "analyze_errors.tsv"
ANALYZE_INPUT_JSON = "analyze_input.json"  # {"inputs": ["/abs/path", ...]}: where the DICOM is
GROUPS_TSV = "aggregated_dicominfo_groups.tsv"
GROUPING_REPORT = "grouping_report.txt"
PROPOSALS_TSV = "mapping_proposals.tsv"  # what rules/LLM proposed; decisions apply to it
LEGACY_PROPOSED_TSV = "aggregated_dicominfo_mapped.proposed.tsv"  # read only (older OUT)
MAPPED_TSV = "aggregated_dicominfo_mapped.tsv"  # the effective mapping, for people and tools
ASSIGNMENTS_TSV = "series_assignments.tsv"
MAPPING_REPORT = "mapping_report.txt"
DECISIONS_FILE = "user_decisions.jsonl"
HEURISTIC_FILE = "heuristic.py"
HEURISTIC_REPORT = "heuristic_report.txt"
CONVERSION_REPORT = "conversion_report.txt"
CONVERSION_REPORTS_DIR = "conversion_reports"
BIDS_DIR = "bids"
LOCK_FILE = ".llmh.lock"  # flock'ed by the process that writes OUT; holds "pid command"
QUARANTINE_FILE = "user_decisions.quarantine.jsonl"  # journal lines that failed validation

# The mapped table keeps the columns a person reads first (label, example description).
MAPPED_COLUMNS: tuple[str, ...] = (
    "group_id",
    "label",
    "n_series",
    "example_description",
    *MAPPING_COLUMNS[1:],
)
REPORTS: dict[str, str] = {
    "grouping": GROUPING_REPORT,
    "mapping": MAPPING_REPORT,
    "heuristic": HEURISTIC_REPORT,
    "conversion": CONVERSION_REPORT,
}


class Busy(UserError):
    """Another process is writing OUT (it holds ``OUT/.llmh.lock``)."""


# realpath of OUT -> [fd, depth]: this process's locks (re-entrant across its threads, so an
# engine that runs a step in one thread still records a decision from another)
_HELD: dict[str, list[int]] = {}
_HELD_GUARD = threading.Lock()
STALE_TMP_S = 600  # a staged/atomic temporary this old in OUT was left by a killed process


def holds_lock(root: str | os.PathLike[str]) -> bool:
    """Whether this process holds OUT's write lock."""
    return os.path.realpath(root) in _HELD


def _holder(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read(500).strip()
    except OSError:
        text = ""
    pid, _, cmd = text.partition(" ")
    if not pid.isdigit():
        return "another process"
    return f"pid {pid}" + (f" ({cmd})" if cmd else "")


@contextlib.contextmanager
def lock_out(root: str | os.PathLike[str], command: str, wait: bool = False) -> Iterator[None]:
    """Hold OUT's write lock (``flock`` on ``OUT/.llmh.lock``, with our pid and ``command``
    written in) for the block; a second writer fails at once with :class:`Busy` naming the
    holder (``wait``: blocks instead). The kernel drops the lock with the process, so a
    ``kill -9`` never leaves a stale one. Re-entrant within this process."""
    key = os.path.realpath(root)
    path = os.path.join(key, LOCK_FILE)
    with _HELD_GUARD:
        held = _HELD.get(key)
        if held is not None:
            held[1] += 1
        else:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                if is_output_errno(exc):
                    raise output_error(path, exc) from exc
                raise
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                raise Busy(
                    f"{root} is in use by {_holder(path)}; wait for it to finish, "
                    "or use another output folder"
                ) from None
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()} {command}\n".encode(), 0)
            except OSError:
                pass  # the lock holds without its note (a full disk: the step will say so)
            _HELD[key] = [fd, 1]
            _recover(Path(key))
    try:
        yield
    finally:
        with _HELD_GUARD:
            held = _HELD[key]
            held[1] -= 1
            if held[1] == 0:
                del _HELD[key]
                with contextlib.suppress(OSError):
                    os.ftruncate(held[0], 0)
                os.close(held[0])  # closing drops the flock


def _recover(root: Path) -> None:
    """With the lock newly held: finish a commit a killed step left half done, and delete
    the temporaries of writes that a killed process never finished."""
    with contextlib.suppress(OSError):
        roll_forward(root)
    now = time.time()
    with contextlib.suppress(OSError):
        for e in os.scandir(root):
            if e.name.startswith(".") and ".tmp" in e.name and e.is_file(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    if now - e.stat(follow_symlinks=False).st_mtime > STALE_TMP_S:
                        os.unlink(e.path)


def clean_error(exc: BaseException, where: str | os.PathLike[str]) -> UserError | None:
    """A one-line :class:`UserError` for a write failure (disk full, read-only, SQLite) met
    while a step ran; ``None`` for anything else."""
    if isinstance(exc, UserError):
        return None
    if isinstance(exc, OSError) and is_output_errno(exc):
        return output_error(exc.filename or where, exc)
    if isinstance(exc, sqlite3.Error):
        return cache_error(where, exc, folder=where)
    return None


class Workspace:
    """The output folder of one study. Reads raise :class:`NotFound` naming the step to run."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().absolute()  # steps may run tools in other folders
        self.batch: Batch | None = None  # inside :meth:`step`: this step's staged outputs

    @contextlib.contextmanager
    def step(self, command: str) -> Iterator[Workspace]:
        """Run a writing step: OUT locked (:func:`lock_out`), every file it writes through
        this workspace staged and committed together when the block ends without an error
        (else none is), and a write failure turned into one clean line."""
        with lock_out(self.root, command):
            outer = self.batch is None
            if outer:
                self.batch = Batch(self.root)
            try:
                yield self
                if outer:
                    self.batch.commit()
            except BaseException as exc:
                if outer and self.batch is not None:
                    self.batch.abort()
                err = clean_error(exc, self.root)
                if err is not None:
                    raise err from exc
                raise
            finally:
                if outer:
                    self.batch = None

    def commit(self) -> None:
        """Commit what this step staged so far (e.g. an error list before a step fails)."""
        if self.batch is not None:
            self.batch.commit()

    def _src(self, name: str) -> Path:
        """Where ``name`` is read from: this step's staged version, else the file in OUT."""
        p = self.path(name)
        return self.batch.source(p) if self.batch is not None else p

    def _write_tsv(self, name: str, columns, rows) -> Path:  # noqa: ANN001
        if self.batch is not None:
            return self.batch.write_tsv(self.path(name), columns, rows)
        return write_tsv_atomic(self.path(name), columns, rows)

    def _write_text(self, target: Path, text: str) -> Path:
        if self.batch is not None:
            return self.batch.write_text(target, text)
        return write_text_atomic(target, text)

    def write_file(self, target: str | os.PathLike[str], text: str) -> Path:
        """Write ``target`` (inside OUT or not) as part of this step's outputs."""
        return self._write_text(Path(target), text)

    def source(self, target: str | os.PathLike[str]) -> Path:
        """Where this step reads ``target`` back (its staged version until the commit)."""
        return self.batch.source(target) if self.batch is not None else Path(target)

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    def path(self, name: str) -> Path:
        return self.root / name

    def require(self) -> Workspace:
        """This workspace, if its folder exists."""
        if not self.root.is_dir():
            raise UserError(f"{self.root} is not a folder")
        return self

    def inside(self, name: str) -> Path:
        """``name`` resolved inside OUT; :class:`InvalidParams` (a :class:`UserError`) for
        anything that leaves it."""
        root = self.root.resolve()
        p = (root / name).resolve()
        if p != root and root not in p.parents:
            raise InvalidParams(f"{name!r} is outside {root}")
        return p

    # --- series ------------------------------------------------------------------------
    def has_series(self) -> bool:
        return self._src(SERIES_TSV).is_file()

    def read_series(self) -> list[SeriesInfo]:
        p = self._src(SERIES_TSV)
        if not p.is_file():
            raise NotFound(
                f"{self.path(SERIES_TSV)} not found: run "
                f"`llm-heuristics analyze DICOM_DIR {self.root}` first"
            )
        return [SeriesInfo.from_row(r) for r in read_tsv(p)]

    def write_series(self, series: list[SeriesInfo]) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        return self._write_tsv(SERIES_TSV, SERIES_COLUMNS, (s.to_row() for s in series))

    def write_analyze_errors(self, errors: list[tuple[str, str]]) -> Path:
        """``analyze_errors.tsv``; a path that is not valid UTF-8 is written with ``\\xNN``
        escapes (the file stays UTF-8; the reason says so)."""
        return self._write_tsv(
            ANALYZE_ERRORS_TSV,
            ("path", "reason"),
            ({"path": display_path(p), "reason": display_path(r)} for p, r in errors),
        )

    def write_analyze_input(self, inputs: list[str | Path]) -> Path:
        doc = {"inputs": [str(Path(p).resolve()) for p in inputs]}
        return self._write_text(self.path(ANALYZE_INPUT_JSON), json.dumps(doc, indent=2) + "\n")

    def analyze_inputs(self) -> list[Path]:
        """Where ``analyze`` read the DICOM (empty when it did not record it)."""
        p = self._src(ANALYZE_INPUT_JSON)
        if not p.is_file():
            return []
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
            return [Path(x) for x in doc.get("inputs", [])]
        except (ValueError, AttributeError, TypeError):
            return []

    # --- groups ------------------------------------------------------------------------
    def has_groups(self) -> bool:
        return self._src(GROUPS_TSV).is_file()

    def read_groups(self) -> list[Group]:
        p = self._src(GROUPS_TSV)
        if not p.is_file():
            raise NotFound(
                f"{self.path(GROUPS_TSV)} not found: run `llm-heuristics group {self.root}` first"
            )
        return [Group.from_row(r) for r in read_tsv(p)]

    def write_groups(self, groups: list[Group], report: str) -> None:
        with self._together():
            self._write_tsv(GROUPS_TSV, GROUP_COLUMNS, (g.to_row() for g in groups))
            self._write_text(self.path(GROUPING_REPORT), report)

    # --- mappings ----------------------------------------------------------------------
    def proposals_path(self) -> Path | None:
        """The rules/LLM proposal: ``mapping_proposals.tsv``, else what an older ``map`` left."""
        for name in (PROPOSALS_TSV, LEGACY_PROPOSED_TSV, MAPPED_TSV):
            if self._src(name).is_file():
                return self._src(name)
        return None

    def has_proposals(self) -> bool:
        return self.proposals_path() is not None

    def read_proposals(self) -> list[Mapping]:
        p = self.proposals_path()
        if p is None:
            raise NotFound(
                f"{self.path(PROPOSALS_TSV)} not found: run `llm-heuristics map {self.root}` first"
            )
        return [Mapping.from_row(r) for r in read_tsv(p)]

    def write_proposals(self, mappings: list[Mapping]) -> Path:
        return self._write_tsv(PROPOSALS_TSV, MAPPING_COLUMNS, (m.to_row() for m in mappings))

    def write_effective(
        self,
        groups: list[Group],
        mappings: list[Mapping],
        assignments: list[SeriesAssignment],
        series: list[SeriesInfo],
        report: str,
    ) -> None:
        """The effective mapping for people and other tools: mapped TSV, assignments, report."""
        by_key = {s.key: s for s in series}
        by_gid = {m.group_id: m for m in mappings}
        rows = []
        for g in groups:
            m = by_gid.get(g.group_id) or Mapping(g.group_id, skip_reason="not mapped")
            ex = by_key.get(g.series_keys[0]) if g.series_keys else None
            rows.append(
                {
                    "label": g.label,
                    "n_series": str(len(g.series_keys)),
                    "example_description": ex.series_description if ex else "",
                    **m.to_row(),
                }
            )
        with self._together():
            self._write_tsv(MAPPED_TSV, MAPPED_COLUMNS, rows)
            self._write_tsv(ASSIGNMENTS_TSV, ASSIGNMENT_COLUMNS, (a.to_row() for a in assignments))
            self._write_text(self.path(MAPPING_REPORT), report)

    def read_mapped(self) -> list[Mapping]:
        """The effective mapping as last written (for tools; the engine recomputes it)."""
        p = self._src(MAPPED_TSV)
        if not p.is_file():
            raise NotFound(
                f"{self.path(MAPPED_TSV)} not found: run `llm-heuristics map {self.root}` first"
            )
        return [Mapping.from_row(r) for r in read_tsv(p)]

    def read_assignments(self) -> list[SeriesAssignment]:
        p = self._src(ASSIGNMENTS_TSV)
        if not p.is_file():
            raise NotFound(
                f"{self.path(ASSIGNMENTS_TSV)} not found: run `llm-heuristics map {self.root}` first"
            )
        return [SeriesAssignment.from_row(r) for r in read_tsv(p)]

    # --- text files ----------------------------------------------------------------------
    def read_text(self, name: str) -> str:
        """A report or other text file inside OUT (``grouping``, ``mapping``... or a name)."""
        p = self.inside(REPORTS.get(name, name))
        if not p.is_file():
            raise NotFound(f"{p} not found")
        return p.read_text(encoding="utf-8", errors="replace")

    def write_text(self, name: str, text: str) -> Path:
        return self._write_text(self.inside(name), text)

    @contextlib.contextmanager
    def _together(self) -> Iterator[None]:
        """Outside a step: the files written in the block as one batch (all or none)."""
        if self.batch is not None:
            yield
            return
        self.batch = Batch(self.root)
        try:
            yield
            self.batch.commit()
        except BaseException:
            self.batch.abort()
            raise
        finally:
            self.batch = None


def display_path(p: str) -> str:
    """``p`` as valid UTF-8 text: bytes of a non-UTF-8 file name as ``\\xNN``."""
    try:
        p.encode("utf-8")
        return p
    except UnicodeEncodeError:
        return os.fsencode(p).decode("utf-8", "backslashreplace")


# Module-level shorthands used by steps that only need one file.


def read_series(out_dir_or_file: str | Path) -> list[SeriesInfo]:
    """``aggregated_dicominfo.tsv`` from an OUT folder, or any dicominfo TSV file."""
    p = Path(out_dir_or_file)
    if p.is_dir():
        return Workspace(p).read_series()
    if not p.exists():
        raise NotFound(f"{p} not found: run `llm-heuristics analyze DICOM_DIR {p.parent}` first")
    return [SeriesInfo.from_row(r) for r in read_tsv(p)]


def write_series(out_dir: str | Path, series: list[SeriesInfo]) -> Path:
    return Workspace(out_dir).write_series(series)


def write_analyze_input(out_dir: str | Path, inputs: list[str | Path]) -> Path:
    return Workspace(out_dir).write_analyze_input(inputs)
