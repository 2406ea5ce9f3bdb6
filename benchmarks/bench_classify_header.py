"""The ``header`` feature source of the image classifier, measured with grouped cross-validation.

Data: the real pairs of ``../shared/data/pairs/*`` (heudiconv ``dicominfo.tsv``; label = the BIDS
suffix of the study's own heuristic in ``truth.json``, unconverted series left out) plus
synthetic studies (:mod:`engine.synth`, Siemens/GE/Philips, scanned by ``analyze``; label = the
suffix of ``expected_bids.json``). Each series' header facts (no series or protocol names) are
one text, embedded with MiniLM, StandardScaler + SVC; folds are StratifiedGroupKFold by
study/subject, so no subject is on both sides. Prints accuracy and macro-F1 (overall and on the
real series alone) with two anchors from the same folds: the majority class and the other SVC
kernel.

    python benchmarks/bench_classify_header.py [--synth-subjects 2] [--folds 5] [--names]
        [--kernel linear|rbf]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.classify import model as M  # noqa: E402
from engine.classify.cache import DescriptionCache  # noqa: E402
from engine.classify.features import ImageItem, header_text  # noqa: E402
from engine.classify.pipeline import featurize  # noqa: E402
from engine.model import SeriesInfo  # noqa: E402

PAIRS = ROOT.parent / "shared" / "data" / "pairs"


def suffix_of(template: str) -> str:
    return template.rsplit("/", 1)[-1].split("_")[-1]


def pair_items(names: bool) -> list[ImageItem]:
    import csv

    items = []
    for study in sorted(p for p in PAIRS.glob("*") if (p / "truth.json").is_file()):
        truth = json.loads((study / "truth.json").read_text())
        with open(study / "dicominfo.tsv", newline="") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                outs = truth.get(row["series_id"]) or []
                if not outs:
                    continue
                s = SeriesInfo.from_row(row)
                it = ImageItem("", label=suffix_of(outs[0]), key=f"pair/{study.name}:{s.series_id}")
                it.group = f"{study.name}:{s.patient_id}"
                it.header, it.sha256, it.image = header_text(s, names), "h:" + it.key, b""
                items.append(it)
    return items


def synth_items(tmp: Path, subjects: int, names: bool) -> list[ImageItem]:
    from engine.api import steps
    from engine.api.types import AnalyzeParams
    from engine.synth import generate_study
    from engine.workspace import Workspace

    items = []
    for vendor, seed in (("siemens", 1), ("ge", 2), ("philips", 3)):
        study = tmp / f"synth-{vendor}"
        man = generate_study(study, subjects=subjects, vendor=vendor, seed=seed)
        labels = {r.series_uid: suffix_of(r.paths[0]) for r in man.series if r.paths}
        out = tmp / f"out-{vendor}"
        steps.analyze(AnalyzeParams(input=str(study / "dicom"), out_dir=str(out), progress=False))
        for s in Workspace(out).read_series():
            if s.series_uid not in labels:
                continue
            it = ImageItem("", label=labels[s.series_uid], key=f"{vendor}:{s.key}")
            it.group = f"{vendor}:{s.subject}"
            it.header, it.sha256, it.image = header_text(s, names), "h:" + it.key, b""
            items.append(it)
    return items


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--synth-subjects", type=int, default=2)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--names", action="store_true", help="header text with series/protocol names")
    ap.add_argument("--min-per-class", type=int, default=2, help="drop rarer classes (groups)")
    ap.add_argument("--kernel", choices=M.KERNELS, default="linear", help="the SVC's kernel")
    args = ap.parse_args()
    t0 = time.monotonic()
    items = pair_items(args.names) if PAIRS.is_dir() else []
    n_real = len(items)
    if not items:
        print("note: ../shared/data/pairs is absent: synthetic studies only")
    with tempfile.TemporaryDirectory() as tmp:
        items += synth_items(Path(tmp), args.synth_subjects, args.names)
        t_data = time.monotonic() - t0
        groups_per = Counter()
        for lab, _g in {(it.label, it.group) for it in items}:
            groups_per[lab] += 1
        kept = [it for it in items if groups_per[it.label] >= args.min_per_class]
        dropped = sorted({it.label for it in items} - {it.label for it in kept})
        from engine.llm.embed import create_embedder

        cache = DescriptionCache(Path(tmp) / "cache.sqlite")
        t1 = time.monotonic()
        feats = featurize(kept, "header", create_embedder("minilm"), cache)
        t_embed = time.monotonic() - t1
        t2 = time.monotonic()
        probs, classes, folds = M.cross_validate(feats, args.folds, seed=0, kernel=args.kernel)
        t_cv = time.monotonic() - t2
        other = next(k for k in M.KERNELS if k != args.kernel)
        o_probs, _, _ = M.cross_validate(feats, args.folds, seed=0, kernel=other)
    pred = [classes[i] for i in probs.argmax(axis=1)]
    truth = feats.labels
    m = M.metrics(truth, pred, classes)
    # anchor: the majority class of each fold's training images
    base = list(truth)
    for tr, te in folds:
        major = Counter(truth[i] for i in tr).most_common(1)[0][0]
        for i in te:
            base[i] = major
    b = M.metrics(truth, base, classes)
    real = [i for i, it in enumerate(kept) if it.key.startswith("pair/")]
    print(
        f"series: {len(kept)} ({len(real)} real, {len(kept) - len(real)} synthetic; "
        f"{n_real} real before dropping rare classes), classes {len(classes)}, "
        f"CV groups {len(set(feats.groups))}, folds {len(folds)}"
    )
    if dropped:
        print(f"classes with fewer than {args.min_per_class} groups left out: {', '.join(dropped)}")
    print(M.per_class_table(m))
    o = M.metrics(truth, [classes[i] for i in o_probs.argmax(axis=1)], classes)
    print(
        f"header source ({args.kernel} SVC): accuracy {m['accuracy']:.3f}  "
        f"macro-F1 {m['macro_f1']:.3f}"
    )
    print(f"{other} SVC anchor: accuracy {o['accuracy']:.3f}  macro-F1 {o['macro_f1']:.3f}")
    print(f"majority anchor: accuracy {b['accuracy']:.3f}  macro-F1 {b['macro_f1']:.3f}")
    if real:
        rm = M.metrics([truth[i] for i in real], [pred[i] for i in real], classes)
        print(
            f"real pairs only ({len(real)} series): accuracy {rm['accuracy']:.3f}  "
            f"macro-F1 {rm['macro_f1']:.3f}"
        )
    print(
        f"time: data {t_data:.1f}s, embed {t_embed:.1f}s, CV {t_cv:.1f}s "
        f"(CV/embed ratio {t_cv / max(t_embed, 1e-6):.2f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
