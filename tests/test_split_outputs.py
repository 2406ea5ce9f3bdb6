"""Series that dcm2niix splits into several files (issue 13): heudiconv numbers them
(``_magnitude1..8``, ``_fieldmap1/2``, ``_asl1/2``); convert names each by its sidecar."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from engine.cli import main
from engine.heuristic.multifile import SET_ASIDE_DIR, image_kind, name_split_outputs


def _write(folder: Path, name: str, meta: dict, volumes: int = 1) -> None:
    nib = pytest.importorskip("nibabel")
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    shape = (4, 4, 3) if volumes == 1 else (4, 4, 3, volumes)
    nib.save(nib.Nifti1Image(np.zeros(shape, dtype="int16"), np.eye(4)), folder / f"{name}.nii.gz")
    (folder / f"{name}.json").write_text(json.dumps(meta))


def _scans(sub: Path, names: list[str]) -> None:
    rows = ["filename\tacq_time"] + [f"{n}.nii.gz\t2020-01-01T10:00:00" for n in names]
    (sub / "sub-01_scans.tsv").write_text("\n".join(rows) + "\n")


def test_philips_enhanced_dual_echo_fieldmap_of_eight_images(tmp_path: Path) -> None:
    """2 echoes x magnitude/phase/real/imaginary, numbered by heudiconv in dcm2niix's order:
    magnitude1/2 + phase1/2 by EchoNumber and ImageType; real/imaginary set aside."""
    bids = tmp_path / "out" / "bids"
    fmap = bids / "sub-01" / "fmap"
    kinds = [("M", "MAGNITUDE"), ("P", "PHASE"), ("R", "REAL"), ("I", "IMAGINARY")]
    names = []
    n = 0
    for echo, te in ((2, 0.0066), (1, 0.0046)):  # the second echo first: order is not echo order
        for short, long in kinds:
            n += 1
            meta = {
                "ImageType": ["ORIGINAL", "PRIMARY", f"{short}_FFE", short, "FFE", long],
                "EchoNumber": echo,
                "EchoTime": te,
            }
            _write(fmap, f"sub-01_magnitude{n}", meta)
            names.append(f"fmap/sub-01_magnitude{n}")
    _scans(bids / "sub-01", names)
    renamed, aside = name_split_outputs(bids, "01", "", tmp_path / "out")
    got = {p.name.split(".")[0] for p in fmap.glob("*.nii.gz")}
    assert got == {"sub-01_magnitude1", "sub-01_magnitude2", "sub-01_phase1", "sub-01_phase2"}
    for suffix, echo, kind in (
        ("magnitude1", 1, "magnitude"),
        ("magnitude2", 2, "magnitude"),
        ("phase1", 1, "phase"),
        ("phase2", 2, "phase"),
    ):
        meta = json.loads((fmap / f"sub-01_{suffix}.json").read_text())
        assert meta["EchoNumber"] == echo and image_kind(meta) == kind, (suffix, meta)
    assert len(aside) == 4 and all("part" in why for why in aside.values()), aside
    moved = sorted(p.name for p in (tmp_path / "out" / SET_ASIDE_DIR).rglob("*.nii.gz"))
    assert len(moved) == 4
    scans = (bids / "sub-01" / "sub-01_scans.tsv").read_text()
    assert "phase1" in scans and "magnitude8" not in scans and len(scans.splitlines()) == 5
    assert len(renamed) >= 3


def test_two_echo_magnitude_series_is_left_as_heudiconv_wrote_it(tmp_path: Path) -> None:
    bids = tmp_path / "bids"
    fmap = bids / "sub-01" / "fmap"
    for e in (1, 2):
        meta = {"ImageType": ["ORIGINAL", "PRIMARY", "M", "ND", "MAGNITUDE"], "EchoNumber": e}
        _write(fmap, f"sub-01_magnitude{e}", meta)
    assert name_split_outputs(bids, "01", "") == ([], {})
    assert {p.name for p in fmap.glob("*.nii.gz")} == {
        "sub-01_magnitude1.nii.gz",
        "sub-01_magnitude2.nii.gz",
    }


def test_asl_series_with_its_m0_reference_becomes_asl_and_m0scan(tmp_path: Path) -> None:
    """GE 3D ASL / eASL: dcm2niix writes the labelled series and a 1-2 volume PD reference
    (ArterialSpinLabelingType CASL) from one series; heudiconv names them asl1/asl2."""
    bids = tmp_path / "bids"
    perf = bids / "sub-01" / "perf"
    _write(perf, "sub-01_asl1", {"ArterialSpinLabelingType": "CASL"}, volumes=2)
    _write(perf, "sub-01_asl2", {"ArterialSpinLabelingType": "PCASL"}, volumes=8)
    _scans(bids / "sub-01", ["perf/sub-01_asl1", "perf/sub-01_asl2"])
    renamed, aside = name_split_outputs(bids, "01", "")
    assert not aside
    assert {p.name for p in perf.glob("*.nii.gz")} == {
        "sub-01_asl.nii.gz",
        "sub-01_m0scan.nii.gz",
    }
    assert json.loads((perf / "sub-01_asl.json").read_text())["ArterialSpinLabelingType"] == "PCASL"
    scans = (bids / "sub-01" / "sub-01_scans.tsv").read_text()
    assert "perf/sub-01_m0scan.nii.gz" in scans and "asl1" not in scans
    assert sorted(new for _, new in renamed) == [
        "sub-01/perf/sub-01_asl.nii.gz",
        "sub-01/perf/sub-01_m0scan.nii.gz",
    ]


def test_real_philips_b0_map_converts_to_fieldmap_and_magnitude(shared_data, tmp_path) -> None:
    """dcm_qa_fmap's Philips B0 map (one enhanced file: 32 magnitude + 32 B0-map frames,
    ImageType MIXED): dcm2niix writes _e1 and _e2_fieldmaphz, heudiconv _fieldmap1/2; the
    result is fieldmap (Units Hz) + magnitude and the dataset validates."""
    for b in ("heudiconv", "dcm2niix"):
        if shutil.which(b) is None:
            pytest.skip(f"{b} not installed")
    out = tmp_path / "OUT"
    src = shared_data / "dicom" / "dcm_qa_fmap" / "In" / "Philips"
    assert main(["analyze", str(src), str(out), "--no-progress"]) == 0
    for step in ("group", "map", "generate"):
        assert main([step, str(out)]) == 0
    proposal = (out / "mapping_proposals.tsv").read_text()
    assert "Philips B0 map" in proposal and "_fieldmaphz" in proposal  # the evidence shown
    assert main(["convert", str(out), "--subject", "01"]) == 0
    fmap = out / "bids" / "sub-01" / "fmap"
    assert {p.name for p in fmap.glob("*.nii.gz")} == {
        "sub-01_fieldmap.nii.gz",
        "sub-01_magnitude.nii.gz",
    }
    assert json.loads((fmap / "sub-01_fieldmap.json").read_text())["Units"] == "Hz"
    report = (out / "conversion_report.txt").read_text()
    assert "renamed" in report and "_fieldmap2" in report
    if shutil.which("bids-validator"):
        assert "bids-validator: 0 error(s)" in report, report


def test_a_bold_of_one_volume_is_set_aside_with_the_reason(tmp_path: Path) -> None:
    """heudiconv_testdata's MOSAIC 'resting' says 2 volumes in its header and dcm2niix writes
    one 3-D image: the validator's BOLD_NOT_4D. Set aside (kept), scans.tsv follows."""
    from engine.heuristic.multifile import set_aside_3d_bold

    out = tmp_path / "out"
    sub = out / "bids" / "sub-01"
    func = sub / "func"
    _write(func, "sub-01_task-rest_bold", {"RepetitionTime": 2.0}, volumes=1)
    _write(func, "sub-01_task-motor_bold", {"RepetitionTime": 2.0}, volumes=5)
    _write(func, "sub-01_task-motor_sbref", {"RepetitionTime": 2.0}, volumes=1)
    _scans(sub, ["func/sub-01_task-rest_bold", "func/sub-01_task-motor_bold"])
    aside = set_aside_3d_bold(out / "bids", "01", "", out)
    assert list(aside) == ["sub-01/func/sub-01_task-rest_bold.nii.gz"]
    assert "one volume" in aside["sub-01/func/sub-01_task-rest_bold.nii.gz"]
    kept = out / SET_ASIDE_DIR / "sub-01" / "func"
    assert sorted(p.name for p in kept.iterdir()) == [
        "sub-01_task-rest_bold.json",
        "sub-01_task-rest_bold.nii.gz",
    ]
    assert sorted(p.name for p in func.iterdir()) == [
        "sub-01_task-motor_bold.json",
        "sub-01_task-motor_bold.nii.gz",
        "sub-01_task-motor_sbref.json",
        "sub-01_task-motor_sbref.nii.gz",
    ]
    scans = (sub / "sub-01_scans.tsv").read_text()
    assert "rest" not in scans and "func/sub-01_task-motor_bold.nii.gz" in scans
    assert set_aside_3d_bold(out / "bids", "01", "", out) == {}  # nothing left to move
