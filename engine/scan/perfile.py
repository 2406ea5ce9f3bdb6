"""The per-file facts of a classic series: what may change from file to file, and its decode.

The reader decodes the first file of a series in full and, for the next files whose
series-constant elements are that file's own (:func:`same_constants`), only the facts listed
in :data:`PER_FILE` that changed (:func:`per_file_facts`): most of the cost of a scan saved.
"""

from __future__ import annotations

from typing import Any

from engine.scan.dcmbase import Dataset
from engine.scan.dcmtags import (
    CSA_IMAGE,
    GE_PARM_CREATOR,
    NAME_OF,
    PHILIPS_MR_CREATOR,
    TAGS,
    XA_PE_POSITIVE,
)
from engine.scan.dcmvalues import _multi, _num, _nums, _round, _s
from engine.scan.dcmvendor import diffusion_and_pe, vendor_complex

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
    _TAG["GEUserData"],
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
        vc = vendor_complex(ds, manufacturer)
        if vc:
            complex_parts.add(vc)
        f["complex_parts"] = sorted(complex_parts)
    t_tp = _TAG["TemporalPositionIdentifier"]
    if get(t_tp) is not tget(t_tp):
        tp = _num(ds, "TemporalPositionIdentifier")
        f["temporal"] = [int(tp)] if tp is not None else []
    if any(get(t) is not tget(t) for t in _G_DIFF):
        f.update(diffusion_and_pe(ds, manufacturer))
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
