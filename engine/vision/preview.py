"""Series previews: the middle slice of a series as a small windowed PNG.

The example file of a series (``example_dcm_file``) gives the folder; the files of the same
SeriesInstanceUID there are sorted by instance number and the middle one of the first volume
is shown (enhanced multi-frame files: the middle frame).  Pixels go through the one renderer,
:func:`engine.vision.render.render` (stored window or VOI LUT, else the ``low``/``high``
percentiles; MONOCHROME1 inverted; colour kept).
"""

from __future__ import annotations

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


def _render(
    path: str, size: int, low: float, high: float, frame: int | None = None
) -> tuple[bytes, dict[str, Any]]:
    """The one renderer (:mod:`engine.vision.render`) as a PNG and what the client shows."""
    from engine.errors import UserError
    from engine.vision.render import RenderError, render_info, to_png

    try:
        r = render_info(path, frame, size, percentiles=(low, high))
    except RenderError as exc:
        raise UserError(f"cannot preview {path}: {exc}") from None
    info: dict[str, Any] = {
        "width": r.image.width,
        "height": r.image.height,
        "window": list(r.window) if r.window else None,
        "method": r.method,
        "inverted": r.inverted,
        "mode": r.image.mode,
        "frames": r.frames,
        "frame": r.frame,
    }
    return to_png(r.image), info


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
    frame = None  # the middle frame; an enhanced file of several volumes: the first volume's
    if s.is_multiframe and s.dim3:
        from engine.vision.render import frame_count

        frame = min(s.dim3 // 2, frame_count(_read(chosen, pixels=False)) - 1)
    png, info = _render(chosen, size, low, high, frame)
    return png, {**info, "file": chosen, "key": s.key}


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
    png, info = _render(chosen, size, low, high)
    return png, {**info, "file": chosen}
