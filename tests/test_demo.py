"""``llm-heuristics demo DIR --no-tui``: the whole pipeline on one synthetic subject."""

from __future__ import annotations

import json
import shutil

import pytest

from engine.cli import main

pytestmark = pytest.mark.slow


def test_demo_end_to_end(tmp_path, capsys):
    for b in ("heudiconv", "dcm2niix"):
        if shutil.which(b) is None:
            pytest.skip(f"{b} not installed")
    work = tmp_path / "demo"
    assert main(["demo", str(work), "--no-tui", "--subjects", "1"]) == 0
    printed = capsys.readouterr().out
    out, bids = work / "out", work / "out" / "bids"
    expected = json.loads((work / "study" / "expected_bids.json").read_text())["series"]
    want = {p for e in expected for p in e["paths"]}
    placed = {str(p.relative_to(bids)).split(".nii")[0] for p in bids.glob("sub-*/**/*.nii*")}
    assert placed == want
    assert "demo: done" in printed and f"{len(placed)} NIfTI file(s) in {bids}" in printed
    report = (out / "conversion_report.txt").read_text()
    assert "LEFT OUT" not in report
    if shutil.which("bids-validator"):
        assert "validator:  bids-validator: 0 error(s)" in printed, report
    else:
        assert "not installed" in printed
    assert not (out / "__pycache__").exists()
    assert not list((work / "study").rglob(".heudiconv"))
