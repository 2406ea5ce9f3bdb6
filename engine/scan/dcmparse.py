"""A small, fast DICOM header walker: reads elements up to the pixel data, decodes only what we need.

pydicom parses every element into objects (about 3 ms a file); this walker jumps over values it
does not keep and stops at (7FE0,0010), so a whole header costs a few hundred microseconds.
It understands explicit/implicit VR little endian, explicit big endian, deflate, sequences of
defined and undefined length, and private SQs sent as implicit/UN.  Anything malformed raises
:class:`DicomParseError` with a short reason.

The walk itself is in :mod:`engine.scan.dcmwalk` (elements, sequences, items) and
:mod:`engine.scan.dcmlayout` (a file walked like the previous one of its series); this module
reads the file meta and the transfer syntax and picks the walk.
"""

from __future__ import annotations

import struct
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
from engine.scan.dcmlayout import Layout, _walk_like
from engine.scan.dcmwalk import _WALK, _parse, _parse_ele


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
