"""One bad series never loses a subject (issue 13): a header value heudiconv cannot parse is
repaired in the staged copy; a series dcm2niix cannot read is reported failed (cause, fix) while
the others convert. The input is never written. One synthetic subject, no validator."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from engine.cli import main

pytestmark = pytest.mark.slow

BAD_DATES = "004_t2_tse_tra"  # -> anat/T2w
BAD_PIXELS = "005_t2_tirm_tra_dark-fluid"  # -> anat/FLAIR


def _need() -> None:
    for b in ("heudiconv", "dcm2niix"):
        if shutil.which(b) is None:
            pytest.skip(f"{b} not installed")


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _series_dir(dicom: Path, name: str) -> Path:
    (d,) = [p for p in dicom.rglob(name) if p.is_dir()]
    return d


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> tuple[Path, Path]:
    """One synthetic subject through analyze..generate once: (its DICOM, OUT)."""
    _need()
    from engine.synth import generate_study

    root = tmp_path_factory.mktemp("robust")
    generate_study(root, subjects=1, sessions=1, vendor="siemens", seed=0)
    out = root / "OUT"
    assert main(["analyze", str(root / "dicom"), str(out), "--no-progress"]) == 0
    for step in ("group", "map", "generate"):
        assert main([step, str(out)]) == 0
    return root / "dicom", out


def _copy(study, tmp_path: Path) -> tuple[Path, Path]:
    dicom, template = study
    inp, out = tmp_path / "dicom", tmp_path / "OUT"
    shutil.copytree(dicom, inp)
    shutil.copytree(template, out)
    return inp, out


def _subject(out: Path) -> str:
    from engine.workspace import read_series

    (sub,) = {s.subject for s in read_series(out)}
    return sub


def _convert(out: Path, inp: Path) -> tuple[int, str]:
    sub = _subject(out)
    rc = main(["convert", str(out), "--subject", sub, "--dicom-dir", str(inp), "--no-validator"])
    return rc, (out / "conversion_report.txt").read_text()


def _placed(bids: Path) -> set[str]:
    return {p.name.split(".nii")[0] for p in bids.glob("sub-*/**/*.nii*")}


def test_unparseable_dates_are_repaired_in_staging(study, tmp_path):
    import pydicom

    inp, out = _copy(study, tmp_path)
    for f in sorted(_series_dir(inp, BAD_DATES).iterdir()):
        ds = pydicom.dcmread(f)
        ds.SeriesDate, ds.SeriesTime, ds.AcquisitionDate = "***", "garbage", "xx"
        ds.save_as(f)
    before = _hashes(inp)
    rc, report = _convert(out, inp)
    sub = _subject(out)
    assert rc == 0, report
    assert report.startswith(f"sub-{sub}: OK"), report
    assert "SeriesDate '***' replaced by '20240304' in the staged copy only" in report
    assert "SeriesTime 'garbage' replaced by" in report
    assert "AcquisitionDate 'xx' replaced by" in report
    assert f"converted 4-t2_tse_tra: sub-{sub}/anat/sub-{sub}_T2w.nii.gz" in report
    assert " 0 failed" in report and "FAILED" not in report
    placed = _placed(out / "bids")
    assert f"sub-{sub}_T2w" in placed and f"sub-{sub}_FLAIR" in placed
    assert {f"sub-{sub}_magnitude1", f"sub-{sub}_magnitude2"} <= placed
    assert _hashes(inp) == before  # the input is byte-identical
    assert not (out / ".convert_work").exists()


def test_unreadable_series_fails_alone(study, tmp_path):
    import pydicom

    from engine.api import steps
    from engine.api.types import ConvertParams

    inp, out = _copy(study, tmp_path)
    for f in sorted(_series_dir(inp, BAD_PIXELS).iterdir()):
        ds = pydicom.dcmread(f)
        ds.PixelData = ds.PixelData[:100]  # truncated: dcm2niix writes no image
        ds.save_as(f)
    before = _hashes(inp)
    sub = _subject(out)
    res = steps.convert(
        ConvertParams(out_dir=str(out), subject=sub, dicom_dir=str(inp), validator=False)
    )
    report = (out / "conversion_report.txt").read_text()
    assert not res.ok
    assert report.startswith(f"sub-{sub}: INCOMPLETE"), report
    assert "FAILED 5-t2_tirm_tra_dark-fluid: dcm2niix wrote no image" in report
    assert "fix: " in report and " 1 failed" in report
    (failed,) = res.series_failed
    assert failed.startswith(f"sub-{sub} 5-t2_tirm_tra_dark-fluid: dcm2niix wrote no image")
    assert "fix:" in failed
    assert res.converted_series == 21 and res.written == 24
    assert any(s.startswith(f"sub-{sub} 1-localizer: ") for s in res.series_skipped)
    placed = {p.removeprefix(f"sub-{sub}_") for p in _placed(out / "bids")}
    assert "FLAIR" not in placed
    assert {"T2w", "task-rest_bold", "dir-AP_dwi"} <= placed
    assert _hashes(inp) == before


def test_dry_run_lists_every_file_and_skip_reasons(study, capsys):
    _, out = study
    assert main(["convert", str(out), "--subject", _subject(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    for name in ("magnitude1", "magnitude2", "echo-1_bold", "echo-2_bold", "echo-3_bold"):
        assert f"_{name}.nii.gz" in text, text
    assert "(not converted: localizer" in text
    assert "(not converted)" not in text
