"""Where training metrics go: ``OUT/metrics.jsonl`` (one line per step or evaluation), the
engine's progress notifications (the TUI's live loss plot) and, outside an engine, stderr.

The file is the source for every follower: a Slurm job writes it on the compute node and the
submitting client re-emits its new lines as notifications (:func:`follow`). On resume, lines past
the checkpoint's step are dropped so the file reads like one uninterrupted run.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import context

METRICS = "metrics.jsonl"


@dataclass
class Outcome:
    """What a finished (or stopped) run produced; the API turns it into its result type."""

    kind: str  # sft | dpo
    output_dir: str
    steps: int = 0
    max_steps: int = 0
    resumed_from: int = 0  # the checkpoint step a resumed run started from (0: fresh)
    stage_steps: dict[str, int] = field(default_factory=dict)  # steps actually run per stage
    first_loss: float = math.nan
    last_loss: float = math.nan
    eval_loss_before: float = math.nan
    eval_loss_after: float = math.nan
    metrics: dict[str, float] = field(default_factory=dict)  # final eval and DPO margins
    adapter: str = ""
    merged: str = ""
    card: str = ""
    device: str = ""
    quantized: bool = False
    seconds: float = 0.0


class Reporter:
    def __init__(self, output_dir: str | Path, kind: str, max_steps: int, resume_step: int) -> None:
        self.path = Path(output_dir) / METRICS
        self.kind, self.max_steps = kind, max_steps
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept: list[str] = []
        if resume_step and self.path.is_file():
            for line in self.path.read_text().splitlines():
                try:
                    if json.loads(line).get("step", 0) <= resume_step:
                        kept.append(line)
                except json.JSONDecodeError:
                    continue
        self.path.write_text("".join(x + "\n" for x in kept))
        self.t0 = time.monotonic()

    def _write(self, rec: dict[str, Any]) -> None:
        with self.path.open("a") as fh:
            fh.write(json.dumps(rec) + "\n")

    def step(self, step: int, loss: float, lr: float, **extra: Any) -> None:
        rec = {
            "type": "train",
            "kind": self.kind,
            "step": step,
            "max_steps": self.max_steps,
            "loss": loss,
            "lr": lr,
            "elapsed_s": round(time.monotonic() - self.t0, 3),
            **extra,
        }
        self._write(rec)
        emit(rec)

    def eval(self, step: int, values: dict[str, Any], **extra: Any) -> None:
        rec = {
            "type": "eval",
            "kind": self.kind,
            "step": step,
            "max_steps": self.max_steps,
            **values,
            **extra,
        }
        self._write(rec)
        emit(rec)

    def note(self, text: str) -> None:
        context.log(f"train: {text}")


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def emit(rec: dict[str, Any]) -> None:
    """One metrics record as a progress notification (in an engine) or a stderr line."""
    step, total = rec.get("step", 0), rec.get("max_steps", 0) or 1
    stage = f" stage {rec['stage']}" if rec.get("stage") else ""
    if rec.get("type") == "eval":
        shown = {k: v for k, v in rec.items() if k not in ("type", "kind", "step", "max_steps")}
        msg = f"eval at step {step}{stage}: " + " ".join(f"{k}={_fmt(v)}" for k, v in shown.items())
    else:
        msg = f"step {step}/{total}{stage} loss={_fmt(rec.get('loss'))} lr={_fmt(rec.get('lr'))}"
    fields = {k: v for k, v in rec.items() if k != "type"}
    if context.current() is not None:
        context.progress(min(1.0, step / total), msg, train=rec.get("type", "train"), **fields)
    else:
        context.log(f"train: {msg}")


def follow(path: str | Path, offset: int = 0) -> int:
    """Emit the lines of a metrics file written since byte ``offset``; the new offset."""
    p = Path(path)
    if not p.is_file():
        return offset
    with p.open("rb") as fh:
        fh.seek(offset)
        data = fh.read()
    end = data.rfind(b"\n") + 1
    for line in data[:end].decode("utf-8", "replace").splitlines():
        try:
            emit(json.loads(line))
        except json.JSONDecodeError:
            continue
    return offset + end
