"""Siemens CSA image header (``(0029,1010)``, "SV10" layout) writer.

Real Siemens classic MR images carry the phase-encoding polarity and the diffusion
encoding only in this binary blob, so a faithful fixture has to write one.  The layout is
the one :mod:`nibabel.nicom.csareader` and dcm2niix read: ``SV10`` + ``04 03 02 01``, tag
count, ``77``; per tag a 64-byte name, VM, 4-byte VR, SyngoDT, item count, ``77``; per item
four int32 (length, length, 77, length) then the NUL-terminated text padded to 4 bytes;
every tag has at least 6 items (empty ones after the values), as on real scanners.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

# name -> (VR, SyngoDT) for the tags we write.
_TAG_TYPES: dict[str, tuple[str, int]] = {
    "B_value": ("IS", 6),
    "DiffusionGradientDirection": ("FD", 4),
    "DiffusionDirectionality": ("CS", 16),
    "PhaseEncodingDirectionPositive": ("IS", 6),
    "BandwidthPerPixelPhaseEncode": ("FD", 4),
    "SliceNormalVector": ("FD", 4),
    "ImaCoilString": ("LO", 19),
}


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.8f}"
    return str(value)


def build_csa(tags: dict[str, Sequence[object]]) -> bytes:
    """The SV10 bytes for ``tags`` (name -> values); values are written as text items."""
    out = [b"SV10", b"\x04\x03\x02\x01", struct.pack("<2I", len(tags), 77)]
    for name, values in tags.items():
        vr, syngodt = _TAG_TYPES.get(name, ("LO", 19))
        vm = len(values)
        n_items = max(6, vm)  # Siemens pads to 6 items; dcm2niix reads up to 3 unguarded
        out.append(
            struct.pack(
                "<64si4s3i", name.encode("ascii"), vm, vr.encode("ascii"), syngodt, n_items, 77
            )
        )
        for v in values:
            text = _fmt(v).encode("ascii") + b"\x00"
            n = len(text)
            out.append(struct.pack("<4i", n, n, 77, n))
            out.append(text + b"\x00" * ((4 - n % 4) % 4))
        out.append(struct.pack("<4i", 0, 0, 77, 0) * (n_items - vm))
    return b"".join(out)
