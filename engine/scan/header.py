"""Fast per-file header read: one DICOM file -> a small dict of facts (JSON-serialisable).

The facts are what :mod:`engine.scan.aggregate` needs to build one ``SeriesInfo`` per series;
they are cached per file, so this is the only place that touches DICOM bytes.

The work is split by concern: the tag table (:mod:`engine.scan.dcmtags`), value decoding
(:mod:`engine.scan.dcmvalues`), vendor rules (:mod:`engine.scan.dcmvendor`), the full decode
(:mod:`engine.scan.dcmfacts`), the per-file delta (:mod:`engine.scan.perfile`) and file access
(:mod:`engine.scan.dcmfile`); this module holds the reader that ties them together and
re-exports their public names.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import struct
import zlib
from collections import OrderedDict
from typing import Any

from engine.scan.dcmfacts import facts_from_dataset
from engine.scan.dcmfile import (
    GZIP_FIRST,
    GZIP_MAX,
    MMAP_OVER,
    UNKNOWN_TOTAL,
    Gunzip,
    _enhanced,
    _read_rest,
    _uids_in,
    read_bytes,
)
from engine.scan.dcmparse import (
    Dataset,
    DicomParseError,
    Layout,
    Spec,
    parse_file_bytes,
)
from engine.scan.dcmtags import (
    CSA_IMAGE,
    CSA_SERIES,
    DICOMDIR_SOP,
    GE_PARM_CREATOR,
    IDENTITY_FACTS,
    KEEP,
    NAME_OF,
    PHILIPS_MR_CREATOR,
    SEQS,
    SPEC,
    TAGS,
    VRS,
    XA_PE_POSITIVE,
    NotDicom,
    T,
)
from engine.scan.dcmvalues import _s
from engine.scan.perfile import (
    PER_FILE,
    PER_FILE_TAGS,
    per_file_facts,
    same_constants,
)

# The names this module has always offered (most now live in the modules above).
__all__ = [
    "CSA_IMAGE",
    "CSA_SERIES",
    "DICOMDIR_SOP",
    "GE_PARM_CREATOR",
    "GZIP_FIRST",
    "GZIP_MAX",
    "IDENTITY_FACTS",
    "KEEP",
    "MMAP_OVER",
    "NAME_OF",
    "PER_FILE",
    "PER_FILE_TAGS",
    "PHILIPS_MR_CREATOR",
    "PREFIX",
    "RECENT_SERIES",
    "SEQS",
    "SPEC",
    "TAGS",
    "UNKNOWN_TOTAL",
    "VRS",
    "XA_PE_POSITIVE",
    "Dataset",
    "DicomParseError",
    "Gunzip",
    "Layout",
    "NotDicom",
    "Reader",
    "Spec",
    "T",
    "facts_from_bytes",
    "facts_from_dataset",
    "parse_file_bytes",
    "per_file_facts",
    "read_bytes",
    "read_facts",
    "same_constants",
]


def read_facts(path: str) -> dict[str, Any]:
    """Facts of one file, or raise :class:`NotDicom` with the reason."""
    return Reader().read(path)


RECENT_SERIES = 64
PREFIX = 16 << 10  # first read; most classic headers (Siemens CSA included) fit
_MULTIFRAME = (T(0x5200, 0x9229), T(0x5200, 0x9230))


class Reader:
    """Reads files one after another (a worker's tasks, each sorted by path).

    Savings over decoding each file on its own, each measured on real trees:

    * only a prefix of each file is read (``os.read`` of the last header's size plus 4 KiB,
      16 KiB at first); the whole file only when the header did not fit;
    * the walk of a file of the same series as the previous one jumps over the runs of
      elements that are byte-identical to that file's (:class:`~engine.scan.dcmlayout.Layout`);
    * the items of a long sequence (per-frame functional groups) after the first are read
      against it (:class:`~engine.scan.dcmitems.ItemTemplate`);
    * a classic (single-frame) file of the current series template whose series-constant
      elements are the template's (:func:`same_constants`) decodes only the per-file facts
      that changed (:func:`per_file_facts`); the rest is the template's, and the cache stores
      the template once and per file only the differences (``self.delta``).

    ``tests/test_analyze_speed.py`` checks the facts equal a full decode for every file.
    """

    def __init__(self) -> None:
        self.hint = PREFIX
        self.tpl: dict[str, Any] | None = None
        self.layout: Layout | None = None
        # After each read: the per-file facts when the file belongs to the current template
        # (``tpl_id`` names it), else None; lets the cache store a template once per series.
        self.delta: dict[str, Any] | None = None
        self.tpl_id = ""
        self.tpl_json = ""
        self.tpl_ds: Dataset | None = None
        self.layout_series: tuple[Any, Any] = (None, None)
        self.foreign = False  # set by _select: this file's series UID is none we hold state for
        # series UID -> the state above for the last few series, so that files of several
        # series interleaved in path order (flat exports named by UID) keep their templates
        self.recent: OrderedDict[str, tuple[Any, ...]] = OrderedDict()

    def read(self, path: str) -> dict[str, Any]:
        self.delta = None
        fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                raise NotDicom("empty file")
            buf = os.read(fd, max(self.hint, 512))
            if buf[:2] == b"\x1f\x8b":
                return self._gzip(Gunzip(fd, buf))
            self._select(buf)
            if len(buf) < size and _enhanced(buf):
                # functional groups make the header hundreds of KiB: no prefix attempt
                if size > MMAP_OVER:
                    mm = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
                    try:
                        self._select(mm)
                        return self._facts(mm, size)
                    finally:
                        mm.close()
                buf += _read_rest(fd, size)
                self._select(buf)  # the series UID may lie past the prefix
            if len(buf) < size:
                try:
                    ds, meta = self._parse(buf, size)
                    if meta["complete"]:
                        return self._from_dataset(ds, meta, buf, size)
                except (DicomParseError, *_CORRUPT):
                    pass  # the prefix ended inside the header: read the whole file
                if size > MMAP_OVER:
                    mm = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
                    try:
                        return self._facts(mm, size)
                    finally:
                        mm.close()
                buf += _read_rest(fd, size)
            return self._facts(buf, size)
        finally:
            os.close(fd)

    def _gzip(self, stream: Gunzip) -> dict[str, Any]:
        """A gzipped file: decompress only as much as the header needs (a prefix that grows
        until the walk reaches the pixel data), never more than :data:`GZIP_MAX` (a gzip
        bomb costs no more memory than that)."""
        want = max(self.hint, GZIP_FIRST)
        while True:
            data, done = stream.read_to(want)
            if not data:
                raise NotDicom("empty file (gzip)")
            total = len(data) if done else UNKNOWN_TOTAL
            self._select(data)
            try:
                ds, meta = self._parse(data, total)
            except (DicomParseError, *_CORRUPT) as exc:
                final = done or len(data) >= GZIP_MAX or "first group" in str(exc)
                if final:
                    if isinstance(exc, DicomParseError):
                        raise NotDicom(str(exc)) from None
                    raise NotDicom(f"corrupt header ({type(exc).__name__})") from None
                want *= 4
                continue
            if meta["complete"] or done:
                return self._from_dataset(ds, meta, data, total)
            if len(data) >= GZIP_MAX:
                raise NotDicom(
                    f"gzip: the DICOM header does not end within {GZIP_MAX >> 20} MiB "
                    "decompressed (not read further)"
                )
            want *= 4

    _STATE = ("tpl", "tpl_ds", "tpl_id", "tpl_json", "layout", "layout_series")

    def _select(self, buf: Any) -> None:
        """Switch to the remembered state of this file's series (found by a byte search for
        SeriesInstanceUID); only a hint: the walk and the UID checks decide."""
        self.foreign = False
        uids = _uids_in(buf)
        if not uids:
            return
        current = self.tpl["series_uid"] if self.tpl is not None else self.layout_series[1]
        if current in uids:
            return
        if len(uids) > 1:
            return  # ambiguous: walk like the current layout's file, as before
        for uid in uids:
            state = self.recent.get(uid)
            if state is not None:
                self.recent.move_to_end(uid)
                for name, value in zip(self._STATE, state, strict=True):
                    setattr(self, name, value)
                return
        # a series not met lately: walking it like the current layout's file would only
        # mismatch, and a new layout would need a second walk to record its elements
        self.foreign = True

    def _remember(self, uid: str) -> None:
        self.recent[uid] = tuple(getattr(self, name) for name in self._STATE)
        self.recent.move_to_end(uid)
        while len(self.recent) > RECENT_SERIES:
            self.recent.popitem(last=False)

    def _parse(self, buf: Any, total: int | None) -> tuple[Dataset, dict[str, Any]]:
        lay = None if self.foreign else self.layout
        rec: list[tuple[int, int, int]] | None = [] if lay is None else None
        varying = set(lay.varying) if lay is not None else None
        ds, meta = parse_file_bytes(buf, SPEC, total, lay, rec)
        meta["record"] = rec
        if lay is not None and lay.varying != varying:
            uid = ds.get(TAGS["SeriesInstanceUID"][0])
            if uid is None or _s(ds, "SeriesInstanceUID") != self.layout_series[1]:
                # another series' file: what differed says nothing about this series' files
                lay.varying = varying
                lay.invalidate()
        return ds, meta

    def _facts(self, buf: Any, size: int | None) -> dict[str, Any]:
        if len(buf) == 0:
            raise NotDicom("empty file")
        try:
            ds, meta = self._parse(buf, size)
            return self._from_dataset(ds, meta, buf, size)
        except DicomParseError as exc:
            raise NotDicom(str(exc)) from None
        except NotDicom:
            raise
        except _CORRUPT as exc:
            raise NotDicom(f"corrupt header ({type(exc).__name__})") from None

    def _from_dataset(
        self, ds: Dataset, meta: dict[str, Any], buf: Any, size: int | None
    ) -> dict[str, Any]:
        if not ds.keys() & _MULTIFRAME:  # enhanced files are read whole (see ``read``)
            self.hint = max(PREFIX, meta.get("header_end", 0) + 4096)
        tpl = self.tpl
        try:
            if (
                tpl is not None
                and not ds.keys() & _MULTIFRAME
                and _s(ds, "SeriesInstanceUID") == tpl["series_uid"]
                and _s(ds, "StudyInstanceUID") == tpl["study_uid"]
                and (_s(ds, "SOPClassUID") or meta.get("media_storage_sop_class", ""))
                == tpl["sop_class_uid"]
            ):
                if not same_constants(ds, self.tpl_ds):
                    return facts_from_dataset(ds, meta)  # a series constant differs here
                delta = per_file_facts(ds, tpl, self.tpl_ds)
                f = dict(tpl)
                f.update(delta)
                self.delta = delta
                return f
            f = facts_from_dataset(ds, meta)
        except DicomParseError as exc:
            raise NotDicom(str(exc)) from None
        except _CORRUPT as exc:
            raise NotDicom(f"corrupt header ({type(exc).__name__})") from None
        multiframe = bool(ds.keys() & _MULTIFRAME) or f.get("n_frames", 1) > 1
        series = (f.get("study_uid"), f.get("series_uid"))
        self.tpl = self.tpl_ds = None
        if f.get("kind") == "image" and not multiframe:
            self.tpl = f
            self.tpl_json = json.dumps(f, separators=(",", ":"))
            self.tpl_id = hashlib.blake2b(self.tpl_json.encode(), digest_size=12).hexdigest()
            self.delta = {}
            self.tpl_ds = ds
        elif self.layout is not None and self.layout_series == series:
            return f  # an enhanced file of the layout's series: keep walking like that file
        self.layout = None
        if f.get("kind") == "image" and meta.get("explicit") and meta.get("little"):
            if meta.get("complete"):
                rec = meta.get("record")
                if rec is None:  # parsed with the previous series' layout: walk again
                    rec = []
                    parse_file_bytes(buf, SPEC, size, None, rec)
                if rec:
                    self.layout = Layout(buf, meta["transfer_syntax"], rec, ds)
                    self.layout_series = series
        if f.get("kind") == "image":
            self._remember(f["series_uid"])
        return f


def facts_from_bytes(buf: bytes, plain: bool = False) -> dict[str, Any]:
    """Facts from in-memory bytes (used by the fuzz test); raises :class:`NotDicom`.
    ``plain``: the reference walk, every element of every item (tests compare with it)."""
    if buf[:2] == b"\x1f\x8b":
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            buf = d.decompress(buf, GZIP_MAX)
        except zlib.error as exc:
            raise NotDicom(f"bad gzip: {exc}") from None
    if len(buf) == 0:
        raise NotDicom("empty file")
    try:
        ds, meta = parse_file_bytes(buf, SPEC, plain=plain)
        return facts_from_dataset(ds, meta)
    except DicomParseError as exc:
        raise NotDicom(str(exc)) from None
    except NotDicom:
        raise
    except _CORRUPT as exc:
        raise NotDicom(f"corrupt header ({type(exc).__name__})") from None


_CORRUPT = (struct.error, IndexError, ValueError, OverflowError, MemoryError, RecursionError)
