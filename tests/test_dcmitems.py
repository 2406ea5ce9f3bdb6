"""Per-frame items read against the first item give exactly the datasets of the plain walk.

The enhanced files are written with pydicom: per-frame functional groups whose leaves vary
in value and in length, in items and sequences of defined and undefined length, frames of
another structure midway, and a private sequence sent as UN (not walkable flat).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.sequence import Sequence  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, generate_uid  # noqa: E402

from engine.scan.dcmparse import parse_file_bytes  # noqa: E402
from engine.scan.header import SPEC, Reader, facts_from_bytes  # noqa: E402


def _seq(items: list[Dataset], undefined: bool) -> Sequence:
    for it in items:
        it.is_undefined_length_sequence_item = undefined
    return Sequence(items)


def _frame(i: int, undefined: bool, odd: bool) -> Dataset:
    f = Dataset()
    content = Dataset()
    content.TemporalPositionIndex = 1 + i // 4
    content.DimensionIndexValues = [1 + i // 4, 1 + i % 4]
    content.FrameAcquisitionDateTime = f"20250101120000.{i * 12345:06d}"  # not kept, varies
    f.FrameContentSequence = _seq([content], undefined)
    pos = Dataset()
    pos.ImagePositionPatient = [-100.5, 20.25, i * 3.7]  # the string length varies
    f.PlanePositionSequence = _seq([pos], undefined)
    echo = Dataset()
    echo.EffectiveEchoTime = 2.5 if i % 2 else 7.25
    f.MREchoSequence = _seq([echo], undefined)
    diff = Dataset()
    diff.DiffusionBValue = 0 if i < 4 else 1000
    grad = Dataset()
    grad.DiffusionGradientOrientation = [0.0, 0.0, 0.0] if i < 4 else [0.5, -0.5, 0.7071]
    diff.DiffusionGradientDirectionSequence = _seq([grad], undefined)
    f.MRDiffusionSequence = _seq([diff], undefined)
    src = Dataset()
    src.ReferencedSOPInstanceUID = generate_uid(entropy_srcs=[str(i)])  # not kept, varies
    f.DerivationImageSequence = _seq([src], undefined)
    if odd:  # another structure: one more macro
        ftype = Dataset()
        ftype.FrameType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
        ftype.ComplexImageComponent = "MAGNITUDE"
        f.MRImageFrameTypeSequence = _seq([ftype], undefined)
    for kw in ("FrameContentSequence", "PlanePositionSequence", "MREchoSequence",
               "MRDiffusionSequence", "DerivationImageSequence", "MRImageFrameTypeSequence"):  # fmt: skip
        if kw in f:
            f[kw].is_undefined_length = undefined
    return f


def _write(path: Path, n: int, undefined: bool, odd_from: int | None = None,
           un_private: bool = False) -> Path:  # fmt: skip
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4.1"
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = "1.2.3.4"
    ds.SeriesInstanceUID = "1.2.3.4.5"
    ds.Modality = "MR"
    ds.Manufacturer = "SIEMENS"
    ds.SeriesDescription = "ep2d_diff"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "DIFFUSION", "NONE"]
    ds.PatientID = "P1"
    ds.NumberOfFrames = n
    ds.Rows = ds.Columns = 2
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    frames = [_frame(i, undefined, odd_from is not None and i >= odd_from) for i in range(n)]
    if un_private:  # a placeholder, replaced below by a private SQ sent as UN
        for f in frames:
            f.private_block(0x0021, "SIEMENS MR SDI 02", create=True).add_new(0xFE, "LO", "PH")
    ds.PerFrameFunctionalGroupsSequence = _seq(frames, undefined)
    ds["PerFrameFunctionalGroupsSequence"].is_undefined_length = undefined
    ds.PixelData = b"\0" * 8 * n
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    if un_private:  # implicit VR inside, undefined lengths: as some PACS pass it on
        raw = path.read_bytes()
        ph = b"\x21\x00\xfe\x10LO\x02\x00PH"
        un = (
            b"\x21\x00\xfe\x10UN\x00\x00\xff\xff\xff\xff"
            + b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
            + b"\x21\x00\x01\x10\x04\x00\x00\x00abcd"
            + b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
            + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
        )
        assert raw.count(ph) == n
        path.write_bytes(raw.replace(ph, un))
    return path


CASES = {
    "undefined": dict(undefined=True),
    "defined": dict(undefined=False),
    "structure changes": dict(undefined=True, odd_from=5),
    "defined, structure changes": dict(undefined=False, odd_from=3),
    "private SQ as UN": dict(undefined=True, un_private=True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_template_read_equals_plain_walk(tmp_path: Path, case: str) -> None:
    path = _write(tmp_path / "f.dcm", 12, **CASES[case])
    buf = path.read_bytes()
    fast, _ = parse_file_bytes(buf, SPEC)
    plain, _ = parse_file_bytes(buf, SPEC, plain=True)
    assert fast == plain
    frames = plain[0x52009230]
    assert len(frames) == 12
    # the varying kept leaves really are per frame (not the first frame's values repeated)
    ipps = {bytes(f[0x00209113][0][0x00200032][1]) for f in fast[0x52009230]}
    assert len(ipps) == 12
    facts = Reader().read(str(path))
    assert json.loads(json.dumps(facts)) == json.loads(json.dumps(facts_from_bytes(buf, True)))
    assert facts["bvalues"] == [0, 1000] and len(facts["ipps"]) == 12


def test_template_carries_to_the_next_file_of_the_series(tmp_path: Path) -> None:
    """Files of one series: the second file's frames are read against the first file's."""
    a = _write(tmp_path / "a.dcm", 8, undefined=True)
    b = _write(tmp_path / "b.dcm", 10, undefined=True, odd_from=9)
    r = Reader()
    for p in (a, b, a):
        got = json.loads(json.dumps(r.read(str(p))))
        assert got == json.loads(json.dumps(facts_from_bytes(p.read_bytes(), True)))


def test_length_change_inside_defined_item_is_walked(tmp_path: Path) -> None:
    """A leaf that grows inside a defined-length item changes that item's length: the
    template must not be used for it (the plain walk decides)."""
    path = _write(tmp_path / "f.dcm", 6, undefined=False)
    buf = path.read_bytes()
    fast, _ = parse_file_bytes(buf, SPEC)
    plain, _ = parse_file_bytes(buf, SPEC, plain=True)
    lengths = {len(f[0x00209113][0][0x00200032][1]) for f in plain[0x52009230]}
    assert len(lengths) > 1  # the case is really exercised
    assert fast == plain
