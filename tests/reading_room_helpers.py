"""The reading room tests' canned OpenAI-compatible server and a tmux driver.

The server answers the report request with a well-formed ten-step report whose impression the
labeler reads differently from the model's labels (disagreements to mark), and the labels
request with that JSON. ``gate`` cleared holds the report reply before its Findings, so a test
sees the draft streaming in.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NIH = ROOT.parent / "shared" / "data" / "cxr" / "nih_images"
LABELS = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Lesion",
    "Lung Opacity",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
STEPS = [
    "Technique adequate, good inspiration.",
    "Frontal PA view.",
    "No lines or tubes.",
    "Trachea midline.",
    "Lungs clear.",
    "No effusion, no pneumothorax.",
    "Heart mildly enlarged.",
    "Bones intact.",
    "No prior for comparison.",
    "Mild cardiomegaly, nothing acute.",
]
REPORT = (
    "Technique: Single frontal chest radiograph.\n"
    "View: PA.\n"
    "Findings: The lungs are clear. No pleural effusion. No pneumothorax. "
    "The heart is mildly enlarged.\n"
    "Impression: No pneumothorax. Mild cardiomegaly.\n"
)
COT_REPLY = "Reasoning:\n" + "".join(f"{i}. {s}\n" for i, s in enumerate(STEPS, 1)) + REPORT
# The model says pneumothorax and no cardiomegaly; its impression says the opposite.
MODEL_LABELS = {k: None for k in LABELS} | {"Pneumothorax": 1, "Cardiomegaly": 0}


class Canned:
    def __init__(self) -> None:
        self.gate = threading.Event()  # cleared: the report reply stops before its Findings
        self.gate.set()
        self.requests: list[dict[str, Any]] = []
        self.reply = COT_REPLY  # the report reply (a test may make it malformed)
        handler = self._handler()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        canned = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *a: Any) -> None:
                pass

            def do_GET(self) -> None:
                body = json.dumps({"data": [{"id": "canned-cxr"}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                try:
                    self._reply()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client cancelled and closed the stream

            def _reply(self) -> None:
                n = int(self.headers.get("Content-Length", "0"))
                req = json.loads(self.rfile.read(n))
                canned.requests.append(req)
                structured = "response_format" in req
                text = json.dumps({"labels": MODEL_LABELS}) if structured else canned.reply
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                words = text.split(" ")
                hold = next((i for i, w in enumerate(words) if "Findings:" in w), -1)
                for i, w in enumerate(words):
                    if i == hold and not structured:
                        canned.gate.wait(30)  # a test holds the stream here
                    chunk = w if i == 0 else " " + w
                    ev = {"choices": [{"delta": {"content": chunk}}]}
                    self.wfile.write(f"data: {json.dumps(ev)}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

        return H

    def close(self) -> None:
        self.gate.set()
        self.httpd.shutdown()
