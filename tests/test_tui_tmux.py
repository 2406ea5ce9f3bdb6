"""The real program in a tmux session of fixed size, driven by send-keys, read by capture-pane.

Runs on the synthetic study (analyze -> group -> map by the CLI), then: navigate, edit a
group's name, skip one, generate, validate; checks the screen and the files written. The same
session against an engine over SSH when ``tests/sshd_fixture.py`` can start sshd.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import review

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


class Tmux:
    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name = name
        cmd = " ".join(shlex.quote(a) for a in argv)
        envs = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)
        subprocess.run(
            [
                "tmux",
                "new-session",
                "-d",
                "-s",
                name,
                "-x",
                "120",
                "-y",
                "40",
                f"cd {ROOT} && env {envs} {cmd}",
            ],
            check=True,
        )

    def keys(self, *keys: str, pause: float = 0.3) -> None:
        for k in keys:
            subprocess.run(["tmux", "send-keys", "-t", self.name, k], check=True)
            time.sleep(pause)

    def type(self, text: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, "-l", text], check=True)
        time.sleep(0.3)

    def screen(self) -> str:
        return subprocess.run(
            ["tmux", "capture-pane", "-t", self.name, "-p"], capture_output=True, text=True
        ).stdout

    def wait_for(self, text: str, timeout: float = 60) -> str:
        end = time.time() + timeout
        while time.time() < end:
            s = self.screen()
            if text in s:
                return s
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never appeared; screen:\n{self.screen()}")

    def wait_gone(self, text: str, timeout: float = 60) -> str:
        end = time.time() + timeout
        while time.time() < end:
            s = self.screen()
            if text not in s:
                return s
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never went away; screen:\n{self.screen()}")

    def kill(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


def _session(out: Path, engine: list[str], env: dict[str, str], name: str, mode: str) -> None:
    """``mode``: the engine's server mode the status line must show (which engine answered)."""
    env = {"LLMH_TUI_IMAGE": "halfcell", "TERM": "xterm-256color", **env}
    t = Tmux(name, [sys.executable, "-m", "engine", "tui", str(out), *engine], env)
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


def test_tmux_session(study: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(study, out)
    _session(out, [], {"LLMH_CONFIG": str(tmp_path / "none.toml")}, "llmh-tui-test", "inprocess")


def test_tmux_session_over_ssh(study: Path, tmp_path: Path, sshd) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """The same session with the engine behind ``ssh`` (tests/sshd_fixture.py; it skips with the
    reason when sshd/ssh are missing). The review methods are part of every engine."""
    out = tmp_path / "out"
    shutil.copytree(study, out)
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        "[engines.testssh]\n"
        f'spec = "ssh:{sshd.host}"\n'
        f"ssh_options = {[*sshd.ssh_options]!r}\n".replace("'", '"')
        + f'command = ["{sys.executable}", "-m", "engine"]\n'
    )
    _session(out, ["--engine", "testssh"], {"LLMH_CONFIG": str(cfg)}, "llmh-tui-ssh", "stdio")


sys.path.insert(0, str(Path(__file__).parent))
from sshd_fixture import sshd  # noqa: E402,F401 - the fixture

os.environ.setdefault("LLMH_TUI_IMAGE", "halfcell")
