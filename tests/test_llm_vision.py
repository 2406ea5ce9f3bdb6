"""Images in messages: a tiny random LLaVA (transformers, in-process and in a worker), and
contract tests that the image bytes reach Ollama, OpenAI-compatible servers and llama.cpp."""

from __future__ import annotations

import base64
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from engine.llm.backend import GenerationOptions, Message, create_backend
from engine.llm.base import image_bytes, image_data_uri, image_pil
from tests.conftest import SHARED_DATA
from tests.fixtures_models import make_tiny_gguf, make_tiny_llava


def _png(size: tuple[int, int] = (40, 30), colour: int = 90) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, (colour, 20, 200)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def xray() -> bytes:
    """A real chest X-ray (NIH, ../shared/data) when present, else a generated PNG."""
    pngs = sorted((SHARED_DATA / "cxr" / "nih_images").glob("*.png"))
    return pngs[0].read_bytes() if pngs else _png((64, 64))


def _dicom(path: Path) -> Path:
    import numpy as np
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    ds.Rows, ds.Columns = 12, 20
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = (np.arange(240, dtype=np.uint16).reshape(12, 20) * 10).tobytes()
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def test_image_helpers_pass_png_and_render_dicom(tmp_path):
    from PIL import Image

    png = _png()
    assert image_bytes(png) == png
    p = tmp_path / "x.png"
    p.write_bytes(png)
    assert image_bytes(str(p)) == png and image_bytes(p) == png
    assert image_data_uri(png) == "data:image/png;base64," + base64.b64encode(png).decode()
    dcm = _dicom(tmp_path / "x.dcm")
    rendered = image_bytes(dcm)
    assert rendered.startswith(b"\x89PNG")
    with Image.open(io.BytesIO(rendered)) as im:
        assert im.size == (20, 12)
    assert image_pil(str(dcm)).mode == "RGB"
    assert image_bytes(Image.new("L", (3, 4))).startswith(b"\x89PNG")


# --- transformers: a tiny random LLaVA ----------------------------------------------------------


@pytest.fixture(scope="module")
def llava_dir(tmp_path_factory):
    pytest.importorskip("transformers")
    pytest.importorskip("torch")
    return make_tiny_llava(tmp_path_factory.mktemp("llava") / "tiny-llava")


def test_tiny_llava_streams_a_reply_to_an_image(llava_dir, xray, tmp_path):
    b = create_backend("transformers", str(llava_dir), quantization=False)
    with b:
        assert b.vision
        msgs = [Message("user", "What does this chest X-ray show?", images=[xray])]
        deltas = list(b.stream_chat(msgs, GenerationOptions(max_tokens=8)))
        assert deltas and all(isinstance(d, str) for d in deltas)
        # 32 / 8 = 4 x 4 patches: the processor put 16 image tokens into the prompt
        assert b.last_input["images"] == 1 and b.last_input["image_tokens"] == 16
        text_only = b.chat([Message("user", "And without an image?")], GenerationOptions(4))
        assert isinstance(text_only, str) and b.last_input["image_tokens"] == 0
        dicom = _dicom(tmp_path / "slice.dcm")
        b.chat([Message("user", "and this MR slice?", images=[dicom])], GenerationOptions(4))
        assert b.last_input["images"] == 1


def test_tiny_llava_in_a_worker(llava_dir, xray):
    b = create_backend("transformers", str(llava_dir), isolate=True, quantization=False)
    with b:
        assert b.vision is True  # reported by the worker
        text = b.chat([Message("user", "Describe.", images=[xray])], GenerationOptions(6))
        assert isinstance(text, str)


# --- contract servers ------------------------------------------------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    bodies: list[tuple[str, dict[str, Any]]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def _json(self, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/api/tags":
            self._json({"models": [{"name": "llava:7b", "model": "llava:7b", "size": 1}]})
        else:
            self._json({"data": [{"id": "vlm"}]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).bodies.append((self.path, body))
        if self.path == "/api/generate":
            self._json({"model": body["model"], "response": "", "done": True})
        elif self.path == "/api/chat":
            data = b"".join(
                json.dumps(
                    {"model": "llava:7b", "message": {"role": "assistant", "content": t}, "done": d}
                ).encode()
                + b"\n"
                for t, d in (("I see", False), (" lungs", False), ("", True))
            )
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        else:  # OpenAI-compatible /v1/chat/completions
            events = [{"choices": [{"delta": {"content": t}}]} for t in ("I see", " lungs")]
            data = b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events)
            data += b"data: [DONE]\n\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)


@pytest.fixture()
def recorder():
    _Recorder.bodies = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", _Recorder.bodies
    srv.shutdown()
    srv.server_close()


def test_ollama_receives_the_image_bytes(recorder, xray):
    pytest.importorskip("ollama")
    url, bodies = recorder
    from PIL import Image

    b = create_backend("ollama", "llava:7b", host=url)
    with b:
        msgs = [Message("user", "What is this?", images=[xray, Image.new("RGB", (6, 6))])]
        assert b.chat(msgs) == "I see lungs"
    chat = next(body for path, body in bodies if path == "/api/chat")
    imgs = chat["messages"][0]["images"]
    assert base64.b64decode(imgs[0]) == xray
    assert base64.b64decode(imgs[1]).startswith(b"\x89PNG")


def test_openai_receives_data_uris(recorder, xray):
    url, bodies = recorder
    b = create_backend("openai", "vlm", base_url=url + "/v1")
    with b:
        text = b.chat([Message("user", "What is this?", images=[xray])])
    assert text == "I see lungs"
    body = next(body for path, body in bodies if path == "/v1/chat/completions")
    parts = body["messages"][0]["content"]
    assert parts[0] == {"type": "text", "text": "What is this?"}
    uri = parts[1]["image_url"]["url"]
    head, b64 = uri.split(",", 1)
    assert head == "data:image/png;base64" and base64.b64decode(b64) == xray


# --- llama.cpp: the projector beside the GGUF and the chat handler --------------------------------


def test_llamacpp_finds_the_projector_and_hands_images_to_the_chat_handler(
    tmp_path, monkeypatch, xray
):
    pytest.importorskip("llama_cpp")
    from llama_cpp import llama_chat_format

    from engine.llm.llamacpp import chat_handler_name, find_mmproj

    gguf = make_tiny_gguf(tmp_path / "tiny-llava-v1.5.gguf")
    mmproj = tmp_path / "tiny-llava-v1.5-mmproj-f16.gguf"
    mmproj.write_bytes(b"GGUF")  # never opened: the handler below stands in for CLIP
    (tmp_path / "other-mmproj.gguf").write_bytes(b"GGUF")
    assert find_mmproj(gguf) == mmproj
    assert chat_handler_name("Qwen2.5-VL-7B-Q4.gguf") == "Qwen25VLChatHandler"
    assert chat_handler_name(gguf) == "Llava15ChatHandler"
    seen: list[Any] = []

    class FakeHandler:
        def __init__(self, clip_model_path: str, verbose: bool = True) -> None:
            seen.append(clip_model_path)

        def __call__(self, **kwargs: Any) -> Any:
            seen.append(kwargs["messages"])
            return iter([{"choices": [{"delta": {"content": "a lung"}}]}])

    monkeypatch.setattr(llama_chat_format, "Llava15ChatHandler", FakeHandler)
    b = create_backend("llama-cpp", str(gguf), n_ctx=512)
    with b:
        assert b.vision and b.mmproj == str(mmproj)
        assert b.chat([Message("user", "What is this?", images=[xray])]) == "a lung"
    assert seen[0] == str(mmproj)
    part = seen[1][0]["content"][1]
    assert part["type"] == "image_url"
    assert base64.b64decode(part["image_url"]["url"].split(",", 1)[1]) == xray
