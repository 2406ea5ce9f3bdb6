"""train / evaluate / predict: describe (or read headers) -> embed -> scale -> SVC.

The steps the API calls. Everything slow goes through the cache (descriptions by image hash,
prompt and model; vectors by text and embedder fingerprint), so re-running ``train`` after an
interruption, or training another classifier on the same images, asks the model nothing new.
Progress goes to the engine's client (:mod:`engine.context`) and, outside an engine, as a bar
on stderr.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine import context
from engine.classify import model as M
from engine.classify.cache import DescriptionCache
from engine.classify.describe import DescribeConfig, Describer
from engine.classify.features import (
    SOURCES,
    ImageItem,
    header_text_of_file,
    summary,
)
from engine.errors import UserError

__all__ = [
    "Settings",
    "Prediction",
    "cv_confusion_path",
    "featurize",
    "train",
    "evaluate",
    "predict",
    "progress_bar",
]

ProgressFn = Callable[[int, int, str], None]


@dataclass
class Settings:
    """How features are made; ``None`` fields at prediction come from the bundle."""

    source: str | None = None  # vlm | header | both (train default vlm)
    embedder: str | None = None  # create_embedder spec (default minilm)
    backend: str | None = None  # vision backend kind (ollama, openai, transformers, llama-cpp)
    model: str | None = None
    backend_options: dict[str, Any] = field(default_factory=dict)  # host, base_url...
    describe: DescribeConfig | None = None
    cache: str = ""  # sqlite file or folder ("" : the user's cache dir)
    folds: int = 5
    seed: int = 0
    C: float = 1.0  # noqa: N815 - the SVC's name for it
    kernel: str = "linear"  # linear | rbf (the SVC's)
    include_names: bool = False  # header text with the series/protocol names
    progress: bool = True  # a bar on stderr outside an engine


def progress_bar(show: bool = True) -> ProgressFn:
    """Report to the engine's client; outside one, draw ``[####....] n/N what`` on stderr."""
    last = {"t": 0.0, "what": ""}

    def report(done: int, total: int, what: str) -> None:
        context.progress(done / total if total else None, f"{what} {done}/{total}")
        if not show or context.current() is not None:
            return
        now = time.monotonic()
        if done < total and now - last["t"] < 0.2 and what == last["what"]:
            return
        last.update(t=now, what=what)
        width = 30
        fill = int(width * done / total) if total else width
        end = "\n" if done >= total else ""
        print(
            f"\r{what:<18} [{'#' * fill}{'.' * (width - fill)}] {done}/{total}",
            end=end,
            file=sys.stderr,
            flush=True,
        )

    return report


def _embedder(spec: str | None) -> Any:
    from engine.llm.embed import create_embedder

    return create_embedder(spec or "minilm")


def _backend(s: Settings) -> Any:
    from engine.llm.backend import create_backend

    if not s.backend or not s.model:
        raise UserError("the vlm source needs a vision backend and model (--backend, --model)")
    opts = dict(s.backend_options)
    isolate = opts.pop("isolate", None)  # None: the engine's default (a worker for local models)
    b = create_backend(s.backend, s.model, isolate=isolate, **opts)
    b.load()
    if getattr(b, "vision", True) is False:
        raise UserError(f"{s.backend} model {s.model} does not take images")
    return b


def featurize(
    items: list[ImageItem],
    source: str,
    embedder: Any,
    cache: DescriptionCache,
    describer: Describer | None = None,
    labelled: bool = True,
    include_names: bool = False,
    progress: ProgressFn | None = None,
) -> M.Features:
    """One row per description (``vlm``), per header (``header``) or both side by side."""
    if source not in SOURCES:
        raise UserError(f"source {source!r}: one of {', '.join(SOURCES)}")
    headers: list[str] = []
    if source in ("header", "both"):
        for it in items:
            if not it.header:
                it.header = header_text_of_file(it.path, include_names) if it.path else ""
            headers.append(it.header or "no header facts")
    if source == "header":
        texts = [[h] for h in headers]
    else:
        if describer is None:
            raise UserError("the vlm source needs a describer (a vision backend)")
        texts = describer.describe(items, labelled=labelled, progress=progress)
    flat = [t for ts in texts for t in ts]
    row_image = np.asarray([i for i, ts in enumerate(texts) for _ in ts], dtype=np.int64)
    if progress is not None:
        progress(0, 1, "embedding")
    X = cache.embed(embedder, flat)
    if source == "both":
        H = cache.embed(embedder, headers)
        X = np.hstack([X, H[row_image]])
    if progress is not None:
        progress(1, 1, "embedding")
    return M.Features(
        X, row_image, [it.label for it in items], [it.cv_group for it in items], texts
    )


def _describer(s: Settings, cache: DescriptionCache, source: str) -> Describer | None:
    if source == "header":
        return None
    return Describer(_backend(s), s.describe or DescribeConfig(), cache)


def _close(d: Describer | None) -> None:
    if d is not None:
        unload = getattr(d.backend, "unload", None)
        if unload is not None:
            unload()


def train(
    items: list[ImageItem], out_model: str, s: Settings, label_kind: str = "label"
) -> tuple[M.Bundle, dict[str, Any]]:
    """Cross-validate (grouped by image/series/subject), then fit on all and save the bundle."""
    source = s.source or "vlm"
    s.describe = s.describe or DescribeConfig()
    if any(not it.label for it in items):
        raise UserError("every training image needs a label")
    report = progress_bar(s.progress)
    cache = DescriptionCache(s.cache or None)
    emb = _embedder(s.embedder)
    describer = _describer(s, cache, source)
    try:
        feats = featurize(items, source, emb, cache, describer, True, s.include_names, report)
    finally:
        _close(describer)
    warnings = few_rows_warning(feats)
    for w in warnings:
        context.log(w)
    cv: dict[str, Any] = {}
    if s.folds >= 2:
        probs, classes, folds = M.cross_validate(feats, s.folds, s.seed, s.C, report, s.kernel)
        pred = [classes[i] for i in probs.argmax(axis=1)]
        cv = M.metrics(feats.labels, pred, classes)
        cv["folds"] = len(folds)
        # saved beside the bundle: the matrix people look at (and the TUI shows) after training
        cv["confusion_png"] = str(M.confusion_png(cv, cv_confusion_path(out_model)))
    pipe = M.fit(feats, C=s.C, seed=s.seed, kernel=s.kernel)
    bundle = M.Bundle(
        classes=[str(c) for c in pipe.classes_],
        pipeline=pipe,
        source=source,
        embedder_name=emb.name,
        embedder_fingerprint=emb.fingerprint,
        embedder_spec=s.embedder or "minilm",
        describe=s.describe.to_dict() if source != "header" else {},
        prompts_hash=s.describe.prompts_hash if source != "header" else "",
        backend=(s.backend or "") if source != "header" else "",
        model=(s.model or "") if source != "header" else "",
        label_kind=label_kind,
        include_names=s.include_names,
        data={
            **summary(items),
            "digest": M.items_digest(items),
            "rows": int(len(feats.X)),
            "cache": str(cache.path),
            "generated": describer.generated if describer else 0,
            "kernel": s.kernel,
            "warnings": warnings,
            "C": s.C,
        },
        cv=cv,
    )
    M.save_bundle(bundle, out_model)
    cache.close()
    return bundle, cv


MIN_ROWS_PER_CLASS = 10


def few_rows_warning(feats: M.Features) -> list[str]:
    """SVC probabilities come from Platt scaling fitted by an internal 5-fold CV: with a few
    rows per class they can contradict the SVC's own votes (seen here: separable header facts of
    3 images a class scored 0.33 in CV). Say so rather than let the numbers mislead."""
    rows: dict[str, int] = {}
    for lab in feats.row_labels:
        rows[str(lab)] = rows.get(str(lab), 0) + 1
    few = sorted(c for c, n in rows.items() if n < MIN_ROWS_PER_CLASS)
    if not few:
        return []
    return [
        f"few training rows for {', '.join(few)} (under {MIN_ROWS_PER_CLASS} each): the class "
        "probabilities (Platt scaling) are unreliable; add images, or descriptions (vlm source)"
    ]


def cv_confusion_path(bundle_path: str) -> Path:
    """Where ``train`` saves the cross-validated confusion matrix of a bundle."""
    b = Path(bundle_path)
    return b.with_name(f"{b.stem}-cv-confusion.png")


def _for_bundle(bundle_path: str, s: Settings) -> tuple[M.Bundle, Settings, Any]:
    """The bundle, checked against the embedder and prompts in use (default: its own)."""
    head = M.load_bundle(bundle_path)
    emb = _embedder(s.embedder or head.embedder_spec or "minilm")
    desc = s.describe or (DescribeConfig(**head.describe) if head.describe else None)
    if desc is not None and s.describe is None and head.describe:
        desc.concurrency = head.describe.get("concurrency", desc.concurrency)
    bundle = M.load_bundle(
        bundle_path, emb.fingerprint, desc.prompts_hash if desc is not None else None
    )
    if s.source and s.source != bundle.source:
        raise M.BundleMismatch(
            f"{bundle_path} was trained on the {bundle.source!r} source, not {s.source!r}"
        )
    eff = Settings(**{**s.__dict__})
    eff.source = bundle.source
    eff.describe = desc
    eff.backend = s.backend or bundle.backend
    eff.model = s.model or bundle.model
    eff.include_names = bundle.include_names
    return bundle, eff, emb


def _image_probs(
    bundle: M.Bundle, items: list[ImageItem], s: Settings, emb: Any, labelled: bool
) -> tuple[np.ndarray, M.Features]:
    report = progress_bar(s.progress)
    cache = DescriptionCache(s.cache or None)
    describer = _describer(s, cache, bundle.source)
    try:
        feats = featurize(
            items, bundle.source, emb, cache, describer, labelled, bundle.include_names, report
        )
    finally:
        _close(describer)
        cache.close()
    probs = M.image_probabilities(bundle.pipeline, feats.X, feats.row_image, len(items))
    return probs, feats


def evaluate(
    items: list[ImageItem], bundle_path: str, s: Settings, out_dir: str = ""
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class table and a confusion-matrix PNG of a held-out set.

    The images are described as at prediction (the family gate decides, not the label)."""
    bundle, eff, emb = _for_bundle(bundle_path, s)
    probs, _ = _image_probs(bundle, items, eff, emb, labelled=False)
    pred = [bundle.classes[i] for i in probs.argmax(axis=1)]
    truth = [it.label for it in items]
    m = M.metrics(truth, pred, bundle.classes)
    out = Path(out_dir or Path(bundle_path).parent)
    stem = Path(bundle_path).stem
    m["confusion_png"] = str(M.confusion_png(m, out / f"{stem}-confusion.png"))
    table = M.per_class_table(m)
    (out / f"{stem}-per-class.txt").write_text(table + "\n", encoding="utf-8")
    m["per_class_table"] = table
    m["per_class_path"] = str(out / f"{stem}-per-class.txt")
    m["n_images"] = len(items)
    return m


@dataclass
class Prediction:
    key: str
    label: str
    probs: dict[str, float]
    family: str = ""
    descriptions: list[str] = field(default_factory=list)


def predict(items: list[ImageItem], bundle_path: str, s: Settings) -> list[Prediction]:
    """Each image's class and every class's probability (mean over its descriptions)."""
    bundle, eff, emb = _for_bundle(bundle_path, s)
    probs, feats = _image_probs(bundle, items, eff, emb, labelled=False)
    out = []
    for i, it in enumerate(items):
        p = {c: float(probs[i, j]) for j, c in enumerate(bundle.classes)}
        out.append(
            Prediction(
                it.key or it.path,
                max(p, key=p.__getitem__),
                p,
                descriptions=feats.texts[i][:3] if feats.texts else [],
            )
        )
    return out
