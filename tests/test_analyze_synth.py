"""Every synthetic series is found with the right subject/session and facts, in every layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.scan.pipeline import scan

synth = pytest.importorskip("engine.synth")


def _expected(study: Path) -> list[dict]:
    data = json.loads((study / "expected_bids.json").read_text())
    return data["series"] if isinstance(data, dict) else data


@pytest.mark.slow
@pytest.mark.parametrize(
    "layout,gzip,vendor,sessions",
    [
        ("nested", False, "siemens", 1),
        ("flat", False, "ge", 2),
        ("dicomdir", False, "philips", 1),
        ("nested", True, "mixed", 2),
        ("flat", True, "siemens", 1),
    ],
)
def test_synthetic_series_found(
    tmp_path: Path, layout: str, gzip: bool, vendor: str, sessions: int
) -> None:
    study = tmp_path / "study"
    synth.generate_study(
        study, subjects=2, sessions=sessions, layout=layout, gzip=gzip, vendor=vendor, seed=3
    )
    res = scan(study / "dicom", tmp_path / "out", n_cpus=2, progress=False)
    assert not [e for e in res.errors if "DICOMDIR" not in e[0]], res.errors
    ours = {s.series_uid: s for s in res.series}
    expected = _expected(study)
    assert len(ours) == len(expected)
    for e in expected:
        s = ours[e["series_uid"]]
        assert s.subject == "P" + e["subject"], e  # scan: PatientID; analyze: 01, 02...
        assert s.session == e.get("session", ""), e
        if "series_description" in e:
            assert s.series_description == e["series_description"]
        if e.get("series_number") is not None:
            assert s.series_number == e["series_number"]
        if e.get("n_files"):
            assert s.series_files == e["n_files"]
        if e.get("image_type"):
            assert list(s.image_type) == e["image_type"]
        if e.get("protocol_name"):
            assert s.protocol_name == e["protocol_name"]
        if e.get("n_volumes") and e.get("n_echoes", 1) == 1:
            assert s.n_volumes == e["n_volumes"], e
