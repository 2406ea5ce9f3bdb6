"""Synthetic studies carrying the vendor conventions of issue 13 (engine/synth/conventions.py):
XA ``_Pha`` phase, ND/NORM duplicates, a 2D planning scan, an aborted run with its SBRef, a
Philips B0 map, separate single-echo multiband runs. Mapped exactly as a curator would; the
Philips B0 map converts to fieldmap + magnitude."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from engine.cli import main
from engine.mapping import map_groups
from engine.workspace import read_series


def _study(tmp_path: Path, vendor: str, subjects: int = 2) -> tuple[Path, Path]:
    synth = pytest.importorskip("engine.synth")
    study, out = tmp_path / "study", tmp_path / "out"
    synth.generate_study(study, subjects=subjects, vendor=vendor, conventions=True)
    assert main(["-q", "analyze", str(study / "dicom"), str(out)]) == 0
    assert main(["-q", "group", str(out)]) == 0
    assert main(["-q", "map", str(out)]) == 0
    return study, out


@pytest.mark.parametrize("vendor", ["siemens", "philips", "ge"])
def test_convention_study_maps_exactly(tmp_path: Path, vendor: str) -> None:
    study, out = _study(tmp_path, vendor)
    expected = json.loads((study / "expected_bids.json").read_text())["series"]
    kinds = {e["kind"] for e in expected}
    assert {"bold_mb2", "bold_mb4", "sbref_aborted"} <= kinds
    if vendor == "siemens":
        assert {"planning", "t1w_nd", "xa_bold_mag", "xa_bold_pha"} <= kinds
    if vendor == "philips":
        assert "b0map" in kinds
    series = read_series(out)
    res = map_groups(series)
    by_uid = {s.series_uid: s for s in series}
    amap = {(a.subject, a.session, a.series_id): a for a in res.assignments}
    wrong = []
    for e in expected:
        s = by_uid[e["series_uid"]]
        a = amap[(s.subject, s.session, s.series_id)]
        got = sorted(([a.bids_path] + a.extra_paths) if a.bids_path else [])
        if got != sorted(e["paths"]):
            wrong.append((e["kind"], s.series_id, got or a.skip_reason, e["paths"] or e["skip"]))
        if e["kind"] == "t1w_nd":
            assert a.skip_reason.startswith("duplicate"), a
        if e["kind"] == "planning":
            assert a.skip_reason.startswith("planning scan"), a
    assert wrong == []
    # the evidence the TUI shows for each convention
    evidence = " ".join(e for m in res.mappings for e in m.evidence)
    if vendor == "siemens":
        assert "_Pha" in evidence and "ImageType differs only in NORM" in evidence
    if vendor == "philips":
        assert "Philips B0 map" in evidence
    assert main(["-q", "generate", str(out)]) == 0  # the heuristic reproduces the mapping


def test_synthetic_philips_b0_map_converts_to_fieldmap_and_magnitude(tmp_path: Path) -> None:
    """Classic Philips B0 map (magnitude + B0-map image per slice, the map as echo 2): dcm2niix
    writes _e1/_e2, heudiconv _fieldmap1/_fieldmap2; convert names them by their sidecars."""
    for b in ("heudiconv", "dcm2niix"):
        if shutil.which(b) is None:
            pytest.skip(f"{b} not installed")
    _study_dir, out = _study(tmp_path, "philips", subjects=1)
    assert main(["-q", "generate", str(out)]) == 0
    main(["convert", str(out), "--subject", "01"])
    fmap = out / "bids" / "sub-01" / "fmap"
    names = {p.name.split(".")[0] for p in fmap.glob("*.nii.gz")}
    assert "sub-01_fieldmap" in names and "sub-01_magnitude" in names, names
    assert not any(n.endswith(("_fieldmap1", "_fieldmap2")) for n in names), names
    meta = json.loads((fmap / "sub-01_fieldmap.json").read_text())
    assert meta["Units"] == "Hz" and "B0" in meta["ImageType"]
    report = (out / "conversion_report.txt").read_text()
    assert "renamed sub-01/fmap/sub-01_fieldmap" in report
    assert "SET ASIDE" not in report
