"""Convert one subject/session with heudiconv + dcm2niix, fix IntendedFor, complete the
sidecars (:mod:`.sidecars`), run bids-validator.

The DICOM input is only read: heudiconv gets a folder of symlinks to this session's files
(inside OUT), so its ``.heudiconv`` bookkeeping lands in the BIDS folder, never in the input.
Gzipped DICOM (``.dcm.gz``, which neither heudiconv nor dcm2niix reads) is staged there
decompressed instead of linked. The DICOM files are found through a files table in OUT, else
under ``--dicom-dir``, else under the inputs ``analyze`` recorded in ``OUT/analyze_input.json``,
else under the series' folders. Everything staged (``OUT/.convert_work``) is removed afterwards.

dcm2niix is run through a small wrapper (:func:`write_dcm2niix_wrapper`): some dcm2niix
warnings lack their newline (Philips phase-difference field maps: "Unable to distinguish
Philips fieldmaps..."), which glues the next ``Convert N DICOM as FILE`` line onto the warning;
nipype only reads outputs from lines that *start* with ``Convert``, so heudiconv would see no
output and stop (``AssertionError: we do expect some files``). The wrapper restores the newline.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from engine.atomic import read_tsv, write_text_atomic
from engine.errors import UserError
from engine.heuristic.outcome import ConversionResult, ValidatorResult
from engine.heuristic.plan import Plan
from engine.heuristic.sidecars import (
    INCOMPLETE_DIR,
    SIDECAR_METADATA_FILE,
    complete_sidecars,
    load_study_metadata,
    restore_previous,
)
from engine.model import Group, Mapping, SeriesAssignment, SeriesInfo
from engine.workspace import ANALYZE_INPUT_JSON

# tables a scanner may write listing every file of every series (first one found is used)
FILES_TABLES = ("series_files.tsv", "dicom_files.tsv", "files.tsv")
ANALYZE_INPUT_FILE = ANALYZE_INPUT_JSON


def analyze_inputs(out_dir: Path) -> list[Path]:
    """The folders/files ``analyze`` read, as it recorded them; [] when it did not."""
    p = out_dir / ANALYZE_INPUT_FILE
    if not p.exists():
        return []
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError:
        return []
    raw = data.get("inputs", []) if isinstance(data, dict) else []
    return [Path(x) for x in raw if isinstance(x, str) and x]


GZIP_MAGIC = b"\x1f\x8b"


def is_gzip(path: str) -> bool:
    """The file is gzip-compressed (by its magic bytes, whatever its name)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(2) == GZIP_MAGIC
    except OSError:
        return False


def _uid_of(path: str) -> str | None:
    """SeriesInstanceUID of a DICOM file, plain or gzipped; None when it is not DICOM."""
    import pydicom

    try:
        with open(path, "rb") as raw:
            fh = gzip.GzipFile(fileobj=raw) if raw.read(2) == GZIP_MAGIC else raw
            raw.seek(0)
            ds = pydicom.dcmread(fh, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"])
    except Exception:
        return None
    v = ds.get("SeriesInstanceUID")
    return str(v) if v else None


def guess_dicom_root(series: list[SeriesInfo]) -> Path | None:
    paths = [s.example_dcm_file for s in series if os.path.isabs(s.example_dcm_file)]
    if not paths:
        return None
    try:
        return Path(os.path.commonpath([os.path.dirname(p) for p in paths]))
    except ValueError:
        return None


def files_for_series(
    out_dir: Path, rows: list[SeriesInfo], dicom_dir: Path | None
) -> dict[str, list[str]]:
    """Series UID -> its DICOM files: from a files table in OUT, else by reading headers."""
    want = {s.series_uid for s in rows if s.series_uid}
    found: dict[str, list[str]] = defaultdict(list)
    for name in FILES_TABLES:
        p = out_dir / name
        if p.exists():
            for r in read_tsv(p):
                uid = r.get("series_uid") or r.get("SeriesInstanceUID") or ""
                path = r.get("path") or r.get("file") or r.get("filename") or ""
                if uid in want and path:
                    found[uid].append(path)
            if found:
                return dict(found)
    if dicom_dir is not None:
        roots = [dicom_dir]
    else:
        roots = [p for p in analyze_inputs(out_dir) if p.exists()]
        if not roots:
            guess = guess_dicom_root(rows)
            roots = [guess] if guess is not None else []
    roots = [r for r in roots if r.exists()]
    if not roots:
        raise UserError(
            "cannot find the DICOM files of this session: pass --dicom-dir DICOM_DIR "
            f"(the folder given to `analyze`; {ANALYZE_INPUT_FILE} in {out_dir} names none that exists)"
        )
    for root in roots:
        walk = [(str(root.parent), [], [root.name])] if root.is_file() else os.walk(root)
        for dirpath, _dirs, files in walk:
            for f in sorted(files):
                full = os.path.join(dirpath, f)
                uid = _uid_of(full)
                if uid in want and full not in found[uid]:
                    found[uid].append(full)
    return dict(found)


def beside_interpreter(name: str) -> str | None:
    """A console script installed with this Python (found even when its venv is not on PATH)."""
    here = Path(sys.executable).parent / (f"{name}.exe" if os.name == "nt" else name)
    return str(here) if here.is_file() and os.access(here, os.X_OK) else None


def heudiconv_executable() -> list[str]:
    """How to run heudiconv: the script beside the running interpreter first (a venv that is
    not activated, pipx, a CLI called by its absolute path), then PATH, then the module."""
    here = beside_interpreter("heudiconv")
    if here:
        return [here]
    exe = shutil.which("heudiconv")
    if exe:
        return [exe]
    return [sys.executable, "-m", "heudiconv.cli.run"]


def heudiconv_command(
    heuristic: Path, files_dir: Path, subject: str, session: str, bids_dir: Path
) -> list[str]:
    cmd = heudiconv_executable()
    cmd += ["--files", str(files_dir), "-f", str(heuristic), "-s", subject]
    if session:
        cmd += ["-ss", session]
    cmd += ["-c", "dcm2niix", "-b", "--overwrite", "-g", "all", "-o", str(bids_dir)]
    return cmd


def link_files(files: dict[str, list[str]], dest: Path) -> Path:
    """One folder per series under ``dest``: symlinks to plain files, decompressed copies of
    gzipped ones (heudiconv and dcm2niix read no gzip); the input is never written."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for i, (_uid, paths) in enumerate(sorted(files.items())):
        d = dest / f"s{i:04d}"
        d.mkdir()
        for j, p in enumerate(sorted(paths)):
            name = os.path.basename(p)
            if is_gzip(p):
                name = name[: -len(".gz")] if name.lower().endswith(".gz") else name
                with gzip.open(p, "rb") as src, open(d / f"{j:06d}_{name}", "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            else:
                (d / f"{j:06d}_{name}").symlink_to(os.path.abspath(p))
    return dest


# Puts back the newline some dcm2niix warnings lack before "Convert N DICOM as FILE (...)",
# the only line nipype's Dcm2niix reads its outputs from. Run as: python FIX REAL_DCM2NIIX ARGS.
_DCM2NIIX_FIX = """\
import re, subprocess, sys
p = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE)
out = re.sub(rb"(?<=[^\\n])(?=Convert [0-9]+ DICOM as )", b"\\n", p.stdout)
sys.stdout.buffer.write(out)
sys.stdout.flush()
sys.exit(p.returncode)
"""


def write_dcm2niix_wrapper(bin_dir: Path) -> Path | None:
    """A ``dcm2niix`` in ``bin_dir`` (put first on heudiconv's PATH) that runs the real one and
    repairs its stdout for nipype; None when no dcm2niix is installed (heudiconv then says so)."""
    real = beside_interpreter("dcm2niix") or shutil.which("dcm2niix")
    if real is None:
        return None
    bin_dir.mkdir(parents=True, exist_ok=True)
    fix = bin_dir / "dcm2niix_stdout_fix.py"
    fix.write_text(_DCM2NIIX_FIX)
    exe = bin_dir / "dcm2niix"
    exe.write_text(
        "#!/bin/sh\n"
        f"exec {shlex.quote(sys.executable)} -S {shlex.quote(str(fix))} "
        f'{shlex.quote(os.path.abspath(real))} "$@"\n'
    )
    exe.chmod(0o755)
    return bin_dir


def written_niftis(bids_dir: Path, subject: str, session: str) -> list[str]:
    base = bids_dir / f"sub-{subject}"
    if session:
        base = base / f"ses-{session}"
    if not base.is_dir():
        return []
    return sorted(str(p.relative_to(bids_dir)) for p in base.rglob("*.nii*"))


_NUMBERED_FIELDMAP = re.compile(r"^(?P<stem>.+)_fieldmap(?P<n>\d+)(?P<ext>\.nii(?:\.gz)?)$")


def split_vendor_fieldmaps(bids_dir: Path, subject: str, session: str) -> list[tuple[str, str]]:
    """Name the two images of a GE/Philips B0-map series as BIDS wants them.

    dcm2niix writes such a series as a magnitude image and a field map in Hz (ImageType ends
    in MAGNITUDE / FIELDMAPHZ); heudiconv numbers them ``_fieldmap1``/``_fieldmap2``, which BIDS
    rejects. They become ``_magnitude`` and ``_fieldmap`` (with ``Units: Hz``); ``*_scans.tsv``
    follows. Returns the (old, new) relative paths.
    """
    base = bids_dir / f"sub-{subject}" / (f"ses-{session}" if session else "") / "fmap"
    renamed: list[tuple[str, str]] = []
    for nii in sorted(base.glob("*_fieldmap[0-9]*.nii*")) if base.is_dir() else []:
        m = _NUMBERED_FIELDMAP.match(nii.name)
        sidecar = nii.with_name(nii.name[: -len(m["ext"])] + ".json") if m else None
        if m is None or sidecar is None or not sidecar.exists():
            continue
        meta = json.loads(sidecar.read_text())
        kinds = {str(t).upper() for t in meta.get("ImageType", [])}
        if "FIELDMAPHZ" in kinds or meta.get("Units") == "Hz":
            suffix = "fieldmap"
            meta["Units"] = "Hz"
        elif "MAGNITUDE" in kinds or "M" in kinds:
            suffix = "magnitude"
        else:
            continue
        new_nii = nii.with_name(f"{m['stem']}_{suffix}{m['ext']}")
        if new_nii.exists():
            continue
        write_text_atomic(
            new_nii.with_name(new_nii.name[: -len(m["ext"])] + ".json"),
            json.dumps(meta, indent=2) + "\n",
        )
        sidecar.unlink()
        nii.rename(new_nii)
        renamed.append((str(nii.relative_to(bids_dir)), str(new_nii.relative_to(bids_dir))))
    if renamed:
        _rename_in_scans(bids_dir, subject, session, renamed)
    return renamed


def _rename_in_scans(
    bids_dir: Path, subject: str, session: str, renamed: list[tuple[str, str]]
) -> None:
    folder = bids_dir / f"sub-{subject}" / (f"ses-{session}" if session else "")
    prefix = f"sub-{subject}" + (f"_ses-{session}" if session else "")
    scans = folder / f"{prefix}_scans.tsv"
    if not scans.exists():
        return
    text = scans.read_text()
    for old, new in renamed:
        text = text.replace(
            str(Path(old).relative_to(folder.relative_to(bids_dir))),
            str(Path(new).relative_to(folder.relative_to(bids_dir))),
        )
    write_text_atomic(scans, text)


def fix_intended_for(
    plan: Plan, bids_dir: Path, subject: str, session: str
) -> dict[str, list[str]]:
    """Write each field map's IntendedFor exactly as the mapping says (same session only)."""
    rows = plan.series_in(subject, session)
    by_group: dict[str, list[str]] = defaultdict(list)
    for s in rows:
        stem = plan.expected.get(s.key)
        gid = plan.group_of.get(s.key)
        if stem and gid:
            by_group[gid].append(stem)
    done: dict[str, list[str]] = {}
    subj_dir = bids_dir / f"sub-{subject}"
    for gid, stems in by_group.items():
        m = plan.mappings.get(gid)
        if m is None or not m.intended_for:
            continue
        targets: list[str] = []
        for tg in m.intended_for:
            for stem in by_group.get(tg, []):
                # a multi-echo series is expected as its echo-1 name: every echo is a target
                for p in sorted(bids_dir.glob(re.sub(r"_echo-\d+_", "_echo-*_", stem) + "*.nii*")):
                    if p.parent.name != "fmap":
                        targets.append(str(p.relative_to(subj_dir)))
        targets = sorted(set(targets))
        for stem in stems:
            parent = (bids_dir / stem).parent
            for js in sorted(parent.glob(Path(stem).name.rstrip("0123456789") + "*.json")):
                if not js.name.startswith(Path(stem).name.rstrip("0123456789")):
                    continue
                meta = json.loads(js.read_text())
                if targets:
                    meta["IntendedFor"] = targets
                else:
                    meta.pop("IntendedFor", None)
                write_text_atomic(js, json.dumps(meta, indent=2, sort_keys=True) + "\n")
                done[str(js.relative_to(bids_dir))] = targets
    return done


def tidy_dataset(bids_dir: Path, title: str = "") -> None:
    """Make heudiconv's top-level files validator-clean: a real Name/README, ignore .heudiconv."""
    dd = bids_dir / "dataset_description.json"
    meta = json.loads(dd.read_text()) if dd.exists() else {}
    if not meta.get("Name") or str(meta.get("Name", "")).startswith("TODO"):
        meta["Name"] = title or bids_dir.resolve().name
    meta.setdefault("BIDSVersion", "1.8.0")
    meta.setdefault("DatasetType", "raw")
    for k in [k for k, v in meta.items() if isinstance(v, str) and v.startswith("TODO")]:
        meta.pop(k)
    for k in [
        k for k, v in meta.items() if isinstance(v, list) and any("TODO" in str(x) for x in v)
    ]:
        meta.pop(k)
    write_text_atomic(dd, json.dumps(meta, indent=2) + "\n")
    readme = bids_dir / "README"
    if not readme.exists() or "TODO" in readme.read_text(errors="replace")[:200]:
        write_text_atomic(
            readme,
            f"{meta['Name']}\n\nMRI data converted from DICOM with heudiconv and dcm2niix, using a "
            "heuristic generated and validated by llm-heuristics.\n",
        )
    changes = bids_dir / "CHANGES"
    if changes.exists() and "TODO" in changes.read_text(errors="replace"):
        changes.unlink()
    ign = bids_dir / ".bidsignore"
    lines = ign.read_text().splitlines() if ign.exists() else []
    if ".heudiconv/" not in lines:
        write_text_atomic(ign, "\n".join([*lines, ".heudiconv/"]) + "\n")


def run_bids_validator(bids_dir: Path, timeout: int = 900) -> ValidatorResult:
    exe = shutil.which("bids-validator")
    if exe is None:
        return ValidatorResult(False)
    proc = subprocess.run(
        [exe, str(bids_dir), "--json"],  # the validator's default options, as users run it
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    out = proc.stdout.strip()
    res = ValidatorResult(True, raw=out or proc.stderr)
    try:
        data = json.loads(out[out.index("{") :]) if "{" in out else {}
    except json.JSONDecodeError:
        res.errors.append(f"could not read bids-validator output: {(out or proc.stderr)[:300]}")
        return res
    issues = data.get("issues", {})
    for kind, target in (("errors", res.errors), ("warnings", res.warnings)):
        for issue in issues.get(kind, []):
            files = [
                (f.get("file") or {}).get("relativePath", "") for f in issue.get("files", [])[:3]
            ]
            target.append(
                f"{issue.get('key')}: {issue.get('reason', '')} {' '.join(filter(None, files))}".strip()
            )
    if proc.returncode != 0 and not res.errors and not data:
        res.errors.append(f"bids-validator exited {proc.returncode}: {proc.stderr[:300]}")
    return res


def convert(
    out_dir: str | Path,
    inputs: tuple[list[SeriesInfo], list[Group], list[Mapping], list[SeriesAssignment]],
    subject: str,
    session: str | None = None,
    *,
    bids_dir: str | Path | None = None,
    heuristic: str | Path | None = None,
    dicom_dir: str | Path | None = None,
    dry_run: bool = False,
    validator: bool = True,
    sidecar_metadata: str | Path | None = None,
    log=print,
) -> tuple[list[ConversionResult], ValidatorResult | None, str]:
    """Convert one subject (all its sessions, or one); returns results, verdict, report text.

    ``inputs``: the effective mapping (series, groups, mappings, assignments) to convert by.

    ``sidecar_metadata``: the study metadata file (default ``OUT/sidecar_metadata.json``) with
    the sidecar facts DICOM lacks; see :mod:`engine.heuristic.sidecars`.
    """
    from engine.heuristic.plan import build_plan
    from engine.heuristic.report import conversion_report
    from engine.heuristic.validate import HEURISTIC_FILE

    out = Path(out_dir)
    series, groups, mappings, assignments = inputs
    plan = build_plan(series, groups, mappings, assignments)
    h = Path(heuristic) if heuristic else out / HEURISTIC_FILE
    if not h.exists():
        raise UserError(f"{h} not found: run `llm-heuristics generate {out}` first")
    cells = [c for c in plan.sessions() if c[0] == subject]
    if not cells:
        known = ", ".join(sorted({s for s, _ in plan.sessions()}))
        raise UserError(f"no subject {subject!r} in {out} (known: {known})")
    if session is not None:
        cells = [c for c in cells if c[1] == session]
        if not cells:
            raise UserError(f"subject {subject!r} has no session {session!r}")
    bids = Path(bids_dir) if bids_dir else out / "bids"
    meta_path = Path(sidecar_metadata) if sidecar_metadata else out / SIDECAR_METADATA_FILE
    if sidecar_metadata and not meta_path.exists():
        raise UserError(f"{meta_path} not found (--sidecar-metadata)")
    entries = load_study_metadata(meta_path)
    incomplete = out / INCOMPLETE_DIR
    results: list[ConversionResult] = []
    for sub, ses in cells:
        rows = plan.series_in(sub, ses)
        res = ConversionResult(sub, ses, bids)
        res.expected = {s.series_id: plan.expected.get(s.key, "") for s in rows}
        if dry_run:
            results.append(res)
            continue
        conv_rows = [s for s in rows if plan.expected.get(s.key)]
        files = files_for_series(out, rows, Path(dicom_dir) if dicom_dir else None)
        lacking = [s.series_id for s in conv_rows if s.series_uid not in files]
        if lacking:
            raise UserError(f"no DICOM files found for series {', '.join(lacking)}")
        work = out / ".convert_work" / f"sub-{sub}" / (f"ses-{ses}" if ses else "nosession")
        try:
            link_files(files, work / "dicom")
            cmd = heudiconv_command(h.resolve(), work / "dicom", sub, ses, bids)
            log(f"sub-{sub}{' ses-' + ses if ses else ''}: {' '.join(cmd)}")
            bids.mkdir(parents=True, exist_ok=True)
            restore_previous(bids, incomplete, sub, ses)
            # heudiconv imports the heuristic: no __pycache__ next to it in OUT
            env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
            wrapper = write_dcm2niix_wrapper(work / "bin")
            if wrapper is not None:
                env["PATH"] = os.pathsep.join([str(wrapper.resolve()), env.get("PATH", "")])
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
        finally:
            shutil.rmtree(work, ignore_errors=True)
            for d in (work.parent, work.parent.parent):  # .convert_work/sub-X, .convert_work
                try:
                    d.rmdir()
                except OSError:
                    break
        res.heudiconv_rc = proc.returncode
        res.heudiconv_log = (proc.stdout + proc.stderr)[-4000:]
        if proc.returncode != 0:
            results.append(res)
            continue
        res.renamed = split_vendor_fieldmaps(bids, sub, ses)
        res.intended_for = fix_intended_for(plan, bids, sub, ses)
        res.sidecars = complete_sidecars(
            bids,
            written_niftis(bids, sub, ses),
            entries,
            incomplete_dir=incomplete,
            metadata_file=str(meta_path),
        )
        res.written = written_niftis(bids, sub, ses)
        gone = res.left_out
        for stem in res.expected.values():
            base = re.sub(r"_echo-\d+", "", stem.rstrip("0123456789"))

            def placed(paths: list[str], base: str = base) -> bool:
                return any(re.sub(r"_echo-\d+", "", w).startswith(base) for w in paths)

            if stem and not placed(res.written) and not placed(gone):
                res.missing.append(stem)
        results.append(res)
    verdict = None
    if not dry_run and all(r.heudiconv_rc == 0 for r in results):
        tidy_dataset(bids, title=_title(series))
        if validator:
            verdict = run_bids_validator(bids)
    text = conversion_report(results, verdict, dry_run=dry_run, metadata_path=str(meta_path))
    if not dry_run:
        write_reports(out, results, verdict, str(meta_path))
    return results, verdict, text


REPORTS_DIR = "conversion_reports"


def write_reports(
    out: Path, results: list[ConversionResult], verdict: ValidatorResult | None, metadata_path: str
) -> None:
    """One report per subject/session in ``OUT/conversion_reports/`` (a later subject's run
    does not wipe an earlier one's), and ``OUT/conversion_report.txt``: all of them, then the
    verdict on the whole dataset from this run."""
    from engine.heuristic.report import conversion_report

    folder = out / REPORTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for r in results:
        name = f"sub-{r.subject}" + (f"_ses-{r.session}" if r.session else "") + ".txt"
        write_text_atomic(folder / name, conversion_report([r], None, metadata_path=metadata_path))
    parts = [p.read_text() for p in sorted(folder.glob("sub-*.txt"))]
    if verdict is not None:
        parts.append(conversion_report([], verdict))
    write_text_atomic(out / "conversion_report.txt", "".join(parts))


def _title(series: list[SeriesInfo]) -> str:
    descs = sorted({s.study_description for s in series if s.study_description})
    return descs[0] if len(descs) == 1 else "MRI study"
