"""Name the files of a series that dcm2niix splits into several images, as BIDS wants them.

dcm2niix writes one NIfTI per echo and per image kind of a series (``_e1``, ``_e2``, ``_ph``,
``_real``, ``_imaginary``, ``_fieldmaphz``; an ASL series that holds its M0 reference gives a
second file); heudiconv then only appends ``1..N`` to the key's suffix: ``_fieldmap1/2``,
``_magnitude1..8`` (a Philips enhanced dual-echo field map with magnitude, phase, real and
imaginary frames), ``_asl1/_asl2``. None of those is BIDS beyond ``magnitude1/2``. Each file's
sidecar says what it is (dcm2niix appends ``MAGNITUDE``/``PHASE``/``REAL``/``IMAGINARY``/
``FIELDMAPHZ`` to ``ImageType`` and writes ``EchoNumber``), so each is renamed by its sidecar:

* a field map in Hz with its magnitude (GE/Philips B0 map): ``_fieldmap`` + ``_magnitude``;
* magnitude and phase of two echoes: ``_magnitude1/2`` + ``_phase1/2`` (one phase: ``_phasediff``);
* an ASL series and its M0 reference: ``_asl`` + ``_m0scan``.

Images BIDS has no place for (real/imaginary parts, a third echo) are set aside outside the
dataset with the reason, never deleted; ``*_scans.tsv`` follows every change.
"""

from __future__ import annotations

import json
import re
import shutil
from collections import defaultdict
from pathlib import Path

from engine.atomic import write_text_atomic

SET_ASIDE_DIR = "bids_set_aside"  # OUT/bids_set_aside/<relpath>: images BIDS has no name for

_NUMBERED = re.compile(
    r"^(?P<stem>.+)_(?P<suffix>fieldmap|magnitude|asl)(?P<n>\d+)(?P<ext>\.nii(?:\.gz)?)$"
)


def image_kind(meta: dict) -> str:
    """fieldmap / phase / real / imag / magnitude / m0 from a dcm2niix sidecar."""
    kinds = {str(t).upper() for t in meta.get("ImageType", [])}
    # dcm2niix marks the Hz map of an enhanced export FIELDMAPHZ; a classic Philips B0 map
    # keeps its own ImageType (B0 MAP / B0) on the second-echo file
    if kinds & {"FIELDMAPHZ", "B0", "B0 MAP", "FIELD_MAP"} or meta.get("Units") == "Hz":
        return "fieldmap"
    if kinds & {"M0", "PD", "PROTON_DENSITY", "PDW"}:
        return "m0"
    if kinds & {"PHASE", "P"}:
        return "phase"
    if kinds & {"REAL", "R"}:
        return "real"
    if kinds & {"IMAGINARY", "I"}:
        return "imag"
    return "magnitude"


class _File:
    def __init__(self, nii: Path, ext: str, number: int) -> None:
        self.nii, self.ext, self.number = nii, ext, number
        self.json = nii.with_name(nii.name[: -len(ext)] + ".json")
        try:
            self.meta = json.loads(self.json.read_text()) if self.json.exists() else {}
        except (OSError, json.JSONDecodeError):
            self.meta = {}
        self.kind = image_kind(self.meta)

    def echo(self, all_tes: list[float]) -> int:
        n = self.meta.get("EchoNumber")
        if isinstance(n, int) and n > 0:
            return n
        te = self.meta.get("EchoTime")
        return all_tes.index(te) + 1 if te in all_tes else 1

    def volumes(self) -> int:
        try:
            import nibabel

            shape = nibabel.load(str(self.nii)).shape
        except Exception:  # noqa: BLE001 - no nibabel or an unreadable file: count unknown
            return 0
        return int(shape[3]) if len(shape) > 3 else 1


def _plan_fmap(files: list[_File]) -> dict[int, tuple[str, str]]:
    """file number -> (new suffix or "", why set aside)."""
    tes = sorted({f.meta["EchoTime"] for f in files if isinstance(f.meta.get("EchoTime"), float)})
    out: dict[int, tuple[str, str]] = {}
    fieldmaps = [f for f in files if f.kind == "fieldmap"]
    mags = sorted((f for f in files if f.kind == "magnitude"), key=lambda f: f.echo(tes))
    phases = sorted((f for f in files if f.kind == "phase"), key=lambda f: f.echo(tes))
    if fieldmaps:
        out[fieldmaps[0].number] = ("fieldmap", "")
        if mags:
            out[mags[0].number] = ("magnitude", "")
    elif len(phases) == 1:
        out[phases[0].number] = ("phasediff", "")
    elif len(phases) >= 2:
        out[phases[0].number] = ("phase1", "")
        out[phases[1].number] = ("phase2", "")
    if not fieldmaps:
        for i, f in enumerate(mags[:2]):
            out[f.number] = (f"magnitude{i + 1}", "")
    for f in files:
        if f.number not in out:
            why = {
                "real": "real part",
                "imag": "imaginary part",
                "fieldmap": "second field map",
            }.get(f.kind, f"extra {f.kind} image (echo {f.echo(tes)})")
            out[f.number] = ("", f"{why}: BIDS field maps have no name for it")
    return out


def _plan_asl(files: list[_File]) -> dict[int, tuple[str, str]]:
    """The M0 reference by its ImageType, else the file with far fewer volumes (GE 3D ASL
    writes the PD reference as the second, 1-2 volume file); the rest is the ASL series."""
    m0 = [f for f in files if f.kind == "m0"]
    if not m0 and len(files) == 2:
        counts = {f.number: f.volumes() for f in files}
        small = min(files, key=lambda f: counts[f.number])
        big = max(files, key=lambda f: counts[f.number])
        if 0 < counts[small.number] <= 2 < counts[big.number] or (
            0 < counts[small.number] < counts[big.number]
            and str(small.meta.get("ArterialSpinLabelingType", "")).upper() == "CASL"
            and str(big.meta.get("ArterialSpinLabelingType", "")).upper() != "CASL"
        ):
            m0 = [small]
    out: dict[int, tuple[str, str]] = {}
    rest = [f for f in files if f not in m0]
    if m0:
        out[m0[0].number] = ("m0scan", "")
    if rest:
        main = max(rest, key=lambda f: (f.volumes(), -f.number))
        out[main.number] = ("asl", "")
    for f in files:
        out.setdefault(
            f.number,
            ("", "a further ASL image set of the same series (not an M0): merge it by hand"),
        )
    return out


def name_split_outputs(
    bids_dir: Path, subject: str, session: str, out_dir: Path | None = None
) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """Rename heudiconv's numbered outputs of one subject/session by their sidecars.

    Returns ``(renamed, set_aside)``: (old, new) relative paths, and relpath -> why for images
    moved to ``out_dir/bids_set_aside`` (beside the dataset, so it stays valid).
    """
    folder = bids_dir / f"sub-{subject}" / (f"ses-{session}" if session else "")
    stems: dict[tuple[Path, str, str], list[_File]] = defaultdict(list)
    for dt in ("fmap", "perf"):
        for nii in sorted((folder / dt).glob("*.nii*")) if (folder / dt).is_dir() else []:
            m = _NUMBERED.match(nii.name)
            if m is None or (dt == "perf") != (m["suffix"] == "asl"):
                continue
            stems[(nii.parent, m["stem"], m["suffix"])].append(_File(nii, m["ext"], int(m["n"])))
    renamed: list[tuple[str, str]] = []
    aside: dict[str, str] = {}
    moves: list[tuple[_File, str]] = []
    for (_parent, stem, suffix), files in stems.items():
        if suffix == "magnitude" and all(f.kind == "magnitude" for f in files) and len(files) <= 2:
            continue  # magnitude1/magnitude2 of a two-echo magnitude series: already BIDS
        if suffix == "asl" and len(files) == 1:
            moves.append((files[0], f"{stem}_asl"))
            continue
        plan = _plan_asl(files) if suffix == "asl" else _plan_fmap(files)
        for f in files:
            new, why = plan[f.number]
            if new:
                moves.append((f, f"{stem}_{new}"))
            else:
                rel = str(f.nii.relative_to(bids_dir))
                aside[rel] = why
                dest = (out_dir or bids_dir.parent) / SET_ASIDE_DIR / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                for p in (f.nii, f.json):
                    if p.exists():
                        shutil.move(str(p), str(dest.parent / p.name))
    # two passes through temporary names: a new name may be another file's old name
    staged: list[tuple[_File, Path, str]] = []
    for f, new_stem in moves:
        if f.nii.name == new_stem + f.ext:
            continue
        tmp = f.nii.with_name(f".renaming-{f.nii.name}")
        f.nii.rename(tmp)
        if f.json.exists():
            f.json.unlink()  # rewritten from f.meta below, under its new name
        staged.append((f, tmp, new_stem))
    for f, tmp, new_stem in staged:
        new_nii = f.nii.with_name(new_stem + f.ext)
        tmp.rename(new_nii)
        if f.meta:
            meta = dict(f.meta)
            if new_stem.endswith("_fieldmap"):
                meta["Units"] = "Hz"
            text = json.dumps(meta, indent=2) + "\n"
            write_text_atomic(new_nii.with_name(new_stem + ".json"), text)
        renamed.append((str(f.nii.relative_to(bids_dir)), str(new_nii.relative_to(bids_dir))))
    if renamed or aside:
        _update_scans(folder, subject, session, renamed, set(aside))
    return renamed, aside


def set_aside_3d_bold(
    bids_dir: Path, subject: str, session: str, out_dir: Path | None = None
) -> dict[str, str]:
    """Move ``func/*_bold`` images that dcm2niix wrote as one 3-D volume out of the dataset.

    A BOLD run needs a time axis (BIDS: BOLD_NOT_4D). It happens when a run was stopped after
    its first volume, or when the header counts volumes the files do not hold (a MOSAIC whose
    second volume never arrived). The image is kept under ``bids_set_aside`` with the reason;
    returns relpath -> why, and ``*_scans.tsv`` follows."""
    import nibabel as nib

    folder = bids_dir / f"sub-{subject}" / (f"ses-{session}" if session else "") / "func"
    aside: dict[str, str] = {}
    for nii in sorted(folder.glob("*_bold.nii*")) if folder.is_dir() else []:
        try:
            shape = nib.load(str(nii)).header.get_data_shape()
        except Exception:  # noqa: BLE001 - unreadable: the validator will say why
            continue
        if len(shape) >= 4 and shape[3] > 1:
            continue
        rel = str(nii.relative_to(bids_dir))
        aside[rel] = (
            f"a BOLD run of one volume (image {'x'.join(map(str, shape))}): BIDS needs a time "
            "axis; the run was stopped early or the files hold fewer volumes than the header says"
        )
        dest = (out_dir or bids_dir.parent) / SET_ASIDE_DIR / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        stem = nii.name.split(".nii")[0]
        for p in (nii, nii.with_name(stem + ".json")):
            if p.exists():
                shutil.move(str(p), str(dest.parent / p.name))
    if aside:
        _update_scans(folder.parent, subject, session, [], set(aside))
    return aside


def _update_scans(
    folder: Path, subject: str, session: str, renamed: list[tuple[str, str]], gone: set[str]
) -> None:
    prefix = f"sub-{subject}" + (f"_ses-{session}" if session else "")
    scans = folder / f"{prefix}_scans.tsv"
    if not scans.exists():
        return
    sub_rel = f"sub-{subject}/" + (f"ses-{session}/" if session else "")
    new_of = {o.removeprefix(sub_rel): n.removeprefix(sub_rel) for o, n in renamed}
    gone_rel = {g.removeprefix(sub_rel) for g in gone}
    lines = []
    for line in scans.read_text().splitlines():
        name, sep, rest = line.partition("\t")
        if name in gone_rel:
            continue
        lines.append(new_of.get(name, name) + sep + rest)
    write_text_atomic(scans, "\n".join(lines) + "\n")
