"""Supervised fine-tuning with LoRA/QLoRA: curriculum stages, checkpoints, exact resume.

A plain loop rather than ``transformers.Trainer``: the curriculum, the step-addressed data order
(:mod:`engine.train.curriculum`) and the checkpoint contents are what make "kill, resume, same
weights" hold, and they are easier to keep exact in eighty lines than through Trainer hooks.
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path
from typing import Any

from engine import context
from engine.errors import Cancelled, NotAvailable
from engine.train import checkpoint, curriculum, modeling
from engine.train.config import RunConfig, require
from engine.train.progress import Outcome, Reporter
from engine.train.records import read_jsonl


def seed_all(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_optimizer(cfg: RunConfig, params: list[Any], device: str) -> Any:
    import torch

    t = cfg.train
    kind = t.optimizer
    if kind == "auto":
        kind = "adamw_8bit" if device == "cuda" and _has("bitsandbytes") else "adamw"
    if kind == "adamw_8bit":
        if device != "cuda":
            raise NotAvailable("[train].optimizer = 'adamw_8bit' needs CUDA (bitsandbytes)")
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(params, lr=t.learning_rate, weight_decay=t.weight_decay)
    return torch.optim.AdamW(params, lr=t.learning_rate, weight_decay=t.weight_decay)


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def make_scheduler(cfg: RunConfig, optimizer: Any) -> Any:
    import torch

    total = cfg.train.max_steps
    warm = int(cfg.train.warmup_ratio * total)

    def factor(done: int) -> float:  # done = optimizer steps taken so far
        if warm and done < warm:
            return (done + 1) / warm
        if cfg.train.scheduler == "constant":
            return 1.0
        frac = (done - warm) / max(1, total - warm)
        if cfg.train.scheduler == "linear":
            return max(0.0, 1.0 - frac)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, frac)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class Encoder:
    """Records to tensors, each encoded once (encoding is deterministic)."""

    def __init__(self, ld: modeling.Loaded, cfg: RunConfig, records: list[dict[str, Any]]):
        self.ld, self.cfg, self.records = ld, cfg, records
        self.cache: dict[int, dict[str, Any]] = {}

    def batch(self, idx: list[int]) -> dict[str, Any]:
        for i in idx:
            if i not in self.cache:
                self.cache[i] = modeling.encode(
                    self.ld, self.records[i], self.cfg.data.max_length, self.cfg.data.system_prompt
                )
        items = [self.cache[i] for i in idx]
        pad = self.ld.tokenizer.pad_token_id
        return modeling.to_device(modeling.collate(items, pad), self.ld)


def eval_loss(model: Any, enc: Encoder, batch_size: int) -> float:
    """Mean per-token loss of the target tokens over all records of ``enc``."""
    import torch

    was = model.training
    model.eval()
    total, tokens = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(enc.records), batch_size):
            batch = enc.batch(list(range(i, min(i + batch_size, len(enc.records)))))
            n = int((batch["labels"][:, 1:] != modeling.IGNORE).sum())
            total += float(model(**batch).loss) * n
            tokens += n
    model.train(was)
    return total / max(1, tokens)


def evaluate(cfg: RunConfig, ld: modeling.Loaded, enc: Encoder | None) -> dict[str, Any]:
    """Eval loss, and with ``eval_generate`` the metrics library's scores of greedy answers."""
    if enc is None:
        return {}
    out: dict[str, Any] = {"eval_loss": eval_loss(ld.model, enc, cfg.train.batch_size)}
    n = min(cfg.train.eval_generate, len(enc.records))
    if n:
        recs = enc.records[:n]
        was = ld.model.training
        ld.model.eval()
        preds = [
            modeling.generate(ld, r, cfg.train.eval_max_new_tokens, cfg.data.system_prompt)
            for r in recs
        ]
        ld.model.train(was)
        try:
            from engine.report import metrics

            res = metrics.evaluate(
                [str(r.get("id", i)) for i, r in enumerate(recs)],
                preds,
                [r["target"] for r in recs],
                metrics=cfg.train.eval_metrics,
            )
            out.update({f"eval_{k}": float(v) for k, v in res["corpus"].items()})
        except NotAvailable as exc:
            context.log(f"train: generation metrics skipped: {exc}")
    return out


def _epoch_due(cfg: RunConfig, stage: curriculum.Stage, epoch: float) -> bool:
    """Whether this step completed the ``eval_epochs``-th pass over the stage's records."""
    n = cfg.train.eval_epochs
    if n < 1:
        return False
    per = cfg.train.batch_size * cfg.train.grad_accum / len(stage.records)
    return math.floor((epoch + 1e-9) / n) > math.floor((epoch - per + 1e-9) / n)


def run(cfg: RunConfig, resume: str = "auto", stop_after: int = 0) -> Outcome:
    """Train ``cfg``; ``resume``: auto | never | a checkpoint folder. ``stop_after`` (tests,
    dry runs) stops after that many steps as a preemption would, checkpoint included."""
    import torch

    require(cfg, "model.path", "data.train")
    t0 = time.monotonic()
    out_dir = Path(cfg.train.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seed_all(cfg.train.seed)
    records = read_jsonl(cfg.data.train, "sft")
    eval_records = read_jsonl(cfg.data.eval, "sft") if cfg.data.eval else []
    stages = curriculum.plan(cfg, records)
    ld = modeling.load(cfg)
    model = ld.model
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(cfg, params, ld.device)
    scheduler = make_scheduler(cfg, optimizer)
    enc = Encoder(ld, cfg, records)
    eval_enc = Encoder(ld, cfg, eval_records) if eval_records else None
    res = Outcome(
        "sft", str(out_dir), max_steps=cfg.train.max_steps, device=ld.device, quantized=ld.quantized
    )
    ckpt = checkpoint.resolve(out_dir, resume)
    start = 0
    if ckpt is not None:
        state = checkpoint.load(ckpt, model, optimizer, scheduler)
        start = res.resumed_from = int(state["step"])
        res.eval_loss_before = state.get("eval_loss_before", math.nan)
    rep = Reporter(out_dir, "sft", cfg.train.max_steps, start)
    (out_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1) + "\n")
    rep.note(
        f"{'resuming at step ' + str(start + 1) if start else 'starting'}: {len(records)} "
        f"record(s), stages "
        + ", ".join(f"{s.name or 'all'}={s.steps}" for s in stages)
        + f", device {ld.device}{' 4-bit' if ld.quantized else ''} {ld.dtype}"
    )
    if start == 0 and eval_enc is not None:
        before = evaluate(cfg, ld, eval_enc)
        res.eval_loss_before = before["eval_loss"]
        rep.eval(0, before)
    losses: list[float] = []
    model.train()
    with checkpoint.PreemptionFlag() as flag:
        step = start
        for step in range(start + 1, cfg.train.max_steps + 1):
            stage = curriculum.stage_of(stages, step)
            if step == stage.first_step and stage.name:
                rep.note(
                    f"stage {stage.name}: steps {stage.first_step}-{stage.last_step} "
                    f"on {len(stage.records)} record(s)"
                )
            mbs, epoch = curriculum.micro_batches(cfg, stage, step)
            optimizer.zero_grad(set_to_none=True)
            total = 0.0
            for mb in mbs:
                loss = model(**enc.batch(mb)).loss / len(mbs)
                loss.backward()
                total += float(loss.detach())
            torch.nn.utils.clip_grad_norm_(params, cfg.train.max_grad_norm)
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            losses.append(total)
            if step % cfg.train.log_every == 0 or step == cfg.train.max_steps:
                rep.step(step, total, lr, stage=stage.name, epoch=round(epoch, 4))
            last = step == cfg.train.max_steps  # evaluated once more below, with the outputs
            if (
                eval_enc is not None
                and not last
                and (_epoch_due(cfg, stage, epoch) or step == stage.last_step)
            ):
                rep.eval(step, evaluate(cfg, ld, eval_enc), stage=stage.name, epoch=round(epoch, 4))
            stop = flag.is_set() or (stop_after and step - start >= stop_after)
            if step % cfg.train.save_every == 0 or stop or context.cancelled():
                checkpoint.save(
                    out_dir,
                    step,
                    model,
                    optimizer,
                    scheduler,
                    {"stage": stage.name, "eval_loss_before": res.eval_loss_before},
                    keep=cfg.train.keep_checkpoints,
                )
            if context.cancelled():
                raise Cancelled(f"training cancelled at step {step}; checkpoint saved")
            if stop:
                why = flag.signal or f"stop_after={stop_after}"
                raise checkpoint.Preempted(
                    f"stopped at step {step} ({why}); checkpoint saved, run again to resume"
                )
    res.steps = step
    res.stage_steps = {s.name: s.steps for s in stages}
    if eval_enc is not None:
        final = evaluate(cfg, ld, eval_enc)
        rep.eval(step, final, stage=stages[-1].name, final=True)
        res.eval_loss_after = final.pop("eval_loss")
        res.metrics.update(final)
    res.first_loss = losses[0] if losses else math.nan
    res.last_loss = losses[-1] if losses else math.nan
    finish(cfg, ld, res, records)
    res.seconds = round(time.monotonic() - t0, 3)
    (out_dir / "train_result.json").write_text(json.dumps(res.__dict__, indent=1) + "\n")
    return res


def finish(
    cfg: RunConfig,
    ld: modeling.Loaded,
    res: Outcome,
    records: list[dict[str, Any]],
    kind: str = "sft",
) -> None:
    """Adapter (+ processor), optionally the merged model, and the model card."""
    from engine.train import card, export

    out_dir = Path(cfg.train.output_dir)
    adapter = out_dir / "adapter"
    ld.model.save_pretrained(adapter, save_embedding_layers=False)  # base weights stay as they are
    ld.processor.save_pretrained(adapter)
    res.adapter = str(adapter)
    if cfg.train.merge:
        res.merged = str(export.merge(cfg, adapter, out_dir / "merged"))
    res.card = str(card.write(cfg, res, records, kind=kind))
