"""The reading room's engine side: list images, render one with a window/level, read an EHR
file, save an edited report.

They run where the engine runs (the images, the EHR file and the saved reports live there, as
with ``report draft`` over SSH or Slurm), so the TUI never opens those files itself.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from engine.api.types import Preview, TextFile
from engine.errors import InvalidParams, NotFound, UserError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".dcm.gz")
MAX_RENDER = 2048
MAX_IMAGES = 100_000


def _is_image_file(p: Path) -> bool:
    name = p.name.lower()
    if name.endswith(IMAGE_SUFFIXES):
        return True
    if "." in name:
        return False
    try:  # DICOM files often have no suffix: the DICM magic at byte 128
        with open(p, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM"


def _printable(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def images(paths: list[str]) -> list[str]:
    """The image files (PNG, JPEG, DICOM) of ``paths``: files as given, folders walked, sorted."""
    if not paths:
        raise InvalidParams("paths: give at least one image file or folder")
    out: list[str] = []
    for given in paths:
        p = Path(given).expanduser()
        if p.is_dir():
            found = sorted(str(f) for f in p.rglob("*") if f.is_file() and _is_image_file(f))
            bad = [f for f in found if not _printable(f)]
            for f in bad:  # cannot travel over JSON-RPC: say which, keep the others
                log.warning("skipped %r: its name is not valid UTF-8 (rename it)", f)
            out.extend(f for f in found if _printable(f))
        elif p.is_file():
            out.append(str(p))
        else:
            raise NotFound(f"{given}: no such image file or folder")
        if len(out) > MAX_IMAGES:
            raise UserError(f"{given}: more than {MAX_IMAGES} images; give a smaller folder")
    if not out:
        raise NotFound(
            f"no images (PNG, JPEG, DICOM) in {', '.join(paths)}; "
            "the reading room shows chest radiographs"
        )
    return out


def _apply_window(im: Any, center: float, width: float) -> Any:
    """A display window on an 8-bit image: ``center``/``width`` in 0..255 units of the
    default rendering (127.5/255 leaves it as it is)."""
    import numpy as np
    from PIL import Image

    arr = np.asarray(im, dtype=np.float64)
    lo = center - width / 2.0
    y = np.clip((arr - lo) / width, 0.0, 1.0)
    return Image.fromarray((y * 255.0 + 0.5).astype(np.uint8), mode=im.mode)


def render_image(
    path: str,
    size: int = 512,
    center: float | None = None,
    width: float | None = None,
    frame: int | None = None,
) -> Preview:
    """A PNG of an image file (DICOM, PNG, JPEG) with an optional display window/level.

    The shared renderer makes the default 8-bit picture (the DICOM's own VOI or percentiles);
    ``center``/``width`` then window it in display units (0..255; 127.5/255 is the default).
    ``info`` says what was done, and the window in the file's own values when it has one.
    """
    from engine.vision.render import RenderError, render_info, to_png

    if not 8 <= size <= MAX_RENDER:
        raise InvalidParams(f"size must be 8..{MAX_RENDER} pixels, not {size}")
    c = 127.5 if center is None else float(center)
    w = 255.0 if width is None else float(width)
    if not (w >= 1.0 and w <= 4096.0) or not -2048.0 <= c <= 2048.0:
        raise InvalidParams(f"window: width must be 1..4096 and center -2048..2048 (got {c}/{w})")
    if not os.path.isfile(path):
        raise NotFound(f"{path}: no such image file")
    try:
        r = render_info(path, frame, size)
    except (RenderError, ValueError, OSError) as exc:
        raise UserError(f"{path}: cannot render it as an image: {exc}") from exc
    im = r.image
    if (c, w) != (127.5, 255.0):
        im = _apply_window(im, c, w)
    png = to_png(im)
    info = {
        "kind": r.kind,
        "method": r.method,
        "photometric": r.photometric,
        "frames": str(r.frames),
        "frame": str(r.frame),
        "center": f"{c:g}",
        "width": f"{w:g}",
        "size": f"{im.width}x{im.height}",
    }
    if r.window is not None:  # the display window in the file's own values
        lo, hi = r.window
        span = (hi - lo) / 255.0
        info["source_window"] = f"{lo + (c - w / 2) * span:g}..{lo + (c + w / 2) * span:g}"
    return Preview(
        png_base64=base64.b64encode(png).decode("ascii"),
        width=im.width,
        height=im.height,
        info=info,
    )


def read_ehr(path: str, image: str = "") -> TextFile:
    """The checked patient context of ``image`` in an EHR file (identifiers refused, naming the
    field), as JSON text; ``""`` when the file has no case for that image. ``name`` says which:
    ``all images`` (one context), the image's case, or ``no case``."""
    from engine.report.draft.ehr import read_ehr as read_patients

    data = read_patients(path)
    patient = data.for_image(image) if image else data.default
    if patient is None and not image and data.cases:
        which = f"{len(data.cases)} cases"
    elif patient is None:
        which = "no case"
    elif data.default is not None and patient is data.default:
        which = "all images"
    else:
        which = Path(image).name
    text = json.dumps(patient, indent=2, ensure_ascii=False) if patient is not None else ""
    return TextFile(which, str(Path(path).expanduser()), text)


def save_report(
    output: str, image: str, text: str, record: dict[str, Any] | None = None
) -> TextFile:
    """Save a person's report for ``image`` into the JSONL ``output`` (one line per image:
    the draft's record with ``text`` as the final report), replacing an earlier line of the same
    image; written atomically. A ``.txt`` ``output`` gets the report text alone."""
    from engine.atomic import write_text_atomic

    if not output:
        raise InvalidParams("output: give the JSONL (or .txt) file to save the report in")
    if not image:
        raise InvalidParams("image: say which image the report is about")
    target = Path(output).expanduser()
    if target.is_dir():
        raise UserError(f"{output} is a folder; give a .jsonl file to save reports in")
    if target.suffix.lower() == ".txt":
        write_text_atomic(target, text if text.endswith("\n") else text + "\n")
        return TextFile(target.name, str(target), text)
    line = dict(record or {})
    line.update({"image": image, "report": text, "edited": True, "saved_at": time.time()})
    lines: list[str] = []
    if target.exists():
        for n, raw in enumerate(target.read_text(encoding="utf-8").splitlines(), 1):
            if not raw.strip():
                continue
            try:
                old = json.loads(raw)
            except json.JSONDecodeError:
                raise UserError(
                    f"{output}: line {n} is not JSON; fix or move the file before saving"
                ) from None
            if not (isinstance(old, dict) and old.get("image") == image):
                lines.append(raw)
    lines.append(json.dumps(line, ensure_ascii=False))
    write_text_atomic(target, "\n".join(lines) + "\n")
    return TextFile(target.name, str(target), text)


def saved_reports(output: str) -> TextFile:
    """The reports saved so far in the JSONL ``output`` (``""`` when there is none yet): the
    reading room shows them again when it is reopened."""
    target = Path(output).expanduser()
    if not target.exists():
        return TextFile(target.name, str(target), "")
    if not target.is_file():
        raise UserError(f"{output} is not a file; give a .jsonl file to save reports in")
    try:
        text = target.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{output}: not UTF-8 ({exc}); move it aside") from None
    return TextFile(target.name, str(target), text)
