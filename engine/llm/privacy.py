"""Keep protected health information (PHI) out of prompts and prompts on this machine.

Prompts are built from an allowlist of :class:`~engine.model.SeriesInfo` fields
(see :data:`engine.llm.prompt.PROMPT_FIELDS`); on top of that, every free-text value is
scrubbed of PHI values seen anywhere in the study (the identity values analyze keeps in
``OUT/private``: patient name parts, id, birth date, accession, institution, operator and
physician names; dates, subject labels), because technicians sometimes type names into
series descriptions.  Hosts that are not this machine get a loud warning.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlparse

from engine.model import SeriesInfo

log = logging.getLogger(__name__)

#: SeriesInfo fields that identify a person or a visit; never put into a prompt.
PHI_FIELDS: tuple[str, ...] = (
    "patient_id",
    "referring_physician_name",
    "accession_number",
    "date",
    "time",
    "subject",
    "session",
    "study_uid",
    "series_uid",
    "example_dcm_file",
    "dcm_dir_name",
    "patient_age",
    "acquisition_time",
)

REDACTED = "[redacted]"
_DATE = re.compile(
    r"(?<!\d)(?:19|20)\d{2}[-/.]?(?:0[1-9]|1[0-2])[-/.]?(?:0[1-9]|[12]\d|3[01])(?!\d)"
)
_MIN_TOKEN = 3


def phi_values(
    series: Iterable[SeriesInfo], extra: Iterable[str] = (), out_dir: str | Path | None = None
) -> set[str]:
    """PHI strings of a study: whole values and their name parts (``DOE^JOHN`` -> DOE, JOHN).

    With ``out_dir``, also every identity value analyze kept in ``OUT/private`` (PatientName,
    PatientID, birth date in its usual spellings, accession numbers, institution, station,
    operator and physician names: :mod:`engine.private`): the series table no longer holds
    them, and a name typed into a protocol name is caught by them."""
    from engine.private import out_values

    values: set[str] = set(out_values(out_dir))
    raw: list[str] = [str(v) for v in extra if v]
    for s in series:
        for name in ("patient_id", "referring_physician_name", "accession_number", "subject"):
            v = str(getattr(s, name, "") or "")
            if v:
                raw.append(v)
    for v in raw:
        v = v.strip()
        if len(v) >= _MIN_TOKEN:
            values.add(v)
        for part in re.split(r"[\^\s,]+", v):
            if len(part) >= _MIN_TOKEN:
                values.add(part)
    return values


def scrub(text: str, phi: Iterable[str] = ()) -> str:
    """``text`` with every PHI value (case-insensitive) and every date-like string redacted."""
    if not text:
        return text
    out = _DATE.sub(REDACTED, text)
    for value in sorted(set(phi), key=len, reverse=True):
        if value and len(value) >= _MIN_TOKEN:
            out = re.sub(re.escape(value), REDACTED, out, flags=re.IGNORECASE)
    return out


def contains_phi(text: str, phi: Iterable[str]) -> list[str]:
    """The PHI values found in ``text`` (for tests and a last-line check before sending)."""
    low = text.lower()
    return sorted(v for v in set(phi) if v and v.lower() in low)


def is_local_host(url_or_host: str) -> bool:
    """True for loopback hosts (localhost, 127.0.0.0/8, ::1, a unix socket)."""
    text = url_or_host.strip()
    if not text:
        return True
    if "://" not in text:
        text = "http://" + text
    parsed = urlparse(text)
    if parsed.scheme in {"unix", "http+unix"}:
        return True
    host = (parsed.hostname or "").strip("[]").lower()
    if host in {"", "localhost", "localhost.localdomain", "ip6-localhost"}:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    if host in {socket.gethostname().lower()}:
        return True
    return False


def warn_if_remote(url_or_host: str, *, what: str = "LLM server") -> bool:
    """Log a loud warning when prompts will leave this machine; returns True when remote."""
    if is_local_host(url_or_host):
        return False
    banner = "!" * 72
    log.warning(
        "\n%s\n!! %s %s is NOT this machine: header facts of every group (PHI-scrubbed,\n"
        "!! but still study metadata) will be sent to it. You named it, so it is used.\n%s",
        banner,
        what,
        url_or_host,
        banner,
    )
    return True
