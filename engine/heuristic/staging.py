"""Staging one session's DICOM for heudiconv and running it there.

The DICOM input is only read: heudiconv gets a folder of symlinks to this session's files
(inside OUT), so its ``.heudiconv`` bookkeeping lands in the BIDS folder, never in the input.
Gzipped DICOM (``.dcm.gz``, which neither heudiconv nor dcm2niix reads) is staged there
decompressed instead of linked; a file whose header :mod:`.rescue` repairs is staged as a
repaired copy. The DICOM files are found through a files table in OUT, else under
``--dicom-dir``, else under the inputs ``analyze`` recorded in ``OUT/analyze_input.json``,
else under the series' folders.

dcm2niix is run through a small wrapper (:func:`write_dcm2niix_wrapper`): some dcm2niix
warnings lack their newline (Philips phase-difference field maps: "Unable to distinguish
Philips fieldmaps..."), which glues the next ``Convert N DICOM as FILE`` line onto the warning;
nipype only reads outputs from lines that *start* with ``Convert``, so heudiconv would see no
output and stop (``AssertionError: we do expect some files``). The wrapper restores the newline.

heudiconv may run on a selection of series (:func:`write_selecting_heuristic`): the study's
heuristic still sees every series (so run numbers stay as the mapping says) but only the
selected ones are converted.
"""

from __future__ import annotations

import gzip
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from engine.atomic import read_tsv
from engine.errors import UserError
from engine.model import SeriesInfo
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
    heuristic: Path, files_dir: Path | list[Path], subject: str, session: str, bids_dir: Path
) -> list[str]:
    dirs = files_dir if isinstance(files_dir, list) else [files_dir]
    cmd = heudiconv_executable()
    cmd += ["--files", *(str(d) for d in dirs), "-f", str(heuristic), "-s", subject]
    if session:
        cmd += ["-ss", session]
    cmd += ["-c", "dcm2niix", "-b", "--overwrite", "-g", "all", "-o", str(bids_dir)]
    return cmd


def link_files(files: dict[str, list[str]], dest: Path) -> Path:
    """One folder per series under ``dest``: symlinks to plain files, decompressed copies of
    gzipped ones (heudiconv and dcm2niix read no gzip); the input is never written."""
    link_series(files, dest)
    return dest


def link_series(files: dict[str, list[str]], dest: Path) -> dict[str, Path]:
    """:func:`link_files`, returning each series UID's folder."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    folders: dict[str, Path] = {}
    for i, (uid, paths) in enumerate(sorted(files.items())):
        d = folders[uid] = dest / f"s{i:04d}"
        d.mkdir()
        for j, p in enumerate(sorted(paths)):
            name = os.path.basename(p)
            if is_gzip(p):
                name = name[: -len(".gz")] if name.lower().endswith(".gz") else name
                with gzip.open(p, "rb") as src, open(d / f"{j:06d}_{name}", "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            else:
                (d / f"{j:06d}_{name}").symlink_to(os.path.abspath(p))
    return folders


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
    real = shutil.which("dcm2niix") or beside_interpreter("dcm2niix")  # PATH first: the user's pick
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


# A heuristic that converts only some series: the study's heuristic sees every series (its run
# numbers stay as the mapping says); what it returns is filtered to the selection.
_SELECTING_HEURISTIC = """\
# written by llm-heuristics convert: {real} converting only the series listed in SELECT
import importlib.util as _util

_spec = _util.spec_from_file_location("_llmh_study_heuristic", {real!r})
_study = _util.module_from_spec(_spec)
_spec.loader.exec_module(_study)
globals().update({{k: v for k, v in vars(_study).items() if not k.startswith("__")}})
SELECT = {select!r}


def infotodict(seqinfo, *args, **kwargs):
    info = _study.infotodict(seqinfo, *args, **kwargs)
    out = {{}}
    for key, items in info.items():
        keep = [x for x in items if (x.get("item") if isinstance(x, dict) else x) in SELECT]
        if keep:
            out[key] = keep
    return out
"""


def write_selecting_heuristic(path: Path, real: Path, select: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_SELECTING_HEURISTIC.format(real=str(real), select=sorted(select)))
    return path


class SessionStage:
    """One subject/session's DICOM staged under ``work`` (series UID -> folder), heudiconv run
    on all of it or on a selection of series."""

    def __init__(
        self, work: Path, files: dict[str, list[str]], heuristic: Path, subject: str, session: str
    ) -> None:
        self.work, self.heuristic = work, heuristic
        self.subject, self.session = subject, session
        self.folders = link_series(files, work / "dicom")
        self.env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")  # no __pycache__ in OUT
        wrapper = write_dcm2niix_wrapper(work / "bin")
        if wrapper is not None:
            self.env["PATH"] = os.pathsep.join([str(wrapper.resolve()), self.env.get("PATH", "")])
        self.runs = 0

    def command(
        self,
        bids: Path,
        select: list[str] | None = None,
        uids: list[str] | None = None,
    ) -> list[str]:
        """heudiconv on the folders of ``uids`` (default: all), converting the series ids in
        ``select`` (default: all the heuristic names)."""
        h = self.heuristic
        if select is not None:
            self.runs += 1
            h = write_selecting_heuristic(self.work / f"heuristic_{self.runs}.py", h, select)
        folders = [self.folders[u] for u in (uids if uids is not None else sorted(self.folders))]
        return heudiconv_command(h, folders, self.subject, self.session, bids)

    def run(
        self,
        bids: Path,
        select: list[str] | None = None,
        uids: list[str] | None = None,
    ) -> tuple[int, str]:
        """Run heudiconv; (exit status, its output)."""
        bids.mkdir(parents=True, exist_ok=True)
        cmd = self.command(bids, select, uids)
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=self.env)
        return proc.returncode, proc.stdout + proc.stderr

    def remove(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)
        for d in (self.work.parent, self.work.parent.parent):  # .convert_work/sub-X, .convert_work
            try:
                d.rmdir()
            except OSError:
                break
