"""Pilot tests of every pane and review action, snapshots, and the docs' SVG screenshots.

The workspace is built from hand-made series (``tui.demo_workspace``) through the engine's API
steps (``tests/workspace_helpers.py``: real grouping and rules mapping), the engine runs
in-process, images use the half-cell renderer: all deterministic.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest.importorskip("textual")

os.environ["LLMH_TUI_IMAGE"] = "halfcell"

from tests.workspace_helpers import build_workspace  # noqa: E402
from tui.app import LlmhApp  # noqa: E402
from tui.keymap import KEYS, load_keymap  # noqa: E402

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "docs" / "screenshots"
SIZE = (120, 40)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return build_workspace(tmp_path / "out")


async def _ready(app: LlmhApp, pilot) -> None:  # type: ignore[no-untyped-def]
    for _ in range(300):
        if app.ready_at is not None:
            break
        await pilot.pause(0.02)
    assert app.ready_at is not None, "workspace never loaded"
    await pilot.pause()


async def _settle(app: LlmhApp, pilot, group: str | None = None) -> None:  # type: ignore[no-untyped-def]
    """Until no worker runs (a decision starts a reload when it is done)."""
    for _ in range(50):
        await app.workers.wait_for_complete()
        await pilot.pause()
        if not any(w.is_running for w in app.workers):
            break
    await pilot.pause()


def _decisions(out: Path) -> list[dict]:
    p = out / "user_decisions.jsonl"
    return [json.loads(x) for x in p.read_text().splitlines()] if p.exists() else []


def _row(app: LlmhApp, gid: str) -> list:
    from rich.text import Text

    groups = app.main_screen.groups
    row = groups.table.get_row_at(groups._order.index(gid))
    return [c.plain if isinstance(c, Text) else c for c in row]


async def test_panes_load(out: Path) -> None:
    app = LlmhApp(out, keymap={})
    async with app.run_test(size=SIZE) as pilot:
        await _ready(app, pilot)
        assert len(app.main_screen.ws.groups) == 7 and len(app.main_screen.ws.series) == 14
        assert app.main_screen.groups.table.row_count == 7
        tree = app.main_screen.query_one("#tree")
        assert [str(n.label).split()[0] for n in tree.root.children] == ["sub-S0001", "sub-S0002"]
        tree.root.children[0].expand()
        await pilot.pause()
        leaves = tree.root.children[0].children
        assert len(leaves) == 7 and any("aborted" in str(n.label) for n in leaves)
        assert "g01_localizer" in str(
            app.main_screen.rationale.query_one("#rationale-text").render()
        )
        assert not app.main_screen.reports.ready  # built, and its reports fetched, once shown
        assert any("workspace: 14 series" in str(x) for x in app.main_screen.reports.pending_log)
        app.main_screen.reports.show("grouping")
        await _settle(app, pilot)
        assert (
            app.main_screen.reports.ready and not app.main_screen.reports.pending_log
        )  # written to the log
        assert app.main_screen.reports.report("grouping").startswith("Grouping:")


async def test_accept_skip_unskip_undo_redo(out: Path) -> None:
    app = LlmhApp(out, keymap={})
    async with app.run_test(size=SIZE) as pilot:
        await _ready(app, pilot)
        await pilot.press("down", "a")  # g02 accepted, cursor moves on
        await _settle(app, pilot)
        assert _row(app, "g02_t1_mprage_sag")[2] == "user"
        assert app.main_screen.groups.selected() == "g03_t2_tse_tra"
        await pilot.press("s")
        await _settle(app, pilot)
        assert "skip" in str(_row(app, "g03_t2_tse_tra")[1])
        await pilot.press("u")
        await _settle(app, pilot)
        assert _row(app, "g03_t2_tse_tra")[2] == "rules"
        await pilot.press("ctrl+z")
        await _settle(app, pilot)
        assert "skip" in str(_row(app, "g03_t2_tse_tra")[1])
        await pilot.press("ctrl+y")
        await _settle(app, pilot)
        assert _row(app, "g03_t2_tse_tra")[2] == "rules"
    ops = [(d["op"], d.get("action")) for d in _decisions(out)]
    assert ops == [
        ("decide", "accept"),
        ("decide", "skip"),
        ("decide", "unskip"),
        ("undo", None),
        ("redo", None),
    ]


async def _until(pilot, cond, what: str = "") -> None:  # type: ignore[no-untyped-def]
    for _ in range(200):
        if cond():
            return
        await pilot.pause(0.02)
    raise AssertionError(f"never true: {what}")


async def test_edit_dialog_refuses_then_saves(out: Path) -> None:
    from engine.api.review import name_candidates
    from tui.screens.edit_name import EditNameScreen

    assert "func/" in name_candidates("fu")
    assert "func/task-" in name_candidates("func/ta")
    assert "anat/T1w" in name_candidates("anat/T1")
    assert "anat/part-mag_" in name_candidates("anat/part-m")
    app = LlmhApp(out, keymap={})
    async with app.run_test(size=SIZE) as pilot:
        await _ready(app, pilot)
        app.main_screen.groups.select("g07_mystery_sequence")
        await pilot.press("e")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, EditNameScreen)
        inp = dialog.query_one("#edit-input")
        inp.value = ""
        await pilot.press(*"anat/bold", "enter")
        problems = dialog.query_one("#edit-problems")
        await _until(pilot, lambda: "refused" in str(problems.render()), "refused")
        assert isinstance(app.screen, EditNameScreen)  # refused: the schema's reason shown
        assert "not allowed" in str(problems.render())
        inp.value = "anat/acq"
        await _until(pilot, lambda: "anat/acq" in dialog.checked, "the engine's answer")
        await pilot.press("tab")  # completes the entity key (the engine's candidates)
        assert inp.value == "anat/acq-"
        inp.value = "anat/acq-mystery_T2"
        await _until(pilot, lambda: inp.value in dialog.checked, "the engine's answer")
        await pilot.press("tab", "enter")
        await _settle(app, pilot)
        assert not isinstance(app.screen, EditNameScreen)
        assert str(_row(app, "g07_mystery_sequence")[1]) == "anat/acq-mystery_T2w"
    d = _decisions(out)[-1]
    assert (d["action"], d["suffix"], d["entities"]) == ("edit", "T2w", {"acq": "mystery"})


@pytest.fixture
def odd_out(tmp_path: Path) -> Path:
    """The demo study plus one single-series group whose key holds ``|`` (no session:
    ``P01||13-x``) and whose ProtocolName holds ``;``, through the API steps."""
    from engine.api import steps
    from engine.api.types import MapParams
    from engine.model import SeriesInfo
    from engine.workspace import Workspace
    from tui.demo_workspace import make_series

    odd = SeriesInfo(
        series_id="13-x",
        dcm_dir_name="13-x",
        series_files=40,
        dim1=128,
        dim2=128,
        dim3=40,
        TR=0.8,
        TE=12.0,
        protocol_name="odd;proto|col",
        series_description="odd;proto|col",
        sequence_name="*odd3d1",
        image_type=("ORIGINAL", "PRIMARY", "OTHER"),
        patient_id="P01",
        subject="P01",
        series_uid="1.2.3.99",
        series_number=13,
        modality="MR",
        sop_class="MR",
    )
    out = tmp_path / "out"
    Workspace(out).write_series([*make_series(), odd])
    steps.group(str(out))
    steps.map_(MapParams(out_dir=str(out)))
    return out


async def test_odd_key_series_selects_its_group_and_keys_act_on_it(odd_out: Path) -> None:
    """Regression: a key with ``|`` and a protocol with ``;`` used to be split by the TUI (the
    TSV cells were re-parsed with a guessed separator, the key split on ``|``): the group
    showed the wrong n and selecting the series in the tree left the cursor on another
    group, so ``a``/``s``/``e`` acted on a group not on screen. Fails on the code before
    this rewrite (which no longer even imports against the typed engine API)."""
    from tui.screens.edit_name import EditNameScreen

    app = LlmhApp(odd_out, keymap={})
    async with app.run_test(size=SIZE) as pilot:
        await _ready(app, pilot)
        main = app.main_screen
        gid = main.ws.series["P01||13-x"].group_id
        assert gid and main.ws.groups[gid].group.series_keys == ["P01||13-x"]
        assert _row(app, gid)[4] == 1  # n
        assert main.groups.selected() != gid
        tree = main.query_one("#tree")
        tree.focus()
        await pilot.pause()
        assert str(tree.root.children[0].label).startswith("sub-P01")
        await pilot.press("down", "enter", "down")  # open sub-P01, onto its one series
        await pilot.pause()
        assert tree.cursor_node.data["key"] == "P01||13-x"
        assert "odd;proto|col" in str(tree.cursor_node.label)
        assert main.groups.selected() == gid  # the cursor moved to THAT group
        await pilot.press("enter")  # on to the group: the review keys act there
        await pilot.pause()
        assert main.groups.table.has_focus
        await pilot.press("e")
        await pilot.pause()
        assert isinstance(app.screen, EditNameScreen) and app.screen.group_id == gid
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("s")
        await _settle(app, pilot)
        assert _decisions(odd_out)[-1]["group_id"] == gid
        assert "skip" in str(_row(app, gid)[1])
        main.groups.select(gid)
        await pilot.press("a")
        await _settle(app, pilot)
        d = _decisions(odd_out)[-1]
        assert (d["group_id"], d["action"]) == (gid, "skip")  # accept what is shown: the skip


async def test_skip_in_tui_is_what_validate_sees_and_undo(out: Path) -> None:
    """A skip made with ``s`` reaches the engine's effective mapping (``validate`` through the
    engine API compares the heuristic with it); ``ctrl+z`` takes it back."""
    import asyncio

    gid = "g07_mystery_sequence"
    app = LlmhApp(out, keymap={})
    async with app.run_test(size=SIZE) as pilot:
        await _ready(app, pilot)

        async def validate():  # type: ignore[no-untyped-def]
            return await asyncio.to_thread(app.client.api, "validate", {"out_dir": str(out)})

        await pilot.press("g")  # a heuristic that converts g07 (anat/T1w)
        await _settle(app, pilot)
        assert (await validate()).ok
        app.main_screen.groups.select(gid)
        await pilot.press("s")
        await _settle(app, pilot)
        res = await validate()
        assert not res.ok and gid in res.diff  # the heuristic still converts what is skipped
        assert app.main_screen.ws.groups[gid].mapping.is_skip  # the engine's view, reloaded
        await pilot.press("g")
        await _settle(app, pilot)
        assert (await validate()).ok
        assert f"{gid} 'mystery_sequence': skipped by user" in (out / "heuristic.py").read_text()
        await pilot.press("ctrl+z")
        await _settle(app, pilot)
        res = await validate()
        assert not res.ok and gid in res.diff  # undone: g07 is converted again
        assert not app.main_screen.ws.groups[gid].mapping.is_skip
        assert _row(app, gid)[2] == "rules"
    ops = [(d["op"], d.get("action")) for d in _decisions(out)]
    assert ops == [("decide", "skip"), ("undo", None)]


async def test_filter_sort_matrix_maximize(out: Path) -> None:
    from tui.screens.matrix import MatrixScreen

    app = LlmhApp(out, keymap={})
    async with app.run_test(size=(100, 30)) as pilot:
        await _ready(app, pilot)
        await _settle(app, pilot)
        _all_columns_fit(app)  # 100x30: the flags column is in view, not scrolled off
        await pilot.press("slash", *"bold")
        await pilot.pause()
        assert app.main_screen.groups._order == ["g04_ep2d_bold_rest", "g05_ep2d_bold_ft"]
        await pilot.press("enter")  # back to the table
        app.main_screen.query_one("#group-filter").value = ""
        await pilot.pause()
        app.main_screen.groups.sort_by("conf")
        assert app.main_screen.groups._order[0] == "g07_mystery_sequence"
        await pilot.press("p")
        await pilot.pause()
        assert isinstance(app.screen, MatrixScreen)
        table = app.screen.query_one("#matrix-table")
        assert table.row_count == 7 and len(table.columns) == 3
        await pilot.press("escape")
        await pilot.press("f11")
        assert app.screen.maximized is app.main_screen.groups
        await pilot.press("f11")
        assert app.screen.maximized is None
        await pilot.press("right_square_bracket")
        assert app.main_screen.query_one("#left").styles.width.value == 26  # narrow layout 22 + 4
        await _settle(app, pilot)
        await pilot.pause(0.1)
        await _settle(app, pilot)
        _all_columns_fit(app)  # a narrower groups pane re-clips the names


def _all_columns_fit(app: LlmhApp) -> None:
    table = app.main_screen.groups.table
    widths = [c.get_render_width(table) for c in table.ordered_columns]
    assert sum(widths) <= table.scrollable_content_region.width, (widths, table.size)
    flags = [str(table.get_row_at(i)[-1]) for i in range(table.row_count)]
    assert "aborted" in flags, flags


async def test_generate_edit_save_validate(out: Path) -> None:
    app = LlmhApp(out, keymap={})
    async with app.run_test(size=SIZE) as pilot:
        await _ready(app, pilot)
        await pilot.press("g")
        await _settle(app, pilot)
        await _settle(app, pilot)
        assert (out / "heuristic.py").exists()
        assert "def infotodict" in app.main_screen.editor.text
        await pilot.press("v")
        await _settle(app, pilot)
        assert "OK" in str(app.main_screen.editor.query_one("#heuristic-problems").render())
        # a hand edit with a syntax error is refused inline (ctrl+s: the editor's key)
        app.main_screen.editor.area.load_text(app.main_screen.editor.text + "\ndef broken(:\n")
        app.main_screen.editor.area.focus()
        await pilot.pause()
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "syntax error" in str(
            app.main_screen.editor.query_one("#heuristic-problems").render()
        )
        # a valid hand edit is saved, then regenerate goes beside it with a diff
        app.main_screen.editor.area.load_text(app.main_screen.editor.saved_text + "\n# my note\n")
        app.main_screen.editor.action_save()
        await _settle(app, pilot)
        assert (out / "heuristic.py").read_text().endswith("# my note\n")
        app.main_screen.groups.table.focus()  # g in the editor is a letter
        await pilot.pause()
        await pilot.press("g")
        await _settle(app, pilot)
        await _settle(app, pilot)
        assert (out / "heuristic.generated.py").exists()
        assert "-# my note" in app.main_screen.reports.report("diff")
        app.main_screen.editor.area.focus()
        await pilot.pause()
        await pilot.press("ctrl+g")
        await _settle(app, pilot)
        assert "# my note" not in (out / "heuristic.py").read_text()


async def test_user_decision_reaches_heuristic(out: Path) -> None:
    app = LlmhApp(out, keymap={})
    async with app.run_test(size=SIZE) as pilot:
        await _ready(app, pilot)
        app.main_screen.groups.select("g07_mystery_sequence")
        await pilot.press("s")
        await _settle(app, pilot)
        await pilot.press("g")
        await _settle(app, pilot)
        await _settle(app, pilot)
    mapped = (out / "aggregated_dicominfo_mapped.tsv").read_text()
    assert "skipped by user" in mapped
    from engine.atomic import read_tsv

    rows = [
        r
        for r in read_tsv(out / "series_assignments.tsv")
        if r["group_id"] == "g07_mystery_sequence"
    ]
    assert rows and all(not r["bids_path"] and r["skip_reason"] == "skipped by user" for r in rows)


async def test_preview_and_convert_report_errors_as_notifications(out: Path) -> None:
    # the hand-made workspace has no DICOM files: preview and convert fail, the app says so
    app = LlmhApp(out, keymap={})
    async with app.run_test(size=SIZE) as pilot:
        await _ready(app, pilot)
        tree = app.main_screen.query_one("#tree")
        tree.focus()
        await pilot.press("enter", "down")
        await _settle(app, pilot)
        assert app.main_screen.groups.selected() == "g01_localizer"
        await pilot.press("c")
        await _settle(app, pilot)
        assert any("convert" in n.message or "preview" in n.message for n in app._notifications)


@pytest.fixture(scope="module")
def synth_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (small) synthetic study taken through analyze/group/map/generate by the CLI."""
    import shutil

    for b in ("heudiconv", "dcm2niix"):
        if shutil.which(b) is None:
            pytest.skip(f"{b} not installed")
    from engine.cli import main
    from engine.synth import generate_study

    base = tmp_path_factory.mktemp("tui-convert")
    generate_study(base, subjects=1, sessions=1, vendor="siemens", seed=0)
    out = base / "out"
    assert main(["analyze", str(base / "dicom"), str(out), "--no-progress"]) == 0
    for step in ("group", "map", "generate"):
        assert main([step, str(out)]) == 0
    return out


@pytest.mark.slow
async def test_convert_dry_run_then_real(
    synth_out: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``c`` (dry run) writes nothing and shows the plan; ``C`` writes OUT/bids and the report."""
    import shutil

    monkeypatch.setenv("LLMH_CONFIG", str(tmp_path / "none.toml"))
    out = tmp_path / "out"
    shutil.copytree(synth_out, out)
    app = LlmhApp(out, keymap={})
    async with app.run_test(size=SIZE) as pilot:
        await _ready(app, pilot)
        sub = app.main_screen.selected_subject()[0]
        assert sub
        await pilot.press("c")
        for _ in range(3):
            await _settle(app, pilot)
        dry = app.main_screen.reports.report("conversion")
        assert dry.strip(), "the dry run printed nothing"
        assert not list(out.glob("bids/sub-*/**/*.nii*")), "a dry run wrote NIfTI files"
        assert app.main_screen.reports.active == "conversion"
        assert any(f"dry run of sub-{sub} done" in n.message for n in app._notifications)
        await pilot.press("C", "y")  # the real conversion asks first
        for _ in range(3):
            await _settle(app, pilot)
        real = app.main_screen.reports.report("conversion")
        assert real.strip() and real != dry
        assert any(n.message == f"sub-{sub} done" for n in app._notifications), [
            n.message for n in app._notifications
        ]
        # on screen: the Reports tab in front, its Conversion tab holding the report
        assert app.main_screen.query_one("#side").active == "side-reports"
        from textual.widgets import TextArea

        area = app.main_screen.query_one("#report-conversion", TextArea)
        assert area.text == real
    niftis = list(out.glob(f"bids/sub-{sub}/**/*.nii*"))
    assert niftis, "no NIfTI files in OUT/bids"
    assert (out / "conversion_report.txt").exists()


async def test_preview_image(out: Path, tmp_path: Path) -> None:
    import io

    from PIL import Image

    from tui.components.preview import PreviewPane

    buf = io.BytesIO()
    Image.linear_gradient("L").resize((32, 32)).save(buf, "PNG")
    app = LlmhApp(out, keymap={})
    async with app.run_test(size=SIZE) as pilot:
        await _ready(app, pilot)
        pane = app.main_screen.query_one(PreviewPane)
        pane.show("S0001||1-localizer", buf.getvalue(), {"shape": [32, 32]})
        await pilot.pause()
        assert type(pane.query_one(".preview-image")).__name__ == "HalfcellImage"


async def test_streaming_rationale_and_lost_engine(out: Path) -> None:
    from tui import messages as msg

    app = LlmhApp(out, keymap={})
    async with app.run_test(size=SIZE) as pilot:
        await _ready(app, pilot)
        for t in ("The series ", "is a T1w."):
            app.main_screen.post_message(msg.EngineDelta(t, "g01_localizer"))
        await pilot.pause(0.5)  # tokens are shown ten times a second, gathered
        assert "The series is a T1w." in str(
            app.main_screen.rationale.query_one("#rationale-text").render()
        )
        app.main_screen.rationale.finish("g01_localizer")
        assert app.main_screen.rationale.history["g01_localizer"] == ["The series is a T1w."]
        app.client.close()
        await pilot.press("s")
        await _settle(app, pilot)
        assert app.engine_lost
        assert "ENGINE LOST" in str(app.main_screen.query_one("#status").render())
        await pilot.press("f6")
        await _settle(app, pilot)
        assert not app.engine_lost and app.client.alive


async def test_command_palette_and_keymap(out: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[keymap]\n"mapping.skip" = "k"\n"nope" = "z"\n')
    assert load_keymap(cfg) == {"mapping.skip": "k"}
    assert all(k.id and k.title.split(": ")[0] for k in KEYS)
    app = LlmhApp(out, keymap={"mapping.skip": "k"})
    async with app.run_test(size=SIZE) as pilot:
        await _ready(app, pilot)
        await pilot.press("k")
        await _settle(app, pilot)
        assert _decisions(out)[-1]["action"] == "skip"
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"Review: undo")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await _settle(app, pilot)
        assert _decisions(out)[-1]["op"] == "undo"


@pytest.fixture
def fake_llm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    """``map --backend X`` gets this instead of a model: a rationale streamed through on_delta."""
    import engine.llm
    from engine.mapping import BACKENDS
    from engine.model import Mapping

    monkeypatch.setenv("LLMH_CONFIG", str(tmp_path / "none.toml"))
    asked: list[str] = []
    saved = dict(BACKENDS)

    def register(name, settings, out_dir=None, *, on_delta=None, cancel=None):  # type: ignore[no-untyped-def]
        def run(series, groups):  # type: ignore[no-untyped-def]
            for g in groups:
                asked.append(g.group_id)
                for t in ("looks like ", "a T2w"):
                    on_delta(g.group_id, "rationale", t)
            return {
                g.group_id: Mapping(g.group_id, "anat", "T2w", confidence=0.8, source="llm")
                for g in groups
            }

        BACKENDS[name] = run
        return name

    monkeypatch.setattr(engine.llm, "register_mapping_backend", register)
    yield asked
    BACKENDS.clear()
    BACKENDS.update(saved)


async def test_remap_one_group_streams_its_rationale(out: Path, fake_llm: list[str]) -> None:
    app = LlmhApp(out, keymap={})
    async with app.run_test(size=SIZE) as pilot:
        await _ready(app, pilot)
        app.main_screen.groups.select("g07_mystery_sequence")
        await pilot.press("r")
        for _ in range(3):
            await _settle(app, pilot)
        assert fake_llm == ["g07_mystery_sequence"]  # r: this group only, not all unsure ones
        assert _row(app, "g07_mystery_sequence")[2] == "llm"
        assert _row(app, "g04_ep2d_bold_rest")[2] == "rules"
        assert app.main_screen.rationale.history["g07_mystery_sequence"] == ["looks like a T2w"]
        assert "a T2w" in str(app.main_screen.rationale.query_one("#rationale-text").render())


# --- snapshots and screenshots ------------------------------------------------------------------


# Why these are deterministic: ``pilot.pause()`` without a delay waits for *CPU idle* measured
# with ``process_time``; on a loaded machine (CI, 2 shared cores) a descheduled test process
# looks idle, the pause returns early and the screenshot catches e.g. a DataTable whose column
# widths (computed on its Idle event) are not settled yet. :func:`_quiet` instead waits for
# the engine workers, then for the tables' pending work, then for the same screen three times
# in a row over real (event-loop) sleeps. Every text that could vary (OUT path, engine pid,
# log lines) is replaced before the shot; the cursor row is set explicitly.


def _screen_busy(app: LlmhApp) -> bool:
    from textual.widgets import DataTable

    for screen in app.screen_stack:
        for t in screen.query(DataTable):
            if getattr(t, "_require_update_dimensions", False) or getattr(t, "_updated_cells", ()):
                return True
    return False


async def _quiet(pilot, stable: int = 3) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    app = pilot.app
    await app.workers.wait_for_complete()
    last, same = "", 0
    for _ in range(400):  # 20 s at most
        await asyncio.sleep(0.05)
        await app.workers.wait_for_complete()
        if _screen_busy(app):
            same = 0
            continue
        shot = app.export_screenshot()
        same = same + 1 if shot == last else 0
        last = shot
        if same >= stable:
            return
    raise AssertionError("the screen never settled")


def _fixed(app: LlmhApp) -> None:
    app.main_screen.set_status("engine: test (inprocess)   OUT: out")
    app.sub_title = "out"
    app.main_screen.reports.clear_log()


def _main_app(out: Path) -> LlmhApp:
    return LlmhApp(out, keymap={})


async def _prep_main(pilot) -> None:  # type: ignore[no-untyped-def]
    app = pilot.app
    await _ready(app, pilot)
    await _quiet(pilot)  # the connect worker also loads the reports after the workspace
    app.main_screen.groups.select("g03_t2_tse_tra")
    app.main_screen.editor.load("def infotodict(seqinfo):\n    return {}\n", generated=True)
    app.main_screen.groups.table.scroll_to(x=0, y=0, animate=False)
    await _quiet(pilot)
    _fixed(app)
    await _quiet(pilot)


async def _prep_edit(pilot) -> None:  # type: ignore[no-untyped-def]
    await _prep_main(pilot)
    await pilot.press("e")
    await _quiet(pilot)
    inp = pilot.app.screen.query_one("#edit-input")
    inp.cursor_blink = False
    inp.value = "anat/acq-"
    inp.cursor_position = len(inp.value)
    await _quiet(pilot)  # the suggester runs in a worker


async def _prep_matrix(pilot) -> None:  # type: ignore[no-untyped-def]
    await _prep_main(pilot)
    await pilot.press("p")
    await _quiet(pilot)


def _need_highlighting() -> None:
    # the editor's colours come from tree-sitter (textual[syntax]); without it the snapshot differs
    pytest.importorskip("tree_sitter_python", reason="textual[syntax] (tree-sitter) not installed")


def test_snapshot_main(out: Path, snap_compare) -> None:  # type: ignore[no-untyped-def]
    _need_highlighting()
    assert snap_compare(_main_app(out), terminal_size=SIZE, run_before=_prep_main)


def test_snapshot_edit_dialog(out: Path, snap_compare) -> None:  # type: ignore[no-untyped-def]
    _need_highlighting()
    assert snap_compare(_main_app(out), terminal_size=SIZE, run_before=_prep_edit)


def test_snapshot_protocol_matrix(out: Path, snap_compare) -> None:  # type: ignore[no-untyped-def]
    _need_highlighting()
    assert snap_compare(_main_app(out), terminal_size=SIZE, run_before=_prep_matrix)


@pytest.mark.parametrize(
    "name,prep",
    [("main", _prep_main), ("edit_name", _prep_edit), ("protocol_matrix", _prep_matrix)],
)
async def test_docs_screenshots(out: Path, name: str, prep, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Renders the README's screenshots (the same states as the snapshots); they are written
    into docs/screenshots only with LLMH_UPDATE_SCREENSHOTS=1 (a test run never edits the repo)."""
    shots = SHOTS if os.environ.get("LLMH_UPDATE_SCREENSHOTS") == "1" else tmp_path
    app = _main_app(out)
    async with app.run_test(size=SIZE) as pilot:
        await prep(pilot)
        shots.mkdir(parents=True, exist_ok=True)
        app.save_screenshot(filename=f"{name}.svg", path=str(shots))
    assert (shots / f"{name}.svg").stat().st_size > 1000


# --- issue 15 --------------------------------------------------------------------------------


@pytest.fixture
def markup_out(tmp_path: Path) -> Path:
    """The demo study plus two series whose descriptions look like Rich markup."""
    from engine.api import steps
    from engine.api.types import MapParams
    from engine.model import SeriesInfo
    from engine.workspace import Workspace
    from tui.demo_workspace import make_series

    def series(n: int, text: str) -> SeriesInfo:
        return SeriesInfo(
            series_id=f"{n}-m",
            dcm_dir_name=f"{n}-m",
            series_files=30,
            dim1=128,
            dim2=128,
            dim3=30,
            TR=3.0 + n,
            TE=80.0 + n,
            protocol_name=text,
            series_description=text,
            sequence_name=f"*m{n}",
            image_type=("ORIGINAL", "PRIMARY", "OTHER"),
            patient_id="P01",
            subject="P01",
            series_uid=f"1.2.3.{n}",
            series_number=n,
            modality="MR",
            sop_class="MR",
        )

    out = tmp_path / "out"
    extra = [series(21, "T2 [b]bold[/b] [/]"), series(22, "DWI [b1000]")]
    Workspace(out).write_series([*make_series(), *extra])
    steps.group(str(out))
    steps.map_(MapParams(out_dir=str(out)))
    return out


async def test_markup_in_dicom_text_is_plain_text(markup_out: Path) -> None:
    """A SeriesDescription such as ``T2 [b]bold[/b] [/]`` used to exit the app (MarkupError)
    when its subject was expanded, and ``DWI [b1000]`` lost its bracketed text."""
    app = LlmhApp(markup_out, keymap={})
    async with app.run_test(size=SIZE) as pilot:
        await _ready(app, pilot)
        main = app.main_screen
        tree = main.query_one("#tree")
        p01 = next(n for n in tree.root.children if "P01" in str(n.label))
        p01.expand()
        await pilot.pause()
        labels = [str(n.label) for n in p01.children]
        assert any("T2 [b]bold[/b] [/]" in x for x in labels), labels
        assert any("DWI [b1000]" in x for x in labels), labels
        gids = {main.ws.series[k].group_id for k in ("P01||21-m", "P01||22-m")}
        texts = []
        for gid in gids:
            main.groups.select(gid)
            await pilot.pause()
            text = str(main.rationale.query_one("#rationale-text").render())
            assert gid in text
            texts.append(text)
            assert gid.startswith(str(_row(app, gid)[0]).rstrip("…"))  # the table's cell
        assert any("[b1000]" in x for x in texts), texts  # the group's label, as written
        assert any("[b]bold[/b] [/]" in x for x in texts), texts
        from rich.text import Text

        from tui.components.groups import _cells

        odd = main.ws.groups[next(iter(gids))]
        assert all(isinstance(c, Text | int) for c in _cells(odd, image=True))
        app.notify("[b1000] [/]")  # a notification never parses markup either
        await pilot.pause()
        assert any(n.message == "[b1000] [/]" for n in app._notifications)
        # the screen renders (the tree, the table and the rationale) without a markup error
        tree.focus()
        await pilot.press("down", "down")
        await pilot.pause()
        assert app.is_running
        shown = app.export_screenshot()
        assert "[b1000]" in shown.replace("&#160;", " ")


async def test_image_library_never_imported_after_start(
    out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """textual-image queries the terminal when imported; imported once the app ran, the
    terminal's answer (``ESC[?62;c``...) arrived as keys (``[`` narrowed the tree, ``c`` started
    a dry run). It is imported before the app starts, and never after."""
    import io
    import sys

    from PIL import Image

    from tui.components.preview import PreviewPane

    for name in [m for m in sys.modules if m.split(".")[0] == "textual_image"]:
        monkeypatch.delitem(sys.modules, name)
    app = LlmhApp(out, keymap={})
    assert "textual_image.widget" in sys.modules  # probed by the constructor, before run

    late: list[str] = []

    class Watch:
        def find_spec(self, name, path=None, target=None):  # type: ignore[no-untyped-def]
            if name.split(".")[0] == "textual_image":
                late.append(name)
            return None

    buf = io.BytesIO()
    Image.linear_gradient("L").resize((16, 16)).save(buf, "PNG")
    async with app.run_test(size=SIZE) as pilot:
        for name in [m for m in sys.modules if m.split(".")[0] == "textual_image"]:
            monkeypatch.delitem(sys.modules, name)  # any import from here on would be seen
        monkeypatch.setattr(sys, "meta_path", [Watch(), *sys.meta_path])
        await _ready(app, pilot)
        pane = app.main_screen.query_one(PreviewPane)
        pane.show("S0001||1-localizer", buf.getvalue(), {"shape": [16, 16]})
        await pilot.pause()
        assert "no image support" in str(pane.query_one("#preview-info").render())
    assert late == []


def test_command_probes_graphics_before_the_app_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    import tui.app
    import tui.components.preview
    from tui import command

    order: list[str] = []
    monkeypatch.setattr(tui.components.preview, "probe_graphics", lambda: order.append("probe"))

    class Fake:
        return_code = 0

        def __init__(self, *a, **k) -> None:  # type: ignore[no-untyped-def]
            order.append("init")

        def run(self) -> None:
            order.append("run")

    monkeypatch.setattr(tui.app, "LlmhApp", Fake)
    ns = argparse.Namespace(out=".", engine="inprocess", backend="x", model="y", dicom_dir=None)
    assert command.run(ns) == 0
    assert order == ["probe", "init", "run"]


async def test_editor_read_only_until_edit_mode_and_quit_asks(out: Path) -> None:
    """Tab/f2 into the editor then a review key typed into the code; now the code is
    read-only until ``i``/enter, Escape leaves edit mode, the title says ``modified``, and
    quitting with unsaved edits asks save/discard/cancel."""
    from tui.screens.choice import ChoiceScreen
    from tui.screens.matrix import MatrixScreen

    app = LlmhApp(out, keymap={})
    async with app.run_test(size=SIZE) as pilot:
        await _ready(app, pilot)
        ed = app.main_screen.editor
        ed.load("def infotodict(seqinfo):\n    return {}\n", generated=True)
        await pilot.press("f2")  # to the Reports tab, and back to the editor
        await pilot.pause()
        await pilot.press("f2")
        await _until(pilot, lambda: ed.area.has_focus, "the editor has the focus")
        before = ed.text
        await pilot.press("p")  # a review key: the protocol matrix, not a letter in the code
        await pilot.pause()
        assert ed.text == before and isinstance(app.screen, MatrixScreen)
        await pilot.press("escape")
        await pilot.pause()
        ed.area.focus()
        await pilot.pause()
        await pilot.press("a", "x")  # nothing typed
        assert ed.text == before and not ed.dirty and ed.border_title == "Heuristic"
        await pilot.press("i")
        await pilot.pause()
        assert ed.editing and "editing" in ed.border_title
        ed.area.move_cursor(ed.area.document.end)
        await pilot.press("#", "p")
        await pilot.pause()
        assert ed.text.endswith("\n#p") and ed.dirty
        assert "modified" in ed.border_title
        await pilot.press("escape")  # leaves edit mode, keeps the edit
        await pilot.pause()
        assert not ed.editing and ed.has_focus_within and ed.dirty
        assert ed.border_title == "Heuristic (modified)"
        await pilot.press("i")  # edit mode again, then focus elsewhere: read-only again
        await pilot.pause()
        app.main_screen.groups.table.focus()
        await pilot.pause()
        assert not ed.editing
        ed.area.focus()
        await pilot.pause()
        await pilot.press("x")
        assert ed.text.endswith("\n#p")
        # quit with unsaved edits: cancel stays, save saves then quits
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert isinstance(app.screen, ChoiceScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, ChoiceScreen) and app.is_running
        await pilot.press("q")
        await pilot.pause()
        assert isinstance(app.screen, ChoiceScreen)
        await pilot.press("q")  # one question at a time
        await pilot.pause()
        assert len(app.screen_stack) == 2
        await pilot.press("s")
        await _settle(app, pilot)
    assert (out / "heuristic.py").read_text().endswith("\n#p")
    assert app.return_code in (0, None)


async def test_quit_discard_unsaved_edits(out: Path) -> None:
    from tui.screens.choice import ChoiceScreen

    app = LlmhApp(out, keymap={})
    async with app.run_test(size=SIZE) as pilot:
        await _ready(app, pilot)
        ed = app.main_screen.editor
        ed.load("x = 1\n", generated=True)
        ed.area.load_text("x = 2\n")
        await pilot.press("q")
        await pilot.pause()
        assert isinstance(app.screen, ChoiceScreen)
        await pilot.press("d")
        await pilot.pause()
        assert not app.is_running
    assert not (out / "heuristic.py").exists()


async def test_help_escape_q_right_and_not_a_workspace(out: Path, tmp_path: Path) -> None:
    """``?``/f1 show the keys panel, "help" finds it in the palette, Escape closes the panel and
    the filter, Right opens a tree node, ``q`` quits; a folder that is not a workspace says so."""
    from textual.command import CommandPalette
    from textual.widgets import HelpPanel, Input

    app = LlmhApp(out, keymap={})
    async with app.run_test(size=SIZE) as pilot:
        await _ready(app, pilot)
        main = app.main_screen
        for key in ("question_mark", "f1"):
            await pilot.press(key)
            await pilot.pause()
            assert main.query(HelpPanel), key
            await pilot.press("escape")
            await pilot.pause()
            assert not main.query(HelpPanel), key
        await pilot.press("ctrl+p")
        await pilot.pause()
        assert isinstance(app.screen, CommandPalette)
        await pilot.press(*"help")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause()
        assert main.query(HelpPanel)  # the palette's "Help: show the keys"
        await pilot.press("escape")
        await pilot.pause()
        assert not main.query(HelpPanel)
        # the filter: Escape clears it and goes back to the table
        await pilot.press("slash", *"t1")
        await pilot.pause()
        flt = main.groups.query_one("#group-filter", Input)
        assert flt.value == "t1" and main.groups.table.row_count < 7
        await pilot.press("escape")
        await pilot.pause()
        assert flt.value == "" and main.groups.table.has_focus
        assert main.groups.table.row_count == 7
        # Right opens a subject, Left closes it
        tree = main.query_one("#tree")
        tree.focus()
        await pilot.pause()
        first = tree.root.children[0]
        assert not first.is_expanded
        await pilot.press("right")
        await pilot.pause()
        assert first.is_expanded and first.children
        await pilot.press("left")
        await pilot.pause()
        assert not first.is_expanded
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running

    empty = tmp_path / "empty"
    empty.mkdir()
    app = LlmhApp(empty, keymap={})
    async with app.run_test(size=SIZE) as pilot:
        await _ready(app, pilot)
        text = str(app.main_screen.rationale.query_one("#rationale-text").render())
        assert "not a review workspace" in text and "analyze" in text
        status = str(app.main_screen.query_one("#status").render())
        assert "not a review workspace" in status
        assert any("analyze" in n.message for n in app._notifications)


async def test_real_convert_asks_then_reports_failure_with_its_cause(
    out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``C`` asks (subject, target folder, overwrite) in a modal; a failed conversion is posted
    as a failure with its cause and the Conversion tab shows the report. The engine's convert
    is stubbed here (the hand-made workspace has no DICOM files): the TUI's part is under
    test; ``test_convert_dry_run_then_real`` runs the real one where dcm2niix is installed."""
    import dataclasses

    from engine.api import methods
    from engine.api.types import ConvertParams, ConvertResult
    from tui.screens.choice import ChoiceScreen

    calls: list[ConvertParams] = []

    def fake_convert(p):  # type: ignore[no-untyped-def]
        calls.append(p)
        return ConvertResult(
            ok=False,
            report="CONVERSION REPORT: sub-S0001 failed",
            bids_dir=str(out / "bids"),
            failed=["sub-S0001: dcm2niix exit 2: no DICOM files in the series folder"],
            series_failed=["sub-S0001 1-localizer: no DICOM files"],
        )

    fake_convert.__annotations__ = {"p": ConvertParams, "return": ConvertResult}
    fake_convert.__doc__ = "stub"
    api = methods.API["convert"]
    monkeypatch.setitem(methods.API, "convert", dataclasses.replace(api, func=fake_convert))
    app = LlmhApp(out, keymap={})
    async with app.run_test(size=SIZE) as pilot:
        await _ready(app, pilot)
        await pilot.press("C")
        await pilot.pause()
        assert isinstance(app.screen, ChoiceScreen)
        shown = str(app.screen.query_one("#choice-text").render())
        assert "sub-S0001" in shown and f"{out}/bids" in shown and "overwrite" in shown
        await pilot.press("n")
        await _settle(app, pilot)
        assert not isinstance(app.screen, ChoiceScreen) and calls == []
        await pilot.press("C")
        await pilot.pause()
        await pilot.press("y")
        for _ in range(3):
            await _settle(app, pilot)
        assert len(calls) == 1 and not calls[0].dry_run and calls[0].subject == "S0001"
        notes = [n for n in app._notifications if "sub-S0001" in n.message]
        assert notes and notes[-1].severity == "error", [n.message for n in app._notifications]
        assert "failed: sub-S0001: dcm2niix exit 2: no DICOM files" in notes[-1].message
        assert "(+1 more)" in notes[-1].message
        main = app.main_screen
        assert main.query_one("#side").active == "side-reports"
        await _until(pilot, lambda: main.reports.ready, "the reports pane")
        await pilot.pause()
        from textual.widgets import TextArea

        area = main.query_one("#report-conversion", TextArea)
        assert area.text == "CONVERSION REPORT: sub-S0001 failed"


async def test_bulk_review_one_entry_one_undo(out: Path) -> None:
    """Mark groups (one by one, by the filter, the unsure ones, the same proposal), accept or
    skip them all: ONE journal entry; ctrl+z takes all of them back at once."""
    app = LlmhApp(out, keymap={})
    async with app.run_test(size=SIZE) as pilot:
        await _ready(app, pilot)
        main = app.main_screen
        groups = main.groups
        await pilot.press("slash", *"bold", "enter")  # filter: the BOLD groups
        await pilot.pause()
        shown = {g.group_id for g in groups.visible_rows()}
        assert 1 < len(shown) < 7 and groups.table.has_focus
        await pilot.press("M")
        await pilot.pause()
        assert groups.marked == shown and "marked" in groups.border_subtitle
        await pilot.press("escape")  # the filter goes, the marks stay
        await pilot.pause()
        assert groups.table.row_count == 7 and groups.marked == shown
        await pilot.press("A")
        await _settle(app, pilot)
        recs = _decisions(out)
        assert [r["op"] for r in recs] == ["decide_many"]
        assert {d["group_id"] for d in recs[0]["decisions"]} == shown
        assert all(_row(app, gid)[2] == "user" for gid in shown)
        assert not groups.marked
        await pilot.press("ctrl+z")
        await _settle(app, pilot)
        assert [r["op"] for r in _decisions(out)] == ["decide_many", "undo"]
        assert all(_row(app, gid)[2] != "user" for gid in shown)
        assert any(
            n.message == f"undo: {len(shown)} decisions (a bulk review)" for n in app._notifications
        )
        # unsure ones, the same proposal, one by one; then skip them all
        await pilot.press("U")
        await pilot.pause()
        unsure = {g.group_id for g in main.ws.groups.values() if g.unsure}
        assert unsure <= groups.marked
        groups.set_marked(set())
        groups.select("g01_localizer")
        await pilot.press("equals_sign")
        await pilot.pause()
        same = {
            g.group_id
            for g in main.ws.groups.values()
            if g.mapping.display == main.ws.groups["g01_localizer"].mapping.display
        }
        assert groups.marked == same
        groups.select("g02_t1_mprage_sag")
        await pilot.press("m")
        await pilot.pause()
        assert groups.marked == same | {"g02_t1_mprage_sag"}
        await pilot.press("S")
        await _settle(app, pilot)
        last = _decisions(out)[-1]
        assert last["op"] == "decide_many"
        assert {d["action"] for d in last["decisions"]} == {"skip"}
        assert {d["group_id"] for d in last["decisions"]} == same | {"g02_t1_mprage_sag"}
        await pilot.press("ctrl+z")
        await _settle(app, pilot)
        assert main.ws.review.decisions == {}
