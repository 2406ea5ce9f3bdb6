"""Hostile input and concurrent use (issue 14): nothing lost, nothing crashes.

Two writers on one OUT, a cache that must never serve another input's rows, a journal with
mangled or mistyped lines, symlinks out of INPUT, a gzip bomb, names that are not UTF-8, OUT
inside INPUT, a full disk or read-only OUT, a step that fails half-way, and header text with
terminal escapes or NULs. Every DICOM file here is made by :func:`_dcm` (no shared data).
"""

from __future__ import annotations

import errno
import gzip
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from engine import atomic, review
from engine.atomic import read_tsv
from engine.cli import main
from engine.scan import pipeline
from engine.scan.cache import CACHE_NAME, FactsCache
from engine.workspace import (
    ANALYZE_ERRORS_TSV,
    ASSIGNMENTS_TSV,
    DECISIONS_FILE,
    GROUPING_REPORT,
    GROUPS_TSV,
    MAPPED_TSV,
    MAPPING_REPORT,
    QUARANTINE_FILE,
    SERIES_TSV,
    Workspace,
    lock_out,
)

ROOT = Path(__file__).resolve().parents[1]
MR = "1.2.840.10008.5.1.4.1.1.4"


# --- a tiny DICOM writer ---------------------------------------------------------------------


def _dataset(
    series: int, instance: int, protocol: str, description: str, study: str = "1"
) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = MR
    ds.SOPInstanceUID = f"1.2.826.0.1.3680043.9.{study}.{series}.{instance}"
    ds.StudyInstanceUID = f"1.2.826.0.1.3680043.9.{study}"
    ds.SeriesInstanceUID = f"1.2.826.0.1.3680043.9.{study}.{series}"
    ds.Modality = "MR"
    ds.Manufacturer = "SIEMENS"
    ds.PatientID = f"P{study}"
    ds.StudyDate, ds.StudyTime = "20240101", "120000"
    ds.SeriesNumber, ds.InstanceNumber = series, instance
    ds.ProtocolName = protocol
    ds.SeriesDescription = description
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    ds.RepetitionTime, ds.EchoTime, ds.FlipAngle = "2300", "2.98", "9"
    ds.ScanningSequence, ds.SequenceVariant, ds.MRAcquisitionType = "GR\\IR", "SP\\MP", "3D"
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [0, 0, float(instance)]
    ds.PixelSpacing, ds.SliceThickness = [1, 1], "1"
    ds.Rows = ds.Columns = 4
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = MR
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def _bytes(ds: Dataset, pixels: bool = True) -> bytes:
    if pixels:
        ds.PixelData = b"\0\1" * 16
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _dcm(path: Path, series: int, instance: int, protocol: str = "", desc: str = "", **kw) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    proto = protocol or f"proto{series}"
    path.write_bytes(_bytes(_dataset(series, instance, proto, desc or proto, **kw)))


def _study(root: Path, n_series: int = 3, n_files: int = 4, study: str = "1") -> Path:
    for s in range(1, n_series + 1):
        for i in range(1, n_files + 1):
            _dcm(root / f"s{s:02d}" / f"{i:03d}.dcm", s, i, study=study)
    return root


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file() and not p.is_symlink()
    }


def _run(*argv: str) -> int:
    return main([str(a) for a in argv])


def _analyzed(tmp_path: Path, **kw) -> tuple[Path, Path]:
    src = _study(tmp_path / "in", **kw)
    out = tmp_path / "out"
    assert _run("analyze", src, out, "--no-progress", "--n-cpus", "1") == 0
    return src, out


def _mapped(tmp_path: Path) -> Path:
    _src, out = _analyzed(tmp_path)
    assert _run("group", out) == 0
    assert _run("map", out) == 0
    return out


def _holder(out: Path, command: str) -> subprocess.Popen[str]:
    """Another process that holds OUT's lock until killed."""
    code = textwrap.dedent(
        f"""
        import sys, time
        from engine.workspace import lock_out
        with lock_out({str(out)!r}, {command!r}):
            print("held", flush=True)
            time.sleep(600)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


# --- 1. two writers, one OUT; a cache of one input only --------------------------------------


def test_second_writer_fails_at_once_and_kill_leaves_no_stale_lock(tmp_path: Path, capsys) -> None:
    src, out = _analyzed(tmp_path)
    other = _study(tmp_path / "other", n_series=2, study="2")
    before = (out / SERIES_TSV).read_bytes()
    proc = _holder(out, "analyze /somewhere")
    try:
        capsys.readouterr()
        for argv in (
            ("analyze", other, out, "--no-progress"),
            ("group", out),
            ("map", out),
            ("generate", out),
        ):
            t0 = time.monotonic()
            assert _run(*argv) == 2, argv
            assert time.monotonic() - t0 < 10  # at once, not after a wait
            err = capsys.readouterr().err
            assert f"in use by pid {proc.pid} (analyze /somewhere)" in err, err
            assert "Traceback" not in err
        with pytest.raises(review.UserError, match=f"pid {proc.pid}"):
            review.decide(out, "g", "skip")
        assert (out / SERIES_TSV).read_bytes() == before  # the loser wrote nothing
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # kill -9 of the holder: the kernel dropped the lock, nothing stale is left
    assert _run("analyze", src, out, "--no-progress", "--n-cpus", "1") == 0


def test_concurrent_scan_of_another_input_never_poisons_the_cache(
    tmp_path: Path, monkeypatch
) -> None:
    a = _study(tmp_path / "a", n_series=3, n_files=15)  # 45 files: two chunks with one cpu
    b = _study(tmp_path / "b", n_series=2, n_files=5, study="2")
    out = tmp_path / "out"
    solo = pipeline.scan(a, tmp_path / "solo", n_cpus=1, progress=False)
    assert len(solo.series) == 3 and solo.n_dicom == 45

    real = FactsCache.put_many
    state = {"armed": True}

    def put_many(self, rows):  # noqa: ANN001
        real(self, rows)
        if state["armed"]:  # after A's first chunk: B scans into the same OUT (no lock here)
            state["armed"] = False
            res_b = pipeline.scan(b, out, n_cpus=1, progress=False)
            assert len(res_b.series) == 2

    monkeypatch.setattr(FactsCache, "put_many", put_many)
    res = pipeline.scan(a, out, n_cpus=1, progress=False)
    monkeypatch.setattr(FactsCache, "put_many", real)
    assert [s.to_row() for s in res.series] == [s.to_row() for s in solo.series]
    assert res.n_dicom == 45
    again = pipeline.scan(a, out, n_cpus=1, progress=False)  # the memo is the whole table
    assert [s.to_row() for s in again.series] == [s.to_row() for s in solo.series]
    # one input after another: each gets its own table, never the other's rows
    assert len(pipeline.scan(b, out, n_cpus=1, progress=False).series) == 2
    cache = FactsCache(out / CACHE_NAME)
    try:
        assert cache.input_root() == os.path.realpath(b)
        assert all(p.startswith(str(b)) for p in cache.known())
    finally:
        cache.close()
    assert len(pipeline.scan(a, out, n_cpus=1, progress=False).series) == 3


# --- 2. the decisions journal ----------------------------------------------------------------


def _good(gid: str, seq: int) -> str:
    return json.dumps(
        {"op": "decide", "group_id": gid, "action": "skip", "skip_reason": "x", "seq": seq}
    )


def test_bad_journal_lines_are_quarantined_loudly_never_crash(tmp_path: Path, capsys) -> None:
    out = _mapped(tmp_path)
    gids = [g.group_id for g in Workspace(out).read_groups()]
    lines = [
        _good(gids[0], 1),
        '{"op": "decide", "group_id": "x", "action": "skip", "seq": "abc"}',
        '{"op": "decide", "group_id": "x", "action": "edit", "entities": "notadict", "seq": 3}',
        '{"op": "decide", "group_id": "x", "action": "skip", "seq": 1e400}',
        "{mangled",
        '["a list"]',
        _good(gids[1], 7),
    ]
    (out / DECISIONS_FILE).write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert _run("map", out) == 0
    err = capsys.readouterr().err
    assert "WARNING" in err and QUARANTINE_FILE in err, err
    q = [json.loads(x) for x in (out / QUARANTINE_FILE).read_text().splitlines()]
    assert [r["line"] for r in q] == [2, 3, 4, 5, 6]
    assert all(r["reason"] and r["text"] for r in q)
    # the good decisions are kept and in effect; the bad ones left the journal
    assert [json.loads(x)["seq"] for x in (out / DECISIONS_FILE).read_text().splitlines()] == [
        1,
        7,
    ]
    assert set(review.current_decisions(out)) == {gids[0], gids[1]}
    # every later step says so too, and none crashes
    for argv in (
        ("generate", out),
        ("validate", out),
        ("convert", out, "--subject", "01", "--dry-run"),
        ("group", out),
        ("map", out),
    ):
        rc = _run(*argv)
        assert rc in (0, 1), argv
        assert QUARANTINE_FILE in capsys.readouterr().err, argv
    assert review.load_state(out).warnings


def test_torn_last_line_stays_tolerated(tmp_path: Path, capsys) -> None:
    out = _mapped(tmp_path)
    gid = Workspace(out).read_groups()[0].group_id
    (out / DECISIONS_FILE).write_text(_good(gid, 1) + '\n{"op": "deci')  # crash mid-append
    capsys.readouterr()
    assert _run("map", out) == 0
    assert "WARNING" not in capsys.readouterr().err
    assert review.load_state(out).warnings == []
    review.decide(out, gid, "unskip")  # the next append sets the torn line aside, silently
    recs = [json.loads(x) for x in (out / DECISIONS_FILE).read_text().splitlines()]
    assert [r["seq"] for r in recs] == [1, 2]
    assert review.load_state(out).warnings == []


# --- 3. input tree edges ---------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_symlinks_out_of_input_are_listed_not_followed(tmp_path: Path, capsys) -> None:
    src = _study(tmp_path / "in", n_series=1)
    outside = _study(tmp_path / "elsewhere", n_series=1, study="9")
    os.symlink("/", src / "root_link")
    os.symlink(outside, src / "outside_link")
    os.symlink(src / "s01", src / "inside_link")  # inside INPUT: followed (a repeat, skipped)
    out = tmp_path / "out"
    capsys.readouterr()
    assert _run("analyze", src, out, "--no-progress", "--n-cpus", "1") == 0
    err = capsys.readouterr().err
    assert "WARNING: 2 symbolic link(s) lead out of" in err, err
    errors = {r["path"]: r["reason"] for r in read_tsv(out / ANALYZE_ERRORS_TSV)}
    assert "leads out of the input (to /)" in errors[str(src / "root_link")]
    assert str(outside) in errors[str(src / "outside_link")]
    assert not any(p.startswith("/proc") for p in errors)
    assert len(read_tsv(out / SERIES_TSV)) == 1
    # asked for: the link out is followed
    out2 = tmp_path / "out2"
    os.unlink(src / "root_link")
    argv = ("analyze", src, out2, "--no-progress", "--n-cpus", "1", "--follow-external-links")
    assert _run(*argv) == 0
    assert len(read_tsv(out2 / SERIES_TSV)) == 2


def _bomb(path: Path, gib: int = 1) -> None:
    """A gzipped DICOM whose pixel data inflates to ``gib`` GiB of zeros (about 1 MB on disk)."""
    ds = _dataset(1, 1, "bomb", "bomb")
    head = _bytes(ds, pixels=False)
    size = gib << 30
    pixel = b"\xe0\x7f\x10\x00OW\x00\x00" + size.to_bytes(4, "little")
    zeros = gzip.compress(b"\0" * (1 << 20), 1)
    with path.open("wb") as fh:
        fh.write(gzip.compress(head + pixel))
        for _ in range(size >> 20):
            fh.write(zeros)


def test_gzip_bomb_costs_no_memory(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    _bomb(src / "bomb.dcm.gz")
    (src / "zeros.gz").write_bytes(gzip.compress(b"\0" * (64 << 20), 1))
    _dcm(src / "ok" / "1.dcm", 2, 1)
    out = tmp_path / "out"
    code = textwrap.dedent(
        f"""
        import resource, subprocess, sys
        r = subprocess.run([sys.executable, "-m", "engine", "analyze", {str(src)!r},
                            {str(out)!r}, "--n-cpus", "1", "--no-progress"])
        print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
        """
    )
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    rc, rss_kib = map(int, res.stdout.split())
    assert rc == 0, res.stderr
    assert rss_kib < 300 * 1024, f"peak RSS {rss_kib / 1024:.0f} MiB analysing a gzip bomb"
    errors = {Path(r["path"]).name: r["reason"] for r in read_tsv(out / ANALYZE_ERRORS_TSV)}
    assert "zeros.gz" in errors
    assert len(read_tsv(out / SERIES_TSV)) == 2  # the bomb's header is a series; ok/1.dcm


def test_names_that_are_not_utf8_are_listed_not_fatal(tmp_path: Path, capsys) -> None:
    src = _study(tmp_path / "in", n_series=1)
    bsrc = os.fsencode(src)
    os.mkdir(os.path.join(bsrc, b"sub-\xff"))
    with open(os.path.join(bsrc, b"sub-\xff", b"1.dcm"), "wb") as fh:
        fh.write(_bytes(_dataset(5, 1, "p5", "p5")))
    with open(os.path.join(bsrc, b"bad\xfe.dcm"), "wb") as fh:
        fh.write(_bytes(_dataset(6, 1, "p6", "p6")))
    out = tmp_path / "out"
    capsys.readouterr()
    assert _run("analyze", src, out, "--no-progress", "--n-cpus", "1") == 0
    assert "not valid UTF-8" in capsys.readouterr().err
    assert len(read_tsv(out / SERIES_TSV)) == 1
    errors = {r["path"]: r["reason"] for r in read_tsv(out / ANALYZE_ERRORS_TSV)}
    assert "not valid UTF-8" in errors[f"{src}/sub-\\xff"]
    assert "not valid UTF-8" in errors[f"{src}/bad\\xfe.dcm"]


@pytest.mark.parametrize("where", ["same", "inside"])
def test_out_inside_input_is_refused(tmp_path: Path, capsys, where: str) -> None:
    src = _study(tmp_path / "in", n_series=1)
    before = _tree(src)
    out = src if where == "same" else src / "derivatives" / "llmh"
    capsys.readouterr()
    assert _run("analyze", src, out, "--no-progress") == 2
    err = capsys.readouterr().err
    assert "never writes into the input tree" in err and "in_llmh" in err, err
    assert _tree(src) == before
    assert sorted(p.name for p in src.iterdir()) == ["s01"]


def test_dicm_prefixed_junk_gets_the_real_reason(tmp_path: Path) -> None:
    src = _study(tmp_path / "in", n_series=1)
    (src / "junk.dcm").write_bytes(b"\0" * 128 + b"DICM" + os.urandom(3000))
    out = tmp_path / "out"
    assert _run("analyze", src, out, "--no-progress", "--n-cpus", "1") == 0
    errors = {Path(r["path"]).name: r["reason"] for r in read_tsv(out / ANALYZE_ERRORS_TSV)}
    assert "no DICM marker" not in errors["junk.dcm"]
    assert "DICM marker, but no DICOM element after it" in errors["junk.dcm"]


# --- 4. full disk, read-only OUT, a step's outputs together -----------------------------------


def _snapshot(out: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    return {n: (out / n).read_bytes() for n in names}


MAP_FILES = (MAPPED_TSV, ASSIGNMENTS_TSV, MAPPING_REPORT, GROUPS_TSV, GROUPING_REPORT)


def _fail_writes_after(monkeypatch, n: int, num: int = errno.ENOSPC) -> None:
    real = atomic._write_tmp
    calls = {"n": 0}

    def write_tmp(target, data, mode):  # noqa: ANN001
        calls["n"] += 1
        if calls["n"] > n:
            raise OSError(num, os.strerror(num), str(target))
        return real(target, data, mode)

    monkeypatch.setattr(atomic, "_write_tmp", write_tmp)


@pytest.mark.parametrize("n_ok", [0, 1, 2, 3])
def test_failed_map_leaves_every_output_as_it_was(
    tmp_path: Path, capsys, monkeypatch, n_ok: int
) -> None:
    out = _mapped(tmp_path)
    before = _snapshot(out, MAP_FILES)
    gid = Workspace(out).read_groups()[0].group_id
    review.decide(out, gid, "skip")  # the next map writes other files than before
    _fail_writes_after(monkeypatch, n_ok)
    capsys.readouterr()
    assert _run("map", out) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert "No space left on device" in err and str(out) in err and "free some space" in err
    assert _snapshot(out, MAP_FILES) == before  # all or nothing: nothing
    assert not [p.name for p in out.iterdir() if ".tmp" in p.name]
    monkeypatch.undo()
    assert _run("map", out) == 0
    after = _snapshot(out, MAP_FILES)
    assert (
        after[MAPPED_TSV] != before[MAPPED_TSV] and after[MAPPING_REPORT] != before[MAPPING_REPORT]
    )


def test_failed_generate_leaves_heuristic_report_and_policy_as_they_were(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    out = _mapped(tmp_path)
    assert _run("generate", out) == 0
    names = ("heuristic.py", "heuristic_report.txt", "generate_policy.json")
    before = _snapshot(out, names)
    for n_ok in range(3):
        _fail_writes_after(monkeypatch, n_ok)
        capsys.readouterr()
        assert _run("generate", out, "--exclude-datatype", "anat") == 2
        err = capsys.readouterr().err.strip()
        assert "Traceback" not in err and "No space left on device" in err, err
        assert _snapshot(out, names) == before, n_ok
        monkeypatch.undo()
    assert _run("generate", out, "--exclude-datatype", "anat") in (0, 1)
    assert _snapshot(out, names) != before


def test_full_disk_in_the_cache_is_one_clean_line(tmp_path: Path, capsys, monkeypatch) -> None:
    src, out = _analyzed(tmp_path)
    before = (out / SERIES_TSV).read_bytes()
    _dcm(src / "s09" / "1.dcm", 9, 1)  # something new to read

    def full(self, rows):  # noqa: ANN001
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(FactsCache, "put_many", full)
    capsys.readouterr()
    assert _run("analyze", src, out, "--no-progress", "--n-cpus", "1") == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert ".analyze_cache.sqlite" in err and "free some space" in err
    assert (out / SERIES_TSV).read_bytes() == before


def test_read_only_out_is_one_clean_line(tmp_path: Path, capsys, monkeypatch) -> None:
    out = _mapped(tmp_path)
    before = _snapshot(out, MAP_FILES)
    if os.geteuid() != 0:
        out.chmod(0o555)
    else:  # root writes anywhere: a read-only file system, faked
        real_open = os.open

        def ro_open(path, flags, *a, **kw):  # noqa: ANN001
            if str(path).startswith(str(out)) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
            return real_open(path, flags, *a, **kw)

        monkeypatch.setattr(os, "open", ro_open)
        _fail_writes_after(monkeypatch, 0, errno.EROFS)
    try:
        capsys.readouterr()
        for argv in (("group", out), ("map", out), ("generate", out)):
            assert _run(*argv) == 2, argv
            err = capsys.readouterr().err.strip()
            assert "Traceback" not in err and len(err.splitlines()) == 1, err
            assert "writable" in err and str(out) in err, err
    finally:
        out.chmod(0o755)
    monkeypatch.undo()
    assert _snapshot(out, MAP_FILES) == before


def test_a_commit_cut_short_is_finished_by_the_next_writer(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.txt").write_text("old a")
    (out / "b.txt").write_text("old b")
    batch = atomic.Batch(out)
    batch.write_text(out / "a.txt", "new a")
    batch.write_text(out / "b.txt", "new b")
    real = os.replace
    calls = {"n": 0}

    def replace(src, dst):  # noqa: ANN001
        if str(src).endswith(".tmp.txt"):
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt  # killed between the two renames
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        batch.commit()
    monkeypatch.undo()
    assert (out / atomic.COMMIT_MANIFEST).exists()
    with lock_out(out, "test"):
        pass
    assert (out / "a.txt").read_text() == "new a" and (out / "b.txt").read_text() == "new b"
    assert not (out / atomic.COMMIT_MANIFEST).exists()


# --- 5. header text: shown safely, kept as heudiconv sees it -----------------------------------


def test_escape_sequences_never_reach_a_report(tmp_path: Path) -> None:
    src = tmp_path / "in"
    evil = "\x1b]0;pwned\x07T1w\x1b[2J"
    for i in range(1, 3):
        _dcm(src / "s1" / f"{i}.dcm", 1, i, protocol=evil, desc=evil)
        _dcm(src / "s2" / f"{i}.dcm", 2, i, protocol="func_\x1b[31mrest\x07", desc="bold\x9b")
    out = tmp_path / "out"
    assert _run("analyze", src, out, "--no-progress", "--n-cpus", "1") == 0
    assert _run("group", out) == 0
    assert _run("map", out) == 0
    assert _run("generate", out) == 0
    for name in (GROUPING_REPORT, MAPPING_REPORT, "heuristic_report.txt"):
        text = (out / name).read_text()
        assert "\x1b" not in text and "\x07" not in text, name
    assert "\\x1b]0;pwned\\x07T1w" in (out / MAPPING_REPORT).read_text()
    rows = read_tsv(out / SERIES_TSV)  # the data: lossless
    assert rows[0]["series_description"] == rows[0]["protocol_name"] == evil


def test_nul_in_protocol_name_is_kept_as_heudiconv_sees_it(tmp_path: Path) -> None:
    import pydicom
    from heudiconv.utils import get_typed_attr

    src = tmp_path / "in"
    for i in range(1, 3):
        _dcm(src / "s1" / f"{i}.dcm", 1, i, protocol="T1\x00MPRAGE", desc=" lead\x00 ")
    out = tmp_path / "out"
    assert _run("analyze", src, out, "--no-progress", "--n-cpus", "1") == 0
    dcm = pydicom.dcmread(src / "s1" / "1.dcm")
    row = read_tsv(out / SERIES_TSV)[0]
    assert row["protocol_name"] == get_typed_attr(dcm, "ProtocolName", str, "") == "T1\x00MPRAGE"
    assert row["series_description"] == get_typed_attr(dcm, "SeriesDescription", str, "")


@pytest.mark.skipif(
    not (shutil.which("heudiconv") and shutil.which("dcm2niix")), reason="needs heudiconv+dcm2niix"
)
def test_nul_in_protocol_name_converts_where_validate_says(tmp_path: Path, capsys) -> None:
    """validate's OK and convert's outcome agree (once: validate OK, convert MISSING)."""
    src = tmp_path / "in"
    for i in range(1, 4):
        _dcm(src / "s1" / f"{i}.dcm", 1, i, protocol="T1\x00MPRAGE", desc="T1\x00MPRAGE")
        _dcm(src / "s2" / f"{i}.dcm", 2, i, protocol="t2_spc\x00", desc="t2 spc")
    out = tmp_path / "out"
    assert _run("analyze", src, out, "--no-progress", "--n-cpus", "1") == 0
    for step in ("group", "map", "generate", "validate"):
        assert _run(step, out) == 0, step
    capsys.readouterr()
    assert _run("convert", out, "--subject", "01", "--no-validator") == 0
    report = capsys.readouterr().out
    assert "MISSING" not in report and "2 converted, 0 skipped, 0 failed" in report, report
    anat = out / "bids" / "sub-01" / "anat"
    assert sorted(p.name for p in anat.glob("*.nii.gz")) == [
        "sub-01_T1w.nii.gz",
        "sub-01_T2w.nii.gz",
    ]
