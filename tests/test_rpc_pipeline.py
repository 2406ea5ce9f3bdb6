"""The pipeline through the engine: each step as a method, and the CLI byte-for-byte the same
whether run directly or through ``engine run SPEC --`` (helpers reused by the ssh/slurm tests)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.rpc.client import EngineClient

PY = [sys.executable, "-m", "engine"]
# Files that legitimately differ between two runs (caches with timestamps/inodes).
VOLATILE = (".analyze_cache", "/.heudiconv/", "conversion_report.txt", "/__pycache__/")


def available_steps() -> set[str]:
    from engine.api.methods import API

    return {name for name, m in API.items() if m.step}


def need_steps(*steps: str) -> None:
    missing = [s for s in steps if s not in available_steps()]
    if missing:
        pytest.skip(f"pipeline steps not available yet: {', '.join(missing)}")


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    try:
        from engine.synth import generate_study
    except ImportError:
        pytest.skip("engine.synth.generate_study is not available yet")
    root = tmp_path_factory.mktemp("study")
    manifest = generate_study(root / "s", subjects=1)
    subjects = sorted({s.subject for s in manifest.series})
    return root / "s" / "dicom", subjects


def pipeline_argv(
    dicom: Path, out: Path, subjects: list[str], convert: bool = True
) -> list[list[str]]:
    steps = [
        ["analyze", str(dicom), str(out)],
        ["group", str(out)],
        ["map", str(out)],
        ["generate", str(out), "-o", str(out / "heuristic.py")],
        ["validate", str(out), str(out / "heuristic.py")],
    ]
    if convert:
        for s in subjects:
            steps.append(
                ["convert", str(out), "--subject", s, "--dicom-dir", str(dicom), "--no-validator"]
            )
    return steps


def snapshot(out: Path) -> dict[str, str]:
    snap = {}
    for p in sorted(out.rglob("*")):
        rel = "/" + str(p.relative_to(out))
        if p.is_file() and not any(v in rel for v in VOLATILE):
            snap[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return snap


def run_direct(steps: list[list[str]], env: dict[str, str] | None = None) -> list[str]:
    outs = []
    for argv in steps:
        r = subprocess.run([*PY, *argv], capture_output=True, text=True, env=env, timeout=600)
        assert r.returncode == 0, f"{argv}: {r.stderr[-3000:]}"
        outs.append(r.stdout)
    return outs


def run_via(spec: str, steps: list[list[str]], env: dict[str, str] | None = None) -> list[str]:
    outs = []
    for argv in steps:
        r = subprocess.run(
            [*PY, "engine", "run", spec, "--", *argv],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        assert r.returncode == 0, f"{spec} {argv}: {r.stderr[-3000:]}"
        outs.append(r.stdout)
    return outs


def reference(
    dicom: Path, out: Path, subjects: list[str], env: dict[str, str] | None = None
) -> tuple[list[list[str]], dict[str, str], list[str]]:
    """Run the plain CLI once into OUT: the steps, the file hashes and the stdout of each step."""
    need_steps("analyze", "group", "map", "generate", "validate", "convert")
    steps = pipeline_argv(dicom, out, subjects)
    shutil.rmtree(out, ignore_errors=True)
    outputs = run_direct(steps, env)
    ref = snapshot(out)
    assert any(k.endswith("heuristic.py") for k in ref) and any(k.endswith(".nii.gz") for k in ref)
    return steps, ref, outputs


def compare_cli(
    spec: str,
    out: Path,
    ref: tuple[list[list[str]], dict[str, str], list[str]],
    env: dict[str, str] | None = None,
) -> None:
    """Same OUT path both times, so even files that embed paths must match byte for byte."""
    steps, want, direct_out = ref
    shutil.rmtree(out, ignore_errors=True)
    via_out = run_via(spec, steps, env)
    got = snapshot(out)
    assert sorted(set(got) ^ set(want)) == []
    assert [k for k in want if want[k] != got[k]] == []

    # stdout too; convert prints the heudiconv executable it found on PATH, which is the
    # remote login's PATH over ssh, so its lines naming a program path are left out
    def norm(outs: list[str]) -> list[str]:
        return [
            "\n".join(ln for ln in o.splitlines() if "heudiconv --files" not in ln) for o in outs
        ]

    assert norm(via_out) == norm(direct_out)


def run_methods(eng: EngineClient, dicom: Path, out: Path, subjects: list[str]) -> dict:
    """Every pipeline method, then the workspace state, through one engine."""
    need_steps("analyze", "group", "map", "generate", "validate", "convert")
    events: list[tuple[str, dict]] = []
    on = lambda m, p: events.append((m, p))  # noqa: E731
    eng.call("analyze", {"input": str(dicom), "out_dir": str(out)}, on_event=on, timeout=600)
    eng.call("group", {"out_dir": str(out)}, on_event=on, timeout=600)
    eng.call("map", {"out_dir": str(out)}, on_event=on, timeout=600)
    gen = eng.call("generate", {"out_dir": str(out)}, on_event=on, timeout=600)
    assert gen["ok"] and gen["validation"]["ok"], gen["report"]
    assert eng.call("validate", {"out_dir": str(out)}, on_event=on, timeout=600)["ok"]
    for s in subjects:
        res = eng.call(
            "convert",
            {"out_dir": str(out), "subject": s, "dicom_dir": str(dicom), "validator": False},
            on_event=on,
            timeout=600,
        )
        assert res["ok"] and res["written"] > 0, res["report"]
    view = eng.call("workspace.view", {"out_dir": str(out)})
    assert view["missing"] == []
    series = view["series"]
    groups = [g["group"] for g in view["groups"]]
    mappings = [g["mapping"] for g in view["groups"]]
    report = eng.call("workspace.text", {"out_dir": str(out), "name": "mapping"})["text"]
    preview = eng.call(
        "preview", {"out_dir": str(out), "key": series[0]["key"], "dicom_dir": str(dicom)}
    )
    return {
        "series": series,
        "groups": groups,
        "mappings": mappings,
        "report": report,
        "preview": preview,
        "events": events,
    }


def test_pipeline_methods_inprocess(study, tmp_path):
    dicom, subjects = study
    with EngineClient("inprocess") as eng:
        res = run_methods(eng, dicom, tmp_path / "out", subjects)
    assert res["series"] and res["groups"] and res["mappings"] and res["report"]
    assert res["preview"]["png_base64"]
    assert any(m == "output" for m, _ in res["events"])
    assert list((tmp_path / "out").rglob("*.nii.gz"))


def test_step_errors_are_clear(tmp_path):
    need_steps("group")
    from engine.errors import NotFound, UserError

    with EngineClient("inprocess") as eng, pytest.raises(NotFound) as ei:
        eng.call("group", {"out_dir": str(tmp_path)})
    assert isinstance(ei.value, UserError) and "analyze" in ei.value.message


@pytest.mark.slow
def test_cli_same_files_direct_inprocess_and_local(study, tmp_path):
    dicom, subjects = study
    ref = reference(dicom, tmp_path / "out", subjects)
    compare_cli("inprocess", tmp_path / "out", ref)
    compare_cli("local", tmp_path / "out", ref)
