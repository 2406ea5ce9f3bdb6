"""A training run's metrics as the training screen sees them, from either source: the engine's
``progress`` notifications of a run it started, or the run's ``metrics.jsonl`` it follows.

Both carry the same records (``type`` train|eval, ``step``, ``max_steps``, ``loss``, ``lr``,
``eval_loss``, ``elapsed_s``, ``stage``...). Nothing here imports Textual: the state and the file
tail are tested as plain objects. A follower must survive what a real file does: lines half
written, a resumed run rewriting the file shorter (the engine drops lines past its checkpoint),
bytes that are not UTF-8, lines that are not JSON objects.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tui.components.training_plot import Series, finite

METRICS = "metrics.jsonl"
_RPC_FIELDS = ("fraction", "message", "request", "seq", "train")


def from_progress(params: dict[str, Any]) -> dict[str, Any] | None:
    """A metrics record from a ``progress`` notification (``None``: not a training one)."""
    kind = params.get("train")
    if kind not in ("train", "eval"):
        return None
    rec = {k: v for k, v in params.items() if k not in _RPC_FIELDS}
    rec["type"] = kind
    return rec


def parse_line(line: str) -> dict[str, Any] | None:
    """One metrics line, or ``None`` for anything that is not a record with an integer step."""
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    if not isinstance(rec, dict) or rec.get("type") not in ("train", "eval"):
        return None
    step = rec.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        return None
    return rec


def metrics_path(path: str | Path) -> Path:
    """A run folder means its ``metrics.jsonl``; a file is taken as it is."""
    p = Path(path).expanduser()
    return p / METRICS if p.is_dir() else p


class MetricsTail:
    """Reads the lines appended to a metrics file since the last read.

    A rewrite (a resumed run truncates the file, or another run replaced it) is noticed by the
    bytes before the offset changing; :meth:`read` then says ``reset`` and starts over."""

    KEEP = 64  # bytes before the offset remembered to notice a rewrite

    def __init__(self, path: str | Path) -> None:
        self.path = metrics_path(path)
        self.offset = 0
        self.before = b""  # the KEEP bytes before ``offset`` as last read
        self.bad_lines = 0

    def read(self) -> tuple[bool, list[dict[str, Any]]]:
        """``(reset, records)``: ``reset`` when earlier records must be forgotten first."""
        try:
            with self.path.open("rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                reset = size < self.offset
                if not reset and self.before:
                    fh.seek(self.offset - len(self.before))
                    reset = fh.read(len(self.before)) != self.before
                if reset:
                    self.offset, self.before, self.bad_lines = 0, b"", 0
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            reset = self.offset > 0
            self.offset, self.before = 0, b""
            return reset, []
        end = data.rfind(b"\n") + 1  # a half-written last line waits for its newline
        if end == 0:
            return reset, []
        whole = data[:end]
        self.before = (self.before + whole)[-self.KEEP :]
        self.offset += end
        records = []
        for line in whole.decode("utf-8", "replace").splitlines():
            rec = parse_line(line) if line.strip() else None
            if rec is None and line.strip():
                self.bad_lines += 1
            elif rec is not None:
                records.append(rec)
        return reset, records


def _num(v: Any) -> float:
    return float(v) if finite(v) else float("nan")


@dataclass
class RunMetrics:
    """The records of one run, and what the status line and the plot need from them."""

    train: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    kind: str = ""
    max_steps: int = 0
    resumed_from: int = 0
    finished: bool = False  # the final evaluation arrived

    def reset(self) -> None:
        self.train.clear()
        self.evals.clear()
        self.kind, self.max_steps, self.resumed_from, self.finished = "", 0, 0, False

    def add(self, rec: dict[str, Any]) -> bool:
        """Take one record (``False``: not usable). A step at or before the last one means the
        run was resumed from an earlier checkpoint: the later records are dropped, as the
        engine drops them from the file."""
        step = rec.get("step")
        if not isinstance(step, int) or isinstance(step, bool):
            return False
        if isinstance(rec.get("kind"), str):
            self.kind = rec["kind"]
        if isinstance(rec.get("max_steps"), int) and rec["max_steps"] > 0:
            self.max_steps = rec["max_steps"]
        if rec.get("type") == "eval":
            self.evals = [e for e in self.evals if e["step"] <= step] + [rec]
            self.finished = self.finished or bool(rec.get("final"))
            return True
        if self.train and step <= self.train[-1]["step"]:
            self.train = [r for r in self.train if r["step"] < step]
            self.evals = [e for e in self.evals if e["step"] < step]
            self.finished = False
        if not self.train and step > 1:
            self.resumed_from = step - 1
        self.train.append(rec)
        return True

    def extend(self, recs: Iterable[dict[str, Any]]) -> int:
        return sum(self.add(r) for r in recs)

    @property
    def step(self) -> int:
        return self.train[-1]["step"] if self.train else 0

    def last(self, key: str, evals: bool = False) -> float:
        for r in reversed(self.evals if evals else self.train):
            if finite(r.get(key)):
                return float(r[key])
        return float("nan")

    def series(self) -> list[Series]:
        out = [Series("train loss", [(r["step"], _num(r.get("loss"))) for r in self.train])]
        ev = [(e["step"], _num(e.get("eval_loss"))) for e in self.evals if "eval_loss" in e]
        if ev:
            out.append(Series("eval loss", ev, style="yellow", marker=True))
        return out

    def lr(self) -> list[float]:
        return [_num(r.get("lr")) for r in self.train]

    def eta_seconds(self, window: int = 20) -> float | None:
        """Seconds left at the pace of the last ``window`` steps (``elapsed_s`` restarts on a
        resume, so only a stretch where it grows is used)."""
        recs = [r for r in self.train[-window:] if finite(r.get("elapsed_s"))]
        while len(recs) >= 2 and recs[-1]["elapsed_s"] <= recs[0]["elapsed_s"]:
            recs = recs[1:]
        if len(recs) < 2 or not self.max_steps:
            return None
        a, b = recs[0], recs[-1]
        per = (b["elapsed_s"] - a["elapsed_s"]) / max(b["step"] - a["step"], 1)
        return max(self.max_steps - b["step"], 0) * per


def fmt_duration(s: float | None) -> str:
    if s is None or not finite(s):
        return "-"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}" if h else f"{rem // 60}:{rem % 60:02d}"


def fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return "" if v is None else str(v)
    if isinstance(v, float):
        return f"{v:.4g}" if finite(v) else str(v)
    return str(v)


def eval_text(rec: dict[str, Any]) -> str:
    """An evaluation's scores in one cell (``eval_loss`` first)."""
    skip = {"type", "kind", "step", "max_steps", "stage", "epoch", "final", "elapsed_s"}
    keys = sorted((k for k in rec if k not in skip), key=lambda k: (k != "eval_loss", k))
    return " ".join(f"{k.removeprefix('eval_')}={fmt(rec[k])}" for k in keys)


def latest_checkpoint(output_dir: str | Path | None) -> str:
    """The newest complete checkpoint's folder name, when the run folder is on this machine."""
    if not output_dir:
        return ""
    root = Path(output_dir) / "checkpoints"
    try:
        done = sorted(p.name for p in root.glob("step-*") if (p / "state.json").is_file())
    except OSError:
        return ""
    return done[-1] if done else ""
