"""Detached engine on this host: private socket + token, bridge, resume with no loss."""

from __future__ import annotations

import json
import os
import socket
import stat
import sys
import threading

import pytest

from engine.rpc import protocol
from engine.rpc.client import EngineClient
from engine.rpc.launchers import make_launcher


@pytest.fixture()
def home(tmp_path, monkeypatch):
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("HOME", str(h))
    yield h
    from engine.rpc import detach

    info = detach.read_rendezvous("engine")
    if info and detach.pid_alive(info["pid"]):
        os.kill(info["pid"], 15)


def wait_gone(path, timeout: float = 15.0) -> bool:
    """A detached engine removes its rendezvous file as the last thing it does."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not os.path.exists(path):
            return True
        time.sleep(0.1)
    return False


def streamed_with_drop(
    eng: EngineClient, count: int = 400, interval: float = 0.005, drops: int = 2
) -> list[dict]:
    """Stream deltas, killing the link (bridge/ssh) mid-stream ``drops`` times; returns events."""
    got: list[dict] = []
    marks = [threading.Event() for _ in range(drops)]

    def on_event(m, p):
        got.append(p)
        for i, ev in enumerate(marks):
            if len(got) == (i + 1) * count // (drops + 2):
                ev.set()

    call = eng.request("debug.stream", {"count": count, "interval": interval}, on_event=on_event)
    for ev in marks:
        assert ev.wait(60)
        eng.drop_link()
    res = call.result(timeout=120)
    assert res["sent"] == count
    return got


def test_detach_resume_no_loss(home):
    launcher = make_launcher("local+detach", env={"HOME": str(home)}, heartbeat=0.5)
    eng = EngineClient(launcher, reconnect_attempts=5)
    eng.start()
    try:
        pid = eng.hello["pid"]
        assert eng.hello["mode"] == "detached"
        rdv = home / ".llm-heuristics" / "engine.json"
        info = json.loads(rdv.read_text())
        assert stat.S_IMODE(rdv.stat().st_mode) == 0o600
        assert stat.S_IMODE((home / ".llm-heuristics").stat().st_mode) == 0o700
        assert stat.S_IMODE(os.stat(info["socket"]).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(os.path.dirname(info["socket"])).st_mode) == 0o700
        got = streamed_with_drop(eng)
        assert [p["seq"] for p in got] == list(range(1, 401))
        assert "".join(p["text"] for p in got) == "".join(f"tok{i} " for i in range(400))
        assert eng.reconnects >= 1
        assert eng.call("status", timeout=30)["pid"] == pid  # same engine: nothing reloaded
    finally:
        eng.close(shutdown=True)
    assert wait_gone(rdv)


def test_detached_engine_survives_client_and_bad_token(home):
    launcher = make_launcher("local+detach", env={"HOME": str(home)})
    with EngineClient(launcher) as eng:
        pid = eng.hello["pid"]
    from engine.rpc import detach

    info = detach.read_rendezvous("engine")
    assert info and info["pid"] == pid and detach.is_running(info)
    s = socket.socket(socket.AF_UNIX)
    s.connect(info["socket"])
    s.sendall(protocol.encode(protocol.notification(protocol.AUTH, {"token": "wrong"})))
    reply = s.makefile("rb").readline()
    assert json.loads(reply)["error"]["code"] == protocol.AUTH_FAILED
    s.close()
    with EngineClient("attach") as eng2:  # straight to the socket, same engine
        assert eng2.hello["pid"] == pid
        eng2.close(shutdown=True)
    assert wait_gone(detach.rendezvous_path("engine"))
    assert not detach.is_running(info)


def test_bridge_without_engine_fails_clearly(home):
    import subprocess

    r = subprocess.run(
        [sys.executable, "-m", "engine", "engine", "bridge"],
        capture_output=True,
        text=True,
        env={**os.environ, "HOME": str(home)},
        timeout=60,
    )
    assert r.returncode == 2 and "no detached engine" in r.stderr
