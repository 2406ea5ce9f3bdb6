"""``analyze``: bad input never stops a scan, incremental cache, resume, CLI behaviour."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import pytest

from engine.atomic import read_tsv
from engine.cli import main
from engine.scan import pipeline
from engine.scan.cache import CACHE_NAME, FactsCache
from engine.scan.discover import discover
from engine.workspace import ANALYZE_ERRORS_TSV, read_series

NIH_SI = "dicom/dcm_qa_nih/In/20180918Si"


def _copy_tree(shared_data: Path, tmp_path: Path) -> Path:
    src = tmp_path / "in"
    shutil.copytree(shared_data / NIH_SI, src)
    return src


def _tree_state(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()
    }


def test_bad_input_never_stops_the_scan(shared_data: Path, tmp_path: Path, capsys) -> None:
    src = _copy_tree(shared_data, tmp_path)
    good = sorted(src.rglob("*.dcm"))
    data = good[0].read_bytes()
    junk = src / "junk"
    junk.mkdir()
    (junk / "empty.dcm").write_bytes(b"")
    (junk / "truncated.dcm").write_bytes(data[: len(data) // 3])
    (junk / "header_only_cut").write_bytes(data[:400])
    corrupt = bytearray(data)
    corrupt[140:160] = b"\xff" * 20
    (junk / "corrupt.dcm").write_bytes(bytes(corrupt))
    (junk / "notes.txt").write_text("hello\n")
    (junk / "noext").write_bytes(data)  # a good file without extension
    (junk / "gz.dcm.gz").write_bytes(gzip.compress(data))  # a good gzip file
    (junk / "badgz.dcm.gz").write_bytes(b"\x1f\x8b" + b"garbage")
    os.symlink(junk, junk / "loop")  # symlink loop
    os.symlink(junk / "missing", junk / "dangling")
    locked = junk / "locked"
    locked.mkdir()
    (locked / "x.dcm").write_bytes(data)
    locked.chmod(0)
    before = _tree_state(src)
    out = tmp_path / "out"
    try:
        rc = main(["analyze", str(src), str(out), "--n-cpus", "2", "--no-progress"])
    finally:
        locked.chmod(0o755)
    assert rc == 0
    rows = read_tsv(out / ANALYZE_ERRORS_TSV)
    errors = {Path(r["path"]).name: r["reason"] for r in rows}
    assert all(r["reason"] for r in rows)
    for name in (
        "empty.dcm",
        "truncated.dcm",
        "header_only_cut",
        "corrupt.dcm",
        "notes.txt",
        "badgz.dcm.gz",
        "dangling",
    ):
        assert name in errors, (name, errors)
    assert "loop" in errors
    if os.geteuid() != 0:  # root reads anything
        assert "locked" in errors
    assert "noext" not in errors and "gz.dcm.gz" not in errors
    series = read_series(out)
    assert len(series) == 4
    assert sum(s.series_files for s in series) >= 8 + 2  # the copies join their series
    assert f"{len(rows)} problem(s)" in capsys.readouterr().err
    assert _tree_state(src) == before  # INPUT never written


def test_no_dicom_is_a_user_error(tmp_path: Path, capsys) -> None:
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.txt").write_text("x")
    rc = main(["analyze", str(src), str(tmp_path / "out"), "--no-progress"])
    assert rc == 2
    assert "no DICOM" in capsys.readouterr().err


def test_incremental_rescan_changed_and_deleted(shared_data: Path, tmp_path: Path) -> None:
    src = _copy_tree(shared_data, tmp_path)
    out = tmp_path / "out"
    r1 = pipeline.scan(src, out, n_cpus=1, progress=False)
    assert r1.n_read == r1.n_files and len(r1.series) == 4
    r2 = pipeline.scan(src, out, n_cpus=1, progress=False)
    assert r2.n_read == 0 and [s.to_row() for s in r2.series] == [s.to_row() for s in r1.series]
    # a changed file is re-read, nothing else
    f = sorted(src.rglob("*.dcm"))[0]
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 1_000_000))
    r3 = pipeline.scan(src, out, n_cpus=1, progress=False)
    assert r3.n_read == 1
    # a deleted series disappears
    shutil.rmtree(src / "mr_0006")
    r4 = pipeline.scan(src, out, n_cpus=1, progress=False)
    assert r4.n_read == 0 and len(r4.series) == 3
    cache = FactsCache(out / CACHE_NAME)
    assert not any("mr_0006" in p for p in cache.known())
    cache.close()


def _age_folders(root: Path, seconds: int = 3600) -> None:
    """Folder times an hour old: a scan trusts no folder modified just before it began."""
    past = (os.stat(root).st_atime_ns, os.stat(root).st_mtime_ns - seconds * 10**9)
    for d in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        os.utime(d, ns=past)


def test_trust_folder_times(shared_data: Path, tmp_path: Path) -> None:
    """``--trust-folder-times``: no stat per file while no folder changed; a file added,
    removed or renamed changes its folder; a file rewritten in place is the documented miss."""
    src = _copy_tree(shared_data, tmp_path)
    out = tmp_path / "out"
    _age_folders(src)
    scan = pipeline.scan
    r1 = scan(src, out, n_cpus=1, progress=False, trust_folder_times=True)
    assert r1.reused == "" and r1.n_read == r1.n_files
    r2 = scan(src, out, n_cpus=1, progress=False, trust_folder_times=True)
    assert r2.reused == "folders" and r2.n_files == r1.n_files
    assert [s.to_row() for s in r2.series] == [s.to_row() for s in r1.series]
    assert r2.errors == r1.errors and r2.n_dicom == r1.n_dicom
    # other options: the folder times say nothing about that result
    r3 = scan(src, out, n_cpus=1, progress=False, trust_folder_times=True,
              subject_pattern=r"(?P<subject>In)")  # fmt: skip
    assert r3.reused != "folders"
    scan(src, out, n_cpus=1, progress=False)
    # a file added: its folder's time changes, the walk runs and reads just that file
    series_dir = sorted(d for d in src.iterdir() if d.is_dir())[0]
    first = sorted(series_dir.iterdir())[0]
    shutil.copy2(first, series_dir / "zz_copy.dcm")
    r4 = scan(src, out, n_cpus=1, progress=False, trust_folder_times=True)
    assert r4.reused == "" and r4.n_read == 1 and r4.n_files == r1.n_files + 1
    # ... modified just now: not trusted by the next run (could change again in the same tick)
    r5 = scan(src, out, n_cpus=1, progress=False, trust_folder_times=True)
    assert r5.reused == "files"
    _age_folders(src)
    scan(src, out, n_cpus=1, progress=False, trust_folder_times=True)
    assert scan(src, out, n_cpus=1, progress=False, trust_folder_times=True).reused == "folders"
    # rewritten in place (same name): the folder's time stays -> not seen with the option ...
    st = first.stat()
    first.write_bytes(b"not a DICOM file any more")
    os.utime(first, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert scan(src, out, n_cpus=1, progress=False, trust_folder_times=True).reused == "folders"
    # ... and seen by the default re-scan (a stat per file)
    r6 = scan(src, out, n_cpus=1, progress=False)
    assert r6.reused == "" and r6.n_read == 1
    assert any(p == str(first) and "not DICOM" in why for p, why in r6.errors)


def test_trust_folder_times_cli(shared_data: Path, tmp_path: Path, capsys) -> None:
    src = _copy_tree(shared_data, tmp_path)
    _age_folders(src)
    out = tmp_path / "out"
    assert main(["analyze", str(src), str(out), "--no-progress"]) == 0
    before = (out / "aggregated_dicominfo.tsv").read_bytes()
    capsys.readouterr()
    assert main(["analyze", str(src), str(out), "--no-progress", "--trust-folder-times"]) == 0
    assert "no folder changed" in capsys.readouterr().err
    assert (out / "aggregated_dicominfo.tsv").read_bytes() == before


def test_interrupted_scan_resumes(shared_data: Path, tmp_path: Path, monkeypatch) -> None:
    src = tmp_path / "in"
    shutil.copytree(shared_data / "dicom/dcm_qa_fmap/In/Siemens", src)
    out = tmp_path / "out"
    n_total = len(discover(str(src)).files)
    calls = {"n": 0}
    sizes: list[int] = []
    real = pipeline.read_chunk

    def dying(items):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        sizes.append(len(items))
        return real(items)

    monkeypatch.setattr(pipeline, "read_chunk", dying)
    with pytest.raises(KeyboardInterrupt):
        pipeline.scan(src, out, n_cpus=1, progress=False)
    monkeypatch.setattr(pipeline, "read_chunk", real)
    res = pipeline.scan(src, out, n_cpus=1, progress=False)
    assert len(sizes) == 2 and res.n_read == n_total - sum(sizes)  # two tasks were committed
    assert len(res.series) == 4


def test_parallel_equals_serial(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "dicom/dcm_qa_fmap/In"
    a = pipeline.scan(src, tmp_path / "a", n_cpus=1, progress=False)
    b = pipeline.scan(src, tmp_path / "b", n_cpus=2, progress=False)
    assert [s.to_row() for s in a.series] == [s.to_row() for s in b.series]


def test_subject_session_from_path_and_multi_study_sessions(
    shared_data: Path, tmp_path: Path
) -> None:
    # dcm_qa_nih holds two studies of PatientID "DEV": sessions 01/02 by StudyDate/Time
    res = pipeline.scan(
        shared_data / "dicom/dcm_qa_nih/In", tmp_path / "o", n_cpus=1, progress=False
    )
    assert {s.subject for s in res.series} == {"DEV"}
    assert {s.session for s in res.series} == {"01", "02"}
    by_ses = {s.session: s.manufacturer.upper()[:2] for s in res.series}
    assert len(set(by_ses.values())) == 2
    res = pipeline.scan(
        shared_data / "dicom/dcm_qa_nih/In",
        tmp_path / "p",
        n_cpus=1,
        progress=False,
        subject_pattern=r"/In/(?P<subject>\d+)(?:GE|Si)/",
        session_pattern=r"/mr_(\d+)/",
    )
    assert {s.subject for s in res.series} == {"20180918"}
    assert {s.session for s in res.series} == {"0003", "0004", "0005", "0006", "0007"}


def test_single_study_has_no_session(shared_data: Path, tmp_path: Path) -> None:
    res = pipeline.scan(shared_data / NIH_SI, tmp_path / "o", n_cpus=1, progress=False)
    assert {s.session for s in res.series} == {""}


def test_heudiconv_dicominfo_import(tmp_path: Path, shared_data: Path) -> None:
    # a dicominfo.tsv as heudiconv writes it (made from our own scan, heudiconv columns only)
    from engine.atomic import write_tsv_atomic
    from engine.model import SEQINFO_COLUMNS

    res = pipeline.scan(shared_data / NIH_SI, tmp_path / "o", n_cpus=1, progress=False)
    info = tmp_path / "h" / ".heudiconv" / "S01" / "ses-2" / "info"
    write_tsv_atomic(
        info / "dicominfo_ses-2.tsv", SEQINFO_COLUMNS, [s.to_row() for s in res.series]
    )
    out = tmp_path / "out"
    assert main(["analyze", str(tmp_path / "h"), str(out)]) == 0
    got = read_series(out)
    assert [s.series_id for s in got] == [s.series_id for s in res.series]
    assert {(s.subject, s.session) for s in got} == {("S01", "2")}
    assert got[0].image_type == res.series[0].image_type and got[0].TR == res.series[0].TR


def test_dicomdir_is_not_an_error(shared_data: Path, tmp_path: Path) -> None:
    pydicom = pytest.importorskip("pydicom")
    from pydicom.fileset import FileSet

    src = tmp_path / "in"
    fs = FileSet()
    for p in sorted((shared_data / NIH_SI).rglob("*.dcm")):
        fs.add(pydicom.dcmread(p))
    fs.write(src)
    res = pipeline.scan(src, tmp_path / "o", n_cpus=1, progress=False)
    assert len(res.series) == 4
    assert not res.errors
