"""The full decode of one parsed header into its facts (classic and enhanced multi-frame files).

:func:`facts_from_dataset` is the reference every faster path is checked against
(``tests/test_analyze_speed.py``); the reader in :mod:`engine.scan.header` calls it for the
first file of each series and for any file whose series constants differ.
"""

from __future__ import annotations

from typing import Any

from engine.scan.dcmbase import Dataset
from engine.scan.dcmtags import (
    CSA_IMAGE,
    CSA_SERIES,
    DICOMDIR_SOP,
    IDENTITY_FACTS,
    XA_PE_POSITIVE,
    NotDicom,
    T,
)
from engine.scan.dcmvalues import _as_heudiconv, _first_item, _multi, _num, _nums, _round, _s
from engine.scan.dcmvendor import csa_image_facts, ge_pe_positive, ge_view_order, vendor_complex
from engine.scan.siemens_csa import phoenix_protocol_name

# facts held as heudiconv holds them (the heuristic matches these very strings)
_AS_HEUDICONV = frozenset({"series_description", "protocol_name"})


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
    vc = vendor_complex(ds, f["manufacturer"])
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
    n_mosaic = csa_image_facts(img_raw, bvals, bdirs, pe_positive)
    if not pe_positive and f["manufacturer"].upper().startswith("GE"):
        pe_positive.update(filter(None, [ge_pe_positive(ds)]))
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
        f["ge_view_order"] = ge_view_order(ds)
    return f
