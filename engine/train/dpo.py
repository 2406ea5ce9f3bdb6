"""Direct preference optimisation (trl's ``DPOTrainer``) of a LoRA adapter on style pairs.

Pairs ``{prompt, chosen, rejected}`` — a radiologist's own impression against a coarse draft —
teach the model that person's reporting style. Prompts go through the model's chat template
(trl's conversational format), so DPO sees the same text layout SFT trained on. The adapter is
trained against the frozen base (the reference is the model with its adapter disabled, which
costs no second copy of the weights).

The chosen-vs-rejected margin, ``log p(chosen) - log p(rejected)`` summed over the answer's
tokens and averaged over the pairs, is measured before and after: it is the number a person can
check the run against.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from engine import context
from engine.errors import Cancelled, UserError
from engine.train import checkpoint, modeling
from engine.train.config import RunConfig, require
from engine.train.progress import Outcome, Reporter
from engine.train.records import read_jsonl


def sequence_logp(
    ld: modeling.Loaded, rec: dict[str, Any], answer: str, system: str, max_length: int
) -> float:
    """Summed log-probability of ``answer`` (and the template's end of turn) after the prompt."""
    import torch

    enc = modeling.encode(ld, {**rec, "target": answer}, max_length, system)
    batch = modeling.to_device(modeling.collate([enc], ld.tokenizer.pad_token_id), ld)
    labels = batch.pop("labels")
    with torch.no_grad():
        logits = ld.model(**batch).logits[:, :-1].float()
    tgt = labels[:, 1:]
    mask = tgt != modeling.IGNORE
    logp = torch.log_softmax(logits, -1).gather(-1, tgt.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return float((logp * mask).sum())


def margin(ld: modeling.Loaded, pairs: list[dict[str, Any]], cfg: RunConfig) -> float:
    """Mean ``log p(chosen) - log p(rejected)`` over ``pairs``."""
    was = ld.model.training
    ld.model.eval()
    vals = [
        sequence_logp(ld, p, p["chosen"], cfg.data.system_prompt, cfg.data.max_length)
        - sequence_logp(ld, p, p["rejected"], cfg.data.system_prompt, cfg.data.max_length)
        for p in pairs
    ]
    ld.model.train(was)
    return sum(vals) / len(vals)


def _dataset(pairs: list[dict[str, Any]], system: str) -> Any:
    from datasets import Dataset

    sys_msg = [{"role": "system", "content": system}] if system else []
    return Dataset.from_list(
        [
            {
                "prompt": [*sys_msg, {"role": "user", "content": p["prompt"]}],
                "chosen": [{"role": "assistant", "content": p["chosen"]}],
                "rejected": [{"role": "assistant", "content": p["rejected"]}],
            }
            for p in pairs
        ]
    )


def _callback(rep: Reporter, flag: checkpoint.PreemptionFlag, stop_after: int, start: int) -> Any:
    from transformers import TrainerCallback

    class Stream(TrainerCallback):  # type: ignore[misc]
        """Loss, learning rate and reward margins to the reporter; stop on preemption."""

        stopped = ""

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            logs = logs or {}
            if "loss" in logs:
                extra = {
                    k.replace("/", "_"): float(v)
                    for k, v in logs.items()
                    if k.startswith(("rewards/", "logps/"))
                }
                rep.step(
                    state.global_step,
                    float(logs["loss"]),
                    float(logs.get("learning_rate", math.nan)),
                    **extra,
                )

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if flag.is_set() or (stop_after and state.global_step - start >= stop_after):
                self.stopped = flag.signal or f"stop_after={stop_after}"
            if self.stopped or context.cancelled():
                control.should_save = True
                control.should_training_stop = True

    return Stream()


def _checkpointing_arg(cls: Any, on: bool) -> dict[str, bool]:
    """transformers 5 renamed ``gradient_checkpointing`` to ``activation_checkpointing``."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(cls)}
    return {
        "activation_checkpointing"
        if "activation_checkpointing" in names
        else "gradient_checkpointing": on
    }


def run(cfg: RunConfig, resume: str = "auto", stop_after: int = 0) -> Outcome:
    """DPO-train a LoRA adapter on ``cfg.data.train`` pairs; ``resume`` as for SFT."""
    modeling.need("trl")
    modeling.need("datasets")
    from transformers.trainer_utils import get_last_checkpoint
    from trl import DPOConfig, DPOTrainer

    require(cfg, "model.path", "data.train")
    t0 = time.monotonic()
    out_dir = Path(cfg.train.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pairs = read_jsonl(cfg.data.train, "dpo")
    if any(p.get("image") for p in pairs):
        raise UserError(
            f"{cfg.data.train}: DPO pairs with images are not supported; "
            "style preference is trained on the text of the impression"
        )
    eval_pairs = read_jsonl(cfg.data.eval, "dpo") if cfg.data.eval else pairs
    ld = modeling.load(cfg, lora=False)
    ld.model.config.use_cache = False
    ckpt_dir = out_dir / "checkpoints"
    last = None
    if resume == "auto" and ckpt_dir.is_dir():
        last = get_last_checkpoint(str(ckpt_dir))
    elif resume not in ("auto", "never"):
        last = resume
    start = int(Path(last).name.rsplit("-", 1)[-1]) if last else 0
    res = Outcome(
        "dpo",
        str(out_dir),
        max_steps=cfg.train.max_steps,
        device=ld.device,
        quantized=ld.quantized,
        resumed_from=start,
    )
    rep = Reporter(out_dir, "dpo", cfg.train.max_steps, start)
    if start == 0:
        res.metrics["margin_before"] = margin(ld, eval_pairs, cfg)
        rep.eval(0, {"margin": res.metrics["margin_before"]})
    else:
        state = out_dir / "margin_before.json"
        if state.is_file():
            res.metrics["margin_before"] = json.loads(state.read_text())["margin"]
    (out_dir / "margin_before.json").write_text(
        json.dumps({"margin": res.metrics.get("margin_before", math.nan)}) + "\n"
    )
    t = cfg.train
    optim = t.optimizer
    if optim == "auto":
        optim = (
            "adamw_8bit"
            if ld.device == "cuda" and modeling.importlib.util.find_spec("bitsandbytes")
            else "adamw"
        )
    args = DPOConfig(
        output_dir=str(ckpt_dir),
        max_steps=t.max_steps,
        per_device_train_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum,
        learning_rate=t.learning_rate,
        weight_decay=t.weight_decay,
        lr_scheduler_type=t.scheduler if t.scheduler != "constant" else "constant_with_warmup",
        warmup_steps=int(t.warmup_ratio * t.max_steps),
        max_grad_norm=t.max_grad_norm,
        optim="adamw_bnb_8bit" if optim == "adamw_8bit" else "adamw_torch",
        logging_steps=t.log_every,
        save_steps=t.save_every,
        save_total_limit=t.keep_checkpoints,
        seed=t.seed,
        data_seed=t.seed,
        beta=cfg.dpo.beta,
        loss_type=[cfg.dpo.loss_type],
        max_length=cfg.data.max_length,
        **_checkpointing_arg(DPOConfig, cfg.model.gradient_checkpointing),
        bf16=ld.dtype == "bf16",
        fp16=ld.dtype == "fp16",
        use_cpu=ld.device == "cpu",
        report_to="none",
        disable_tqdm=True,
        dataset_num_proc=None,
    )
    with checkpoint.PreemptionFlag() as flag:
        cb = _callback(rep, flag, stop_after, start)
        trainer = DPOTrainer(
            model=ld.model,
            args=args,
            train_dataset=_dataset(pairs, cfg.data.system_prompt),
            processing_class=ld.tokenizer,
            peft_config=modeling.lora_config(cfg, ld.model, ld.vision),
            callbacks=[cb],
        )
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        for quiet in (PrinterCallback, ProgressCallback):  # progress goes through the reporter
            trainer.remove_callback(quiet)
        trainer.train(resume_from_checkpoint=last)
    if context.cancelled():
        raise Cancelled(f"DPO cancelled at step {trainer.state.global_step}; checkpoint saved")
    if cb.stopped:
        raise checkpoint.Preempted(
            f"stopped at step {trainer.state.global_step} ({cb.stopped}); "
            "checkpoint saved, run again to resume"
        )
    ld.model = trainer.model
    res.steps = trainer.state.global_step
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    res.first_loss = float(losses[0]) if losses else math.nan
    res.last_loss = float(losses[-1]) if losses else math.nan
    res.metrics["margin_after"] = margin(ld, eval_pairs, cfg)
    rep.eval(res.steps, {"margin": res.metrics["margin_after"]})
    from engine.train.sft import finish

    finish(cfg, ld, res, pairs, kind="dpo")
    res.seconds = round(time.monotonic() - t0, 3)
    (out_dir / "train_result.json").write_text(json.dumps(res.__dict__, indent=1) + "\n")
    return res
