"""Chest X-ray report drafting: parsing and checks, EHR identifiers, images (DICOM CR/DX, PNG,
folders), and end to end on the 10 real NIH radiographs with canned Ollama/OpenAI servers
(well-formed, missing header, nine steps, invalid JSON then valid) and a tiny random LLaVA."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from engine.api.report_draft import DraftParams, DraftResult, report_draft
from engine.errors import UserError
from engine.report.draft import parse
from engine.report.draft.ehr import check_patient, read_ehr
from engine.report.draft.images import collect, load_image
from engine.report.draft.jsonl import read_records
from engine.report.draft.prompts import load_templates, shipped
from engine.report.labels import CHEXPERT_LABELS
from tests.draft_helpers import (
    COT9,
    COT10,
    GOOD,
    INVALID_JSON,
    LABELS_AGREE,
    LABELS_DISAGREE,
    NO_VIEW,
    backend_params,
    canned,
    is_labels_turn,
    labels_json,
    nih_images,
    prompt_text,
    queues,
    sha,
)

HEADERS = ("Technique", "View", "Findings", "Impression")


@pytest.fixture(scope="module")
def nih() -> list[Path]:
    imgs = nih_images()
    if len(imgs) < 10:
        pytest.skip("the 10 NIH radiographs are not in ../shared/data/cxr/nih_images")
    return imgs


# --- parsing ------------------------------------------------------------------------------------


def test_sections_exact_headers_and_errors():
    ok = parse.parse_sections(GOOD, HEADERS)
    assert ok.errors == [] and list(ok.sections) == list(HEADERS)
    assert ok.sections["Impression"] == "Cardiomegaly. No pleural effusion."
    md = parse.parse_sections(GOOD.replace("Findings:", "**Findings:**"), HEADERS)
    assert md.errors == [] and md.sections["Findings"].startswith("The heart")
    assert parse.parse_sections(NO_VIEW, HEADERS).errors == ["missing header(s): View"]
    swapped = "Impression: x\nTechnique: a\nView: b\nFindings: c"
    assert any("out of order" in e for e in parse.parse_sections(swapped, HEADERS).errors)
    extra = GOOD + "\nRecommendation: follow up"
    assert parse.parse_sections(extra, HEADERS).errors == [
        "header 'Recommendation' is not one of Technique, View, Findings, Impression"
    ]
    empty = GOOD.replace("View: PA", "View:")
    assert "section 'View' is empty" in parse.parse_sections(empty, HEADERS).errors
    # a colon inside report text is not a header
    assert parse.parse_sections(GOOD.replace("PA", "PA. Note: rotated"), HEADERS).errors == []


def test_ten_steps_exactly():
    steps, errs = parse.parse_steps(parse.parse_sections(COT10, HEADERS, ("Reasoning",)).preamble)
    assert len(steps) == 10 and errs == [] and steps[0] == "Step 1 of the reading."
    steps, errs = parse.parse_steps(parse.parse_sections(COT9, HEADERS, ("Reasoning",)).preamble)
    assert len(steps) == 9 and errs == ["found 9 numbered reasoning steps, expected exactly 10"]
    skipped = "\n".join(f"{i}. s" for i in (*range(1, 5), *range(6, 12)))
    assert "expected 1 to 10 in order" in parse.parse_steps(skipped)[1][0]


def test_labels_json_schema_and_parse():
    schema = parse.labels_schema(icd=True)
    props = schema["properties"]["labels"]["properties"]
    assert set(props) == set(CHEXPERT_LABELS)
    assert all(v["enum"] == [-1, 0, 1, None] for v in props.values())
    labels, codes = parse.parse_labels(labels_json(["J18.9"], Edema=-1), icd=True)
    assert labels["Edema"] == -1 and labels["Cardiomegaly"] is None and codes == ["J18.9"]
    with pytest.raises(ValueError, match="not valid JSON"):
        parse.parse_labels(INVALID_JSON)
    with pytest.raises(ValueError, match="is not one of -1, 0, 1, null"):
        parse.parse_labels(labels_json(Edema=2))
    with pytest.raises(ValueError, match="is not one of"):
        parse.parse_labels(labels_json(Edema=True))  # JSON true is not 1
    with pytest.raises(ValueError, match="missing label"):
        parse.parse_labels('{"labels": {"Edema": 1}}')


def test_icd_format_and_code_list(tmp_path):
    good, problems = parse.check_icd(["J18.9", "j189", "I51.7", "XYZ", "12.3"])
    assert good == ["J18.9", "I51.7"]
    assert problems == [
        "icd: 'XYZ' is not an ICD-10-CM code",
        "icd: '12.3' is not an ICD-10-CM code",
    ]
    f = tmp_path / "codes.csv"
    f.write_text("code,description\nJ18.9,Pneumonia\n# comment\nJ90 pleural effusion\n")
    allowed = parse.read_code_list(f)
    assert allowed == {"J18.9", "J90"}
    assert parse.check_icd(["J18.9", "I51.7"], allowed) == (
        ["J18.9"],
        ["icd: I51.7 is not in the code list"],
    )
    f.write_text("J18.9\nnot-a-code\n")
    with pytest.raises(UserError, match="line 2"):
        parse.read_code_list(f)


def test_templates_versioned_and_overridable(tmp_path):
    t = shipped()
    assert set(t) == {"report", "cot", "impression", "impression_icd"}
    assert "board-certified radiologist" in t["report"].system
    assert "EXACTLY" in t["report"].user and "ten numbered steps" in t["cot"].user.replace(
        "EXACTLY ten", "ten"
    )
    cfg = tmp_path / "p.toml"
    cfg.write_text('[report_draft.report]\nuser = "Report this film.{patient}"\n')
    over = load_templates(cfg)["report"]
    assert over.version == "report-v1+config" and over.user.startswith("Report this film")
    assert load_templates(cfg)["cot"] == t["cot"]
    cfg.write_text('[report_draft.report]\nsystme = "typo"\n')
    with pytest.raises(UserError, match="unknown key"):
        load_templates(cfg)
    cfg.write_text("[report_draft.summary]\nuser = 'x'\n")
    with pytest.raises(UserError, match="not a mode"):
        load_templates(cfg)


# --- EHR ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"age": 57, "patient_name": "Jane Roe"}, "patient_name"),
        ({"age": 57, "MRN": "12345678"}, "MRN"),
        ({"sex": "F", "date_of_birth": "1960-01-02"}, "date_of_birth"),
        ({"age": 57, "phone": "555"}, "phone"),
        ({"age": 57, "address": "somewhere"}, "address"),
        ({"age": 57, "email": "x"}, "email"),
        ({"age": 57, "ssn": "x"}, "ssn"),
        ({"history": ["COPD", "seen on 03/04/2021"]}, "history[1]"),
        ({"indication": "cough, call 555-123-4567"}, "indication"),
        ({"indication": "Mr. Smith has a cough"}, "indication"),
        ({"history": "record number 00123456"}, "history"),
        ({"indication": "SSN 123-45-6789"}, "indication"),
        ({"indication": "write to jane@example.org"}, "indication"),
        ({"age": 94}, "age"),
    ],
)
def test_identifiers_are_refused_naming_the_field(doc, field):
    with pytest.raises(UserError) as exc:
        check_patient(doc, "EHR f.json")
    assert f"field {field}" in str(exc.value)
    assert "Jane" not in str(exc.value) and "555-123" not in str(exc.value)  # never echoed


def test_ehr_file_forms(tmp_path):
    one = tmp_path / "one.json"
    one.write_text(json.dumps({"age": 57, "sex": "M", "vitals": {"heart_rate": 88}}))
    assert read_ehr(one).for_image("x.png") == {
        "age": "57",
        "sex": "male",
        "vitals": {"heart_rate": 88},
    }
    many = tmp_path / "many.jsonl"
    many.write_text('{"image": "a", "age": 40}\n{"image": "b.png", "sex": "f"}\n')
    pd = read_ehr(many)
    assert pd.for_image("/x/a.png") == {"age": "40"} and pd.for_image("b.png") == {"sex": "female"}
    assert pd.for_image("c.png") is None
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"cases": {"a": {"age": 40, "name": "Roe"}}}))
    with pytest.raises(UserError, match="case a: field name is an identifier"):
        read_ehr(bad)


# --- images -------------------------------------------------------------------------------------


def _dicom_from_png(png: Path, out: Path, photometric: str, modality: str = "CR") -> Path:
    import numpy as np
    import pydicom
    from PIL import Image
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    arr = np.asarray(Image.open(png).convert("L"), dtype=np.uint16) * 16  # 12-bit
    if photometric == "MONOCHROME1":
        arr = 4095 - arr
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # CR image storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = (
        meta.MediaStorageSOPClassUID,
        meta.MediaStorageSOPInstanceUID,
    )
    ds.Modality = modality
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.PixelData = arr.astype(np.uint16).tobytes()
    pydicom.dcmwrite(out, ds, enforce_file_format=True)
    return out


def test_dicom_monochrome1_and_2_render_alike(nih, tmp_path):
    import io

    import numpy as np
    from PIL import Image

    m2 = _dicom_from_png(nih[0], tmp_path / "m2.dcm", "MONOCHROME2")
    m1 = _dicom_from_png(nih[0], tmp_path / "m1", "MONOCHROME1")  # no suffix: found by DICM
    a, b = load_image(m2), load_image(m1)
    assert a.kind == "dicom" and b.inverted and not a.inverted
    pa = np.asarray(Image.open(io.BytesIO(a.png)), dtype=float)
    pb = np.asarray(Image.open(io.BytesIO(b.png)), dtype=float)
    orig = np.asarray(Image.open(nih[0]).convert("L"), dtype=float)
    assert a.width == 1024 and np.abs(pa - pb).mean() < 1.0  # high = white for both
    assert np.corrcoef(pa.ravel(), orig.ravel())[0, 1] > 0.99
    png = load_image(nih[0])
    assert png.png == nih[0].read_bytes()  # a PNG travels as it is
    mr = _dicom_from_png(nih[0], tmp_path / "mr.dcm", "MONOCHROME2", modality="MR")
    with pytest.raises(UserError, match="modality MR is not a radiograph"):
        collect([str(mr)])
    assert collect([str(tmp_path)]) == [str(tmp_path / "m1"), str(tmp_path / "m2.dcm")]
    # a folder's other files (labels.csv) are skipped; a named one is an error
    assert len(collect([str(nih[0].parent)])) == 10
    with pytest.raises(UserError, match="not a PNG, JPEG or DICOM"):
        collect([str(nih[0].parent / "labels.csv")])
    with pytest.raises(UserError, match="no such file"):
        collect([str(tmp_path / "missing.png")])


# --- end to end with canned servers -------------------------------------------------------------


def _check_jsonl(path: Path, result: DraftResult) -> list[dict]:
    recs = read_records(path)
    assert path.read_bytes().endswith(b"\n")
    for r in recs:
        assert r["image_sha256"] == sha(Path(r["image"]))
        assert r["prompt_hash"] and r["model"] and r["timings"]["generate"] > 0
    assert {r["image"] for r in recs} >= {r.image for r in result.records}
    return recs


@pytest.mark.parametrize("kind", ["ollama", "openai"])
def test_canned_replies_parse_retry_flag_and_jsonl(kind, nih, tmp_path):
    if kind == "ollama":
        pytest.importorskip("ollama")
    s = [sha(p) for p in nih]
    script = {k: [GOOD, LABELS_AGREE] for k in s}
    script[s[1]] = [NO_VIEW, NO_VIEW, LABELS_AGREE]  # missing header twice: retry, then flag
    script[s[2]] = [NO_VIEW, GOOD, LABELS_AGREE]  # fixed by the retry
    script[s[3]] = [GOOD, INVALID_JSON, LABELS_DISAGREE]  # invalid JSON, then valid
    script[s[4]] = [GOOD, INVALID_JSON, INVALID_JSON]  # invalid twice: flag
    out = tmp_path / "drafts.jsonl"
    with canned(queues(script)) as (url, bodies):
        res = report_draft(
            DraftParams(
                images=[str(nih[0].parent)],
                labels=True,
                output=str(out),
                **backend_params(kind, url),
            )
        )
        by = {Path(r.image).name: r for r in res.records}
        assert len(res.records) == 10 and res.skipped == 0
        r0 = by[nih[0].name]
        assert r0.flags == [] and r0.retries == 0 and list(r0.sections) == list(HEADERS)
        assert r0.labels["Cardiomegaly"] == 1 and r0.labeler["Cardiomegaly"] == 1
        assert r0.disagreements == [] and r0.backend == kind
        r1 = by[nih[1].name]
        assert r1.retries == 1 and r1.flags == ["headers: missing header(s): View"]
        assert r1.text == NO_VIEW and "View" not in r1.sections
        r2 = by[nih[2].name]
        assert r2.retries == 1 and r2.flags == [] and r2.sections["View"] == "PA"
        r3 = by[nih[3].name]
        assert r3.retries == 1 and r3.flags == [] and r3.disagreements == ["Pleural Effusion"]
        r4 = by[nih[4].name]
        assert r4.retries == 1 and r4.labels == {}
        assert r4.flags and r4.flags[0].startswith("labels: the answer is not valid JSON")
        assert res.flagged == 2
        # the retry named the error; the labels turn was constrained by the schema
        texts = [prompt_text(b) for _, b in bodies]
        assert sum("missing header(s): View" in t for t in texts) == 2
        labels_turns = [b for _, b in bodies if is_labels_turn(b)]
        assert len(labels_turns) == 10 + 2
        schema = labels_turns[0].get("format") or labels_turns[0]["response_format"]
        assert "Pleural Effusion" in json.dumps(schema)
        recs = _check_jsonl(out, res)
        assert len(recs) == 10
        # resume: nothing left to do, no request made
        n = len(bodies)
        again = report_draft(
            DraftParams(
                images=[str(nih[0].parent)],
                labels=True,
                output=str(out),
                **backend_params(kind, url),
            )
        )
        assert again.skipped == 10 and again.records == [] and len(bodies) == n
        assert [r.image for r in again.resumed] == [str(p) for p in nih]  # from the file
        assert again.resumed[1].flags == r1.flags and again.resumed[0].labels == r0.labels
        assert not __import__("tests.draft_helpers", fromlist=["x"]).CannedServer.unexpected


def test_cot_steps_flag_and_resume_after_partial_line(nih, tmp_path):
    pytest.importorskip("ollama")
    s = [sha(p) for p in nih[:4]]
    script = {s[0]: [COT10, COT9], s[1]: [COT9], s[2]: [COT10], s[3]: [COT10]}
    out = tmp_path / "cot.jsonl"
    with canned(queues(script)) as (url, bodies):
        first = report_draft(
            DraftParams(
                images=[str(p) for p in nih[:2]],
                mode="cot",
                output=str(out),
                **backend_params("ollama", url),
            )
        )
        a, b = first.records
        assert len(a.steps) == 10 and a.flags == [] and a.sections["Impression"]
        assert "Reasoning" not in a.sections  # the reasoning is not part of the report
        assert len(b.steps) == 9
        assert b.flags == ["steps: found 9 numbered reasoning steps, expected exactly 10"]
        assert b.retries == 0  # the headers were right: no retry for the step count
        with open(out, "ab") as fh:  # a run killed mid-write leaves a partial line
            fh.write(b'{"image": "half')
        second = report_draft(
            DraftParams(
                images=[str(p) for p in nih[:4]],
                mode="cot",
                output=str(out),
                **backend_params("ollama", url),
            )
        )
        assert second.skipped == 2 and len(second.records) == 2
        recs = read_records(out)
        assert [Path(r["image"]).name for r in recs] == [p.name for p in nih[:4]]
        assert all(line.startswith(b"{") for line in out.read_bytes().splitlines())
        redo = report_draft(
            DraftParams(
                images=[str(nih[0])],
                mode="cot",
                redo=True,
                output=str(out),
                **backend_params("ollama", url),
            )
        )
        assert redo.skipped == 0 and len(redo.records[0].steps) == 9
        recs = read_records(out)
        assert len(recs) == 5 and len(recs[-1]["steps"]) == 9  # appended: the newer one wins
        latest = report_draft(
            DraftParams(
                images=[str(nih[0])], mode="cot", output=str(out), **backend_params("ollama", url)
            )
        )
        assert len(latest.resumed[0].steps) == 9


def test_impression_icd_with_patient_data(nih, tmp_path):
    pytest.importorskip("ollama")
    ehr = tmp_path / "ehr.jsonl"
    ehr.write_text(
        "".join(
            json.dumps({"image": p.stem, "age": 57, "sex": "M", "indication": "cough"}) + "\n"
            for p in nih[:2]
        )
    )
    codes = tmp_path / "codes.txt"
    codes.write_text("J18.9\nJ90\n")
    reply = labels_json(["J18.9", "I51.7", "NOPE"], Cardiomegaly=1, Pleural_Effusion=0)
    script = {sha(p): ["Impression: Cardiomegaly. No pleural effusion.", reply] for p in nih[:2]}
    with canned(queues(script)) as (url, bodies):
        res = report_draft(
            DraftParams(
                images=[str(p) for p in nih[:2]],
                mode="impression_icd",
                ehr=str(ehr),
                icd_codes=str(codes),
                output=str(tmp_path / "o.jsonl"),
                **backend_params("ollama", url),
            )
        )
    r = res.records[0]
    assert (
        r.ehr_used and r.icd == ["J18.9"] and r.sections == {"Impression": r.sections["Impression"]}
    )
    assert "icd: I51.7 is not in the code list" in r.flags
    assert "icd: 'NOPE' is not an ICD-10-CM code" in r.flags
    first = next(prompt_text(b) for path, b in bodies if path == "/api/chat")
    assert "57-year-old male" in first and "Indication: cough" in first
    assert nih[0].stem not in first  # file names (which may carry ids) never reach the model
    with pytest.raises(UserError, match="need the patient data"):
        report_draft(DraftParams(images=[str(nih[0])], icd=True, backend="echo"))


def test_identifier_ehr_refused_before_any_request(nih, tmp_path):
    ehr = tmp_path / "ehr.json"
    ehr.write_text(json.dumps({"age": 57, "sex": "M", "history": ["DOB 1960-01-02"]}))
    with canned(queues({})) as (url, bodies):
        with pytest.raises(UserError, match=r"field history\[0\] holds what looks like"):
            report_draft(
                DraftParams(images=[str(nih[0])], ehr=str(ehr), **backend_params("openai", url))
            )
        assert bodies == []


def test_cli_streams_one_image_and_names_hostile_files(nih, tmp_path, capsys):
    pytest.importorskip("ollama")
    from engine.cli import main

    odd = tmp_path / "a;b|[x]\nc.png"
    shutil.copy(nih[0], odd)
    with canned(queues({sha(odd): [NO_VIEW, GOOD]})) as (url, _):
        rc = main(
            ["report", "draft", str(odd), "--backend", "ollama", "--model", "llava:7b",
             "--host", url, "-o", str(tmp_path / "o.jsonl")]
        )  # fmt: skip
    assert rc == 0
    cap = capsys.readouterr()
    assert "Cardiomegaly. No pl" in cap.err and "--- report, attempt 2 ---" in cap.err
    assert "retries: 1" in cap.out and "\\n" in cap.out.splitlines()[0]
    rec = read_records(tmp_path / "o.jsonl")[0]
    assert rec["image"] == str(odd) and rec["flags"] == []
    rc = main(["report", "draft", str(tmp_path / "nope.png"), "--backend", "echo"])
    assert rc == 2 and "nope.png: no such file" in capsys.readouterr().err


# --- the tiny random LLaVA (structure only) -----------------------------------------------------


@pytest.fixture(scope="module")
def llava(tmp_path_factory):
    pytest.importorskip("transformers")
    pytest.importorskip("torch")
    from tests.fixtures_models import make_tiny_llava

    return make_tiny_llava(tmp_path_factory.mktemp("llava") / "tiny-llava")


def test_tiny_llava_on_the_ten_radiographs(llava, nih, tmp_path):
    out = tmp_path / "llava.jsonl"
    res = report_draft(
        DraftParams(
            images=[str(nih[0].parent)],
            mode="cot",
            backend="transformers",
            model=str(llava),
            quantization=False,
            isolate=False,
            max_tokens=24,
            output=str(out),
        )
    )
    assert len(res.records) == 10
    for r in res.records:  # random weights write no report: every draft is retried and flagged
        assert r.retries == 1 and r.backend == "transformers"
        assert r.flags[0].startswith("headers: missing header(s)")
        assert any(f.startswith("steps: ") for f in r.flags)
        assert r.mode == "cot" and r.prompt_hash == res.records[0].prompt_hash
    assert len(read_records(out)) == 10 and res.flagged == 10


def test_cli_on_a_local_engine(nih, tmp_path, capsys):
    """``--engine local``: the draft runs in an engine process, tokens and the record come back."""
    pytest.importorskip("ollama")
    from engine.cli import main

    img = tmp_path / "film.png"  # inside the engine's roots (the temp dir)
    shutil.copy(nih[0], img)
    out = tmp_path / "o.jsonl"
    with canned(queues({sha(img): [GOOD, LABELS_AGREE]})) as (url, bodies):
        rc = main(
            ["report", "draft", str(img), "--engine", "local", "--labels", "--backend", "ollama",
             "--model", "llava:7b", "--host", url, "-o", str(out)]
        )  # fmt: skip
    assert rc == 0
    cap = capsys.readouterr()
    assert "Cardiomegaly. No pl" in cap.err and "labels: positive Cardiomegaly" in cap.out
    (rec,) = read_records(out)
    assert rec["flags"] == [] and rec["labels"]["Cardiomegaly"] == 1 and rec["labeler"]
    assert sum(path == "/api/chat" for path, _ in bodies) == 2


def test_drafts_file_has_one_writer_and_cuts_a_partial_line(tmp_path):
    from engine.report.draft.jsonl import DraftsFile

    out = tmp_path / "d.jsonl"
    out.write_bytes(b'{"image": "a.png", "image_sha256": "x"}\n{"image": "b.p')
    with DraftsFile(out) as f:
        assert out.read_bytes() == b'{"image": "a.png", "image_sha256": "x"}\n'
        assert f.is_done("a.png", "x") and not f.is_done("a.png", "y")
        with pytest.raises(UserError, match="being written by another run"):
            DraftsFile(out)
        f.append({"image": "b.png", "image_sha256": "z"})
    with DraftsFile(out) as again:  # the lock went with the first writer
        assert [r["image"] for r in again.records] == ["a.png", "b.png"]
    out.write_bytes(b'{"image": "only a partial line')
    DraftsFile(out).close()
    assert out.read_bytes() == b""
    out.write_text("not json\n{}\n")
    with pytest.raises(UserError, match="line 1 is not a JSON record"):
        DraftsFile(out)
    out.write_text("")
    DraftsFile(out).close()  # the refused file's lock was given back


def test_deltas_carry_image_phase_and_attempt(nih, tmp_path):
    """What the reading room folds: reasoning first, then the report, a retry, the labels."""
    pytest.importorskip("ollama")
    import threading

    from engine import context

    events: list[tuple[str, dict]] = []

    class Request:
        cancel_event = threading.Event()

        def notify(self, method: str, params: dict) -> bool:
            events.append((method, params))
            return True

    cot_no_view = COT10.replace("View: PA\n", "")
    with canned(queues({sha(nih[0]): [cot_no_view, COT10, LABELS_AGREE]})) as (url, _):
        context._set(Request())
        try:
            res = report_draft(
                DraftParams(
                    images=[str(nih[0])], mode="cot", labels=True, **backend_params("ollama", url)
                )
            )
        finally:
            context._set(None)
    deltas = [p for m, p in events if m == "delta"]
    assert {p["image"] for p in deltas} == {str(nih[0])}

    def text(phase: str, attempt: int) -> str:
        return "".join(p["text"] for p in deltas if p["phase"] == phase and p["attempt"] == attempt)

    assert text("reasoning", 1) == COT10[: COT10.index("Technique")]  # whole lines only
    assert text("report", 1).startswith("Technique: Single")
    assert "Impression: Cardiomegaly" in text("report", 1)
    assert text("reasoning", 2) + text("report", 2) == COT10
    assert json.loads(text("labels", 1)) == json.loads(LABELS_AGREE)
    progress = [p for m, p in events if m == "progress"]
    assert progress and progress[-1]["fraction"] == 1.0
    assert res.records[0].retries == 1 and res.records[0].flags == []


def test_ehr_files_that_are_not_patient_json(tmp_path):
    f = tmp_path / "e.json"
    f.write_bytes(b'{"age": 40, "indication": "caf\xe9"}')
    with pytest.raises(UserError, match="not UTF-8"):
        read_ehr(f)
    f.write_text("[1, 2]")
    with pytest.raises(UserError, match="record 1 is not a JSON object"):
        read_ehr(f)
    f.write_text('{"age": 40}\n{"age":')
    with pytest.raises(UserError, match="line 2 is not JSON"):
        read_ehr(f)
    f.write_text(json.dumps({"vitals": {"heart_rate": "fast"}}))
    with pytest.raises(UserError, match="field vitals.heart_rate must be a number"):
        read_ehr(f)
    with pytest.raises(UserError, match="cannot read the EHR file"):
        read_ehr(tmp_path / "missing.json")


def test_tiny_llava_labels_turn_is_schema_constrained(llava, nih, tmp_path):
    """The transformers backend constrains the labels turn with the JSON schema (xgrammar):
    even random weights answer 14 valid labels and a list of codes."""
    pytest.importorskip("xgrammar")
    ehr = tmp_path / "ehr.json"
    ehr.write_text(json.dumps({"age": 57, "sex": "M"}))
    res = report_draft(
        DraftParams(
            images=[str(nih[0])],
            mode="impression_icd",
            ehr=str(ehr),
            backend="transformers",
            model=str(llava),
            quantization=False,
            isolate=False,
            max_tokens=16,
        )
    )
    (r,) = res.records
    assert not any(f.startswith("labels: the answer") for f in r.flags), r.flags
    assert set(r.labels) == set(CHEXPERT_LABELS)
    assert all(v in (-1, 0, 1, None) for v in r.labels.values())
    assert json.loads(r.labels_text)["labels"] == r.labels
