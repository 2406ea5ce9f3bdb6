"""The real program in a tmux session of fixed size, driven by send-keys, read by capture-pane.

Runs on the synthetic study (analyze -> group -> map by the CLI), then: navigate, edit a
group's name, skip one, re-map one with the LLM (a tiny random GGUF from
``tests/fixtures_models.py`` through llama-cpp; that step is left out when ``llama_cpp`` is not
importable), generate, validate; checks the screen and the files written. The same session, re-map
included, against an engine over SSH when ``tests/sshd_fixture.py`` can start sshd (the engine
on the far side is this machine, so it reads the same GGUF path).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from engine import review
from engine.atomic import read_tsv
from engine.workspace import Workspace
from tests.tmux_driver import Tmux

pytestmark = pytest.mark.slow
if shutil.which("tmux") is None:
    pytest.skip("tmux is not installed", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from engine.cli import main
    from engine.synth import generate_study

    base = tmp_path_factory.mktemp("tmux")
    generate_study(base, subjects=2, sessions=1, vendor="siemens", seed=0)
    out = base / "out"
    assert main(["analyze", str(base / "dicom"), str(out)]) == 0
    assert main(["group", str(out)]) == 0
    assert main(["map", str(out)]) == 0
    return out


def _tiny_gguf(tmp_path: Path) -> Path | None:
    """The tiny random GGUF, or None when llama-cpp-python (or gguf) is not installed."""
    try:
        import gguf  # noqa: F401
        import llama_cpp  # noqa: F401
    except ImportError:
        return None
    from tests.fixtures_models import make_tiny_gguf

    return make_tiny_gguf(tmp_path / "tiny.gguf")


REMAP_GROUP = "g04_"  # the first fMRI group of the synthetic study (its id starts so)


def _remap(t: Tmux) -> None:
    """Select the group, press r, see the rationale stream and the mapping come back."""
    t.keys("Down")  # g04
    t.wait_for(f"{REMAP_GROUP}")
    t.keys("r")
    seen = ""
    end = time.time() + 180  # llama.cpp loads the model, then decodes on the CPU
    while time.time() < end:
        s = t.screen()
        if "LLM (streaming):" in s or "LLM rationale #1" in s:
            seen = seen or s
        if "re-mapped g04" in s:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"the re-map never finished; screen:\n{t.screen()}")
    assert seen, f"no streamed rationale was shown; screen:\n{t.screen()}"


def _check_remap(out: Path) -> None:
    import json

    gid = next(
        g["group_id"]
        for g in read_tsv(out / "aggregated_dicominfo_groups.tsv")
        if g["group_id"].startswith(REMAP_GROUP)
    )
    assert (out / "llm" / "rationales" / f"{gid}.txt").exists()
    answers = [json.loads(x) for x in (out / "llm" / "answers.jsonl").read_text().splitlines()]
    asked = [a for a in answers if a["group_id"] == gid]
    assert asked, "the model was not asked about the group"
    m = asked[-1]["mapping"]
    rows = {p.group_id: p for p in Workspace(out).read_proposals()}
    assert rows[gid].source == m["source"]  # the stored proposal has the answer
    if m["source"] == "rules":  # random weights: the rules' answer, with the reason recorded
        assert any("LLM not used" in e for e in m["evidence"]), m
        assert any("LLM not used" in e for e in rows[gid].evidence)
    else:
        assert m["source"] == "llm"
    others = [a for a in answers if a["group_id"] != gid]
    assert not others, "r re-maps the selected group only"


def _session(
    out: Path,
    engine: list[str],
    env: dict[str, str],
    name: str,
    mode: str,
    model: Path | None = None,
) -> None:
    """``mode``: the engine's server mode the status line must show (which engine answered);
    ``model``: a GGUF to re-map one group with (llama-cpp backend)."""
    env = {"LLMH_TUI_IMAGE": "halfcell", "TERM": "xterm-256color", **env}
    llm = ["--backend", "llama-cpp", "--model", str(model)] if model else []
    t = Tmux(name, [sys.executable, "-m", "engine", "tui", str(out), *engine, *llm], env)
    try:
        t.wait_for("g01_localizer")
        t.wait_for(f"({mode}, pid ")
        t.keys("Down")  # g02
        t.keys("e")
        t.wait_for("BIDS name for g02")
        t.keys("C-u")
        t.type("anat/acq-tmux_T1w")
        t.wait_for("anat/acq-tmux_T1w")  # typed into the dialog (a slow machine: keys queue)
        t.keys("Enter")
        t.wait_gone("BIDS name for g02")  # saved and closed, not refused
        t.wait_for("anat/acq-tmux_T1w")
        t.keys("Down", "s")  # skip g03
        t.wait_for("skipped by user")
        if model is not None:
            _remap(t)
        t.keys("g")
        t.wait_for("wrote heuristic.py", timeout=60)
        t.keys("v")
        t.wait_for("validation: OK", timeout=60)
    finally:
        t.kill()
    dec = review.current_decisions(out)
    assert dec["g02_t1_mprage_sag_p2_iso"].entities == {"acq": "tmux"}
    assert dec["g03_t2_tse_tra"].action == "skip"
    assert "acq-tmux" in (out / "heuristic.py").read_text()
    if model is not None:
        _check_remap(out)


def test_tmux_session(study: Path, tmp_path: Path) -> None:
    """With llama-cpp-python installed, the session also re-maps g04 with the tiny GGUF."""
    out = tmp_path / "out"
    shutil.copytree(study, out)
    env = {"LLMH_CONFIG": str(tmp_path / "none.toml")}
    _session(out, [], env, "llmh-tui-test", "inprocess", model=_tiny_gguf(tmp_path))


def test_tmux_session_over_ssh(study: Path, tmp_path: Path, sshd) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """The same session with the engine behind ``ssh`` (tests/sshd_fixture.py; it skips with the
    reason when sshd/ssh are missing). The review methods are part of every engine; the re-map
    runs in the far engine (the same machine: the GGUF path is valid there), and is left out
    only when ``llama_cpp`` is not importable."""
    out = tmp_path / "out"
    shutil.copytree(study, out)
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        "[engines.testssh]\n"
        f'spec = "ssh:{sshd.host}"\n'
        f"ssh_options = {[*sshd.ssh_options]!r}\n".replace("'", '"')
        + f'command = ["{sys.executable}", "-m", "engine"]\n'
    )
    _session(
        out,
        ["--engine", "testssh"],
        {"LLMH_CONFIG": str(cfg)},
        "llmh-tui-ssh",
        "stdio",
        model=_tiny_gguf(tmp_path),
    )


sys.path.insert(0, str(Path(__file__).parent))
from sshd_fixture import sshd  # noqa: E402,F401 - the fixture

os.environ.setdefault("LLMH_TUI_IMAGE", "halfcell")
