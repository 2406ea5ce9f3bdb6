"""A small, fast DICOM header walker: reads elements up to the pixel data, decodes only what we need.

pydicom parses every element into objects (about 3 ms a file); this walker jumps over values it
does not keep and stops at (7FE0,0010), so a whole header costs a few hundred microseconds.
It understands explicit/implicit VR little endian, explicit big endian, deflate, sequences of
defined and undefined length, and private SQs sent as implicit/UN.  Anything malformed raises
:class:`DicomParseError` with a short reason.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

PIXEL_GROUP = 0x7FE0
ITEM = 0xFFFEE000
ITEM_DELIM = 0xFFFEE00D
SEQ_DELIM = 0xFFFEE0DD
UNDEFINED = 0xFFFFFFFF

# VRs with a 2-byte reserved field and a 4-byte length in explicit VR.
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_VALID_VRS = (
    frozenset(
        {
            b"AE",
            b"AS",
            b"AT",
            b"CS",
            b"DA",
            b"DS",
            b"DT",
            b"FL",
            b"FD",
            b"IS",
            b"LO",
            b"LT",
            b"PN",
            b"SH",
            b"SL",
            b"SS",
            b"ST",
            b"TM",
            b"UI",
            b"UL",
            b"US",
        }
    )
    | _LONG_VRS
)

MAX_DEPTH = 12


class DicomParseError(Exception):
    """The bytes are not a (complete) DICOM header."""


def _t(group: int, elem: int) -> int:
    return (group << 16) | elem


class Spec:
    """Which tags to keep and which sequences to descend into.

    ``keep`` holds tags whose raw value bytes are returned; ``seqs`` holds SQ tags parsed into
    lists of item dicts (with the same rules applied inside).  Private creator elements
    (gggg,0010-00FF) of the listed ``private_groups`` are always kept so private tags can be
    resolved by creator name.
    """

    def __init__(
        self, keep: set[int], seqs: set[int], private_groups: set[int], vrs: dict[int, bytes]
    ):
        self.keep = frozenset(keep)
        self.seqs = frozenset(seqs)
        self.private_groups = frozenset(private_groups)
        self.vrs = vrs  # implicit-VR fallbacks for the tags we decode


class Dataset(dict):
    """tag -> (vr, raw bytes) or tag -> list[Dataset] (sequences). Carries the byte order."""

    __slots__ = ("little",)


def parse_file_bytes(buf: Any, spec: Spec) -> tuple[Dataset, dict[str, Any]]:
    """Parse a whole DICOM byte buffer (bytes or mmap). Returns (dataset, meta)."""
    n = len(buf)
    meta: dict[str, Any] = {"preamble": False, "transfer_syntax": ""}
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
        pos = _parse(buf, pos, n, True, True, spec, fm, 0, meta_only=True)
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
    else:
        if meta["preamble"] or pos == 4:
            pass
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
        else:
            raise DicomParseError("no DICM marker and no known first group")
        explicit = vr in _VALID_VRS
    ds = Dataset()
    ds.little = little
    _parse(buf, pos, n, little, explicit, spec, ds, 0)
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
) -> int:
    """Walk elements in ``buf[pos:end]`` into ``out``; return the position after the last one.

    The loop is the hot path of a scan: one ``unpack_from`` per element header, set look-ups
    for the keep decision, and value bytes sliced only for kept tags.
    """
    if depth > MAX_DEPTH:
        raise DicomParseError("sequences nested too deep")
    bo = "<" if little else ">"
    if explicit:
        head = struct.Struct(bo + "HH2sH").unpack_from
    else:
        head = struct.Struct(bo + "HHI").unpack_from
    unpack_u32 = struct.Struct(bo + "I").unpack_from
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
            if length != UNDEFINED and pos + length > end and elem == 0x0010:
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
) -> int:
    unpack_tag = struct.Struct("<HH" if little else ">HH").unpack_from
    unpack_u32 = struct.Struct("<I" if little else ">I").unpack_from
    if length != UNDEFINED:
        seq_end = pos + length
        if seq_end > end:
            raise DicomParseError("sequence runs past the end of the file")
    else:
        seq_end = end
    while pos + 8 <= seq_end:
        group, elem = unpack_tag(buf, pos)
        tag = (group << 16) | elem
        ilen = unpack_u32(buf, pos + 4)[0]
        pos += 8
        if tag == SEQ_DELIM:
            return pos
        if tag != ITEM:
            raise DicomParseError(f"expected item in sequence, got {tag:08X}")
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
