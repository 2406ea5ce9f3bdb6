"""The model card (``OUT/README.md``): what was trained, on what, how, and how well.

A card travels with the adapter so that whoever loads it months later can tell which data,
stages and settings produced it, without the run folder's logs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from engine.atomic import write_text_atomic
from engine.train.config import RunConfig
from engine.train.progress import Outcome
from engine.train.records import summarize


def _num(v: Any) -> str:
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:.4f}"
    return str(v)


def render(cfg: RunConfig, res: Outcome, records: list[dict[str, Any]], kind: str = "sft") -> str:
    data = summarize(records, "dpo" if kind == "dpo" else "sft", cfg.data.train)
    base = cfg.model.path
    lines = [
        "---",
        "library_name: peft",
        f"base_model: {base}",
        "tags: [lora, " + ("dpo" if kind == "dpo" else "sft") + ", llm-heuristics]",
        "---",
        "",
        f"# LoRA adapter ({kind.upper()}) of `{Path(base).name}`",
        "",
        f"Trained with `llm-heuristics train {kind}` on {res.device}"
        f"{' with 4-bit base weights (QLoRA)' if res.quantized else ''}.",
        "",
        "## Data",
        "",
        *[f"- {x.strip()}" for x in data.lines()],
        f"- evaluation file: {cfg.data.eval or 'none'}",
        "",
        "## Training",
        "",
        f"- steps: {res.steps} of {res.max_steps}"
        + (f" (resumed from step {res.resumed_from})" if res.resumed_from else ""),
    ]
    if res.stage_steps and any(res.stage_steps):
        lines.append(
            "- curriculum: "
            + ", ".join(
                f"stage {s.stage} ratio {s.ratio:g} -> {n} steps"
                for s, (_, n) in zip(cfg.curriculum, cfg.stage_steps(), strict=True)
            )
        )
    lines += [
        f"- LoRA r={cfg.lora.r} alpha={cfg.lora.alpha} dropout={cfg.lora.dropout} "
        f"targets={cfg.lora.target_modules}",
        f"- learning rate {cfg.train.learning_rate:g} ({cfg.train.scheduler}), batch "
        f"{cfg.train.batch_size} x {cfg.train.grad_accum} accumulation, seed {cfg.train.seed}",
        "",
        "## Metrics",
        "",
        "| metric | value |",
        "|---|---|",
        f"| first training loss | {_num(res.first_loss)} |",
        f"| last training loss | {_num(res.last_loss)} |",
        f"| eval loss before | {_num(res.eval_loss_before)} |",
        f"| eval loss after | {_num(res.eval_loss_after)} |",
        *[f"| {k} | {_num(v)} |" for k, v in sorted(res.metrics.items())],
        "",
        "## Configuration",
        "",
        "```json",
        json.dumps(cfg.to_dict(), indent=1),
        "```",
        "",
    ]
    return "\n".join(lines)


def write(cfg: RunConfig, res: Outcome, records: list[dict[str, Any]], kind: str = "sft") -> Path:
    path = Path(cfg.train.output_dir) / "README.md"
    write_text_atomic(path, render(cfg, res, records, kind))
    return path
