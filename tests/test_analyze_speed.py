"""The fast paths of the header scan give exactly the facts of a full decode of each file.

Fast paths: prefix reads (``os.read`` of the header's size, whole file only when needed),
series templates (a file of the previous file's series decodes only its per-file facts),
layout walks (runs of elements byte-identical to the template file's are jumped over),
per-frame items read against the first item, and the compact cache rows (template once,
per-file differences per row).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.scan.cache import CACHE_NAME, FactsCache
from engine.scan.header import NotDicom, Reader, facts_from_bytes
from engine.scan.pipeline import scan

SETS = ["dcm_qa_nih", "dcm_qa_fmap", "dcm_qa_xa30", "heudiconv_testdata"]


def _full(path: Path) -> dict | None:
    try:
        return json.loads(json.dumps(facts_from_bytes(path.read_bytes(), plain=True)))
    except NotDicom:
        return None


def _assert_cache_equals_full_decode(src: Path, out: Path, n_cpus: int) -> int:
    scan(src, out, n_cpus=n_cpus, progress=False)
    cache = FactsCache(out / CACHE_NAME)
    n = 0
    try:
        for path, _status, facts, err in cache.rows():
            full = _full(Path(path))
            assert (facts is None) == (full is None), (path, err)
            assert facts == full, path
            n += facts is not None
    finally:
        cache.close()
    return n


@pytest.mark.slow
@pytest.mark.parametrize("name", SETS)
def test_real_sets_cache_equals_full_decode(name: str, shared_data: Path, tmp_path: Path) -> None:
    assert _assert_cache_equals_full_decode(shared_data / "dicom" / name, tmp_path, 2) > 0


@pytest.mark.slow
@pytest.mark.parametrize(
    "vendor,gz,layout",
    [("ge", False, "nested"), ("philips", True, "nested"), ("mixed", False, "flat")],
)
def test_synthetic_cache_equals_full_decode(
    tmp_path: Path, vendor: str, gz: bool, layout: str
) -> None:
    """``flat``: files of all series interleaved in path order (the reader switches states)."""
    synth = pytest.importorskip("engine.synth")
    synth.generate_study(tmp_path / "s", subjects=1, vendor=vendor, gzip=gz, layout=layout, seed=2)
    assert _assert_cache_equals_full_decode(tmp_path / "s" / "dicom", tmp_path / "o", 1) > 0


def test_header_longer_than_the_first_read(tmp_path: Path) -> None:
    """A header past the 16 KiB prefix (big private element) is read whole, same facts."""
    pydicom = pytest.importorskip("pydicom")
    synth = pytest.importorskip("engine.synth")
    synth.generate_study(tmp_path / "s", subjects=1, vendor="siemens", seed=1)
    files = sorted(p for p in (tmp_path / "s" / "dicom").rglob("*.dcm"))[:3]
    for i, p in enumerate(files):
        ds = pydicom.dcmread(p)
        blk = ds.private_block(0x0011, "LLMH TEST", create=True)
        blk.add_new(0x01, "OB", bytes([i]) * 40000)
        ds.save_as(p, enforce_file_format=True)
    r = Reader()
    for p in files:
        assert json.loads(json.dumps(r.read(str(p)))) == _full(p)
    assert r.hint > 40000  # the next read asks for the whole header at once


def test_ge_and_philips_complex_part(tmp_path: Path) -> None:
    """GE (0043,102F) and Philips (2005,1011) give complex_part; only under their creators."""
    pydicom = pytest.importorskip("pydicom")
    synth = pytest.importorskip("engine.synth")
    synth.generate_study(tmp_path / "ge", subjects=1, vendor="ge", seed=4)
    res = scan(tmp_path / "ge" / "dicom", tmp_path / "o_ge", n_cpus=1, progress=False)
    parts = {s.series_description: s.complex_part for s in res.series}
    assert parts["Ax GRE B0 Fieldmap Phase Diff"] == "phase"
    assert parts["motor fMRI"] in {"mag", "phase"}
    assert {"mag", "phase"} <= set(parts.values())

    synth.generate_study(tmp_path / "ph", subjects=1, vendor="philips", seed=4)
    f = sorted((tmp_path / "ph" / "dicom").rglob("*.dcm"))[0]
    ds = pydicom.dcmread(f)
    ds.private_block(0x2005, "Philips MR Imaging DD 001", create=True).add_new(0x11, "CS", "P")
    ds.save_as(tmp_path / "ph_p.dcm", enforce_file_format=True)
    assert facts_from_bytes((tmp_path / "ph_p.dcm").read_bytes())["complex_parts"] == ["PHASE"]
    ds2 = pydicom.dcmread(f)
    ds2.private_block(0x2005, "SOMEONE ELSE", create=True).add_new(0x11, "CS", "P")
    ds2.save_as(tmp_path / "ph_x.dcm", enforce_file_format=True)
    assert "PHASE" not in facts_from_bytes((tmp_path / "ph_x.dcm").read_bytes())["complex_parts"]
