"""llama-cpp-python backend on a tiny random GGUF written by the test itself."""

from __future__ import annotations

import threading

import pytest

from engine.llm.answer import answer_schema, extract_json, parse_answer, validate_json
from engine.llm.backend import GenerationOptions, Message, create_backend
from tests.fixtures_models import make_tiny_gguf

pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed ([llamacpp] extra)")

MSGS = [Message("system", "You map MRI series."), Message("user", "Which BIDS name fits?")]


@pytest.fixture(scope="module")
def gguf_path(tmp_path_factory):
    return make_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


@pytest.fixture(scope="module")
def backend(gguf_path):
    b = create_backend("llama-cpp", str(gguf_path), n_gpu_layers=-1, n_ctx=2048)
    progress: list[float] = []
    b.load(lambda f, _m: progress.append(f))
    assert progress[0] == 0.0 and progress[-1] == 1.0
    yield b
    b.unload()
    assert not b.loaded


def test_streams_deltas(backend):
    deltas = list(backend.stream_chat(MSGS, GenerationOptions(max_tokens=24)))
    assert len(deltas) > 1
    assert backend.gpu_layers_used in (0, -1)  # CPU fallback when built without GPU


def test_json_schema_is_honoured_by_random_weights(backend):
    for gid in ("g-001", "grp_bold"):
        schema = answer_schema(gid)
        text = backend.chat(MSGS, GenerationOptions(max_tokens=400, json_schema=schema, seed=3))
        obj = extract_json(text)
        assert validate_json(obj, schema) == [], text
        assert obj["group_id"] == gid


def test_json_answer_parses_or_fails_only_on_bids_rules(backend):
    schema = answer_schema("g1")
    text = backend.chat(MSGS, GenerationOptions(max_tokens=400, json_schema=schema))
    try:
        parse_answer(text, "g1", schema)
    except ValueError as exc:  # random weights may pick e.g. an entity the suffix forbids
        assert "BIDS schema" in str(exc)


def test_cancel_stops_the_stream(backend):
    ev = threading.Event()
    got = []
    for d in backend.stream_chat(MSGS, GenerationOptions(max_tokens=200), ev):
        got.append(d)
        if len(got) == 2:
            ev.set()
    assert len(got) == 2
    assert backend.chat(MSGS, GenerationOptions(max_tokens=5), ev) == ""


def test_missing_gguf_is_a_clear_error(tmp_path):
    from engine.llm.backend import BackendError

    b = create_backend("llama-cpp", "nope.gguf", gguf_dirs=[str(tmp_path)])
    with pytest.raises(BackendError, match="not found"):
        b.load()


def test_model_found_by_name_in_gguf_dirs(gguf_path):
    from engine.llm.llamacpp import resolve_gguf

    assert resolve_gguf("tiny", [str(gguf_path.parent)]) == gguf_path
