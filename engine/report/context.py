"""The medspaCy pipeline: tokenizer, PyRuSH sentences, target matcher and ConText modifiers.

medspaCy's default ConText rules were written for clinical notes (``evaluate for`` negates,
``return`` is hypothetical), so the labeler loads none of them and adds the radiology rules
below: negation and uncertainty cues as radiologists write them, plus three qualifiers that only
touch *attribute* mentions (heart size is normal / enlarged / borderline). No dependency parser
is used; scope is ConText's: the sentence, cut at terminators and at a cue of the other polarity.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from engine.report.labels import MENTIONS, attribute_categories, phrase_pattern, target_category

NEGATED = "NEGATED_EXISTENCE"
UNCERTAIN = "POSSIBLE_EXISTENCE"
NORMAL = "NORMAL"
ABNORMAL = "ABNORMAL"
BORDERLINE = "BORDERLINE"

# (literal, direction) per category. A literal is matched on lowercase tokens, so "cannot"
# (tokenized "can" "not") is written as it reads.
_NEGATION: list[tuple[str, str]] = [
    *((w, "FORWARD") for w in (
        "no", "not", "without", "nor", "neither", "negative for", "free of", "clear of",
        "absence of", "absent", "no evidence of", "no sign of", "no signs of", "no definite",
        "resolution of", "resolved", "removal of", "interval removal of", "rather than",
        "unlikely", "unlikely to represent", "rules out", "ruled out", "no longer", "never",
    )),
    *((w, "BACKWARD") for w in (
        "is absent", "are absent", "absent", "has resolved", "have resolved", "resolved",
        "is resolved", "are resolved", "has cleared", "have cleared", "cleared",
        "not seen", "not identified", "not visualized", "not evident", "not present",
        "not appreciated", "not demonstrated", "not detected", "not noted", "not visible",
        "no longer seen", "no longer visualized", "no longer present", "no longer evident",
        "has been removed", "have been removed", "removed", "is excluded", "excluded",
        "unlikely", "is negative", "are negative", "none", "ruled out", "not found",
    )),
]
_UNCERTAINTY: list[tuple[str, str]] = [
    *((w, "FORWARD") for w in (
        "may", "might", "could", "possible", "possibly", "probable", "probably", "likely",
        "question of", "questionable", "suspicious for", "suspicion for", "suspected",
        "suggestive of", "suggesting", "suggests", "suggest", "concerning for", "concern for",
        "worrisome for", "cannot exclude", "can not exclude", "cannot rule out",
        "can not rule out", "differential", "equivocal", "indeterminate", "uncertain",
        "consider", "considered", "presumed", "presumably", "perhaps", "versus", "vs",
        "vs.", "borderline", "borderline enlarged", "borderline enlargement of", "either",
        "not excluded", "may represent", "may reflect", "could represent", "likely represents",
        "compatible with", "raises the possibility of", "possibility of", "?",
    )),
    *((w, "BACKWARD") for w in (
        "cannot be excluded", "can not be excluded", "not excluded", "cannot be ruled out",
        "can not be ruled out", "not ruled out", "is not excluded", "are not excluded",
        "is suspected", "are suspected", "suspected", "is possible", "are possible",
        "is likely", "are likely", "is questioned", "versus", "vs", "vs.", "is not entirely excluded",
        "difficult to exclude", "not entirely excluded", "?", "is favored",
    )),
]
# Qualifiers of attribute mentions ("the heart size is normal", "enlarged cardiac silhouette").
_NORMAL = (
    "normal", "normal in size", "within normal limits", "within the normal limits",
    "within normal range", "unremarkable", "not enlarged", "is not enlarged", "not increased",
    "not widened", "normal size", "normal sized", "normal - sized", "upper normal",
    "stable normal", "top normal", "wnl", "negative", "not significantly enlarged",
    "normal in caliber", "normal in contour", "normal cardiac size", "normal heart size",
)
_ABNORMAL = (
    "enlarged", "enlargement", "large", "larger", "increased", "increase in", "prominent",
    "prominence", "widened", "widening", "wide", "mildly enlarged", "moderately enlarged",
    "severely enlarged", "markedly enlarged", "cardiomegaly", "globular", "enlarging",
)
_BORDERLINE = (
    "borderline", "upper limits of normal", "upper limit of normal", "top normal",
    "top - normal", "top of normal", "high normal", "upper normal", "at the upper limits",
    "borderline enlarged", "mildly prominent", "slightly prominent", "may be enlarged",
    "possibly enlarged",
)
_TERMINATE = (
    "but", "however", "although", "though", "except", "aside from", "apart from", "other than",
    "which", "there is", "there are", "there has been", "there have been", "there may be",
    "with", "and there", ";", "otherwise", "while", "whereas", "secondary to", "due to",
)
# Cues that look like negation but are not ("no change in the effusion" keeps the effusion).
_PSEUDO = (
    "no change", "no significant change", "no interval change", "no definite change",
    "not changed", "no substantial change", "no appreciable change", "not significantly changed",
    "no increase", "no decrease", "no significant interval change", "not only",
    "without change", "without significant change", "without interval change",
    "not cause", "no other", "gram negative", "no improvement", "not improved",
    "not be excluded", "not be ruled out", "not entirely excluded",
)


def _context_rules() -> list[Any]:
    from medspacy.context import ConTextRule

    attrs = attribute_categories()
    rules: list[Any] = []
    for lit, direction in _NEGATION:
        rules.append(ConTextRule(lit, NEGATED, direction=direction, terminated_by={UNCERTAIN}))
    for lit, direction in _UNCERTAINTY:
        rules.append(ConTextRule(lit, UNCERTAIN, direction=direction, terminated_by={NEGATED}))
    for lits, cat in ((_NORMAL, NORMAL), (_ABNORMAL, ABNORMAL), (_BORDERLINE, BORDERLINE)):
        for lit in lits:
            rules.append(
                ConTextRule(lit, cat, direction="BIDIRECTIONAL", allowed_types=attrs, max_scope=6)
            )
    for lit in _TERMINATE:
        rules.append(ConTextRule(lit, "TERMINATE", direction="TERMINATE"))
    for lit in _PSEUDO:
        rules.append(ConTextRule(lit, "PSEUDO", direction="PSEUDO"))
    return rules


def _target_rules() -> list[Any]:
    from medspacy.ner import TargetRule

    return [
        TargetRule(m.phrase, target_category(m.label, m.kind), pattern=phrase_pattern(m.phrase))
        for m in MENTIONS
    ]


def silence_pyrush() -> None:
    """PyRuSH logs every sentence at DEBUG through loguru: keep only warnings and above."""
    try:
        import sys

        from loguru import logger

        logger.remove()
        logger.add(sys.stderr, level="WARNING")
    except ImportError:  # pragma: no cover - loguru comes with PyRuSH
        pass
    logging.getLogger("PyRuSH").setLevel(logging.WARNING)


@functools.lru_cache(maxsize=1)
def build_nlp() -> Any:
    """The labeler's spaCy pipeline (built once per process; rules compile in ~1 s)."""
    try:
        import medspacy
    except ImportError as exc:  # the engine's core install has no medspaCy
        from engine.errors import NotAvailable

        raise NotAvailable(
            "the report labeler needs medspaCy: pip install 'llm-heuristics[report]'"
        ) from exc
    silence_pyrush()
    nlp = medspacy.load(
        medspacy_enable=["medspacy_pyrush", "medspacy_target_matcher", "medspacy_context"],
        load_rules=False,
    )
    silence_pyrush()
    nlp.get_pipe("medspacy_target_matcher").add(_target_rules())
    context = nlp.get_pipe("medspacy_context")
    context.add(_context_rules())
    return nlp
