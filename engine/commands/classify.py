"""``classify train DATA OUT_MODEL``, ``classify evaluate DATA MODEL``, ``classify predict MODEL
FILES...``, ``classify second-opinion OUT MODEL``.

An image classifier from vision-model descriptions: a VLM writes N descriptions of each image
(prompt families for object and background classes), each is embedded (default MiniLM) and a
StandardScaler + SVC learns the classes, cross-validated with folds grouped by image (or series,
subject). ``--source header`` learns from the DICOM header facts instead, ``both`` from both.
DATA: class-per-folder trees (DICOM, PNG, JPEG) or a labels TSV (path, label[, group]).
Descriptions and vectors are cached (image hash + prompt + model), so a re-run costs nothing.
``second-opinion`` classifies the groups of a workspace and flags names the image disagrees with.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from engine.api import classify as api
from engine.commands._api import invoke
from engine.serial import to_json


def _features(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("features")
    g.add_argument(
        "--source",
        choices=("vlm", "header", "both"),
        default="",
        help="what is embedded: image descriptions (vlm, train default), header "
        "facts, or both (default at prediction: the bundle's)",
    )
    g.add_argument(
        "--backend",
        default="",
        help="vision backend: ollama, openai, transformers, "
        "llama-cpp (default at prediction: the bundle's)",
    )
    g.add_argument("--model", default="", help="the vision model")
    g.add_argument("--host", default="", help="Ollama host (http://127.0.0.1:11434)")
    g.add_argument("--base-url", default="", help="OpenAI-compatible base URL")
    g.add_argument("--embedder", default="", help="minilm (default), ollama:MODEL, openai:MODEL")
    g.add_argument("--config", default="", help="TOML with [describe], [families], [prompts]")
    g.add_argument(
        "--prompts",
        dest="n_prompts",
        type=int,
        default=0,
        metavar="N",
        help="descriptions per image (default 50)",
    )
    g.add_argument(
        "--concurrency",
        type=int,
        default=0,
        metavar="N",
        help="requests in flight to the model server (default 4)",
    )
    g.add_argument("--temperature", type=float, default=None)
    g.add_argument("--seed", type=int, default=None)
    g.add_argument("--cache", default="", help="cache file or folder (default: user cache dir)")
    g.add_argument(
        "--include-names", action="store_true", help="header text includes series/protocol names"
    )
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def _common(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "source": args.source,
        "backend": args.backend,
        "model": args.model,
        "host": args.host,
        "base_url": args.base_url,
        "embedder": args.embedder,
        "config": args.config,
        "n_prompts": args.n_prompts,
        "concurrency": args.concurrency,
        "temperature": args.temperature,
        "seed": args.seed,
        "cache": args.cache,
        "include_names": args.include_names,
        "progress": not args.no_progress,
    }


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "classify",
        help="image classifier from vision-model descriptions: train, evaluate, predict",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    csub = p.add_subparsers(dest="classify_command", metavar="WHAT", required=True)
    t = csub.add_parser("train", help="train a bundle on DATA (or a reviewed workspace)")
    t.add_argument("data", nargs="?", default="", help="class folders or labels TSV")
    t.add_argument("out_model", help="the bundle to write (e.g. model.joblib)")
    t.add_argument(
        "--workspace",
        default="",
        metavar="OUT",
        help="learn from a reviewed workspace's effective mapping instead of DATA",
    )
    t.add_argument(
        "--label",
        dest="label_kind",
        choices=("suffix", "datatype/suffix"),
        default="suffix",
        help="workspace labels (default suffix)",
    )
    t.add_argument(
        "--group-by",
        choices=("subject", "series"),
        default="subject",
        help="workspace CV groups (default subject)",
    )
    t.add_argument("--folds", type=int, default=5, help="grouped CV folds (0: none)")
    t.add_argument(
        "--kernel", choices=("linear", "rbf"), default="linear", help="the SVC's (default linear)"
    )
    _features(t)
    t.set_defaults(func=run_train)

    e = csub.add_parser("evaluate", help="accuracy, macro-F1, confusion matrix on labelled DATA")
    e.add_argument("data")
    e.add_argument("model_path", metavar="MODEL")
    e.add_argument("--out", default="", help="folder for the PNG and table (default: beside MODEL)")
    _features(e)
    e.set_defaults(func=run_evaluate)

    r = csub.add_parser("predict", help="the class of each file with every class's confidence")
    r.add_argument("model_path", metavar="MODEL")
    r.add_argument("files", nargs="+", metavar="FILE")
    r.add_argument("--json", action="store_true", help="JSON on stdout")
    _features(r)
    r.set_defaults(func=run_predict)

    s = csub.add_parser(
        "second-opinion",
        help="classify a workspace's groups and flag names the image disagrees with",
    )
    s.add_argument("out_dir", metavar="OUT")
    s.add_argument("model_path", metavar="MODEL")
    s.add_argument("--group", dest="groups", action="append", default=[], help="only this group")
    s.add_argument("--max-series", type=int, default=4, help="series per group (default 4)")
    s.add_argument("--json", action="store_true")
    _features(s)
    s.set_defaults(func=run_second_opinion)


def run_train(args: argparse.Namespace) -> int:
    params = api.ClassifyTrainParams(
        data=args.data,
        out_model=args.out_model,
        workspace=args.workspace,
        label_kind=args.label_kind,
        group_by=args.group_by,
        folds=args.folds,
        kernel=args.kernel,
        **_common(args),
    )
    res = invoke(args, "classify.train", params)
    print(res.message)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    params = api.ClassifyEvaluateParams(
        data=args.data, model_path=args.model_path, out_dir=args.out, **_common(args)
    )
    res = invoke(args, "classify.evaluate", params)
    print(res.table)
    print(f"accuracy {res.metrics.accuracy:.3f}")
    print(f"macro-F1 {res.metrics.macro_f1:.3f}")
    print(f"confusion matrix: {res.confusion_png}")
    print(f"per-class table: {res.per_class_path}")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    params = api.ClassifyPredictParams(
        model_path=args.model_path, files=list(args.files), **_common(args)
    )
    res = invoke(args, "classify.predict", params)
    if args.json:
        json.dump(to_json(res), sys.stdout, indent=1)
        print()
        return 0
    for pr in res.predictions:
        conf = "  ".join(f"{c} {v:.3f}" for c, v in sorted(pr.probs.items(), key=lambda x: -x[1]))
        print(f"{pr.file}\t{pr.label}\t{conf}")
    return 0


def run_second_opinion(args: argparse.Namespace) -> int:
    params = api.SecondOpinionParams(
        out_dir=args.out_dir,
        model_path=args.model_path,
        groups=args.groups,
        max_series=args.max_series,
        **_common(args),
    )
    res = invoke(args, "classify.second_opinion", params)
    if args.json:
        json.dump(to_json(res), sys.stdout, indent=1)
        print()
        return 0
    for o in res.opinions:
        mark = "!! " if o.disagrees else "   "
        print(f"{mark}{o.group_id}\t{o.rationale}")
    print(res.message)
    return 0
