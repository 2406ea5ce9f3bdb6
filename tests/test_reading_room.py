"""The reading room: its engine methods (image.render with window/level, reading.images,
reading.ehr, reading.save, reading.saved) and the screen driven by Pilot.

Drafts come from the real ``report.draft`` through the OpenAI backend talking to the canned
server of :mod:`tests.reading_room_helpers`; the tmux session is in ``test_reading_room_tmux``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("textual")
os.environ["LLMH_TUI_IMAGE"] = "halfcell"

from engine.api.methods import call  # noqa: E402
from engine.errors import InvalidParams, NotFound, UserError  # noqa: E402
from tests.reading_room_helpers import COT_REPLY, LABELS, NIH, STEPS, Canned  # noqa: E402


@pytest.fixture(scope="module")
def canned() -> Any:
    srv = Canned()
    yield srv
    srv.close()


@pytest.fixture
def pngs(tmp_path: Path) -> Path:
    """Three tiny grey PNGs (a ramp, its mirror, a flat square), one with an odd name."""
    import numpy as np
    from PIL import Image

    d = tmp_path / "images"
    d.mkdir()
    ramp = np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1))
    Image.fromarray(ramp, "L").save(d / "a_ramp.png")
    Image.fromarray(ramp[:, ::-1].copy(), "L").save(d / "b;odd [x].png")
    Image.fromarray(np.full((48, 48), 90, np.uint8), "L").save(d / "c_flat.png")
    (d / "notes.txt").write_text("not an image")
    return d


def _client(*roots: Path) -> Any:
    from engine.rpc.client import EngineClient
    from engine.rpc.launchers import make_launcher

    c = EngineClient(make_launcher("inprocess", roots=[str(r) for r in roots]))
    c.start()
    return c


def _app(paths: list[str], out: Path, canned: Canned, roots: list[Path], **kw: Any) -> Any:
    from tui.components.reading_app import ReadingApp

    opts = {"mode": "cot", "backend": "openai", "model": "canned-cxr", "base_url": canned.url}
    return ReadingApp(
        paths, client=_client(*roots), output=str(out / "reports.jsonl"), **(opts | kw)
    )


async def _until(pilot: Any, cond: Any, timeout: float = 90.0, what: str = "") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"never happened: {what}")


async def _loaded(app: Any, pilot: Any) -> Any:
    s = app.reading
    await _until(pilot, lambda: s.images and s.image_pane.png, what="first image shown")
    return s


async def _drafted(s: Any, pilot: Any) -> dict[str, Any]:
    await pilot.press("d")
    await _until(pilot, lambda: s.current in s.records, what="draft finished")
    await pilot.pause()
    return s.records[s.current]


# --- engine methods -------------------------------------------------------------------------------


def test_images_lists_image_files_only(pngs: Path) -> None:
    found = call("reading.images", {"paths": [str(pngs)]})
    assert [Path(f).name for f in found] == ["a_ramp.png", "b;odd [x].png", "c_flat.png"]
    one = call("reading.images", {"paths": [str(pngs / "c_flat.png")]})
    assert one == [str(pngs / "c_flat.png")]
    with pytest.raises(NotFound, match="nope"):
        call("reading.images", {"paths": [str(pngs / "nope")]})
    odd = os.path.join(os.fsencode(pngs), b"\xff\xfe.png")  # not UTF-8: cannot travel
    with open(odd, "wb") as fh:
        fh.write((pngs / "c_flat.png").read_bytes())
    assert call("reading.images", {"paths": [str(pngs)]}) == found  # skipped, with a warning
    empty = pngs / "empty"
    empty.mkdir()
    with pytest.raises(NotFound, match="no images"):
        call("reading.images", {"paths": [str(empty)]})


def test_render_window_level(pngs: Path) -> None:
    import base64
    import io

    import numpy as np
    from PIL import Image

    def pixels(**kw: Any) -> np.ndarray:
        res = call("image.render", {"path": str(pngs / "a_ramp.png"), "size": 64, **kw})
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(res["png_base64"]))))

    plain = pixels()
    assert plain[0, 0] == 0 and plain[0, 63] == 252  # the ramp as stored
    narrow = pixels(center=128, width=64)  # 96..160 onto 0..255
    row = narrow[0]
    assert row[20] == 0 and row[50] == 255  # 80 -> black, 200 -> white
    assert row[32] == round((128 - 96) / 64 * 255)  # the window's middle: mid grey
    assert narrow.std() > plain.std()  # more contrast
    darker = pixels(center=180, width=255)
    assert darker.mean() < plain.mean()
    with pytest.raises(InvalidParams, match="width"):
        call("image.render", {"path": str(pngs / "a_ramp.png"), "width": 0})
    bad = pngs / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(UserError, match="broken.png"):
        call("image.render", {"path": str(bad)})


def test_render_dicom_reports_the_source_window(tmp_path: Path) -> None:
    import numpy as np
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # digital X-ray
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.Modality, ds.SOPInstanceUID = "DX", meta.MediaStorageSOPInstanceUID
    ds.Rows = ds.Columns = 16
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.WindowCenter, ds.WindowWidth = 2000, 2000
    ds.PixelData = (np.arange(256, dtype=np.uint16).reshape(16, 16) * 16).tobytes()
    path = tmp_path / "cr"  # no suffix: found by its DICM magic
    ds.save_as(path, enforce_file_format=True)
    assert call("reading.images", {"paths": [str(tmp_path)]}) == [str(path)]
    res = call("image.render", {"path": str(path), "size": 16, "center": 127.5, "width": 127.5})
    assert res["info"]["method"] == "window"
    lo, hi = (float(v) for v in res["info"]["source_window"].split(".."))
    assert (lo, hi) == pytest.approx((1500.0, 2500.0), abs=1)  # the middle half of 1000..3000


def test_save_upserts_one_line_per_image(tmp_path: Path) -> None:
    out = tmp_path / "reports.jsonl"
    rec = {"sections": {"Impression": "clear"}, "model": "m", "flags": []}
    call("reading.save", {"output": str(out), "image": "/x/a.png", "text": "one", "record": rec})
    call("reading.save", {"output": str(out), "image": "/x/b;c.png", "text": "b", "record": {}})
    call("reading.save", {"output": str(out), "image": "/x/a.png", "text": "two\n", "record": rec})
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [(x["image"], x["report"]) for x in lines] == [
        ("/x/b;c.png", "b"),
        ("/x/a.png", "two\n"),
    ]
    assert lines[1]["edited"] is True and lines[1]["model"] == "m"
    out.write_text(out.read_text() + "{broken\n")
    with pytest.raises(UserError, match="line 3"):
        call("reading.save", {"output": str(out), "image": "/x/a.png", "text": "x"})
    txt = tmp_path / "a.txt"
    call("reading.save", {"output": str(txt), "image": "/x/a.png", "text": "plain"})
    assert txt.read_text() == "plain\n"
    with pytest.raises(UserError, match="folder"):
        call("reading.save", {"output": str(tmp_path), "image": "/x/a.png", "text": "x"})


def test_saved_reports_read_back(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    assert call("reading.saved", {"output": str(out)})["text"] == ""
    call("reading.save", {"output": str(out), "image": "/x/a.png", "text": "ok"})
    line = json.loads(call("reading.saved", {"output": str(out)})["text"])
    assert line["image"] == "/x/a.png" and line["report"] == "ok"
    with pytest.raises(UserError, match="not a file"):
        call("reading.saved", {"output": str(tmp_path)})


def test_ehr_per_image_and_identifiers_refused(tmp_path: Path) -> None:
    one = tmp_path / "ehr.json"
    one.write_text(json.dumps({"age": 54, "sex": "F", "indication": "cough"}))
    res = call("reading.ehr", {"path": str(one), "image": "/x/a.png"})
    assert res["name"] == "all images" and json.loads(res["text"])["indication"] == "cough"
    cases = tmp_path / "cases.json"
    cases.write_text(json.dumps({"cases": {"a": {"age": 40}, "b.png": {"age": 70}}}))
    assert json.loads(call("reading.ehr", {"path": str(cases), "image": "/x/b.png"})["text"]) == {
        "age": "70"
    }
    assert call("reading.ehr", {"path": str(cases), "image": "/x/zz.png"})["text"] == ""
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"age": 54, "patient_name": "Jane Roe"}))
    with pytest.raises(UserError, match="patient_name"):
        call("reading.ehr", {"path": str(bad)})


# --- the screen (Pilot) -----------------------------------------------------------------------

SIZE = (140, 45)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_draft_streams_then_shows_sections_steps_and_labels(
    pngs: Path, tmp_path: Path, canned: Canned
) -> None:
    from tui.components.reading_panes import DISAGREE

    app = _app([str(pngs)], tmp_path, canned, [tmp_path])
    canned.gate.clear()  # the reply stops half-way until the test has seen it streaming
    try:
        async with app.run_test(size=SIZE) as pilot:
            s = await _loaded(app, pilot)
            await pilot.press("d")
            await _until(
                pilot,
                lambda: s.report.streaming and "Technique:" in s.report.text,
                what="the report streaming in",
            )
            assert s.current not in s.records
            assert s.report.border_title.startswith("Report (streaming")
            assert s.report.reasoning.title == "Reasoning (streaming)"
            assert "10. Mild cardiomegaly" in s.report.steps_text  # reasoning split off
            assert "Reasoning" not in s.report.text
            await pilot.press("i")  # no editing while it streams
            assert s.report.area.read_only
            canned.gate.set()
            await _until(pilot, lambda: s.current in s.records, what="draft finished")
            await pilot.pause()
            rec = s.records[s.current]
            assert not s.report.streaming and s.report.border_title == "Report"
            assert list(rec["sections"]) == ["Technique", "View", "Findings", "Impression"]
            assert s.report.text.startswith("Technique: Single frontal chest radiograph.")
            assert "Impression: No pneumothorax. Mild cardiomegaly." in s.report.text
            assert s.report.reasoning.title == "Reasoning (10 steps)"
            assert s.report.steps_text.splitlines()[9] == "10. " + STEPS[9]
            # labels: the model's JSON beside the labeler's reading of the impression
            assert rec["labels"]["Pneumothorax"] == 1 and rec["labeler"]["Pneumothorax"] == 0
            assert "Pneumothorax" in rec["disagreements"]
            table = s.labels
            assert table.row_count == 14
            marked = [
                str(table.get_row(k)[0]) for k in table.rows if DISAGREE in str(table.get_row(k)[3])
            ]
            assert marked == [k for k in LABELS if k in rec["disagreements"]]
            assert table.border_title == f"Labels ({len(marked)} disagreement" + (
                "s)" if len(marked) != 1 else ")"
            )
            assert table.get_row("Pneumothorax")[1].plain == "pos"
            assert table.get_row("Pneumothorax")[2].plain == "neg"
    finally:
        canned.gate.set()


@pytest.mark.anyio
async def test_cancel_a_streaming_draft(pngs: Path, tmp_path: Path, canned: Canned) -> None:
    app = _app([str(pngs)], tmp_path, canned, [tmp_path])
    canned.gate.clear()
    try:
        async with app.run_test(size=SIZE) as pilot:
            s = await _loaded(app, pilot)
            await pilot.press("d")
            await _until(pilot, lambda: "View:" in s.report.text, what="streaming")
            await pilot.press("n")  # one draft at a time: d elsewhere is refused
            await pilot.press("d")
            assert s.drafting == s.images[0], [n.message for n in app._notifications]
            assert s.current not in s.streams
            await pilot.press("p", "x")
            canned.gate.set()  # the next token lets the engine see the cancel
            status = s.query_one("#reading-status")
            await _until(pilot, lambda: "cancelled" in str(status.content), what="cancelled")
            assert s.current not in s.records and not s.report.streaming
            assert "Technique: Single" in s.report.text and not s.report.dirty
            await _drafted(s, pilot)  # drafting again works
            assert s.records[s.current]["sections"]["View"] == "PA."
    finally:
        canned.gate.set()


@pytest.mark.anyio
async def test_a_malformed_draft_is_kept_and_flagged(
    pngs: Path, tmp_path: Path, canned: Canned
) -> None:
    app = _app([str(pngs)], tmp_path, canned, [tmp_path])
    canned.reply = "Findings: clear lungs.\nImpression: normal."  # no Technique, no View
    try:
        async with app.run_test(size=SIZE) as pilot:
            s = await _loaded(app, pilot)
            n = len(canned.requests)
            rec = await _drafted(s, pilot)
            reports = [r for r in canned.requests[n:] if "response_format" not in r]
            assert len(reports) == 2 and rec["retries"] == 1  # asked again once, with the error
            assert rec["flags"], rec
            flags = s.query_one("#reading-flags")
            assert flags.has_class("-problems")
            assert str(flags.content).startswith("flagged: ") and rec["flags"][0] in str(
                flags.content
            )
            assert "clear lungs" in s.report.text and not s.report.dirty
    finally:
        canned.reply = COT_REPLY


@pytest.mark.anyio
async def test_reasoning_folds_and_unfolds(pngs: Path, tmp_path: Path, canned: Canned) -> None:
    app = _app([str(pngs)], tmp_path, canned, [tmp_path])
    async with app.run_test(size=SIZE) as pilot:
        s = await _loaded(app, pilot)
        await _drafted(s, pilot)
        steps = s.query_one("#reading-steps")
        assert s.report.reasoning.collapsed and not steps.display or not steps.region.height
        await pilot.press("r")
        await pilot.pause()
        assert not s.report.reasoning.collapsed
        assert steps.region.height >= 10  # the ten steps on screen
        await pilot.press("r")
        await pilot.pause()
        assert s.report.reasoning.collapsed


@pytest.mark.anyio
async def test_edit_save_and_move_on(pngs: Path, tmp_path: Path, canned: Canned) -> None:
    app = _app([str(pngs)], tmp_path, canned, [tmp_path])
    out = tmp_path / "reports.jsonl"
    async with app.run_test(size=SIZE) as pilot:
        s = await _loaded(app, pilot)
        first = s.current
        await _drafted(s, pilot)
        await pilot.press("n")  # read-only: n moves on and back without typing
        assert s.index == 1
        await pilot.press("p")
        assert s.index == 0 and "n" not in s.report.text.split("\n")[0][-2:]
        await pilot.press("i")
        assert not s.report.area.read_only and "editing" in s.report.border_title
        await pilot.press(*" Checked np.", "escape")
        assert s.report.area.read_only and s.index == 0  # n and p typed, not pressed
        assert s.report.text.rstrip().endswith("Mild cardiomegaly. Checked np.")
        assert "modified" in s.report.border_title
        await pilot.press("ctrl+s")
        await _until(pilot, lambda: out.exists() and not s.report.dirty, what="saved")
        lines = [json.loads(x) for x in out.read_text().splitlines()]
        assert len(lines) == 1 and lines[0]["image"] == first
        assert lines[0]["report"].rstrip().endswith("Checked np.")
        assert lines[0]["edited"] is True and lines[0]["model"] == "canned-cxr"
        assert lines[0]["sections"]["Impression"].startswith("No pneumothorax")
        assert len(lines[0]["steps"]) == 10
        # unsaved edits survive a move to the next image and back
        await pilot.press("i", *" Unsaved.", "escape", "n")
        assert s.index == 1 and s.report.text == ""
        assert "unsaved" not in str(s.query_one("#reading-status").content)
        await pilot.press("p")
        assert s.report.text.rstrip().endswith("Unsaved.") and s.report.dirty
        assert "unsaved edits" in str(s.query_one("#reading-status").content)
        await pilot.press("ctrl+s")
        await _until(pilot, lambda: "Unsaved." in out.read_text(), what="second save")
        assert len(out.read_text().splitlines()) == 1  # the image's line, replaced
    # reopened: the saved report is back, not modified, with its labels
    app = _app([str(pngs)], tmp_path, canned, [tmp_path])
    async with app.run_test(size=SIZE) as pilot:
        s = await _loaded(app, pilot)
        assert s.report.text.rstrip().endswith("Unsaved.") and not s.report.dirty
        assert "saved" in str(s.query_one("#reading-status").content)
        assert s.labels.row_count == 14
        await pilot.press("n")
        assert s.report.text == ""
        await pilot.press("i", *"Draft by hand.", "escape", "q")  # unsaved: q warns first
        await pilot.pause()
        assert app.is_running and any("unsaved" in n.message for n in app._notifications)
        await pilot.press("q")
        await _until(pilot, lambda: not app.is_running, timeout=10, what="second q quits")
    assert "Draft by hand." not in out.read_text()


@pytest.mark.anyio
async def test_next_previous_and_window_level(pngs: Path, tmp_path: Path, canned: Canned) -> None:
    import io

    import numpy as np
    from PIL import Image

    app = _app([str(pngs)], tmp_path, canned, [tmp_path])
    async with app.run_test(size=SIZE) as pilot:
        s = await _loaded(app, pilot)
        pane = s.image_pane

        async def rendered(check: Any, what: str) -> np.ndarray:
            await _until(pilot, check, what=what)
            return np.asarray(Image.open(io.BytesIO(pane.png)), dtype=np.float64)

        plain = await rendered(lambda: pane.info.get("width") == "255", "default")
        assert pane.border_title == "Image 1/3"
        await pilot.press("w", "w")
        narrow = await rendered(lambda: pane.info.get("width") == "163.2", "narrower")
        assert narrow.std() > plain.std()
        assert "W/L 163.2/127.5" in str(pane.query_one("#preview-info").content)
        await pilot.press("l")
        darker = await rendered(lambda: pane.info.get("center") == "143.5", "level up")
        assert darker.mean() < narrow.mean()
        await pilot.press("0")
        again = await rendered(lambda: pane.info.get("width") == "255", "reset")
        assert np.array_equal(again, plain)
        await pilot.press("n")
        await _until(pilot, lambda: "b;odd [x].png" in str(pane.query_one("#preview-info").content))
        assert s.index == 1 and pane.border_title == "Image 2/3"
        mirrored = np.asarray(Image.open(io.BytesIO(pane.png)), dtype=np.float64)
        assert np.array_equal(mirrored, plain[:, ::-1])
        await pilot.press("n", "n")  # stops at the last image
        assert s.index == 2
        await pilot.press("p", "p", "p")
        assert s.index == 0


@pytest.mark.anyio
async def test_ehr_panel_and_palette_and_help(pngs: Path, tmp_path: Path, canned: Canned) -> None:
    from textual.widgets import HelpPanel

    from tui.components.reading_keys import READING_KEYS

    ehr = tmp_path / "ehr.json"
    ehr.write_text(json.dumps({"cases": {"a_ramp": {"age": 61, "sex": "M"}}}))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"age": 61, "mrn": "12345678"}))
    app = _app([str(pngs)], tmp_path, canned, [tmp_path], ehr=str(ehr))
    async with app.run_test(size=SIZE) as pilot:
        s = await _loaded(app, pilot)
        text = s.query_one("#reading-ehr-text")
        await _until(pilot, lambda: "age: 61" in str(text.content), what="EHR shown")
        assert s.ehr.border_title == "EHR a_ramp.png (on)"
        await pilot.press("n")
        await _until(pilot, lambda: "no context" in str(text.content), what="no case for b")
        await pilot.press("p")
        await _until(pilot, lambda: "age: 61" in str(text.content), what="EHR again")
        rec = await _drafted(s, pilot)
        assert rec["ehr_used"] is True
        sent = json.dumps(canned.requests[-2]["messages"])  # the report request
        assert "61-year-old" in sent
        await pilot.press("n")  # no case for this image: drafted from the image alone
        await _until(pilot, lambda: "no context" in str(text.content), what="no case for b")
        rec_b = await _drafted(s, pilot)
        assert rec_b["ehr_used"] is False
        await pilot.press("p")
        await pilot.press("E")
        assert not s.ehr.use and s.ehr.border_title.endswith("(off)")
        # an identifier-bearing file is refused, naming the field; the old one stays
        await pilot.press("e")
        await pilot.pause()
        inp = app.screen.query_one("#reading-prompt-input")
        inp.value = str(bad)
        await pilot.press("enter")
        await _until(
            pilot,
            lambda: any("mrn" in n.message for n in app._notifications),
            what="identifier refused",
        )
        assert s.ehr.path == str(ehr)
        # every key is a Binding with an id, and in the palette
        ids = {b.id for b in s.BINDINGS}
        assert ids == {k.id for k in READING_KEYS} and None not in ids
        from tui.components.reading_keys import ReadingCommands

        provider = ReadingCommands(s, None)
        titles = [h.text async for h in provider.discover()]
        assert "Reading: next image" in titles and "Window: level up (darker)" in titles
        assert len(titles) == len(READING_KEYS)
        before = s.index  # the palette runs the action on the reading room
        await pilot.press("ctrl+p")
        await pilot.pause(0.3)
        await pilot.press(*"next image")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await _until(pilot, lambda: s.index == before + 1, timeout=10, what="palette: next")
        await pilot.press("question_mark")
        await pilot.pause()
        assert app.screen.query(HelpPanel)
        await pilot.press("f1")
        await pilot.pause()
        assert not app.screen.query(HelpPanel)


@pytest.mark.anyio
async def test_real_radiographs_render_and_draft(tmp_path: Path, canned: Canned) -> None:
    if not NIH.is_dir():
        pytest.skip(f"no real radiographs at {NIH}")
    app = _app([str(NIH)], tmp_path, canned, [tmp_path, NIH])
    async with app.run_test(size=SIZE) as pilot:
        s = await _loaded(app, pilot)
        assert len(s.images) == len(list(NIH.glob("*.png"))) and s.image_pane.info["size"]
        rec = await _drafted(s, pilot)
        assert rec["image"] == s.images[0] and not rec["flags"]


# --- the impression dialog (issue 20 in the reading room) -----------------------------------------


def test_findings_of_a_drafted_report() -> None:
    from tui.components.reading_impression import findings_of

    text = "Technique: PA.\nView: PA.\nFindings: Lungs clear.\nNo effusion.\nImpression: Normal."
    assert findings_of(text) == "Lungs clear.\nNo effusion."
    assert findings_of("FINDINGS:\nSmall left effusion.\nIMPRESSION:\nEffusion.") == (
        "Small left effusion."
    )
    assert findings_of("free text without headers") == "free text without headers"


@pytest.mark.anyio
async def test_impression_dialog_from_the_drafted_findings(
    pngs: Path, tmp_path: Path, canned: Canned, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tui.components.impression_panel import ImpressionPanel
    from tui.components.reading_impression import ImpressionDialog

    style_dir = tmp_path / "style"
    monkeypatch.setenv("LLMH_STYLE_DIR", str(style_dir))
    app = _app([str(pngs)], tmp_path, canned, [tmp_path], mode="report")
    async with app.run_test(size=SIZE) as pilot:
        s = await _loaded(app, pilot)
        await _drafted(s, pilot)
        await pilot.press("m")  # no profile yet: the dialog says how to build one
        await _until(pilot, lambda: isinstance(app.screen, ImpressionDialog), what="dialog")
        dlg = app.screen
        assert "report style build" in str(dlg.query_one("#imp-none").render())
        findings = dlg.query_one("#imp-findings").text
        assert findings.startswith("The lungs are clear.") and "Impression" not in findings
        await pilot.press("escape")
        await _until(pilot, lambda: not isinstance(app.screen, ImpressionDialog), what="closed")

        priors = tmp_path / "priors.jsonl"
        rows = [
            {"id": f"p{i}", "findings": f"Lungs clear, case {i}.", "impression": "1. No acute."}
            for i in range(6)
        ]
        priors.write_text("".join(json.dumps(r) + "\n" for r in rows))
        call("report.style_build", {"priors": str(priors), "radiologist": "dr_a"})
        await pilot.press("m")
        await _until(pilot, lambda: isinstance(app.screen, ImpressionDialog), what="dialog 2")
        panel = app.screen.query_one(ImpressionPanel)
        assert panel.radiologists == ["dr_a"]
        panel.draft()
        await _until(pilot, lambda: panel.result is not None, timeout=180, what="impression")
        res = panel.result
        assert res["radiologist"] == "dr_a" and res["coarse"] and res["refined"]
        checks = str(app.screen.query_one("#imp-checks").render())
        assert ("labels equal" in checks) == res["labels_equal"]
        prompts = [json.dumps(r) for r in canned.requests]
        assert any("The lungs are clear." in p and "1. No acute." in p for p in prompts)


@pytest.mark.anyio
async def test_reading_and_training_keys_rebound_from_the_config(
    pngs: Path, tmp_path: Path, canned: Canned
) -> None:
    from tui.keymap import load_keymap

    cfg = tmp_path / "config.toml"
    cfg.write_text('[keymap]\n"reading.next" = "j"\n"training.cancel" = "c"\n"nope" = "z"\n')
    assert load_keymap(cfg) == {"reading.next": "j", "training.cancel": "c"}
    app = _app([str(pngs)], tmp_path, canned, [tmp_path], keymap={"reading.next": "j"})
    async with app.run_test(size=SIZE) as pilot:
        s = await _loaded(app, pilot)
        assert s.index == 0
        await pilot.press("j")
        await _until(pilot, lambda: s.index == 1, what="j moves to the next image")
        assert app.effective_keys["reading.next"] == "j"
