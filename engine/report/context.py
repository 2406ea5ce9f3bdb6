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
HISTORICAL = "HISTORICAL"

# Cue lists: comma-separated literals, matched on lowercase tokens, so "cannot" (tokenized
# "can" "not") is written as it reads. FORWARD cues modify what follows them, BACKWARD cues
# what precedes them.


def _words(text: str) -> tuple[str, ...]:
    return tuple(" ".join(w.split()) for w in text.split(",") if w.strip())


_NEGATION_FORWARD = _words(
    """
    no, not, without, nor, neither, negative for, free of, clear of, absence of, absent, no
    evidence of, no sign of, no signs of, no definite, resolution of, resolved, removal of,
    interval removal of, rather than, unlikely, unlikely to represent, rules out, ruled out, no
    longer, never
    """
)
_NEGATION_BACKWARD = _words(
    """
    is absent, are absent, absent, has resolved, have resolved, resolved, is resolved, are
    resolved, has cleared, have cleared, cleared, not seen, not identified, not visualized, not
    evident, not present, not appreciated, not demonstrated, not detected, not noted, not
    visible, no longer seen, no longer visualized, no longer present, no longer evident, has
    been removed, have been removed, removed, is excluded, excluded, unlikely, is negative, are
    negative, none, ruled out, not found
    """
)
# "Effusion has resolved" / "resolved effusion": these negate either side.
_NEGATION_BOTH_WAYS = _words("absent, resolved, unlikely, ruled out")
# Weak hedges only ("may be compatible with" is written whole: "with" alone ends a scope).
# Strong ones ("probable", "likely", "suggestive of", "compatible with")
# commit the reader to the finding, so they leave it positive (radiology hedging scales put
# them above ~75% likelihood); CheXpert's uncertain class is kept for real doubt.
_UNCERTAINTY_FORWARD = _words(
    """
    may, might, could, possible, possibly, question, question of, questionable, questionably,
    suspicious for, suspicion for, suspected, concerning for, concern for, worrisome for, cannot
    exclude, can not exclude, cannot rule out, can not rule out, differential, differential
    diagnosis, equivocal, indeterminate, uncertain, consider, considered, perhaps, either, not
    excluded, may represent, may reflect, could represent, may be compatible with, may be
    consistent with, could be compatible with, could be consistent with, might be compatible
    with, might be consistent with, may be associated with, could be associated with, raises
    the possibility of, possibility of, correlate for, correlate clinically for, clinical correlation for, evaluate
    for, evaluation for, assess for, to exclude, rule out, r / o, vs, vs., versus, ?, cannot be
    excluded, can not be excluded
    """
)
_UNCERTAINTY_BACKWARD = _words(
    """
    cannot be excluded, can not be excluded, not excluded, cannot be ruled out, can not be ruled
    out, not ruled out, is not excluded, are not excluded, is suspected, are suspected,
    suspected, is possible, are possible, is questioned, is not entirely excluded, difficult to
    exclude, not entirely excluded, versus, vs, vs., ?, is questionable, difficult to entirely
    exclude, not be excluded, not be ruled out
    """
)
# These doubt both sides: "atelectasis versus pneumonia".
_UNCERTAINTY_BOTH_WAYS = _words(
    """
    ?, can not be excluded, cannot be excluded, versus, vs, vs.
    """
)
# Old infection, not pneumonia now ("sequelae of prior granulomatous infection").
_HISTORICAL = _words(
    """
    prior, previous, old, remote, history of, sequelae of, sequela of, residua of, residuals of,
    residual of, healed, chronic, treated
    """
)
# Qualifiers of attribute mentions ("the heart size is normal", "enlarged cardiac silhouette").
# "Borderline" is a grade (the mildest abnormal), not doubt: "borderline cardiomegaly" stays
# positive; "upper limits of normal" says normal-but-barely and is uncertain.
_NORMAL = _words(
    """
    normal, normal in size, within normal limits, within the normal limits, within normal range,
    unremarkable, not enlarged, is not enlarged, not increased, not widened, normal size, normal
    sized, normal - sized, upper normal, stable normal, top normal, wnl, negative, not
    significantly enlarged, normal in caliber, normal in contour, normal cardiac size, normal
    heart size
    """
)
_ABNORMAL = _words(
    """
    enlarged, enlargement, large, larger, increased, increase in, prominent, prominence,
    widened, widening, wide, mildly enlarged, moderately enlarged, severely enlarged, markedly
    enlarged, cardiomegaly, globular, enlarging, borderline, borderline enlarged, borderline -
    enlarged, borderline in size, borderline enlargement, borderline large
    """
)
_BORDERLINE = _words(
    """
    upper limits of normal, upper limits normal, upper limit normal, upper normal limits, upper
    - normal, at the upper limit of normal, upper limit of normal, top - normal, top of normal,
    high normal, at the upper limits, mildly prominent, slightly prominent, may be enlarged,
    possibly enlarged
    """
)
# Scope ends here (and at ";").
_TERMINATE = _words(
    """
    but, however, although, though, except, aside from, apart from, other than, which, there is,
    there are, there has been, there have been, there may be, with, and there, otherwise, while,
    whereas
    """
)
# Cues that look like negation but are not ("no change in the effusion" keeps the effusion).
_PSEUDO = _words(
    """
    no change, no significant change, no interval change, no definite change, not changed, no
    substantial change, no appreciable change, not significantly changed, no increase, no
    decrease, no significant interval change, not only, without change, without significant
    change, without interval change, not cause, no other, gram negative, no improvement, not
    improved, not entirely excluded, not be excluded, not be ruled out
    """
)


def _context_rules() -> list[Any]:
    from medspacy.context import ConTextRule

    attrs = attribute_categories()
    rules: list[Any] = []
    for lits, direction in (
        (_NEGATION_FORWARD, "FORWARD"),
        (_NEGATION_BACKWARD, "BACKWARD"),
        (_NEGATION_BOTH_WAYS, "BIDIRECTIONAL"),
    ):
        for lit in lits:
            if direction == "BIDIRECTIONAL" or lit not in _NEGATION_BOTH_WAYS:
                rules.append(
                    ConTextRule(lit, NEGATED, direction=direction, terminated_by={UNCERTAIN})
                )
    for lits, direction in (
        (_UNCERTAINTY_FORWARD, "FORWARD"),
        (_UNCERTAINTY_BACKWARD, "BACKWARD"),
        (_UNCERTAINTY_BOTH_WAYS, "BIDIRECTIONAL"),
    ):
        for lit in lits:
            if direction == "BIDIRECTIONAL" or lit not in _UNCERTAINTY_BOTH_WAYS:
                rules.append(
                    ConTextRule(lit, UNCERTAIN, direction=direction, terminated_by={NEGATED})
                )
    for lit in _HISTORICAL:
        rules.append(
            ConTextRule(
                lit,
                HISTORICAL,
                direction="FORWARD",
                max_scope=4,
                allowed_types={target_category("Pneumonia", "finding")},
            )
        )
    for lits, cat in ((_NORMAL, NORMAL), (_ABNORMAL, ABNORMAL)):
        for lit in lits:
            rules.append(
                ConTextRule(lit, cat, direction="BIDIRECTIONAL", allowed_types=attrs, max_scope=6)
            )
    for lit in _BORDERLINE:  # any mention: "heart size upper limits of normal"
        rules.append(ConTextRule(lit, BORDERLINE, direction="BIDIRECTIONAL", max_scope=6))
    for lit in _TERMINATE:
        rules.append(ConTextRule(lit, "TERMINATE", direction="TERMINATE"))
    # One token-pattern rule keeps ConText's token Matcher non-empty (else spaCy warns W036
    # on every document).
    rules.append(ConTextRule(";", "TERMINATE", direction="TERMINATE", pattern=[{"TEXT": ";"}]))
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
    root = logging.getLogger()
    if not any(isinstance(f, _QuietRushFilter) for f in root.filters):
        root.addFilter(_QuietRushFilter())


class _QuietRushFilter(logging.Filter):
    """PyRuSH's rule engine (PyFastNER) logs INFO on the *root* logger for every report."""

    def filter(self, record: logging.LogRecord) -> bool:
        noisy = "PyFastNER" in record.pathname or "PyRuSH" in record.pathname
        return record.levelno >= logging.WARNING or not noisy


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
