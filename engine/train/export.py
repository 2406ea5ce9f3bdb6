"""Merging an adapter into its base model, and GGUF export for llama.cpp.

GGUF conversion is llama.cpp's own ``convert_hf_to_gguf.py`` (it knows each architecture's
tensor layout; re-implementing it would drift). It is found through ``LLAMA_CPP_CONVERT`` (the
script), ``LLAMA_CPP_DIR`` (a llama.cpp checkout) or ``PATH``; without it, or for a
vision-language model, the export is :class:`NotAvailable` with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from engine.errors import NotAvailable, StepFailed, UserError
from engine.train.config import RunConfig

CONVERTER = "convert_hf_to_gguf.py"
OUTTYPES = ("f32", "f16", "bf16", "q8_0", "auto")


def merge(cfg: RunConfig, adapter: str | Path, out: str | Path) -> Path:
    """Fold the adapter into a full-precision copy of the base model (a 4-bit base cannot hold
    the merged weights exactly, so the base is reloaded unquantised)."""
    import torch
    import transformers as tf
    from peft import PeftModel

    from engine.train.modeling import is_vision

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.model.dtype, torch.float32)
    vision = is_vision(cfg.model.path) if cfg.model.kind == "auto" else cfg.model.kind == "vision"
    auto = tf.AutoModelForImageTextToText if vision else tf.AutoModelForCausalLM
    base = auto.from_pretrained(cfg.model.path, dtype=dtype)
    merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    out = Path(out)
    merged.save_pretrained(out)
    proc = (tf.AutoProcessor if vision else tf.AutoTokenizer).from_pretrained(str(adapter))
    proc.save_pretrained(out)
    return out


def find_converter(explicit: str = "") -> Path | None:
    cands: list[str | None] = [
        explicit or None,
        os.environ.get("LLAMA_CPP_CONVERT"),
        str(Path(os.environ["LLAMA_CPP_DIR"]) / CONVERTER)
        if os.environ.get("LLAMA_CPP_DIR")
        else None,
        shutil.which(CONVERTER),
        shutil.which("convert-hf-to-gguf"),
    ]
    for c in cands:
        if c and Path(c).is_file():
            return Path(c)
    return None


def _architecture(model_dir: Path) -> tuple[str, bool]:
    cfg = model_dir / "config.json"
    if not cfg.is_file():
        raise UserError(f"{model_dir}: not a saved model (no config.json); export a merged model")
    data: dict[str, Any] = json.loads(cfg.read_text())
    arch = (data.get("architectures") or ["?"])[0]
    return arch, "vision_config" in data


def gguf(
    model_dir: str | Path, out_file: str | Path, outtype: str = "f16", converter: str = ""
) -> Path:
    """Convert a merged (full) model folder to GGUF with llama.cpp's converter."""
    src = Path(model_dir)
    if (src / "adapter_config.json").is_file():
        raise UserError(
            f"{src} is an adapter; GGUF needs the merged model: set [train].merge = true "
            "(OUT/merged) or run `train export --merge`"
        )
    if outtype not in OUTTYPES:
        raise UserError(f"--outtype {outtype}: one of {', '.join(OUTTYPES)}")
    arch, vision = _architecture(src)
    if vision:
        raise NotAvailable(
            f"GGUF export covers text models; {arch} is a vision-language model (llama.cpp "
            "needs its language model and an mmproj file converted separately)"
        )
    conv = find_converter(converter)
    if conv is None:
        raise NotAvailable(
            f"llama.cpp's {CONVERTER} was not found: set LLAMA_CPP_CONVERT to the script or "
            "LLAMA_CPP_DIR to a llama.cpp checkout (it needs the `gguf` Python package)"
        )
    if arch not in conv.read_text(encoding="utf-8", errors="replace"):
        raise NotAvailable(f"{conv} does not know the architecture {arch}")
    out = Path(out_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(conv), str(src), "--outfile", str(out), "--outtype", outtype]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0 or not out.is_file():
        raise StepFailed(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return out
