"""Canned-reply model servers for the report drafting tests.

``CannedServer`` extends the Ollama/OpenAI contract recorder of ``tests/test_llm_vision.py``
(same /api/tags, /api/generate and /v1/models answers, same request log) so that each chat
request is answered by ``responder(image_sha256, body)``: the tests script replies per image
(and per arm: a request whose prompt holds "Patient data:" is the EHR arm), streamed in small
pieces as NDJSON (Ollama) or server-sent events (OpenAI).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from engine.report.labels import CHEXPERT_LABELS
from tests.conftest import SHARED_DATA
from tests.test_llm_vision import _Recorder

NIH = SHARED_DATA / "cxr" / "nih_images"

GOOD = (
    "Technique: Single frontal chest radiograph.\n"
    "View: PA\n"
    "Findings: The heart is enlarged. No pleural effusion. No pneumothorax.\n"
    "Impression: Cardiomegaly. No pleural effusion."
)
NO_VIEW = GOOD.replace("View: PA\n", "")
STEPS = "\n".join(f"{i}. Step {i} of the reading." for i in range(1, 11))
COT10 = f"Reasoning:\n{STEPS}\n\n{GOOD}"
COT9 = "Reasoning:\n" + "\n".join(f"{i}. Step {i}." for i in range(1, 10)) + f"\n\n{GOOD}"


def labels_json(icd: list[str] | None = None, **values: int | None) -> str:
    """A labels reply: every observation null except ``values`` (spaces for underscores)."""
    labels: dict[str, int | None] = dict.fromkeys(CHEXPERT_LABELS)
    for k, v in values.items():
        labels[k.replace("_", " ")] = v
    doc: dict[str, Any] = {"labels": labels}
    if icd is not None:
        doc["icd10"] = icd
    return json.dumps(doc)


LABELS_AGREE = labels_json(Cardiomegaly=1, Pleural_Effusion=0)  # what the labeler finds
LABELS_DISAGREE = labels_json(Cardiomegaly=1, Pleural_Effusion=1)
INVALID_JSON = '{"labels": {"Cardiomegaly": 1, "Edema":'


def nih_images() -> list[Path]:
    return sorted(NIH.glob("*.png"))


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _image_of(path: str, body: dict[str, Any]) -> bytes | None:
    for m in body.get("messages", []):
        if path == "/api/chat" and m.get("images"):
            return base64.b64decode(m["images"][0])
        content = m.get("content")
        if isinstance(content, list):
            for part in content:
                if part.get("type") == "image_url":
                    return base64.b64decode(part["image_url"]["url"].split(",", 1)[1])
    return None


def prompt_text(body: dict[str, Any]) -> str:
    """Every text of a request's messages, joined."""
    out: list[str] = []
    for m in body.get("messages", []):
        c = m.get("content")
        if isinstance(c, str):
            out.append(c)
        elif isinstance(c, list):
            out += [p.get("text", "") for p in c if p.get("type") == "text"]
    return "\n".join(out)


def is_labels_turn(body: dict[str, Any]) -> bool:
    return isinstance(body.get("format"), dict) or "response_format" in body


class CannedServer(_Recorder):
    responder: Callable[[str, dict[str, Any]], str] = staticmethod(lambda sha, body: "")
    unexpected: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        if self.path in ("/api/generate",):
            return super().do_POST()
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).bodies.append((self.path, body))
        img = _image_of(self.path, body)
        key = hashlib.sha256(img).hexdigest() if img is not None else ""
        try:
            reply = type(self).responder(key, body)
        except (KeyError, IndexError) as exc:
            type(self).unexpected.append(f"{key[:8]}: {exc!r}")
            reply = ""
        pieces = [reply[i : i + 7] for i in range(0, len(reply), 7)] or [""]
        if self.path == "/api/chat":
            data = b"".join(
                json.dumps(
                    {"model": "llava:7b", "message": {"role": "assistant", "content": t}, "done": d}
                ).encode()
                + b"\n"
                for t, d in [*((p, False) for p in pieces), ("", True)]
            )
            ctype = "application/x-ndjson"
        else:
            events = [{"choices": [{"delta": {"content": p}}]} for p in pieces]
            data = b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events)
            data += b"data: [DONE]\n\n"
            ctype = "text/event-stream"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        return None


def queues(script: dict[str, list[str]]) -> Callable[[str, dict[str, Any]], str]:
    """A responder popping each image's replies in order (report turns and labels turns)."""
    left = {k: list(v) for k, v in script.items()}

    def respond(key: str, body: dict[str, Any]) -> str:
        return left[key].pop(0)

    return respond


@contextmanager
def canned(responder: Callable[[str, dict[str, Any]], str]) -> Iterator[tuple[str, list]]:
    """A server on 127.0.0.1 answering with ``responder``: (base URL, request log)."""
    CannedServer.bodies = []
    CannedServer.unexpected = []
    CannedServer.responder = staticmethod(responder)
    srv = ThreadingHTTPServer(("127.0.0.1", 0), CannedServer)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", CannedServer.bodies
    finally:
        srv.shutdown()
        srv.server_close()


def backend_params(kind: str, url: str) -> dict[str, str]:
    """DraftParams fields for the canned server as an Ollama or an OpenAI-compatible server."""
    if kind == "ollama":
        return {"backend": "ollama", "model": "llava:7b", "host": url}
    return {"backend": "openai", "model": "vlm", "base_url": url + "/v1"}
