"""Models in a worker process: a SIGSEGV mid-generation is a clear error, the engine goes on."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import threading
import time

import pytest

from engine.errors import NotAvailable, StepFailed
from engine.llm.backend import BackendError, GenerationOptions, Message, create_backend
from engine.llm.worker import WorkerBackend, WorkerDied, exit_description, isolate_default
from engine.rpc import protocol
from engine.rpc.client import EngineClient
from tests.fixtures_models import make_tiny_gguf


def _gone(pid: int, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            os.kill(pid, 0)
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":  # dead, not yet reaped
                    return True
        except (ProcessLookupError, FileNotFoundError):
            return True
        time.sleep(0.05)
    return False


def _chat_and_kill(eng: EngineClient, sig: int, pid: int) -> BaseException:
    """Start a slow generation, kill the worker after the first delta; the call's error."""
    first = threading.Event()

    def on_event(method: str, params: dict) -> None:
        if method == protocol.DELTA:
            first.set()

    words = " ".join(f"w{i}" for i in range(200))
    call = eng.request(
        "model.chat", {"messages": [{"role": "user", "content": words}]}, on_event=on_event
    )
    assert first.wait(30), "no delta arrived"
    os.kill(pid, sig)
    with pytest.raises(Exception) as ei:
        call.result(60)
    return ei.value


@pytest.mark.parametrize("spec", ["inprocess", "local"])
def test_engine_survives_a_sigsegv_in_the_model_worker(spec):
    with EngineClient(spec) as eng:
        res = eng.call(
            "model.load", {"backend": "echo", "model": "slow-echo", "options": {"delay": 0.05}}
        )
        pid = res["pid"]
        assert pid and pid != os.getpid()
        loaded = eng.call("model.list")["loaded"]
        assert loaded == [
            {
                "id": "echo:slow-echo",
                "backend": "echo",
                "model": "slow-echo",
                "loaded": True,
                "worker": True,
                "pid": pid,
                "last_error": "",
            }
        ]
        # warm: two requests, one worker
        for text in ("hello there", "again"):
            out = eng.call("model.chat", {"messages": [{"role": "user", "content": text}]})
            assert out["text"] == text
        assert eng.call("model.list")["loaded"][0]["pid"] == pid

        err = _chat_and_kill(eng, signal.SIGSEGV, pid)
        assert isinstance(err, StepFailed), repr(err)
        msg = str(err)
        assert (
            "the echo worker for slow-echo died with SIGSEGV (signal 11) during generation" in msg
        )
        assert "try " in msg
        assert err.data == {"model": "echo:slow-echo", "worker_died": True, "signal": 11}
        assert _gone(pid)

        # the engine answers, says what happened, and a reload works
        assert eng.call("status")["models"] == [{"id": "echo:slow-echo", "loaded": False}]
        listed = eng.call("model.list")["loaded"][0]
        assert not listed["loaded"] and "SIGSEGV" in listed["last_error"]
        with pytest.raises(NotAvailable, match="call model.load"):
            eng.call("model.chat", {"messages": [{"role": "user", "content": "x"}]})
        res2 = eng.call("model.load", {"backend": "echo", "model": "slow-echo"})
        assert res2["pid"] not in (None, pid)
        out = eng.call("model.chat", {"messages": [{"role": "user", "content": "back again"}]})
        assert out["text"] == "back again"
        eng.call("model.unload", {"id": "echo:slow-echo"})
        assert _gone(res2["pid"])


def test_sigkill_while_generating_points_at_memory():
    with EngineClient("inprocess") as eng:
        pid = eng.call("model.load", {"backend": "echo", "model": "m", "options": {"delay": 0.05}})[
            "pid"
        ]
        err = _chat_and_kill(eng, signal.SIGKILL, pid)
        assert "died with SIGKILL (signal 9) during generation" in str(err)
        assert "out-of-memory" in str(err)
        eng.call("model.unload")


def test_images_travel_to_the_worker():
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (24, 16), (200, 10, 10)).save(buf, format="PNG")
    png = buf.getvalue()
    b = create_backend("echo", "e", isolate=True)
    assert isinstance(b, WorkerBackend)
    with b:
        text = b.chat([Message("user", "look", images=[png, Image.new("L", (5, 7))])])
    sha = hashlib.sha256(png).hexdigest()[:8]
    assert text.startswith(f"[image 24x16 sha256:{sha}] [image 5x7 ")
    assert text.endswith(" look")


def test_isolation_defaults(monkeypatch):
    monkeypatch.delenv("LLMH_MODEL_WORKERS", raising=False)
    assert isolate_default("llama-cpp") and isolate_default("transformers")
    assert not isolate_default("ollama") and not isolate_default("openai")
    assert not isinstance(create_backend("llama-cpp", "x.gguf"), WorkerBackend)  # library default
    assert isinstance(create_backend("gguf", "x.gguf", isolate=None), WorkerBackend)
    monkeypatch.setenv("LLMH_MODEL_WORKERS", "0")
    assert not isinstance(create_backend("llama-cpp", "x.gguf", isolate=None), WorkerBackend)

    from engine.config import load_settings
    from engine.llm import backend_from_settings

    monkeypatch.delenv("LLMH_MODEL_WORKERS")
    s = load_settings({"backend": "llama-cpp", "model": "x.gguf"}, env={})
    b = backend_from_settings(s)
    assert isinstance(b, WorkerBackend) and b.identity == "llama-cpp:x.gguf:0"


def test_load_error_in_the_worker_is_the_backends_own(tmp_path):
    b = create_backend("llama-cpp", "nope.gguf", isolate=True, gguf_dirs=[str(tmp_path)])
    with pytest.raises(BackendError, match="GGUF model 'nope.gguf' not found") as ei:
        b.load()
    assert not isinstance(ei.value, WorkerDied)
    assert not b.loaded and b.pid is None


@pytest.fixture(scope="module")
def gguf_path(tmp_path_factory):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed")
    return make_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def test_tiny_gguf_in_a_worker_streams_cancels_and_stays_warm(gguf_path):
    inproc = create_backend("llama-cpp", str(gguf_path), n_ctx=1024)
    b = create_backend("llama-cpp", str(gguf_path), isolate=True, n_ctx=1024)
    assert isinstance(b, WorkerBackend)
    msgs = [Message("user", "Which BIDS name fits?")]
    opts = GenerationOptions(max_tokens=16)
    t0 = time.monotonic()
    b.load()
    t_load = time.monotonic() - t0
    try:
        pid = b.pid
        assert b.gpu_layers_used in (0, -1)  # reported by the worker
        with inproc:
            assert b.identity == inproc.identity
            expected = inproc.chat(msgs, opts)
        assert b.chat(msgs, opts) == expected  # greedy: the same text in and out of a worker
        ev = threading.Event()
        got = []
        for d in b.stream_chat(msgs, GenerationOptions(max_tokens=200), ev):
            got.append(d)
            ev.set()
        assert len(got) == 1
        # ready again after a cancel (llama.cpp reuses the cached prompt prefix, so random
        # weights need not repeat the fresh answer token for token)
        assert b.chat(msgs, opts)
        assert b.pid == pid  # warm: one worker
        os.kill(pid, signal.SIGKILL)  # dies while idle (an OOM kill between requests)
        assert _gone(pid, 30), open(f"/proc/{pid}/stat").read()
        # a killed leader shows "Z" while its threads still tear down (a loaded machine): the
        # exit can be reaped a moment later
        end = time.monotonic() + 30
        while b.loaded and time.monotonic() < end:
            time.sleep(0.05)
        assert not b.loaded, b.last_error
        assert "SIGKILL" in b.last_error and "while idle" in b.last_error, b.last_error
        b.load()
        assert b.pid != pid and b.chat(msgs, opts) == expected
    finally:
        b.unload()
    print(f"\nworker start + tiny GGUF load: {t_load:.2f} s")


def test_mapping_keeps_the_rules_after_the_worker_died_and_starts_no_new_one():
    from engine.llm import map_with_llm
    from engine.model import Group, Mapping, SeriesInfo

    series = [SeriesInfo(series_id="1-t1", subject="01", protocol_name="t1_mprage_sag")]
    groups = [Group("g-t1", "t1 mprage sag", [series[0].key]), Group("g-loc", "localizer")]
    rules = [
        Mapping("g-t1", "anat", "T1w", confidence=0.5),
        Mapping("g-loc", skip_reason="localizer", confidence=0.95),
    ]
    b = create_backend("echo", "mapper", isolate=True, delay=0.02)
    pids: list[int] = []

    def on_delta(gid: str, phase: str, text: str) -> None:
        if not pids:
            pids.append(b.pid)
            os.kill(b.pid, signal.SIGSEGV)

    out = map_with_llm(series, groups, rules, b, llm_all=True, on_delta=on_delta, use_cache=False)
    assert [m.source for m in out] == ["rules", "rules"]
    assert out[0].suffix == "T1w" and out[1].skip_reason == "localizer"
    for m in out:
        assert any("SIGSEGV (signal 11)" in e for e in m.evidence), m.evidence
    assert b.pid is None and len(pids) == 1  # no second worker for the second group


def test_an_unloaded_worker_exits_cleanly():
    """Unloading ends the worker with status 0: no SIGABRT from the interpreter's shutdown
    (its stdin reader thread holds the buffer lock) and no "Fatal Python error" in the log."""
    b = create_backend("echo", "e", isolate=True)
    b.load()
    assert b.chat([Message("user", "hi")]) == "hi"
    proc = b._proc
    b.unload()
    assert proc is not None and proc.wait(10) == 0, exit_description(proc.returncode)
    assert not [ln for ln in b._tail if "Fatal Python error" in ln], list(b._tail)
