"""GE phase-encoding polarity (UserDefineData bits) read as dcm2niix reads it.

The real GE EPI of dcm_qa_nih is unflipped (dcm2niix: ``j-``). Copies with the "flipped" bit
and/or a bottom-up ky order set, and with a ROW phase axis, must give the direction dcm2niix
writes for the same files; where dcm2niix is absent the table below (measured with dcm2niix
v1.0.20260724 on these very copies) stands in.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

pydicom = pytest.importorskip("pydicom")

# (flipped bit, bottom-up ky, phase axis) -> dcm2niix's PhaseEncodingDirection
EXPECTED = {
    (False, False, "COL"): "j-",
    (True, False, "COL"): "j",
    (False, True, "COL"): "j",
    (True, True, "COL"): "j-",
    (False, False, "ROW"): "i",
    (True, False, "ROW"): "i-",
}


def _fields(blob: bytearray) -> tuple[int, int]:
    (hdr,) = struct.unpack_from("<H", blob, 24)
    (version,) = struct.unpack_from("<f", blob, hdr)
    if version >= 25.002:
        return hdr + 0x4C + 0x30, hdr + 0x4C + 0x394 - 0x8C
    return hdr + 0x30, hdr + 0x394


def _variant(src: Path, dst: Path, flipped: bool, bottom_up: bool, axis: str) -> None:
    dst.mkdir(parents=True)
    for f in sorted(src.glob("*.dcm")):
        ds = pydicom.dcmread(f)
        blob = bytearray(ds[0x0043, 0x102A].value)
        pol, ky = _fields(blob)
        word = struct.unpack_from("<H", blob, pol)[0]
        struct.pack_into("<H", blob, pol, (word | 4) if flipped else (word & ~4))
        struct.pack_into("<H", blob, ky, 2 if bottom_up else 0)
        ds[0x0043, 0x102A].value = bytes(blob)
        ds.InPlanePhaseEncodingDirection = axis
        ds.save_as(dst / f.name)


def _dcm2niix(folder: Path, out: Path) -> str | None:
    exe = shutil.which("dcm2niix")
    if exe is None:
        return None
    out.mkdir()
    subprocess.run([exe, "-b", "o", "-o", str(out), "-f", "x", str(folder)], capture_output=True)
    return json.loads((out / "x.json").read_text()).get("PhaseEncodingDirection")


@pytest.mark.parametrize(("flipped", "bottom_up", "axis"), list(EXPECTED))
def test_ge_polarity_agrees_with_dcm2niix(
    flipped: bool, bottom_up: bool, axis: str, shared_data: Path, tmp_path: Path
) -> None:
    from engine.cli import main
    from engine.workspace import Workspace

    src = shared_data / "dicom" / "dcm_qa_nih" / "In" / "20180918GE" / "mr_0004"
    if not src.is_dir():
        pytest.skip(f"{src} not present")
    ins = tmp_path / "in"
    _variant(src, ins, flipped, bottom_up, axis)
    want = _dcm2niix(ins, tmp_path / "nii") or EXPECTED[(flipped, bottom_up, axis)]
    assert want == EXPECTED[(flipped, bottom_up, axis)]
    out = tmp_path / "out"
    assert main(["analyze", str(ins), str(out), "--no-progress", "--n-cpus", "1"]) == 0
    (series,) = Workspace(out).read_series()
    assert series.pe_direction == want


def test_non_epi_and_short_blobs_give_no_polarity(shared_data: Path) -> None:
    """The bits mean something else outside an EPI; a cut blob is unknown, never a guess."""
    from engine.scan.dcmparse import parse_file_bytes
    from engine.scan.dcmtags import SPEC, TAGS
    from engine.scan.dcmvendor import ge_pe_positive

    src = shared_data / "dicom" / "dcm_qa_nih" / "In" / "20180918GE" / "mr_0004"
    f = next(iter(sorted(src.glob("*.dcm"))), None)
    if f is None:
        pytest.skip(f"{src} not present")
    ds = parse_file_bytes(f.read_bytes(), SPEC)[0]
    assert ge_pe_positive(ds) == "1"
    tag = TAGS["GEUserData"][0]
    vr, blob = ds[tag]
    blob = bytearray(blob)
    (hdr,) = struct.unpack_from("<H", blob, 24)
    epi = hdr + 0x4C + 0x3A
    struct.pack_into("<H", blob, epi, struct.unpack_from("<H", blob, epi)[0] & ~0x800)
    ds[tag] = (vr, bytes(blob))
    assert ge_pe_positive(ds) == ""
    ds[tag] = (vr, bytes(blob[:200]))
    assert ge_pe_positive(ds) == ""
