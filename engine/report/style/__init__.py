"""Personalised impressions: a radiologist's style, learnt from their priors, with facts locked.

``build_style`` profiles a radiologist (:mod:`.profile`) and indexes their (findings ->
impression) pairs with an embedder (:mod:`.build`), in the user's data folder only
(:mod:`.store`). ``impression`` drafts a coarse impression and refines it toward that style
with the k nearest priors as examples, keeping the CheXpert labels, laterality and numbers
(:mod:`.facts`); ``StyleClassifier`` (:mod:`.fit`) says how much a text reads like R's.
:mod:`.corpus` builds a test corpus from Open-i that is SYNTHETIC IN STYLE (invented readers,
deterministic impression rewrites, real findings).
"""

from engine.report.style.build import Built, Retriever, build_style
from engine.report.style.corpus import RADIOLOGISTS, SYNTHETIC_NOTE, build_corpus
from engine.report.style.facts import check_facts, label_diff
from engine.report.style.fit import StyleClassifier, train_from_store
from engine.report.style.impression import ImpressionOutcome, impression
from engine.report.style.priors import PriorPair, read_priors

__all__ = [
    "RADIOLOGISTS",
    "SYNTHETIC_NOTE",
    "Built",
    "ImpressionOutcome",
    "PriorPair",
    "Retriever",
    "StyleClassifier",
    "build_corpus",
    "build_style",
    "check_facts",
    "impression",
    "label_diff",
    "read_priors",
    "train_from_store",
]
