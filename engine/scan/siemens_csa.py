"""Siemens CSA header (0029,xx10 / 0029,xx20) look-ups without parsing the whole structure.

A CSA2 block ("SV10") is a list of elements: name[64], vm, vr[4], syngodt, nitems, xx, then
``nitems`` items of (4 x int32, data padded to 4 bytes).  We find a named element by its
NUL-terminated name and read its items only, which is much faster than a full parse.
"""

from __future__ import annotations

import re
import struct

_PROTO_NAME = re.compile(rb"tProtocolName\s*=\s*\"+([^\"\n]*)\"+")


def csa_values(raw: bytes, name: str) -> list[str]:
    """Non-empty item strings of CSA element ``name`` (empty list when absent or malformed)."""
    if not raw or raw[:4] != b"SV10":
        return []
    key = name.encode("ascii") + b"\x00"
    start = 16  # "SV10" + 4 unused + n_tags + unused
    while True:
        i = raw.find(key, start)
        if i < 0:
            return []
        # The name must start an element: 84-byte element headers are 4-byte aligned from 16.
        if (i - 16) % 4 == 0 and i + 84 <= len(raw):
            break
        start = i + 1
    try:
        nitems = struct.unpack_from("<i", raw, i + 76)[0]
        if nitems < 0 or nitems > 10000:
            return []
        pos = i + 84
        out: list[str] = []
        for _ in range(nitems):
            if pos + 16 > len(raw):
                break
            item_len = struct.unpack_from("<i", raw, pos + 4)[0]
            pos += 16
            if item_len < 0 or pos + item_len > len(raw):
                break
            if item_len:
                s = raw[pos : pos + item_len].split(b"\x00", 1)[0].decode("latin-1").strip()
                if s:
                    out.append(s)
            pos += (item_len + 3) // 4 * 4
        return out
    except struct.error:
        return []


def csa_first(raw: bytes, name: str) -> str:
    vals = csa_values(raw, name)
    return vals[0] if vals else ""


def phoenix_protocol_name(series_csa: bytes) -> str:
    """``tProtocolName`` from the MrPhoenixProtocol text inside the CSA series header."""
    if not series_csa:
        return ""
    m = _PROTO_NAME.search(series_csa)
    if not m:
        return ""
    return m.group(1).decode("latin-1").replace("+AF8-", "_").strip()
