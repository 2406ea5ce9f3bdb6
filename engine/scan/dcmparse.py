"""A small, fast DICOM header walker: reads elements up to the pixel data, decodes only what we need.

pydicom parses every element into objects (about 3 ms a file); this walker jumps over values it
does not keep and stops at (7FE0,0010), so a whole header costs a few hundred microseconds.
It understands explicit/implicit VR little endian, explicit big endian, deflate, sequences of
defined and undefined length, and private SQs sent as implicit/UN.  Anything malformed raises
:class:`DicomParseError` with a short reason.
"""

from __future__ import annotations

import struct
import threading
import zlib
from typing import Any

from engine.scan.dcmbase import (  # noqa: F401 - re-exported for the readers
    _HEAD_ELE,
    _HEADER_LEN,
    _LONG_VRS,
    _U32_LE,
    _VALID_VRS,
    ITEM,
    ITEM_DELIM,
    MAX_DEPTH,
    PIXEL_GROUP,
    SEQ_DELIM,
    UNDEFINED,
    Dataset,
    DicomParseError,
    Spec,
    _t,
    item_header,
)
from engine.scan.dcmitems import ItemTemplate, Leaf, NotFlat, flat_item


def parse_file_bytes(
    buf: Any,
    spec: Spec,
    total: int | None = None,
    layout: Layout | None = None,
    record: list[tuple[int, int, int]] | None = None,
    plain: bool = False,
) -> tuple[Dataset, dict[str, Any]]:
    """Parse a DICOM byte buffer (bytes or mmap). Returns (dataset, meta).

    ``buf`` may be a prefix of a file of ``total`` bytes: the pixel-data length is then checked
    against ``total``, and ``meta["complete"]`` says whether the walk reached the pixel data
    (or the end of the whole file), i.e. whether the prefix held the whole header.  A prefix
    that ends inside the header raises :class:`DicomParseError` or leaves ``complete`` False;
    the caller then reads the whole file.

    ``layout`` (from an earlier file of the same series, see :class:`Layout`) lets the walk
    jump over runs of top-level elements whose bytes equal that file's; ``record`` collects
    ``(tag, start, end)`` of every top-level element so a :class:`Layout` can be made.
    ``plain`` walks every element of every item (no templates): the reference for tests.
    """
    n = len(buf)
    meta: dict[str, Any] = {"preamble": False, "transfer_syntax": ""}
    _WALK.plain = plain
    if total is None or total < n:
        total = n
    pos = 0
    if n >= 132 and buf[128:132] == b"DICM":
        meta["preamble"] = True
        pos = 132
    elif n >= 4 and buf[0:4] == b"DICM":
        pos = 4
    explicit = True
    little = True
    # File meta group (always explicit VR little endian when present).
    if n >= pos + 8 and buf[pos : pos + 2] == b"\x02\x00":
        fm = Dataset()
        fm.little = True
        pos = _parse_meta(buf, pos, n, spec, fm)
        ts_raw = fm.get(_t(0x0002, 0x0010))
        ts = ts_raw[1].rstrip(b"\x00 ").decode("ascii", "replace") if ts_raw else ""
        meta["transfer_syntax"] = ts
        meta["media_storage_sop_class"] = (
            fm[_t(0x0002, 0x0002)][1].rstrip(b"\x00 ").decode("ascii", "replace")
            if _t(0x0002, 0x0002) in fm
            else ""
        )
        if ts == "1.2.840.10008.1.2":
            explicit = False
        elif ts == "1.2.840.10008.1.2.2":
            little = False
        elif ts == "1.2.840.10008.1.2.1.99":
            try:
                buf = zlib.decompress(bytes(buf[pos:]), -zlib.MAX_WBITS)
            except zlib.error as exc:
                raise DicomParseError(f"bad deflate stream: {exc}") from None
            pos, n = 0, len(buf)
            total = n
    else:
        # No meta header: guess the encoding from the first element.
        if n < pos + 8:
            raise DicomParseError("too short for a DICOM header")
        g_le = struct.unpack_from("<H", buf, pos)[0]
        g_be = struct.unpack_from(">H", buf, pos)[0]
        vr = bytes(buf[pos + 4 : pos + 6])
        if g_le in (0x0008, 0x0010, 0x0018, 0x0020, 0x0028, 0x0002, 0x0004):
            little = True
        elif g_be in (0x0008, 0x0010, 0x0018, 0x0020, 0x0028):
            little = False
        elif meta["preamble"] or pos == 4:
            raise DicomParseError(
                f"DICM marker, but no DICOM element after it (first group {g_le:04X}): "
                "corrupt or not DICOM"
            )
        else:
            raise DicomParseError("no DICM marker and no known first group")
        explicit = vr in _VALID_VRS
    ds = Dataset()
    ds.little = little
    meta["start"] = pos
    if explicit and little:
        if layout is not None and layout.ts == meta["transfer_syntax"]:
            end = _walk_like(buf, pos, n, spec, ds, total, layout)
        else:
            end = _parse_ele(buf, pos, n, spec, ds, 0, False, total, record)
    else:
        end = _parse(buf, pos, n, little, explicit, spec, ds, 0, total=total)
    # Stopped at the pixel data (end + 8 <= n) or walked the whole file: the header is all here.
    meta["complete"] = end + 8 <= n or n >= total
    meta["header_end"] = end
    meta["explicit"] = explicit
    meta["little"] = little
    return ds, meta


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


def _parse_meta(buf: Any, pos: int, n: int, spec: Spec, fm: Dataset) -> int:
    """The file meta group; jumps by its group length (0002,0000) when that is consistent."""
    if buf[pos : pos + 8] == b"\x02\x00\x00\x00UL\x04\x00" and pos + 12 <= n:
        meta_end = pos + 12 + _U32_LE(buf, pos + 8)[0]
        if meta_end + 2 <= n and buf[meta_end : meta_end + 2] != b"\x02\x00":
            rec: list[tuple[int, int, int]] = []
            try:
                end = _parse_ele(buf, pos, meta_end, spec, fm, 1, False, 0, rec)
            except DicomParseError:
                end = -1
            if end == meta_end and all(t >> 16 == 0x0002 for t, _s, _e in rec):
                return end
            fm.clear()
    return _parse(buf, pos, n, True, True, spec, fm, 0, meta_only=True)


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
