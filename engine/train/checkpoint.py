"""Checkpoints that make a resumed run end with the weights an uninterrupted run ends with.

A checkpoint holds the trainable (LoRA) tensors, the optimizer and scheduler state, every random
generator the step uses and the step number. It is written to a temporary folder and renamed
into place, so a kill during the write leaves the previous checkpoint intact. Preemption
(Slurm's ``--signal`` before the time limit, SIGTERM on preemption) sets a flag; the loop
checkpoints after the current step and stops with :class:`Preempted`.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import threading
from pathlib import Path
from typing import Any

from engine.errors import LlmhError, UserError

PREEMPTED_EXIT = 3  # the job script requeues itself on this exit status
_DIR = "checkpoints"


class Preempted(LlmhError):
    """Stopped on a preemption signal after saving a checkpoint; run again to resume."""


def ckpt_root(output_dir: str | Path) -> Path:
    return Path(output_dir) / _DIR


def latest(output_dir: str | Path) -> Path | None:
    """The newest complete checkpoint (one with ``state.json``), or ``None``."""
    root = ckpt_root(output_dir)
    if not root.is_dir():
        return None
    done = sorted(p for p in root.glob("step-*") if (p / "state.json").is_file())
    return done[-1] if done else None


def resolve(output_dir: str | Path, resume: str) -> Path | None:
    """``resume``: ``auto`` (latest if any), ``never`` or a checkpoint folder."""
    if resume == "never":
        return None
    if resume == "auto":
        return latest(output_dir)
    p = Path(resume)
    if not (p / "state.json").is_file():
        raise UserError(f"--resume {resume}: not a checkpoint folder (no state.json)")
    return p


def rng_state() -> dict[str, Any]:
    import numpy as np
    import torch

    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def trainable_state(model: Any) -> dict[str, Any]:
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def save(
    output_dir: str | Path,
    step: int,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    info: dict[str, Any],
    keep: int = 2,
) -> Path:
    import torch

    root = ckpt_root(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:07d}"
    tmp = root / f".tmp-step-{step:07d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    torch.save(trainable_state(model), tmp / "trainable.pt")
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    torch.save(rng_state(), tmp / "rng.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step, **info}, indent=1) + "\n")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    done = sorted(p for p in root.glob("step-*") if (p / "state.json").is_file())
    for old in done[: max(0, len(done) - keep)]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load(path: Path, model: Any, optimizer: Any, scheduler: Any) -> dict[str, Any]:
    """Restore a checkpoint into the live objects; returns its ``state.json``."""
    import torch

    weights = torch.load(path / "trainable.pt", map_location="cpu")
    params = dict(model.named_parameters())
    missing = [n for n in weights if n not in params]
    if missing:
        raise UserError(
            f"{path}: checkpoint does not fit this model/LoRA config ({len(missing)} tensors "
            f"unknown, e.g. {missing[0]})"
        )
    with torch.no_grad():
        for n, t in weights.items():
            params[n].copy_(t.to(params[n].device, params[n].dtype))
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location="cpu"))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", map_location="cpu"))
    set_rng_state(torch.load(path / "rng.pt", map_location="cpu", weights_only=False))
    return json.loads((path / "state.json").read_text())


_early = threading.Event()


def catch_early_signals() -> None:
    """From process start, remember SIGUSR1 instead of dying of it: Slurm's warning can come
    while the model loads (the run then checkpoints at its first step) or after the last step
    (nothing left to save), and neither may end the job with signal 10."""
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGUSR1"):
        signal.signal(signal.SIGUSR1, lambda *_: _early.set())


class PreemptionFlag:
    """SIGUSR1/SIGTERM -> ``set``; installed only in the main thread (an engine request runs in
    a worker thread, where the engine's own cancellation applies instead). A warning caught
    early (:func:`catch_early_signals`) counts as soon as the flag is entered."""

    SIGNALS = ("SIGUSR1", "SIGTERM")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal = ""
        self._old: dict[int, Any] = {}

    def __enter__(self) -> PreemptionFlag:
        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                sig = getattr(signal, name, None)
                if sig is not None:
                    self._old[sig] = signal.signal(sig, self._handle)
        if _early.is_set() and threading.current_thread() is threading.main_thread():
            _early.clear()
            self.signal = "SIGUSR1"
            self.event.set()
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        self.signal = signal.Signals(signum).name
        self.event.set()

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def is_set(self) -> bool:
        return self.event.is_set()
