"""Radiographs to draft: which files (a list, folders), their hashes, and the PNG a model sees.

DICOM (CR/DX, MONOCHROME1 or 2, windowed by the file's VOI) goes through the shared renderer
:mod:`engine.vision.render`, so a model sees what the previews show; PNG and JPEG are sent as
they are unless larger than ``MAX_SIDE``. A DICOM of another modality is refused when named
and left out of a folder: an MR slice is no chest X-ray.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from engine.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".dcm.gz")
RADIOGRAPH_MODALITIES = ("CR", "DX", "DR", "RG", "OT", "")
MAX_SIDE = 1024
_PNG = b"\x89PNG\r\n\x1a\n"
_JPEG = b"\xff\xd8\xff"


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _is_dicom(path: Path) -> bool:
    if path.name.lower().endswith((".dcm", ".dicom", ".dcm.gz")):
        return True
    try:
        with open(path, "rb") as fh:
            return fh.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def _is_image(path: Path) -> bool:
    if path.name.lower().endswith(IMAGE_SUFFIXES):
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return head.startswith(_PNG) or head.startswith(_JPEG) or head[128:132] == b"DICM"


def dicom_modality(path: Path) -> str:
    """The Modality of a DICOM file ("" when it says none); ``UserError`` when unreadable."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many kinds for a bad file
        raise UserError(f"{path}: not a readable DICOM file ({exc})") from exc
    return str(ds.get("Modality", "") or "").strip().upper()


def collect(inputs: list[str]) -> list[str]:
    """The image files of ``inputs`` (files, or folders searched recursively), in order, each
    once. A named file that is no radiograph is an error; a folder's other files are skipped."""
    if not inputs:
        raise UserError("no images given: name image files or folders")
    out: list[str] = []
    seen: set[str] = set()

    def add(p: Path, named: bool) -> None:
        key = os.path.realpath(p)
        if key in seen:
            return
        if not _is_image(p):
            if named:
                raise UserError(f"{p}: not a PNG, JPEG or DICOM image")
            return
        if _is_dicom(p) and not p.name.lower().endswith(".gz"):
            mod = dicom_modality(p)
            if mod not in RADIOGRAPH_MODALITIES:
                if named:
                    raise UserError(
                        f"{p}: DICOM modality {mod} is not a radiograph (CR, DX); "
                        "report drafting reads chest X-rays"
                    )
                return
        seen.add(key)
        out.append(str(p))

    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files = sorted(
                (Path(root) / f for root, dirs, names in os.walk(p) for f in names),
                key=lambda x: str(x),
            )
            before = len(out)
            for f in files:
                if not any(part.startswith(".") for part in f.relative_to(p).parts):
                    add(f, named=False)
            if len(out) == before:
                raise UserError(f"{p}: no PNG, JPEG or DICOM radiograph in this folder")
        elif p.is_file():
            add(p, named=True)
        else:
            raise UserError(f"{item}: no such file or folder")
    return out


@dataclass
class ModelImage:
    """What a model is sent for one file, and how it was made."""

    png: bytes
    width: int
    height: int
    kind: str  # "dicom" or "image"
    photometric: str = ""
    inverted: bool = False
    render_s: float = 0.0


def load_image(path: str | Path, max_side: int = MAX_SIDE) -> ModelImage:
    """The PNG/JPEG bytes a model sees for ``path``; ``UserError`` naming the file when it
    cannot be read or rendered."""
    from PIL import Image

    from engine.vision.render import RenderError, render_info, to_png

    t0 = time.perf_counter()
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read image {p}: {exc}") from exc
    if data.startswith(_PNG) or data.startswith(_JPEG):
        import io

        try:
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
        except OSError as exc:
            raise UserError(f"{p}: a broken PNG/JPEG file ({exc})") from exc
        if max(w, h) <= max_side:
            return ModelImage(data, w, h, "image", render_s=time.perf_counter() - t0)
    try:
        info = render_info(data)  # shrink only: the renderer's fit would also grow
    except (RenderError, OSError, ValueError, TypeError) as exc:
        raise UserError(f"{p}: cannot be rendered as an image ({exc})") from exc
    im = info.image
    if max_side and max(im.size) > max_side:
        im = im.copy()
        im.thumbnail((max_side, max_side))
    return ModelImage(
        png=to_png(im),
        width=im.size[0],
        height=im.size[1],
        kind=info.kind,
        photometric=info.photometric,
        inverted=info.inverted,
        render_s=time.perf_counter() - t0,
    )
