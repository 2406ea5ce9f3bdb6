"""Drive the real program in a detached tmux session, as a person at a terminal would."""

from __future__ import annotations

import shlex
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class Tmux:
    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], size: tuple[int, int] = (120, 40)
    ) -> None:
        self.name = name
        cols, rows = str(size[0]), str(size[1])
        cmd = " ".join(shlex.quote(a) for a in argv)
        envs = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)
        subprocess.run(
            ["tmux", "new-session", "-d", "-s", name, "-x", cols, "-y", rows]
            + [f"cd {ROOT} && env -u COLUMNS -u LINES {envs} {cmd}"],  # the pane's size
            check=True,
        )
        # a tmux server started by new-session may keep its default 80x24, and other clients of
        # the same server must not shrink this window: insist on the size
        subprocess.run(["tmux", "set-option", "-t", name, "window-size", "manual"], check=False)
        subprocess.run(["tmux", "resize-window", "-t", name, "-x", cols, "-y", rows], check=False)

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
