"""``style build``: priors -> profile + embedding index, stored in the user's data folder;
and the retrieval that reads that index back (the k most similar prior pairs)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine import context
from engine.errors import UserError
from engine.report.style import store
from engine.report.style.priors import PriorPair, read_priors
from engine.report.style.profile import build_profile


@dataclass
class Built:
    radiologist: str
    folder: Path
    profile: dict[str, Any]
    n_pairs: int
    skipped: list[str]


def _embedder(spec: Any) -> Any:
    from engine.llm.embed import create_embedder

    return create_embedder(spec or "minilm")


def build_style(
    priors_path: str | os.PathLike[str],
    radiologist: str,
    embedder: Any = "minilm",
    data_dir: str | os.PathLike[str] | None = None,
) -> Built:
    """Profile ``radiologist`` from PRIOR_REPORTS and index their (findings -> impression)."""
    store.slug(radiologist)  # a bad name fails before any work
    priors = read_priors(priors_path)
    context.progress(0.1, f"{len(priors.pairs)} prior pairs read")
    emb = _embedder(embedder)
    vectors = emb.embed([p.findings for p in priors.pairs])
    context.progress(0.8, "findings embedded")
    profile = build_profile(radiologist, priors)
    profile["embedder"] = {"name": emb.name, "fingerprint": emb.fingerprint}
    meta = {"embedder": emb.name, "fingerprint": emb.fingerprint, "n": len(priors.pairs)}
    d = store.save(radiologist, profile, priors.pairs, vectors, meta, data_dir)
    context.progress(1.0, f"profile and index of {radiologist!r} in {d}")
    return Built(radiologist, d, profile, len(priors.pairs), priors.skipped)


class Retriever:
    """The k prior pairs of one radiologist whose findings are closest to new findings."""

    def __init__(
        self, radiologist: str, embedder: Any = None, data_dir: str | os.PathLike[str] | None = None
    ) -> None:
        self.vectors, self.meta = store.load_index(radiologist, data_dir)
        self.pairs: list[PriorPair] = store.load_pairs(radiologist, data_dir)
        self.embedder = _embedder(embedder or "minilm")
        if self.embedder.fingerprint != self.meta.get("fingerprint"):
            raise UserError(
                f"the index of {radiologist!r} was built with {self.meta.get('embedder')}, not "
                f"{self.embedder.name}: use that embedder or build the profile again"
            )

    def nearest(self, findings: str, k: int) -> list[tuple[PriorPair, float]]:
        if k <= 0 or not self.pairs:
            return []
        q = self.embedder.embed([findings])[0]
        sims = self.vectors @ q
        order = np.argsort(-sims, kind="stable")[:k]
        return [(self.pairs[i], float(sims[i])) for i in order]
