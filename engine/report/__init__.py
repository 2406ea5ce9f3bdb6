"""Radiology reports: CheXpert-style labels and the standard report-generation scores.

The library the report features build on (drafting, personalised impressions, A/B runs):
``Labeler`` / ``label_reports`` give the 14 CheXpert labels with their evidence, ``evaluate``
the BLEU / ROUGE-L / METEOR / BERTScore / label-F1 scores. Heavy packages (medspaCy, torch)
load on first use, so importing this package is cheap; they come with the ``report`` extra.
"""

from engine.report.io import Report, read_reports, write_labels
from engine.report.labeler import Evidence, Labeler, LabelResult, label_reports
from engine.report.labels import CHEXPERT_LABELS, FIVE_LABELS
from engine.report.metrics import clinical_f1, evaluate, label_f1

__all__ = [
    "CHEXPERT_LABELS",
    "FIVE_LABELS",
    "Evidence",
    "LabelResult",
    "Labeler",
    "Report",
    "clinical_f1",
    "evaluate",
    "label_f1",
    "label_reports",
    "read_reports",
    "write_labels",
]
