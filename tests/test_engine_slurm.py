"""The engine as a step of a real one-node Slurm (started by the test)."""

from __future__ import annotations

import os

import pytest

from engine.rpc.client import EngineClient
from engine.rpc.protocol import EngineGone
from tests.slurm_fixture import slurm  # noqa: F401 - pytest fixture
from tests.test_rpc_pipeline import compare_cli, reference, run_methods, study  # noqa: F401 - fixture

pytestmark = pytest.mark.needs_service


def test_slurm_step_engine(slurm, monkeypatch):  # noqa: F811
    monkeypatch.setenv("SLURM_CONF", str(slurm.conf))
    with EngineClient("slurm:--time=10") as eng:
        assert eng.hello["host"] and eng.hello["pid"] != os.getpid()
        events = []
        res = eng.call(
            "debug.stream",
            {"count": 100},
            on_event=lambda m, p: events.append(p["seq"]),
            timeout=60,
        )
        assert res["sent"] == 100 and events == list(range(1, 101))
        st = eng.call("status", timeout=30)
        assert st["pid"] == eng.hello["pid"]


def test_slurm_bad_options_surface(slurm, monkeypatch):  # noqa: F811
    monkeypatch.setenv("SLURM_CONF", str(slurm.conf))
    with pytest.raises(EngineGone) as ei:
        EngineClient("slurm:--partition=nosuchpartition", hello_timeout=60).start()
    assert "slurm:--partition=nosuchpartition" in str(ei.value) and "srun" in str(ei.value)


@pytest.mark.slow
def test_slurm_full_pipeline_and_cli_parity(slurm, study, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("SLURM_CONF", str(slurm.conf))
    dicom, subjects = study
    with EngineClient("slurm:--time=30") as eng:
        res = run_methods(eng, dicom, tmp_path / "methods-out", subjects)
    assert res["series"] and list((tmp_path / "methods-out").rglob("*.nii.gz"))
    out = tmp_path / "out"
    env = {**os.environ, "SLURM_CONF": str(slurm.conf)}
    compare_cli("slurm:--time=30", out, reference(dicom, out, subjects, env), env)
