"""Complete the JSON sidecars heudiconv/dcm2niix wrote, from the headers and from the curator.

Some metadata BIDS requires is not in DICOM (ASL: ``M0Type``, ``BackgroundSuppression``, the
volume types of ``*_aslcontext.tsv``). After heudiconv runs, every written sidecar is checked
against the **schema's** sidecar rules (``rules.sidecars``, selectors evaluated on the file's
datatype/suffix/entities/sidecar) and completed in this order:

1. values the study metadata file sets (``OUT/sidecar_metadata.json`` or
   ``convert --sidecar-metadata FILE``) are written (they win over dcm2niix's);
2. values the headers determine are derived when still missing (``RepetitionTimePreparation``
   from ``RepetitionTime`` for Siemens ASL, ``TotalAcquiredPairs`` from the aslcontext);
3. an ASL file (``perf/``, :data:`LEAVE_OUT_DATATYPES`) still lacking a REQUIRED field is
   **left out of the dataset**: moved with its sidecar to ``OUT/bids_incomplete/`` (taken out
   of ``*_scans.tsv`` and every ``IntendedFor``), so the dataset stays valid, and the report
   names the file, each field and the exact fix; ``convert`` exits 1. Re-running ``convert``
   with the metadata puts it back. Other files lacking a REQUIRED field (the qMRI fields of an
   MP2RAGE) are kept and reported the same way as "needs metadata".

The metadata file is a JSON object; each key is a BIDS suffix (``"asl"``) or a glob over the
path below the BIDS folder without extension (``"sub-*/perf/*_acq-pcasl_asl"``); each value is
an object of sidecar fields. Suffix keys apply first, then globs in file order (later wins).
The special field ``aslcontext`` gives the volume types: a list with one entry per volume, or
``{"head": [...], "repeat": [...]}`` (``head`` once, then ``repeat`` until the last volume)::

    {"asl": {"M0Type": "Included", "BackgroundSuppression": false,
             "aslcontext": {"head": ["m0scan"], "repeat": ["label", "control"]}}}
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.atomic import read_tsv, write_text_atomic, write_tsv_atomic
from engine.errors import UserError
from engine.heuristic.identifiers import IDENTIFYING_FIELDS, SCANS_COLUMNS, strip_identifiers
from engine.heuristic.sidecar_schema import (
    _bst_schema,
    check_value,
    metadata_definition,
    placeholder,
    required_fields,
    selector_true,
)

__all__ = [
    "ASLCONTEXT",
    "IDENTIFYING_FIELDS",
    "INCOMPLETE_DIR",
    "LEAVE_OUT_DATATYPES",
    "SCANS_COLUMNS",
    "SIDECAR_METADATA_FILE",
    "FileOutcome",
    "SidecarOutcome",
    "check_value",
    "complete_sidecars",
    "expand_aslcontext",
    "fix_text",
    "load_study_metadata",
    "metadata_definition",
    "metadata_for",
    "parse_name",
    "placeholder",
    "required_fields",
    "restore_previous",
    "selector_true",
    "strip_identifiers",
]

SIDECAR_METADATA_FILE = "sidecar_metadata.json"
INCOMPLETE_DIR = "bids_incomplete"
ASLCONTEXT = "aslcontext"  # pseudo field of the metadata file -> *_aslcontext.tsv
# datatypes whose files are left out while a REQUIRED field is missing: an ASL series without
# M0Type/aslcontext cannot be quantified and every validator rejects it. Elsewhere (e.g. the
# qMRI fields of an MP2RAGE, which dcm2niix cannot know) the file is kept and reported.
LEAVE_OUT_DATATYPES = frozenset({"perf"})
_NIFTI = re.compile(r"\.nii(\.gz)?$")


# --- the metadata file ---------------------------------------------------------------------


def load_study_metadata(path: str | Path | None) -> list[tuple[str, dict[str, Any]]]:
    """``[(key, fields), ...]`` from the metadata file; [] when there is none."""
    if path is None:
        return []
    p = Path(path)
    if not p.exists():
        return []
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{p} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise UserError(
            f"{p}: expected an object of {{suffix-or-glob: {{field: value}}}}, "
            'e.g. {"asl": {"M0Type": "Included"}}'
        )
    return list(data.items())


def _is_glob(key: str) -> bool:
    return any(c in key for c in "/*?[")


def metadata_for(relstem: str, suffix: str, entries: list[tuple[str, dict]]) -> dict[str, Any]:
    """The fields the metadata file gives this file (suffix keys first, then matching globs)."""
    out: dict[str, Any] = {}
    for key, fields in entries:
        if not _is_glob(key) and key == suffix:
            out.update(fields)
    for key, fields in entries:
        if _is_glob(key) and fnmatch.fnmatchcase(relstem, key.removesuffix(".nii.gz")):
            out.update(fields)
    return out


# --- values the headers determine ------------------------------------------------------------


def _derive(
    suffix: str, part: str, meta: dict[str, Any], context: list[str] | None
) -> dict[str, tuple[Any, str]]:
    out: dict[str, tuple[Any, str]] = {}
    tr = meta.get("RepetitionTime")
    siemens = str(meta.get("Manufacturer", "")).lower().startswith("siemens")
    if (
        suffix in {"asl", "m0scan"}
        and "RepetitionTimePreparation" not in meta
        and siemens
        and isinstance(tr, int | float)
        and not meta.get("LookLocker")
    ):
        out["RepetitionTimePreparation"] = (
            tr,
            "= RepetitionTime (DICOM 0018,0080): Siemens ASL repeats the labeling module once per TR",
        )
    for field_name in ("TotalReadoutTime", "EffectiveEchoSpacing"):
        estimate = meta.get(f"Estimated{field_name}")
        if field_name not in meta and isinstance(estimate, int | float):
            out[field_name] = (
                estimate,
                f"= Estimated{field_name}: dcm2niix's estimate from the water-fat shift and "
                "EPI factor (Philips DICOM holds no readout time)",
            )
    if part == "phase" and "Units" not in meta:
        out["Units"] = ("arbitrary", "dcm2niix writes the scanner's phase values unscaled")
    if suffix == "asl" and "TotalAcquiredPairs" not in meta and context:
        pairs = min(context.count("control"), context.count("label"))
        if pairs:
            out["TotalAcquiredPairs"] = (pairs, "counted from the aslcontext (control-label pairs)")
    return out


# RAS+ world axis and sign of each end of a ``dir-`` label (the letter the encoding runs *to*).
_TOWARD = {"R": (0, 1), "L": (0, -1), "A": (1, 1), "P": (1, -1), "S": (2, 1), "I": (2, -1)}


def _derive_pe_direction(nii: Path, label: str, meta: dict[str, Any]) -> dict[str, tuple[Any, str]]:
    """``PhaseEncodingDirection`` from dcm2niix's ``PhaseEncodingAxis`` and the ``dir-`` label.

    GE and Philips DICOM carry the phase-encoding axis but not its polarity, which the site
    records in the protocol name (``_AP``/``_PA``) and the mapping in ``dir-``. The NIfTI affine
    says which way the voxel axis runs in the world, so the label fixes the sign.
    """
    axis = meta.get("PhaseEncodingAxis")
    label = label.upper()
    if "PhaseEncodingDirection" in meta or axis not in {"i", "j", "k"} or len(label) != 2:
        return {}
    if label[1] not in _TOWARD or _TOWARD[label[0]][0] != _TOWARD[label[1]][0]:
        return {}
    try:
        import nibabel as nib

        column = nib.load(str(nii)).affine[:3, "ijk".index(axis)]
    except Exception:  # noqa: BLE001 - an unreadable NIfTI simply gets no derived value
        return {}
    world, sign = _TOWARD[label[1]]
    if abs(column[world]) < 0.5 * max(abs(c) for c in column):
        return {}  # the voxel axis does not run along the label's direction: leave it to a person
    value = axis if (column[world] > 0) == (sign > 0) else f"{axis}-"
    return {
        "PhaseEncodingDirection": (
            value,
            f"PhaseEncodingAxis {axis} (DICOM) with the polarity of dir-{label} (protocol name)",
        )
    }


def expand_aslcontext(spec: Any, n_volumes: int | None) -> tuple[list[str], str]:
    """The volume types for ``n_volumes`` volumes from a list or ``{head, repeat}``; + problem."""
    allowed = set(_bst_schema()["objects"]["columns"]["volume_type"]["enum"])
    if isinstance(spec, list):
        vols = [str(v) for v in spec]
    elif isinstance(spec, dict) and "repeat" in spec:
        head = [str(v) for v in spec.get("head", [])]
        rep = [str(v) for v in spec["repeat"]]
        if n_volumes is None:
            return [], "aslcontext {head, repeat} needs the volume count (install nibabel)"
        rest = n_volumes - len(head)
        if not rep or rest < 0 or rest % len(rep):
            return [], (
                f"aslcontext head {head} + repeat {rep} cannot fill {n_volumes} volumes exactly"
            )
        vols = head + rep * (rest // len(rep))
    else:
        return [], 'aslcontext must be a list or {"head": [...], "repeat": [...]}'
    bad = sorted(set(vols) - allowed)
    if bad:
        return [], f"aslcontext volume types {bad} are not in {sorted(allowed)}"
    if n_volumes is not None and len(vols) != n_volumes:
        return [], f"aslcontext lists {len(vols)} volumes, the image has {n_volumes}"
    return vols, ""


def _n_volumes(nii: Path) -> int | None:
    try:
        import nibabel as nb
    except ImportError:
        return None
    shape = nb.load(str(nii)).shape
    return int(shape[3]) if len(shape) > 3 else 1


# --- completing one converted subject/session ---------------------------------------------------


@dataclass
class FileOutcome:
    relpath: str  # the NIfTI, relative to the BIDS folder
    filled: dict[str, str] = field(default_factory=dict)  # field -> where the value came from
    missing: dict[str, str] = field(default_factory=dict)  # required field -> why/how to fix
    problems: list[str] = field(default_factory=list)  # metadata values the schema rejects
    left_out: str = ""  # where the file was moved to, when it was


@dataclass
class SidecarOutcome:
    files: list[FileOutcome] = field(default_factory=list)
    metadata_file: str = ""

    @property
    def left_out(self) -> list[FileOutcome]:
        return [f for f in self.files if f.left_out]

    @property
    def kept_incomplete(self) -> list[FileOutcome]:
        return [f for f in self.files if not f.left_out and (f.missing or f.problems)]


def parse_name(name: str) -> tuple[dict[str, str], str]:
    stem = _NIFTI.sub("", name)
    parts = stem.split("_")
    ents = {}
    for p in parts[:-1]:
        k, _, v = p.partition("-")
        ents[k] = v
    return ents, parts[-1]


def _stem_files(nii: Path) -> list[Path]:
    stem = _NIFTI.sub("", nii.name)
    return sorted(p for p in nii.parent.iterdir() if p.name.startswith(stem + "."))


def complete_sidecars(
    bids_dir: Path,
    niftis: list[str],
    entries: list[tuple[str, dict[str, Any]]],
    *,
    incomplete_dir: Path,
    metadata_file: str = "",
    write_json: Callable[[Path, dict], None] | None = None,
) -> SidecarOutcome:
    """Fill, derive, check; leave out what is still invalid. ``niftis`` are BIDS relpaths."""
    write_json = write_json or (
        lambda p, d: write_text_atomic(p, json.dumps(d, indent=2, sort_keys=True) + "\n")
    )
    res = SidecarOutcome(metadata_file=metadata_file)
    for rel in niftis:
        nii = bids_dir / rel
        js = nii.parent / (_NIFTI.sub("", nii.name) + ".json")
        if not js.exists():
            continue
        ents, suffix = parse_name(nii.name)
        datatype = nii.parent.name
        relstem = _NIFTI.sub("", rel)
        fo = FileOutcome(rel)
        meta = json.loads(js.read_text())
        given = metadata_for(relstem, suffix, entries)
        changed = False
        context: list[str] | None = None
        for k, v in given.items():
            if k == ASLCONTEXT:
                continue
            why = check_value(k, v)
            if why:
                fo.problems.append(why)
                continue
            if meta.get(k) != v:
                meta[k], changed = v, True
                fo.filled[k] = f"from {metadata_file or 'the metadata file'}"
        ctx_path = nii.parent / (
            relstem.rsplit("/", 1)[-1].removesuffix("_asl") + "_aslcontext.tsv"
        )
        if suffix == "asl":
            if ASLCONTEXT in given:
                context, why = expand_aslcontext(given[ASLCONTEXT], _n_volumes(nii))
                if why:
                    fo.problems.append(why)
                    context = None
                else:
                    write_tsv_atomic(
                        ctx_path, ["volume_type"], ({"volume_type": v} for v in context)
                    )
                    fo.filled[ASLCONTEXT] = f"{ctx_path.name} from {metadata_file or 'metadata'}"
            elif ctx_path.exists():
                context = [r["volume_type"] for r in read_tsv(ctx_path)]
        derived = _derive(suffix, ents.get("part", ""), meta, context)
        derived.update(_derive_pe_direction(nii, ents.get("dir", ""), meta))
        for k, (v, why) in derived.items():
            meta[k], changed = v, True
            fo.filled[k] = f"derived: {why}"
        if suffix == "asl":
            m0 = meta.get("M0Type")
            if context is not None and m0 == "Included" and "m0scan" not in context:
                fo.problems.append('M0Type is "Included" but the aslcontext has no m0scan volume')
            if m0 == "Separate" and not list(nii.parent.glob("*_m0scan.nii*")):
                fo.problems.append('M0Type is "Separate" but there is no *_m0scan in perf/')
        if changed:
            write_json(js, meta)
        for fname, rule in required_fields(datatype, suffix, ents, meta).items():
            if fname not in meta:
                fo.missing[fname] = rule
        if suffix == "asl" and context is None:
            fo.missing[ASLCONTEXT] = "BIDS: every *_asl has a *_aslcontext.tsv"
        if (fo.missing or fo.problems) and datatype in LEAVE_OUT_DATATYPES:
            dest = incomplete_dir / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            moved = _stem_files(nii) + ([ctx_path] if ctx_path.exists() else [])
            for p in moved:
                shutil.move(str(p), str(dest.parent / p.name))
            fo.left_out = str(dest)
            _forget(bids_dir, rel)
        res.files.append(fo)
    return res


def _forget(bids_dir: Path, rel: str) -> None:
    """Take a left-out file out of its ``*_scans.tsv`` and out of every ``IntendedFor``."""
    parts = Path(rel).parts
    sub_dir = bids_dir / parts[0]
    for scans in sub_dir.rglob("*_scans.tsv"):
        base = scans.parent
        inner = (
            str((bids_dir / rel).relative_to(base)) if (bids_dir / rel).is_relative_to(base) else ""
        )
        rows = read_tsv(scans)
        keep = [r for r in rows if r.get("filename") != inner]
        if len(keep) != len(rows):
            cols = list(rows[0].keys())
            write_tsv_atomic(scans, cols, keep)
    target = str(Path(rel).relative_to(parts[0]))
    for js in sub_dir.rglob("*.json"):
        meta = json.loads(js.read_text())
        tgts = meta.get("IntendedFor")
        if not tgts:
            continue
        lst = tgts if isinstance(tgts, list) else [tgts]
        keep = [t for t in lst if t not in (target, f"bids::{rel}")]
        if len(keep) != len(lst):
            if keep:
                meta["IntendedFor"] = keep
            else:
                meta.pop("IntendedFor")
                meta.pop("B0FieldIdentifier", None)  # it serves nothing left
            write_text_atomic(js, json.dumps(meta, indent=2, sort_keys=True) + "\n")


def restore_previous(bids_dir: Path, incomplete_dir: Path, subject: str, session: str) -> None:
    """Drop what an earlier run left out for this cell (heudiconv writes it anew)."""
    d = incomplete_dir / f"sub-{subject}"
    if session:
        d = d / f"ses-{session}"
    if d.is_dir():
        shutil.rmtree(d)


def fix_text(fo: FileOutcome, metadata_path: str, suffix: str) -> list[str]:
    """The exact lines a curator needs: which fields, what to write, where."""
    if not fo.missing:
        return [f"correct the values above in {metadata_path} (or the --sidecar-metadata FILE)"]
    fields = {}
    for name in fo.missing:
        if name == ASLCONTEXT:
            fields[ASLCONTEXT] = {"head": ["m0scan"], "repeat": ["label", "control"]}
        else:
            fields[name] = "@@" + placeholder(name) + "@@"
    snippet = json.dumps({suffix: fields})
    snippet = re.sub(r'"@@(.*?)@@"', lambda m: m.group(1).replace('\\"', '"'), snippet)
    lines = [f"add to {metadata_path} (or pass --sidecar-metadata FILE): {snippet}"]
    if ASLCONTEXT in fields:
        lines.append(
            "  aslcontext: one volume type per volume (control, label, m0scan, deltam, cbf, noRF), "
            "as a list or {head, repeat}; the example is Siemens ep2d_pcasl's order: check yours"
        )
    return lines
