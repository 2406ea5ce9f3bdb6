"""Paired bootstrap of an A/B difference (B minus A), seeded, numpy only.

Both arms are scored on the same cases, so the cases are resampled together: each bootstrap
replicate draws n case indices with replacement and recomputes the statistic of both arms on
them. The interval is the percentile interval of the replicated differences. Per-case means
(BLEU, ROUGE-L, METEOR, BERTScore) and corpus micro F1 (from per-case true/false positive
counts) are both supported without a Python loop over replicates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass
class DeltaCI:
    """One metric of an A/B comparison."""

    metric: str
    a: float  # arm A (image only) on all cases
    b: float  # arm B (image + EHR)
    delta: float  # b - a
    low: float  # percentile bootstrap interval of the delta
    high: float
    n: int
    n_boot: int
    level: float = 0.95

    def covers(self, value: float) -> bool:
        return self.low - 1e-12 <= value <= self.high + 1e-12

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resample_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    """``(n_boot, n)`` case indices drawn with replacement (the same for every metric)."""
    if n < 1:
        raise ValueError("the bootstrap needs at least one case")
    if n_boot < 1:
        raise ValueError("n_boot must be at least 1")
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def _interval(boots: np.ndarray, level: float) -> tuple[float, float]:
    if not 0 < level < 1:
        raise ValueError("the interval level must be between 0 and 1")
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(boots, [tail, 100 - tail])
    return float(lo), float(hi)


def mean_delta(
    metric: str,
    a: Sequence[float],
    b: Sequence[float],
    *,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    idx: np.ndarray | None = None,
) -> DeltaCI:
    """Difference of per-case means, B - A, with a paired bootstrap interval."""
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if xa.shape != xb.shape or xa.ndim != 1:
        raise ValueError(f"{metric}: both arms need one score per case ({xa.shape} vs {xb.shape})")
    idx = resample_indices(len(xa), n_boot, seed) if idx is None else idx
    d = xb - xa
    boots = d[idx].mean(axis=1)
    lo, hi = _interval(boots, level)
    return DeltaCI(
        metric,
        float(xa.mean()),
        float(xb.mean()),
        float(d.mean()),
        lo,
        hi,
        len(xa),
        len(idx),
        level,
    )


def _micro_f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    den = 2 * tp + fp + fn
    return np.where(tp > 0, 2 * tp / np.maximum(den, 1), 0.0)


def counts(
    pred: Sequence[dict[str, Any]], ref: Sequence[dict[str, Any]], labels: Sequence[str]
) -> np.ndarray:
    """Per case (tp, fp, fn) over ``labels``; positive means 1 (uncertain and blank are not)."""
    out = np.zeros((len(pred), 3), dtype=np.int64)
    for i, (p, r) in enumerate(zip(pred, ref, strict=True)):
        for k in labels:
            a, b = p.get(k) == 1, r.get(k) == 1
            out[i] += (a and b, a and not b, b and not a)
    return out


def micro_f1_delta(
    metric: str,
    counts_a: np.ndarray,
    counts_b: np.ndarray,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    idx: np.ndarray | None = None,
) -> DeltaCI:
    """Difference of corpus micro F1 (from per-case tp/fp/fn rows), B - A, paired bootstrap."""
    ca, cb = np.asarray(counts_a), np.asarray(counts_b)
    if ca.shape != cb.shape or ca.ndim != 2 or ca.shape[1] != 3:
        raise ValueError(f"{metric}: counts must be (cases, 3) for both arms")
    idx = resample_indices(len(ca), n_boot, seed) if idx is None else idx
    sa, sb = ca[idx].sum(axis=1), cb[idx].sum(axis=1)  # (n_boot, 3)
    boots = _micro_f1(*sb.T) - _micro_f1(*sa.T)
    fa = float(_micro_f1(*ca.sum(axis=0)))
    fb = float(_micro_f1(*cb.sum(axis=0)))
    lo, hi = _interval(boots, level)
    return DeltaCI(metric, fa, fb, fb - fa, lo, hi, len(ca), len(idx), level)


def format_table(rows: Sequence[DeltaCI]) -> str:
    """The delta table as text (the CLI prints it)."""
    if not rows:
        return "no metric"
    pct = f"{rows[0].level:.0%}"
    head = f"{'metric':<24}{'image':>9}{'+EHR':>9}{'delta':>9}   {pct} CI (paired bootstrap)"
    lines = [head]
    for r in rows:
        lines.append(
            f"{r.metric:<24}{r.a:>9.4f}{r.b:>9.4f}{r.delta:>+9.4f}   [{r.low:+.4f}, {r.high:+.4f}]"
        )
    lines.append(f"n = {rows[0].n} cases, {rows[0].n_boot} bootstrap replicates")
    return "\n".join(lines)
