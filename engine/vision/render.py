"""One DICOM (or PNG/JPEG) to 8-bit image renderer, used by previews and vision models.

:func:`render` turns a file path, raw bytes or a ``pydicom`` dataset into a ``PIL`` image in
mode ``L`` (grey) or ``RGB`` (colour).  For DICOM it follows the display pipeline of PS3.3
C.11 for one frame:

1. decode one frame (``frame``; default the middle frame of a multi-frame or enhanced file);
   colour data (RGB, YBR_*) comes back as RGB, PALETTE COLOR goes through its LUT;
2. modality transform: Rescale Slope/Intercept, taken from the frame's functional groups
   (per-frame, then shared) in enhanced files, else the top level; or a Modality LUT;
3. VOI transform: a VOI LUT table, else Window Center/Width (the first of several values,
   LINEAR / LINEAR_EXACT / SIGMOID), else the ``percentiles`` of the frame (default 1-99 %);
4. MONOCHROME1 (or a Presentation LUT Shape of INVERSE) is inverted so that high = white;
5. 16-bit results become 8-bit; ``size`` fits the image into a box (keeping its aspect).

Only pydicom, numpy and Pillow are needed; compressed transfer syntaxes need the decoders
pydicom itself would use (Pillow for JPEG baseline, pylibjpeg/GDCM for the others).
"""

from __future__ import annotations

import gzip
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

__all__ = [
    "DEFAULT_PERCENTILES",
    "RenderError",
    "Rendered",
    "frame_count",
    "render",
    "render_info",
    "to_png",
]

DEFAULT_PERCENTILES: tuple[float, float] = (1.0, 99.0)
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_GZIP_MAGIC = b"\x1f\x8b"

Source = Any  # str | os.PathLike | bytes | pydicom.Dataset | PIL.Image.Image
Size = int | tuple[int, int] | None


class RenderError(ValueError):
    """The input cannot be shown as an image (no pixel data, undecodable, bad frame)."""


@dataclass
class Rendered:
    """An image and how it was made (for captions, previews and tests)."""

    image: Image.Image
    frames: int = 1
    frame: int = 0
    #: the input values mapped to black and white (after the modality transform);
    #: ``None`` for colour and 8-bit images shown as they are
    window: tuple[float, float] | None = None
    #: "voi-lut", "window", "percentile", "colour" or "as-is"
    method: str = "as-is"
    photometric: str = ""
    inverted: bool = False
    kind: str = "dicom"  # or "image" (PNG/JPEG/... read by Pillow)


# --- public API ----------------------------------------------------------------------------------


def render(
    source: Source,
    frame: int | None = None,
    size: Size = None,
    *,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
) -> Image.Image:
    """An 8-bit ``L`` or ``RGB`` image of ``source`` (one frame; the middle one by default).

    ``source`` is a path (DICOM, ``.dcm.gz``, PNG, JPEG or anything Pillow reads), the bytes of
    such a file, a ``pydicom.Dataset`` or a ``PIL.Image``.  ``size`` is the longest side (an
    int) or a ``(width, height)`` box the image is fitted into; ``None`` keeps the stored size.
    ``percentiles`` window images that store no window of their own.
    """
    return render_info(source, frame, size, percentiles=percentiles).image


def render_info(
    source: Source,
    frame: int | None = None,
    size: Size = None,
    *,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
) -> Rendered:
    """Like :func:`render`, with the frame, window and method used."""
    if isinstance(source, Image.Image):
        out = _render_pil(source, frame, percentiles)
    elif _is_dataset(source):
        out = _render_dataset(source, frame, percentiles)
    else:
        data = _read_bytes(source)
        if data[:8] == _PNG_MAGIC or data[:3] == _JPEG_MAGIC or not _looks_like_dicom(data):
            try:
                with Image.open(io.BytesIO(data)) as im:
                    im.load()
                    out = _render_pil(im, frame, percentiles)
            except (OSError, SyntaxError) as exc:
                if data[:8] == _PNG_MAGIC or data[:3] == _JPEG_MAGIC:
                    raise RenderError(f"cannot read image {_name(source)}: {exc}") from exc
                out = _render_dataset(_dcmread(data, source), frame, percentiles)
        else:
            out = _render_dataset(_dcmread(data, source), frame, percentiles)
    if size is not None:
        out.image = _fit(out.image, size)
    return out


def frame_count(ds: Any) -> int:
    """Number of frames of a dataset (1 when it does not say)."""
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def to_png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


# --- inputs --------------------------------------------------------------------------------------


def _is_dataset(obj: Any) -> bool:
    try:
        from pydicom.dataset import Dataset
    except ImportError:  # pragma: no cover - pydicom is a core dependency
        return False
    return isinstance(obj, Dataset)


def _name(source: Any) -> str:
    return "<bytes>" if isinstance(source, bytes | bytearray | memoryview) else str(source)


def _read_bytes(source: Any) -> bytes:
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
    elif isinstance(source, str | os.PathLike):
        p = Path(source)
        if not p.is_file():
            raise FileNotFoundError(f"no such file: {p}")
        data = p.read_bytes()
    elif hasattr(source, "read"):
        data = source.read()
    else:
        raise TypeError(f"cannot render a {type(source).__name__}")
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise RenderError(f"{_name(source)}: broken gzip file: {exc}") from exc
    return data


def _looks_like_dicom(data: bytes) -> bool:
    if data[128:132] == b"DICM":
        return True
    # no preamble: a dataset starting with a group 0x0002/0x0008 element (little endian)
    return len(data) >= 8 and data[1] == 0 and data[0] in (0x02, 0x08) and data[3] < 0x10


def _dcmread(data: bytes, source: Any) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(io.BytesIO(data), force=True)
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError) as exc:
        raise RenderError(f"{_name(source)} is neither DICOM nor an image: {exc}") from exc


# --- DICOM ---------------------------------------------------------------------------------------


def _frame_index(frame: int | None, frames: int) -> int:
    if frame is None:
        return frames // 2
    idx = frame + frames if frame < 0 else frame
    if not 0 <= idx < frames:
        raise RenderError(f"frame {frame} out of range: the image has {frames} frame(s)")
    return idx


def _decode_frame(ds: Any, idx: int, frames: int) -> tuple[np.ndarray, str]:
    """One frame as an array (colour as RGB) and the photometric interpretation it is in now."""
    from pydicom.pixels import get_decoder
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise RenderError("the DICOM file has no pixel data (a report or a document?)")
    meta = getattr(ds, "file_meta", None)
    tsyntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if tsyntax is None:  # a dataset made in memory or read without its header
        implicit = getattr(ds, "is_implicit_VR", None)
        tsyntax = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
        ds.ensure_file_meta()
        ds.file_meta.TransferSyntaxUID = tsyntax
    try:
        decoder = get_decoder(tsyntax)
    except NotImplementedError as exc:
        raise RenderError(f"no decoder for transfer syntax {tsyntax}: {exc}") from exc
    pi = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    try:
        arr, info = decoder.as_array(ds, index=idx if frames > 1 else None, as_rgb=True)
    except Exception as exc:  # noqa: BLE001 - decoders raise many kinds; one message for all
        raise RenderError(f"cannot decode the pixel data ({tsyntax.name}): {exc}") from exc
    pi = str(info.get("photometric_interpretation", pi)).upper()
    if frames > 1 and arr.ndim >= 3 and arr.shape[0] == frames:  # a decoder ignored index
        arr = arr[idx]
    return arr, pi


def _groups(ds: Any, idx: int) -> list[Any]:
    """Functional group items of frame ``idx``, most specific first (enhanced files)."""
    out = []
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame and idx < len(per_frame):
        out.append(per_frame[idx])
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        out.append(shared[0])
    return out


def _find(ds: Any, idx: int, sequence: str, keyword: str) -> Any:
    """The item holding ``keyword`` for frame ``idx``: a functional group's, else the top level."""
    for group in _groups(ds, idx):
        seq = group.get(sequence)
        if seq and keyword in seq[0]:
            return seq[0]
    return ds if keyword in ds else None


def _first(value: Any) -> float:
    """The first of several values (``[40, 400]`` -> 40.0); a single value as a float."""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        value = value[0] if len(value) else None
    if value is None or value == "":
        raise ValueError("empty value")
    return float(value)


def _modality(arr: np.ndarray, ds: Any, idx: int) -> np.ndarray:
    item = _find(ds, idx, "PixelValueTransformationSequence", "RescaleSlope")
    if item is None:
        item = _find(ds, idx, "PixelValueTransformationSequence", "RescaleIntercept")
    if item is not None:
        try:
            slope = _first(item.get("RescaleSlope", 1.0))
        except (TypeError, ValueError):
            slope = 1.0
        try:
            intercept = _first(item.get("RescaleIntercept", 0.0))
        except (TypeError, ValueError):
            intercept = 0.0
        return arr.astype(np.float64) * (slope or 1.0) + intercept
    if ds.get("ModalityLUTSequence"):
        from pydicom.pixels import apply_modality_lut

        return np.asarray(apply_modality_lut(arr, ds), dtype=np.float64)
    return arr.astype(np.float64)


def _window_linear(x: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """PS3.3 C.11.2.1.2 / C.11.2.1.3 windowing onto 0..1."""
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(np.clip(-4.0 * (x - center) / width, -700.0, 700.0)))
    if function == "LINEAR_EXACT":
        lo, span = center - width / 2.0, width
        out = (x - lo) / span
    else:  # LINEAR
        c, w = center - 0.5, width - 1.0
        if w <= 0:  # a one-value window: a threshold at the centre
            return (x > c).astype(np.float64)
        out = (x - c) / w + 0.5
        out = np.where(x <= c - w / 2.0, 0.0, np.where(x > c + w / 2.0, 1.0, out))
    return np.clip(out, 0.0, 1.0)


def _voi(
    x: np.ndarray, ds: Any, idx: int, percentiles: tuple[float, float]
) -> tuple[np.ndarray, str, tuple[float, float] | None]:
    """Values onto 0..1: VOI LUT table, stored window, else percentiles."""
    if ds.get("VOILUTSequence"):
        lut = ds.VOILUTSequence[0]
        try:
            from pydicom.pixels import apply_voi

            y = np.asarray(apply_voi(np.rint(x).astype(np.int64), ds, 0), dtype=np.float64)
            desc = [int(v) for v in lut.LUTDescriptor]
            bits = desc[2] if len(desc) > 2 and desc[2] > 0 else 16
            top = max(float(2**bits - 1), float(y.max(initial=0.0)))
            first = float(desc[1])
            return np.clip(y / top, 0.0, 1.0), "voi-lut", (first, first + max(desc[0], 1) - 1)
        except (AttributeError, IndexError, KeyError, TypeError, ValueError):
            pass  # a broken LUT: fall through to the window or percentiles
    item = _find(ds, idx, "FrameVOILUTSequence", "WindowCenter")
    if item is not None and "WindowWidth" in item:
        try:
            center = _first(item.WindowCenter)
            width = _first(item.WindowWidth)
        except (TypeError, ValueError):
            center = width = math.nan
        function = str(item.get("VOILUTFunction", "") or "LINEAR").strip().upper()
        if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
            function = "LINEAR"
        if math.isfinite(center) and math.isfinite(width) and width > 0:
            y = _window_linear(x, center, width, function)
            return y, "window", (center - width / 2.0, center + width / 2.0)
    return _percentile_window(x, percentiles)


def _percentile_window(
    x: np.ndarray, percentiles: tuple[float, float]
) -> tuple[np.ndarray, str, tuple[float, float]]:
    finite = x[np.isfinite(x)]
    if finite.size:
        lo, hi = (float(v) for v in np.percentile(finite, percentiles))
    else:
        lo, hi = 0.0, 1.0
    if hi <= lo:  # a flat image (or a few outliers): widen to the full range, then to 1
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if hi <= lo:
            hi = lo + 1.0
    y = np.clip((np.nan_to_num(x, nan=lo) - lo) / (hi - lo), 0.0, 1.0)
    return y, "percentile", (lo, hi)


def _to_uint8(y: np.ndarray) -> np.ndarray:
    return (np.clip(y, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _colour_to_uint8(arr: np.ndarray, bits: int) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    top = float(2 ** max(1, min(bits, 32)) - 1)
    if np.issubdtype(arr.dtype, np.floating):
        top = float(np.nanmax(arr)) or 1.0
    return _to_uint8(arr.astype(np.float64) / top)


def _render_dataset(ds: Any, frame: int | None, percentiles: tuple[float, float]) -> Rendered:
    frames = frame_count(ds)
    idx = _frame_index(frame, frames)
    arr, pi = _decode_frame(ds, idx, frames)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if pi == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        try:
            rgb = apply_color_lut(arr, ds)
        except (AttributeError, ValueError, KeyError) as exc:
            raise RenderError(f"cannot apply the palette colour LUT: {exc}") from exc
        bits = 16 if rgb.dtype.itemsize > 1 else 8
        img = Image.fromarray(_colour_to_uint8(np.asarray(rgb), bits), mode="RGB")
        return Rendered(img, frames, idx, None, "colour", pi)
    if samples >= 3 or (arr.ndim == 3 and arr.shape[-1] in (3, 4)):
        bits = int(ds.get("BitsStored", 8) or 8)
        rgb = _colour_to_uint8(np.ascontiguousarray(arr[..., :3]), bits)
        if pi.startswith("YBR"):  # a decoder that could not convert: do it here
            from pydicom.pixels import convert_color_space

            rgb = convert_color_space(rgb, pi, "RGB")
        return Rendered(Image.fromarray(rgb, mode="RGB"), frames, idx, None, "colour", pi)
    if arr.ndim != 2:
        raise RenderError(f"unexpected pixel array shape {arr.shape} for one frame")
    x = _modality(arr, ds, idx)
    y, method, window = _voi(x, ds, idx, percentiles)
    shape = str(ds.get("PresentationLUTShape", "") or "").upper()
    inverted = pi == "MONOCHROME1" or (pi != "MONOCHROME1" and shape == "INVERSE")
    if inverted:
        y = 1.0 - y
    img = Image.fromarray(_to_uint8(y), mode="L")
    return Rendered(img, frames, idx, window, method, pi, inverted)


# --- PNG / JPEG / other Pillow images ------------------------------------------------------------


def _render_pil(im: Image.Image, frame: int | None, percentiles: tuple[float, float]) -> Rendered:
    frames = int(getattr(im, "n_frames", 1) or 1)
    idx = _frame_index(frame, frames) if frames > 1 else _frame_index(frame or 0, 1)
    if frames > 1:
        im.seek(idx)
    mode = im.mode
    if mode in ("L", "RGB"):
        return Rendered(im.copy(), frames, idx, None, "as-is", mode, kind="image")
    if mode in ("1", "P", "PA", "LA", "La", "RGBA", "RGBa", "CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        if mode in ("1", "LA", "La"):
            return Rendered(im.convert("L"), frames, idx, None, "as-is", mode, kind="image")
        return Rendered(im.convert("RGB"), frames, idx, None, "as-is", mode, kind="image")
    # 16-bit / 32-bit integer or float grey: window like a DICOM without a stored window
    x = np.asarray(im, dtype=np.float64)
    if x.ndim == 3:
        x = x[..., 0]
    y, method, window = _percentile_window(x, percentiles)
    return Rendered(
        Image.fromarray(_to_uint8(y), mode="L"), frames, idx, window, method, mode, kind="image"
    )


# --- size ----------------------------------------------------------------------------------------


def _fit(im: Image.Image, size: int | tuple[int, int]) -> Image.Image:
    """Fit into a box keeping the aspect ratio: shrink smoothly, grow blocky (pixels stay)."""
    if isinstance(size, int):
        box_w = box_h = size
    else:
        box_w, box_h = (int(v) for v in size)
    if box_w <= 0 or box_h <= 0:
        raise ValueError(f"size must be positive, got {size!r}")
    scale = min(box_w / im.width, box_h / im.height)
    if scale == 1:
        return im
    new = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    return im.resize(new, Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.NEAREST)
