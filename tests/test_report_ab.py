"""A/B (image only vs image + EHR): the paired bootstrap itself, and end to end on the 10 NIH
radiographs with canned replies where the EHR arm is known to be better."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine.api.report_draft import ABParams, report_ab
from engine.errors import UserError
from engine.report.draft import ab
from engine.report.labels import CHEXPERT_LABELS
from tests.draft_helpers import (
    backend_params,
    canned,
    is_labels_turn,
    labels_json,
    nih_images,
    prompt_text,
    sha,
)


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path_factory):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("LLMH_NLTK_DATA", str(tmp_path_factory.getbasetemp() / "nltk_data"))


# --- the statistics -----------------------------------------------------------------------------


def test_mean_delta_covers_the_true_difference_and_is_seeded():
    rng = np.random.default_rng(1)
    a = rng.normal(0.4, 0.1, 200)
    b = a + 0.3 + rng.normal(0, 0.05, 200)  # paired: B is A plus 0.3 on average
    r = ab.mean_delta("x", a, b, n_boot=3000, seed=7)
    assert r.delta == pytest.approx(np.mean(b - a)) and r.covers(0.3) and r.low > 0.25
    assert r.high - r.low < 0.05  # pairing removes the between-case spread of A
    assert ab.mean_delta("x", a, b, n_boot=3000, seed=7) == r
    assert ab.mean_delta("x", a, b, n_boot=3000, seed=8) != r


def test_interval_coverage_is_near_nominal():
    rng = np.random.default_rng(0)
    hits = 0
    trials = 300
    for t in range(trials):
        a = rng.normal(0, 1, 60)
        b = a + 0.2 + rng.normal(0, 0.5, 60)
        hits += ab.mean_delta("x", a, b, n_boot=1000, seed=t).covers(0.2)
    assert 0.88 <= hits / trials <= 0.99


def test_micro_f1_delta_matches_the_metrics_module():
    from engine.report.metrics import label_f1

    rng = np.random.default_rng(3)

    def rows(n):
        return [{k: rng.choice([1, 0, -1, None]) for k in CHEXPERT_LABELS} for _ in range(n)]

    ref, pa, pb = rows(40), rows(40), rows(40)
    ca, cb = ab.counts(pa, ref, CHEXPERT_LABELS), ab.counts(pb, ref, CHEXPERT_LABELS)
    r = ab.micro_f1_delta("f1", ca, cb, n_boot=500, seed=1)
    assert r.a == pytest.approx(label_f1(pa, ref)["micro_f1"])
    assert r.b == pytest.approx(label_f1(pb, ref)["micro_f1"])
    assert r.low <= r.delta <= r.high
    with pytest.raises(ValueError, match="counts must be"):
        ab.micro_f1_delta("f1", ca, cb[:, :2])


# --- end to end ---------------------------------------------------------------------------------

REFS = [
    "Cardiomegaly with small bilateral pleural effusions.",
    "Right lower lobe pneumonia.",
    "Large right pneumothorax.",
    "Mild pulmonary edema.",
    "Left basilar atelectasis.",
    "Cardiomegaly. No pneumothorax.",
    "Right upper lobe consolidation.",
    "Small left pleural effusion.",
    "Moderate cardiomegaly without edema.",
    "Fracture of the left sixth rib.",
]
# image only: normal-sounding impressions (no positive finding), sharing a few words
IMAGE_ONLY = [
    "No acute cardiopulmonary abnormality.",
    "Lungs are clear. No lower lobe opacity.",
    "No pneumothorax.",
    "Heart size is normal.",
    "Lungs are clear bilaterally.",
    "No pneumothorax. Heart size is normal.",
    "No focal opacity in the right lung.",
    "No left pleural effusion.",
    "No edema.",
    "No acute osseous abnormality of the ribs.",
]
# with the EHR: the reference itself, or nearly
WITH_EHR = [*REFS[:8], "Moderate cardiomegaly.", REFS[9]]


def _rouge(pred: str, ref: str) -> float:
    from rouge_score import rouge_scorer

    return (
        rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True).score(ref, pred)["rougeL"].fmeasure
    )


def test_ab_on_canned_replies_covers_the_known_difference(tmp_path):
    pytest.importorskip("ollama")
    pytest.importorskip("rouge_score")
    imgs = nih_images()
    if len(imgs) < 10:
        pytest.skip("the 10 NIH radiographs are not in ../shared/data/cxr/nih_images")
    index = {sha(p): i for i, p in enumerate(imgs)}
    ehr = tmp_path / "ehr.jsonl"
    ehr.write_text(
        "".join(
            json.dumps({"image": p.name, "age": 50 + i, "sex": "F", "indication": "dyspnoea"})
            + "\n"
            for i, p in enumerate(imgs)
        )
    )
    refs = tmp_path / "refs.jsonl"
    refs.write_text(
        "".join(
            json.dumps({"id": p.stem, "text": r}) + "\n" for p, r in zip(imgs, REFS, strict=True)
        )
    )

    def respond(key: str, body: dict) -> str:
        i = index[key]
        with_ehr = "Patient data:" in prompt_text(body)
        if is_labels_turn(body):
            return labels_json(["R06.0"] if with_ehr else None, No_Finding=1)
        return "Impression: " + (WITH_EHR[i] if with_ehr else IMAGE_ONLY[i])

    out = tmp_path / "ab"
    params = ABParams(
        images=[str(imgs[0].parent)], ehr=str(ehr), refs=str(refs), output=str(out), seed=3
    )
    with canned(respond) as (url, bodies):
        for k, v in backend_params("ollama", url).items():
            setattr(params, k, v)
        res = report_ab(params)
        n_requests = len(bodies)
        again = report_ab(params)  # both arms resume: no model request, same table
        assert len(bodies) == n_requests and again.table == res.table
    rows = {r.metric: r for r in res.table}
    assert set(rows) == {"bleu4", "rouge_l", "meteor", "bertscore_f1", "label_micro_f1"}
    known_rouge = float(
        np.mean(
            [
                _rouge(b, r) - _rouge(a, r)
                for a, b, r in zip(IMAGE_ONLY, WITH_EHR, REFS, strict=True)
            ]
        )
    )
    assert rows["rouge_l"].delta == pytest.approx(known_rouge)
    assert rows["rouge_l"].low <= known_rouge <= rows["rouge_l"].high and rows["rouge_l"].low > 0
    # the image-only impressions have no positive finding: label micro F1 goes from 0 to 1
    assert rows["label_micro_f1"].image_only == 0.0
    assert rows["label_micro_f1"].with_ehr == pytest.approx(1.0)
    assert rows["label_micro_f1"].low <= 1.0 <= rows["label_micro_f1"].high
    for r in res.table:
        assert r.delta > 0 and r.low <= r.delta <= r.high, r
    assert res.n == 10 and "paired bootstrap" in res.text
    cases = [json.loads(x) for x in Path(res.cases_path).read_text().splitlines()]
    assert len(cases) == 10
    c0 = next(c for c in cases if c["id"] == imgs[0].stem)
    assert c0["image_only"] == IMAGE_ONLY[0] and c0["with_ehr"] == WITH_EHR[0]
    assert c0["delta"]["rouge_l"] == pytest.approx(
        _rouge(WITH_EHR[0], REFS[0]) - _rouge(IMAGE_ONLY[0], REFS[0])
    )
    summary = json.loads(Path(res.summary_path).read_text())
    assert summary["mode_with_ehr"] == "impression_icd" and len(summary["table"]) == 5
    drafts_b = [json.loads(x) for x in Path(res.with_ehr_path).read_text().splitlines()]
    assert all(d["ehr_used"] and d["icd"] == ["R06.0"] for d in drafts_b)
    assert all(d["seed"] == 3 for d in drafts_b)


def test_ab_refuses_identifiers_and_missing_patients(tmp_path):
    imgs = nih_images()
    if not imgs:
        pytest.skip("no NIH radiographs in ../shared/data")
    refs = tmp_path / "refs.jsonl"
    refs.write_text(json.dumps({"id": imgs[0].stem, "text": "Normal."}) + "\n")
    ehr = tmp_path / "ehr.json"
    ehr.write_text(json.dumps({"cases": {imgs[0].name: {"age": 40, "mrn": "A123"}}}))
    with canned(lambda key, body: "") as (url, bodies):
        with pytest.raises(UserError, match="field mrn is an identifier"):
            report_ab(
                ABParams(
                    images=[str(imgs[0])],
                    ehr=str(ehr),
                    refs=str(refs),
                    **backend_params("openai", url),
                )
            )
        ehr.write_text(json.dumps({"cases": {"other.png": {"age": 40}}}))
        with pytest.raises(UserError, match="no patient for 1 image"):
            report_ab(
                ABParams(
                    images=[str(imgs[0])],
                    ehr=str(ehr),
                    refs=str(refs),
                    **backend_params("openai", url),
                )
            )
        assert bodies == []


def test_ab_command_prints_the_delta_table(tmp_path, capsys):
    pytest.importorskip("ollama")
    from engine.cli import main

    imgs = nih_images()[:3]
    if len(imgs) < 3:
        pytest.skip("no NIH radiographs in ../shared/data")
    ehr = tmp_path / "ehr.json"
    ehr.write_text(json.dumps({"age": 61, "sex": "M", "vitals": {"spo2": 91}}))
    refs = tmp_path / "refs.jsonl"
    refs.write_text(
        "".join(json.dumps({"id": p.name, "text": REFS[i]}) + "\n" for i, p in enumerate(imgs))
    )
    index = {sha(p): i for i, p in enumerate(imgs)}

    def respond(key: str, body: dict) -> str:
        better = "SpO2 91 %" in prompt_text(body)  # the vitals reached arm B's prompt
        if is_labels_turn(body):
            return labels_json([] if better else None)
        return "Impression: " + (WITH_EHR if better else IMAGE_ONLY)[index[key]]

    with canned(respond) as (url, _):
        rc = main(
            ["report", "ab", *map(str, imgs), "--ehr", str(ehr), "--ref", str(refs),
             "-o", str(tmp_path / "ab"), "--metrics", "rouge_l", "--n-boot", "500",
             "--backend", "ollama", "--model", "llava:7b", "--host", url]
        )  # fmt: skip
    assert rc == 0
    cap = capsys.readouterr()
    line = next(x for x in cap.out.splitlines() if x.startswith("rouge_l"))
    assert float(line.split()[3]) > 0 and "95% CI (paired bootstrap)" in cap.out
    assert "n = 3 cases, 500 bootstrap replicates" in cap.out
    assert (tmp_path / "ab" / "ab_cases.jsonl").read_text().count("\n") == 3
