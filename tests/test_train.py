"""Fine-tuning on tiny random models (CPU): SFT overfits, curriculum stages run in order with
their ratio, a LLaVA model trains on image records, DPO widens the chosen-vs-rejected margin, a
run killed mid-way and resumed ends with the uninterrupted run's weights, the Slurm job runs on
the one-node Slurm, and the data builders refuse malformed records by name.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from engine import context
from engine.cli import main
from engine.errors import NotAvailable, UserError
from tests.slurm_fixture import slurm  # noqa: F401  (pytest fixture)

ROOT = Path(__file__).resolve().parents[1]
# LoRA on lm_head too: a tiny random model's frozen head caps its logits, so it could not
# overfit (loss stays near ln(vocab)) with adapters on the blocks alone.
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"]


def _needs_training_stack() -> None:
    for mod in ("torch", "transformers", "peft"):
        pytest.importorskip(mod)


# ----------------------------------------------------------------------------- helpers
def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(str(v))


def write_config(path: Path, cfg: dict[str, Any]) -> Path:
    """A TOML file from ``{table: {key: value}}`` and ``curriculum: [ {...} ]``."""
    lines: list[str] = []
    for table, body in cfg.items():
        if table == "curriculum":
            for st in body:
                lines.append("[[curriculum]]")
                lines += [f"{k} = {_toml_value(v)}" for k, v in st.items()]
            continue
        lines.append(f"[{table}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in body.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def run_config(model: Path, train: Path, out: Path, **train_opts: Any) -> dict[str, Any]:
    return {
        "model": {"path": str(model), "gradient_checkpointing": False},
        "lora": {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": TARGETS},
        "data": {"train": str(train), "eval": str(train), "max_length": 96},
        "train": {
            "output_dir": str(out),
            "batch_size": 4,
            "learning_rate": 1e-2,
            "save_every": 100,
            "log_every": 1,
            "eval_epochs": 0,
            **train_opts,
        },
    }


OVERFIT = [
    {
        "id": f"r{i}",
        "prompt": ["Normal chest.", "Effusion seen."][i % 2] + f" Case {i}.",
        "target": ["Normal.", "Effusion."][i % 2],
    }
    for i in range(4)
]


class Recorder:
    """A stand-in engine request context that keeps the notifications."""

    def __init__(self) -> None:
        import threading

        self.cancel_event = threading.Event()
        self.events: list[tuple[str, dict[str, Any]]] = []

    def notify(self, method: str, params: dict[str, Any]) -> bool:
        self.events.append((method, params))
        return True


def metrics_lines(out: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def adapter_weights(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


# ----------------------------------------------------------------------------- models
@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _needs_training_stack()
    from tests.fixtures_models import make_tiny_hf_model

    return make_tiny_hf_model(tmp_path_factory.mktemp("llama") / "m")


@pytest.fixture(scope="module")
def tiny_llava(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _needs_training_stack()
    from tests import fixtures_models

    if not hasattr(fixtures_models, "make_tiny_llava"):
        pytest.skip("no tiny LLaVA builder in fixtures_models")
    return fixtures_models.make_tiny_llava(tmp_path_factory.mktemp("llava") / "m")


# ----------------------------------------------------------------------------- config
def test_config_errors_name_the_key(tmp_path: Path) -> None:
    from engine.train import config

    def err(cfg: dict[str, Any]) -> str:
        with pytest.raises(UserError) as e:
            config.from_dict(cfg, tmp_path)
        return str(e.value)

    assert "[train]: unknown key(s) max_step" in err({"train": {"max_step": 3}})
    assert "[train].learning_rate: expected float" in err({"train": {"learning_rate": "1e-4"}})
    assert "[model].quantization: '8bit' is not one of" in err({"model": {"quantization": "8bit"}})
    assert "unknown table(s) lora2" in err({"lora2": {}})
    msg = err(
        {
            "train": {"max_steps": 3},
            "curriculum": [{"stage": "A", "ratio": 0.01}, {"stage": "B", "ratio": 1.0}],
        }
    )
    assert "stage(s) A get no step" in msg
    assert "listed twice" in err(
        {"curriculum": [{"stage": "A", "ratio": 1}, {"stage": "A", "ratio": 1}]}
    )
    cfg = config.from_dict(
        {
            "train": {"max_steps": 10},
            "curriculum": [{"stage": "A", "ratio": 0.3}, {"stage": "B", "ratio": 0.7}],
        },
        tmp_path,
    )
    assert cfg.stage_steps() == [("A", 3), ("B", 7)]
    p = write_config(
        tmp_path / "c.toml", {"data": {"train": "t.jsonl"}, "train": {"output_dir": "o"}}
    )
    cfg = config.load(p)
    assert cfg.data.train == str(tmp_path / "t.jsonl") and cfg.train.output_dir == str(
        tmp_path / "o"
    )


# ----------------------------------------------------------------------------- data
STEPS_10 = "\n".join(f"Step {i}: observation {i}." for i in range(1, 11))


def report_folder(root: Path) -> Path:
    from PIL import Image

    studies = {
        "s1": (
            "FINDINGS: Lungs are clear. Heart size normal.\nIMPRESSION: No acute disease.",
            {"age": 54, "sex": "F", "indication": "cough"},
            STEPS_10,
        ),
        "s2": (
            "FINDINGS: Blunting of the left costophrenic angle. Lungs otherwise clear.\n"
            "IMPRESSION: Small left effusion.",
            {"age": 71, "sex": "M"},
            STEPS_10,
        ),
        "s3": ("FINDINGS: Enlarged cardiac silhouette.\nIMPRESSION: Cardiomegaly.", {}, STEPS_10),
    }
    for sid, (text, ehr, reasoning) in studies.items():
        d = root / sid
        d.mkdir(parents=True)
        (d / "report.txt").write_text(text)
        if ehr:
            (d / "ehr.json").write_text(json.dumps(ehr))
        (d / "reasoning.txt").write_text(reasoning)
        Image.new("RGB", (40, 40), (len(sid) * 40, 90, 20)).save(d / "image.png")
    return root


def test_data_builders_write_checked_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from engine.train import data, records

    src = report_folder(tmp_path / "reports")
    s = data.build("cot", src, tmp_path / "cot.jsonl")
    recs = records.read_jsonl(tmp_path / "cot.jsonl")
    assert s.n_records == 3 and s.n_images == 3 and s.by_mode == {"cot": 3}
    assert data.check_cot(recs[0]["target"]) == []
    assert (
        recs[0]["target"].count("\nStep ") == 9
        and "Impression: No acute disease." in recs[0]["target"]
    )

    s = data.build("curriculum", src, tmp_path / "cur.jsonl")
    assert s.by_stage == {"A": 3, "B": 2}  # s3 has no EHR: stage A only
    b = [r for r in records.read_jsonl(tmp_path / "cur.jsonl") if r["stage"] == "B"]
    assert "Age: 54" in b[0]["prompt"] and "Indication: cough" in b[0]["prompt"]

    s = data.build("pairs", src, tmp_path / "pairs.jsonl")
    pairs = records.read_jsonl(tmp_path / "pairs.jsonl", "dpo")
    assert s.n_records == 3
    assert pairs[1]["chosen"] == "Small left effusion."
    assert pairs[1]["rejected"].startswith("Blunting of the left costophrenic angle.")

    # the CLI prints the summary
    assert main(["train", "data", "pairs", str(src), str(tmp_path / "p2.jsonl")]) == 0
    assert "3 dpo record(s)" in capsys.readouterr().out


def test_data_builders_refuse_malformed_records_by_name(tmp_path: Path) -> None:
    from engine.train import data, records

    src = report_folder(tmp_path / "reports")
    (src / "s2" / "reasoning.txt").write_text("\n".join(STEPS_10.splitlines()[:9]))
    (src / "s3" / "reasoning.txt").write_text("Step 1: a\nStep 3: b")
    with pytest.raises(UserError) as e:
        data.build("cot", src, tmp_path / "cot.jsonl")
    msg = str(e.value)
    assert "study s2: reasoning has 9 step(s), the format needs 10" in msg
    assert "study s3: step 3 where step 2 was expected" in msg
    assert not (tmp_path / "cot.jsonl").exists()
    s = data.build("cot", src, tmp_path / "cot.jsonl", skip_invalid=True)
    assert s.n_records == 1 and s.n_rejected == 2 and s.rejected[0].startswith("study s2:")

    (src / "s1" / "ehr.json").write_text(json.dumps({"age": 54, "weight": {"kg": 80}}))
    (src / "s3" / "report.txt").write_text("FINDINGS: Enlarged cardiac silhouette.")
    with pytest.raises(UserError) as e:
        data.build("curriculum", src, tmp_path / "cur.jsonl")
    assert "study s1: EHR field 'weight' is not one of" in str(e.value)
    assert "study s3: the report has no IMPRESSION section" in str(e.value)

    bad = write_jsonl(
        tmp_path / "bad.jsonl",
        [
            {"id": "ok", "prompt": "p", "target": "t"},
            {"id": "x7", "prompt": "p"},
            {"id": "x8", "prompt": "p", "target": 3, "stage": ""},
            {"prompt": "p", "target": "t", "image": "missing.png"},
        ],
    )
    with open(bad, "a") as fh:
        fh.write("{not json\n")
    with pytest.raises(UserError) as e:
        records.read_jsonl(bad)
    msg = str(e.value)
    assert "4 malformed record(s)" in msg
    assert "bad.jsonl:2 (id=x7): 'target' is missing" in msg
    assert "bad.jsonl:3 (id=x8): 'target' must be a string" in msg and "'stage' must be" in msg
    assert "bad.jsonl:4: image missing.png not found" in msg
    assert "bad.jsonl:5: not valid JSON" in msg
    same = write_jsonl(
        tmp_path / "same.jsonl", [{"id": "d1", "prompt": "p", "chosen": "a", "rejected": "a"}]
    )
    with pytest.raises(
        UserError, match=r"same.jsonl:1 \(id=d1\): 'chosen' and 'rejected' are the same"
    ):
        records.read_jsonl(same, "dpo")
    assert main(["train", "data", "check", str(bad)]) == 2


# ----------------------------------------------------------------------------- SFT
def test_sft_overfits_and_writes_adapter_card_and_metrics(tiny_llama: Path, tmp_path: Path) -> None:
    from engine.train import config, sft

    train = write_jsonl(tmp_path / "train.jsonl", OVERFIT)
    out = tmp_path / "run"
    opts = {"max_steps": 24, "merge": True, "eval_generate": 2, "eval_max_new_tokens": 6}
    cfg = config.from_dict(run_config(tiny_llama, train, out, **opts), tmp_path)
    rec = Recorder()
    context._set(rec)
    try:
        res = sft.run(cfg, resume="never")
    finally:
        context._set(None)
    print(f"SFT overfit: eval loss {res.eval_loss_before:.3f} -> {res.eval_loss_after:.3f}")
    assert res.eval_loss_before > 5.0  # ~ln(vocab): a random model
    assert res.eval_loss_after < 1.0
    if importlib.util.find_spec("sacrebleu") and importlib.util.find_spec("rouge_score"):
        # greedy answers scored by the metrics library at each evaluation
        assert {"eval_bleu4", "eval_rouge_l"} <= set(res.metrics)
    assert (out / "adapter" / "adapter_config.json").is_file()
    card = (out / "README.md").read_text()
    assert "## Metrics" in card and "4 sft record(s)" in card and "eval loss after" in card
    lines = metrics_lines(out)
    steps = [x for x in lines if x["type"] == "train"]
    assert [x["step"] for x in steps] == list(range(1, 25))
    assert all(x["lr"] > 0 and x["loss"] > 0 for x in steps)
    # the same records streamed as progress notifications (what the TUI plots)
    prog = [p for m, p in rec.events if m == "progress" and p.get("train") == "train"]
    assert (
        len(prog) == 24 and prog[-1]["fraction"] == 1.0 and "loss" in prog[-1] and "lr" in prog[-1]
    )
    evals = [p for m, p in rec.events if m == "progress" and p.get("train") == "eval"]
    assert evals[0]["step"] == 0 and "eval_loss" in evals[-1]

    # the merged model answers like base + adapter
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    ids = torch.tensor([[5, 6, 7, 8, 9]])
    merged = AutoModelForCausalLM.from_pretrained(out / "merged")
    peft_model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_llama), out / "adapter"
    )
    with torch.no_grad():
        diff = (merged(ids).logits - peft_model(ids).logits).abs().max().item()
    assert diff < 1e-4

    # GGUF: a merged text model goes to llama.cpp's converter; without one, a clear NotAvailable
    from engine.train import export

    with pytest.raises(NotAvailable, match="convert_hf_to_gguf.py was not found"):
        os.environ.pop("LLAMA_CPP_CONVERT", None)
        os.environ.pop("LLAMA_CPP_DIR", None)
        export.gguf(out / "merged", tmp_path / "m.gguf", converter=str(tmp_path / "none.py"))
    fake = tmp_path / "convert_hf_to_gguf.py"
    fake.write_text(
        "import sys\n# knows LlamaForCausalLM\nargs = sys.argv[1:]\n"
        "open(args[args.index('--outfile') + 1], 'wb').write(b'GGUF' + args[0].encode())\n"
    )
    gguf = export.gguf(out / "merged", tmp_path / "m.gguf", converter=str(fake))
    assert gguf.read_bytes() == b"GGUF" + str(out / "merged").encode()
    with pytest.raises(UserError, match="is an adapter"):
        export.gguf(out / "adapter", tmp_path / "a.gguf", converter=str(fake))


def test_curriculum_stage_a_then_b_with_configured_ratio(tiny_llama: Path, tmp_path: Path) -> None:
    from engine.train import config, sft

    recs = [{**r, "stage": "A" if i < 2 else "B"} for i, r in enumerate(OVERFIT)]
    train = write_jsonl(tmp_path / "train.jsonl", recs)
    c = run_config(tiny_llama, train, tmp_path / "run", max_steps=8, batch_size=1)
    c["data"].pop("eval")
    c["curriculum"] = [{"stage": "A", "ratio": 0.25}, {"stage": "B", "ratio": 0.75}]
    res = sft.run(config.from_dict(c, tmp_path), resume="never")
    assert res.stage_steps == {"A": 2, "B": 6}
    stages = [x["stage"] for x in metrics_lines(tmp_path / "run") if x["type"] == "train"]
    assert stages == ["A"] * 2 + ["B"] * 6
    # a record naming an unknown stage is refused by id
    write_jsonl(train, [*recs, {"id": "zz", "prompt": "p", "target": "t", "stage": "C"}])
    with pytest.raises(UserError, match=r"record zz has stage 'C'"):
        sft.run(config.from_dict(c, tmp_path), resume="never")


def test_sft_vision_language_model_on_image_records(tiny_llava: Path, tmp_path: Path) -> None:
    from engine.train import config, data, sft

    src = report_folder(tmp_path / "reports")
    data.build("curriculum", src, tmp_path / "cur.jsonl")
    c = run_config(
        tiny_llava,
        tmp_path / "cur.jsonl",
        tmp_path / "run",
        max_steps=8,
        batch_size=1,
        eval_epochs=1,
    )
    c["model"]["gradient_checkpointing"] = True
    c["lora"]["target_modules"] = "auto"
    c["data"]["max_length"] = 192
    c["curriculum"] = [{"stage": "A", "ratio": 0.5}, {"stage": "B", "ratio": 0.5}]
    res = sft.run(config.from_dict(c, tmp_path), resume="never")
    print(f"LLaVA SFT: eval loss {res.eval_loss_before:.3f} -> {res.eval_loss_after:.3f}")
    assert res.stage_steps == {"A": 4, "B": 4}
    assert res.eval_loss_after < res.eval_loss_before - 0.2
    cfg = json.loads((tmp_path / "run" / "adapter" / "adapter_config.json").read_text())
    assert "language_model" in str(cfg["target_modules"])  # the vision tower stays frozen
    assert (tmp_path / "run" / "adapter" / "processor_config.json").is_file() or (
        tmp_path / "run" / "adapter" / "preprocessor_config.json"
    ).is_file()
    evals = [x for x in metrics_lines(tmp_path / "run") if x["type"] == "eval"]
    assert len(evals) >= 4  # before training, and after each epoch of each stage


# ----------------------------------------------------------------------------- resume
def test_kill_mid_run_then_resume_gives_the_same_weights(tiny_llama: Path, tmp_path: Path) -> None:
    import torch

    from engine.train import config, sft

    train = write_jsonl(tmp_path / "train.jsonl", OVERFIT)
    opts = {"max_steps": 8, "batch_size": 2, "save_every": 2, "keep_checkpoints": 3}
    ref_cfg = run_config(tiny_llama, train, tmp_path / "ref", **opts)
    ref_cfg["lora"]["dropout"] = 0.1  # the dropout masks must replay too
    ref = sft.run(config.from_dict(ref_cfg, tmp_path), resume="never")

    killed = {**ref_cfg, "train": {**ref_cfg["train"], "output_dir": str(tmp_path / "killed")}}
    cfg_file = write_config(tmp_path / "killed.toml", killed)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "train", "sft", str(cfg_file)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    ckpts = tmp_path / "killed" / "checkpoints"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if any((p / "state.json").is_file() for p in ckpts.glob("step-*")):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    err = proc.communicate()[1]
    assert proc.returncode == -signal.SIGKILL, err
    done = sorted(ckpts.glob("step-*"))
    assert done and int(done[-1].name.split("-")[1]) < 8, "killed after the end: no mid-run kill"
    assert not (tmp_path / "killed" / "adapter").exists()

    res = sft.run(config.load(cfg_file), resume="auto")
    assert res.resumed_from >= 2 and res.steps == 8
    a, b = (
        adapter_weights(tmp_path / "ref" / "adapter"),
        adapter_weights(tmp_path / "killed" / "adapter"),
    )
    assert a.keys() == b.keys()
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    moved = max((a[k]).abs().max().item() for k in a if "lora_B" in k)
    print(f"resume from step {res.resumed_from}: max |w_ref - w_resumed| = {diff:.2e}")
    assert moved > 1e-3 and diff < 1e-5
    steps = [x["step"] for x in metrics_lines(tmp_path / "killed") if x["type"] == "train"]
    assert steps == list(range(1, 9))  # lines past the checkpoint were replaced, not doubled
    assert torch.isclose(torch.tensor(res.last_loss), torch.tensor(ref.last_loss), atol=1e-5)


def test_stop_after_checkpoints_like_a_preemption(tiny_llama: Path, tmp_path: Path) -> None:
    from engine.train import checkpoint, config, sft

    train = write_jsonl(tmp_path / "train.jsonl", OVERFIT)
    c = run_config(tiny_llama, train, tmp_path / "run", max_steps=4, batch_size=2)
    c["data"].pop("eval")
    with pytest.raises(checkpoint.Preempted, match="stopped at step 2"):
        sft.run(config.from_dict(c, tmp_path), resume="never", stop_after=2)
    assert checkpoint.latest(tmp_path / "run").name == "step-0000002"
    assert sft.run(config.from_dict(c, tmp_path)).resumed_from == 2


def test_training_streams_loss_and_lr_through_an_engine(
    tiny_llama: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the TUI's training screen gets: ``progress`` notifications with loss and lr."""
    from engine.api import methods as api_methods
    from engine.api import train as api_train
    from engine.rpc import methods as rpc_methods
    from engine.rpc.client import EngineClient

    if "train.sft" not in api_methods.API:  # until the lead registers the train methods
        monkeypatch.setitem(
            api_methods.API, "train.sft", api_methods._m("train.sft", api_train.train_sft, True)
        )
        monkeypatch.setitem(
            rpc_methods.METHODS,
            "train.sft",
            rpc_methods.Method(rpc_methods._api_handler("train.sft"), "", interruptible=True),
        )
    train = write_jsonl(tmp_path / "train.jsonl", OVERFIT)
    c = run_config(tiny_llama, train, tmp_path / "run", max_steps=4, batch_size=2)
    cfg = write_config(tmp_path / "c.toml", c)
    events: list[tuple[str, dict[str, Any]]] = []
    with EngineClient("inprocess") as eng:
        call = eng.request(
            "train.sft",
            {"config": str(cfg), "resume": "never"},
            on_event=lambda m, p: events.append((m, p)),
        )
        res = call.result(timeout=300)
    assert res["steps"] == 4 and res["eval_loss_after"] < res["eval_loss_before"]
    train_ev = [p for m, p in events if m == "progress" and p.get("train") == "train"]
    assert [p["step"] for p in train_ev] == [1, 2, 3, 4]
    assert all({"loss", "lr", "fraction", "max_steps", "epoch"} <= set(p) for p in train_ev)
    evals = [p for m, p in events if m == "progress" and p.get("train") == "eval"]
    assert evals and "eval_loss" in evals[0]


# ----------------------------------------------------------------------------- DPO
def test_dpo_increases_the_chosen_vs_rejected_margin(tiny_llama: Path, tmp_path: Path) -> None:
    pytest.importorskip("trl")
    from engine.api.train import TrainParams, train_dpo

    pairs = [
        {
            "id": f"p{i}",
            "prompt": f"Write the impression. Findings: {f}",
            "chosen": c,
            "rejected": f,
        }
        for i, (f, c) in enumerate(
            [
                ("Lungs clear. Heart normal.", "No acute disease."),
                ("Blunted left angle.", "Small left effusion."),
                ("Enlarged heart.", "Cardiomegaly."),
                ("RLL opacity.", "Right lower lobe pneumonia."),
            ]
        )
    ]
    train = write_jsonl(tmp_path / "pairs.jsonl", pairs)
    c = run_config(tiny_llama, train, tmp_path / "dpo", max_steps=10, scheduler="constant")
    c["data"].pop("eval")
    c["lora"]["target_modules"] = TARGETS[:-1]  # trl reads lm_head.weight directly
    c["dpo"] = {"beta": 0.1}
    res = train_dpo(TrainParams(config=str(write_config(tmp_path / "dpo.toml", c)), resume="never"))
    before, after = res.metrics["margin_before"], res.metrics["margin_after"]
    print(f"DPO margin log p(chosen) - log p(rejected): {before:.3f} -> {after:.3f}")
    assert after > before + 2.0
    assert res.last_loss < res.first_loss
    assert (tmp_path / "dpo" / "adapter" / "adapter_config.json").is_file()
    assert "DPO" in (tmp_path / "dpo" / "README.md").read_text()
    train_lines = [x for x in metrics_lines(tmp_path / "dpo") if x["type"] == "train"]
    assert len(train_lines) == 10 and "rewards_margins" in train_lines[-1]


# ----------------------------------------------------------------------------- Slurm
def test_sbatch_script_asks_for_gpus_time_requeue_and_signal(tmp_path: Path) -> None:
    from engine.train import config
    from engine.train import slurm as tslurm

    cfg = config.from_dict(
        {
            "model": {"path": "m"},
            "data": {"train": "t.jsonl"},
            "train": {"output_dir": str(tmp_path / "o")},
            "slurm": {"gpus": 2, "time": "08:00:00", "partition": "gpu", "extra": ["--qos=high"]},
        },
        tmp_path,
    )
    text = tslurm.job_script(cfg, "sft", str(tmp_path / "c.toml"))
    for line in (
        "#SBATCH --gres=gpu:2",
        "#SBATCH --time=08:00:00",
        "#SBATCH --requeue",
        "#SBATCH --signal=B:USR1@120",
        "#SBATCH --partition=gpu",
        "#SBATCH --qos=high",
        "-m engine.train.slurm run sft",
        "scontrol requeue $SLURM_JOB_ID",
    ):
        assert line in text, line
    res_cli = main(
        [
            "train",
            "sft",
            str(
                write_config(
                    tmp_path / "c.toml",
                    {
                        "model": {"path": "m"},
                        "data": {"train": "t.jsonl"},
                        "train": {"output_dir": "o"},
                    },
                )
            ),
            "--slurm",
        ]
    )
    assert res_cli == 0 and (tmp_path / "o" / "train.sbatch").is_file()


@pytest.mark.needs_service
@pytest.mark.slow
def test_slurm_job_trains_is_preempted_requeued_and_resumes(
    slurm,  # noqa: F811
    tiny_llama: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    # one-node test Slurm sometimes drops a job in the instant of its requeue (it leaves the
    # queue and is reported finished): the scenario is tried once more in a fresh folder then,
    # and the test fails if that happens twice
    for attempt in range(2):
        run_dir = tmp_path / f"try{attempt}"
        run_dir.mkdir()
        if _slurm_scenario(slurm, tiny_llama, run_dir, monkeypatch, last=attempt == 1):
            return


def _slurm_scenario(slurm, tiny_llama: Path, tmp_path: Path, monkeypatch, last: bool) -> bool:  # type: ignore[no-untyped-def]  # noqa: F811
    from engine.train import checkpoint
    from engine.train import slurm as tslurm

    train = write_jsonl(tmp_path / "train.jsonl", OVERFIT)
    # enough steps that the warning lands mid-run even on a fast machine
    steps = 30
    c = run_config(tiny_llama, train, tmp_path / "run", max_steps=steps, batch_size=2, save_every=2)
    c["slurm"] = {
        "gpus": 0,
        "time": "00:10:00",
        "cpus_per_task": 1,
        "signal_seconds": 60,
        "setup": ["export HF_HUB_OFFLINE=1"],
    }
    cfg_file = write_config(tmp_path / "c.toml", c)
    monkeypatch.setenv("SLURM_CONF", str(slurm.conf))
    from engine.train import config

    cfg = config.load(cfg_file)
    script = tslurm.write_job(cfg, "sft", str(cfg_file))

    # preempt the running job once, as the time-limit signal would: it checkpoints and requeues
    import threading

    def preempt() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if checkpoint.latest(tmp_path / "run") is not None:
                jobs = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True)
                for job in jobs.stdout.split():
                    subprocess.run(["scancel", "--batch", "--signal=USR1", job])
                    # Slurm holds a requeued job back a while (its begin time); the test need not wait
                    while time.monotonic() < deadline:
                        st = subprocess.run(
                            ["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True
                        ).stdout.strip()
                        if st == "PENDING":
                            subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"])
                            return
                        time.sleep(0.2)
                return
            time.sleep(0.1)

    threading.Thread(target=preempt, daemon=True).start()
    from engine.errors import StepFailed

    try:
        job, outcome = tslurm.submit_and_follow(cfg, script, poll_s=0.5, timeout_s=600)
    except StepFailed as exc:  # the requeued job ended at once, with no second start logged
        if last or str(exc).count("llmh-train: job") != 1:
            raise
        return False
    log = (tmp_path / "run" / f"slurm-{job}.log").read_text()
    if outcome.steps < steps and not last and log.count("llmh-train: job") == 1:
        return False  # dropped at its requeue (see above)
    assert outcome.steps == steps, log + slurm.logs()
    assert "requeueing job" in log and outcome.resumed_from >= 2, log
    assert log.count("llmh-train: job") == 2  # the same job ran twice
    done = [x["step"] for x in metrics_lines(tmp_path / "run") if x["type"] == "train"]
    assert done == list(range(1, steps + 1))
    return True


def test_slurm_warning_before_or_after_the_loop_does_not_kill_the_job() -> None:
    """Slurm's USR1 may land while the model loads or after the last step: the first becomes a
    preemption at the first step, the second is ignored (the job once died with exit 138)."""
    import os
    import signal as sig

    from engine.train import checkpoint

    old = sig.getsignal(sig.SIGUSR1)
    try:
        checkpoint.catch_early_signals()
        os.kill(os.getpid(), sig.SIGUSR1)  # during load
        time.sleep(0.05)
        with checkpoint.PreemptionFlag() as flag:
            assert flag.is_set() and flag.signal == "SIGUSR1"
        with checkpoint.PreemptionFlag() as flag:
            assert not flag.is_set()  # consumed once
        os.kill(os.getpid(), sig.SIGUSR1)  # after the loop: still alive
        time.sleep(0.05)
    finally:
        sig.signal(sig.SIGUSR1, old)
        checkpoint._early.clear()  # the late warning must not preempt a later run here
