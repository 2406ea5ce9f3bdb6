"""Fast per-file header read: one DICOM file -> a small dict of facts (JSON-serialisable).

The facts are what :mod:`engine.scan.aggregate` needs to build one ``SeriesInfo`` per series;
they are cached per file, so this is the only place that touches DICOM bytes.
"""

from __future__ import annotations

import hashlib
import json
import math
import mmap
import os
import struct
import zlib
from collections import OrderedDict
from typing import Any

from engine.scan.dcmparse import Dataset, DicomParseError, Layout, Spec, parse_file_bytes
from engine.scan.siemens_csa import csa_first, csa_values, phoenix_protocol_name

DICOMDIR_SOP = "1.2.840.10008.1.3.10"
MMAP_OVER = 4 << 20  # read small files in one go; map larger ones so only the header pages load


def T(g: int, e: int) -> int:
    return (g << 16) | e


# tag -> (name, VR used when the file is implicit VR)
TAGS: dict[str, tuple[int, bytes]] = {
    "ImageType": (T(0x0008, 0x0008), b"CS"),
    "SOPClassUID": (T(0x0008, 0x0016), b"UI"),
    "StudyDate": (T(0x0008, 0x0020), b"DA"),
    "SeriesDate": (T(0x0008, 0x0021), b"DA"),
    "AcquisitionDate": (T(0x0008, 0x0022), b"DA"),
    "StudyTime": (T(0x0008, 0x0030), b"TM"),
    "SeriesTime": (T(0x0008, 0x0031), b"TM"),
    "AcquisitionTime": (T(0x0008, 0x0032), b"TM"),
    "AcquisitionDateTime": (T(0x0008, 0x002A), b"DT"),
    "AccessionNumber": (T(0x0008, 0x0050), b"SH"),
    "Modality": (T(0x0008, 0x0060), b"CS"),
    "Manufacturer": (T(0x0008, 0x0070), b"LO"),
    "ReferringPhysicianName": (T(0x0008, 0x0090), b"PN"),
    "StudyDescription": (T(0x0008, 0x1030), b"LO"),
    "SeriesDescription": (T(0x0008, 0x103E), b"LO"),
    "ManufacturerModelName": (T(0x0008, 0x1090), b"LO"),
    "FrameType": (T(0x0008, 0x9007), b"CS"),
    "ComplexImageComponent": (T(0x0008, 0x9208), b"CS"),
    "PatientID": (T(0x0010, 0x0020), b"LO"),
    "PatientSex": (T(0x0010, 0x0040), b"CS"),
    "PatientAge": (T(0x0010, 0x1010), b"AS"),
    "ScanningSequence": (T(0x0018, 0x0020), b"CS"),
    "SequenceVariant": (T(0x0018, 0x0021), b"CS"),
    "ScanOptions": (T(0x0018, 0x0022), b"CS"),
    "MRAcquisitionType": (T(0x0018, 0x0023), b"CS"),
    "SequenceName": (T(0x0018, 0x0024), b"SH"),
    "SliceThickness": (T(0x0018, 0x0050), b"DS"),
    "RepetitionTime": (T(0x0018, 0x0080), b"DS"),
    "EchoTime": (T(0x0018, 0x0081), b"DS"),
    "InversionTime": (T(0x0018, 0x0082), b"DS"),
    "EchoNumbers": (T(0x0018, 0x0086), b"IS"),
    "MagneticFieldStrength": (T(0x0018, 0x0087), b"DS"),
    "ProtocolName": (T(0x0018, 0x1030), b"LO"),
    "InPlanePhaseEncodingDirection": (T(0x0018, 0x1312), b"CS"),
    "FlipAngle": (T(0x0018, 0x1314), b"DS"),
    "PulseSequenceName": (T(0x0018, 0x9005), b"SH"),
    "EffectiveEchoTime": (T(0x0018, 0x9082), b"FD"),
    "DiffusionBValue": (T(0x0018, 0x9087), b"FD"),
    "DiffusionGradientOrientation": (T(0x0018, 0x9089), b"FD"),
    "SiemensSequenceName": (T(0x0019, 0x109C), b"LO"),
    "StudyInstanceUID": (T(0x0020, 0x000D), b"UI"),
    "SeriesInstanceUID": (T(0x0020, 0x000E), b"UI"),
    "SeriesNumber": (T(0x0020, 0x0011), b"IS"),
    "AcquisitionNumber": (T(0x0020, 0x0012), b"IS"),
    "InstanceNumber": (T(0x0020, 0x0013), b"IS"),
    "ImagePositionPatient": (T(0x0020, 0x0032), b"DS"),
    "ImageOrientationPatient": (T(0x0020, 0x0037), b"DS"),
    "TemporalPositionIdentifier": (T(0x0020, 0x0100), b"IS"),
    "NumberOfTemporalPositions": (T(0x0020, 0x0105), b"IS"),
    "TemporalPositionIndex": (T(0x0020, 0x9128), b"UL"),
    "DimensionIndexValues": (T(0x0020, 0x9157), b"UL"),
    "NumberOfFrames": (T(0x0028, 0x0008), b"IS"),
    "Rows": (T(0x0028, 0x0010), b"US"),
    "Columns": (T(0x0028, 0x0011), b"US"),
    "PixelSpacing": (T(0x0028, 0x0030), b"DS"),
    "SpecificCharacterSet": (T(0x0008, 0x0005), b"CS"),
    # identities: read only to be kept in OUT/private and redacted everywhere else
    "InstitutionName": (T(0x0008, 0x0080), b"LO"),
    "InstitutionAddress": (T(0x0008, 0x0081), b"ST"),
    "StationName": (T(0x0008, 0x1010), b"SH"),
    "InstitutionalDepartmentName": (T(0x0008, 0x1040), b"LO"),
    "PerformingPhysicianName": (T(0x0008, 0x1050), b"PN"),
    "NameOfPhysiciansReadingStudy": (T(0x0008, 0x1060), b"PN"),
    "OperatorsName": (T(0x0008, 0x1070), b"PN"),
    "PatientName": (T(0x0010, 0x0010), b"PN"),
    "PatientBirthDate": (T(0x0010, 0x0030), b"DA"),
    "OtherPatientIDs": (T(0x0010, 0x1000), b"LO"),
    "PatientAddress": (T(0x0010, 0x1040), b"LO"),
    # GE
    "GEBValue": (T(0x0043, 0x1039), b"IS"),
    "GEProtocolDataBlock": (T(0x0025, 0x101B), b"OB"),
    "GEImageType": (T(0x0043, 0x102F), b"SS"),  # GEMS_PARM_01: 0 mag, 1 phase, 2 real, 3 imag
    # Philips
    "PhilipsBValue": (T(0x2001, 0x1003), b"FL"),
    "PhilipsImageTypeMR": (T(0x2005, 0x1011), b"CS"),  # Philips MR Imaging DD 001: M P R I
}
GE_PARM_CREATOR = T(0x0043, 0x0010)
PHILIPS_MR_CREATOR = T(0x2005, 0x0010)
# Values of the vendor complex-part tags, in ComplexImageComponent's words.
_GE_COMPLEX = {0: "MAGNITUDE", 1: "PHASE", 2: "REAL", 3: "IMAGINARY"}
_PHILIPS_COMPLEX = {"M": "MAGNITUDE", "P": "PHASE", "R": "REAL", "I": "IMAGINARY"}
NAME_OF = {tag: name for name, (tag, _vr) in TAGS.items()}
CSA_IMAGE = T(0x0029, 0x1010)
CSA_SERIES = T(0x0029, 0x1020)
XA_PE_POSITIVE = T(0x0021, 0x111C)

SEQS = {
    T(0x5200, 0x9229),  # SharedFunctionalGroupsSequence
    T(0x5200, 0x9230),  # PerFrameFunctionalGroupsSequence
    T(0x0018, 0x9112),  # MR Timing and Related Parameters
    T(0x0018, 0x9114),  # MR Echo
    T(0x0018, 0x9117),  # MR Diffusion
    T(0x0018, 0x9076),  # Diffusion Gradient Direction
    T(0x0018, 0x9125),  # MR FOV/Geometry
    T(0x0018, 0x9226),  # MR Image Frame Type
    T(0x0020, 0x9111),  # Frame Content
    T(0x0020, 0x9113),  # Plane Position (Patient)
    T(0x0020, 0x9116),  # Plane Orientation (Patient)
    T(0x0028, 0x9110),  # Pixel Measures
    T(0x0021, 0x10FE),  # Siemens XA private
    T(0x0021, 0x11FE),  # Siemens XA private (SDI)
}
KEEP = {tag for tag, _ in TAGS.values()} | {
    CSA_IMAGE,
    CSA_SERIES,
    XA_PE_POSITIVE,
    T(0x0002, 0x0010),
    T(0x0002, 0x0002),
}
VRS = {tag: vr for tag, vr in TAGS.values()} | {
    CSA_IMAGE: b"OB",
    CSA_SERIES: b"OB",
    XA_PE_POSITIVE: b"IS",
    **{s: b"SQ" for s in SEQS},
}
SPEC = Spec(KEEP, SEQS, {0x0019, 0x0021, 0x0029, 0x0043, 0x2001, 0x2005}, VRS)


class NotDicom(Exception):
    """The file is not a readable DICOM image header; the message says why."""


# --- value decoding ------------------------------------------------------------------------


def _s(ds: Dataset, name: str) -> str:
    v = ds.get(TAGS[name][0])
    if v is None:
        return ""
    raw = bytes(v[1])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return text.strip("\x00 ").replace("\x00", "")


# (fact, DICOM keyword) of the identity values kept only in OUT/private (engine.private)
IDENTITY_FACTS: tuple[tuple[str, str], ...] = (
    ("patient_name", "PatientName"),
    ("patient_birth_date", "PatientBirthDate"),
    ("other_patient_ids", "OtherPatientIDs"),
    ("patient_address", "PatientAddress"),
    ("institution_name", "InstitutionName"),
    ("institution_address", "InstitutionAddress"),
    ("institution_department", "InstitutionalDepartmentName"),
    ("station_name", "StationName"),
    ("performing_physician_name", "PerformingPhysicianName"),
    ("reading_physician_name", "NameOfPhysiciansReadingStudy"),
    ("operators_name", "OperatorsName"),
)
_AS_HEUDICONV = frozenset({"series_description", "protocol_name"})


def _as_heudiconv(ds: Dataset, name: str) -> str:
    """A text element as heudiconv's seqinfo holds it (pydicom's reading, then ``str``): trailing
    NULs and spaces dropped, leading ones and inner NULs kept, a multi-valued one as the
    ``str`` of a list.  The heuristic matches these strings on heudiconv's side, so the series
    table must hold the very same ones."""
    v = ds.get(TAGS[name][0])
    if v is None:
        return ""
    raw = bytes(v[1])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    parts = text.split("\\")
    if len(parts) == 1:
        return text.rstrip("\x00 ")
    return str([p.rstrip("\x00 ") for p in parts])


def _multi(ds: Dataset, name: str) -> list[str]:
    s = _s(ds, name)
    return [p.strip() for p in s.split("\\")] if s else []


_BIN_FMT = {b"US": "H", b"UL": "I", b"SS": "h", b"SL": "i", b"FL": "f", b"FD": "d"}


def _nums(ds: Dataset, name: str) -> list[float]:
    v = ds.get(TAGS[name][0])
    if v is None:
        return []
    vr, raw = v
    raw = bytes(raw)
    if vr == b"UN" or vr == b"OB":
        vr = TAGS[name][1]
    fmt = _BIN_FMT.get(vr)
    if fmt:
        size = struct.calcsize(fmt)
        n = len(raw) // size
        if n == 0:
            return []
        vals = struct.unpack(("<" if ds.little else ">") + fmt * n, raw[: n * size])
        return [float(x) for x in vals if not (isinstance(x, float) and math.isnan(x))]
    out = []
    for p in raw.decode("latin-1").strip("\x00 ").split("\\"):
        p = p.strip()
        if not p:
            continue
        try:
            f = float(p)
        except ValueError:
            continue
        if math.isfinite(f):
            out.append(f)
    return out


def _num(ds: Dataset, name: str) -> float | None:
    vals = _nums(ds, name)
    return vals[0] if vals else None


def _creator(ds: Dataset, tag: int) -> str:
    v = ds.get(tag)
    if not isinstance(v, tuple):
        return ""
    return bytes(v[1]).decode("latin-1").strip("\x00 ")


def _vendor_complex(ds: Dataset, manufacturer: str) -> str:
    """MAGNITUDE/PHASE/REAL/IMAGINARY from GE (0043,102F) or Philips (2005,1011); '' if absent.

    Both are private: the value counts only under its own creator (GEMS_PARM_01 at (0043,0010),
    "Philips MR Imaging DD 001" at (2005,0010)), which is where those scanners put the block.
    """
    m = manufacturer[:2].upper()
    if m == "GE" and TAGS["GEImageType"][0] in ds:
        if _creator(ds, GE_PARM_CREATOR) == "GEMS_PARM_01":
            v = _num(ds, "GEImageType")
            if v is not None:
                return _GE_COMPLEX.get(int(v), "")
    elif m == "PH" and TAGS["PhilipsImageTypeMR"][0] in ds:
        if _creator(ds, PHILIPS_MR_CREATOR) == "Philips MR Imaging DD 001":
            return _PHILIPS_COMPLEX.get(_s(ds, "PhilipsImageTypeMR")[:1].upper(), "")
    return ""


def _first_item(ds: Dataset, tag: int) -> Dataset | None:
    items = ds.get(tag)
    if isinstance(items, list) and items:
        return items[0]
    return None


def _fg(group: Dataset | None, seq: int, name: str) -> Any:
    """Value ``name`` from functional-group macro ``seq`` in a shared/per-frame item."""
    if group is None:
        return None
    item = _first_item(group, seq)
    if item is None:
        return None
    return item


# --- file reading ------------------------------------------------------------------------


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


def read_facts(path: str) -> dict[str, Any]:
    """Facts of one file, or raise :class:`NotDicom` with the reason."""
    return Reader().read(path)


_SERIES_UID_ELE = b"\x20\x00\x0e\x00UI"  # (0020,000E) UI, explicit VR little endian
RECENT_SERIES = 64
PREFIX = 16 << 10  # first read; most classic headers (Siemens CSA included) fit
_MULTIFRAME = (T(0x5200, 0x9229), T(0x5200, 0x9230))
# Facts that may differ between files of one classic series; the rest (and the study, series
# and SOP class UIDs, equal by construction) come from the first file of the series this
# reader saw.
PER_FILE = (
    "image_type", "instance_number",
    "acquisition_number", "acquisition_date", "acquisition_time", "acquisition_datetime",
    "series_date", "series_time", "pulse_sequence", "sequence_name",
    "complex_component", "rows", "columns", "n_frames", "TE_ms", "echo_numbers", "echo_times",
    "bvalues", "bdirs", "temporal", "complex_parts", "pe_positive", "ipps", "is_mosaic",
    "iop", "n_mosaic",
)  # fmt: skip


class Reader:
    """Reads files one after another (a worker's tasks, each sorted by path).

    Savings over decoding each file on its own, each measured on real trees:

    * only a prefix of each file is read (``os.read`` of the last header's size plus 4 KiB,
      16 KiB at first); the whole file only when the header did not fit;
    * the walk of a file of the same series as the previous one jumps over the runs of
      elements that are byte-identical to that file's (:class:`~engine.scan.dcmparse.Layout`);
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


_MISSING = object()
_TAG = {name: tag for name, (tag, _vr) in TAGS.items()}
# per-file fact groups: the tags each group is computed from
_G_STR = tuple(
    (key, _TAG[name])
    for key, name in (
        ("acquisition_date", "AcquisitionDate"),
        ("acquisition_time", "AcquisitionTime"),
        ("acquisition_datetime", "AcquisitionDateTime"),
        ("complex_component", "ComplexImageComponent"),
        ("series_date", "SeriesDate"),
        ("series_time", "SeriesTime"),
        ("pulse_sequence", "PulseSequenceName"),
    )
)
_G_INT = tuple(
    (key, _TAG[name], default)
    for key, name, default in (
        ("instance_number", "InstanceNumber", None),
        ("acquisition_number", "AcquisitionNumber", None),
        ("rows", "Rows", 0),
        ("columns", "Columns", 0),
        ("n_frames", "NumberOfFrames", 1),
    )
)
_G_SEQNAME = (_TAG["SequenceName"], _TAG["SiemensSequenceName"], _TAG["PulseSequenceName"])
_G_COMPLEX = (
    _TAG["ComplexImageComponent"],
    _TAG["GEImageType"],
    GE_PARM_CREATOR,
    _TAG["PhilipsImageTypeMR"],
    PHILIPS_MR_CREATOR,
)
_G_DIFF = (
    XA_PE_POSITIVE,
    _TAG["DiffusionBValue"],
    _TAG["GEBValue"],
    _TAG["PhilipsBValue"],
    CSA_IMAGE,
)


PER_FILE_TAGS = frozenset(
    {tag for _k, tag in _G_STR}
    | {tag for _k, tag, _d in _G_INT}
    | set(_G_SEQNAME)
    | set(_G_COMPLEX)
    | set(_G_DIFF)
    | {
        _TAG[name]
        for name in (
            "ImageType",
            "EchoTime",
            "EchoNumbers",
            "ImagePositionPatient",
            "ImageOrientationPatient",
            "TemporalPositionIdentifier",
            "SeriesInstanceUID",
            "StudyInstanceUID",
            "SOPClassUID",
        )
    }
)


def per_file_facts(ds: Dataset, tpl: dict[str, Any], tds: Dataset | None = None) -> dict[str, Any]:
    """The :data:`PER_FILE` facts of a classic (single-frame) file that differ from ``tpl``.

    Computed as :func:`facts_from_dataset` computes them.  ``tds`` is the template's own
    dataset: a fact whose source elements are the very objects of ``tds`` (copied by the
    layout walk because the bytes were equal) is the template's, so it is not recomputed
    and not returned.  Without ``tds`` every per-file fact is computed and returned.
    """
    get = ds.get
    tget = tds.get if tds is not None else (lambda _t: _MISSING)
    f: dict[str, Any] = {}
    for key, tag in _G_STR:
        if get(tag) is not tget(tag):
            f[key] = _s(ds, NAME_OF[tag])
    for key, tag, default in _G_INT:
        if get(tag) is not tget(tag):
            v = _num(ds, NAME_OF[tag])
            if default is None:
                f[key] = int(v) if v is not None else None
            else:
                f[key] = int(v or default)
    seq_tags = _G_SEQNAME
    if any(get(t) is not tget(t) for t in seq_tags):
        # Siemens diffusion puts the b-value in the sequence name (ep_b1500#2): per file
        f["sequence_name"] = (
            _s(ds, "SequenceName") or _s(ds, "SiemensSequenceName") or _s(ds, "PulseSequenceName")
        )
    t_it = _TAG["ImageType"]
    if get(t_it) is not tget(t_it):
        image_type = _multi(ds, "ImageType")
        f["image_type"] = image_type
        f["is_mosaic"] = "MOSAIC" in [x.upper() for x in image_type] and tpl.get("n_mosaic", 0) > 0
    t_te = _TAG["EchoTime"]
    if get(t_te) is not tget(t_te):
        te = _num(ds, "EchoTime")
        f["TE_ms"] = te
        f["echo_times"] = [te] if te is not None else []
    t_en = _TAG["EchoNumbers"]
    if get(t_en) is not tget(t_en):
        f["echo_numbers"] = [int(x) for x in _nums(ds, "EchoNumbers")]
    t_ipp = _TAG["ImagePositionPatient"]
    if get(t_ipp) is not tget(t_ipp):
        ipp = _nums(ds, "ImagePositionPatient")
        f["ipps"] = [[_round(x) for x in ipp]] if len(ipp) == 3 else []
    t_iop = _TAG["ImageOrientationPatient"]
    if get(t_iop) is not tget(t_iop):  # a 3-plane localizer turns from file to file
        f["iop"] = [round(x, 5) for x in _nums(ds, "ImageOrientationPatient")[:6]]
    manufacturer = tpl.get("manufacturer", "")
    if any(get(t) is not tget(t) for t in _G_COMPLEX):
        complex_parts: set[str] = set()
        cc = _s(ds, "ComplexImageComponent")
        if cc:
            complex_parts.add(cc)
        vc = _vendor_complex(ds, manufacturer)
        if vc:
            complex_parts.add(vc)
        f["complex_parts"] = sorted(complex_parts)
    t_tp = _TAG["TemporalPositionIdentifier"]
    if get(t_tp) is not tget(t_tp):
        tp = _num(ds, "TemporalPositionIdentifier")
        f["temporal"] = [int(tp)] if tp is not None else []
    if any(get(t) is not tget(t) for t in _G_DIFF):
        f.update(_diffusion_and_pe(ds, manufacturer))
        image_type = f["image_type"] if "image_type" in f else tpl.get("image_type", [])
        f["is_mosaic"] = "MOSAIC" in [x.upper() for x in image_type] and f["n_mosaic"] > 0
    return f


def same_constants(ds: Dataset, tds: Dataset | None) -> bool:
    """Whether every kept element of ``ds`` outside :data:`PER_FILE_TAGS` is the template's
    own object (so every series-constant fact of ``ds`` equals the template's)."""
    if tds is None:
        return False
    per_file = PER_FILE_TAGS
    tget = tds.get
    for t, v in ds.items():
        if tget(t) is not v and t not in per_file:
            return False
    if len(tds) != len(ds):
        for t in tds:
            if t not in ds and t not in per_file:
                return False
    return True


def _csa_image_facts(
    img_raw: bytes, bvals: set[float], bdirs: set[tuple[float, ...]], pe_positive: set[str]
) -> int:
    """Add the Siemens CSA image header's PE polarity and diffusion encoding to the sets;
    return the mosaic's image count (0 when not a mosaic or no CSA header)."""
    if not img_raw:
        return 0
    n_mosaic = 0
    pep = csa_first(img_raw, "PhaseEncodingDirectionPositive")
    if pep:
        pe_positive.add(pep)
    nm = csa_first(img_raw, "NumberOfImagesInMosaic")
    if nm:
        try:
            n_mosaic = int(float(nm))
        except ValueError:
            n_mosaic = 0
    if not bvals:
        bv = csa_first(img_raw, "B_value")
        if bv:
            try:
                bvals.add(_round(float(bv)))
            except ValueError:
                pass
    gd = csa_values(img_raw, "DiffusionGradientDirection")
    if len(gd) == 3:
        try:
            vec = tuple(round(float(x), 4) for x in gd)
            if any(abs(x) > 1e-6 for x in vec):
                bdirs.add(vec)
        except ValueError:
            pass
    return n_mosaic


def _diffusion_and_pe(ds: Dataset, manufacturer: str) -> dict[str, Any]:
    """bvalues, bdirs and pe_positive of a classic file (XA tag, vendor b-values, CSA)."""
    pe_positive: set[str] = set()
    xa = ds.get(XA_PE_POSITIVE)
    if isinstance(xa, tuple):
        pe_positive.add(bytes(xa[1]).decode("latin-1").strip("\x00 "))
    bvals: set[float] = set()
    bdirs: set[tuple[float, ...]] = set()
    b = _num(ds, "DiffusionBValue")
    mu = manufacturer.upper()
    if b is None and mu.startswith("GE"):
        gb = _nums(ds, "GEBValue")
        if gb:
            b = gb[0] % 1_000_000_000 if gb[0] >= 1_000_000_000 else gb[0]
    if b is None and mu.startswith("PHILIPS"):
        b = _num(ds, "PhilipsBValue")
    if b is not None:
        bvals.add(_round(b))
    csa_img = ds.get(CSA_IMAGE)
    img_raw = bytes(csa_img[1]) if isinstance(csa_img, tuple) else b""
    n_mosaic = _csa_image_facts(img_raw, bvals, bdirs, pe_positive)
    return {
        "bvalues": sorted(bvals),
        "bdirs": sorted(bdirs),
        "pe_positive": sorted(pe_positive),
        "n_mosaic": n_mosaic,
    }


def _round(v: float) -> float:
    return round(v, 3)


def facts_from_dataset(ds: Dataset, meta: dict[str, Any]) -> dict[str, Any]:
    sop = _s(ds, "SOPClassUID") or meta.get("media_storage_sop_class", "")
    if sop == DICOMDIR_SOP:
        return {"kind": "dicomdir"}
    series_uid = _s(ds, "SeriesInstanceUID")
    if not series_uid and not sop:
        raise NotDicom("no SOP class and no SeriesInstanceUID (not an image header)")
    if not series_uid:
        raise NotDicom("no SeriesInstanceUID")
    f: dict[str, Any] = {"kind": "image"}
    f["sop_class_uid"] = sop
    for key, name in (
        ("modality", "Modality"),
        ("manufacturer", "Manufacturer"),
        ("model_name", "ManufacturerModelName"),
        ("patient_id", "PatientID"),
        ("patient_sex", "PatientSex"),
        ("patient_age", "PatientAge"),
        ("accession_number", "AccessionNumber"),
        ("study_description", "StudyDescription"),
        ("referring_physician_name", "ReferringPhysicianName"),
        *IDENTITY_FACTS,
        ("study_uid", "StudyInstanceUID"),
        ("study_date", "StudyDate"),
        ("study_time", "StudyTime"),
        ("series_date", "SeriesDate"),
        ("series_time", "SeriesTime"),
        ("acquisition_date", "AcquisitionDate"),
        ("acquisition_time", "AcquisitionTime"),
        ("acquisition_datetime", "AcquisitionDateTime"),
        ("series_description", "SeriesDescription"),
        ("protocol_name", "ProtocolName"),
        ("scanning_sequence", "ScanningSequence"),
        ("sequence_variant", "SequenceVariant"),
        ("scan_options", "ScanOptions"),
        ("mr_acquisition_type", "MRAcquisitionType"),
        ("pulse_sequence", "PulseSequenceName"),
        ("pe_axis", "InPlanePhaseEncodingDirection"),
        ("complex_component", "ComplexImageComponent"),
    ):
        f[key] = _as_heudiconv(ds, name) if key in _AS_HEUDICONV else _s(ds, name)
    f["series_uid"] = series_uid
    # heudiconv: first of (0018,0024), (0019,109C), (0018,9005) that is present.
    f["sequence_name"] = (
        _s(ds, "SequenceName") or _s(ds, "SiemensSequenceName") or f["pulse_sequence"]
    )
    f["image_type"] = _multi(ds, "ImageType")
    sn = _num(ds, "SeriesNumber")
    f["series_number"] = int(sn) if sn is not None else None
    inst = _num(ds, "InstanceNumber")
    f["instance_number"] = int(inst) if inst is not None else None
    acqn = _num(ds, "AcquisitionNumber")
    f["acquisition_number"] = int(acqn) if acqn is not None else None
    f["field_strength"] = _num(ds, "MagneticFieldStrength")
    f["rows"] = int(_num(ds, "Rows") or 0)
    f["columns"] = int(_num(ds, "Columns") or 0)
    f["n_frames"] = int(_num(ds, "NumberOfFrames") or 1)
    tr = _num(ds, "RepetitionTime")
    te = _num(ds, "EchoTime")
    ti = _num(ds, "InversionTime")
    flip = _num(ds, "FlipAngle")
    echo_numbers = [int(x) for x in _nums(ds, "EchoNumbers")]
    slice_th = _num(ds, "SliceThickness")
    spacing = _nums(ds, "PixelSpacing")
    iop = _nums(ds, "ImageOrientationPatient")
    ipps: list[list[float]] = []
    ipp = _nums(ds, "ImagePositionPatient")
    if len(ipp) == 3:
        ipps.append([_round(x) for x in ipp])
    echo_times: set[float] = set()
    if te is not None:
        echo_times.add(te)
    bvals: set[float] = set()
    bdirs: set[tuple[float, ...]] = set()
    temporal: set[int] = set()
    complex_parts: set[str] = set()
    frame_types: set[str] = set()
    pe_positive: set[str] = set()
    if f["complex_component"]:
        complex_parts.add(f["complex_component"])
    vc = _vendor_complex(ds, f["manufacturer"])
    if vc:
        complex_parts.add(vc)
    b = _num(ds, "DiffusionBValue")
    if b is None and f["manufacturer"].upper().startswith("GE"):
        gb = _nums(ds, "GEBValue")
        if gb:
            b = gb[0] % 1_000_000_000 if gb[0] >= 1_000_000_000 else gb[0]
    if b is None and f["manufacturer"].upper().startswith("PHILIPS"):
        b = _num(ds, "PhilipsBValue")
    tp = _num(ds, "TemporalPositionIdentifier")
    if tp is not None:
        temporal.add(int(tp))
    xa = ds.get(XA_PE_POSITIVE)
    if isinstance(xa, tuple):
        pe_positive.add(bytes(xa[1]).decode("latin-1").strip("\x00 "))

    # Enhanced / multi-frame: shared and per-frame functional groups.
    shared = _first_item(ds, T(0x5200, 0x9229))
    frames = ds.get(T(0x5200, 0x9230))
    groups: list[Dataset] = []
    if shared is not None:
        groups.append(shared)
    if isinstance(frames, list):
        groups.extend(frames)
        f["n_frames"] = max(f["n_frames"], len(frames)) if f["n_frames"] > 1 else len(frames) or 1
    dim_values: set[tuple[int, ...]] = set()
    # Frames whose macros were copied from an identical earlier frame share the very item
    # lists (layout walk); each distinct list adds its facts once (sets, first-wins scalars).
    seen: set[int] = set()

    def fresh(g: Dataset, tag: int) -> Dataset | None:
        items = g.get(tag)
        if isinstance(items, list) and items:
            if id(items) in seen:
                return None
            seen.add(id(items))
            return items[0]
        return None

    for g in groups:
        timing = fresh(g, T(0x0018, 0x9112))
        if timing is not None:
            tr = tr if tr is not None else _num(timing, "RepetitionTime")
            flip = flip if flip is not None else _num(timing, "FlipAngle")
        echo = fresh(g, T(0x0018, 0x9114))
        if echo is not None:
            e = _num(echo, "EffectiveEchoTime")
            if e is not None:
                echo_times.add(e)
        diff = fresh(g, T(0x0018, 0x9117))
        if diff is not None:
            bv = _num(diff, "DiffusionBValue")
            if bv is not None:
                bvals.add(_round(bv))
            gd = _first_item(diff, T(0x0018, 0x9076))
            if gd is not None:
                vec = _nums(gd, "DiffusionGradientOrientation")
                if len(vec) == 3 and any(abs(x) > 1e-6 for x in vec):
                    bdirs.add(tuple(round(x, 4) for x in vec))
        geo = fresh(g, T(0x0018, 0x9125))
        if geo is not None and not f["pe_axis"]:
            f["pe_axis"] = _s(geo, "InPlanePhaseEncodingDirection")
        ftype = fresh(g, T(0x0018, 0x9226))
        if ftype is not None:
            cc = _s(ftype, "ComplexImageComponent")
            if cc:
                complex_parts.add(cc)
            ft = _s(ftype, "FrameType")
            if ft:
                frame_types.add(ft)
        content = fresh(g, T(0x0020, 0x9111))
        if content is not None:
            tpi = _num(content, "TemporalPositionIndex")
            if tpi is not None:
                temporal.add(int(tpi))
            dv = _nums(content, "DimensionIndexValues")
            if dv:
                dim_values.add(tuple(int(x) for x in dv))
        pos = fresh(g, T(0x0020, 0x9113))
        if pos is not None:
            p = _nums(pos, "ImagePositionPatient")
            if len(p) == 3:
                ipps.append([_round(x) for x in p])
        ori = fresh(g, T(0x0020, 0x9116))
        if ori is not None and not iop:
            iop = _nums(ori, "ImageOrientationPatient")
        pm = fresh(g, T(0x0028, 0x9110))
        if pm is not None:
            spacing = spacing or _nums(pm, "PixelSpacing")
            slice_th = slice_th if slice_th is not None else _num(pm, "SliceThickness")
        for ptag in (T(0x0021, 0x11FE), T(0x0021, 0x10FE)):
            priv = fresh(g, ptag)
            if priv is not None:
                v = priv.get(XA_PE_POSITIVE)
                if isinstance(v, tuple):
                    pe_positive.add(bytes(v[1]).decode("latin-1").strip("\x00 "))
    if b is not None:
        bvals.add(_round(b))

    # Siemens CSA (classic): protocol name fallback, mosaic, PE polarity, diffusion.
    csa_img = ds.get(CSA_IMAGE)
    csa_ser = ds.get(CSA_SERIES)
    img_raw = bytes(csa_img[1]) if isinstance(csa_img, tuple) else b""
    ser_raw = bytes(csa_ser[1]) if isinstance(csa_ser, tuple) else b""
    n_mosaic = _csa_image_facts(img_raw, bvals, bdirs, pe_positive)
    f["is_mosaic"] = "MOSAIC" in [x.upper() for x in f["image_type"]] and n_mosaic > 0
    f["n_mosaic"] = n_mosaic
    f["csa_protocol_name"] = (
        phoenix_protocol_name(ser_raw) if ser_raw and not f["protocol_name"].strip() else ""
    )

    f["TR_ms"] = tr
    f["TE_ms"] = te if te is not None else (min(echo_times) if echo_times else None)
    f["TI_ms"] = ti
    f["flip_angle"] = flip
    f["echo_numbers"] = echo_numbers
    f["echo_times"] = sorted(echo_times)
    f["bvalues"] = sorted(bvals)
    f["bdirs"] = sorted(bdirs)
    f["temporal"] = sorted(temporal)
    f["complex_parts"] = sorted(complex_parts)
    f["frame_types"] = sorted(frame_types)
    f["pe_positive"] = sorted(pe_positive)
    f["slice_thickness"] = slice_th
    f["pixel_spacing"] = spacing[:2]
    f["iop"] = [round(x, 5) for x in iop[:6]]
    # distinct slice positions in this file
    seen = {tuple(p) for p in ipps}
    f["ipps"] = sorted(list(p) for p in seen)
    f["dim_values"] = len(dim_values)
    if f["manufacturer"].upper().startswith("GE"):
        f["ge_view_order"] = _ge_view_order(ds)
    return f


def _ge_view_order(ds: Dataset) -> str:
    """VIEWORDER from GE's gzip-compressed ProtocolDataBlock (0025,101B); '' when absent."""
    v = ds.get(TAGS["GEProtocolDataBlock"][0])
    if not isinstance(v, tuple):
        return ""
    raw = bytes(v[1])
    i = raw.find(b"\x1f\x8b")
    if i < 0:
        return ""
    try:
        text = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(raw[i:], 1 << 20)
    except zlib.error:
        return ""
    for line in text.splitlines():
        if line.startswith(b"VIEWORDER"):
            return line.split(None, 1)[1].strip(b'" ').decode("latin-1") if b" " in line else ""
    return ""


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
