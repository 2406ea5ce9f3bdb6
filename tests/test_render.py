"""engine.vision.render: real DICOM and radiographs against pydicom's own LUT functions,
synthetic MONOCHROME1 / RGB / YBR_FULL / multi-frame / VOI LUT datasets built here."""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut, convert_color_space
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from engine.vision import RenderError, render, render_info, to_png

# ../shared/data beside the project (as tests/conftest.py says); absent in a fresh clone
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DICOM = SHARED_DATA / "dicom"
NIH = SHARED_DATA / "cxr" / "nih_images"


# --- references computed with pydicom ------------------------------------------------------------

FRAME_SEQS = ("PixelValueTransformationSequence", "FrameVOILUTSequence")
FLAT_KEYWORDS = (
    "PhotometricInterpretation",
    "BitsStored",
    "PixelRepresentation",
    "RescaleSlope",
    "RescaleIntercept",
    "ModalityLUTSequence",
    "WindowCenter",
    "WindowWidth",
    "VOILUTFunction",
    "VOILUTSequence",
)


def _flat(ds: Dataset, idx: int) -> Dataset:
    """A plain dataset with frame ``idx``'s modality and VOI attributes at the top level
    (shared functional groups, then the frame's own overriding them)."""
    flat = Dataset()
    for kw in FLAT_KEYWORDS:
        if kw in ds:
            flat[kw] = ds[kw]
    groups = []
    if "SharedFunctionalGroupsSequence" in ds:
        groups.append(ds.SharedFunctionalGroupsSequence[0])
    if "PerFrameFunctionalGroupsSequence" in ds:
        groups.append(ds.PerFrameFunctionalGroupsSequence[idx])
    for group in groups:
        for seq in FRAME_SEQS:
            if seq in group and len(group[seq].value):
                for elem in group[seq].value[0]:
                    flat[elem.tag] = elem
    return flat


def reference(ds: Dataset, idx: int, percentiles=(1.0, 99.0)) -> np.ndarray:
    """The 8-bit grey image pydicom's apply_modality_lut/apply_voi_lut give for a frame."""
    arr = ds.pixel_array
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        arr = arr[idx]
    flat = _flat(ds, idx)
    x = apply_modality_lut(arr, flat).astype(np.float64)
    if "VOILUTSequence" in flat:
        x = np.rint(x).astype(np.int64)  # a LUT is indexed by integers
    if "WindowCenter" in flat or "VOILUTSequence" in flat:
        with np.errstate(over="ignore"):  # SIGMOID's exp of far-off values
            y = apply_voi_lut(x, flat)
            if "VOILUTSequence" in flat:
                lo, hi = 0.0, float(2 ** int(flat.VOILUTSequence[0].LUTDescriptor[2]) - 1)
            else:  # the window sends the extremes to its output range
                lo, hi = (float(v) for v in apply_voi_lut(np.array([-1e15, 1e15]), flat))
        y = (np.asarray(y, dtype=np.float64) - lo) / (hi - lo)
    else:
        lo, hi = np.percentile(x, percentiles)
        y = (x - lo) / (hi - lo)
    out = np.clip(y, 0, 1)
    if str(flat.PhotometricInterpretation) == "MONOCHROME1":
        out = 1 - out
    return (out * 255 + 0.5).astype(np.uint8)


def _assert_close(got: np.ndarray, ref: np.ndarray, what: str) -> None:
    assert got.shape == ref.shape, what
    diff = np.abs(got.astype(int) - ref.astype(int))
    assert diff.max() <= 1, f"{what}: max difference {diff.max()}"
    assert abs(got.mean() - ref.mean()) < 0.5, what
    assert abs(got.std() - ref.std()) < 0.5, what


def _real_files() -> list[Path]:
    """The middle file of each series folder of the real sets (one per folder)."""
    if not DICOM.is_dir():
        return []
    out = []
    for dirpath, dirs, files in os.walk(DICOM):
        dirs.sort()
        if "/Ref" in dirpath or not files:
            continue
        files = sorted(f for f in files if not f.endswith((".json", ".bval", ".bvec", ".txt")))
        if files:
            out.append(Path(dirpath) / files[len(files) // 2])
    return out


REAL = _real_files()


@pytest.mark.skipif(not REAL, reason=f"real DICOM not present at {DICOM}")
@pytest.mark.parametrize("path", REAL, ids=[str(p.relative_to(DICOM)) for p in REAL])
def test_real_dicom_matches_pydicom_luts(path: Path):
    ds = pydicom.dcmread(path, force=True)
    if "PixelData" not in ds:
        with pytest.raises(RenderError, match="no pixel data"):
            render(path)
        return
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    r = render_info(path)
    assert r.frames == frames and r.frame == frames // 2
    assert r.image.size == (int(ds.Columns), int(ds.Rows))
    got = np.asarray(r.image)
    if int(ds.SamplesPerPixel) == 3:
        ref = ds.pixel_array[r.frame] if frames > 1 else ds.pixel_array
        assert r.image.mode == "RGB" and r.method == "colour"
        assert np.array_equal(got, ref)
        return
    assert r.image.mode == "L"
    _assert_close(got, reference(ds, r.frame), path.name)
    if frames > 2:  # another frame of an enhanced file: its own functional groups
        r0 = render_info(ds, frame=0)
        _assert_close(np.asarray(r0.image), reference(ds, 0), f"{path.name} frame 0")


def test_real_enhanced_per_frame_windows_differ():
    f = DICOM / "dcm_qa_fmap" / "In" / "Philips" / "fmap" / "IM_0027_fMAP.dcm"
    if not f.exists():
        pytest.skip(f"{f} not present")
    ds = pydicom.dcmread(f)
    windows = {render_info(ds, frame=i).window for i in (0, ds.NumberOfFrames - 1)}
    assert len(windows) == 2  # magnitude and B0 map frames carry their own windows
    with pytest.raises(RenderError, match="out of range"):
        render(ds, frame=int(ds.NumberOfFrames))


@pytest.mark.skipif(not NIH.is_dir(), reason=f"radiographs not present at {NIH}")
def test_radiograph_png_and_jpeg():
    pngs = sorted(NIH.glob("*.png"))
    assert pngs
    for p in pngs:
        with Image.open(p) as im:
            ref = np.asarray(im.convert("L"))
        r = render_info(p)
        assert r.kind == "image" and r.image.mode == "L"
        got = np.asarray(r.image)
        assert got.shape == ref.shape and np.array_equal(got, ref)
    # the same radiograph as JPEG bytes, and fitted into a box
    buf = io.BytesIO()
    Image.fromarray(ref).save(buf, format="JPEG", quality=95)
    small = render(buf.getvalue(), size=256)
    assert small.size == (256, 256) and small.mode == "L"
    ref_small = np.asarray(Image.fromarray(ref).resize((256, 256), Image.Resampling.LANCZOS))
    assert abs(np.asarray(small).mean() - ref_small.mean()) < 2.0
    assert render(pngs[0], size=(100, 50)).size == (50, 50)


# --- synthetic datasets --------------------------------------------------------------------------


def _dataset(arr: np.ndarray, pi: str = "MONOCHROME2", **attrs) -> Dataset:
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = Dataset()
    ds.file_meta = meta
    colour = pi not in ("MONOCHROME1", "MONOCHROME2")
    frames = arr.shape[0] if arr.ndim == (4 if colour else 3) else 1
    rows, cols = arr.shape[-3:-1] if colour else arr.shape[-2:]
    ds.Rows, ds.Columns = int(rows), int(cols)
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = pi
    bits = arr.dtype.itemsize * 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
    ds.PixelRepresentation = 1 if arr.dtype.kind == "i" else 0
    if colour:
        ds.PlanarConfiguration = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    for k, v in attrs.items():
        setattr(ds, k, v)
    ds.PixelData = np.ascontiguousarray(arr).tobytes()
    return ds


def _ramp(rows=32, cols=48, top=4000) -> np.ndarray:
    return (np.linspace(0, top, rows * cols).reshape(rows, cols)).astype(np.uint16)


def test_window_first_of_several_values_and_rescale():
    ds = _dataset(
        _ramp(),
        RescaleSlope=2,
        RescaleIntercept=-1000,
        WindowCenter=[1000, 3000],
        WindowWidth=[2000, 6000],
    )
    r = render_info(ds)
    assert r.method == "window" and r.window == (0.0, 2000.0)
    _assert_close(np.asarray(r.image), reference(ds, 0), "window")


def test_sigmoid_and_linear_exact_windows():
    for fn in ("SIGMOID", "LINEAR_EXACT"):
        ds = _dataset(_ramp(), WindowCenter=2000, WindowWidth=1500, VOILUTFunction=fn)
        _assert_close(np.asarray(render(ds)), reference(ds, 0), fn)


def test_percentiles_when_no_window():
    arr = _ramp()
    arr[0, 0] = 65535  # an outlier the percentiles ignore
    ds = _dataset(arr)
    r = render_info(ds)
    assert r.method == "percentile"
    _assert_close(np.asarray(r.image), reference(ds, 0), "percentile")
    assert np.asarray(render(ds, percentiles=(0, 100)))[0, 0] == 255


def test_monochrome1_is_inverted():
    arr = _ramp()
    ds1 = _dataset(arr, "MONOCHROME1", WindowCenter=2000, WindowWidth=4000)
    ds2 = _dataset(arr, "MONOCHROME2", WindowCenter=2000, WindowWidth=4000)
    a1, a2 = np.asarray(render(ds1)), np.asarray(render(ds2))
    assert a1[0, 0] == 255 and a1[-1, -1] == 0  # low values white
    assert np.array_equal(a1, 255 - a2)
    _assert_close(a1, reference(ds1, 0), "MONOCHROME1")
    # a DX-style MONOCHROME1 with Presentation LUT Shape INVERSE is inverted once, not twice
    ds1.PresentationLUTShape = "INVERSE"
    assert np.array_equal(np.asarray(render(ds1)), a1)
    ds2.PresentationLUTShape = "INVERSE"
    assert np.array_equal(np.asarray(render(ds2)), a1)


def test_voi_lut_sequence():
    lut = Dataset()
    lut.LUTDescriptor = [256, 0, 12]
    lut.LUTData = [int(v) for v in (np.linspace(0, 1, 256) ** 0.5 * 4095)]
    ds = _dataset((_ramp(top=300)).astype(np.uint16), VOILUTSequence=[lut])
    r = render_info(ds)
    assert r.method == "voi-lut"
    _assert_close(np.asarray(r.image), reference(ds, 0), "VOI LUT")


def _colour_image() -> np.ndarray:
    yy, xx = np.mgrid[0:24, 0:40]
    return np.stack([xx * 6, yy * 10, 255 - xx * 6], axis=-1).astype(np.uint8)


def test_rgb_both_planar_configurations():
    rgb = _colour_image()
    ds = _dataset(rgb, "RGB")
    r = render_info(ds)
    assert r.image.mode == "RGB" and np.array_equal(np.asarray(r.image), rgb)
    planar = _dataset(rgb, "RGB")
    planar.PlanarConfiguration = 1
    planar.PixelData = np.ascontiguousarray(rgb.transpose(2, 0, 1)).tobytes()
    assert np.array_equal(np.asarray(render(planar)), rgb)


def test_ybr_full_becomes_rgb():
    rgb = _colour_image()
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    ds = _dataset(ybr, "YBR_FULL")
    got = np.asarray(render(ds))
    assert np.abs(got.astype(int) - rgb.astype(int)).max() <= 2


def test_multi_frame_middle_chosen_and_negative_frames():
    frames = np.stack([np.full((16, 16), 100 * (i + 1), np.uint16) for i in range(5)])
    frames[:, 0, 0] = 0  # every frame has a dark corner
    ds = _dataset(frames, WindowCenter=300, WindowWidth=600)
    r = render_info(ds)
    assert (r.frames, r.frame) == (5, 2)
    assert np.asarray(r.image)[8, 8] == reference(ds, 2)[8, 8]
    assert render_info(ds, frame=0).frame == 0
    assert render_info(ds, frame=-1).frame == 4
    means = [np.asarray(render(ds, frame=i)).mean() for i in range(5)]
    assert means == sorted(means) and means[0] < means[-1]
    with pytest.raises(RenderError):
        render(ds, frame=5)


def test_enhanced_functional_groups(tmp_path):
    frames = np.stack([_ramp(16, 16, top=1000) + 500 * i for i in range(3)]).astype(np.uint16)
    ds = _dataset(frames)
    shared = Dataset()
    pvt = Dataset()
    pvt.RescaleSlope, pvt.RescaleIntercept, pvt.RescaleType = 1, 0, "US"
    shared.PixelValueTransformationSequence = [pvt]
    ds.SharedFunctionalGroupsSequence = [shared]
    per_frame = []
    for i in range(3):
        item = Dataset()
        voi = Dataset()
        voi.WindowCenter, voi.WindowWidth = 500 + 500 * i, 1000
        item.FrameVOILUTSequence = [voi]
        if i == 2:  # the last frame's own rescale overrides the shared one
            own = Dataset()
            own.RescaleSlope, own.RescaleIntercept = 2, -1000
            item.PixelValueTransformationSequence = [own]
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = per_frame
    for i in range(3):
        r = render_info(ds, frame=i)
        assert r.method == "window"
        _assert_close(np.asarray(r.image), reference(ds, i), f"frame {i}")
    # written to disk, gzipped, read back from a path and from bytes
    path = tmp_path / "enh.dcm"
    ds.save_as(path, enforce_file_format=True)
    gz = tmp_path / "enh.dcm.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    a = np.asarray(render(path, frame=1))
    assert np.array_equal(np.asarray(render(gz, frame=1)), a)
    assert np.array_equal(np.asarray(render(path.read_bytes(), frame=1)), a)


def test_sixteen_bit_png_windowed_by_percentiles(tmp_path):
    arr = _ramp(top=60000)
    p = tmp_path / "x16.png"
    Image.fromarray(arr.astype(np.uint16)).save(p)
    r = render_info(p)
    assert r.image.mode == "L" and r.method == "percentile"
    lo, hi = np.percentile(arr.astype(float), (1, 99))
    ref = (np.clip((arr - lo) / (hi - lo), 0, 1) * 255 + 0.5).astype(np.uint8)
    _assert_close(np.asarray(r.image), ref, "16-bit PNG")


def test_sizes_and_png_bytes():
    ds = _dataset(_ramp(30, 60))
    assert render(ds, size=120).size == (120, 60)  # grown
    assert render(ds, size=20).size == (20, 10)  # shrunk
    assert render(ds, size=(60, 60)).size == (60, 30)
    assert to_png(render(ds))[:8] == b"\x89PNG\r\n\x1a\n"


def test_errors_are_clear(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not an image at all" * 10)
    with pytest.raises(RenderError):
        render(junk)
    with pytest.raises(FileNotFoundError):
        render(tmp_path / "missing.dcm")
    ds = _dataset(_ramp())
    del ds.PixelData
    with pytest.raises(RenderError, match="no pixel data"):
        render(ds)


def test_preview_uses_the_renderer(tmp_path):
    from engine.vision.preview import path_preview

    ds = _dataset(_ramp(40, 30), "MONOCHROME1", WindowCenter=2000, WindowWidth=4000)
    f = tmp_path / "IM1.dcm"
    ds.save_as(f, enforce_file_format=True)
    png, info = path_preview(str(f), size=60)
    im = Image.open(io.BytesIO(png))
    assert im.size == (45, 60) and info["window"] == [0.0, 4000.0]
    assert info["method"] == "window" and info["inverted"] is True
    small = np.asarray(render(ds, size=60))
    assert np.array_equal(np.asarray(im), small)
