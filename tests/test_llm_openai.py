"""OpenAI-compatible backend against ``llama_cpp.server`` serving the tiny GGUF on 127.0.0.1."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from engine.llm.answer import answer_schema, extract_json, validate_json
from engine.llm.backend import BackendError, GenerationOptions, Message, create_backend
from tests.fixtures_models import make_tiny_gguf

MSGS = [Message("system", "You map MRI series."), Message("user", "Which BIDS name fits?")]
SERVER_DEPS = (
    "llama_cpp",
    "fastapi",
    "uvicorn",
    "sse_starlette",
    "starlette_context",
    "pydantic_settings",
)


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    missing = [m for m in SERVER_DEPS if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"llama-cpp-python[server] not installed (missing {', '.join(missing)})")
    gguf = make_tiny_gguf(tmp_path_factory.mktemp("srv") / "tiny.gguf")
    port = _free_port()
    log = tmp_path_factory.mktemp("srvlog") / "server.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(gguf),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_ctx",
                "2048",
                "--model_alias",
                "tiny",
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"llama_cpp.server exited: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(base + "/models", timeout=1).close()
            break
        except OSError:
            time.sleep(0.3)
    else:
        proc.terminate()
        pytest.fail("llama_cpp.server did not start in 60 s")
    yield base
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_streams_deltas(server):
    b = create_backend("openai", "tiny", base_url=server)
    b.load()
    assert "tiny" in b.server_models
    deltas = list(b.stream_chat(MSGS, GenerationOptions(max_tokens=24)))
    assert len(deltas) > 1


def test_json_schema_response_format(server):
    b = create_backend("openai", "tiny", base_url=server)
    schema = answer_schema("g-42")
    text = b.chat(MSGS, GenerationOptions(max_tokens=400, json_schema=schema))
    obj = extract_json(text)
    assert validate_json(obj, schema) == [], text
    assert b.format_style in ("json_schema", "json_object")


def test_cancel(server):
    b = create_backend("openai", "tiny", base_url=server)
    ev = threading.Event()
    got = []
    for d in b.stream_chat(MSGS, GenerationOptions(max_tokens=200), ev):
        got.append(d)
        ev.set()
    assert len(got) == 1


def test_connection_refused_is_a_backend_error():
    b = create_backend("openai", "tiny", base_url=f"http://127.0.0.1:{_free_port()}/v1")
    with pytest.raises(BackendError, match="does not answer"):
        b.load()
