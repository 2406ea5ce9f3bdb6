"""Helpers for the heuristic tests: inputs derived from a study's own truth (pairs/)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from engine.bids_schema import sanitize_label
from engine.model import Group, Mapping, SeriesInfo
from engine.workspace import read_series


def _parse_template(t: str) -> tuple[str, str, dict[str, str]]:
    datatype, name = t.split("/")[-2], t.split("/")[-1]
    ents: dict[str, str] = {}
    suffix = ""
    for part in name.split("_"):
        if part.startswith(("sub-", "{session}", "ses-")):
            continue
        k, sep, v = part.partition("-")
        if not sep:
            suffix = part
        elif k != "run":
            ents[k] = sanitize_label(re.sub(r"[{}]", "", v)) or "x"
    return datatype, suffix, ents


def pair_inputs(folder: Path) -> tuple[list[SeriesInfo], list[Group], list[Mapping]]:
    """Series of a pair study plus groups/mappings that encode its truth.json."""
    series = read_series(folder / "dicominfo.tsv")
    truth = json.loads((folder / "truth.json").read_text())
    for s in series:
        s.subject = "01"
    groups: dict[tuple, Group] = {}
    mappings: dict[str, Mapping] = {}
    for s in series:
        tmpl = truth.get(s.series_id, [])
        if tmpl:
            dt, suf, ents = _parse_template(tmpl[0])
            gkey = ("conv", dt, suf, tuple(sorted(ents.items())), s.protocol_name)
        else:
            gkey = ("skip", s.protocol_name, s.image_type, s.is_motion_corrected)
        if gkey not in groups:
            gid = f"g{len(groups) + 1:02d}"
            groups[gkey] = Group(gid, s.protocol_name)
            if tmpl:
                mappings[gid] = Mapping(gid, dt, suf, ents, source="user", confidence=1.0)
            else:
                mappings[gid] = Mapping(
                    gid, skip_reason="not converted by the study", source="user"
                )
        groups[gkey].series_keys.append(s.key)
    return series, list(groups.values()), list(mappings.values())
