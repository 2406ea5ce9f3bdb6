"""``convert`` finds heudiconv and dcm2niix beside the running interpreter: a venv that is not
activated, pipx, or the CLI called by its absolute path with a PATH that lacks the venv."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.heuristic.convert import beside_interpreter, heudiconv_executable

pytestmark = pytest.mark.slow


def test_heudiconv_is_found_beside_the_interpreter_first() -> None:
    cmd = heudiconv_executable()
    here = beside_interpreter("heudiconv")
    if here:
        assert cmd == [here]
    else:  # never the non-existent `python -m heudiconv`
        assert cmd[-2:] != ["-m", "heudiconv"]


def test_convert_runs_with_a_path_that_lacks_the_venv(tmp_path: Path) -> None:
    cli = Path(sys.executable).parent / "llm-heuristics"
    if not cli.exists() or not beside_interpreter("heudiconv"):
        pytest.skip("llm-heuristics / heudiconv are not installed beside this interpreter")
    if not (beside_interpreter("dcm2niix") or shutil.which("dcm2niix", path="/usr/bin:/bin")):
        pytest.skip("dcm2niix is not installed")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = "/usr/bin:/bin"
    dicom, out = tmp_path / "dicom", tmp_path / "out"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(cli), "-q", *args], env=env, capture_output=True, text=True, check=False
        )

    assert run("demo-data", str(dicom), "--subjects", "1").returncode == 0
    for step in (
        ["analyze", str(dicom), str(out), "--no-progress"],
        ["group", str(out)],
        ["map", str(out)],
        ["generate", str(out)],
    ):
        res = run(*step)
        assert res.returncode == 0, (step, res.stderr[-2000:])
    res = run("convert", str(out), "--subject", "01", "--no-validator")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert list((out / "bids" / "sub-01").rglob("*.nii.gz"))
