"""End to end: DICOM -> analyze/group/map -> generate -> validate -> convert (heudiconv, dcm2niix)
-> bids-validator. Skips when a binary or a pipeline piece is missing. Kept small (CI: 2 cores)."""

from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path

import pytest

from engine.cli import main

pytestmark = pytest.mark.slow


def _need(*bins: str) -> None:
    for b in bins:
        if shutil.which(b) is None:
            pytest.skip(f"{b} not installed")


def _need_module(name: str, attr: str = "") -> None:
    try:
        mod = importlib.import_module(name)
    except ImportError:
        pytest.skip(f"{name} not available yet")
    if attr and not hasattr(mod, attr):
        pytest.skip(f"{name}.{attr} not available yet")


def _pipeline(dicom: Path, out: Path) -> None:
    for mod in ("engine.commands.analyze", "engine.commands.group", "engine.commands.map"):
        _need_module(mod)
    assert main(["analyze", str(dicom), str(out), "--no-progress"]) == 0
    assert main(["group", str(out)]) == 0
    assert main(["map", str(out)]) == 0
    assert main(["generate", str(out)]) == 0  # generate also validates: 0 = no diff
    assert main(["validate", str(out)]) == 0


def _placed(bids: Path) -> set[str]:
    return {str(p.relative_to(bids)).split(".nii")[0] for p in bids.glob("sub-*/**/*.nii*")}


@pytest.mark.parametrize(
    ("vendor", "layout", "sessions"),
    [("siemens", "nested", 1), ("mixed", "flat", 2)],
)
def test_synthetic_study_converts_and_validates(tmp_path, vendor, layout, sessions):
    _need("heudiconv", "dcm2niix")
    _need_module("engine.synth", "generate_study")
    from engine.synth import generate_study

    generate_study(
        tmp_path,
        subjects=2,
        sessions=sessions,
        layout=layout,
        gzip=False,
        vendor=vendor,
        reproin=False,
        seed=0,
    )
    out = tmp_path / "OUT"
    _pipeline(tmp_path / "dicom", out)
    expected = json.loads((tmp_path / "expected_bids.json").read_text())["series"]
    bids = out / "bids"
    cells = sorted({(e["subject"], e["session"]) for e in expected})
    for sub, ses in cells:
        args = [
            "convert",
            str(out),
            "--subject",
            sub,
            "--dicom-dir",
            str(tmp_path / "dicom"),
            "--no-validator",
        ]
        if ses:
            args += ["--session", ses]
        assert main(args) == 0
    want = {p for e in expected for p in e["paths"]}
    assert _placed(bids) == want
    # field maps carry IntendedFor
    for js in bids.glob("sub-*/**/fmap/*.json"):
        meta = json.loads(js.read_text())
        assert meta.get("IntendedFor"), js
        for target in meta["IntendedFor"]:
            assert (bids / js.relative_to(bids).parts[0] / target).exists(), target
    if shutil.which("bids-validator"):
        from engine.heuristic.convert import run_bids_validator

        verdict = run_bids_validator(bids)
        assert verdict.errors == [], verdict.errors
    assert (out / "conversion_report.txt").exists()
    assert not list((tmp_path / "dicom").rglob(".heudiconv"))


def test_cross_subject_heuristic(tmp_path):
    """A heuristic generated from subject P02 alone places P01 (repeats its T1w) as the study does."""
    _need_module("engine.synth", "generate_study")
    _need_module("engine.commands.analyze")
    from engine.heuristic.validate import validate
    from engine.synth import generate_study

    generate_study(
        tmp_path,
        subjects=2,
        sessions=1,
        layout="nested",
        gzip=False,
        vendor="siemens",
        reproin=False,
        seed=0,
    )
    full = tmp_path / "OUT"
    _pipeline(tmp_path / "dicom", full)
    one = tmp_path / "ONE"
    sub_dir = next(p for p in (tmp_path / "dicom").iterdir() if "P02" in p.name or "02" in p.name)
    _pipeline(sub_dir, one)
    res = validate(full, one / "heuristic.py")
    # P02 has no repeated T1w, so its heuristic cannot know the study numbers T1w runs;
    # everything else must land exactly where the full-study mapping says.
    bad = [c for c in res.problems if "_T1w" not in (c.expected + "".join(c.produced))]
    assert not bad, res.format_diff()


def test_dcm_qa_xa30(shared_data, tmp_path):
    _need("heudiconv", "dcm2niix")
    dicom = shared_data / "dicom" / "dcm_qa_xa30" / "In"
    if not dicom.is_dir():
        pytest.skip("dcm_qa_xa30 not present")
    out = tmp_path / "OUT"
    _pipeline(dicom, out)
    from engine.workspace import read_series

    subjects = sorted({s.subject for s in read_series(out)})
    for sub in subjects:
        assert main(["convert", str(out), "--subject", sub, "--dicom-dir", str(dicom)]) in (0, 1)
    report = (out / "conversion_report.txt").read_text()
    assert "heudiconv exited" not in report, report
    placed = _placed(out / "bids")
    assert any(p.endswith("_T1w") for p in placed)
    assert any(p.endswith("_bold") for p in placed)
    assert any("/dwi/" in p for p in placed)
    if shutil.which("bids-validator"):
        assert "bids-validator: 0 error(s)" in report, report
    assert not list(dicom.rglob(".heudiconv"))
