"""The building blocks of the DICOM header walkers: constants, errors, the dataset type.

Shared by :mod:`engine.scan.dcmparse` (whole files) and :mod:`engine.scan.dcmitems`
(items of long sequences such as per-frame functional groups).
"""

from __future__ import annotations

import struct

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


_HEAD_ELE = struct.Struct("<HH2sH").unpack_from
_U32_LE = struct.Struct("<I").unpack_from
_HEADER_LEN = {vr: (12 if vr in _LONG_VRS else 8) for vr in _VALID_VRS}

_SEQ_UNPACK = {
    True: (struct.Struct("<HH").unpack_from, struct.Struct("<I").unpack_from),
    False: (struct.Struct(">HH").unpack_from, struct.Struct(">I").unpack_from),
}


def item_header(buf: object, pos: int, little: bool = True) -> int | None:
    """The length of the item whose header is at ``pos`` (UNDEFINED if so), or None at the
    sequence delimiter; anything else there is a :class:`DicomParseError`."""
    unpack_tag, unpack_u32 = _SEQ_UNPACK[little]
    group, elem = unpack_tag(buf, pos)
    tag = (group << 16) | elem
    if tag == SEQ_DELIM:
        return None
    if tag != ITEM:
        raise DicomParseError(f"expected item in sequence, got {tag:08X}")
    return unpack_u32(buf, pos + 4)[0]


def element_header(buf: object, pos: int, end: int) -> tuple[int, int, bytes, int, int]:
    """(group, element, VR, value length, header length) of the explicit-VR-little-endian
    element at ``pos``; a delimiter (group FFFE) comes back as read, with header length 8.
    The walkers' hot loops inline this; the rarer ones call it."""
    group, elem, vr, length = _HEAD_ELE(buf, pos)
    if group == 0xFFFE:
        return group, elem, vr, length, 8
    hl = _HEADER_LEN.get(vr)
    if hl is None:
        raise DicomParseError(f"bad VR {vr!r} at ({group:04X},{elem:04X})")
    if hl == 12:
        if pos + 12 > end:
            raise DicomParseError("truncated element header")
        length = _U32_LE(buf, pos + 8)[0]
    return group, elem, vr, length, hl
