"""The element walkers: one dataset level, one sequence, one sequence's items from a template.

:func:`_parse` (any transfer syntax), :func:`_parse_ele` (explicit VR little endian, the hot
loop) and :func:`_parse_seq` / :func:`_template_seq` call one another for nested sequences, so
they live together; :mod:`engine.scan.dcmparse` (a whole file) and
:mod:`engine.scan.dcmlayout` (a file walked like the previous one of its series) drive them.
"""

from __future__ import annotations

import struct
import threading
from typing import Any

from engine.scan.dcmbase import (
    _HEAD_ELE,
    _HEADER_LEN,
    _LONG_VRS,
    _U32_LE,
    _VALID_VRS,
    ITEM_DELIM,
    MAX_DEPTH,
    PIXEL_GROUP,
    UNDEFINED,
    Dataset,
    DicomParseError,
    Spec,
    item_header,
)
from engine.scan.dcmitems import ItemTemplate, Leaf, NotFlat, flat_item


def _parse(
    buf: Any,
    pos: int,
    end: int,
    little: bool,
    explicit: bool,
    spec: Spec,
    out: Dataset,
    depth: int,
    meta_only: bool = False,
    until_item_delim: bool = False,
    total: int = 0,
) -> int:
    """Walk elements in ``buf[pos:end]`` into ``out``; return the position after the last one.

    The loop is the hot path of a scan: one ``unpack_from`` per element header, set look-ups
    for the keep decision, and value bytes sliced only for kept tags.
    """
    if depth > MAX_DEPTH:
        raise DicomParseError("sequences nested too deep")
    if explicit and little and not meta_only:
        return _parse_ele(buf, pos, end, spec, out, depth, until_item_delim, total)
    head, unpack_u32 = _STRUCTS[(little, explicit)]
    keep = spec.keep
    seqs = spec.seqs
    pgroups = spec.private_groups
    vrs = spec.vrs
    long_vrs = _LONG_VRS
    valid_vrs = _VALID_VRS
    stop_at = PIXEL_GROUP if depth == 0 else 0x10000
    while pos + 8 <= end:
        if explicit:
            group, elem, vr, length = head(buf, pos)
            if meta_only and group != 0x0002:
                return pos
            if group == 0xFFFE:
                length = unpack_u32(buf, pos + 4)[0]
                vr = b""
                pos += 8
            elif vr in long_vrs:
                if pos + 12 > end:
                    raise DicomParseError("truncated element header")
                length = unpack_u32(buf, pos + 8)[0]
                pos += 12
            elif vr in valid_vrs:
                pos += 8
            else:
                raise DicomParseError(f"bad VR {vr!r} at ({group:04X},{elem:04X})")
        else:
            group, elem, length = head(buf, pos)
            pos += 8
            vr = None
        if group == 0xFFFE:
            tag = (group << 16) | elem
            if tag == ITEM_DELIM and until_item_delim:
                return pos
            raise DicomParseError(f"unexpected delimiter {tag:08X}")
        if group >= stop_at:
            # pixel data and beyond: the header is done; report an obviously cut-off file
            if length != UNDEFINED and pos + length > max(end, total) and elem == 0x0010:
                raise DicomParseError("truncated file (pixel data incomplete)")
            return pos - (12 if explicit and vr in long_vrs else 8)
        if meta_only and group != 0x0002:
            return pos - 8
        tag = (group << 16) | elem
        if vr is None:
            vr = vrs.get(tag, b"UN")
        if length == UNDEFINED or vr == b"SQ" or (not explicit and tag in seqs):
            if vr not in (b"SQ", b"UN", b"OB", b"OW") and length == UNDEFINED:
                raise DicomParseError(f"undefined length on ({group:04X},{elem:04X})")
            # A private SQ sent as UN (or implicit) is implicit VR little endian inside.
            inner_explicit = explicit and vr == b"SQ"
            if tag in seqs:
                items: list[Dataset] = []
                pos = _parse_seq(buf, pos, end, length, little, inner_explicit, spec, items, depth)
                out[tag] = items
            else:
                pos = _parse_seq(buf, pos, end, length, little, inner_explicit, spec, None, depth)
            continue
        nxt = pos + length
        if nxt > end:
            raise DicomParseError("truncated file" if depth == 0 else "element runs past its item")
        if tag in keep or (group & 1 and 0x0010 <= elem <= 0x00FF and group in pgroups):
            out[tag] = (vr, buf[pos:nxt])
        pos = nxt
    if until_item_delim:
        raise DicomParseError("missing item delimiter")
    return pos


def _parse_ele(
    buf: Any,
    pos: int,
    end: int,
    spec: Spec,
    out: Dataset,
    depth: int,
    until_item_delim: bool,
    total: int,
    record: list[tuple[int, int, int]] | None = None,
    once: bool = False,
) -> int:
    """:func:`_parse` for explicit VR little endian (nearly every file), one tight loop.

    Same results and errors as the general walker; per element one ``unpack_from`` and one
    dict look-up decide the header length, and value bytes are sliced only for kept tags.
    """
    if depth > MAX_DEPTH:
        raise DicomParseError("sequences nested too deep")
    head = _HEAD_ELE
    u32 = _U32_LE
    hlen = _HEADER_LEN
    keep = spec.keep
    seqs = spec.seqs
    pgroups = spec.private_groups
    stop_at = PIXEL_GROUP if depth == 0 else 0x10000
    while pos + 8 <= end:
        start = pos
        group, elem, vr, length = head(buf, pos)
        if group == 0xFFFE:
            tag = (group << 16) | elem
            if tag == ITEM_DELIM and until_item_delim:
                return pos + 8
            raise DicomParseError(f"unexpected delimiter {tag:08X}")
        hl = hlen.get(vr)
        if hl is None:
            raise DicomParseError(f"bad VR {vr!r} at ({group:04X},{elem:04X})")
        if hl == 12:
            if pos + 12 > end:
                raise DicomParseError("truncated element header")
            length = u32(buf, pos + 8)[0]
        if group >= stop_at:
            if length != UNDEFINED and pos + hl + length > max(end, total) and elem == 0x0010:
                raise DicomParseError("truncated file (pixel data incomplete)")
            return pos
        pos += hl
        if length == UNDEFINED or vr == b"SQ":
            tag = (group << 16) | elem
            if vr not in (b"SQ", b"UN", b"OB", b"OW") and length == UNDEFINED:
                raise DicomParseError(f"undefined length on ({group:04X},{elem:04X})")
            inner_explicit = vr == b"SQ"
            if tag in seqs:
                items: list[Dataset] = []
                pos = _parse_seq(buf, pos, end, length, True, inner_explicit, spec, items, depth)
                out[tag] = items
            else:
                pos = _parse_seq(buf, pos, end, length, True, inner_explicit, spec, None, depth)
            if record is not None:
                record.append((tag, start, pos))
                if once:
                    return pos
            continue
        nxt = pos + length
        if nxt > end:
            raise DicomParseError("truncated file" if depth == 0 else "element runs past its item")
        tag = (group << 16) | elem
        if tag in keep or (group & 1 and 0x0010 <= elem <= 0x00FF and group in pgroups):
            out[tag] = (vr, buf[pos:nxt])
        pos = nxt
        if record is not None:
            record.append((tag, start, pos))
            if once:
                return pos
    if until_item_delim:
        raise DicomParseError("missing item delimiter")
    return pos


_STRUCTS = {
    (lt, ex): (
        struct.Struct(("<" if lt else ">") + ("HH2sH" if ex else "HHI")).unpack_from,
        struct.Struct(("<" if lt else ">") + "I").unpack_from,
    )
    for lt in (True, False)
    for ex in (True, False)
}


_WALK = threading.local()  # .plain: no item templates (the reference walk tests compare with)


def _parse_seq(
    buf: Any,
    pos: int,
    end: int,
    length: int,
    little: bool,
    explicit: bool,
    spec: Spec,
    items: list[Dataset] | None,
    depth: int,
    state: list[Any] | None = None,
) -> int:
    """Items of one sequence into ``items`` (or walked and dropped when ``items`` is None).

    Kept explicit-little-endian sequences read their items after the first against it
    (:class:`~engine.scan.dcmitems.ItemTemplate`); ``state`` carries that template over to
    the same sequence of the next file of a series.  A dropped sequence of defined length is
    jumped over whole.
    """
    if length != UNDEFINED:
        seq_end = pos + length
        if seq_end > end:
            raise DicomParseError("sequence runs past the end of the file")
        if items is None:
            return seq_end
    else:
        seq_end = end
    if items is not None and little and explicit and not _WALK.plain:
        return _template_seq(buf, pos, seq_end, length, spec, items, depth, state)
    while pos + 8 <= seq_end:
        ilen = item_header(buf, pos, little)
        pos += 8
        if ilen is None:
            return pos
        ds = Dataset()
        ds.little = little
        if ilen == UNDEFINED:
            pos = _parse(
                buf, pos, seq_end, little, explicit, spec, ds, depth + 1, until_item_delim=True
            )
        else:
            iend = pos + ilen
            if iend > seq_end:
                raise DicomParseError("item runs past its sequence")
            _parse(buf, pos, iend, little, explicit, spec, ds, depth + 1)
            pos = iend
        if items is not None:
            items.append(ds)
    if length == UNDEFINED:
        raise DicomParseError("truncated sequence (no delimiter)")
    return seq_end


def _template_seq(
    buf: Any,
    pos: int,
    seq_end: int,
    length: int,
    spec: Spec,
    items: list[Dataset],
    depth: int,
    state: list[Any] | None,
) -> int:
    """:func:`_parse_seq` of a kept explicit-VR-little-endian sequence: the first item is
    walked in full and becomes the template; later items are read against it."""
    st = state if state is not None else [None, 0]  # [template, 1 when not flat-walkable]
    while pos + 8 <= seq_end:
        ilen = item_header(buf, pos)
        pos += 8
        if ilen is None:
            return pos
        until = ilen == UNDEFINED
        iend = seq_end if until else pos + ilen
        if iend > seq_end:
            raise DicomParseError("item runs past its sequence")
        tpl = st[0]
        got = tpl.read(buf, pos, iend) if tpl is not None and tpl.defined != until else None
        if got is not None and (until or got[1] == iend):
            ds = got[0]
            pos = got[1]
        else:
            ds = Dataset()
            ds.little = True
            leaves: list[Leaf] = []
            start = pos
            try:
                after = flat_item(buf, pos, iend, spec, ds, depth + 1, until, (), leaves, pos,
                                  not until)  # fmt: skip
            except NotFlat:  # e.g. a private SQ sent as UN: the general walk, no template
                ds = Dataset()
                ds.little = True
                after = _parse(buf, pos, iend, True, True, spec, ds, depth + 1,
                               until_item_delim=until)  # fmt: skip
                st[0], st[1] = None, 1
            else:
                if tpl is not None and not tpl.learn(buf, start, after, leaves):
                    tpl = None  # another structure (a new file, a new kind of frame)
                if tpl is None and not st[1]:
                    st[0] = ItemTemplate(buf, start, after, ds, leaves, not until)
            pos = after if until else iend
        items.append(ds)
    if length == UNDEFINED:
        raise DicomParseError("truncated sequence (no delimiter)")
    return seq_end
