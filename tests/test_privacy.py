"""Issue 14: no identity leaves the private map.

The whole chain runs on a synthetic study with made-up identities (MRN-like PatientIDs, names,
birth dates, accession numbers, institution, station, operator and physicians; the first
patient's surname typed into a protocol name). Afterwards no file of OUT or of the BIDS dataset
holds any of them (bytes, case-insensitive), except ``OUT/private/`` (the subject map and the
header cache, 0700); the LLM prompts built for every group hold none of them either.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from engine.api import steps
from engine.api.types import AnalyzeParams, ConvertParams, GenerateParams, MapParams
from engine.llm.privacy import phi_values
from engine.llm.prompt import build_messages, prompt_text
from engine.private import PRIVATE_DIR, read_map
from engine.synth import fake_identity_values, generate_study
from engine.workspace import Workspace


def _leaks(root: Path, values: list[str]) -> list[tuple[str, str]]:
    found = []
    for dirpath, _dirs, files in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        if rel.parts[:1] == (PRIVATE_DIR,):
            continue
        for f in files:
            data = (Path(dirpath) / f).read_bytes().lower()
            found += [(str(rel / f), v) for v in values if v.lower().encode() in data]
    return found


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("privacy")
    m = generate_study(tmp / "syn", subjects=2, fake_identities=True)
    out = tmp / "out"
    steps.analyze(AnalyzeParams(input=str(m.root), out_dir=str(out), progress=False))
    steps.group(str(out))
    steps.map_(MapParams(out_dir=str(out)))
    steps.generate(GenerateParams(out_dir=str(out)))
    return m, out, fake_identity_values(m)


def test_the_fake_identities_are_in_the_dicom(study) -> None:
    m, _out, values = study
    assert {"MRN8675309X", "Zabrowski", "Helga", "Quillfeather", "Saint Quirinus Clinic"} <= set(
        values
    )
    assert any("Zabrowski" in r.protocol_name for r in m.series)  # typed into a protocol name


def test_neutral_labels_and_the_private_map(study) -> None:
    _m, out, _values = study
    series = Workspace(out).read_series()
    assert sorted({s.subject for s in series}) == ["01", "02"]
    assert {s.patient_id for s in series} == {"01", "02"}  # heudiconv's column: the label
    assert not any(s.accession_number or s.referring_physician_name for s in series)
    people = {p.patient_id: p.subject for p in read_map(out)}
    assert people == {"MRN8675309X": "01", "MRN8676420X": "02"}  # first study first
    private = out / PRIVATE_DIR
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    assert stat.S_IMODE((private / "subject_map.tsv").stat().st_mode) == 0o600
    assert (private / ".analyze_cache.sqlite").exists()
    assert not (out / ".analyze_cache.sqlite").exists()
    source = (out / "heuristic.py").read_text()
    assert "SUBJECTS = _subject_map()" in source and "MRN" not in source


def test_labels_are_stable_over_reruns_and_patientid_on_request(study, tmp_path: Path) -> None:
    m, out, _values = study
    before = (out / PRIVATE_DIR / "subject_map.tsv").read_text()
    steps.analyze(AnalyzeParams(input=str(m.root), out_dir=str(out), progress=False))
    assert (out / PRIVATE_DIR / "subject_map.tsv").read_text() == before
    # a new patient whose study came earlier still gets the next number
    other = tmp_path / "o"
    shutil.copytree(out / PRIVATE_DIR, other / PRIVATE_DIR)
    lines = before.splitlines()
    (other / PRIVATE_DIR / "subject_map.tsv").write_text(
        "\n".join([lines[0], lines[2].replace("\t02\t", "\t07\t")]) + "\n"
    )
    steps.analyze(AnalyzeParams(input=str(m.root), out_dir=str(other), progress=False))
    assert {p.patient_id: p.subject for p in read_map(other)} == {
        "MRN8676420X": "07",
        "MRN8675309X": "08",
    }
    pid = tmp_path / "pid"
    steps.analyze(
        AnalyzeParams(
            input=str(m.root), out_dir=str(pid), progress=False, subject_labels="patientid"
        )
    )
    assert {s.subject for s in Workspace(pid).read_series()} == {"MRN8675309X", "MRN8676420X"}


def test_prompts_hold_no_identity(study) -> None:
    _m, out, values = study
    ws = Workspace(out)
    series = ws.read_series()
    by_key = {s.key: s for s in series}
    phi = phi_values(series, out_dir=out)
    assert {"Zabrowski", "MRN8675309X", "19750101", "1975-01-01"} <= phi
    for g in ws.read_groups():
        members = [by_key[k] for k in g.series_keys]
        text = prompt_text(build_messages(g, members, None, context="Zabrowski study", phi=phi))
        low = text.lower()
        assert not [v for v in values if v.lower() in low], g.group_id


def test_no_identity_in_out(study) -> None:
    _m, out, values = study
    assert _leaks(out, values) == []
    assert _leaks(out / PRIVATE_DIR / "..", ["MRN8675309X"]) == []  # the walk skips private/


@pytest.mark.skipif(
    not (shutil.which("heudiconv") and shutil.which("dcm2niix")), reason="needs heudiconv+dcm2niix"
)
def test_convert_leaves_no_identity(study) -> None:
    _m, out, values = study
    res = steps.convert(ConvertParams(out_dir=str(out), subject="01", validator=False))
    assert res.written > 10, res.report
    # the T2w whose protocol name holds the surname is converted (the heuristic redacts it too)
    assert (out / "bids" / "sub-01" / "anat" / "sub-01_T2w.nii.gz").exists()
    assert _leaks(out, values) == []
    scans = (out / "bids" / "sub-01" / "sub-01_scans.tsv").read_text()
    assert scans.splitlines()[0] == "filename\tacq_time"
    assert not (out / "bids" / ".heudiconv" / "01").exists()


@pytest.mark.skipif(
    not (shutil.which("heudiconv") and shutil.which("dcm2niix")), reason="needs heudiconv+dcm2niix"
)
def test_keep_identifiers_keeps_them(study) -> None:
    """``convert --keep-identifiers``: the sidecars and scans.tsv as heudiconv wrote them (runs
    after the no-identity checks: it puts identities into the dataset on purpose)."""
    import json

    _m, out, values = study
    res = steps.convert(
        ConvertParams(out_dir=str(out), subject="02", validator=False, keep_identifiers=True)
    )
    assert res.written, res.report
    sub = out / "bids" / "sub-02"
    metas = [json.loads(p.read_text()) for p in sub.rglob("*.json")]
    assert any("InstitutionName" in m and "StationName" in m for m in metas)
    header = (sub / "sub-02_scans.tsv").read_text().splitlines()[0].split("\t")
    assert "operator" in header
    assert _leaks(sub, values)  # kept, as asked
    assert _leaks(out / "bids" / "sub-01", values) == []  # the other subject is untouched
