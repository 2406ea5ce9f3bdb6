"""Fine-tuning through the API: SFT, DPO, data builders and checks, GGUF export.

Each function takes its parameters dataclass and returns its result dataclass (both defined
here), so ``--engine SPEC`` runs a training on the GPU node exactly as in-process: progress
(loss, learning rate, eval metrics) arrives as ``progress`` notifications whose fields are listed
in :mod:`engine.train.progress`. With ``slurm`` the run is an ``sbatch`` job (written, and with
``submit`` submitted and followed until it ends).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import UserError


@dataclass
class TrainParams:
    config: str  # the run's TOML file
    resume: str = "auto"  # auto | never | a checkpoint folder
    slurm: bool = False  # write OUT/train.sbatch instead of training here
    submit: bool = False  # with slurm: sbatch it and follow it to the end
    stop_after: int = 0  # stop (checkpointed, as on preemption) after this many steps


@dataclass
class TrainResult:
    kind: str
    output_dir: str
    steps: int = 0
    max_steps: int = 0
    resumed_from: int = 0
    stage_steps: dict[str, int] = field(default_factory=dict)
    first_loss: float | None = None
    last_loss: float | None = None
    eval_loss_before: float | None = None
    eval_loss_after: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # final eval scores, DPO margins
    adapter: str = ""
    merged: str = ""
    card: str = ""
    device: str = ""
    quantized: bool = False
    seconds: float = 0.0
    slurm_script: str = ""
    slurm_job: str = ""
    message: str = ""


@dataclass
class DataBuildParams:
    kind: str  # cot | curriculum | pairs
    source: str  # a report folder (one folder per study) or a report file
    out: str  # the JSONL to write
    reasoning: str = ""  # JSONL {id, reasoning} (cot)
    ehr: str = ""  # JSONL {id, age, sex, indication, ...}
    drafts: str = ""  # JSONL {id, draft} (pairs)
    skip_invalid: bool = False


@dataclass
class DataCheckParams:
    path: str
    kind: str = "sft"  # sft | dpo


@dataclass
class DataSummaryResult:
    path: str
    kind: str
    n_records: int = 0
    n_images: int = 0
    by_stage: dict[str, int] = field(default_factory=dict)
    by_mode: dict[str, int] = field(default_factory=dict)
    mean_prompt_chars: float = 0.0
    mean_target_chars: float = 0.0
    n_rejected: int = 0
    rejected: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # the summary for a person


@dataclass
class ExportParams:
    config: str = ""  # with merge: the run whose OUT/adapter is merged into OUT/merged
    model_dir: str = ""  # a merged model folder (default: OUT/merged of the config)
    out_file: str = ""  # default: OUT/model-OUTTYPE.gguf
    outtype: str = "f16"
    merge: bool = False
    gguf: bool = True  # False: only merge
    converter: str = ""  # llama.cpp's convert_hf_to_gguf.py (else LLAMA_CPP_CONVERT/_DIR, PATH)


@dataclass
class ExportResult:
    gguf: str = ""
    merged: str = ""
    message: str = ""


def _num(v: float) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _result(o: object, **extra: str) -> TrainResult:
    d = dict(o.__dict__)
    for k in ("first_loss", "last_loss", "eval_loss_before", "eval_loss_after"):
        d[k] = _num(d[k])
    d["metrics"] = {k: v for k, v in d["metrics"].items() if _num(v) is not None}
    res = TrainResult(**d, **extra)
    parts = [f"{res.kind}: {res.steps}/{res.max_steps} steps on {res.device or 'Slurm'}"]
    if res.resumed_from:
        parts.append(f"resumed from step {res.resumed_from}")
    if res.first_loss is not None and res.last_loss is not None:
        parts.append(f"loss {res.first_loss:.4f} -> {res.last_loss:.4f}")
    if res.eval_loss_before is not None and res.eval_loss_after is not None:
        parts.append(f"eval loss {res.eval_loss_before:.4f} -> {res.eval_loss_after:.4f}")
    if "margin_before" in res.metrics and "margin_after" in res.metrics:
        parts.append(
            f"margin {res.metrics['margin_before']:.3f} -> {res.metrics['margin_after']:.3f}"
        )
    res.message = "; ".join(parts) + f"; adapter {res.adapter}, card {res.card}"
    return res


def _train(p: TrainParams, kind: str) -> TrainResult:
    from engine.train import config, slurm

    cfg = config.load(p.config)
    if p.submit and not p.slurm:
        raise UserError("--submit needs --slurm")
    if p.slurm:
        script = slurm.write_job(cfg, kind, p.config)
        if not p.submit:
            return TrainResult(
                kind=kind,
                output_dir=cfg.train.output_dir,
                max_steps=cfg.train.max_steps,
                slurm_script=str(script),
                message=f"{kind}: wrote {script}; submit with `sbatch {script}` (metrics in "
                f"{Path(cfg.train.output_dir) / 'metrics.jsonl'})",
            )
        job, outcome = slurm.submit_and_follow(cfg, script)
        return _result(outcome, slurm_script=str(script), slurm_job=job)
    if kind == "sft":
        from engine.train import sft

        return _result(sft.run(cfg, resume=p.resume, stop_after=p.stop_after))
    from engine.train import dpo

    return _result(dpo.run(cfg, resume=p.resume, stop_after=p.stop_after))


def train_sft(p: TrainParams) -> TrainResult:
    """Supervised LoRA/QLoRA fine-tuning (curriculum stages, checkpoints, resume)."""
    return _train(p, "sft")


def train_dpo(p: TrainParams) -> TrainResult:
    """Style preference (DPO) of a LoRA adapter on {prompt, chosen, rejected} pairs."""
    return _train(p, "dpo")


def _summary(s: object) -> DataSummaryResult:
    d = dict(s.__dict__)
    return DataSummaryResult(**d, lines=s.lines())  # type: ignore[attr-defined]


def data_build(p: DataBuildParams) -> DataSummaryResult:
    """Build a training JSONL (cot | curriculum | pairs) from a report folder."""
    from engine.train import data

    return _summary(
        data.build(
            p.kind,
            p.source,
            p.out,
            reasoning=p.reasoning,
            ehr=p.ehr,
            drafts=p.drafts,
            skip_invalid=p.skip_invalid,
        )
    )


def data_check(p: DataCheckParams) -> DataSummaryResult:
    """Check a training JSONL against its schema and summarise it."""
    from engine.train import records

    if p.kind not in ("sft", "dpo"):
        raise UserError(f"kind {p.kind!r}: sft or dpo")
    return _summary(records.check_file(p.path, p.kind))


def export(p: ExportParams) -> ExportResult:
    """Merge an adapter into its base model and/or convert a merged model to GGUF."""
    from engine.train import config
    from engine.train import export as ex

    res = ExportResult()
    model_dir = p.model_dir
    cfg = config.load(p.config) if p.config else None
    if p.merge:
        if cfg is None:
            raise UserError("--merge needs the run's config (its [model].path and OUT/adapter)")
        out = Path(cfg.train.output_dir)
        res.merged = str(ex.merge(cfg, out / "adapter", out / "merged"))
        model_dir = model_dir or res.merged
    if not p.gguf:
        if not res.merged:
            raise UserError("nothing to do: neither --merge nor GGUF export")
        res.message = f"merged into {res.merged}"
        return res
    if not model_dir:
        if cfg is None:
            raise UserError("name the merged model folder or the run's config")
        model_dir = str(Path(cfg.train.output_dir) / "merged")
    out_file = p.out_file or str(Path(model_dir).parent / f"model-{p.outtype}.gguf")
    res.gguf = str(ex.gguf(model_dir, out_file, p.outtype, p.converter))
    res.message = (f"merged into {res.merged}; " if res.merged else "") + f"GGUF {res.gguf}"
    return res
