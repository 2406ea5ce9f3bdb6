"""Curriculum stages and the order records are seen in, as a pure function of the step.

The sample of (stage, position) depends only on the seed, so a run resumed from a checkpoint
sees the very batches an uninterrupted run would: no data-loader state to save.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.errors import UserError
from engine.train.config import RunConfig


@dataclass
class Stage:
    name: str  # "" without a curriculum
    index: int
    first_step: int  # 1-based global step of the stage's first step
    steps: int
    records: list[int]  # indices into the record list

    @property
    def last_step(self) -> int:
        return self.first_step + self.steps - 1


def plan(cfg: RunConfig, records: list[dict[str, Any]]) -> list[Stage]:
    """The stages in order with their records: a record's ``stage`` must name a configured stage;
    a record without one joins every stage."""
    names = [s.stage for s in cfg.curriculum]
    if names:
        bad = [
            f"record {r.get('id', i)} has stage {r['stage']!r}"
            for i, r in enumerate(records)
            if "stage" in r and r["stage"] not in names
        ]
        if bad:
            raise UserError(
                f"{len(bad)} record(s) name a stage not in [[curriculum]] "
                f"({', '.join(names)}): " + "; ".join(bad[:10])
            )
    stages, first = [], 1
    for i, (name, steps) in enumerate(cfg.stage_steps()):
        idx = [j for j, r in enumerate(records) if not name or r.get("stage", name) == name]
        if not idx:
            raise UserError(f"curriculum stage {name!r} has no record in {cfg.data.train}")
        stages.append(Stage(name, i, first, steps, idx))
        first += steps
    return stages


def stage_of(stages: list[Stage], step: int) -> Stage:
    for s in stages:
        if s.first_step <= step <= s.last_step:
            return s
    raise ValueError(f"step {step} is past the last stage")


def sample(cfg: RunConfig, stage: Stage, k: int) -> tuple[int, int]:
    """The record index of the stage's ``k``-th sample (0-based) and its epoch in the stage."""
    import torch

    n = len(stage.records)
    epoch, pos = divmod(k, n)
    g = torch.Generator().manual_seed(cfg.train.seed * 1_000_003 + stage.index * 7_919 + epoch)
    perm = torch.randperm(n, generator=g).tolist()
    return stage.records[perm[pos]], epoch


def micro_batches(cfg: RunConfig, stage: Stage, step: int) -> tuple[list[list[int]], float]:
    """The micro-batches (record indices) of a global ``step`` and the epoch reached (fraction
    of passes over the stage's records)."""
    t = cfg.train
    local = step - stage.first_step  # 0-based step inside the stage
    per_step = t.batch_size * t.grad_accum
    out = []
    for a in range(t.grad_accum):
        base = local * per_step + a * t.batch_size
        out.append([sample(cfg, stage, base + i)[0] for i in range(t.batch_size)])
    seen = (local + 1) * per_step
    return out, seen / len(stage.records)
