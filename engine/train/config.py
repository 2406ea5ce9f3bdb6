"""The TOML file of a training run, read into checked dataclasses.

One file describes a run completely (model, LoRA, data, curriculum, schedule, Slurm, outputs) so
that a job requeued on another node, or resumed after a kill, trains exactly the same thing.
Every error names the table and key, and unknown keys are refused (a typo must not silently
fall back to a default)::

    [model]
    path = "/models/llava-tiny"       # a save_pretrained folder (nothing is downloaded)
    kind = "auto"                     # auto | text | vision
    quantization = "auto"             # auto (4-bit on CUDA) | 4bit | none
    dtype = "auto"                    # auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp16 | fp32

    [lora]
    r = 16
    alpha = 32
    dropout = 0.05
    target_modules = "auto"           # auto | all-linear | ["q_proj", "v_proj"]

    [data]
    train = "train.jsonl"             # relative paths are relative to this file
    eval = "eval.jsonl"
    max_length = 1024

    [train]
    output_dir = "runs/sft"
    max_steps = 200
    batch_size = 1
    grad_accum = 8
    learning_rate = 2e-4
    save_every = 50

    [[curriculum]]                    # stages run in this order, for ratio * max_steps steps
    stage = "A"
    ratio = 0.3
    [[curriculum]]
    stage = "B"
    ratio = 0.7

    [dpo]
    beta = 0.1

    [slurm]
    gpus = 1
    time = "04:00:00"
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import UserError


@dataclass
class ModelConfig:
    path: str = ""
    kind: str = "auto"  # auto | text | vision
    quantization: str = "auto"  # auto | 4bit | none
    dtype: str = "auto"  # auto | bf16 | fp16 | fp32
    gradient_checkpointing: bool = True
    trust_remote_code: bool = False


@dataclass
class LoraConfig:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str | list[str] = "auto"


@dataclass
class DataConfig:
    train: str = ""
    eval: str = ""
    max_length: int = 1024
    system_prompt: str = ""


@dataclass
class TrainConfig:
    output_dir: str = "runs/train"
    max_steps: int = 100
    batch_size: int = 1
    grad_accum: int = 1
    learning_rate: float = 2e-4
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    scheduler: str = "cosine"  # cosine | linear | constant
    optimizer: str = "auto"  # auto (8-bit AdamW on CUDA) | adamw | adamw_8bit
    max_grad_norm: float = 1.0
    seed: int = 0
    save_every: int = 50
    keep_checkpoints: int = 2
    log_every: int = 1
    eval_epochs: int = 1  # evaluate every N passes over a stage's records (0: stage ends only)
    eval_generate: int = 0  # records generated each epoch for BLEU/ROUGE-L (0: loss only)
    eval_max_new_tokens: int = 128
    eval_metrics: list[str] = field(default_factory=lambda: ["bleu", "rouge_l"])
    merge: bool = False  # also save the merged model (adapter folded into the weights)


@dataclass
class StageConfig:
    stage: str = ""
    ratio: float = 0.0


@dataclass
class DpoConfig:
    beta: float = 0.1
    loss_type: str = "sigmoid"


@dataclass
class SlurmConfig:
    gpus: int = 1
    time: str = "04:00:00"
    partition: str = ""
    cpus_per_task: int = 8
    mem: str = ""
    job_name: str = "llmh-train"
    signal_seconds: int = 120  # SIGUSR1 this long before the time limit: checkpoint, requeue
    extra: list[str] = field(default_factory=list)  # more #SBATCH lines, e.g. "--qos=high"
    setup: list[str] = field(default_factory=list)  # shell lines before training (modules)


@dataclass
class RunConfig:
    """A whole training run; ``source`` is the TOML file it came from ("" when built in code)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    curriculum: list[StageConfig] = field(default_factory=list)
    dpo: DpoConfig = field(default_factory=DpoConfig)
    slurm: SlurmConfig = field(default_factory=SlurmConfig)
    source: str = ""

    def stage_steps(self) -> list[tuple[str, int]]:
        """``[(stage, steps)]`` in order; the last stage takes the rounding remainder."""
        if not self.curriculum:
            return [("", self.train.max_steps)]
        total = sum(s.ratio for s in self.curriculum)
        out: list[tuple[str, int]] = []
        left = self.train.max_steps
        for i, s in enumerate(self.curriculum):
            n = (
                left
                if i == len(self.curriculum) - 1
                else round(self.train.max_steps * s.ratio / total)
            )
            n = min(n, left)
            out.append((s.stage, n))
            left -= n
        return out

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("source")
        return d


_TABLES: dict[str, type] = {
    "model": ModelConfig,
    "lora": LoraConfig,
    "data": DataConfig,
    "train": TrainConfig,
    "dpo": DpoConfig,
    "slurm": SlurmConfig,
}

_CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("model", "kind"): ("auto", "text", "vision"),
    ("model", "quantization"): ("auto", "4bit", "none"),
    ("model", "dtype"): ("auto", "bf16", "fp16", "fp32"),
    ("train", "scheduler"): ("cosine", "linear", "constant"),
    ("train", "optimizer"): ("auto", "adamw", "adamw_8bit"),
    ("dpo", "loss_type"): ("sigmoid", "ipo", "hinge"),
}


def _type_ok(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(tp))
    if origin is list:
        (item,) = typing.get_args(tp)
        return isinstance(value, list) and all(_type_ok(v, item) for v in value)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


def _build(cls: type, table: Any, where: str) -> Any:
    if not isinstance(table, dict):
        raise UserError(f"{where}: must be a table")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - names)
    if unknown:
        raise UserError(
            f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(names))})"
        )
    for key, value in table.items():
        if not _type_ok(value, hints[key]):
            tname = getattr(hints[key], "__name__", str(hints[key]))
            raise UserError(f"{where}.{key}: expected {tname}, got {value!r}")
    obj = cls(**table)
    for f in dataclasses.fields(cls):
        v = getattr(obj, f.name)
        if isinstance(v, int) and not isinstance(v, bool) and f.type in ("float", float):
            setattr(obj, f.name, float(v))
    return obj


def _check(cfg: RunConfig) -> None:
    for (table, key), allowed in _CHOICES.items():
        v = getattr(getattr(cfg, table), key)
        if v not in allowed:
            raise UserError(f"[{table}].{key}: {v!r} is not one of {', '.join(allowed)}")
    t = cfg.train
    positive = {
        "[train].max_steps": t.max_steps,
        "[train].batch_size": t.batch_size,
        "[train].grad_accum": t.grad_accum,
        "[train].save_every": t.save_every,
        "[train].log_every": t.log_every,
        "[lora].r": cfg.lora.r,
        "[data].max_length": cfg.data.max_length,
    }
    for name, v in positive.items():
        if v < 1:
            raise UserError(f"{name}: must be at least 1, got {v}")
    if not t.learning_rate > 0:
        raise UserError(f"[train].learning_rate: must be > 0, got {t.learning_rate}")
    if not 0 <= t.warmup_ratio < 1:
        raise UserError(f"[train].warmup_ratio: must be in [0, 1), got {t.warmup_ratio}")
    if not 0 <= cfg.lora.dropout < 1:
        raise UserError(f"[lora].dropout: must be in [0, 1), got {cfg.lora.dropout}")
    if cfg.slurm.gpus < 0:
        raise UserError(f"[slurm].gpus: must be 0 or more, got {cfg.slurm.gpus}")
    seen: set[str] = set()
    for i, s in enumerate(cfg.curriculum):
        where = f"[[curriculum]] #{i + 1}"
        if not s.stage:
            raise UserError(f"{where}: 'stage' is empty")
        if s.stage in seen:
            raise UserError(f"{where}: stage {s.stage!r} listed twice")
        seen.add(s.stage)
        if not s.ratio > 0:
            raise UserError(f"{where} ({s.stage}): ratio must be > 0, got {s.ratio}")
    steps = cfg.stage_steps()
    empty = [name for name, n in steps if n < 1]
    if empty:
        raise UserError(
            f"[[curriculum]]: stage(s) {', '.join(empty)} get no step with "
            f"max_steps={t.max_steps}; raise max_steps or their ratio"
        )


def from_dict(data: dict[str, Any], base_dir: str | Path = ".", source: str = "") -> RunConfig:
    """A checked :class:`RunConfig` from parsed TOML; relative data/output paths are resolved
    against ``base_dir`` (the config file's folder) so a job may start anywhere."""
    known = set(_TABLES) | {"curriculum"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UserError(
            f"{source or 'config'}: unknown table(s) {', '.join(unknown)} "
            f"(known: {', '.join(sorted(known))})"
        )
    parts: dict[str, Any] = {
        name: _build(cls, data.get(name, {}), f"[{name}]") for name, cls in _TABLES.items()
    }
    stages = data.get("curriculum", [])
    if not isinstance(stages, list):
        raise UserError("curriculum: write it as [[curriculum]] tables")
    parts["curriculum"] = [
        _build(StageConfig, s, f"[[curriculum]] #{i + 1}") for i, s in enumerate(stages)
    ]
    cfg = RunConfig(**parts, source=source)
    base = Path(base_dir)
    for obj, key in ((cfg.data, "train"), (cfg.data, "eval"), (cfg.train, "output_dir")):
        v = getattr(obj, key)
        if v and not Path(v).expanduser().is_absolute():
            setattr(obj, key, str((base / v).resolve()))
    if cfg.model.path and not Path(cfg.model.path).expanduser().is_absolute():
        local = base / cfg.model.path
        if local.exists():
            cfg.model.path = str(local.resolve())
    _check(cfg)
    return cfg


def load(path: str | Path) -> RunConfig:
    """Read and check a run's TOML file."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"{p}: no such config file")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{p}: not valid TOML: {exc}") from None
    return from_dict(data, p.parent, str(p.resolve()))


def require(cfg: RunConfig, *what: str) -> None:
    """Fail early, naming the key, when a run lacks something it needs."""
    where = cfg.source or "config"
    for key in what:
        table, name = key.split(".")
        if not getattr(getattr(cfg, table), name):
            raise UserError(f"{where}: [{table}].{name} is required")
