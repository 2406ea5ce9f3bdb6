"""transformers backend on a tiny random LlamaForCausalLM + BPE tokenizer saved by the test."""

from __future__ import annotations

import threading

import pytest

from engine.llm.answer import answer_schema, extract_json, validate_json
from engine.llm.backend import GenerationOptions, Message, create_backend
from tests.fixtures_models import make_tiny_hf_model

pytest.importorskip("torch", reason="torch not installed ([hf] extra)")
pytest.importorskip("transformers", reason="transformers not installed ([hf] extra)")

MSGS = [Message("system", "You map MRI series."), Message("user", "Which BIDS name fits?")]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_hf_model(tmp_path_factory.mktemp("hf") / "tiny-llama")


@pytest.fixture(scope="module")
def backend(model_dir):
    b = create_backend("transformers", str(model_dir), quantization=False)
    b.load()
    yield b
    b.unload()


def test_streams_with_text_iterator_streamer(backend):
    deltas = list(backend.stream_chat(MSGS, GenerationOptions(max_tokens=16)))
    assert len(deltas) >= 2


def test_cancel(backend):
    ev = threading.Event()
    got = []
    for d in backend.stream_chat(MSGS, GenerationOptions(max_tokens=300), ev):
        got.append(d)
        ev.set()
    assert len(got) == 1


def test_xgrammar_constrains_json(backend):
    pytest.importorskip("xgrammar", reason="xgrammar not installed")
    schema = answer_schema("g-7")
    text = backend.chat(MSGS, GenerationOptions(max_tokens=300, json_schema=schema))
    obj = extract_json(text)
    assert validate_json(obj, schema) == [], text


def test_loads_in_nf4_on_cpu(model_dir):
    try:
        import bitsandbytes  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"bitsandbytes cannot load on this machine: {exc}")
    b = create_backend("transformers", str(model_dir), quantization=True)
    try:
        b.load()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"bitsandbytes NF4 not supported on this CPU: {exc}")
    try:
        assert b.quantized
        layer = b._model.model.layers[0].self_attn.q_proj
        assert type(layer).__name__ == "Linear4bit"
        assert layer.weight.quant_type == "nf4"
        text = b.chat(MSGS, GenerationOptions(max_tokens=300, json_schema=answer_schema("g")))
        assert validate_json(extract_json(text), answer_schema("g")) == []
    finally:
        b.unload()


def test_never_downloads(tmp_path):
    from engine.llm.backend import BackendError

    b = create_backend("transformers", "meta-llama/Llama-3.1-8B-Instruct", quantization=False)
    with pytest.raises(BackendError, match="local files"):
        b.load()
