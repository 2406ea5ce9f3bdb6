"""Settings precedence (CLI > env > TOML > defaults) and ``config show``."""

from __future__ import annotations

import json

import pytest

from engine.cli import main
from engine.config import config_path, load_settings
from engine.errors import UserError


def test_precedence_and_sources(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text('backend = "ollama"\nmodel = "from-file"\n[llm]\nseed = 5\nllm_all = true\n')
    env = {"LLM_MODEL_NAME": "from-env", "LLM_USE_QUANTIZATION": "false", "LOG_LEVEL": "debug"}
    s = load_settings({"backend": "transformers", "model": None}, env=env, path=cfg)
    assert (s.backend, s.sources["backend"]) == ("transformers", "command line --backend")
    assert (s.model, s.sources["model"]) == ("from-env", "environment LLM_MODEL_NAME")
    assert s.quantization is False and s.log_level == "DEBUG"
    assert s.seed == 5 and s.llm_all is True and s.sources["seed"].startswith("config file")
    assert s.n_ctx == 4096 and s.sources["n_ctx"] == "default"
    # LLMH_* wins over the short names
    s = load_settings(env={**env, "LLMH_MODEL": "llmh"}, path=cfg)
    assert (s.model, s.sources["model"]) == ("llmh", "environment LLMH_MODEL")
    s = load_settings(env={"LLMH_GGUF_DIRS": "/a:/b"}, path=tmp_path / "none.toml")
    assert s.gguf_dirs == ["/a", "/b"]


def test_bad_values_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="LLM_USE_QUANTIZATION"):
        load_settings(env={"LLM_USE_QUANTIZATION": "maybe"}, path=tmp_path / "x.toml")
    with pytest.raises(UserError, match="backend"):
        load_settings({"backend": "gpt"}, env={}, path=tmp_path / "x.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("backend = [")
    with pytest.raises(UserError, match="config file"):
        load_settings(env={}, path=bad)


def test_config_show_and_path(tmp_path, monkeypatch, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('model = "m.gguf"\n')
    monkeypatch.setenv("LLMH_CONFIG", str(cfg))
    monkeypatch.setenv("LLM_USE_QUANTIZATION", "0")
    assert main(["config", "path"]) == 0
    assert capsys.readouterr().out.strip() == str(cfg)
    assert main(["config", "show", "--json", "--no-quantization", "--backend", "ollama"]) == 0
    doc = json.loads(capsys.readouterr().out)["settings"]
    assert doc["model"] == {"value": "m.gguf", "source": f"config file {cfg}"}
    assert doc["quantization"]["source"] == "command line --quantization"
    assert doc["backend"]["value"] == "ollama"
    assert main(["config", "show"]) == 0
    out = capsys.readouterr().out
    assert "environment LLM_USE_QUANTIZATION" in out and "m.gguf" in out
    assert config_path({"LLMH_CONFIG": "/x/y.toml"}).as_posix() == "/x/y.toml"


def test_models_command(tmp_path, monkeypatch, capsys):
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "a.gguf").write_bytes(b"GGUF")
    snap = tmp_path / "hf" / "hub" / "models--org--tiny" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    (snap / "model.safetensors").write_bytes(b"x")
    monkeypatch.setenv("LLMH_GGUF_DIRS", str(tmp_path / "g"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("LLMH_CONFIG", str(tmp_path / "none.toml"))
    assert main(["models", "--json", "--no-servers"]) == 0
    doc = json.loads(capsys.readouterr().out)
    names = {(m["backend"], m["name"]) for m in doc["models"]}
    assert ("llama-cpp", str(tmp_path / "g" / "a.gguf")) in names
    assert ("transformers", "org/tiny") in names
    assert {b["backend"] for b in doc["backends"]} >= {"llama-cpp", "transformers"}
