"""Issue 14: what really goes to a model server, and what ``map`` keeps of it, names nobody.

``map`` asks an Ollama-protocol server on 127.0.0.1 (in this test) about every group of a
synthetic study with made-up identities, one surname typed into a protocol name and another in
the person's context text. The server records each request and, for the free-text phase,
echoes the prompt back as its rationale: whatever the engine sent returns into
``OUT/llm/rationales`` and the mapping report. None of the identity values may appear in a
request, in ``OUT/llm/prompts`` or anywhere else in OUT outside ``OUT/private``.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from engine.api import steps
from engine.api.types import AnalyzeParams, GenerateParams, MapParams
from engine.synth import fake_identity_values, generate_study
from tests.test_privacy import _leaks

pytest.importorskip("ollama", reason="ollama client not installed")

TAG = "tiny:latest"


class EchoOllama(BaseHTTPRequestHandler):
    """/api/chat: the JSON phase answers a T2w; the free-text phase echoes the prompt."""

    bodies: list[dict[str, Any]] = []

    def log_message(self, *a: Any) -> None:
        pass

    def _json(self, doc: dict[str, Any]) -> None:
        body = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._json({"models": [{"name": TAG, "model": TAG, "size": 1, "digest": "d"}]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        EchoOllama.bodies.append(body)
        if self.path != "/api/chat":
            self._json({"model": TAG, "response": "", "done": True})
            return
        fmt = body.get("format")
        if isinstance(fmt, dict):
            gid = fmt["anyOf"][0]["properties"]["group_id"]["enum"][0]
            answer = {"group_id": gid, "decision": "map", "datatype": "anat", "suffix": "T2w"}
            text = json.dumps({**answer, "entities": {}, "confidence": "low"})
        else:
            text = " ".join(m.get("content", "") for m in body.get("messages", []))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.end_headers()
        for piece, done in ((text, False), ("", True)):
            msg = {"model": TAG, "message": {"role": "assistant", "content": piece}, "done": done}
            self.wfile.write((json.dumps(msg) + "\n").encode())
        self.wfile.flush()


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), EchoOllama)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    EchoOllama.bodies = []
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_what_the_model_server_gets_and_map_keeps_names_nobody(
    server: str, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("LLMH_CONFIG", str(tmp_path / "none.toml"))
    m = generate_study(tmp_path / "syn", subjects=2, fake_identities=True)
    values = fake_identity_values(m)
    out = tmp_path / "out"
    steps.analyze(AnalyzeParams(input=str(m.root), out_dir=str(out), progress=False))
    steps.group(str(out))
    res = steps.map_(
        MapParams(
            out_dir=str(out),
            backend="ollama",
            model=TAG,
            llm_all=True,
            context="scans of Helga Zabrowski, MRN8675309X",
            settings={"ollama_host": server, "cache": False},
        )
    )
    assert res.backend == "ollama"
    steps.generate(GenerateParams(out_dir=str(out)))
    chats = [b for b in EchoOllama.bodies if "messages" in b]
    assert len(chats) >= 2 * res.n_groups  # a rationale and an answer per group
    sent = json.dumps(chats).lower()
    assert "header facts" in sent and "study context from the user" in sent  # real prompts
    assert [v for v in values if v.lower() in sent] == []
    prompts = sorted((out / "llm" / "prompts").glob("*.txt"))
    rationales = sorted((out / "llm" / "rationales").glob("*.txt"))
    assert len(prompts) == len(rationales) == res.n_groups
    assert any("[redacted]" in p.read_text() for p in prompts)  # the typed-in surname
    assert all("Header facts" in r.read_text() for r in rationales)  # the echo came back
    assert _leaks(out, values) == []
