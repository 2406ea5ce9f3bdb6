"""Items of a long sequence (per-frame functional groups) read against the first item.

An enhanced file repeats one functional-group item per frame: thousands of items whose
bytes differ only in a few leaf values (position, dimension index, time, b-value).  The
first item is walked in full at every depth (:func:`flat_item`), which records each leaf
element; an :class:`ItemTemplate` made from it then reads a later item as: the bytes between
the leaves known to vary are compared with the template's (one ``startswith``, a C memcmp),
each varying leaf is read by its header (its length may differ), and the item's dataset is
the template's with those values put in (copy-on-write: unchanged macros stay shared).

Exactness: the bytes outside the varying leaves equal the template's, the varying leaves have
the template's tags and VRs, and a length change is only allowed where no enclosing item or
sequence has a defined length; the ordinary walk of such bytes meets the same elements in
the same places, so the dataset is the one that walk would build.  An item that does not
match is walked in full and teaches the template which leaves vary; an item of another
structure is walked in full as well and becomes the template.
"""

from __future__ import annotations

from typing import Any

from engine.scan.dcmbase import (
    _HEAD_ELE,
    _U32_LE,
    ITEM_DELIM,
    MAX_DEPTH,
    UNDEFINED,
    Dataset,
    DicomParseError,
    Spec,
    element_header,
    item_header,
)

# leaf: (header start, value start, value end, tag, VR, header length, dataset path or None,
#        inside a defined-length item or sequence); positions relative to the item's start
Leaf = tuple[int, int, int, int, bytes, int, tuple[int, ...] | None, bool]


class NotFlat(Exception):
    """An element the flat walk does not take (undefined-length non-SQ value)."""


def flat_item(
    buf: Any,
    pos: int,
    end: int,
    spec: Spec,
    out: Dataset,
    depth: int,
    until: bool,
    path: tuple[int, ...] | None,
    leaves: list[Leaf],
    base: int,
    in_defined: bool,
) -> int:
    """Walk one item (explicit VR little endian) into ``out`` like ``_parse_ele`` does, and
    record every leaf element in ``leaves``; ``path`` locates ``out`` in the top item's
    dataset (None inside a sequence that is not kept)."""
    if depth > MAX_DEPTH:
        raise DicomParseError("sequences nested too deep")
    keep, seqs, pgroups = spec.keep, spec.seqs, spec.private_groups
    while pos + 8 <= end:
        start = pos
        group, elem, vr, length, hl = element_header(buf, pos, end)
        if group == 0xFFFE:
            tag = (group << 16) | elem
            if tag == ITEM_DELIM and until:
                return pos + 8
            raise DicomParseError(f"unexpected delimiter {tag:08X}")
        pos += hl
        tag = (group << 16) | elem
        if vr == b"SQ" and (length == UNDEFINED or (path is not None and tag in seqs)):
            kept = path is not None and tag in seqs
            items: list[Dataset] = []
            pos = _flat_seq(
                buf, pos, end, length, spec, items, depth,
                path + (tag,) if kept else None, leaves, base,
                in_defined or length != UNDEFINED,
            )  # fmt: skip
            if kept:
                out[tag] = items
            continue
        if length == UNDEFINED:
            raise NotFlat(f"undefined length on ({group:04X},{elem:04X})")
        nxt = pos + length
        if nxt > end:
            raise DicomParseError("element runs past its item")
        kept_leaf = path is not None and (
            tag in keep or (group & 1 and 0x0010 <= elem <= 0x00FF and group in pgroups)
        )
        if kept_leaf:
            out[tag] = (vr, buf[pos:nxt])
        leaves.append(
            (start - base, pos - base, nxt - base, tag, vr, hl,
             path + (tag,) if kept_leaf else None, in_defined)
        )  # fmt: skip
        pos = nxt
    if until:
        raise DicomParseError("missing item delimiter")
    return pos


def _flat_seq(
    buf: Any,
    pos: int,
    end: int,
    length: int,
    spec: Spec,
    items: list[Dataset],
    depth: int,
    path: tuple[int, ...] | None,
    leaves: list[Leaf],
    base: int,
    in_defined: bool,
) -> int:
    if length != UNDEFINED:
        seq_end = pos + length
        if seq_end > end:
            raise DicomParseError("sequence runs past the end of the file")
    else:
        seq_end = end
    while pos + 8 <= seq_end:
        ilen = item_header(buf, pos)
        pos += 8
        if ilen is None:
            return pos
        ds = Dataset()
        ds.little = True
        ipath = path + (len(items),) if path is not None else None
        if ilen == UNDEFINED:
            pos = flat_item(buf, pos, seq_end, spec, ds, depth + 1, True, ipath, leaves, base,
                            in_defined)  # fmt: skip
        else:
            iend = pos + ilen
            if iend > seq_end:
                raise DicomParseError("item runs past its sequence")
            flat_item(buf, pos, iend, spec, ds, depth + 1, False, ipath, leaves, base, True)
            pos = iend
        items.append(ds)
    if length == UNDEFINED:
        raise DicomParseError("truncated sequence (no delimiter)")
    return seq_end


class ItemTemplate:
    """The first item of a sequence, flattened, for reading the items after it."""

    __slots__ = ("buf", "ds", "leaves", "varying", "resized", "segs", "defined")

    def __init__(self, buf: Any, start: int, end: int, ds: Dataset, leaves: list[Leaf],
                 defined: bool) -> None:  # fmt: skip
        self.buf = bytes(buf[start:end])  # the item's content (with its delimiter if any)
        self.ds = ds
        self.leaves = leaves
        self.defined = defined  # the item has a defined length: no leaf may change length
        self.varying: set[int] = set()  # leaves whose value bytes were seen to differ
        self.resized: set[int] = set()  # ... whose header (so length) was seen to differ
        # (bytes equal to the template's, how to read the leaf after them, the leaf):
        # 0 end, 1 skip a same-length value, 2 take a same-length value, 3 read the header
        self.segs: list[tuple[bytes, int, Leaf | None]] = []
        self._segments()

    def _segments(self) -> None:
        segs: list[tuple[bytes, int, Leaf | None]] = []
        at = 0
        for i in sorted(self.varying | self.resized):
            leaf = self.leaves[i]
            if i in self.resized:
                segs.append((self.buf[at : leaf[0]], 3, leaf))
            else:  # the header is compared with the bytes before: the length is the same
                segs.append((self.buf[at : leaf[1]], 1 if leaf[6] is None else 2, leaf))
            at = leaf[2]
        segs.append((self.buf[at:], 0, None))
        self.segs = segs

    def read(self, buf: Any, pos: int, end: int) -> tuple[Dataset, int] | None:
        """(dataset, position after the item) when the item at ``pos`` has the template's
        structure and differs only in the known varying leaves; else None."""
        same = buf.startswith if isinstance(buf, bytes) else None
        values = []
        for const, how, leaf in self.segs:
            if same is not None:
                if not same(const, pos):
                    return None
            elif buf[pos : pos + len(const)] != const:
                return None
            pos += len(const)
            if how == 1:
                pos += leaf[2] - leaf[1]  # type: ignore[index]
            elif how == 2:
                nxt = pos + leaf[2] - leaf[1]  # type: ignore[index]
                values.append((leaf[6], leaf[4], buf[pos:nxt]))  # type: ignore[index]
                pos = nxt
            elif how == 3:
                pos = self._resized(buf, pos, end, leaf, values)  # type: ignore[arg-type]
                if pos < 0:
                    return None
        if pos > end:
            return None
        return (_with_values(self.ds, values) if values else self.ds), pos

    def _resized(self, buf: Any, pos: int, end: int, leaf: Leaf, values: list[Any]) -> int:
        """Read a leaf whose length may differ from the template's; -1 when it does not fit."""
        if pos + 8 > end:
            return -1
        group, elem, vr, length = _HEAD_ELE(buf, pos)
        hl = leaf[5]
        if (group << 16) | elem != leaf[3] or vr != leaf[4]:
            return -1
        if hl == 12:
            if pos + 12 > end:
                return -1
            length = _U32_LE(buf, pos + 8)[0]
        if length == UNDEFINED:
            return -1
        if length != leaf[2] - leaf[1] and (leaf[7] or self.defined):
            return -1  # an enclosing defined length would not fit any more
        nxt = pos + hl + length
        if nxt > end:
            return -1
        if leaf[6] is not None:
            values.append((leaf[6], vr, buf[pos + hl : nxt]))
        return nxt

    def learn(self, buf: Any, start: int, end: int, leaves: list[Leaf]) -> bool:
        """Mark the leaves in which a fully walked item differs from the template; False when
        the item has another structure (the caller makes it the template instead)."""
        mine = self.leaves
        tb = self.buf
        other = bytes(buf[start:end])
        if len(leaves) == len(mine) and all(
            a[3:] == b[3:] for a, b in zip(leaves, mine, strict=True)
        ):
            varying, resized = set(self.varying), set(self.resized)
            at_a = at_b = 0
            for i, (a, b) in enumerate(zip(leaves, mine, strict=True)):
                if other[at_a : a[0]] != tb[at_b : b[0]]:  # structure bytes between leaves
                    break
                if other[a[0] : a[1]] != tb[b[0] : b[1]]:
                    resized.add(i)
                elif other[a[1] : a[2]] != tb[b[1] : b[2]]:
                    varying.add(i)
                at_a, at_b = a[2], b[2]
            else:
                if other[at_a:] == tb[at_b:]:
                    self.varying, self.resized = varying, resized
                    self._segments()
                    return True
        return False


def _with_values(root: Dataset, values: list[tuple[tuple[int, ...], bytes, Any]]) -> Dataset:
    """``root`` with the leaves at ``values``' paths replaced; only the items and lists on
    those paths are copied, so the unchanged parts stay shared with the template."""
    new = Dataset(root)
    new.little = root.little
    own = {id(new)}
    for path, vr, value in values:
        node = new
        for j in range(0, len(path) - 1, 2):
            tag, idx = path[j], path[j + 1]
            lst = node[tag]
            if id(lst) not in own:
                lst = list(lst)
                node[tag] = lst
                own.add(id(lst))
            item = lst[idx]
            if id(item) not in own:
                copy = Dataset(item)
                copy.little = item.little
                lst[idx] = item = copy
                own.add(id(copy))
            node = item
        node[path[-1]] = (vr, value)
    return new
