"""Fast per-file header read: one DICOM file -> a small dict of facts (JSON-serialisable).

The facts are what :mod:`engine.scan.aggregate` needs to build one ``SeriesInfo`` per series;
they are cached per file, so this is the only place that touches DICOM bytes.
"""

from __future__ import annotations

import gzip
import math
import mmap
import os
import struct
import zlib
from typing import Any

from engine.scan.dcmparse import Dataset, DicomParseError, Spec, parse_file_bytes
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
    # GE
    "GEBValue": (T(0x0043, 0x1039), b"IS"),
    "GEProtocolDataBlock": (T(0x0025, 0x101B), b"OB"),
    # Philips
    "PhilipsBValue": (T(0x2001, 0x1003), b"FL"),
}
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
SPEC = Spec(KEEP, SEQS, {0x0019, 0x0021, 0x0029, 0x0043, 0x2001}, VRS)


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
    """The file's bytes (gunzipped when gzip); a mmap for large plain files."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            raise NotDicom("empty file")
        head = fh.read(2)
        fh.seek(0)
        if head == b"\x1f\x8b":
            try:
                return gzip.decompress(fh.read())
            except (OSError, EOFError, zlib.error) as exc:
                raise NotDicom(f"bad gzip: {exc}") from None
        if size > MMAP_OVER:
            return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        return fh.read()


def read_facts(path: str) -> dict[str, Any]:
    """Facts of one file, or raise :class:`NotDicom` with the reason."""
    buf = read_bytes(path)
    try:
        return facts_from_bytes(buf)
    finally:
        if isinstance(buf, mmap.mmap):
            buf.close()


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
        f[key] = _s(ds, name)
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
    for g in groups:
        timing = _first_item(g, T(0x0018, 0x9112))
        if timing is not None:
            tr = tr if tr is not None else _num(timing, "RepetitionTime")
            flip = flip if flip is not None else _num(timing, "FlipAngle")
        echo = _first_item(g, T(0x0018, 0x9114))
        if echo is not None:
            e = _num(echo, "EffectiveEchoTime")
            if e is not None:
                echo_times.add(e)
        diff = _first_item(g, T(0x0018, 0x9117))
        if diff is not None:
            bv = _num(diff, "DiffusionBValue")
            if bv is not None:
                bvals.add(_round(bv))
            gd = _first_item(diff, T(0x0018, 0x9076))
            if gd is not None:
                vec = _nums(gd, "DiffusionGradientOrientation")
                if len(vec) == 3 and any(abs(x) > 1e-6 for x in vec):
                    bdirs.add(tuple(round(x, 4) for x in vec))
        geo = _first_item(g, T(0x0018, 0x9125))
        if geo is not None and not f["pe_axis"]:
            f["pe_axis"] = _s(geo, "InPlanePhaseEncodingDirection")
        ftype = _first_item(g, T(0x0018, 0x9226))
        if ftype is not None:
            cc = _s(ftype, "ComplexImageComponent")
            if cc:
                complex_parts.add(cc)
            ft = _s(ftype, "FrameType")
            if ft:
                frame_types.add(ft)
        content = _first_item(g, T(0x0020, 0x9111))
        if content is not None:
            tpi = _num(content, "TemporalPositionIndex")
            if tpi is not None:
                temporal.add(int(tpi))
            dv = _nums(content, "DimensionIndexValues")
            if dv:
                dim_values.add(tuple(int(x) for x in dv))
        pos = _first_item(g, T(0x0020, 0x9113))
        if pos is not None:
            p = _nums(pos, "ImagePositionPatient")
            if len(p) == 3:
                ipps.append([_round(x) for x in p])
        ori = _first_item(g, T(0x0020, 0x9116))
        if ori is not None and not iop:
            iop = _nums(ori, "ImageOrientationPatient")
        pm = _first_item(g, T(0x0028, 0x9110))
        if pm is not None:
            spacing = spacing or _nums(pm, "PixelSpacing")
            slice_th = slice_th if slice_th is not None else _num(pm, "SliceThickness")
        for ptag in (T(0x0021, 0x11FE), T(0x0021, 0x10FE)):
            priv = _first_item(g, ptag)
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
    n_mosaic = 0
    if img_raw:
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


def facts_from_bytes(buf: bytes) -> dict[str, Any]:
    """Facts from in-memory bytes (used by the fuzz test); raises :class:`NotDicom`."""
    if buf[:2] == b"\x1f\x8b":
        try:
            buf = gzip.decompress(buf)
        except (OSError, EOFError, zlib.error) as exc:
            raise NotDicom(f"bad gzip: {exc}") from None
    if len(buf) == 0:
        raise NotDicom("empty file")
    try:
        ds, meta = parse_file_bytes(buf, SPEC)
        return facts_from_dataset(ds, meta)
    except DicomParseError as exc:
        raise NotDicom(str(exc)) from None
    except NotDicom:
        raise
    except (
        struct.error,
        IndexError,
        ValueError,
        OverflowError,
        MemoryError,
        RecursionError,
    ) as exc:
        raise NotDicom(f"corrupt header ({type(exc).__name__})") from None
