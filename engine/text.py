"""Text from DICOM headers (or a model) made safe to show: no control characters reach a
terminal or a report.

A SeriesDescription may hold ESC and BEL sequences (``cat mapping_report.txt`` would retitle
the terminal or worse), NULs, or bidirectional overrides that reorder what a person reads.
The tables keep the data as it is (lossless); everything a person reads goes through
:func:`printable` (one value) or :func:`printable_text` (a report: keeps its newlines and tabs).
"""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, and the Unicode format characters that reorder or hide text
_FORMAT = "\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff"
_ANY = re.compile(f"[\x00-\x1f{_FORMAT}]")
_TEXT = re.compile(f"[\x00-\x08\x0b-\x1f{_FORMAT}]")  # keeps \t and \n


def _escape(m: re.Match[str]) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def printable(s: object) -> str:
    """One value for display: every control or format character as a visible ``\\xNN``."""
    return _ANY.sub(_escape, str(s))


def printable_text(s: str) -> str:
    """A multi-line report for display: as :func:`printable`, keeping newlines and tabs."""
    return _TEXT.sub(_escape, s)
