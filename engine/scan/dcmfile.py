"""File access for the header reader: plain, memory-mapped and gzipped files, byte probes.

Everything that touches a file descriptor or guesses from raw bytes before the walk (the
series UID of a file, whether it is an enhanced multi-frame file) lives here, apart from the
decoding of what the walk keeps.
"""

from __future__ import annotations

import mmap
import os
import zlib
from typing import Any

from engine.scan.dcmtags import NotDicom

MMAP_OVER = 4 << 20  # read small files in one go; map larger ones so only the header pages load
_SERIES_UID_ELE = b"\x20\x00\x0e\x00UI"  # (0020,000E) UI, explicit VR little endian


def read_bytes(path: str) -> Any:
    """The file's bytes (gunzipped when gzip, at most :data:`GZIP_MAX` of them); a mmap for
    large plain files."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            raise NotDicom("empty file")
        head = fh.read(2)
        fh.seek(0)
        if head == b"\x1f\x8b":
            data, _done = Gunzip(fh.fileno(), b"").read_to(GZIP_MAX)
            return data
        if size > MMAP_OVER:
            return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        return fh.read()


def _uids_in(buf: Any) -> list[str]:
    """The file's own SeriesInstanceUID, found by a byte search (explicit VR), as a one-item
    list; else every candidate.  Referenced or related series in group-0008 sequences come
    before the file's own, which is told apart by the group-0020 element after it (StudyID,
    SeriesNumber: type 2, always there) where a referenced one ends its item."""
    out = []
    i = buf.find(_SERIES_UID_ELE)
    while 0 <= i and i + 8 <= len(buf):
        n = buf[i + 6] | (buf[i + 7] << 8)
        uid = bytes(buf[i + 8 : i + 8 + n]).decode("latin-1").strip("\x00 ")
        if buf[i + 8 + n : i + 10 + n] == b"\x20\x00":
            return [uid]
        out.append(uid)
        i = buf.find(_SERIES_UID_ELE, i + 8 + n)
    return out


# SOP classes whose files carry per-frame functional groups (header of hundreds of KiB)
_ENHANCED_SOPS = (
    b"1.2.840.10008.5.1.4.1.1.4.1", b"1.2.840.10008.5.1.4.1.1.4.2",
    b"1.2.840.10008.5.1.4.1.1.4.3", b"1.2.840.10008.5.1.4.1.1.4.4",
    b"1.2.840.10008.5.1.4.1.1.2.1", b"1.2.840.10008.5.1.4.1.1.2.2",
    b"1.2.840.10008.5.1.4.1.1.128.1", b"1.2.840.10008.5.1.4.1.1.130",
)  # fmt: skip
_MEDIA_SOP_ELE = b"\x02\x00\x02\x00UI"


def _enhanced(buf: Any) -> bool:
    """Whether the file meta names an enhanced (functional-group) SOP class."""
    i = buf.find(_MEDIA_SOP_ELE, 0, 512)
    if i < 0 or i + 8 > len(buf):
        return False
    n = buf[i + 6] | (buf[i + 7] << 8)
    return bytes(buf[i + 8 : i + 8 + n]).rstrip(b"\x00 ") in _ENHANCED_SOPS


def _read_rest(fd: int, size: int) -> bytes:
    parts = []
    while True:
        chunk = os.read(fd, max(size, 1 << 16))
        if not chunk:
            return b"".join(parts)
        parts.append(chunk)


GZIP_FIRST = 256 << 10  # first decompressed prefix of a gzipped file
GZIP_MAX = 64 << 20  # never decompress more of one file than this (a header is far smaller)
UNKNOWN_TOTAL = 1 << 62  # the decompressed size of a gzip read in part: unknown, "large"


class Gunzip:
    """A gzip stream (every member) decompressed on demand from a file descriptor."""

    def __init__(self, fd: int, first: bytes) -> None:
        self.fd = fd
        self.pending = first
        self.d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self.fresh = True  # no input fed to the current member yet
        self.members = 0  # members decompressed to their end
        self.out = bytearray()
        self.done = False

    def read_to(self, want: int) -> tuple[bytes, bool]:
        """The first ``want`` decompressed bytes (fewer at the end) and whether that is all."""
        want = min(want, GZIP_MAX)
        try:
            while len(self.out) < want and not self.done:
                if self.d.unconsumed_tail:
                    chunk = self.d.unconsumed_tail
                elif self.pending:
                    chunk, self.pending = self.pending, b""
                else:
                    chunk = os.read(self.fd, 1 << 16)
                    if not chunk:
                        if not self.fresh and not self.d.eof:
                            raise NotDicom("bad gzip: the compressed stream is cut short")
                        self.done = True
                        break
                if self.fresh and self.members and chunk[:1] != b"\x1f":
                    self.done = True  # padding or trailing bytes after the last member: ignored
                    break
                self.fresh = False
                self.out += self.d.decompress(chunk, want - len(self.out))
                if self.d.eof:
                    self.members += 1
                    rest = self.d.unused_data
                    # a next member, maybe (in these bytes or those not read yet)
                    self.pending = rest + self.pending
                    self.d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    self.fresh = True
        except zlib.error as exc:
            raise NotDicom(f"bad gzip: {exc}") from None
        return bytes(self.out[:want]), self.done and len(self.out) <= want
