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
    ("vendor", "layout", "sessions", "gzip", "reproin"),
    [
        ("siemens", "nested", 1, False, False),
        ("mixed", "flat", 2, False, False),
        ("philips", "dicomdir", 1, False, True),
        ("ge", "nested", 1, True, False),
    ],
)
def test_synthetic_study_converts_and_validates(tmp_path, vendor, layout, sessions, gzip, reproin):
    _need("heudiconv", "dcm2niix")
    _need_module("engine.synth", "generate_study")
    from engine.synth import generate_study

    generate_study(
        tmp_path,
        subjects=2,
        sessions=sessions,
        layout=layout,
        gzip=gzip,
        vendor=vendor,
        reproin=reproin,
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
        # a multi-echo target is listed with all its echoes
        for target in meta["IntendedFor"]:
            if "_echo-1_" in target:
                assert target.replace("_echo-1_", "_echo-2_") in meta["IntendedFor"], js
    if shutil.which("bids-validator"):
        from engine.heuristic.convert import run_bids_validator

        verdict = run_bids_validator(bids)
        assert verdict.errors == [], verdict.errors
    # every subject/session run keeps its report; the study report holds them all
    report = (out / "conversion_report.txt").read_text()
    for sub, ses in cells:
        where = f"sub-{sub}" + (f" ses-{ses}" if ses else "")
        assert f"{where}: OK" in report, report
        name = f"sub-{sub}" + (f"_ses-{ses}" if ses else "") + ".txt"
        assert (out / "conversion_reports" / name).read_text().startswith(f"{where}: OK")
    assert not list((tmp_path / "dicom").rglob(".heudiconv"))


def test_cross_subject_heuristic(tmp_path):
    """A heuristic generated from subject P02 alone places P01 (repeats its T1w) as the study does."""
    _need_module("engine.synth", "generate_study")
    _need_module("engine.commands.analyze")
    from engine.heuristic.validate import load_heuristic, validate_module
    from engine.mapping.effective import effective
    from engine.synth import generate_study
    from engine.workspace import Workspace

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
    eff = effective(Workspace(full))
    res = validate_module(
        load_heuristic(one / "heuristic.py"), eff.series, eff.groups, eff.mappings, eff.assignments
    )
    # P02 has no repeated T1w, so its heuristic cannot know the study numbers T1w runs;
    # everything else must land exactly where the full-study mapping says.
    bad = [c for c in res.problems if "_T1w" not in (c.expected + "".join(c.produced))]
    assert not bad, res.format_diff()


# what a curator knows about this study's ASL that DICOM does not say (Siemens ep2d_pcasl:
# an M0 volume first, then label/control pairs; no background suppression in this 2D EPI)
XA30_ASL = {
    "asl": {
        "M0Type": "Included",
        "BackgroundSuppression": False,
        "aslcontext": {"head": ["m0scan"], "repeat": ["label", "control"]},
    }
}


@pytest.fixture(scope="module")
def xa30_out(shared_data, tmp_path_factory) -> tuple[Path, Path]:
    """dcm_qa_xa30 through analyze..generate once; each test converts a copy of OUT."""
    _need("heudiconv", "dcm2niix")
    dicom = shared_data / "dicom" / "dcm_qa_xa30" / "In"
    if not dicom.is_dir():
        pytest.skip("dcm_qa_xa30 not present")
    out = tmp_path_factory.mktemp("xa30") / "OUT"
    _pipeline(dicom, out)
    return dicom, out


def _write_analyze_input(out: Path, dicom: Path) -> None:
    """What ``analyze`` records of its input (written here where this analyze does not yet)."""
    if not (out / "analyze_input.json").exists():
        (out / "analyze_input.json").write_text(json.dumps({"inputs": [str(dicom.resolve())]}))


def _xa30_convert(xa30_out, tmp_path, *extra: str) -> tuple[Path, list[int], str]:
    from engine.workspace import read_series

    dicom, template = xa30_out
    out = tmp_path / "OUT"
    shutil.copytree(template, out)
    rcs = [
        main(["convert", str(out), "--subject", sub, *extra])
        for sub in sorted({s.subject for s in read_series(out)})
    ]
    report = (out / "conversion_report.txt").read_text()
    assert "heudiconv exited" not in report, report
    assert not list(dicom.rglob(".heudiconv"))
    assert not (out / "__pycache__").exists()
    return out, rcs, report


def test_dcm_qa_xa30(xa30_out, tmp_path):
    """With the study's ASL metadata (as a user writes it) every series converts and validates."""
    meta = tmp_path / "study_asl.json"
    meta.write_text(json.dumps(XA30_ASL))
    dicom = xa30_out[0]
    out, rcs, report = _xa30_convert(
        xa30_out, tmp_path, "--dicom-dir", str(dicom), "--sidecar-metadata", str(meta)
    )
    assert rcs == [0] * len(rcs), report
    placed = _placed(out / "bids")
    assert any(p.endswith("_T1w") for p in placed)
    assert any(p.endswith("_bold") for p in placed)
    assert any("/dwi/" in p for p in placed)
    (asl,) = [p for p in placed if p.endswith("_asl")]
    side = json.loads((out / "bids" / (asl + ".json")).read_text())
    assert side["M0Type"] == "Included" and side["BackgroundSuppression"] is False
    assert side["RepetitionTimePreparation"] == side["RepetitionTime"]  # derived, Siemens
    assert side["TotalAcquiredPairs"] == 3  # 7 volumes: m0scan + 3 label/control pairs
    ctx = (out / "bids" / (asl[: -len("_asl")] + "_aslcontext.tsv")).read_text().split()
    assert ctx == ["volume_type", "m0scan"] + ["label", "control"] * 3
    assert "RepetitionTimePreparation derived" in report
    assert "LEFT OUT" not in report
    if shutil.which("bids-validator"):
        assert "bids-validator: 0 error(s)" in report, report


def test_dcm_qa_xa30_without_asl_metadata(xa30_out, tmp_path):
    """Without it the ASL is left out (the dataset still validates), named with the exact fix."""
    # no --dicom-dir: convert finds the DICOM through the input analyze records
    _write_analyze_input(xa30_out[1], xa30_out[0])
    out, rcs, report = _xa30_convert(xa30_out, tmp_path)
    assert rcs == [1] * len(rcs), report
    placed = _placed(out / "bids")
    assert not any(p.endswith("_asl") for p in placed)
    assert any(p.endswith("_bold") for p in placed)
    assert "LEFT OUT " in report and "_asl.nii" in report
    for name in ("M0Type", "BackgroundSuppression", "aslcontext", "TotalAcquiredPairs"):
        assert f"missing required {name}" in report, report
    assert "RepetitionTimePreparation derived" in report  # the header part is still filled
    assert "missing required RepetitionTimePreparation" not in report
    assert "sidecar_metadata.json" in report and '"M0Type": "Separate|Included' in report
    assert list((out / "bids_incomplete").rglob("*_asl.nii*"))
    scans = "".join(p.read_text() for p in (out / "bids").rglob("*_scans.tsv"))
    assert "_asl" not in scans
    for js in (out / "bids").rglob("fmap/*.json"):
        assert not any("_asl" in t for t in json.loads(js.read_text()).get("IntendedFor", []))
    if shutil.which("bids-validator"):
        assert "bids-validator: 0 error(s)" in report, report


def test_ge_b0_maps_convert_to_fieldmap_and_magnitude(shared_data, tmp_path):
    """GE B0map series (magnitude + field map in Hz in one series): heudiconv numbers the two
    images _fieldmap1/_fieldmap2; convert names them _magnitude/_fieldmap and the dataset
    validates."""
    _need("heudiconv", "dcm2niix")
    out = tmp_path / "OUT"
    _pipeline(shared_data / "dicom" / "dcm_qa_fmap" / "In" / "GE", out)
    assert main(["convert", str(out), "--subject", "02"]) == 0  # PatientID geservice
    placed = _placed(out / "bids")
    assert {p.rsplit("_", 1)[-1] for p in placed} == {"fieldmap", "magnitude"}, placed
    assert len(placed) == 4  # two B0 map series, each a field map and its magnitude
    for js in (out / "bids").glob("sub-*/fmap/*_fieldmap.json"):
        assert json.loads(js.read_text())["Units"] == "Hz"
    scans = next((out / "bids").glob("sub-*/*_scans.tsv")).read_text()
    assert "_fieldmap1" not in scans and "_magnitude" in scans
    if shutil.which("bids-validator"):
        from engine.heuristic.convert import run_bids_validator

        assert run_bids_validator(out / "bids").errors == []
