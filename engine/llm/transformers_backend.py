"""Hugging Face transformers backend: local checkpoints only, 4-bit NF4 by default.

Vision-language checkpoints (a ``vision_config`` in config.json: LLaVA, Llama 3.2 Vision,
Qwen2-VL, ...) load through ``AutoProcessor`` + ``AutoModelForImageTextToText``; the chat
template then comes from the processor and a message's images (paths, bytes, PIL images; DICOM
rendered by :mod:`engine.vision.render`) go in as the processor's pixel values.  NF4 keeps the
vision tower and the projector in full precision.

NF4 (bitsandbytes) is used on CUDA and, with recent bitsandbytes, on CPU too; with
``quantization=False`` the model loads in bf16/fp16 (CUDA) or fp32 (CPU).  ``device_map="auto"``
spreads large models over the GPUs and CPU (accelerate).  Text streams through
``TextIteratorStreamer``; JSON answers are constrained by an xgrammar logits processor.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import threading
from collections.abc import Iterator
from typing import Any

from engine.llm.base import (
    Backend,
    BackendError,
    GenerationOptions,
    Message,
    ProgressCallback,
    _require,
    image_pil,
)

log = logging.getLogger(__name__)


class TransformersBackend(Backend):
    name = "transformers"

    def __init__(
        self,
        model: str,
        *,
        quantization: bool = True,
        device_map: str | dict[str, Any] | None = "auto",
        trust_remote_code: bool = False,
        load_timeout: float = 600.0,
    ) -> None:
        super().__init__(model)
        self.quantization = quantization
        self.device_map = device_map
        self.trust_remote_code = trust_remote_code
        self.load_timeout = load_timeout
        self.quantized = False
        self._model: Any = None
        self._tok: Any = None
        self._processor: Any = None
        self.vision = False
        self.last_input: dict[str, int] = {}  # what the last prompt held (tests, diagnostics)
        self._grammar_compiler: Any = None
        self._grammars: dict[str, Any] = {}

    # --- load ---------------------------------------------------------------------------
    def _load(self, progress: ProgressCallback) -> None:
        torch = _require("torch", "hf")
        transformers = _require("transformers", "hf")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # run time never downloads
        common = {"local_files_only": True, "trust_remote_code": self.trust_remote_code}
        try:
            config = transformers.AutoConfig.from_pretrained(self.model, **common)
        except (OSError, ValueError) as exc:
            raise BackendError(
                f"cannot read the config of {self.model!r} from local files ({exc}); "
                "download it first with setup_models.sh"
            ) from exc
        self.vision = is_vision_config(config)
        try:
            if self.vision:
                self._processor = transformers.AutoProcessor.from_pretrained(self.model, **common)
                self._tok = getattr(self._processor, "tokenizer", None) or self._processor
            else:
                self._tok = transformers.AutoTokenizer.from_pretrained(self.model, **common)
        except (OSError, ValueError) as exc:
            what = "processor" if self.vision else "tokenizer"
            raise BackendError(
                f"cannot load the {what} of {self.model!r} from local files ({exc}); "
                "download it first with setup_models.sh"
            ) from exc
        progress(0.2, "tokenizer loaded")
        cuda = torch.cuda.is_available()
        kwargs: dict[str, Any] = dict(common)
        if self.device_map is not None:
            kwargs["device_map"] = self.device_map
        if self.quantization:
            qc = self._nf4_config(torch, transformers, cuda, vision=self.vision)
            if qc is not None:
                kwargs["quantization_config"] = qc
                self.quantized = True
        if not self.quantized:
            if cuda:
                kwargs["dtype"] = (
                    torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
                )
            else:
                kwargs["dtype"] = torch.float32
        auto = (
            transformers.AutoModelForImageTextToText
            if self.vision
            else transformers.AutoModelForCausalLM
        )
        try:
            self._model = auto.from_pretrained(self.model, **kwargs)
        except (OSError, ValueError) as exc:
            raise BackendError(f"cannot load {self.model!r} from local files: {exc}") from exc
        self._model.eval()
        kind = " (vision)" if self.vision else ""
        progress(0.9, "weights loaded" + (" (4-bit NF4)" if self.quantized else "") + kind)

    def _nf4_config(
        self, torch: Any, transformers: Any, cuda: bool, *, vision: bool = False
    ) -> Any:
        try:
            import bitsandbytes  # noqa: F401
        except Exception as exc:  # noqa: BLE001
            log.warning("bitsandbytes not usable (%s): loading without 4-bit quantization", exc)
            return None
        compute = (
            (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
            if cuda
            else torch.float32
        )
        if not cuda:
            log.info("no CUDA device: 4-bit NF4 on CPU through bitsandbytes (slow but small)")
        extra: dict[str, Any] = {}
        if vision:  # the image encoder and projector stay in full precision
            extra["llm_int8_skip_modules"] = list(VISION_MODULES)
        return transformers.BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute,
            **extra,
        )

    def _unload(self) -> None:
        self._model = None
        self._tok = None
        self._processor = None
        self._grammars.clear()
        self._grammar_compiler = None
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass

    # --- generation ---------------------------------------------------------------------
    def _logits_processor(self, schema: dict[str, Any]) -> Any:
        xgr = _require("xgrammar", "hf")
        from xgrammar.contrib.hf import LogitsProcessor

        if self._grammar_compiler is None:
            info = xgr.TokenizerInfo.from_huggingface(
                self._tok, vocab_size=_vocab_size(self._model.config)
            )
            self._grammar_compiler = xgr.GrammarCompiler(info)
        key = json.dumps(schema, sort_keys=True)
        if key not in self._grammars:
            self._grammars[key] = self._grammar_compiler.compile_json_schema(
                json.dumps(schema), any_whitespace=False
            )
        return LogitsProcessor(self._grammars[key])

    def _stream(
        self, messages: list[Message], options: GenerationOptions, cancel: threading.Event
    ) -> Iterator[str]:
        import torch
        import transformers

        if self.vision:
            inputs = self._vision_inputs(messages)
        else:
            if any(m.images for m in messages):
                log.warning("%s cannot see images: they are left out", self.model)
            enc = self._tok.apply_chat_template(
                [m.to_dict() for m in messages],
                add_generation_prompt=True,
                return_tensors="pt",
                return_dict=True,
            )
            device = getattr(self._model, "device", None)
            inputs = {k: v.to(device) for k, v in enc.items()} if device is not None else dict(enc)
            self.last_input = {"images": 0, "tokens": int(inputs["input_ids"].shape[-1])}
        stop = threading.Event()

        class _Stop(transformers.StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kw: Any) -> Any:
                done = cancel.is_set() or stop.is_set()
                return torch.full((input_ids.shape[0],), done, dtype=torch.bool)

        streamer = transformers.TextIteratorStreamer(
            self._tok, skip_prompt=True, skip_special_tokens=True, timeout=self.load_timeout
        )
        processors = []
        if options.json_schema is not None:
            processors.append(self._logits_processor(options.json_schema))
        torch.manual_seed(options.seed)
        gen_kwargs: dict[str, Any] = dict(
            **inputs,
            streamer=streamer,
            max_new_tokens=options.max_tokens,
            stopping_criteria=transformers.StoppingCriteriaList([_Stop()]),
            logits_processor=transformers.LogitsProcessorList(processors),
            pad_token_id=self._tok.pad_token_id
            if self._tok.pad_token_id is not None
            else self._tok.eos_token_id,
        )
        if options.temperature > 0:
            gen_kwargs.update(do_sample=True, temperature=options.temperature)
        else:
            gen_kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        errors: list[BaseException] = []

        def work() -> None:
            try:
                with torch.inference_mode():
                    self._model.generate(**gen_kwargs)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
                errors.append(exc)
                streamer.end()

        thread = threading.Thread(target=work, name="llmh-generate", daemon=True)
        thread.start()
        try:
            for text in streamer:
                if cancel.is_set():
                    break
                yield _strip_stops(text, options.stop)
        finally:
            stop.set()
            thread.join(timeout=self.load_timeout)
        if errors:
            raise BackendError(f"generation failed: {errors[0]}") from errors[0]

    def _vision_inputs(self, messages: list[Message]) -> dict[str, Any]:
        """The processor's tensors for a chat with images: text parts after image parts."""
        images: list[Any] = []
        conversation: list[dict[str, Any]] = []
        for m in messages:
            parts: list[dict[str, Any]] = []
            for img in m.images:
                images.append(image_pil(img))
                parts.append({"type": "image"})
            parts.append({"type": "text", "text": m.content})
            conversation.append({"role": m.role, "content": parts})
        proc = self._processor
        text = proc.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
        enc = proc(text=text, images=images or None, return_tensors="pt")
        device = getattr(self._model, "device", None)
        dtype = getattr(self._model, "dtype", None)
        inputs: dict[str, Any] = {}
        for k, v in enc.items():
            if hasattr(v, "to") and device is not None:
                v = v.to(device)
                if dtype is not None and k.startswith("pixel_values") and v.is_floating_point():
                    v = v.to(dtype)
            inputs[k] = v
        ids = inputs["input_ids"]
        image_token = _image_token_id(proc, self._model.config)
        self.last_input = {
            "images": len(images),
            "tokens": int(ids.shape[-1]),
            "image_tokens": int((ids == image_token).sum()) if image_token is not None else 0,
        }
        return inputs


#: Module names NF4 leaves alone in vision-language models (and the output head).
VISION_MODULES = ("vision_tower", "vision_model", "visual", "multi_modal_projector", "lm_head")


def is_vision_config(config: Any) -> bool:
    """Whether a transformers config (or config.json dict) is an image+text model."""
    get = config.get if isinstance(config, dict) else lambda k, d=None: getattr(config, k, d)
    if get("vision_config") is not None:
        return True
    archs = get("architectures") or []
    return any(a in VISION_ARCHITECTURES for a in archs)


#: Architectures of image+text models (most also have a ``vision_config``).
VISION_ARCHITECTURES = frozenset(
    {
        "LlavaForConditionalGeneration",
        "LlavaNextForConditionalGeneration",
        "LlavaOnevisionForConditionalGeneration",
        "MllamaForConditionalGeneration",
        "Qwen2VLForConditionalGeneration",
        "Qwen2_5_VLForConditionalGeneration",
        "Qwen3VLForConditionalGeneration",
        "Gemma3ForConditionalGeneration",
        "PaliGemmaForConditionalGeneration",
        "Idefics3ForConditionalGeneration",
        "SmolVLMForConditionalGeneration",
        "MiniCPMV",
        "Phi3VForCausalLM",
    }
)


def _vocab_size(config: Any) -> int:
    size = getattr(config, "vocab_size", None)
    if not size and hasattr(config, "get_text_config"):
        size = getattr(config.get_text_config(), "vocab_size", None)
    return int(size)


def _image_token_id(processor: Any, config: Any) -> int | None:
    for owner, attr in (
        (processor, "image_token_id"),
        (config, "image_token_id"),
        (config, "image_token_index"),
    ):
        value = getattr(owner, attr, None)
        if isinstance(value, int):
            return value
    return None


def _strip_stops(text: str, stops: list[str]) -> str:
    for s in stops:
        text = text.split(s, 1)[0]
    return text
