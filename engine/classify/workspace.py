"""The classifier in the MRI workflow: labels from a reviewed workspace, a second opinion per group.

Training: every series of a group whose effective mapping (:func:`engine.mapping.effective`:
the proposal with the person's decisions) names it is one labelled image: the middle slice
rendered through the shared previewer (``vlm``), or its header facts (``header``). The label is
the BIDS suffix (``T1w``) or ``datatype/suffix`` (``anat/T1w``); CV groups are subjects, so no
subject's series are on both sides of a fold.

Second opinion: each group's series (up to ``max_series``) are classified and their
probabilities averaged; the class is kept in ``OUT/image_opinion.json`` beside the name it was
compared with. :func:`read_opinions` is what the workspace view reads to fill the groups'
``image_says``/``image_probs``, and :func:`disagrees` says when to flag a group ("image says
T2w, name says T1w").
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.atomic import write_text_atomic
from engine.classify.features import ImageItem, header_text
from engine.errors import UserError

__all__ = [
    "OPINION_FILE",
    "Opinion",
    "disagrees",
    "label_of",
    "read_opinions",
    "second_opinion",
    "workspace_items",
]

OPINION_FILE = "image_opinion.json"
LABEL_KINDS = ("suffix", "datatype/suffix")


def label_of(datatype: str, suffix: str, kind: str = "suffix") -> str:
    if not suffix:
        return ""
    return f"{datatype}/{suffix}" if kind == "datatype/suffix" else suffix


def name_label(name: str, kind: str) -> str:
    """``anat/acq-x_T1w`` -> ``T1w`` (or ``anat/T1w``); "" for a skip or an unparsable name."""
    datatype, sep, rest = name.strip().partition("/")
    if not sep or not rest:
        return ""
    return label_of(datatype, rest.split("_")[-1], kind)


def disagrees(image_says: str, name: str) -> bool:
    """The image's class and the BIDS name differ (compared at the class's own granularity)."""
    if not image_says or not name:
        return False
    kind = "datatype/suffix" if "/" in image_says else "suffix"
    said = name_label(name, kind)
    return bool(said) and said != image_says


@dataclass
class Opinion:
    group_id: str
    image_says: str = ""
    probs: dict[str, float] = field(default_factory=dict)
    name_says: str = ""
    disagrees: bool = False
    n_series: int = 0

    def rationale(self) -> str:
        top = ", ".join(f"{c} {p:.2f}" for c, p in sorted(self.probs.items(), key=lambda x: -x[1]))
        head = (
            f"image says {self.image_says}, name says {self.name_says}"
            if self.disagrees
            else f"image says {self.image_says}"
        )
        return f"{head} ({top})"


def _workspace(out_dir: str) -> tuple[Any, Any]:
    from engine.mapping.effective import effective
    from engine.workspace import Workspace

    ws = Workspace(out_dir).require()
    if not ws.has_proposals():
        raise UserError(f"{out_dir}: not mapped yet (run map, then review)")
    return ws, effective(ws)


def _render_series(s: Any, dicom_dirs: list[str]) -> bytes:
    from engine.vision.preview import series_preview

    last: Exception | None = None
    for d in dicom_dirs or [None]:  # type: ignore[list-item]
        try:
            return series_preview(s, size=256, dicom_dir=d)[0]
        except (FileNotFoundError, UserError) as exc:
            last = exc
    raise UserError(f"series {s.series_id}: no image to describe ({last})")


def workspace_items(
    out_dir: str,
    source: str = "vlm",
    label_kind: str = "suffix",
    group_by: str = "subject",
    include_names: bool = False,
    groups: list[str] | None = None,
    labelled_only: bool = True,
    max_series: int = 0,
) -> tuple[list[ImageItem], dict[str, list[int]], dict[str, str]]:
    """Items (one per series), the item indices of each group, and each group's name label."""
    if label_kind not in LABEL_KINDS:
        raise UserError(f"label kind {label_kind!r}: {' or '.join(LABEL_KINDS)}")
    ws, eff = _workspace(out_dir)
    by_key = {s.key: s for s in eff.series}
    dicom_dirs = [str(p) for p in ws.analyze_inputs()]
    items: list[ImageItem] = []
    members: dict[str, list[int]] = {}
    names: dict[str, str] = {}
    for g, m in zip(eff.groups, eff.mappings, strict=True):
        if groups and g.group_id not in groups:
            continue
        label = "" if m.is_skip else label_of(m.datatype, m.suffix, label_kind)
        names[g.group_id] = label
        if labelled_only and not label:
            continue
        keys = [k for k in g.series_keys if k in by_key]
        if max_series:
            keys = keys[:max_series]
        for k in keys:
            s = by_key[k]
            it = ImageItem("", label=label, key=k)
            it.group = {"subject": s.subject, "series": k}.get(group_by, "") or k
            it.header = header_text(s, include_names)
            if source == "header":
                it.sha256 = "header:" + k  # nothing is rendered or cached by image
                it.image = b""
            else:
                it.image = _render_series(s, dicom_dirs)
            members.setdefault(g.group_id, []).append(len(items))
            items.append(it)
    return items, members, names


def second_opinion(
    out_dir: str,
    bundle_path: str,
    settings: Any,
    groups: list[str] | None = None,
    max_series: int = 4,
) -> list[Opinion]:
    """Classify each group's series with the bundle; write and return the opinions."""
    from engine.classify import pipeline
    from engine.classify.model import load_bundle

    bundle = load_bundle(bundle_path)
    kind = bundle.label_kind if bundle.label_kind in LABEL_KINDS else "suffix"
    if any("/" in c for c in bundle.classes):
        kind = "datatype/suffix"
    items, members, names = workspace_items(
        out_dir,
        bundle.source,
        kind,
        include_names=bundle.include_names,
        groups=groups,
        labelled_only=False,
        max_series=max_series,
    )
    preds = pipeline.predict(items, bundle_path, settings) if items else []
    out: list[Opinion] = []
    for gid, idx in members.items():
        probs = {c: 0.0 for c in bundle.classes}
        for i in idx:
            for c, p in preds[i].probs.items():
                probs[c] += p / len(idx)
        says = max(probs, key=probs.__getitem__) if idx else ""
        name = names.get(gid, "")
        out.append(
            Opinion(
                gid,
                says,
                {c: round(p, 4) for c, p in probs.items()},
                name,
                bool(name) and bool(says) and name != says,
                len(idx),
            )
        )
    path = Path(out_dir) / OPINION_FILE
    old = _read(path) if groups else {}
    doc = {
        "bundle": str(Path(bundle_path).resolve()),
        "label_kind": kind,
        "source": bundle.source,
        "groups": {**old.get("groups", {}), **{o.group_id: asdict(o) for o in out}},
    }
    write_text_atomic(path, json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return out


def _read(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def read_opinions(out_dir: str | Path) -> dict[str, Opinion]:
    """The stored second opinions of OUT by group ({} when none were made)."""
    doc = _read(Path(out_dir) / OPINION_FILE)
    out: dict[str, Opinion] = {}
    for gid, d in (doc.get("groups") or {}).items():
        try:
            out[gid] = Opinion(**{k: v for k, v in d.items() if k in Opinion.__dataclass_fields__})
        except TypeError:
            continue
    return out
