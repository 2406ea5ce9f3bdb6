"""ReproIn protocol names, parsed the way heudiconv's ``heuristics/reproin.py`` does.

``anat-T1w_acq-mprage``, ``func-bold_task-rest_run-1``, ``fmap-epi_dir-AP``, ``dwi_dir-AP``,
``anat-scout``, a ``WIP ``/``PU:`` prefix and a ``__dup-01`` tail are all understood. The parse is
reimplemented here (same rules as heudiconv 1.5.1 ``parse_series_spec``) so it can also return
the ``+``/``=`` run markers and the BIDS leftovers as key-value pairs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

KNOWN_DATATYPES = {"anat", "func", "dwi", "behav", "fmap", "perf"}
_EXPLICIT = ("ses", "run", "task", "acq", "rec", "dir")


@dataclass
class ReproinSpec:
    datatype: str
    suffix: str = ""  # the ``datatype-suffix`` part, may be empty
    entities: dict[str, str] = field(default_factory=dict)  # task/acq/rec/dir + kv leftovers
    run: str = ""  # "1", "+", "=" or ""
    session: str = ""
    leftovers: list[str] = field(default_factory=list)  # non key-value leftovers
    source_field: str = ""
    spec: str = ""


def _sanitize(value: str) -> str:
    """heudiconv's ``sanitize_str``: drop characters that are illegal in BIDS labels."""
    return re.sub(r"[#!@$%^&.,:;_\-]", "", value)


def parse_series_spec(series_spec: str) -> ReproinSpec | None:
    """Parse one protocol name; ``None`` when it is not a ReproIn name."""
    spec = series_spec or ""
    spec = spec.replace("anat_T1w", "anat-T1w")
    spec = spec.replace("hardi_64", "dwi_acq-hardi64")
    spec = spec.replace("AAHead_Scout", "anat-scout")
    spec = spec.strip(" ")
    spec = re.sub("^[A-Z]*:", "", spec)
    spec = re.sub("^WIP ", "", spec)
    spec = spec.split("__", 1)[0]
    bids = False
    split = spec.split("_")
    prefix = split[0]
    if prefix == "scout":
        prefix = split[0] = "anat-scout"
    if prefix != "bids" and "-" in prefix:
        prefix, _ = prefix.split("-", 1)
    if prefix == "bids":
        bids = True
        split = split[1:]
        if not split:
            return None
    datatype, _, dsuffix = split[0].partition("-")
    if datatype not in KNOWN_DATATYPES:
        return None
    out = ReproinSpec(datatype=datatype, suffix=dsuffix, spec=series_spec)
    del bids
    for s in split[1:]:
        if not s:
            continue
        key, sep, value = s.partition("-")
        if not sep:
            if key and key[-1] in "+=":
                key, value = key[:-1], key[-1]
            else:
                out.leftovers.append(s)
                continue
        value = value.replace("_", "X").replace("-", "X").replace("(", "{").replace(")", "}")
        if key in _EXPLICIT:
            v = _sanitize(value) if value not in "+=" else value
            if key == "run":
                out.run = v
            elif key == "ses":
                out.session = v
            else:
                out.entities[key] = v
        else:
            out.entities[key] = re.sub(r"[^0-9a-zA-Z+]", "", value)
    return out


def parse_reproin(protocol_name: str, series_description: str) -> ReproinSpec | None:
    """Try ``protocol_name`` first, then ``series_description`` (heudiconv's order)."""
    for fname, value in (
        ("protocol_name", protocol_name),
        ("series_description", series_description),
    ):
        spec = parse_series_spec(value)
        if spec is not None:
            spec.source_field = fname
            return spec
    return None
