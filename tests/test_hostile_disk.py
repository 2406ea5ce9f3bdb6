"""Issue 14 on a disk that is really full: OUT on a small tmpfs, filled up after one good run.

Every writing step then fails with one line that names the disk as the cause and the fix, and
every earlier output stays byte for byte. SQLite on a full tmpfs reports "disk I/O error" (not
"database or disk is full"), which once advised deleting the cache. Needs root (``mount``);
skips where a tmpfs cannot be mounted.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from engine.cli import main
from engine.workspace import Workspace
from tests.test_hostile_input import _study

STEPS_OUTPUTS = ("aggregated_dicominfo.tsv", "mapping_report.txt", "heuristic.py")


@pytest.fixture
def tiny(tmp_path: Path):
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _digest(out: Path) -> dict[str, str]:
    return {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        # SQLite's side files of the cache may be left by a failed write: not outputs
        if p.is_file() and p.name != ".llmh.lock" and not p.name.endswith(("-wal", "-shm"))
    }


def _fill(mnt: Path) -> None:
    with open(mnt / "filler", "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * (1 << 16))
                fh.flush()
        except OSError:
            pass
    assert os.statvfs(mnt).f_bavail == 0


def _steps(src: Path, out: Path, gid: str = "") -> list[tuple[object, ...]]:
    """analyze, group, map, generate (and a decision on ``gid`` when given), as CLI argv."""
    argv: list[tuple[object, ...]] = [
        ("analyze", src, out, "--no-progress", "--n-cpus", "1"),
        ("group", out),
        ("map", out),
        ("generate", out),
    ]
    return argv + ([("decide", out, gid, "--skip", "--reason", "x")] if gid else [])


def test_every_step_on_a_full_disk_is_one_line_and_keeps_the_outputs(
    tiny: Path, tmp_path: Path, capsys
) -> None:
    src = _study(tmp_path / "in", n_series=3, n_files=4)
    out = tiny / "out"
    for argv in _steps(src, out):
        assert main([str(a) for a in argv]) == 0, argv
    before = _digest(out)
    assert set(STEPS_OUTPUTS) <= set(before)
    gid = Workspace(out).read_groups()[0].group_id
    (src / "s09").mkdir()  # something new to read: analyze must write its cache
    (src / "s09" / "1.dcm").write_bytes((src / "s01" / "001.dcm").read_bytes())
    _fill(tiny)
    capsys.readouterr()
    for argv in _steps(src, out, gid):
        assert main([str(a) for a in argv]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert "Traceback" not in err and len(err.splitlines()) == 1, err
        assert "free some space" in err and str(out) in err, err
        assert "delete" not in err, err  # the cache is not what is wrong
        assert _digest(out) == before, argv


def test_a_decision_the_full_disk_cuts_short_is_refused_not_torn(
    tiny: Path, tmp_path: Path, capsys
) -> None:
    """The disk takes the rest of the journal's last page and no more: a short write, no
    error from the kernel. The decision must not be reported saved, nor left half-written."""
    from engine import review

    src = _study(tmp_path / "in", n_series=3, n_files=2)
    out = tiny / "out"
    assert main(["analyze", str(src), str(out), "--no-progress", "--n-cpus", "1"]) == 0
    assert main(["group", str(out)]) == 0 and main(["map", str(out)]) == 0
    gids = [g.group_id for g in Workspace(out).read_groups()]
    review.decide(out, gids[0], "skip", skip_reason="kept")
    journal = out / "user_decisions.jsonl"
    before = journal.read_bytes()
    _fill(tiny)
    capsys.readouterr()
    long_reason = "r" * (2 * 4096)  # crosses the page the journal's last line is on
    assert main(["decide", str(out), gids[1], "--skip", "--reason", long_reason]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "free some space" in err, err
    assert journal.read_bytes() == before
    st = review.load_state(out)
    assert list(st.effective()) == [gids[0]] and st.warnings == []


def test_every_step_on_a_read_only_out_is_one_line_and_reading_still_works(
    tiny: Path, tmp_path: Path, capsys
) -> None:
    """OUT on a file system remounted read-only (root writes through chmod, not through this)."""
    from engine.api.review import workspace_view

    src = _study(tmp_path / "in", n_series=3, n_files=2)
    out = tiny / "out"
    assert main(["analyze", str(src), str(out), "--no-progress", "--n-cpus", "1"]) == 0
    for step in ("group", "map", "generate"):
        assert main([step, str(out)]) == 0
    before = _digest(out)
    gid = Workspace(out).read_groups()[0].group_id
    r = subprocess.run(["mount", "-o", "remount,ro", str(tiny)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot remount read-only: {r.stderr.strip()}")
    capsys.readouterr()
    for argv in (*_steps(src, out, gid), ("convert", out, "--subject", "01", "--dry-run")):
        assert main([str(a) for a in argv]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert "Traceback" not in err and len(err.splitlines()) == 1, err
        assert "writable" in err and str(out) in err, err
    assert _digest(out) == before
    view = workspace_view(str(out))  # the review still opens, read-only
    assert len(view.groups) == 3 and not view.missing
