"""``analyze --slurm --submit`` on a real one-node Slurm (munged, slurmctld, slurmd).

The job array reads chunks of the input into partial caches; merged, they must give the same
``aggregated_dicominfo.tsv`` and ``analyze_errors.tsv`` as a local scan, byte for byte (no
column differs: both are built from the same per-file facts by the same aggregation).  Skips
when Slurm/munge are not installed (``apt-get install slurm-wlm munge``) or cannot start.
"""

from __future__ import annotations

import gzip
import sqlite3
from pathlib import Path

import pytest

from engine.cli import main
from engine.scan.cache import CACHE_NAME
from engine.workspace import ANALYZE_ERRORS_TSV, SERIES_TSV
from tests.slurm_fixture import slurm  # noqa: F401  (pytest fixture; tests/ is on sys.path)

FILES_PER_TASK = 200
pytestmark = [pytest.mark.needs_service, pytest.mark.slow]


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A mixed-vendor synthetic study plus a few files that are not DICOM or are broken."""
    synth = pytest.importorskip("engine.synth")
    root = tmp_path_factory.mktemp("study")
    synth.generate_study(root / "s", subjects=1, sessions=1, vendor="mixed", seed=5)
    src = root / "s" / "dicom"
    junk = src / "zz_junk"
    junk.mkdir()
    good = next(p for p in sorted(src.rglob("*")) if p.is_file() and p.suffix != ".json")
    data = good.read_bytes()
    (junk / "notes.txt").write_text("not dicom\n")
    (junk / "truncated.dcm").write_bytes(data[: len(data) // 3])
    (junk / "copy.dcm.gz").write_bytes(gzip.compress(data))
    return src


def _n_files(root: Path) -> int:
    return sum(1 for p in root.rglob("*") if p.is_file())


def test_slurm_submit_matches_local_scan(
    slurm,  # noqa: F811
    study: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    local, remote = tmp_path / "local", tmp_path / "slurm"
    assert main(["analyze", str(study), str(local), "--no-progress"]) == 0
    capsys.readouterr()

    monkeypatch.setenv("SLURM_CONF", str(slurm.conf))
    rc = main(
        ["analyze", str(study), str(remote), "--slurm", "--submit", "--no-progress"]
        + ["--files-per-task", str(FILES_PER_TASK)]
    )
    err = capsys.readouterr().err
    assert rc == 0, err + slurm.logs()
    n_tasks = -(-_n_files(study) // FILES_PER_TASK)
    assert n_tasks > 2  # a real array, several tasks
    assert f"merged {n_tasks} part(s)" in err, err
    # every header was read by the array: the final local pass read none
    assert "read 0 header(s)" in err, err
    parts = sorted((remote / "slurm").glob("part_*.sqlite"))
    assert len(parts) == n_tasks
    # each task read only its own chunk
    counts = []
    for p in parts:
        db = sqlite3.connect(p)
        counts.append(db.execute("SELECT count(*) FROM files").fetchone()[0])
        db.close()
    assert sum(counts) == _n_files(study) and max(counts) <= FILES_PER_TASK

    for name in (SERIES_TSV, ANALYZE_ERRORS_TSV):
        assert (remote / name).read_bytes() == (local / name).read_bytes(), name
    assert (remote / CACHE_NAME).exists()


def test_slurm_failed_task_is_reported(
    slurm,  # noqa: F811
    study: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A task that dies leaves no part; ``--submit`` says which instead of merging silently."""
    from engine.scan import slurm as slurm_mod

    out = tmp_path / "out"
    real = slurm_mod.write_job

    def broken_job(*a, **kw):
        script = real(*a, **kw)
        (script.parent / "files_0001.txt").write_text("\0not a path\n")  # task 1 crashes
        return script

    monkeypatch.setattr(slurm_mod, "write_job", broken_job)
    monkeypatch.setenv("SLURM_CONF", str(slurm.conf))
    rc = main(
        ["analyze", str(study), str(out), "--slurm", "--submit", "--no-progress"]
        + ["--files-per-task", str(FILES_PER_TASK)]
    )
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "did not finish: [1]" in err, err
    assert not (out / SERIES_TSV).exists()
