"""The 14 CheXpert observations and the mention vocabulary the rule labeler looks for.

The vocabulary is written for this project from the published CheXpert observation definitions
(Irvin et al., 2019): what radiologists call each observation, in plain clinical English. It is
deliberately generic (no wording taken from any one report collection), because the labeler is
judged on reports it has never seen.

Phrase syntax (compiled to spaCy token patterns by :func:`phrase_pattern`): tokens separated by
spaces, ``a|b`` for alternatives, a trailing ``?`` for an optional token, ``_`` for any one token.
Hyphenated words are written with their parts (``air - space``) because the tokenizer splits them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

CHEXPERT_LABELS: tuple[str, ...] = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Lesion",
    "Lung Opacity",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
"""CheXpert's column order (the labeler's output after ``Reports``)."""

FINDINGS: tuple[str, ...] = CHEXPERT_LABELS[1:]
"""Every observation except No Finding, which is derived from these."""

FIVE_LABELS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Pleural Effusion",
)
"""The five CheXpert competition observations that report-generation papers score."""

Kind = Literal["finding", "attribute", "uncertain", "ignore"]
"""How a mention counts when no modifier touches it.

``finding``: the observation is present (positive); ``attribute``: a structure whose size or
shape is described (heart size, mediastinal contour) that says nothing until a qualifier
(normal / enlarged / borderline) is found; ``uncertain``: a sign that suggests the observation
without proving it; ``ignore``: a longer phrase that blocks a shorter mention inside it
(pericardial effusion is not a pleural effusion).
"""


@dataclass(frozen=True)
class Mention:
    label: str
    phrase: str
    kind: Kind = "finding"


def _m(label: str, kind: Kind, *phrases: str) -> list[Mention]:
    return [Mention(label, p, kind) for p in phrases]


_SIZE = "silhouette|silhouettes|contour|contours|shadow|size|outline|configuration"

MENTIONS: list[Mention] = [
    # Enlarged Cardiomediastinum: the heart plus mediastinum together is wider than normal.
    *_m(
        "Enlarged Cardiomediastinum",
        "finding",
        "widened|wide|enlarged|widening mediastinum|mediastinal",
        "mediastinal widening|enlargement",
        "widening|enlargement of the? mediastinum|mediastinal|cardiomediastinal",
        "enlarged|widened|prominent cardiomediastinal|mediastinal " + _SIZE,
        "enlarged cardiomediastinum",
    ),
    *_m(
        "Enlarged Cardiomediastinum",
        "attribute",
        "cardiomediastinal|cardiomediastinum|mediastinal " + _SIZE + "|width",
        "cardiomediastinum",
        "mediastinum",
    ),
    # Cardiomegaly: an enlarged heart.
    *_m(
        "Cardiomegaly",
        "finding",
        "cardiomegaly",
        "cardiac|heart enlargement",
        "enlarged|large|increased heart|cardiac",
        "enlarged|large|increased heart|cardiac " + _SIZE,
        "enlargement of the? cardiac|heart " + _SIZE + "?",
        "cardiac|heart " + _SIZE + " enlargement",
    ),
    *_m(
        "Cardiomegaly",
        "attribute",
        "heart|cardiac " + _SIZE,
        "heart",
    ),
    # Lung Lesion: a focal lesion of the lung: nodule, mass, tumour.
    *_m(
        "Lung Lesion",
        "finding",
        "nodule|nodules|micronodule|micronodules",
        "mass|masses",
        "nodular opacity|opacities|density|densities|opacification|lesion|lesions",
        "lesion|lesions",
        "tumor|tumors|tumour|tumours|neoplasm|neoplasms|carcinoma|malignancy",
        "metastasis|metastases",
        "metastatic disease",
        "cavitary|cavitating lesion|lesions|mass",
        "lump",
    ),
    *_m(
        "Lung Lesion",
        "ignore",
        "osseous|bony|bone|lytic|blastic|sclerotic|skin|cutaneous|soft lesion|lesions",
        "mass effect",
        "body mass",
        "bone mass",
    ),
    # Lung Opacity: anything that makes lung tissue whiter than it should be.
    *_m(
        "Lung Opacity",
        "finding",
        "opacity|opacities|opacification|opacifications|opacified",
        "infiltrate|infiltrates|infiltration|infiltrations|infiltrative",
        "airspace|airspaces disease|opacity|opacities|process|filling",
        "air - space|spaces disease|opacity|opacities|process|filling",
        "air space|spaces disease|opacity|opacities|process|filling",
        "haziness|hazy|ground glass",
        "ground - glass",
        "increased|patchy|parenchymal|pulmonary density|densities",
        "interstitial|reticular|reticulonodular markings|opacities|pattern|prominence|thickening",
        "interstitial lung|pulmonary disease",
        "reticulation",
    ),
    # Edema: fluid in the lung interstitium or airspaces; heart failure and vascular congestion
    # are its usual radiographic names.
    *_m(
        "Edema",
        "finding",
        "edema|oedema",
        "chf",
        "congestive heart|cardiac failure",
        "heart|cardiac failure",
        "fluid overload",
        "kerley b? lines",
    ),
    # Vascular congestion precedes edema but is not edema: block it from the "edema" family.
    *_m(
        "Edema",
        "ignore",
        "soft tissue edema|swelling",
        "vascular|venous|pulmonary|hilar congestion",
        "pulmonary vascular|venous congestion",
    ),
    # Consolidation: airspaces filled (fluid, pus, blood, cells) so the lung looks solid.
    *_m(
        "Consolidation",
        "finding",
        "consolidation|consolidations|consolidative|consolidated|consolidating",
    ),
    # Pneumonia: infection of the lung.
    *_m(
        "Pneumonia",
        "finding",
        "pneumonia|pneumonias|bronchopneumonia|pneumonitis",
        "infection|infections|infectious process|processes|etiology|infiltrate",
        "infection|infections|infectious",
    ),
    # Granulomatous disease is healed (calcified) infection, not pneumonia.
    *_m(
        "Pneumonia",
        "ignore",
        "granulomatous infection|infections|disease|process|processes|exposure|change|changes",
        "granulomatous",
    ),
    # Atelectasis: collapse or incomplete expansion of lung.
    *_m(
        "Atelectasis",
        "finding",
        "atelectasis|atelectases|atelectatic|atelectasia",
        "collapse|collapsed",
    ),
    *_m(
        "Atelectasis",
        "ignore",
        "vertebral|vertebra|compression|body|bodies collapse",
        "collapse|collapsed of? a|the? vertebral|vertebra|vertebrae|vertebral|thoracic|lumbar",
        "collapsed vertebra|vertebrae|vertebral",
    ),
    # Pneumothorax: air in the pleural space.
    *_m(
        "Pneumothorax",
        "finding",
        "pneumothorax|pneumothoraces|pneumothoraxes|ptx|hydropneumothorax",
    ),
    # Pleural Effusion: fluid in the pleural space.
    *_m(
        "Pleural Effusion",
        "finding",
        "effusion|effusions",
        "pleural effusion|effusions",
        "pleural fluid",
        "hydrothorax|hemothorax|haemothorax",
        "fluid in the? pleural space|spaces",
    ),
    *_m(
        "Pleural Effusion",
        "uncertain",
        "blunting|blunted of? the? costophrenic|cp angle|angles|sulcus|sulci|recess",
        "costophrenic|cp angle|angles|sulcus|sulci blunting",
    ),
    *_m(
        "Pleural Effusion",
        "ignore",
        "pericardial|joint|subpulmonic? pericardial effusion|effusions",
        "pericardial effusion|effusions",
    ),
    # Pleural Other: pleural disease other than fluid: thickening, plaques, scarring.
    *_m(
        "Pleural Other",
        "finding",
        "pleural thickening|scarring|scar|scars|plaque|plaques|calcification|calcifications|fibrosis",
        "pleural - parenchymal scarring|scar",
        "pleuroparenchymal scarring|scar|thickening",
        "fibrothorax",
        "apical cap|caps",
        "thickened pleura",
    ),
    # Fracture: a broken bone.
    *_m("Fracture", "finding", "fracture|fractures|fractured|fx"),
    # Support Devices: tubes, lines, catheters, pacemakers, other hardware.
    *_m(
        "Support Devices",
        "finding",
        "tube|tubes",
        "catheter|catheters",
        "picc|picc line|lines",
        "central|venous|jugular|subclavian|midline|arterial|port|dialysis line|lines",
        "ij line|lines|catheter",
        "pacemaker|pacemakers|pacer|icd|defibrillator|aicd",
        "pacer|pacemaker|pacing lead|leads|wire|wires",
        "port - a - cath",
        "portacath|port",
        "stent|stents|drain|drains",
        "swan - ganz",
        "swan ganz",
        "valve replacement|prosthesis",
        "prosthetic valve",
        "sternotomy wires|wire",
        "loop recorder",
        "support device|devices",
    ),
]


def phrase_pattern(phrase: str) -> list[dict[str, Any]]:
    """A spaCy Matcher pattern (lowercase token match) for one vocabulary phrase."""
    pattern: list[dict[str, Any]] = []
    for word in phrase.split():
        optional = word.endswith("?") and len(word) > 1
        word = word.rstrip("?") if optional else word
        if word == "_":
            tok: dict[str, Any] = {}
        else:
            alts = word.split("|")
            tok = {"LOWER": alts[0]} if len(alts) == 1 else {"LOWER": {"IN": alts}}
        if optional:
            tok["OP"] = "?"
        pattern.append(tok)
    return pattern


def target_category(label: str, kind: Kind) -> str:
    """The entity label a mention gets in the spaCy document: ``<observation>|<kind>``."""
    return f"{label}|{kind}"


def split_category(category: str) -> tuple[str, Kind]:
    label, _, kind = category.rpartition("|")
    return label, kind  # type: ignore[return-value]


def attribute_categories() -> set[str]:
    """Entity labels of every attribute mention (the size qualifiers may only touch these)."""
    return {target_category(m.label, m.kind) for m in MENTIONS if m.kind == "attribute"}
