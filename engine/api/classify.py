"""The image classifier through the API: train, evaluate, predict, second opinion.

Each function takes its parameters dataclass and returns its result dataclass (both here), so
``--engine SPEC`` runs the descriptions on the GPU node exactly as in-process; progress arrives
as ``progress`` notifications. DATA is a class-per-folder tree (DICOM, PNG, JPEG) or a labels
TSV; ``workspace`` trains on a reviewed MRI workspace instead (labels from its effective
mapping).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import UserError


@dataclass
class ClassifyFeatureParams:
    """How features are made (shared by every classify method)."""

    source: str = ""  # vlm | header | both ("" : vlm for train, the bundle's otherwise)
    embedder: str = ""  # create_embedder spec ("" : minilm, or the bundle's)
    backend: str = ""  # vision backend: ollama | openai | transformers | llama-cpp
    model: str = ""
    host: str = ""  # Ollama host
    base_url: str = ""  # OpenAI-compatible base URL
    config: str = ""  # TOML: [describe], [families], [prompts]
    n_prompts: int = 0  # 0: the config's / default 50
    concurrency: int = 0  # 0: the config's / default 4 requests in flight
    temperature: float | None = None
    seed: int | None = None
    cache: str = ""  # sqlite file or folder ("" : the user's cache dir)
    include_names: bool = False  # header text with series/protocol names
    progress: bool = True


@dataclass
class ClassifyTrainParams(ClassifyFeatureParams):
    data: str = ""  # class-per-folder tree or labels TSV
    out_model: str = ""  # the bundle (.joblib) to write
    workspace: str = ""  # a reviewed OUT instead of DATA
    label_kind: str = "suffix"  # workspace: suffix | datatype/suffix
    group_by: str = "subject"  # workspace: subject | series (CV groups)
    folds: int = 5  # grouped CV folds (0: none)
    kernel: str = "linear"  # the SVC's: linear | rbf


@dataclass
class ClassMetrics:
    accuracy: float = 0.0
    macro_f1: float = 0.0
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)
    confusion: list[list[int]] = field(default_factory=list)
    folds: int = 0


@dataclass
class ClassifyTrainResult:
    bundle: str
    classes: list[str] = field(default_factory=list)
    source: str = ""
    n_images: int = 0
    n_rows: int = 0  # descriptions (rows of the training matrix)
    generated: int = 0  # descriptions the model wrote in this run (the rest came from cache)
    cv: ClassMetrics | None = None
    confusion_png: str = ""  # the cross-validated confusion matrix (beside the bundle)
    message: str = ""


@dataclass
class ClassifyEvaluateParams(ClassifyFeatureParams):
    data: str = ""
    model_path: str = ""  # the bundle
    out_dir: str = ""  # where the confusion PNG and per-class table go (default: beside it)


@dataclass
class ClassifyEvaluateResult:
    metrics: ClassMetrics
    confusion_png: str = ""
    per_class_path: str = ""
    table: str = ""
    n_images: int = 0
    message: str = ""


@dataclass
class ClassifyPredictParams(ClassifyFeatureParams):
    model_path: str = ""
    files: list[str] = field(default_factory=list)


@dataclass
class ClassPrediction:
    file: str
    label: str
    probs: dict[str, float] = field(default_factory=dict)


@dataclass
class ClassifyPredictResult:
    predictions: list[ClassPrediction] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)


@dataclass
class SecondOpinionParams(ClassifyFeatureParams):
    out_dir: str = ""
    model_path: str = ""
    groups: list[str] = field(default_factory=list)  # [] : every group
    max_series: int = 4  # series per group that are classified


@dataclass
class GroupOpinion:
    group_id: str
    image_says: str = ""
    probs: dict[str, float] = field(default_factory=dict)
    name_says: str = ""
    disagrees: bool = False
    n_series: int = 0
    rationale: str = ""


@dataclass
class SecondOpinionResult:
    out_dir: str
    opinions: list[GroupOpinion] = field(default_factory=list)
    path: str = ""  # OUT/image_opinion.json
    n_disagree: int = 0
    message: str = ""


@dataclass
class ConfusionParams:
    out_dir: str = ""  # a workspace with a second opinion: its bundle's matrix
    model_path: str = ""  # or a bundle directly


@dataclass
class ConfusionResult:
    """A bundle's cross-validated confusion matrix: the PNG (also saved) and its numbers."""

    png_base64: str
    png_path: str = ""
    labels: list[str] = field(default_factory=list)
    confusion: list[list[int]] = field(default_factory=list)  # rows: truth, columns: predicted
    accuracy: float = 0.0
    macro_f1: float = 0.0
    folds: int = 0
    bundle: str = ""
    message: str = ""


def _settings(p: ClassifyFeatureParams, folds: int = 5) -> Any:
    from engine.classify.describe import DescribeConfig
    from engine.classify.pipeline import Settings

    over: dict[str, Any] = {
        "n_prompts": p.n_prompts or None,
        "concurrency": p.concurrency or None,
        "temperature": p.temperature,
        "seed": p.seed,
    }
    desc = None
    if p.config:
        desc = DescribeConfig.from_toml(p.config, **over)
    elif any(v is not None for v in over.values()):
        desc = DescribeConfig(**{k: v for k, v in over.items() if v is not None})
    opts = {k: v for k, v in (("host", p.host), ("base_url", p.base_url)) if v}
    return Settings(
        source=p.source or None,
        embedder=p.embedder or None,
        backend=p.backend or None,
        model=p.model or None,
        backend_options=opts,
        describe=desc,
        cache=p.cache,
        folds=folds,
        seed=p.seed or 0,
        include_names=p.include_names,
        progress=p.progress,
    )


def _metrics(m: dict[str, Any]) -> ClassMetrics:
    return ClassMetrics(
        accuracy=float(m.get("accuracy", 0.0)),
        macro_f1=float(m.get("macro_f1", 0.0)),
        per_class={
            c: {k: float(v) for k, v in d.items()} for c, d in m.get("per_class", {}).items()
        },
        labels=list(m.get("labels", [])),
        confusion=[[int(x) for x in r] for r in m.get("confusion", [])],
        folds=int(m.get("folds", 0)),
    )


def classify_train(p: ClassifyTrainParams) -> ClassifyTrainResult:
    """Train an image classifier (descriptions or header facts -> embeddings -> SVC)."""
    from engine.classify import pipeline
    from engine.classify.features import load_dataset

    if not p.out_model:
        raise UserError("name the bundle to write (OUT_MODEL)")
    s = _settings(p, p.folds)
    s.kernel = p.kernel or "linear"
    label_kind = "label"
    if p.workspace:
        from engine.classify.workspace import workspace_items

        items, _, _ = workspace_items(
            p.workspace, p.source or "vlm", p.label_kind, p.group_by, p.include_names
        )
        label_kind = p.label_kind
        if not items:
            raise UserError(f"{p.workspace}: no named group to learn from")
    elif p.data:
        items = load_dataset(p.data)
    else:
        raise UserError("give DATA (class folders or a labels TSV) or --workspace OUT")
    bundle, cv = pipeline.train(items, p.out_model, s, label_kind)
    res = ClassifyTrainResult(
        bundle=p.out_model,
        classes=bundle.classes,
        source=bundle.source,
        n_images=int(bundle.data.get("n_images", 0)),
        n_rows=int(bundle.data.get("rows", 0)),
        generated=int(bundle.data.get("generated", 0)),
        cv=_metrics(cv) if cv else None,
        confusion_png=str(cv.get("confusion_png", "")) if cv else "",
    )
    parts = [
        f"trained {len(res.classes)} classes on {res.n_images} images "
        f"({res.n_rows} rows, source {res.source}, {res.generated} new descriptions)"
    ]
    if res.cv is not None:
        parts.append(
            f"grouped {res.cv.folds}-fold CV: accuracy {res.cv.accuracy:.3f}, "
            f"macro-F1 {res.cv.macro_f1:.3f}; confusion matrix {res.confusion_png}"
        )
    res.message = "; ".join(parts) + f"; bundle {p.out_model}"
    for w in bundle.data.get("warnings") or []:
        res.message += f"\nwarning: {w}"
    return res


def classify_evaluate(p: ClassifyEvaluateParams) -> ClassifyEvaluateResult:
    """Accuracy, macro-F1, per-class table and confusion PNG of a bundle on labelled DATA."""
    from engine.classify import pipeline
    from engine.classify.features import load_dataset

    items = load_dataset(p.data)
    m = pipeline.evaluate(items, p.model_path, _settings(p), p.out_dir)
    res = ClassifyEvaluateResult(
        metrics=_metrics(m),
        confusion_png=m["confusion_png"],
        per_class_path=m["per_class_path"],
        table=m["per_class_table"],
        n_images=len(items),
    )
    res.message = (
        f"{len(items)} images: accuracy {res.metrics.accuracy:.3f}, macro-F1 "
        f"{res.metrics.macro_f1:.3f}; confusion matrix {res.confusion_png}"
    )
    return res


def classify_predict(p: ClassifyPredictParams) -> ClassifyPredictResult:
    """The class of each file and every class's confidence."""
    from engine.classify import pipeline
    from engine.classify.features import ImageItem

    if not p.files:
        raise UserError("name the image files to classify")
    missing = [f for f in p.files if not Path(f).is_file()]
    if missing:
        raise UserError(f"no such file: {', '.join(missing)}")
    items = [ImageItem(f, key=f) for f in p.files]
    preds = pipeline.predict(items, p.model_path, _settings(p))
    classes = list(preds[0].probs) if preds else []
    return ClassifyPredictResult([ClassPrediction(x.key, x.label, x.probs) for x in preds], classes)


def classify_second_opinion(p: SecondOpinionParams) -> SecondOpinionResult:
    """Classify each group's images; flag groups whose image class disagrees with the name."""
    from engine.classify.workspace import OPINION_FILE, second_opinion

    ops = second_opinion(p.out_dir, p.model_path, _settings(p), p.groups or None, p.max_series)
    res = SecondOpinionResult(
        out_dir=p.out_dir,
        opinions=[
            GroupOpinion(
                o.group_id,
                o.image_says,
                o.probs,
                o.name_says,
                o.disagrees,
                o.n_series,
                o.rationale(),
            )
            for o in ops
        ],
        path=str(Path(p.out_dir) / OPINION_FILE),
    )
    res.n_disagree = sum(o.disagrees for o in res.opinions)
    res.message = f"{len(res.opinions)} groups classified, {res.n_disagree} disagree with the name"
    return res


def classify_confusion(p: ConfusionParams) -> ConfusionResult:
    """The confusion matrix of a bundle's grouped cross-validation (a workspace's or a file)."""
    import base64
    import json

    from engine.classify import model as M
    from engine.classify.workspace import OPINION_FILE

    path = p.model_path
    if not path and p.out_dir:
        op = Path(p.out_dir) / OPINION_FILE
        try:
            path = str(json.loads(op.read_text(encoding="utf-8")).get("bundle") or "")
        except (OSError, ValueError, AttributeError):
            path = ""
        if not path:
            raise UserError(
                f"{p.out_dir}: no image classifier second opinion yet (run "
                "`llm-heuristics classify second-opinion OUT MODEL`)"
            )
    if not path:
        raise UserError("give OUT (a workspace with a second opinion) or the bundle")
    b = M.load_bundle(path)
    if not b.cv or not b.cv.get("confusion"):
        raise UserError(
            f"{path} was trained without cross-validation (--folds 0): no confusion matrix; "
            "retrain with --folds 5 or run `classify evaluate` on labelled data"
        )
    from engine.classify.pipeline import cv_confusion_path

    png = Path(p.out_dir) / "image_confusion.png" if p.out_dir else cv_confusion_path(path)
    title = f"grouped {b.cv.get('folds', 0)}-fold CV: accuracy {b.cv['accuracy']:.3f}, "
    title += f"macro-F1 {b.cv['macro_f1']:.3f}"
    M.confusion_png(b.cv, png, title)
    m = _metrics(b.cv)
    return ConfusionResult(
        png_base64=base64.b64encode(png.read_bytes()).decode("ascii"),
        png_path=str(png),
        labels=m.labels,
        confusion=m.confusion,
        accuracy=m.accuracy,
        macro_f1=m.macro_f1,
        folds=m.folds,
        bundle=str(path),
        message=f"{title} ({len(m.labels)} classes, bundle {path}); saved {png}",
    )
