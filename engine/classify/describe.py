"""Prompts, prompt families and a concurrency-limited describer over any vision backend.

Each image gets ``n_prompts`` different descriptions. Prompts come in families: ``object``
(the image shows anatomy or a thing: shape, contrast, tissue) and ``background`` (a plain or
noisy field: texture, uniformity, artefacts). In training an image gets the family of its
class (``[families]`` in the TOML config maps classes to families, default ``object``); at
prediction the class is unknown, so a gate chooses: ``pixels`` (default: the rendered image's
share of bright structure) or ``vlm`` (the model is asked). Sampling (temperature, a seed per
prompt) is recorded in the bundle. At most ``concurrency`` requests are in flight (default 4),
so a shared model server is not flooded; every answer is cached as it arrives.
"""

from __future__ import annotations

import hashlib
import json
import threading
import tomllib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

from engine import context
from engine.classify.cache import DescriptionCache, description_key
from engine.classify.features import ImageItem
from engine.errors import UserError

__all__ = ["FAMILIES", "DescribeConfig", "Describer", "default_prompts", "pixel_family"]

FAMILIES: tuple[str, ...] = ("object", "background")

_OBJECT_OPENERS = (
    "Describe this image",
    "Describe what this medical image shows",
    "In two sentences, describe this scan",
    "As a radiologist, describe this image",
    "Briefly describe the visible structures in this image",
    "Write a short caption for this image",
    "Describe the appearance of this image",
    "Summarise what you see in this image",
    "Describe this picture for a colleague",
    "Give a concise description of this image",
)
_OBJECT_FOCUS = (
    "focusing on the anatomy shown",
    "focusing on the contrast between tissues",
    "focusing on which tissues are bright and which are dark",
    "focusing on the shape and outline of the object",
    "focusing on the plane of the image and the orientation",
)
_BACKGROUND_OPENERS = (
    "Describe this image",
    "Describe the texture of this image",
    "In two sentences, describe this picture",
    "Describe the pattern visible in this image",
    "Write a short caption for this image",
    "Describe the overall appearance of this image",
    "Summarise what you see in this picture",
    "Describe this image for a colleague",
    "Give a concise description of this image",
    "Describe the intensity distribution in this image",
)
_BACKGROUND_FOCUS = (
    "focusing on noise and grain",
    "focusing on how uniform it is",
    "focusing on any faint structure or artefact",
    "focusing on brightness and darkness",
    "focusing on edges and borders",
)


def default_prompts(family: str, n: int = 50) -> list[str]:
    """``n`` distinct prompts of a family (openers x focus, cycled with a numbered variant)."""
    openers, focus = (
        (_OBJECT_OPENERS, _OBJECT_FOCUS)
        if family == "object"
        else (_BACKGROUND_OPENERS, _BACKGROUND_FOCUS)
    )
    base = [f"{o}, {f}." for f in focus for o in openers]
    out = list(base[:n])
    i = 0
    while len(out) < n:  # more than the combinations: numbered variants stay distinct
        out.append(f"{base[i % len(base)]} (variant {i // len(base) + 2})")
        i += 1
    return out


@dataclass
class DescribeConfig:
    """What decides the descriptions; saved in the bundle (its hash must match at prediction)."""

    n_prompts: int = 50
    prompts: dict[str, list[str]] = field(default_factory=dict)  # family -> prompts
    families: dict[str, str] = field(default_factory=dict)  # class -> family (default object)
    gate: str = "pixels"  # pixels | vlm: the family of an unlabelled image
    temperature: float = 0.7
    seed: int = 0
    max_tokens: int = 96
    concurrency: int = 4
    system: str = "You describe images in plain words. Do not guess a diagnosis."

    def __post_init__(self) -> None:
        if self.n_prompts < 1:
            raise UserError("n_prompts must be at least 1")
        for fam in FAMILIES:
            if not self.prompts.get(fam):
                self.prompts[fam] = default_prompts(fam, self.n_prompts)
            self.prompts[fam] = list(self.prompts[fam])[: self.n_prompts]
        bad = sorted(set(self.families.values()) - set(FAMILIES))
        if bad:
            raise UserError(f"unknown prompt family {bad}: use {', '.join(FAMILIES)}")
        if self.gate not in ("pixels", "vlm"):
            raise UserError(f"gate {self.gate!r}: pixels or vlm")

    @classmethod
    def from_toml(cls, path: str, **overrides: Any) -> DescribeConfig:
        """``[describe]`` n_prompts/temperature/seed/..., ``[families]`` class = family,
        ``[prompts]`` object = [...], background = [...]."""
        with open(path, "rb") as f:
            doc = tomllib.load(f)
        kw: dict[str, Any] = dict(doc.get("describe", {}))
        kw["families"] = dict(doc.get("families", {}))
        kw["prompts"] = {k: list(v) for k, v in doc.get("prompts", {}).items()}
        kw.update({k: v for k, v in overrides.items() if v is not None})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(kw) - known)
        if unknown:
            raise UserError(f"{path}: unknown settings {', '.join(unknown)}")
        return cls(**kw)

    def family_of(self, label: str) -> str:
        return self.families.get(label, "object")

    @property
    def prompts_hash(self) -> str:
        doc = {"prompts": self.prompts, "system": self.system, "gate": self.gate}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def pixel_family(source: Any) -> str:
    """``background`` when the rendered image has no structure larger than its grain: flat, or
    its 4x4 block means vary far less than its pixels (noise); else ``object``."""
    import numpy as np

    from engine.vision.render import render

    im = render(source).convert("L")
    im.thumbnail((256, 256))  # only ever smaller: upscaling would smooth the grain away
    arr = np.asarray(im, dtype=np.float32)
    h, w = (arr.shape[0] // 4) * 4, (arr.shape[1] // 4) * 4
    if h == 0 or w == 0 or float(arr.std()) < 4.0:
        return "background"
    blocks = arr[:h, :w].reshape(h // 4, 4, w // 4, 4).mean(axis=(1, 3))
    return "background" if float(blocks.std()) < 0.5 * float(arr[:h, :w].std()) else "object"


ProgressFn = Callable[[int, int, str], None]


class Describer:
    """Descriptions of images by a vision backend, ``concurrency`` requests at a time, cached."""

    def __init__(self, backend: Any, config: DescribeConfig, cache: DescriptionCache) -> None:
        self.backend = backend
        self.config = config
        self.cache = cache
        self._slots = threading.Semaphore(max(1, config.concurrency))
        self.max_in_flight = 0  # observed (tests check the limit)
        self._in_flight = 0
        self._count_lock = threading.Lock()
        self.generated = 0

    @property
    def identity(self) -> str:
        c = self.config
        ident = getattr(self.backend, "identity", "") or f"{self.backend.name}:{self.backend.model}"
        return f"{ident}|t={c.temperature}|seed={c.seed}|max={c.max_tokens}|sys={c.system}"

    def _ask(self, item: ImageItem, prompt: str, seed: int) -> str:
        from engine.llm.base import GenerationOptions, Message

        key = description_key(item.ident(), prompt, f"{self.identity}|s{seed}")
        hit = self.cache.get_description(key)
        if hit is not None:
            return hit
        c = self.config
        opts = GenerationOptions(max_tokens=c.max_tokens, temperature=c.temperature, seed=seed)
        msgs = [Message("system", c.system), Message("user", prompt, images=[item.source()])]
        with self._slots:
            with self._count_lock:
                self._in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self._in_flight)
            try:
                text = self.backend.chat(msgs, opts, context.cancel_event()).strip()
            finally:
                with self._count_lock:
                    self._in_flight -= 1
        text = text or "(no description)"
        self.cache.put_description(key, text)
        self.generated += 1
        return text

    def family(self, item: ImageItem, labelled: bool) -> str:
        if labelled and item.label:
            return self.config.family_of(item.label)
        if self.config.gate == "vlm":
            answer = self._ask(
                item,
                "Does this image show an object or body part, or only a plain or noisy "
                "background? Answer with one word: object or background.",
                self.config.seed,
            )
            return "background" if "background" in answer.lower() else "object"
        return pixel_family(item.source())

    def describe(
        self, items: list[ImageItem], labelled: bool = True, progress: ProgressFn | None = None
    ) -> list[list[str]]:
        """``n_prompts`` descriptions per item, in prompt order (cached ones cost nothing)."""
        families = [self.family(it, labelled) for it in items]
        jobs = [
            (i, j, prompt)
            for i, fam in enumerate(families)
            for j, prompt in enumerate(self.config.prompts[fam])
        ]
        out: list[list[str]] = [[""] * len(self.config.prompts[f]) for f in families]
        total = len(jobs)
        done = 0
        workers = max(1, self.config.concurrency)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="describe") as pool:
            futs = {
                pool.submit(self._ask, items[i], prompt, self.config.seed + j): (i, j)
                for i, j, prompt in jobs
            }
            for fut in as_completed(futs):
                i, j = futs[fut]
                out[i][j] = fut.result()
                done += 1
                if progress is not None:
                    progress(done, total, "describing")
                if context.cancelled():
                    for f in futs:
                        f.cancel()
                    raise UserError("cancelled while describing images")
        return out
