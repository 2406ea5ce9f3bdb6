"""A heuristic used directly with heudiconv gives what ``llm-heuristics convert`` gives: the same
NIfTI/JSON files and the same IntendedFor / B0FieldIdentifier / B0FieldSource. Run as the README
says (``heudiconv --files TREE -f OUT/heuristic.py -c dcm2niix -b -o DIR``, no ``-s``: the
heuristic names each study's subject) on the whole two-subject synthetic tree."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from engine.cli import main

pytestmark = pytest.mark.slow

FIELDS = ("IntendedFor", "B0FieldIdentifier", "B0FieldSource")


def _files(bids: Path, sub: str) -> set[str]:
    return {
        str(p.relative_to(bids))
        for p in (bids / f"sub-{sub}").rglob("*")
        if p.is_file() and (p.name.endswith(".json") or ".nii" in p.name)
    }


def _fields(bids: Path, rel: str) -> dict:
    meta = json.loads((bids / rel).read_text())
    return {k: meta[k] for k in FIELDS if k in meta}


def test_direct_heudiconv_equals_convert(tmp_path):
    for b in ("heudiconv", "dcm2niix"):
        if shutil.which(b) is None:
            pytest.skip(f"{b} not installed")
    from engine.synth import generate_study

    generate_study(tmp_path, subjects=2, sessions=1, vendor="siemens", seed=0)
    dicom, out = tmp_path / "dicom", tmp_path / "OUT"
    assert main(["analyze", str(dicom), str(out), "--no-progress"]) == 0
    for step in ("group", "map", "generate"):
        assert main([step, str(out)]) == 0
    assert main(["convert", str(out), "--subject", "01", "--no-validator"]) in (0, 1)
    direct = tmp_path / "direct"
    res = subprocess.run(
        ["heudiconv", "--files", str(dicom), "-f", str(out / "heuristic.py")]
        + ["-c", "dcm2niix", "-b", "-o", str(direct)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert (direct / "sub-02").is_dir()  # the whole tree, each study under its own label
    ours, theirs = out / "bids", direct
    assert _files(ours, "01") == _files(theirs, "01")
    fmaps = 0
    for rel in sorted(_files(ours, "01")):
        if not rel.endswith(".json"):
            continue
        assert _fields(ours, rel) == _fields(theirs, rel), rel
        got = _fields(ours, rel)
        if "/fmap/" in rel:
            fmaps += 1
            assert got.get("IntendedFor") and got.get("B0FieldIdentifier"), rel
            # the mapping's intent, not heudiconv's "Force": no anatomical image is a target
            assert not [t for t in got["IntendedFor"] if "/anat/" in t], rel
        elif "/anat/" in rel:
            assert got == {}, rel
        elif rel.endswith("_bold.json"):
            assert got.get("B0FieldSource"), rel
    assert fmaps >= 4
