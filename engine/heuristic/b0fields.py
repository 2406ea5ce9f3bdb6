"""Field-map intent in the sidecars: ``IntendedFor``, ``B0FieldIdentifier``, ``B0FieldSource``.

heudiconv's own IntendedFor pass matches field maps to images by acquisition parameters (or,
with ``Force``, gives every image of the session to the closest field map, T1w included), so it
cannot reproduce what the mapping decided. The generated heuristic therefore defines
``custom_callable`` (heudiconv calls it after each converted series) which runs
:func:`write_b0_fields` on the session folder, and ``llm-heuristics convert`` runs the same
function after its own fixes: a direct heudiconv run and the tool write the same fields.

Stdlib only and free of module globals: the compiler copies this source into the heuristic.
"""

from __future__ import annotations

import json
import os
import re

# entities the heuristic's names (``func/task-rest_bold``) leave out, or heudiconv adds itself
_NOT_IN_NAME = ("sub", "ses", "run", "echo", "part")
# field-map suffixes; heudiconv numbers magnitude/phase/fieldmap images 1 and 2
_FMAP_SUFFIXES = ("epi", "magnitude", "phase", "phasediff", "fieldmap")


def b0_name(relpath: str) -> str:
    """``func/sub-01_ses-1_task-rest_run-02_echo-1_bold.nii.gz`` -> ``func/task-rest_bold``: the
    name a heuristic key writes, without the entities heudiconv or the run rule add."""
    folder, _, base = relpath.replace(os.sep, "/").rpartition("/")
    stem = re.sub(r"\.(nii\.gz|nii|json)$", "", base)
    parts = stem.split("_")
    keep = [p for p in parts[:-1] if p.partition("-")[0] not in _NOT_IN_NAME]
    suffix = parts[-1]
    datatype = folder.rpartition("/")[2]
    if datatype == "fmap":
        suffix = suffix.rstrip("0123456789") or suffix
    return datatype + "/" + "_".join([*keep, suffix])


def b0_identifier(relpath: str) -> str:
    """One label for the images of one field map (magnitude + phasediff, or both directions of
    a spin-echo pair): ``pepolar_acqfunc`` or ``b0map``, plus the run; BIDS-safe characters."""
    name = b0_name(relpath).partition("/")[2]
    parts = name.split("_")
    kind = "pepolar" if parts[-1] == "epi" else "b0map"
    run = re.search(r"_(run-\d+)_", "_" + relpath.replace(os.sep, "/").rpartition("/")[2])
    ents = [p for p in parts[:-1] if p.partition("-")[0] != "dir"] + ([run[1]] if run else [])
    return "_".join([kind, *(re.sub(r"[^0-9A-Za-z]", "", p) for p in ents)])


def write_b0_fields(session_dir: str, intended: dict[str, list[str]]) -> dict[str, list[str]]:
    """Write the intent of ``intended`` (field-map name -> target names, as the heuristic's
    ``INTENDED_FOR``) into the sidecars of one subject/session folder; a field map serving
    nothing here loses the fields. Returns {field-map sidecar path: its IntendedFor}."""
    want: dict[str, set[str]] = {}
    for fm, targets in intended.items():
        want.setdefault(b0_name(fm), set()).update(b0_name(t) for t in targets)
    subj_dir = session_dir
    if os.path.basename(os.path.normpath(session_dir)).startswith("ses-"):
        subj_dir = os.path.dirname(os.path.normpath(session_dir))
    sidecars = []
    for dtype in sorted(os.listdir(session_dir)) if os.path.isdir(session_dir) else []:
        folder = os.path.join(session_dir, dtype)
        if os.path.isdir(folder) and not dtype.startswith(("ses-", ".")):
            sidecars += [
                os.path.join(dtype, f)
                for f in sorted(os.listdir(folder))
                if f.startswith("sub-") and f.endswith(".json")
            ]
    images: dict[str, list[str]] = {}  # target name -> images, relative to the subject folder
    fmaps: dict[str, list[str]] = {}  # identifier -> field-map sidecars
    for rel in sidecars:
        name = b0_name(rel)
        if rel.startswith("fmap" + os.sep):
            if name.rpartition("/")[2].rpartition("_")[2] in _FMAP_SUFFIXES:
                fmaps.setdefault(b0_identifier(rel), []).append(rel)
            continue
        for ext in (".nii.gz", ".nii"):
            img = os.path.join(session_dir, rel[: -len(".json")] + ext)
            if os.path.exists(img):
                rel_img = os.path.relpath(img, subj_dir).replace(os.sep, "/")
                images.setdefault(name, []).append(rel_img)
                break
    intent: dict[str, list[str]] = {}  # identifier -> IntendedFor
    for ident, files in fmaps.items():
        names = set().union(*(want.get(b0_name(f), set()) for f in files))
        intent[ident] = sorted(i for n in names for i in images.get(n, []))
    sources: dict[str, list[str]] = {}  # target image without extension -> identifiers
    for ident, targets in sorted(intent.items()):
        for t in targets:
            sources.setdefault(re.sub(r"\.nii(\.gz)?$", "", t), []).append(ident)
    done: dict[str, list[str]] = {}
    for rel in sidecars:
        path = os.path.join(session_dir, rel)
        with open(path, encoding="utf-8") as fh:
            meta = json.load(fh)
        new = dict(meta)
        ident = next((i for i, fs in fmaps.items() if rel in fs), None)
        if ident is not None:
            for key, value in (("IntendedFor", intent[ident]), ("B0FieldIdentifier", ident)):
                new.pop(key, None)
                if intent[ident]:
                    new[key] = value
            if intent[ident]:
                done[path] = intent[ident]
        elif not rel.startswith("fmap" + os.sep):
            stem = os.path.relpath(os.path.join(session_dir, rel), subj_dir)
            src = sources.get(stem.replace(os.sep, "/")[: -len(".json")], [])
            new.pop("B0FieldSource", None)
            if src:
                new["B0FieldSource"] = src[0] if len(src) == 1 else src
        if new != meta:
            _rewrite_json(path, new)
    return done


def _rewrite_json(path: str, meta: dict) -> None:
    """Replace ``path`` whole (heudiconv leaves sidecars read-only), keeping its mode."""
    mode = os.stat(path).st_mode & 0o777
    tmp = path + ".b0tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    os.chmod(tmp, mode)
    os.replace(tmp, path)
