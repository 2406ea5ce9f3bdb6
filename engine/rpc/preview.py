"""Series previews: the middle slice of a series as a small windowed PNG.

Only pydicom + numpy + Pillow. The example file of a series (``example_dcm_file``) gives the
folder; the files of the same SeriesInstanceUID there are sorted by instance number and the
middle one of the first volume is shown (enhanced multi-frame files: the middle frame).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

MAX_FILES = 5000


def _read(path: str, pixels: bool = True) -> Any:
    import pydicom

    return pydicom.dcmread(path, stop_before_pixels=not pixels, force=True)


def _candidates(s: Any, dicom_dir: str | None) -> list[Path]:
    """Folders (or files) that may hold the series: absolute example path, else a search."""
    ex = Path(s.example_dcm_file)
    out: list[Path] = []
    if ex.is_absolute() and ex.exists():
        out.append(ex)
    if s.dcm_dir_name and Path(s.dcm_dir_name).is_absolute():
        out.append(Path(s.dcm_dir_name))
    if dicom_dir:
        root = Path(dicom_dir)
        if (root / ex).exists():
            out.append(root / ex)
        leaf = Path(s.dcm_dir_name).name if s.dcm_dir_name else ""
        for dirpath, dirs, files in os.walk(root):
            dirs.sort()
            if leaf and Path(dirpath).name == leaf:
                out.append(Path(dirpath))
            elif not leaf and ex.name in files:
                out.append(Path(dirpath))
    if not out:
        raise FileNotFoundError(
            f"the DICOM files of series {s.series_id} ({s.example_dcm_file}) are not found here; "
            "pass dicom_dir (the folder given to analyze)"
        )
    return out


def _series_files(folder: Path, uid: str) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    names = sorted(os.listdir(folder))[:MAX_FILES]
    for n in names:
        p = folder / n
        if not p.is_file():
            continue
        try:
            ds = _read(str(p), pixels=False)
        except Exception:  # noqa: BLE001 - not DICOM
            continue
        if uid and str(getattr(ds, "SeriesInstanceUID", "")) != uid:
            continue
        found.append((int(getattr(ds, "InstanceNumber", 0) or 0), str(p)))
    found.sort()
    return found


def _to_png(arr: Any, size: int, low: float, high: float) -> tuple[bytes, dict[str, Any]]:
    import numpy as np
    from PIL import Image

    a = np.asarray(arr, dtype=np.float64)
    while a.ndim > 2:  # colour or stacked: take the middle plane / the luminance
        a = a[..., 0] if a.shape[-1] in (3, 4) else a[a.shape[0] // 2]
    finite = a[np.isfinite(a)]
    lo, hi = (
        (float(np.percentile(finite, low)), float(np.percentile(finite, high)))
        if finite.size
        else (0.0, 1.0)
    )
    if hi <= lo:
        hi = lo + 1.0
    img8 = (np.clip((a - lo) / (hi - lo), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    im = Image.fromarray(img8, mode="L")
    scale = size / max(im.width, im.height)  # fit the box: shrink smoothly, grow blocky
    if scale != 1:
        new = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
        im = im.resize(new, Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue(), {"width": im.width, "height": im.height, "window": [lo, hi]}


def _pixels(path: str, frame_hint: int | None = None) -> tuple[Any, dict[str, Any]]:
    ds = _read(path)
    arr = ds.pixel_array
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames > 1 and arr.ndim >= 3:
        idx = frame_hint if frame_hint is not None else frames // 2
        arr = arr[min(idx, frames - 1)]
    slope = float(getattr(ds, "RescaleSlope", 1) or 1)
    inter = float(getattr(ds, "RescaleIntercept", 0) or 0)
    return arr * slope + inter, {"frames": frames}


def series_preview(
    s: Any, size: int = 256, low: float = 1.0, high: float = 99.0, dicom_dir: str | None = None
) -> tuple[bytes, dict[str, Any]]:
    files: list[tuple[int, str]] = []
    for cand in _candidates(s, dicom_dir):
        folder = cand if cand.is_dir() else cand.parent
        files = _series_files(folder, s.series_uid)
        if files:
            break
    if not files:
        raise FileNotFoundError(f"no DICOM file of series {s.series_id} (UID {s.series_uid}) found")
    per_volume = s.dim3 if s.dim3 and s.dim4 and len(files) >= s.dim3 * s.dim4 > 1 else len(files)
    chosen = files[min(per_volume // 2, len(files) - 1)][1]
    arr, meta = _pixels(chosen, (s.dim3 // 2) if s.is_multiframe and s.dim3 else None)
    png, info = _to_png(arr, size, low, high)
    return png, {**info, **meta, "file": chosen, "key": s.key}


def path_preview(
    path: str, size: int = 256, low: float = 1.0, high: float = 99.0
) -> tuple[bytes, dict[str, Any]]:
    p = Path(path)
    if p.is_dir():
        files = _series_files(p, "")
        if not files:
            raise FileNotFoundError(f"no DICOM files in {p}")
        chosen = files[len(files) // 2][1]
    else:
        chosen = str(p)
    arr, meta = _pixels(chosen)
    png, info = _to_png(arr, size, low, high)
    return png, {**info, **meta, "file": chosen}
