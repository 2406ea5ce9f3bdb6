"""Synthetic studies for the classifier's second opinion: a clean one to train on, and one whose
T2w series is deliberately mislabelled by name (its SeriesDescription and ProtocolName are the
T1w's), so the rules name it T1w while its header and pixels are a T2w's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class Studies:
    clean: Path  # OUT of the clean study (2 subjects)
    mislabelled: Path  # OUT of the study with the mislabelled series
    bundle: Path  # header-source bundle trained on the clean study
    bad_group: str  # the group of the mislabelled series


def _workspace(dicom: Path, out: Path) -> Path:
    from engine.api import steps
    from engine.api.types import AnalyzeParams, MapParams

    steps.analyze(AnalyzeParams(input=str(dicom), out_dir=str(out), progress=False))
    steps.group(str(out))
    steps.map_(MapParams(out_dir=str(out)))
    return out


def build_studies(root: Path) -> Studies:
    import pydicom

    from engine.classify import pipeline
    from engine.classify.workspace import workspace_items
    from engine.mapping.effective import effective
    from engine.synth import generate_study
    from engine.workspace import Workspace

    generate_study(root / "A", subjects=2, vendor="siemens", seed=4)
    clean = _workspace(root / "A" / "dicom", root / "outA")
    man = generate_study(root / "B", subjects=1, vendor="siemens", seed=5)
    t1 = next(r for r in man.series if r.kind == "t1w")
    t2 = next(r for r in man.series if r.kind == "t2w")
    for f in t2.files:
        p = root / "B" / "dicom" / f
        ds = pydicom.dcmread(p)
        ds.SeriesDescription, ds.ProtocolName = t1.series_description, t1.protocol_name
        ds.save_as(p)
    bad = _workspace(root / "B" / "dicom", root / "outB")
    eff = effective(Workspace(bad))
    uid_group = {
        s.series_uid: g.group_id for g in eff.groups for s in eff.series if s.key in g.series_keys
    }
    items, _, _ = workspace_items(str(clean), "header", "suffix")
    bundle = root / "header.joblib"
    s = pipeline.Settings(source="header", folds=2, cache=str(root / "cache"), progress=False)
    pipeline.train(items, str(bundle), s, "suffix")
    return Studies(clean, bad, bundle, uid_group[t2.series_uid])
