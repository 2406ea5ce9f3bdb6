"""What the review workstation's views are built from, read once per file version.

Parsing ``aggregated_dicominfo.tsv`` is most of a workspace view's cost (4 of 6 s at 10,000
series), yet the file only changes when ``analyze`` runs. Here each table is parsed once per
file version (path, mtime, size, inode) and kept; the effective mapping is kept per version
of its inputs and of the decisions journal. Values handed out are shared: read-only.

A decision changes the mapping of its own groups (and the IntendedFor of field maps), nothing
else a reviewer sees, so :func:`group_views` builds just those groups' views for the decide,
undo and redo results: the workstation patches its rows instead of reloading everything.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from engine import review as journal
from engine.api.types import GroupView
from engine.model import Decision, Group, Mapping, SeriesInfo
from engine.workspace import GROUPS_TSV, SERIES_TSV, Workspace

T = TypeVar("T")
Stamp = tuple[int, int, int] | None

_MAX = 24  # entries kept (a few tables of a few workspaces)
_cache: OrderedDict[tuple[Any, ...], tuple[Any, Any]] = OrderedDict()
_lock = threading.Lock()


def stamp(path: Path | None) -> Stamp:
    """A file's version: (mtime_ns, size, inode); None when it is absent."""
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def cached(key: tuple[Any, ...], version: Any, build: Callable[[], T]) -> T:
    """``build()`` once per ``version`` of what ``key`` names (thread-safe; LRU bounded)."""
    with _lock:
        hit = _cache.get(key)
        if hit is not None and hit[0] == version:
            _cache.move_to_end(key)
            return hit[1]  # type: ignore[no-any-return]
    value = build()
    with _lock:
        _cache[key] = (version, value)
        _cache.move_to_end(key)
        while len(_cache) > _MAX:
            _cache.popitem(last=False)
    return value


def clear() -> None:
    with _lock:
        _cache.clear()


def _root(ws: Workspace) -> str:
    return str(ws.root.resolve())


def series(ws: Workspace) -> list[SeriesInfo]:
    p = ws.path(SERIES_TSV)
    return cached((_root(ws), "series"), stamp(p), ws.read_series)


def groups(ws: Workspace) -> list[Group]:
    p = ws.path(GROUPS_TSV)
    return cached((_root(ws), "groups"), stamp(p), ws.read_groups)


def proposals(ws: Workspace) -> list[Mapping]:
    p = ws.proposals_path()
    return cached((_root(ws), "proposals", str(p)), stamp(p), ws.read_proposals)


def inputs_version(ws: Workspace) -> tuple[Stamp, ...]:
    """The version of everything a view is built from (tables and the journal)."""
    return (
        stamp(ws.path(SERIES_TSV)),
        stamp(ws.path(GROUPS_TSV)),
        stamp(ws.proposals_path()),
        stamp(journal.journal_path(ws.root)),
    )


def mappings(
    series_: list[SeriesInfo],
    groups_: list[Group],
    proposals_: list[Mapping],
    decisions: dict[str, Decision],
) -> dict[str, Mapping]:
    """Every group's mapping with the person's decisions and IntendedFor applied (no run
    numbering, no report); ``tests/test_review_bulk.py`` checks it agrees with ``combine``."""
    from engine.mapping.effective import decided_mappings

    return decided_mappings(series_, groups_, proposals_, decisions)


def group_views(
    ws: Workspace, decisions: dict[str, Decision], changed: Iterable[str], threshold: float
) -> list[GroupView]:
    """The views of the ``changed`` groups and of every field map (whose IntendedFor may follow
    a renamed target) with ``decisions`` applied; [] before ``map`` ran."""
    if not (ws.has_series() and ws.has_groups() and ws.has_proposals()):
        return []
    gs, props = groups(ws), proposals(ws)
    by_id = mappings(series(ws), gs, props, decisions)
    base = {m.group_id: m for m in props}
    want = set(changed)
    out = []
    for g in gs:
        m = by_id[g.group_id]
        if g.group_id not in want and not (m.datatype == "fmap" and not m.is_skip):
            continue
        prop = base.get(g.group_id) or Mapping(g.group_id, skip_reason="not mapped")
        d = decisions.get(g.group_id)
        out.append(GroupView(g, prop, m, d, d is None and m.confidence < threshold))
    return out
