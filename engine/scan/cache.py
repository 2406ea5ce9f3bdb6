"""SQLite cache of per-file facts in OUT, keyed by path, size and mtime (ns).

A re-scan reads only files whose (size, mtime_ns) changed or that are new; rows of files that
disappeared are dropped.  Results are committed per chunk so an interrupted scan resumes.
The cache is thrown away when the fact format (``FACTS_VERSION``) changes, and emptied when
another input is scanned into the same OUT (:meth:`FactsCache.use_input`): one input's rows
and memoised result are never another's.  A cache file that is not a database (a crash of the
disk, a stray file) is rebuilt.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from typing import Any

from engine.atomic import cache_error

FACTS_VERSION = "6"  # 6: identity values (kept in OUT/private); 5: names as pydicom reads them
# A folder modified less than this before a scan began may change again within the same
# timestamp tick (1 s on some file systems) unseen: such a scan's folder times are not kept.
RACY_NS = 2_000_000_000
TEMPLATE = "template"  # status of a row that is a series template, not a file
# in OUT's private folder (engine.private): the cached header facts hold PatientName & co.
CACHE_NAME = "private/.analyze_cache.sqlite"
LEGACY_CACHE_NAME = ".analyze_cache.sqlite"  # before 0.x: moved into private/ by the next scan


class FactsCache:
    def __init__(self, path: str | os.PathLike[str]):
        self.path = os.fspath(path)
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        try:
            self._open()
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError):
                raise cache_error(self.path, exc) from exc
            with contextlib.suppress(Exception):
                self.db.close()
            for suffix in ("", "-wal", "-shm"):  # not a database: it is only a cache
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path + suffix)
            try:
                self._open()
            except sqlite3.Error as exc2:
                raise cache_error(self.path, exc2) from exc2

    def _open(self) -> None:
        self.db = sqlite3.connect(self.path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT)")
        row = self.db.execute("SELECT v FROM meta WHERE k='version'").fetchone()
        if row is None or row[0] != FACTS_VERSION:
            self.db.execute("DROP TABLE IF EXISTS files")
            self.db.execute("DELETE FROM meta")
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('version', ?)", (FACTS_VERSION,))
            self.db.execute("DROP TABLE IF EXISTS templates")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER, "
            "mtime_ns INTEGER, status TEXT, facts TEXT, error TEXT)"
        )
        # Facts shared by the files of one series, stored once; a file row's facts are then
        # {"@": template id, per-file facts}.  Content-addressed, so never stale.
        self.db.execute("CREATE TABLE IF NOT EXISTS templates (id TEXT PRIMARY KEY, facts TEXT)")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS folders (path TEXT PRIMARY KEY, dev INTEGER, "
            "ino INTEGER, mtime_ns INTEGER)"
        )
        self.db.commit()

    def use_input(self, root: str) -> None:
        """Scan ``root`` with this cache: when it holds another input's rows, start afresh
        (a cache from before inputs were recorded adopts ``root``)."""
        row = self.db.execute("SELECT v FROM meta WHERE k='input_root'").fetchone()
        if row is not None and row[0] == root:
            return
        if row is not None:
            for table in ("files", "templates", "folders"):
                self.db.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed names
            self.db.execute("DELETE FROM meta WHERE k != 'version'")
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('input_root', ?)", (root,))
        self.db.commit()

    def input_root(self) -> str | None:
        row = self.db.execute("SELECT v FROM meta WHERE k='input_root'").fetchone()
        return row[0] if row else None

    def known(self) -> dict[str, tuple[int, int]]:
        return {p: (s, m) for p, s, m in self.db.execute("SELECT path, size, mtime_ns FROM files")}

    def stale(
        self, files: Iterable[tuple[str, int, int]]
    ) -> tuple[list[tuple[str, int, int]], list[str]]:
        """(files to read, cached paths no longer present)."""
        known = self.known()
        todo = []
        present = set()
        for path, size, mtime in files:
            present.add(path)
            if known.get(path) != (size, mtime):
                todo.append((path, size, mtime))
        gone = [p for p in known if p not in present]
        return todo, gone

    def forget(self, paths: list[str]) -> None:
        self.db.executemany("DELETE FROM files WHERE path=?", [(p,) for p in paths])
        self.db.commit()

    def put_many(self, rows: Iterable[tuple[str, int, int, str, str | None, str]]) -> None:
        """Store rows from :func:`engine.scan.pipeline.read_chunk` (facts already JSON)."""
        files, templates = [], []
        for r in rows:
            if r[3] == TEMPLATE:
                templates.append((r[0], r[4]))
            else:
                files.append(r)
        if templates:
            self.db.executemany("INSERT OR IGNORE INTO templates VALUES (?,?)", templates)
        self.db.executemany("INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?)", files)
        self.db.commit()

    def rows(
        self, paths: Iterable[str] | None = None
    ) -> Iterator[tuple[str, str, dict[str, Any] | None, str]]:
        """(path, status, facts, error) for every cached file (restricted to ``paths``)."""
        want = set(paths) if paths is not None else None
        templates: dict[str, dict[str, Any]] = {}
        for p, st, f, e in self.db.execute("SELECT path, status, facts, error FROM files"):
            if want is not None and p not in want:
                continue
            facts = json.loads(f) if f else None
            if facts is not None and "@" in facts:
                tid = facts.pop("@")
                tpl = templates.get(tid)
                if tpl is None:
                    row = self.db.execute(
                        "SELECT facts FROM templates WHERE id=?", (tid,)
                    ).fetchone()
                    tpl = templates[tid] = json.loads(row[0]) if row else {}
                if not tpl:
                    yield p, "error", None, "cache: series template missing (re-scan)"
                    continue
                facts = {**tpl, **facts}
            yield p, st, facts, e or ""

    def get_result(self, signature: str) -> Any:
        """The memoised scan result for an identical file set and options, or ``None``."""
        row = self.db.execute("SELECT v FROM meta WHERE k='result_sig'").fetchone()
        if row is None or row[0] != signature:
            return None
        res = self.db.execute("SELECT v FROM meta WHERE k='result'").fetchone()
        return json.loads(res[0]) if res else None

    def put_result(self, signature: str, result: Any) -> None:
        self.db.executemany(
            "INSERT OR REPLACE INTO meta VALUES (?, ?)",
            [("result_sig", signature), ("result", json.dumps(result))],
        )
        self.db.commit()

    def put_folders(
        self, folders: list[tuple[str, int, int, int]], signature: str, options: str,
        began_ns: int,
    ) -> None:  # fmt: skip
        """Keep the folder times of the scan whose result is ``signature`` (for
        :meth:`unchanged_signature`); none when a folder was modified just before the scan."""
        self.db.execute("DELETE FROM folders")
        racy = any(m >= began_ns - RACY_NS for *_, m in folders)
        if not racy:
            self.db.executemany("INSERT OR REPLACE INTO folders VALUES (?,?,?,?)", folders)
        self.db.executemany(
            "INSERT OR REPLACE INTO meta VALUES (?, ?)",
            [("folders_sig", "" if racy else signature), ("folders_options", options)],
        )
        self.db.commit()

    def unchanged_signature(self, options: str) -> str | None:
        """The last scan's result signature when no folder it walked has changed since
        (same device, inode and mtime: no entry added, removed or renamed), else None.

        Trusting folder times misses a file rewritten in place (its folder's time stays);
        it is what ``analyze --trust-folder-times`` asks for, never the default.
        """
        meta = dict(self.db.execute("SELECT k, v FROM meta WHERE k LIKE 'folders_%'"))
        if not meta.get("folders_sig") or meta.get("folders_options") != options:
            return None
        stat = os.stat
        for path, dev, ino, mtime in self.db.execute(
            "SELECT path, dev, ino, mtime_ns FROM folders"
        ):
            try:
                st = stat(path)
            except OSError:
                return None
            if st.st_mtime_ns != mtime or st.st_ino != ino or st.st_dev != dev:
                return None
        return meta["folders_sig"]

    def close(self) -> None:
        self.db.close()
