"""Vendor-specific decoding: GE/Philips private complex-part and b-value tags, Siemens CSA.

These facts hide in private elements whose meaning depends on the scanner's maker (and, for
the private blocks, on their creator string); kept apart from the standard decode in
:mod:`engine.scan.dcmfacts` so each vendor rule is in one place.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

from engine.scan.dcmbase import Dataset
from engine.scan.dcmtags import (
    CSA_IMAGE,
    GE_PARM_CREATOR,
    PHILIPS_MR_CREATOR,
    TAGS,
    XA_PE_POSITIVE,
)
from engine.scan.dcmvalues import _creator, _num, _nums, _round, _s
from engine.scan.siemens_csa import csa_first, csa_values

# Values of the vendor complex-part tags, in ComplexImageComponent's words.
_GE_COMPLEX = {0: "MAGNITUDE", 1: "PHASE", 2: "REAL", 3: "IMAGINARY"}
_PHILIPS_COMPLEX = {"M": "MAGNITUDE", "P": "PHASE", "R": "REAL", "I": "IMAGINARY"}


def vendor_complex(ds: Dataset, manufacturer: str) -> str:
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


def csa_image_facts(
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


def ge_pe_positive(ds: Dataset) -> str:
    """GE's EPI phase-encoding polarity in Siemens' words (``'1'`` positive, ``'0'``; '' unknown).

    GE keeps it in the binary UserDefineData (0043,102A) of the GEMS_PARM_01 block: a header
    at the offset held in bytes 24-25, whose version (float at its start) moved the fields by
    0x4c bytes from 25.002 on. In an EPI (bit 0x800 of the word at +0x3a) bit 0x4 of the word at
    +0x30 means "flipped", and a bottom-up ky order (2 in the word at +0x394, 0x8c earlier from
    25.002) flips it back. Unflipped is what dcm2niix writes as ``j-`` for a COL phase axis
    (``i`` for ROW), i.e. Siemens' PhaseEncodingDirectionPositive 1 (checked against dcm2niix on
    dcm_qa_nih's GE EPI with these bits set each way).
    """
    v = ds.get(TAGS["GEUserData"][0])
    if not isinstance(v, tuple) or _creator(ds, GE_PARM_CREATOR) != "GEMS_PARM_01":
        return ""
    raw = bytes(v[1])
    if len(raw) < 26:
        return ""
    (hdr,) = struct.unpack_from("<H", raw, 24)
    if len(raw) < hdr + 916:
        return ""
    (version,) = struct.unpack_from("<f", raw, hdr)
    if not 5.0 <= version <= 40.0:
        return ""
    ky_at = 0x394
    if version >= 25.002:
        hdr += 0x4C
        ky_at -= 0x8C
    if not struct.unpack_from("<H", raw, hdr + 0x3A)[0] & 0x800:
        return ""  # not an EPI: the bits below mean something else
    flipped = bool(struct.unpack_from("<H", raw, hdr + 0x30)[0] & 0x4)
    if struct.unpack_from("<H", raw, hdr + ky_at)[0] == 2:  # bottom-up ky order
        flipped = not flipped
    return "0" if flipped else "1"


def diffusion_and_pe(ds: Dataset, manufacturer: str) -> dict[str, Any]:
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
    n_mosaic = csa_image_facts(img_raw, bvals, bdirs, pe_positive)
    if not pe_positive and mu.startswith("GE"):
        pe_positive.update(filter(None, [ge_pe_positive(ds)]))
    return {
        "bvalues": sorted(bvals),
        "bdirs": sorted(bdirs),
        "pe_positive": sorted(pe_positive),
        "n_mosaic": n_mosaic,
    }


def ge_view_order(ds: Dataset) -> str:
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
