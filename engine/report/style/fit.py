"""Style fit: whose impression is this? TF-IDF + logistic regression over every profiled
radiologist's priors.

Character n-grams (within word boundaries) see layout and punctuation ("1. ", "CXR",
closing formulas); word uni/bigrams see vocabulary. The probability that a text is R's is the
fit score reported next to the coarse and the refined impression.
"""

from __future__ import annotations

import os
from typing import Any

from engine.errors import UserError
from engine.report.style import store


class StyleClassifier:
    def __init__(self, texts: list[str], authors: list[str], seed: int = 0) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import FeatureUnion, make_pipeline

        if len(set(authors)) < 2:
            raise UserError(
                "style fit needs profiles of at least two radiologists (it tells them apart): "
                "build another one with `report style build`"
            )
        feats = FeatureUnion(
            [
                (
                    "char",
                    TfidfVectorizer(
                        analyzer="char_wb",
                        ngram_range=(2, 4),
                        lowercase=False,
                        sublinear_tf=True,
                        min_df=2,
                    ),
                ),
                (
                    "word",
                    TfidfVectorizer(
                        ngram_range=(1, 2),
                        sublinear_tf=True,
                        min_df=2,
                        token_pattern=r"(?u)\b\w+\b|\d+[.)]",
                    ),
                ),
            ]
        )
        self.model = make_pipeline(
            feats, LogisticRegression(max_iter=2000, C=4.0, random_state=seed)
        )
        self.model.fit(texts, authors)
        self.classes: list[str] = [str(c) for c in self.model.classes_]

    def proba(self, texts: list[str]) -> list[dict[str, float]]:
        if not texts:
            return []
        rows = self.model.predict_proba(texts)
        return [{c: float(p) for c, p in zip(self.classes, r, strict=True)} for r in rows]

    def fit(self, text: str, radiologist: str) -> float:
        """P(text is ``radiologist``'s)."""
        if radiologist not in self.classes:
            raise UserError(f"{radiologist!r} has no profile the style classifier knows")
        return self.proba([text])[0][radiologist]

    def predict(self, texts: list[str]) -> list[str]:
        return [str(c) for c in self.model.predict(texts)]


def train_from_store(data_dir: str | os.PathLike[str] | None = None, seed: int = 0) -> Any:
    """A classifier over the priors of every radiologist profiled in the data folder."""
    texts: list[str] = []
    authors: list[str] = []
    for name in store.profiled(data_dir):
        for p in store.load_pairs(name, data_dir):
            texts.append(p.impression)
            authors.append(name)
    return StyleClassifier(texts, authors, seed)
