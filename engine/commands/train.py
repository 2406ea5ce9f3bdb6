"""``train sft|dpo CONFIG.toml``, ``train data cot|curriculum|pairs|check ...``, ``train export``.

Fine-tune a LoRA adapter (QLoRA on CUDA) on JSONL records built from report folders, here or
as a Slurm job (``--slurm [--submit]``: ``--gres=gpu:N``, time limit, requeue on preemption,
resume from the newest checkpoint). Loss, learning rate and eval metrics stream to stderr (and
to the TUI through the engine); the run folder gets the adapter, ``metrics.jsonl``, checkpoints
and a model card (README.md).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from engine.api import train as api
from engine.commands._api import invoke


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="fine-tune models: LoRA/QLoRA SFT with curricula, DPO style preference, data builders",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tsub = p.add_subparsers(dest="train_command", metavar="WHAT", required=True)
    for kind, help_ in (
        ("sft", "supervised fine-tuning on {image?, prompt, target, stage?, mode?} records"),
        ("dpo", "preference (DPO) training on {prompt, chosen, rejected} pairs"),
    ):
        t = tsub.add_parser(kind, help=help_, description=help_)
        t.add_argument("config", help="the run's TOML file (see engine/train/config.py)")
        t.add_argument(
            "--resume",
            default="auto",
            help="auto (newest checkpoint, default), never, or a checkpoint folder",
        )
        t.add_argument("--slurm", action="store_true", help="write OUT/train.sbatch")
        t.add_argument(
            "--submit",
            action="store_true",
            help="with --slurm: submit it and follow the job to its end",
        )
        t.add_argument(
            "--stop-after",
            type=int,
            default=0,
            metavar="N",
            help="stop after N steps with a checkpoint, as on preemption",
        )
        t.set_defaults(func=run_train, kind=kind)

    d = tsub.add_parser("data", help="build or check training JSONL files")
    dsub = d.add_subparsers(dest="data_kind", metavar="KIND", required=True)
    for kind, help_ in (
        ("cot", "ten-step reasoning records (teacher rationales checked for the step count)"),
        ("curriculum", "stage A (findings/impression) and B (with EHR fields) records"),
        ("pairs", "preference pairs: the radiologist's impression vs a coarse draft"),
    ):
        b = dsub.add_parser(kind, help=help_, description=help_)
        b.add_argument("source", help="report folder (STUDY/report.txt ...) or report file")
        b.add_argument("out", help="JSONL to write")
        b.add_argument("--ehr", default="", help="JSONL of {id, age, sex, indication, ...}")
        if kind == "cot":
            b.add_argument("--reasoning", default="", help="JSONL of {id, reasoning}")
        if kind == "pairs":
            b.add_argument("--drafts", default="", help="JSONL of {id, draft}")
        b.add_argument(
            "--skip-invalid",
            action="store_true",
            help="write the valid records and list the refused ones",
        )
        b.set_defaults(func=run_data)
    c = dsub.add_parser("check", help="check a JSONL file against its schema and summarise it")
    c.add_argument("path")
    c.add_argument("--kind", choices=("sft", "dpo"), default="sft")
    c.set_defaults(func=run_check)

    e = tsub.add_parser("export", help="merge the adapter and/or write a GGUF for llama.cpp")
    e.add_argument("config", nargs="?", default="", help="the run's TOML file")
    e.add_argument("--model-dir", default="", help="a merged model folder (default OUT/merged)")
    e.add_argument("--out", default="", help="GGUF file (default OUT/model-OUTTYPE.gguf)")
    e.add_argument("--outtype", default="f16", help="f32 | f16 | bf16 | q8_0 | auto")
    e.add_argument("--merge", action="store_true", help="merge OUT/adapter into OUT/merged first")
    e.add_argument("--no-gguf", action="store_true", help="only merge")
    e.add_argument("--converter", default="", help="path of llama.cpp's convert_hf_to_gguf.py")
    e.set_defaults(func=run_export)


def run_train(args: argparse.Namespace) -> int:
    params = api.TrainParams(
        config=args.config,
        resume=args.resume,
        slurm=args.slurm,
        submit=args.submit,
        stop_after=args.stop_after,
    )
    res = invoke(args, f"train.{args.kind}", params)
    print(res.message)
    return 0


def _print_summary(res: Any) -> None:
    print("\n".join(res.lines))


def run_data(args: argparse.Namespace) -> int:
    params = api.DataBuildParams(
        kind=args.data_kind,
        source=args.source,
        out=args.out,
        ehr=args.ehr,
        reasoning=getattr(args, "reasoning", ""),
        drafts=getattr(args, "drafts", ""),
        skip_invalid=args.skip_invalid,
    )
    res = invoke(args, "train.data", params)
    _print_summary(res)
    if res.n_rejected:
        print(f"train data: {res.n_rejected} record(s) refused (listed above)", file=sys.stderr)
    return 0


def run_check(args: argparse.Namespace) -> int:
    res = invoke(args, "train.check", api.DataCheckParams(args.path, args.kind))
    _print_summary(res)
    return 0


def run_export(args: argparse.Namespace) -> int:
    params = api.ExportParams(
        config=args.config,
        model_dir=args.model_dir,
        out_file=args.out,
        outtype=args.outtype,
        merge=args.merge,
        gguf=not args.no_gguf,
        converter=args.converter,
    )
    res = invoke(args, "train.export", params)
    print(res.message)
    return 0
