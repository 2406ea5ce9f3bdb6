"""Loading a model for fine-tuning (QLoRA on CUDA, LoRA otherwise) and turning records into
tensors with the model's own chat template, the loss only on the target's tokens.

Why the prompt and the target are tokenised apart: a BPE merge across the boundary would move
the label mask by a token; concatenating the two id lists keeps the mask exact.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import NotAvailable, UserError
from engine.train.config import RunConfig

IGNORE = -100
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def need(module: str) -> Any:
    """Import ``module`` or say which extra installs it."""
    if importlib.util.find_spec(module) is None:
        raise NotAvailable(f"{module} is not installed: pip install 'llm-heuristics[train]'")
    return __import__(module)


@dataclass
class Loaded:
    """A model ready to train and what it needs to read records."""

    model: Any
    processor: Any  # a tokenizer (text) or a processor with a tokenizer and image processor
    tokenizer: Any
    vision: bool
    device: str
    quantized: bool
    dtype: str


def is_vision(path: str) -> bool:
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        raise UserError(f"[model].path: {path} is not a save_pretrained folder (no config.json)")
    data = json.loads(cfg.read_text())
    return "vision_config" in data


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _dtype(cfg: RunConfig, device: str) -> str:
    if cfg.model.dtype != "auto":
        return cfg.model.dtype
    if device == "cuda":
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"  # bf16 matmuls on CPU are slow and lose the small LoRA updates


def _targets(cfg: RunConfig, model: Any, vision: bool) -> Any:
    t = cfg.lora.target_modules
    if isinstance(t, list):
        return t
    if t == "all-linear":
        return "all-linear"
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    present = [m for m in TEXT_TARGETS if m in names]
    if not present:
        return "all-linear"
    if vision:  # adapt the language model only; the vision tower stays as pretrained
        return rf".*language_model.*\.({'|'.join(present)})"
    return present


def load(cfg: RunConfig, *, lora: bool = True) -> Loaded:
    """The model of ``cfg`` with LoRA adapters (and 4-bit base weights on CUDA)."""
    torch = need("torch")
    need("transformers")
    peft = need("peft") if lora else None
    import transformers as tf

    path = cfg.model.path
    if not path:
        raise UserError(f"{cfg.source or 'config'}: [model].path is required")
    vision = is_vision(path) if cfg.model.kind == "auto" else cfg.model.kind == "vision"
    device = _device()
    dtype = _dtype(cfg, device)
    torch_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dtype]
    quant = cfg.model.quantization
    if quant == "4bit" and device != "cuda":
        raise NotAvailable("[model].quantization = '4bit' needs CUDA (bitsandbytes); use 'auto'")
    quantized = (
        device == "cuda"
        and quant in ("auto", "4bit")
        and importlib.util.find_spec("bitsandbytes") is not None
    )
    kwargs: dict[str, Any] = {
        "dtype": torch_dtype,
        "trust_remote_code": cfg.model.trust_remote_code,
    }
    if quantized:
        kwargs["quantization_config"] = tf.BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch_dtype,
        )
        kwargs["device_map"] = {"": 0}
    try:
        if vision:
            processor = tf.AutoProcessor.from_pretrained(path)
            tokenizer = processor.tokenizer
            model = tf.AutoModelForImageTextToText.from_pretrained(path, **kwargs)
        else:
            processor = tokenizer = tf.AutoTokenizer.from_pretrained(path)
            model = tf.AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except OSError as exc:
        raise UserError(f"[model].path: cannot load {path}: {exc}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not quantized:
        model.to(device)
    if lora and peft is not None:
        if quantized:
            model = peft.prepare_model_for_kbit_training(
                model, use_gradient_checkpointing=cfg.model.gradient_checkpointing
            )
        elif cfg.model.gradient_checkpointing:
            if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5 name
                model.activation_checkpointing_enable(
                    activation_checkpointing_kwargs={"use_reentrant": False}
                )
            else:
                model.gradient_checkpointing_enable(
                    gradient_checkpointing_kwargs={"use_reentrant": False}
                )
            model.enable_input_require_grads()
        model = peft.get_peft_model(model, lora_config(cfg, model, vision))
    return Loaded(model, processor, tokenizer, vision, device, quantized, dtype)


def lora_config(cfg: RunConfig, model: Any, vision: bool) -> Any:
    import peft

    return peft.LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=_targets(cfg, model, vision),
        task_type="CAUSAL_LM",
        bias="none",
    )


# ------------------------------------------------------------------ records -> tensors
def _messages(rec: dict[str, Any], vision: bool, system: str) -> list[dict[str, Any]]:
    msgs: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    if vision and rec.get("image"):
        content: Any = [{"type": "image"}, {"type": "text", "text": rec["prompt"]}]
    else:
        content = rec["prompt"]
    return [*msgs, {"role": "user", "content": content}]


def _template_owner(ld: Loaded) -> Any:
    owner = ld.processor if getattr(ld.processor, "chat_template", None) else ld.tokenizer
    if not getattr(owner, "chat_template", None):
        raise UserError("the model's processor/tokenizer has no chat template")
    return owner


def prompt_text(ld: Loaded, rec: dict[str, Any], system: str = "") -> str:
    return _template_owner(ld).apply_chat_template(
        _messages(rec, ld.vision, system), add_generation_prompt=True, tokenize=False
    )


def completion_text(ld: Loaded, rec: dict[str, Any], target: str, system: str = "") -> str:
    """What follows the prompt: the target and the template's end of turn."""
    owner = _template_owner(ld)
    msgs = _messages(rec, ld.vision, system)
    prompt = owner.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    full = owner.apply_chat_template(
        [*msgs, {"role": "assistant", "content": target}], tokenize=False
    )
    if full.startswith(prompt):
        return full[len(prompt) :]
    return target + (ld.tokenizer.eos_token or "")


def load_image(path: str) -> Any:
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGB")


def encode_prompt(ld: Loaded, rec: dict[str, Any], system: str = "") -> dict[str, Any]:
    """Prompt ids (plus pixel values for an image record), without a batch dimension."""
    text = prompt_text(ld, rec, system)
    if ld.vision and rec.get("image"):
        enc = ld.processor(text=text, images=load_image(rec["image"]), return_tensors="pt")
        out = {k: v[0] for k, v in enc.items() if k not in ("attention_mask",)}
        out["input_ids"] = enc["input_ids"][0].tolist()
        return out
    ids = ld.tokenizer(text, add_special_tokens=False)["input_ids"]
    return {"input_ids": list(ids)}


def encode(ld: Loaded, rec: dict[str, Any], max_length: int, system: str = "") -> dict[str, Any]:
    """``input_ids`` and ``labels`` (IGNORE over the prompt) of one SFT record."""
    enc = encode_prompt(ld, rec, system)
    prompt_ids = enc.pop("input_ids")
    rest = completion_text(ld, rec, rec["target"], system)
    target_ids = ld.tokenizer(rest, add_special_tokens=False)["input_ids"]
    if len(prompt_ids) >= max_length:
        raise UserError(
            f"record {rec.get('id', '?')}: the prompt alone is {len(prompt_ids)} tokens, "
            f"over [data].max_length = {max_length}"
        )
    target_ids = target_ids[: max_length - len(prompt_ids)]
    return {
        **enc,
        "input_ids": prompt_ids + target_ids,
        "labels": [IGNORE] * len(prompt_ids) + target_ids,
    }


def collate(items: list[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """Right-padded batch; extra tensors (pixel values) are stacked."""
    import torch

    n = max(len(x["input_ids"]) for x in items)
    ids = torch.full((len(items), n), pad_id, dtype=torch.long)
    labels = torch.full((len(items), n), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(items), n), dtype=torch.long)
    for i, x in enumerate(items):
        k = len(x["input_ids"])
        ids[i, :k] = torch.tensor(x["input_ids"])
        labels[i, :k] = torch.tensor(x["labels"])
        mask[i, :k] = 1
    batch: dict[str, Any] = {"input_ids": ids, "labels": labels, "attention_mask": mask}
    extra = {k for x in items for k in x} - {"input_ids", "labels"}
    for k in sorted(extra):
        vals = [x[k] for x in items if k in x]
        if len(vals) != len(items):
            raise UserError("a batch mixes records with and without an image; use batch_size = 1")
        batch[k] = torch.stack(vals)
    return batch


def to_device(batch: dict[str, Any], ld: Loaded) -> dict[str, Any]:
    import torch

    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            v = v.to(ld.device)
            if v.is_floating_point() and ld.dtype != "fp32":
                v = v.to({"bf16": torch.bfloat16, "fp16": torch.float16}[ld.dtype])
        out[k] = v
    return out


def generate(ld: Loaded, rec: dict[str, Any], max_new_tokens: int = 128, system: str = "") -> str:
    """Greedy answer to one record's prompt (evaluation)."""
    import torch

    enc = encode_prompt(ld, rec, system)
    ids = torch.tensor([enc.pop("input_ids")], device=ld.device)
    extra = {k: v.unsqueeze(0) for k, v in enc.items()}
    batch = to_device({"input_ids": ids, "attention_mask": torch.ones_like(ids), **extra}, ld)
    with torch.no_grad():
        out = ld.model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=ld.tokenizer.pad_token_id,
        )
    return ld.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()
