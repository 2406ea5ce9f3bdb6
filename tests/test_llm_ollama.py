"""Ollama backend: contract test against an in-test HTTP server on 127.0.0.1 that speaks
Ollama's protocol (/api/tags, /api/generate, /api/chat streaming NDJSON, ``format``, errors),
plus a live test that runs only when a real server answers."""

from __future__ import annotations

import json
import os
import socket
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from engine.llm.answer import answer_schema, parse_answer
from engine.llm.backend import BackendError, GenerationOptions, Message, create_backend

pytest.importorskip("ollama", reason="ollama client not installed")

MSGS = [Message("system", "sys"), Message("user", "map it", images=[b"\x89PNG fake"])]
TAG = "tiny:latest"


class FakeOllama(BaseHTTPRequestHandler):
    requests: list[tuple[str, dict]] = []

    def log_message(self, *a):  # quiet
        pass

    def _json(self, code: int, doc: dict) -> None:
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/api/tags":
            self._json(
                200,
                {
                    "models": [
                        {
                            "name": TAG,
                            "model": TAG,
                            "size": 1234,
                            "digest": "abc",
                            "modified_at": "2024-01-01T00:00:00Z",
                        }
                    ]
                },
            )
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        FakeOllama.requests.append((self.path, body))
        if body.get("model") not in (TAG, "tiny"):
            self._json(404, {"error": f"model '{body.get('model')}' not found"})
            return
        if self.path == "/api/generate":
            self._json(200, {"model": TAG, "response": "", "done": True})
            return
        if self.path != "/api/chat":
            self._json(404, {"error": "no such endpoint"})
            return
        fmt = body.get("format")
        if isinstance(fmt, dict):
            gid = fmt["anyOf"][0]["properties"]["group_id"]["enum"][0]
            text = json.dumps(
                {
                    "group_id": gid,
                    "decision": "map",
                    "datatype": "anat",
                    "suffix": "T1w",
                    "entities": {},
                    "confidence": "high",
                }
            )
            pieces = [text[:10], text[10:]]
        else:
            pieces = ["It ", "is ", "a ", "T1w ", "scan."] * 20
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.end_headers()
        try:
            for p in pieces:
                line = {
                    "model": TAG,
                    "created_at": "2024-01-01T00:00:00Z",
                    "message": {"role": "assistant", "content": p},
                    "done": False,
                }
                self.wfile.write((json.dumps(line) + "\n").encode())
                self.wfile.flush()
            self.wfile.write(
                (
                    json.dumps(
                        {
                            "model": TAG,
                            "message": {"role": "assistant", "content": ""},
                            "done": True,
                            "done_reason": "stop",
                        }
                    )
                    + "\n"
                ).encode()
            )
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeOllama)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_streams_and_sends_options(server):
    FakeOllama.requests.clear()
    b = create_backend("ollama", "tiny", host=server)
    b.load()
    deltas = list(b.stream_chat(MSGS, GenerationOptions(max_tokens=50, seed=7)))
    assert deltas[:2] == ["It ", "is "]
    path, body = FakeOllama.requests[-1]
    assert path == "/api/chat" and body["stream"] is True
    assert body["options"]["temperature"] == 0 and body["options"]["seed"] == 7
    assert body["options"]["num_predict"] == 50
    assert body["messages"][1]["images"]  # images travel base64-encoded
    b.unload()


def test_format_schema_is_sent_and_answer_parses(server):
    b = create_backend("ollama", "tiny", host=server)
    schema = answer_schema("g-9")
    text = b.chat(MSGS, GenerationOptions(json_schema=schema))
    assert parse_answer(text, "g-9").suffix == "T1w"
    assert FakeOllama.requests[-1][1]["format"] == schema


def test_cancel(server):
    b = create_backend("ollama", "tiny", host=server)
    ev = threading.Event()
    got = []
    for d in b.stream_chat(MSGS, GenerationOptions(), ev):
        got.append(d)
        ev.set()
    assert got == ["It "]


def test_unknown_model_and_errors(server):
    with pytest.raises(BackendError, match="ollama pull"):
        create_backend("ollama", "llama3.1:8b", host=server).load()
    b = create_backend("ollama", "tiny", host=server)
    b.load()
    b.model = "gone"
    with pytest.raises(BackendError, match="not found"):
        b.chat(MSGS)


def test_connection_refused():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(BackendError, match="does not answer|Ollama"):
        create_backend("ollama", "tiny", host=f"http://127.0.0.1:{port}").load()


def test_inventory_lists_tags(server):
    from engine.llm.inventory import ollama_tags

    models, detail = ollama_tags(server)
    assert [m.name for m in models] == [TAG] and detail.startswith("server")


def test_live_ollama_server():
    host = os.environ.get("OLLAMA_HOST", "http://127.0.0.1:11434")
    if "://" not in host:
        host = "http://" + host
    try:
        with urllib.request.urlopen(host + "/api/tags", timeout=1) as r:
            tags = [m["model"] for m in json.load(r).get("models", [])]
    except OSError:
        pytest.skip(f"no Ollama server at {host}")
    if not tags:
        pytest.skip("the Ollama server has no models")
    b = create_backend("ollama", tags[0], host=host)
    schema = answer_schema("g1")
    text = b.chat(
        [Message("user", "Name a T1w MPRAGE in BIDS.")],
        GenerationOptions(max_tokens=200, json_schema=schema),
    )
    assert json.loads(text)["group_id"] == "g1"
