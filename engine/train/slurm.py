"""Training as a Slurm batch job that survives preemption and time limits.

The script asks for GPUs (``--gres=gpu:N``), a time limit, ``--requeue`` and
``--signal=B:USR1@S``: S seconds before the limit Slurm signals the batch shell, which passes the
signal to the trainer; the trainer checkpoints after its current step and exits with
:data:`~engine.train.checkpoint.PREEMPTED_EXIT`, and the shell requeues the job. Preemption by a
higher-priority job (SIGTERM, then requeue by Slurm itself) takes the same checkpoint path. A
requeued job runs the same script again and resumes from the newest checkpoint
(``--resume auto``), so the job's result equals an uninterrupted run's.

While the job runs, :func:`submit_and_follow` re-emits the job's ``metrics.jsonl`` lines as
progress notifications: the client sees the loss curve of a job on another node.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from engine import context
from engine.atomic import write_text_atomic
from engine.errors import Cancelled, StepFailed, UserError
from engine.train import checkpoint
from engine.train.config import RunConfig
from engine.train.progress import METRICS, Outcome, follow

SCRIPT = "train.sbatch"
RESULT = "train_result.json"


def job_script(cfg: RunConfig, kind: str, config_path: str) -> str:
    """The text of the batch script of a ``kind`` (sft | dpo) run of ``config_path``."""
    s = cfg.slurm
    out = Path(cfg.train.output_dir).resolve()
    lines = ["#!/bin/bash", f"#SBATCH --job-name={s.job_name}"]
    if s.gpus > 0:
        lines.append(f"#SBATCH --gres=gpu:{s.gpus}")
    lines += [
        f"#SBATCH --time={s.time}",
        "#SBATCH --requeue",
        f"#SBATCH --signal=B:USR1@{s.signal_seconds}",
        "#SBATCH --open-mode=append",
        f"#SBATCH --output={out}/slurm-%j.log",
        f"#SBATCH --cpus-per-task={s.cpus_per_task}",
    ]
    if s.partition:
        lines.append(f"#SBATCH --partition={s.partition}")
    if s.mem:
        lines.append(f"#SBATCH --mem={s.mem}")
    lines += [f"#SBATCH {x}" for x in s.extra]
    py = shlex.quote(sys.executable)
    root = shlex.quote(str(Path(__file__).resolve().parents[2]))
    run = f"{py} -m engine.train.slurm run {kind} {shlex.quote(str(Path(config_path).resolve()))}"
    lines += [
        "",
        f"# {kind.upper()} training; requeued on preemption, resumed from the newest checkpoint.",
        *s.setup,
        f"cd {root}",
        'echo "llmh-train: job ${SLURM_JOB_ID:-?} start $(date -Is) restart ${SLURM_RESTART_COUNT:-0}"',
        f"{run} &",
        "child=$!",
        "trap 'kill -USR1 $child 2>/dev/null' USR1",
        "trap 'kill -TERM $child 2>/dev/null' TERM",
        "wait $child; rc=$?",
        "# a trapped signal ends `wait` early: wait again for the trainer's own exit status",
        "while kill -0 $child 2>/dev/null; do wait $child; rc=$?; done",
        f'if [ $rc -eq {checkpoint.PREEMPTED_EXIT} ] && [ -n "${{SLURM_JOB_ID:-}}" ]; then',
        '  echo "llmh-train: checkpointed before the limit; requeueing job $SLURM_JOB_ID"',
        "  scontrol requeue $SLURM_JOB_ID",
        "fi",
        "exit $rc",
        "",
    ]
    return "\n".join(lines)


def write_job(cfg: RunConfig, kind: str, config_path: str) -> Path:
    if not config_path:
        raise UserError("a Slurm job needs the run's TOML file (the job reads it on the node)")
    out = Path(cfg.train.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(out / SCRIPT, job_script(cfg, kind, config_path), mode=0o755)


FINISHED = (
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "BOOT_FAIL",
    "DEADLINE",
    "PREEMPTED",
)


def job_state(job: str) -> str:
    """The job's state; ``""`` once it has ended for good (a requeued job passes through
    COMPLETING and PENDING, and squeue may briefly not answer: neither is an end)."""
    q = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True)
    if q.returncode == 0 and q.stdout.strip():
        return q.stdout.strip()
    s = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True)
    if s.returncode != 0:
        return "" if "Invalid job id" in s.stderr else "UNKNOWN"
    for part in s.stdout.split():
        if part.startswith("JobState="):
            state = part.split("=", 1)[1]
            return "" if state in FINISHED else state
    return "UNKNOWN"


def submit_and_follow(
    cfg: RunConfig, script: Path, poll_s: float = 1.0, timeout_s: float = 7 * 86400
) -> tuple[str, Outcome]:
    """Submit, stream the job's metrics while it runs, and return (job id, its outcome)."""
    out = Path(cfg.train.output_dir)
    (out / RESULT).unlink(missing_ok=True)
    try:
        r = subprocess.run(
            ["sbatch", "--parsable", str(script)], capture_output=True, text=True, check=True
        )
    except FileNotFoundError:
        raise UserError("sbatch not found: is Slurm installed on this machine?") from None
    except subprocess.CalledProcessError as exc:
        raise UserError(f"sbatch failed: {exc.stderr.strip()}") from None
    job = r.stdout.strip().split(";")[0]
    context.log(f"train: submitted Slurm job {job} ({script})")
    offset, t0, last_state, gone = 0, time.monotonic(), "", 0
    while time.monotonic() - t0 < timeout_s:
        offset = follow(out / METRICS, offset)
        state = job_state(job)
        if state != last_state and state:
            context.log(f"train: Slurm job {job} {state.lower()}")
            last_state = state
        gone = 0 if state else gone + 1
        if gone >= 3:  # seen ended three polls in a row: not a requeue in passing
            break
        if context.cancelled():
            subprocess.run(["scancel", job], capture_output=True)
            raise Cancelled(f"Slurm job {job} cancelled")
        time.sleep(poll_s)
    else:
        raise StepFailed(f"Slurm job {job} did not finish within {timeout_s:.0f} s")
    follow(out / METRICS, offset)
    if not (out / RESULT).is_file():
        log = out / f"slurm-{job}.log"
        tail = log.read_text(errors="replace")[-3000:] if log.is_file() else "(no log)"
        info = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True)
        raise StepFailed(
            f"Slurm job {job} ended without a result; log {log}:\n{tail}\n"
            f"scontrol show job {job}:\n{info.stdout.strip() or info.stderr.strip()}"
        )
    data = json.loads((out / RESULT).read_text())
    return job, Outcome(**data)


def main(argv: list[str]) -> int:
    """``python -m engine.train.slurm run sft|dpo CONFIG``: the job's entry point."""
    if len(argv) != 3 or argv[0] != "run" or argv[1] not in ("sft", "dpo"):
        print("usage: python -m engine.train.slurm run sft|dpo CONFIG.toml", file=sys.stderr)
        return 2
    from engine.errors import LlmhError
    from engine.train import config

    cfg = config.load(argv[2])
    checkpoint.catch_early_signals()
    try:
        if argv[1] == "sft":
            from engine.train import sft

            res = sft.run(cfg, resume="auto")
        else:
            from engine.train import dpo

            res = dpo.run(cfg, resume="auto")
    except checkpoint.Preempted as exc:
        print(f"llmh-train: {exc}", file=sys.stderr, flush=True)
        return checkpoint.PREEMPTED_EXIT
    except LlmhError as exc:
        print(f"llmh-train: error: {exc}", file=sys.stderr, flush=True)
        return 1
    print(f"llmh-train: done, {res.steps} steps, adapter {res.adapter}", flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main(sys.argv[1:]))
