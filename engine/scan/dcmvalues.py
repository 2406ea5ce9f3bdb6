"""Decoding of kept element values (text, multi-valued text, numbers, items) into Python values.

Shared by the full decode (:mod:`engine.scan.dcmfacts`), the per-file delta
(:mod:`engine.scan.perfile`) and the vendor decoders (:mod:`engine.scan.dcmvendor`); each
decoder looks the element up by its keyword in :data:`~engine.scan.dcmtags.TAGS`.
"""

from __future__ import annotations

import math
import struct

from engine.scan.dcmbase import Dataset
from engine.scan.dcmtags import TAGS


def _text(ds: Dataset, name: str) -> str | None:
    """The element's bytes as text (UTF-8, else Latin-1: old scanners write 8-bit names); None
    when absent."""
    v = ds.get(TAGS[name][0])
    if v is None:
        return None
    raw = bytes(v[1])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _s(ds: Dataset, name: str) -> str:
    text = _text(ds, name)
    return "" if text is None else text.strip("\x00 ").replace("\x00", "")


def _as_heudiconv(ds: Dataset, name: str) -> str:
    """A text element as heudiconv's seqinfo holds it (pydicom's reading, then ``str``): trailing
    NULs and spaces dropped, leading ones and inner NULs kept, a multi-valued one as the
    ``str`` of a list.  The heuristic matches these strings on heudiconv's side, so the series
    table must hold the very same ones."""
    text = _text(ds, name)
    if text is None:
        return ""
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


def _first_item(ds: Dataset, tag: int) -> Dataset | None:
    items = ds.get(tag)
    if isinstance(items, list) and items:
        return items[0]
    return None


def _round(v: float) -> float:
    return round(v, 3)
