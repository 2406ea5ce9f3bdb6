"""The report labeler against Open-i's expert labels (and a keyword baseline for scale).

Texts: ``torchxrayvision==1.5.7`` (``pip install --no-deps``) ships ``data/NLMCXR_reports.tgz``;
gold: ``../shared/data/cxr/openi_gold_labels_dev.csv`` (3,080 reports, ChestX-ray14 findings plus
``normal``). Scored: the seven findings both label sets share, positive = 1, and again with
uncertain (-1) counted as positive; Open-i's ``normal`` against No Finding separately.

Tune the labeler's rules on the even-numbered reports only (CXR2, CXR4, ...; ``--errors``
lists those); the odd-numbered half is printed separately as a held-out check, so rules fitted
to particular reports show up as a gap between the halves.

    python benchmarks/bench_labeler.py [--gold CSV] [--reports TGZ] [--errors N] [--half even]
                                       [--json]
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.report.io import openi_number, read_openi  # noqa: E402
from engine.report.sections import labelled_text  # noqa: E402

SHARED = {  # Open-i column -> CheXpert label
    "Atelectasis": "Atelectasis",
    "Cardiomegaly": "Cardiomegaly",
    "Effusion": "Pleural Effusion",
    "Pneumonia": "Pneumonia",
    "Pneumothorax": "Pneumothorax",
    "Consolidation": "Consolidation",
    "Edema": "Edema",
}
DEFAULT_GOLD = ROOT.parent / "shared" / "data" / "cxr" / "openi_gold_labels_dev.csv"


def openi_tgz() -> Path | None:
    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(next(iter(spec.submodule_search_locations))) / "data" / "NLMCXR_reports.tgz"
    return p if p.exists() else None


_NEG = re.compile(r"\b(no|not|without|negative for|free of|resolved)\b[^.]*$")
_KEYWORDS = {
    "Atelectasis": r"atelecta",
    "Cardiomegaly": r"cardiomegaly|enlarged (heart|cardiac)|heart (size )?is enlarged",
    "Pleural Effusion": r"effusion",
    "Pneumonia": r"pneumonia",
    "Pneumothorax": r"pneumothora",
    "Consolidation": r"consolidat",
    "Edema": r"edema",
}


def baseline(text: str) -> dict[str, int]:
    """Keyword plus 'a negation cue earlier in the sentence': the floor to beat."""
    out = dict.fromkeys(_KEYWORDS, 0)
    for sent in re.split(r"(?<=[.!?])\s+", labelled_text(text).lower()):
        for label, pat in _KEYWORDS.items():
            for m in re.finditer(pat, sent):
                if not _NEG.search(sent[: m.start()]):
                    out[label] = 1
    return out


def f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def score(
    gold: dict[str, dict[str, int]],
    pred: dict[str, dict[str, int | None]],
    unc_pos: bool,
    ids: list[str] | None = None,
):
    per: dict[str, tuple[float, int, int, int]] = {}
    tot = [0, 0, 0]
    for col, lab in SHARED.items():
        tp = fp = fn = 0
        for rid in gold if ids is None else ids:
            g = gold[rid]
            v = pred[rid].get(lab)
            p = v == 1 or (unc_pos and v == -1)
            t = g[col] == 1
            tp += p and t
            fp += p and not t
            fn += t and not p
        per[lab] = (f1(tp, fp, fn), tp, fp, fn)
        tot = [tot[0] + tp, tot[1] + fp, tot[2] + fn]
    return per, f1(*tot)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gold", type=Path, default=DEFAULT_GOLD)
    ap.add_argument("--reports", type=Path, default=None, help="NLMCXR_reports.tgz (or folder)")
    ap.add_argument("--errors", type=int, default=0, help="print N errors per finding")
    ap.add_argument(
        "--half",
        choices=("even", "odd"),
        default="even",
        help="which half --errors lists (tune on even; odd is the held-out half)",
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    tgz = args.reports or openi_tgz()
    if tgz is None or not args.gold.exists():
        print("needs ../shared/data/cxr and torchxrayvision==1.5.7 (--no-deps)", file=sys.stderr)
        return 2
    with args.gold.open() as fh:
        gold = {
            r["filename"]: {k: int(v) for k, v in r.items() if k != "filename"}
            for r in csv.DictReader(fh)
        }
    texts = {r.id: r.text for r in read_openi(tgz) if r.id in gold}
    gold = {k: v for k, v in gold.items() if k in texts}
    ids = sorted(texts)

    from engine.report.labeler import Labeler

    t0 = time.perf_counter()
    labeler = Labeler()
    t_build = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    results = dict(zip(ids, labeler.label_many(texts[i] for i in ids), strict=True))
    t_label, c_label = time.perf_counter() - t0, time.process_time() - c0
    # Anchor, same run: spaCy's tokenizer alone over the same prepared texts (this machine is
    # shared and noisy, so the labeler's cost is read as a ratio to it).
    from engine.report.labeler import prepare

    c0 = time.process_time()
    for i in ids:
        labeler.nlp.make_doc(prepare(texts[i]))
    c_anchor = max(time.process_time() - c0, 1e-9)
    pred = {i: r.labels for i, r in results.items()}
    base = {i: baseline(texts[i]) for i in ids}

    out: dict = {
        "reports": len(ids),
        "seconds_per_1000": 1000 * t_label / len(ids),
        "cpu_seconds_per_1000": 1000 * c_label / len(ids),
        "build_seconds": t_build,
        "cpu_ratio_to_tokenizer": c_label / c_anchor,
    }
    for name, unc in (("positive", False), ("uncertain_as_positive", True)):
        per, micro = score(gold, pred, unc)
        out[name] = {
            "per_label": {k: v[0] for k, v in per.items()},
            "micro_f1": micro,
            "counts": {k: v[1:] for k, v in per.items()},
        }
    halves = {h: [i for i in ids if openi_number(i) % 2 == r] for h, r in (("even", 0), ("odd", 1))}
    for h, hids in halves.items():
        out[h] = {"reports": len(hids)}
        for name, unc in (("positive", False), ("uncertain_as_positive", True)):
            per, micro = score(gold, pred, unc, hids)
            out[h][name] = {"per_label": {k: v[0] for k, v in per.items()}, "micro_f1": micro}
        out[h]["baseline_micro_f1"] = score(gold, base, False, hids)[1]
    bper, bmicro = score(gold, base, False)
    out["baseline"] = {"per_label": {k: v[0] for k, v in bper.items()}, "micro_f1": bmicro}
    nf = [(gold[i]["normal"] == 1, pred[i]["No Finding"] == 1) for i in ids]
    agree = sum(a == b for a, b in nf) / len(nf)
    tp = sum(a and b for a, b in nf)
    out["normal_vs_no_finding"] = {
        "agreement": agree,
        "f1": f1(tp, sum(b and not a for a, b in nf), sum(a and not b for a, b in nf)),
        "gold_normal": sum(a for a, _ in nf),
        "pred_no_finding": sum(b for _, b in nf),
    }
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(
            f"Open-i dev: {len(ids)} reports; labeler {out['seconds_per_1000']:.1f} s wall, "
            f"{out['cpu_seconds_per_1000']:.1f} s CPU per 1,000 reports "
            f"(+{t_build:.1f} s pipeline build); CPU {out['cpu_ratio_to_tokenizer']:.1f}x "
            "spaCy's tokenizer alone (anchor, same run)"
        )
        print(
            f"{'finding':<18}{'F1 (pos=1)':>11}{'F1 (unc=pos)':>13}{'baseline':>10}{'tp/fp/fn':>14}"
        )
        for lab in SHARED.values():
            c = out["positive"]["counts"][lab]
            print(
                f"{lab:<18}{out['positive']['per_label'][lab]:>11.3f}"
                f"{out['uncertain_as_positive']['per_label'][lab]:>13.3f}"
                f"{out['baseline']['per_label'][lab]:>10.3f}{'/'.join(map(str, c)):>14}"
            )
        print(
            f"{'micro-F1':<18}{out['positive']['micro_f1']:>11.3f}"
            f"{out['uncertain_as_positive']['micro_f1']:>13.3f}{bmicro:>10.3f}"
        )
        for h in halves:
            o = out[h]
            print(
                f"{h + ' ids (' + str(o['reports']) + ')':<18}"
                f"{o['positive']['micro_f1']:>11.3f}{o['uncertain_as_positive']['micro_f1']:>13.3f}"
                f"{o['baseline_micro_f1']:>10.3f}"
                + ("   <- held out (tune rules on even ids only)" if h == "odd" else "")
            )
        n = out["normal_vs_no_finding"]
        print(
            f"Open-i normal vs No Finding: agreement {n['agreement']:.3f}, F1 {n['f1']:.3f} "
            f"(gold normal {n['gold_normal']}, predicted No Finding {n['pred_no_finding']})"
        )
    if args.errors:
        for col, lab in SHARED.items():
            errs = [
                (i, gold[i][col], pred[i][lab])
                for i in halves[args.half]
                if (gold[i][col] == 1) != (pred[i][lab] == 1)
            ]
            print(f"\n## {lab}: {len(errs)} errors")
            for i, g, p in errs[: args.errors]:
                ev = results[i].evidence.get(lab)
                why = ev.describe() if ev else "not mentioned"
                print(f"- {i} gold={g} pred={p}: {why}\n    {labelled_text(texts[i])[:300]!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
