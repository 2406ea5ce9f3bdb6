"""End to end: synthetic study -> analyze -> map --backend llama-cpp with a tiny random GGUF.

Every group must end with a schema-valid mapping (the model's, or the rules' with the recorded
reason), each asked group's rationale stream is saved, and no PHI value of the DICOM headers
(PatientName, PatientID, PatientBirthDate, AccessionNumber) appears in any prompt.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures_models import make_tiny_gguf

pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed ([llamacpp] extra)")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    synth = pytest.importorskip("engine.synth", reason="engine.synth not available yet")
    from engine.cli import main

    root = tmp_path_factory.mktemp("e2e")
    synth.generate_study(root / "study", subjects=1, sessions=1, vendor="siemens", seed=0)
    out = root / "out"
    if main(["analyze", str(root / "study" / "dicom"), str(out)]) != 0:
        pytest.skip("analyze failed")
    return root


def _phi_values(dicom_dir: Path) -> set[str]:
    import pydicom

    values: set[str] = set()
    for f in dicom_dir.rglob("*"):
        if not f.is_file():
            continue
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True, force=True)
        except Exception:  # noqa: BLE001, S112 - non-DICOM files in the tree
            continue
        for tag in (
            "PatientName",
            "PatientID",
            "PatientBirthDate",
            "AccessionNumber",
            "ReferringPhysicianName",
        ):
            v = str(ds.get(tag, "") or "").strip()
            if len(v) >= 3:
                values.add(v)
                values.update(p for p in v.replace("^", " ").split() if len(p) >= 3)
    return values


def test_map_with_tiny_gguf(study, monkeypatch):
    from engine.bids_schema import get_schema
    from engine.cli import main

    out = study / "out"
    gguf = make_tiny_gguf(study / "tiny.gguf")
    # ask about the less certain groups only (each costs ~2 s with a byte-level vocab on 2 cores)
    monkeypatch.setenv("LLMH_CONFIDENCE_THRESHOLD", "0.86")
    monkeypatch.setenv("LLMH_CONFIG", str(study / "none.toml"))
    rc = main(
        [
            "map",
            str(out),
            "--backend",
            "llama-cpp",
            "--model",
            str(gguf),
            "--context",
            "healthy volunteers, n-back task",
        ]
    )
    assert rc == 0
    llm = out / "llm"
    rows = [json.loads(line) for line in (llm / "answers.jsonl").read_text().splitlines()]
    assert rows, "the model was asked about no group"
    schema = get_schema()
    for row in rows:
        m = row["mapping"]
        if m["skip_reason"]:
            assert not m["datatype"]
        else:
            assert schema.check(m["datatype"], m["suffix"], m["entities"]) == [], m
        if m["source"] == "rules":
            assert row["error"] and any("LLM not used" in e for e in m["evidence"])
        else:
            assert m["source"] == "llm"
        gid = row["group_id"]
        assert (llm / "rationales" / f"{gid}.txt").exists()
        assert (llm / "prompts" / f"{gid}.txt").exists()
    phi = _phi_values(study / "study" / "dicom")
    assert phi, "the synthetic study should carry PHI to look for"
    for prompt in (llm / "prompts").glob("*.txt"):
        text = prompt.read_text().lower()
        leaked = sorted(v for v in phi if v.lower() in text)
        assert not leaked, f"{prompt.name} contains PHI {leaked}"
    assert (out / "aggregated_dicominfo_mapped.tsv").exists()
    # a second run reuses the cached answers: same mappings, nothing asked again
    first = (out / "aggregated_dicominfo_mapped.tsv").read_text()
    assert (
        main(
            [
                "map",
                str(out),
                "--backend",
                "llama-cpp",
                "--model",
                str(gguf),
                "--context",
                "healthy volunteers, n-back task",
            ]
        )
        == 0
    )
    rows2 = [json.loads(line) for line in (llm / "answers.jsonl").read_text().splitlines()]
    assert all(r.get("cached") for r in rows2 if not r["error"])
    assert (out / "aggregated_dicominfo_mapped.tsv").read_text() == first
