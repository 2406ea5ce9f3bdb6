"""Walking a file like the previous file of its series: runs of identical bytes are jumped.

Files of one series repeat nearly every header element byte for byte; :class:`Layout` records
one file's top-level elements and :func:`_walk_like` reuses its kept values wherever the next
file's bytes are the same, with the result of a full walk (``tests/test_analyze_speed.py``).
"""

from __future__ import annotations

from typing import Any

from engine.scan.dcmbase import (
    _HEAD_ELE,
    _HEADER_LEN,
    _U32_LE,
    UNDEFINED,
    Dataset,
    Spec,
)
from engine.scan.dcmwalk import _parse_ele, _parse_seq


class Layout:
    """The top-level element layout of one explicit-VR-little-endian file.

    Files of one series repeat almost every element byte for byte (only UIDs, instance
    number, position, times, CSA image header ... differ).  :func:`_walk_like` compares whole
    runs of elements with this file's bytes (one C ``memcmp``) and, when equal, takes the
    kept values from this file instead of walking each element: the same bytes parse to the
    same elements, so the result is exactly that of a full walk.  Elements seen to differ are
    walked one by one; a different tag order falls back to the full walk from there on.
    """

    def __init__(self, buf: Any, ts: str, elems: list[tuple[int, int, int]], ds: Dataset) -> None:
        self.ts = ts
        base = elems[0][1] if elems else 0
        self.buf = bytes(buf[base : elems[-1][2]]) if elems else b""
        self.elems = [(t, s - base, e - base) for t, s, e in elems]
        self.kept = [(t, ds[t]) if t in ds else None for t, _s, _e in elems]
        self.varying: set[int] = set()
        self.sub: dict[int, list[Any]] = {}  # element index -> _parse_seq state of that SQ
        self._runs: list[tuple[int, int, bytes, list[tuple[int, Any]]]] | None = None

    def invalidate(self) -> None:
        self._runs = None

    def runs(self) -> list[tuple[int, int, bytes, list[tuple[int, Any]]]]:
        """(first, last+1, bytes, kept items) of each run; known-varying elements alone."""
        if self._runs is None:
            runs = []
            elems, kept, varying = self.elems, self.kept, self.varying
            i, n = 0, len(elems)
            while i < n:
                j = i + 1
                if i not in varying:
                    while j < n and j not in varying:
                        j += 1
                items = [k for k in kept[i:j] if k is not None]
                runs.append((i, j, self.buf[elems[i][1] : elems[j - 1][2]], items))
                i = j
            self._runs = runs
        return self._runs


def _walk_like(
    buf: Any,
    pos: int,
    n: int,
    spec: Spec,
    out: Dataset,
    total: int,
    lay: Layout,
) -> int:
    """:func:`_parse_ele`, skipping runs of elements byte-identical to ``lay``'s.

    The top level of the files of a series; a sequence met on the way keeps its item
    template (``lay.sub``) for the same sequence of the next file.
    """
    tb = lay.buf
    head = _HEAD_ELE
    u32 = _U32_LE
    hlen = _HEADER_LEN
    keep = spec.keep
    seqs = spec.seqs
    pgroups = spec.private_groups
    elems = lay.elems
    kept = lay.kept
    varying = lay.varying
    if isinstance(buf, bytes):
        same = buf.startswith  # memcmp in place, no copy of the file's bytes
    else:

        def same(b: bytes, p: int) -> bool:
            return buf[p : p + len(b)] == b

    for i0, i1, run, items in lay.runs():
        if i0 not in varying and same(run, pos):
            for t, v in items:
                out[t] = v
            pos += len(run)
            continue
        for i in range(i0, i1):
            tag, s, e = elems[i]
            if i not in varying:
                if buf[pos : pos + e - s] == tb[s:e]:
                    k = kept[i]
                    if k is not None:
                        out[k[0]] = k[1]
                    pos += e - s
                    continue
                varying.add(i)
                lay._runs = None
            if pos + 12 > n:
                return _parse_ele(buf, pos, n, spec, out, 0, False, total)
            group, elem, vr, length = head(buf, pos)
            if (group << 16) | elem != tag:
                return _parse_ele(buf, pos, n, spec, out, 0, False, total)
            hl = hlen.get(vr)
            if vr == b"SQ" and pos + 12 <= n:
                length = u32(buf, pos + 8)[0]
                # kept, or dropped but of undefined length (its end is found by walking its
                # items, like the same sequence's items in the layout's file)
                if tag in seqs or length == UNDEFINED:
                    items: list[Dataset] = []
                    st = lay.sub.get(i)
                    if st is None:
                        st = lay.sub[i] = [None, 0]
                    pos = _parse_seq(buf, pos + 12, n, length, True, True, spec, items, 0, st)
                    if tag in seqs:
                        out[tag] = items
                    continue
            if hl is not None and vr != b"SQ" and group != 0xFFFE:
                if hl == 12:
                    length = u32(buf, pos + 8)[0]
                nxt = pos + hl + length
                if length != UNDEFINED and nxt <= n:
                    if tag in keep or (group & 1 and 0x0010 <= elem <= 0x00FF and group in pgroups):
                        out[tag] = (vr, buf[pos + hl : nxt])
                    pos = nxt
                    continue
            one: list[tuple[int, int, int]] = []
            _parse_ele(buf, pos, n, spec, out, 0, False, total, one, True)
            if not one:  # pixel data or end of buffer where the layout has an element
                return _parse_ele(buf, pos, n, spec, out, 0, False, total)
            pos = one[0][2]
    return _parse_ele(buf, pos, n, spec, out, 0, False, total)
