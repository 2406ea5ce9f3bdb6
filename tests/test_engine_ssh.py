"""The engine over a real OpenSSH connection to 127.0.0.1 (sshd started by the test)."""

from __future__ import annotations

import os
import sys
import time

import pytest

from engine.rpc.client import EngineClient
from engine.rpc.launchers import make_launcher
from engine.rpc.protocol import EngineGone
from tests.sshd_fixture import sshd  # noqa: F401 - pytest fixture
from tests.test_rpc_detach import streamed_with_drop, wait_gone
from tests.test_rpc_pipeline import compare_cli, reference, run_methods, study  # noqa: F401 - fixture

pytestmark = pytest.mark.needs_service
THIS_PYTHON = [sys.executable, "-m", "engine"]


def ssh_launcher(sshd, spec: str = "ssh:llmh-test", **kw):  # noqa: F811
    # sshd passes no environment: the remote engine is told to serve debug.* on its command line
    env = {"LLMH_ENGINE_TEST_METHODS": "1", **kw.pop("env", {})}
    return make_launcher(spec, ssh_options=sshd.ssh_options, command=THIS_PYTHON, env=env, **kw)


def test_ssh_hello_and_death(sshd):  # noqa: F811
    eng = EngineClient(ssh_launcher(sshd))
    eng.start()
    assert eng.hello["pid"] != os.getpid() and eng.hello["mode"] == "stdio"
    assert eng.call("debug.echo", {"x": "y" * 100000}, timeout=30) == {"x": "y" * 100000}
    slow = eng.request("debug.sleep", {"seconds": 60})
    time.sleep(0.2)
    eng.drop_link()  # the ssh process dies: not detached, so the request fails clearly
    with pytest.raises(EngineGone) as ei:
        slow.result(timeout=30)
    assert "ssh:llmh-test" in str(ei.value)
    eng.close()


def test_ssh_batchmode_never_prompts(sshd, tmp_path):  # noqa: F811
    # a host with no usable key: ssh must fail at once instead of asking for a password
    cfg = tmp_path / "cfg"
    cfg.write_text(
        sshd.config.read_text().replace("IdentityFile", "#IdentityFile")
        + "  IdentityFile /nonexistent\n"
    )
    start = time.monotonic()
    with pytest.raises(EngineGone) as ei:
        EngineClient(
            make_launcher("ssh:llmh-test", ssh_options=["-F", str(cfg)], command=THIS_PYTHON)
        ).start()
    assert time.monotonic() - start < 30
    assert "Permission denied" in str(ei.value) or "exit status 255" in str(ei.value)


def test_ssh_detach_kill_link_and_resume(sshd, tmp_path):  # noqa: F811
    home = tmp_path / "remote-home"
    home.mkdir()
    eng = EngineClient(
        ssh_launcher(sshd, "ssh:llmh-test+detach", env={"HOME": str(home)}), reconnect_attempts=5
    )
    eng.start()
    try:
        pid = eng.hello["pid"]
        got = streamed_with_drop(eng, count=300, interval=0.01, drops=2)
        assert [p["seq"] for p in got] == list(range(1, 301))
        assert "".join(p["text"] for p in got) == "".join(f"tok{i} " for i in range(300))
        assert eng.reconnects >= 1
        assert eng.call("status", timeout=30)["pid"] == pid
    finally:
        eng.close(shutdown=True)
    assert wait_gone(home / ".llm-heuristics" / "engine.json")


@pytest.mark.slow
def test_ssh_full_pipeline_and_cli_parity(sshd, study, tmp_path, monkeypatch):  # noqa: F811
    dicom, subjects = study
    with EngineClient(ssh_launcher(sshd)) as eng:
        res = run_methods(eng, dicom, tmp_path / "methods-out", subjects)
    assert res["series"] and res["mappings"] and res["preview"]["png_base64"]
    assert list((tmp_path / "methods-out").rglob("*.nii.gz"))
    # the CLI through a profile: same files, byte for byte, as the plain CLI
    (tmp_path / "xdg" / "llm-heuristics").mkdir(parents=True)
    (tmp_path / "xdg" / "llm-heuristics" / "config.toml").write_text(
        f'[engines.testssh]\nspec = "ssh:llmh-test"\nssh_options = {sshd.ssh_options!r}\n'.replace(
            "'", '"'
        )
        + f"command = {THIS_PYTHON!r}\n".replace("'", '"')
    )
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    out = tmp_path / "out"
    compare_cli("testssh", out, reference(dicom, out, subjects, env), env)
